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

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
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

/// What the service manager hears from the daemon: the sd_notify socket (`$NOTIFY_SOCKET`),
/// and the readiness descriptor of s6 and dinit ([`ready_fd`]), either or both.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Written a newline, then closed, when the daemon is ready; closed without a word when it
    /// fails first.
    ready_fd: Mutex<Option<OwnedFd>>,
    /// Sockets for the manager's descriptor store (`FDSTORE=1`), with their `FDNAME=`, sent
    /// once the daemon is ready.
    store: Mutex<Vec<(OwnedFd, String)>>,
}

impl Notifier {
    /// The socket named by `$NOTIFY_SOCKET`, or `None` when it is unset or empty.
    pub(crate) fn from_env() -> io::Result<Option<Notifier>> {
        Notifier::new(None)
    }

    /// The socket named by `$NOTIFY_SOCKET` and the readiness descriptor `ready_fd`; `None`
    /// when there is neither.
    pub(crate) fn new(ready_fd: Option<OwnedFd>) -> io::Result<Option<Notifier>> {
        let socket = match std::env::var_os("NOTIFY_SOCKET").filter(|n| !n.is_empty()) {
            Some(name) => {
                let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
                let address = match bytes.strip_prefix(b"@") {
                    Some(abstract_name) => abstract_address(abstract_name)?,
                    None => SocketAddr::from_pathname(std::path::Path::new(&name))?,
                };
                Some((UnixDatagram::unbound()?, address))
            }
            None => None,
        };
        if socket.is_none() && ready_fd.is_none() {
            return Ok(None);
        }
        Ok(Some(Notifier {
            socket,
            ready_fd: Mutex::new(ready_fd),
            store: Mutex::new(Vec::new()),
        }))
    }

    /// Give the manager `sockets` to keep in its descriptor store once the daemon is ready, when
    /// it keeps one ([`fd_store_wanted`]): the next instance gets them back in `LISTEN_FDS`,
    /// so a `systemctl restart` refuses no connection.
    pub(crate) fn store_when_ready(&self, sockets: Vec<(OwnedFd, String)>) {
        if self.socket.is_some() && fd_store_wanted() {
            *crate::sync::lock(&self.store) = sockets;
        }
    }

    /// Send the sockets kept for the store, one message per socket (`FDNAME=` names all the
    /// descriptors of its message).
    fn store(&self) {
        let sockets = std::mem::take(&mut *crate::sync::lock(&self.store));
        let Some((_, address)) = &self.socket else {
            return;
        };
        if sockets.is_empty() {
            return;
        }
        let Ok(connected) =
            UnixDatagram::unbound().and_then(|s| s.connect_addr(address).map(|()| s))
        else {
            return;
        };
        for (fd, name) in &sockets {
            let message = format!("FDSTORE=1\nFDNAME={name}");
            let _ = crate::sys::send_datagram_with_fds(
                &connected,
                message.as_bytes(),
                &[std::os::fd::AsFd::as_fd(fd)],
            );
        }
    }

    /// Send `state` on the sd_notify socket, if there is one.
    pub(crate) fn send(&self, state: &str) -> io::Result<()> {
        match &self.socket {
            Some((socket, address)) => socket.send_to_addr(state.as_bytes(), address).map(drop),
            None => Ok(()),
        }
    }

    /// `READY=1` with this process's pid (after a double fork the daemon is not the process the
    /// service manager started), and a newline on the readiness descriptor, which is closed.
    pub(crate) fn ready(&self) -> io::Result<()> {
        if let Some(fd) = crate::sync::lock(&self.ready_fd).take() {
            // A reader that has gone (s6-supervise restarted) is no failure of the daemon.
            let _ = std::fs::File::from(fd).write_all(b"\n");
        }
        self.store();
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
        // The readiness descriptor closed without a newline: never ready.
        drop(crate::sync::lock(&self.ready_fd).take());
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

/// The environment variable that names the readiness descriptor, when the builder names none.
pub(crate) const NOTIFY_FD_VAR: &str = "DAEMONS_NOTIFY_FD";

/// The readiness descriptor of s6 (`notification-fd`) and dinit (`ready-notification`): a pipe
/// on which the daemon writes a newline once it is ready, then closes it. The one that
/// `configured` names (the builder's [`notify_fd`](crate::DaemonBuilder::notify_fd)), else the
/// one that `$DAEMONS_NOTIFY_FD` names, else the one that the file `notification-fd` in the
/// working directory names (s6-supervise runs `./run` in the service directory), if that one
/// is an open pipe for writing above 2. The descriptor is made close-on-exec, and the
/// variable removed, so that the body's children neither inherit it nor think it theirs.
///
/// A descriptor that the builder or the variable names and that is not an open pipe for
/// writing is an error (what it is instead): it says the daemon runs under a manager that
/// waits for the newline, and never hearing it would leave that manager waiting.
pub(crate) fn ready_fd(configured: Option<RawFd>) -> Result<Option<OwnedFd>, String> {
    let variable = std::env::var(NOTIFY_FD_VAR).ok().filter(|v| !v.is_empty());
    crate::sys::remove_env_if_alone(&[NOTIFY_FD_VAR]);
    let (fd, named_by) = match (configured, variable) {
        (Some(fd), _) => (fd, "notify_fd"),
        (None, Some(value)) => match value.trim().parse::<RawFd>() {
            Ok(fd) => (fd, NOTIFY_FD_VAR),
            Err(_) => {
                return Err(format!(
                    "${NOTIFY_FD_VAR}={value:?} is not a descriptor's number (give the number of the readiness pipe, as s6's notification-fd names it)"
                ));
            }
        },
        (None, None) => {
            let Some(fd) = std::fs::read_to_string("notification-fd")
                .ok()
                .and_then(|n| n.trim().parse::<RawFd>().ok())
                .filter(|&fd| fd > 2)
            else {
                return Ok(None);
            };
            // A guess from a file in the working directory: a descriptor that is no pipe for
            // writing is not s6's, and is left alone.
            return Ok(adopt_ready_fd(fd).ok());
        }
    };
    adopt_ready_fd(fd).map(Some).map_err(|what| {
        format!("descriptor {fd} (named by {named_by}) is {what}, not the write end of a pipe: run the daemon under a manager that passes the readiness pipe there (s6's notification-fd, dinit's ready-notification), or name the one it passes")
    })
}

/// Take `fd` as the readiness pipe if it is one, open for writing; else say what it is.
fn adopt_ready_fd(fd: RawFd) -> Result<OwnedFd, String> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::stat::{SFlag, fstat};
    if fd < 0 {
        return Err("no descriptor".into());
    }
    // SAFETY: the descriptor is only looked at here; it is adopted below, once, if it is the
    // pipe that was passed for readiness.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let stat = match fstat(borrowed) {
        Ok(stat) => stat,
        Err(nix::errno::Errno::EBADF) => return Err("not open".into()),
        Err(e) => {
            return Err(format!(
                "a descriptor that cannot be examined ({})",
                std::io::Error::from(e)
            ));
        }
    };
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return Err("not a pipe".into());
    }
    let flags = fcntl(borrowed, FcntlArg::F_GETFL)
        .map_err(|e| format!("unreadable ({})", std::io::Error::from(e)))?;
    if OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == OFlag::O_RDONLY {
        return Err("the read end of a pipe".into());
    }
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if ADOPTED.swap(true, Ordering::AcqRel) {
        return Err("already taken by an earlier run of the daemon in this process".into());
    }
    // SAFETY: the manager passed this pipe for the daemon to write its readiness on and close,
    // and it is adopted once (above); the builder's documentation says that the descriptor it
    // names becomes the daemon's.
    let adopted = unsafe { crate::sys::adopt_passed_fds(fd..fd + 1) };
    adopted
        .into_iter()
        .find(|owned| owned.as_raw_fd() == fd)
        .ok_or_else(|| "not open".into())
}

/// Whether the service manager keeps a descriptor store for the service: `$FDSTORE` is a
/// number above 0 (systemd 254 and later set it from `FileDescriptorStoreMax=`; a unit for an
/// older systemd sets it beside that, `Environment=FDSTORE=4`). Without it nothing is sent:
/// a systemd without a store would log every attempt.
pub(crate) fn fd_store_wanted() -> bool {
    std::env::var("FDSTORE")
        .ok()
        .and_then(|n| n.trim().parse::<u32>().ok())
        .is_some_and(|n| n > 0)
}
