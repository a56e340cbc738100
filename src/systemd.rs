//! The service manager's notification protocol (`sd_notify`), written out: one datagram to the
//! socket named by `$NOTIFY_SOCKET`, a path or, with a leading `@`, an abstract socket.
//!
//! The engine uses it by itself: `READY=1` (with `MAINPID=`) once the daemon is ready,
//! `RELOADING=1` and `READY=1` around the SIGHUP handlers, `STOPPING=1` at stop, and
//! `WATCHDOG=1` at half the period that `$WATCHDOG_USEC` asks for, from the body's own loop.
//! [`notify`] is public for bodies that want to say more (`STATUS=...`, say).
//!
//! ```rust,standalone_crate
//! // Outside a service manager, nothing is sent and nothing fails.
//! # // SAFETY: this doctest runs as a single-threaded process of its own.
//! # unsafe { std::env::remove_var("NOTIFY_SOCKET") };
//! assert!(!daemons::systemd::notify("STATUS=warming up")?);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Send `state` (one or more `KEY=VALUE` lines) to the service manager. Returns `false`, having
/// sent nothing, when `$NOTIFY_SOCKET` is not set.
///
/// # Errors
///
/// The socket's error when `$NOTIFY_SOCKET` is set but the datagram cannot be sent.
///
/// # Examples
///
/// ```rust,standalone_crate
/// use std::os::unix::net::UnixDatagram;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("notify.sock");
/// let manager = UnixDatagram::bind(&path)?;
/// # // SAFETY: this doctest runs as a single-threaded process of its own.
/// unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
/// assert!(daemons::systemd::notify("STATUS=half way")?);
/// let mut buf = [0u8; 64];
/// let n = manager.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"STATUS=half way");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn notify(state: &str) -> io::Result<bool> {
    match Notifier::from_env()? {
        Some(notifier) => notifier.send(state).map(|()| true),
        None => Ok(false),
    }
}

/// A connection to the service manager's socket.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The socket named by `$NOTIFY_SOCKET`, or `None` when it is unset or empty.
    pub(crate) fn from_env() -> io::Result<Option<Notifier>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET").filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
        let address = match bytes.strip_prefix(b"@") {
            Some(abstract_name) => abstract_address(abstract_name)?,
            None => SocketAddr::from_pathname(std::path::Path::new(&name))?,
        };
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            address,
        }))
    }

    pub(crate) fn send(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(drop)
    }

    /// `READY=1` with this process's pid: after a double fork the daemon is not the process the
    /// service manager started.
    pub(crate) fn ready(&self) -> io::Result<()> {
        self.send(&format!("READY=1\nMAINPID={}", std::process::id()))
    }

    /// Why the daemon fails before it is ready, before it exits: `STATUS=` the reason and
    /// `ERRNO=` the system's error where there is one, `EIO` otherwise (start-stop-daemon's
    /// `--notify-await` ends its wait on `ERRNO=`, not on an exit).
    pub(crate) fn failed(&self, error: &crate::Error) -> io::Result<()> {
        let mut errno = None;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(at) = source {
            if let Some(io) = at.downcast_ref::<io::Error>()
                && let Some(code) = io.raw_os_error()
            {
                errno = Some(code);
                break;
            }
            source = at.source();
        }
        let status = format!("{error:#}").replace('\n', " ");
        let errno = errno.unwrap_or(libc::EIO);
        self.send(&format!("STATUS={status}\nERRNO={errno}"))
    }

    /// Ask for `more` time to start than the manager would give (`EXTEND_TIMEOUT_USEC=`).
    pub(crate) fn extend_start(&self, more: Duration) -> io::Result<()> {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", more.as_micros()))
    }

    /// `RELOADING=1`, with the monotonic timestamp that `Type=notify-reload` expects.
    pub(crate) fn reloading(&self) -> io::Result<()> {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| Duration::from(t).as_micros())
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist on Linux only",
    ))
}

/// The first descriptor that a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The sockets that the service manager passed to this process (sd_listen_fds(3)), with the
/// names it gave them (`$LISTEN_FDNAMES`, `None` where it gave none): descriptors from 3, as
/// many as `$LISTEN_FDS` says, when `$LISTEN_PID` is this process. They are made close-on-exec,
/// and the three variables are removed from the environment so that the body's children do not
/// take them too, where that is safe (a single thread).
pub(crate) fn listen_fds() -> Vec<(std::os::fd::OwnedFd, Option<String>)> {
    let me = std::process::id().to_string();
    if std::env::var("LISTEN_PID").ok().as_deref() != Some(me.as_str()) {
        return Vec::new();
    }
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0 && n < 4096)
        .unwrap_or(0);
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names: Vec<Option<String>> = names
        .split(':')
        .map(|name| Some(name.to_string()).filter(|n| !n.is_empty()))
        .collect();
    // Names that do not go with the descriptors one to one name none of them.
    if names.len() != count as usize {
        names = Vec::new();
    }
    names.resize(count as usize, None);
    crate::sys::remove_env_if_alone(&["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]);
    // A process with other threads keeps the variables: a second call (a second `run()`) must
    // not adopt the same descriptors again.
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if ADOPTED.swap(true, Ordering::AcqRel) {
        return Vec::new();
    }
    // SAFETY: the service manager passed these descriptors to this process for it to own, and
    // they are adopted once (above); sd_listen_fds(3) has any other reader of them unset
    // `$LISTEN_PID`, so nothing else in this process has taken them.
    let fds = unsafe { crate::sys::adopt_passed_fds(LISTEN_FDS_START..LISTEN_FDS_START + count) };
    // A descriptor that is not open is left out, and its name with it.
    fds.into_iter()
        .map(|fd| {
            let at = std::os::fd::AsRawFd::as_raw_fd(&fd) - LISTEN_FDS_START;
            let name = names.get(at as usize).cloned().flatten();
            (fd, name)
        })
        .collect()
}

/// The watchdog period the service manager asks for: `$WATCHDOG_USEC`, if `$WATCHDOG_PID` is
/// unset or names this process.
pub(crate) fn watchdog_period() -> Option<Duration> {
    watchdog_period_for(std::process::id())
}

/// The watchdog period the service manager asks of process `pid`: `$WATCHDOG_USEC`, if
/// `$WATCHDOG_PID` is unset or names `pid` (a supervised child asks for its supervisor's).
pub(crate) fn watchdog_period_for(pid: u32) -> Option<Duration> {
    if let Some(named) = std::env::var_os("WATCHDOG_PID")
        && named.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(pid)
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}
