//! Process control from outside the daemon: signal it, wait for it, stop it.
//!
//! Every operation starts from the pidfile and never trusts the pid written in it: the pid is
//! signalled only if it is the process that holds the pidfile's lock, and the signal goes through
//! a pidfd opened *before* that check, so a pid that the kernel reuses in between is never hit.
//! Waiting for the exit polls the pidfd, which becomes readable the moment the process dies:
//! there is no sleep loop, and a stop of an idle daemon takes a few milliseconds.
//!
//! ```
//! use daemons::{control, Pidfile};
//!
//! let dir = tempfile::tempdir()?;
//! let pidfile = Pidfile::new(dir.path().join("none.pid"));
//! // Nothing runs: stopping is a no-op that says so.
//! let stopped = control::stop(&pidfile, std::time::Duration::from_secs(1))?;
//! assert_eq!(stopped, control::Stopped::NotRunning);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::Error;
use crate::pidfile::{Pidfile, Status};
use crate::sys::{pidfd_open, pidfd_pid, pidfd_send_signal, wait_readable};

/// How long `stop` waits after SIGKILL. A killed process is gone within microseconds unless it
/// is stuck in the kernel, which nothing here can change.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a [`stop`] ended.
///
/// # Examples
///
/// ```
/// use daemons::control::Stopped;
/// use std::time::Duration;
///
/// let s = Stopped::Exited { pid: daemons::Pid::from_raw(42), after: Duration::from_millis(3) };
/// assert_eq!(s.pid(), Some(daemons::Pid::from_raw(42)));
/// assert!(!s.was_killed());
/// assert_eq!(s.to_string(), "stopped (pid 42, after 3.0ms)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was running (a stale pidfile, if there was one, was removed).
    NotRunning,
    /// The daemon exited after SIGTERM.
    Exited {
        /// Its pid.
        pid: Pid,
        /// How long it took.
        after: Duration,
    },
    /// The daemon did not exit within the stop timeout and was killed with SIGKILL.
    Killed {
        /// Its pid.
        pid: Pid,
        /// How long it took, the timeout included.
        after: Duration,
    },
}

impl Stopped {
    /// The pid of the daemon that was stopped, if one was.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(daemons::control::Stopped::NotRunning.pid(), None);
    /// ```
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Stopped::NotRunning => None,
            Stopped::Exited { pid, .. } | Stopped::Killed { pid, .. } => Some(*pid),
        }
    }

    /// Whether the daemon had to be killed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!daemons::control::Stopped::NotRunning.was_killed());
    /// ```
    pub fn was_killed(&self) -> bool {
        matches!(self, Stopped::Killed { .. })
    }
}

impl fmt::Display for Stopped {
    /// `not running`, `stopped (pid 42, after 3 ms)`, `killed (pid 42, after 10.01 s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::NotRunning => f.write_str("not running"),
            Stopped::Exited { pid, after } => write!(f, "stopped (pid {pid}, after {after:.1?})"),
            Stopped::Killed { pid, after } => write!(
                f,
                "killed (pid {pid}, after {after:.1?}: it did not stop within the stop timeout)"
            ),
        }
    }
}

/// A live process that holds a pidfile, pinned by a pidfd.
///
/// # Examples
///
/// ```
/// use daemons::{control::Process, Pidfile};
///
/// let dir = tempfile::tempdir()?;
/// let pidfile = Pidfile::new(dir.path().join("x.pid"));
/// assert!(Process::holding(&pidfile)?.is_none());
/// let _lock = pidfile.acquire()?;
/// let me = Process::holding(&pidfile)?.expect("this process holds it");
/// assert_eq!(me.pid(), daemons::Pid::this());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Process {
    pid: Pid,
    pidfd: OwnedFd,
}

impl Process {
    /// The process that holds `pidfile`'s lock, or `None` if nobody does.
    ///
    /// The pidfd is opened first and the holder checked after: if the pid named in the file was
    /// reused in between, the new process does not hold the lock and the check fails, so the
    /// returned handle always designates the real holder (or a process that has since exited,
    /// which signals cannot reach).
    ///
    /// # Errors
    ///
    /// The pidfile's errors ([`Error::Untrusted`], [`Error::Symlink`], ...), and
    /// [`Error::Sys`] when `pidfd_open` fails for another reason than the process being gone.
    ///
    /// # Examples
    ///
    /// See [`Process`].
    pub fn holding(pidfile: &Pidfile) -> Result<Option<Process>, Error> {
        // The usual case, a running daemon, in one read of the file: the pid it names, pinned
        // by a pidfd, then checked to hold the lock.
        let Some((named, meta)) = pidfile.read_identified()? else {
            return Ok(None);
        };
        if let Some(pid) = named
            && let Some(pidfd) = pin(pid, pidfile)?
            && pidfile.is_held_by(pid, &meta)
        {
            return Ok(Some(Process { pid, pidfd }));
        }
        // Anything else goes through the whole probe (a daemon in another pid namespace, a lock
        // that a stranger holds, a stale file), and a holder it names is pinned, then checked
        // again: each round fails only if the holder changed under us.
        for _ in 0..8 {
            let pid = match pidfile.probe()? {
                Status::Running(pid) | Status::Supervised { pid, .. } => pid,
                Status::Starting => {
                    return Err(Error::Unverified {
                        pidfile: pidfile.path().to_path_buf(),
                        named: None,
                        holder: None,
                        command: None,
                    });
                }
                Status::Dead { .. } | Status::NotRunning => return Ok(None),
            };
            let Some(pidfd) = pin(pid, pidfile)? else {
                continue;
            };
            if pidfile.probe()?.pid() == Some(pid) {
                return Ok(Some(Process { pid, pidfd }));
            }
        }
        Err(Error::AlreadyRunning {
            pidfile: pidfile.path().to_path_buf(),
            pid: None,
        })
    }

    /// The process id.
    ///
    /// # Examples
    ///
    /// See [`Process`].
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// In a fork's child that never returns into the frames that own this handle: close the
    /// child's copy of the pidfd, which nothing would close otherwise.
    pub(crate) fn forget_in_this_copy(&self) {
        use std::os::fd::AsRawFd;
        crate::sys::close_copy(self.pidfd.as_raw_fd());
    }

    /// Send `signal` through the pidfd.
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] when the kernel refuses; a process that has exited already is not an error.
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use daemons::{control::Process, Pidfile, Signal};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let pidfile = Pidfile::new(dir.path().join("x.pid"));
    /// let _lock = pidfile.acquire()?;
    /// // SAFETY: ignoring a signal runs no code in signal context.
    /// unsafe { nix::sys::signal::signal(Signal::SIGUSR2, nix::sys::signal::SigHandler::SigIgn) }?;
    /// Process::holding(&pidfile)?.unwrap().signal(Signal::SIGUSR2)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        match pidfd_send_signal(self.pidfd.as_fd(), signal) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(Error::Sys {
                call: "pidfd_send_signal",
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Wait, at most `timeout`, for the process to exit. Returns whether it did. The wait is a
    /// `poll` on the pidfd: it wakes the moment the process dies, whoever its parent is.
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] when `poll` fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{control::Process, Pidfile};
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let pidfile = Pidfile::new(dir.path().join("x.pid"));
    /// let _lock = pidfile.acquire()?;
    /// let me = Process::holding(&pidfile)?.unwrap();
    /// assert!(!me.wait(Duration::from_millis(1))?);   // this process is alive, of course
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self, timeout: Duration) -> Result<bool, Error> {
        wait_readable(self.pidfd.as_fd(), timeout).map_err(|e| Error::Sys {
            call: "poll",
            source: e,
        })
    }
}

/// Send `signal` to the process that holds `pidfile`, and return its pid.
///
/// # Errors
///
/// [`Error::NotRunning`] when nobody holds the pidfile (a stale pidfile's pid is never
/// signalled), and the errors of [`Process::holding`] and [`Process::signal`].
///
/// # Examples
///
/// ```
/// use daemons::{control, Error, Pidfile, Signal};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("stale.pid");
/// std::fs::write(&path, format!("{}\n", std::process::id()))?;   // names a live process...
/// let err = control::send(&Pidfile::new(&path), Signal::SIGTERM).unwrap_err();
/// assert!(matches!(err, Error::NotRunning { .. }));               // ...that is not signalled
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send(pidfile: &Pidfile, signal: Signal) -> Result<Pid, Error> {
    let process = Process::holding(pidfile)?.ok_or_else(|| Error::NotRunning {
        pidfile: pidfile.path().to_path_buf(),
    })?;
    process.signal(signal)?;
    Ok(process.pid)
}

/// Stop the process that holds `pidfile`: SIGTERM and SIGCONT, a wait of at most `timeout`, then
/// SIGKILL.
/// A pidfile left behind (by a killed daemon, or stale from before) is removed.
///
/// # Errors
///
/// [`Error::StillAlive`] when the process survives SIGKILL (stuck in the kernel), and the errors
/// of [`Process::holding`].
///
/// # Examples
///
/// See [the module documentation](self).
pub fn stop(pidfile: &Pidfile, timeout: Duration) -> Result<Stopped, Error> {
    let Some(process) = Process::holding(pidfile)? else {
        remove_stale(pidfile)?;
        return Ok(Stopped::NotRunning);
    };
    let stopped = stop_process(&process, timeout)?;
    remove_stale(pidfile)?;
    Ok(stopped)
}

/// SIGTERM and SIGCONT to `process`, a wait of at most `timeout`, then SIGKILL; the pidfile is
/// left alone (a successor may hold it by then).
pub(crate) fn stop_process(process: &Process, timeout: Duration) -> Result<Stopped, Error> {
    let started = Instant::now();
    process.signal(Signal::SIGTERM)?;
    // A stopped daemon (SIGSTOP, a debugger let go of) must run to act on the SIGTERM, as
    // systemd sends SIGCONT after it too.
    process.signal(Signal::SIGCONT)?;
    if process.wait(timeout)? {
        return Ok(Stopped::Exited {
            pid: process.pid,
            after: started.elapsed(),
        });
    }
    process.signal(Signal::SIGKILL)?;
    if !process.wait(KILL_WAIT)? {
        return Err(Error::StillAlive { pid: process.pid });
    }
    Ok(Stopped::Killed {
        pid: process.pid,
        after: started.elapsed(),
    })
}

/// A pidfd for `pid`, or `None` when it has exited. The pidfd names a process of this process's
/// pid namespace, and the checks read `/proc`, which may be another namespace's: the pidfd's own
/// `fdinfo` must name the same pid there, or nothing is done.
fn pin(pid: Pid, pidfile: &Pidfile) -> Result<Option<OwnedFd>, Error> {
    let pidfd = match pidfd_open(pid) {
        Ok(pidfd) => pidfd,
        // Gone, or no process one can pin: a thread's id (EINVAL), a task the kernel will not
        // hand a pidfd for (ENOENT). Such a pid is not the holder.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ESRCH | libc::EINVAL | libc::ENOENT)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(Error::Sys {
                call: "pidfd_open",
                source: e,
            });
        }
    };
    match pidfd_pid(pidfd.as_fd()) {
        Some(seen) if seen == pid => Ok(Some(pidfd)),
        seen => Err(Error::ForeignProc {
            pidfile: pidfile.path().to_path_buf(),
            reason: match seen {
                Some(seen) => format!(
                    "pid {pid} of this namespace is pid {seen} in the /proc that is mounted"
                ),
                None => {
                    format!("the /proc that is mounted does not show pid {pid} of this namespace")
                }
            },
        }),
    }
}

/// SIGKILL `pid` and wait (at most [`KILL_WAIT`]) until it is gone. For a daemon whose pid is
/// known to be its own, such as one that is still connected to its report pipe.
pub(crate) fn kill_and_wait(pid: Pid) {
    match pidfd_open(pid) {
        Ok(pidfd) => {
            let process = Process { pid, pidfd };
            if process.signal(Signal::SIGKILL).is_ok() {
                let _ = process.wait(KILL_WAIT);
            }
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

/// Remove the pidfile if nobody holds it. One held by a successor that started in the meantime is
/// left alone: it is not stale.
fn remove_stale(pidfile: &Pidfile) -> Result<(), Error> {
    match pidfile.remove() {
        Err(Error::AlreadyRunning { .. }) => Ok(()),
        other => other,
    }
}
