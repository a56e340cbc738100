//! The handle: start, stop, restart, status, pid, send and run, from the caller's side.

use std::fmt;
use std::path::Path;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::control::{self, Stopped};
use crate::detach::{Side, detach, inherited_fds};
use crate::engine::init::{self, Role};
use crate::engine::{Engine, Launch};
use crate::error::{Error, HandoverKind};
use crate::pidfile::Status;

/// A daemon: its settings, its body and its handlers, and the operations on it.
///
/// The same value serves in the process that starts the daemon and, after the fork, in the
/// daemon itself: [`start`](Daemon::start) returns in the caller and never returns in the daemon,
/// which runs the body and exits.
///
/// # Examples
///
/// ```rust,standalone_crate
/// # // A doctest is a process of its own, so it may fork.
/// use daemons::{Daemon, Status};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let daemon = Daemon::builder()
///     .pidfile(dir.path().join("doc.pid"))
///     .step(|| std::thread::sleep(Duration::from_millis(10)))
///     .build()?;
///
/// let pid = daemon.start()?;                        // returns once the daemon is up
/// assert_eq!(daemon.status()?, Status::Running(pid));
/// let stopped = daemon.stop()?;                     // SIGTERM, then waits for the exit
/// assert_eq!(stopped.pid(), Some(pid));
/// assert_eq!(daemon.status()?, Status::NotRunning);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Daemon {
    engine: Engine,
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Daemon")
            .field("name", &self.name())
            .field("pidfile", &self.pidfile())
            .finish_non_exhaustive()
    }
}

impl Daemon {
    pub(crate) fn new(engine: Engine) -> Daemon {
        Daemon { engine }
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pidfile's absolute path.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder().pidfile("tool.pid").step(|| {}).build()?;
    /// assert!(daemon.pidfile().ends_with("tool.pid"));
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn pidfile(&self) -> &Path {
        &self.engine.settings().pidfile
    }

    /// The name the daemon logs under.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder().name("counter").pidfile("c.pid").step(|| {}).build()?;
    /// assert_eq!(daemon.name(), "counter");
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.engine.name()
    }

    /// Start the daemon in the background and return its pid once it is up.
    ///
    /// The daemon(7) procedure: fork, `setsid`, fork again (the intermediate process is reaped
    /// here); in the daemon, set the umask and working directory, take the pidfile's lock,
    /// redirect stdin to `/dev/null` and stdout/stderr to their files, close descriptors
    /// inherited through `exec`, reset signal dispositions and the mask, install the signal
    /// handling, then report through a pipe. This call returns when that report arrives, with
    /// the daemon's own error if it failed, so `start()` returning `Ok` means the daemon is
    /// running.
    ///
    /// In the daemon this function never returns: it runs the body and exits, with code 0 after
    /// a graceful stop and 1 after a failure (a panic, a step error, a failed stop handler).
    /// It leaves with `_exit` once stdout (Rust's and C's) is flushed: `atexit` handlers, which
    /// it inherited from the caller, do not run in it.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] with the running instance's pid; [`Error::Threads`] when this
    /// process already runs other threads, or cannot tell how many it runs (fork would copy only
    /// one of them); [`Error::Fork`] when a fork fails (the process limit of the user);
    /// [`Error::InsideRuntime`] when it is called from inside a tokio runtime (with the `tokio`
    /// feature; a current-thread runtime runs no other thread, but its state would not survive
    /// the fork either); the daemon's
    /// start-up errors ([`Error::MissingDirectory`], [`Error::Io`] for a permission problem,
    /// [`Error::Symlink`], ...); [`Error::StartTimeout`] when it did not report within the ready
    /// timeout (it is then killed).
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use daemons::{Daemon, Error};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let daemon = Daemon::builder()
    ///     .pidfile(dir.path().join("missing/dir/x.pid"))
    ///     .step(|| {})
    ///     .build()?;
    /// // The daemon's own failure reaches the caller, typed.
    /// assert!(matches!(daemon.start(), Err(Error::MissingDirectory { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(&self) -> Result<Pid, Error> {
        #[cfg(feature = "tokio")]
        if crate::engine::body::asynchronous::inside_runtime() {
            return Err(Error::InsideRuntime);
        }
        if let Some(pid) = self.engine.pidfile().probe()?.pid() {
            return Err(Error::AlreadyRunning {
                pidfile: self.pidfile().to_path_buf(),
                pid: Some(pid),
            });
        }
        self.start_after(None)
    }

    /// Start a daemon; with `predecessor`, a successor of that running instance, which hands it
    /// its listening sockets and its pidfile's path.
    fn start_after(&self, predecessor: Option<&control::Process>) -> Result<Pid, Error> {
        // Listed before the fork, where /proc/self is cheap to read; closed in the daemon.
        let inherited = inherited_fds();
        match detach()? {
            Side::Caller(pending) => {
                let started = pending.wait(self.engine.settings().ready_timeout);
                if let Err(Error::StartTimeout { .. }) = started {
                    // The daemon was killed before it could remove its pidfile.
                    let _ = self.engine.pidfile().remove();
                }
                started
            }
            Side::Daemon(reporter) => {
                // The caller pinned its predecessor with a pidfd, which this copy would keep for
                // its whole life.
                if let Some(predecessor) = predecessor {
                    // SAFETY: this is the daemon's side of the fork, which never returns into the
                    // caller's frames that own `predecessor` (`serve_detached_and_exit` ends
                    // with `_exit`).
                    unsafe { predecessor.forget_in_this_copy() };
                }
                self.engine.serve_detached_and_exit(Launch::Detached(
                    reporter,
                    inherited,
                    predecessor.is_some(),
                ))
            }
        }
    }

    /// Run the daemon in the foreground: the same engine as [`start`](Daemon::start), without
    /// forking, redirecting or changing directory. For systemd's `Type=simple`/`notify`,
    /// containers, debugging and tests. Ctrl-C (SIGINT) stops it gracefully, like SIGTERM.
    ///
    /// Returns when the body has finished and the stop handlers have run; the pidfile is
    /// removed by then.
    ///
    /// # PID 1
    ///
    /// As the first process of a pid namespace (a container's entrypoint), `run()` forks: PID 1
    /// stays a small init that reaps every orphan of the namespace and forwards SIGTERM, SIGINT,
    /// SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM and SIGCONT to the daemon, which runs
    /// as its only child; PID 1 then exits with the daemon's exit code (128 plus the signal's
    /// number if a signal ended it), and `run()` does not return. The body's own children are
    /// the daemon's, so `Command::wait` keeps their exit status. A process that already runs
    /// other threads, or cannot tell how many it runs (no `/proc` mounted), cannot fork safely:
    /// it then runs the daemon as PID 1 itself, says so in its log, and orphans are not reaped
    /// (use `tini` or `docker run --init` there).
    ///
    /// # Platform-specific behavior
    ///
    /// signal-hook cannot give a signal back to its default action once it has caught it: after
    /// `run()` returns, SIGTERM, SIGINT, SIGQUIT and SIGHUP stay caught by a handler that does
    /// nothing, so a process that goes on after `run()` is no longer ended by them.
    ///
    /// # Errors
    ///
    /// The pidfile's errors ([`Error::AlreadyRunning`], ...); [`Error::Body`] when the body
    /// panicked or a step failed; [`Error::StopHandler`] when a stop signal's handler panicked.
    /// With [`restart`](crate::DaemonBuilder::restart), the body runs in a child process:
    /// [`Error::Threads`] when this process runs other threads (or cannot tell how many), which
    /// a fork would not copy, and [`Error::Fork`] when the first child cannot be forked.
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use daemons::Daemon;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut left = 3;
    /// let daemon = Daemon::builder()
    ///     .pidfile(dir.path().join("fg.pid"))
    ///     .run(move |_ctl| {
    ///         while left > 0 {
    ///             left -= 1;
    ///         }
    ///     })
    ///     .build()?;
    /// daemon.run()?;                                   // returns when the body does
    /// assert!(!dir.path().join("fg.pid").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self) -> Result<(), Error> {
        match init::split()? {
            // The daemon proper, here or under a PID 1 that reaps for it: the caller's code goes
            // on in it after `run()`, as it would without the split.
            Role::Daemon | Role::Child => self.engine.serve(Launch::Foreground),
            Role::Unsplit(why) => {
                self.engine.log().log(&format!(
                    "running as PID 1 without an init of its own ({why}): orphans of this pid namespace are not reaped (run it under tini, or `docker run --init`)"
                ));
                self.engine.serve(Launch::Foreground)
            }
            Role::Init(code) => std::process::exit(code),
        }
    }

    /// Stop the daemon: SIGTERM, a wait for its exit (a poll on a pidfd, no sleep loop), SIGKILL
    /// after the stop timeout. A pidfile left behind is removed. Stopping a daemon that is not
    /// running is not an error: it returns [`Stopped::NotRunning`].
    ///
    /// # Errors
    ///
    /// [`Error::StillAlive`] if even SIGKILL did not end it; [`Error::Untrusted`] and the other
    /// pidfile errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder().pidfile("/tmp/doc-never-started.pid").step(|| {}).build()?;
    /// assert_eq!(daemon.stop()?, daemons::Stopped::NotRunning);
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn stop(&self) -> Result<Stopped, Error> {
        control::stop(&self.engine.pidfile(), self.engine.settings().stop_timeout)
    }

    /// Stop the daemon if it runs, then start it; for a daemon with listening sockets, hand them
    /// to a new instance instead, so that no connection is refused.
    ///
    /// A daemon with listening sockets ([`listen`](crate::DaemonBuilder::listen)) restarts
    /// without refusing a connection: the new instance gets the running one's sockets (the same
    /// queue of waiting connections) and its pidfile's lock, runs its set-up, takes over, and
    /// reports ready; the old one then stops itself, as SIGTERM would stop it, finishing what it
    /// has accepted, and this call returns once it has exited (it is stopped as `stop()` would
    /// stop it if it has not within the stop timeout). Killing the caller meanwhile changes
    /// nothing: the two instances finish the handover by themselves. `status` names one of them
    /// all along. One restart runs at a time: a second one that comes during the handover fails
    /// with [`HandoverKind::Busy`](crate::HandoverKind::Busy). When the sockets cannot be handed
    /// over (nothing offers them, something else is at `PIDFILE.handover`, the running instance
    /// does not answer, its path is too long...: an [`Error::Handover`] of another kind), this
    /// falls back to stop, then start; [`Restarted`] says which happened.
    ///
    /// # Errors
    ///
    /// Those of [`stop`](Daemon::stop) and [`start`](Daemon::start); a new instance that fails
    /// leaves the running one as it was; [`Error::Handover`] with
    /// [`HandoverKind::Busy`](crate::HandoverKind::Busy) when another restart is under way.
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// let dir = tempfile::tempdir()?;
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile(dir.path().join("r.pid"))
    ///     .run(|ctl| while ctl.sleep(std::time::Duration::from_secs(1)) {})
    ///     .build()?;
    /// let first = daemon.start()?;
    /// let second = daemon.restart()?;
    /// assert_ne!(first, second.pid());
    /// assert!(!second.handed_over());                // no listening socket: stopped, then started
    /// daemon.stop()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restart(&self) -> Result<Restarted, Error> {
        let settings = self.engine.settings();
        let mut fallback = None;
        if self.hands_over() {
            let pidfile = self.engine.pidfile();
            if let Some(old) = control::Process::holding(&pidfile)? {
                match self.start_after(Some(&old)) {
                    Ok(new) => {
                        // It stops by itself once the new instance took over; one that was
                        // stopped with SIGSTOP, or is stuck, is stopped as `stop()` would.
                        control::stop_process(&old, settings.stop_timeout)?;
                        // Another restart may have come right after this one: the daemon that
                        // holds the pidfile now is the one to name.
                        let pid = pidfile.probe().ok().and_then(|s| s.pid()).unwrap_or(new);
                        return Ok(Restarted::HandedOver {
                            pid,
                            old: old.pid(),
                        });
                    }
                    Err(
                        e @ Error::Handover {
                            kind: HandoverKind::Busy,
                            ..
                        },
                    ) => return Err(e),
                    Err(e @ Error::Handover { .. }) => fallback = Some(e),
                    Err(e) => return Err(e),
                }
            }
        }
        let stopped = self.stop()?;
        let pid = self.start()?;
        Ok(Restarted::StoppedThenStarted {
            pid,
            stopped,
            fallback,
        })
    }

    /// Whether a restart hands the listening sockets over (see [`restart`](Daemon::restart)).
    pub(crate) fn hands_over(&self) -> bool {
        let settings = self.engine.settings();
        !settings.listen.is_empty() && settings.restart.is_none()
    }

    /// Whether the daemon runs, judged by the pidfile's lock rather than by the pid in it.
    ///
    /// # Errors
    ///
    /// [`Error::Symlink`], [`Error::NotAFile`] or [`Error::Untrusted`] for a pidfile that cannot
    /// be trusted.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder().pidfile("/tmp/doc-status.pid").step(|| {}).build()?;
    /// assert_eq!(daemon.status()?, daemons::Status::NotRunning);
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn status(&self) -> Result<Status, Error> {
        self.engine.pidfile().probe()
    }

    /// The running daemon's pid, or `None` when it is not running.
    ///
    /// # Errors
    ///
    /// As [`status`](Daemon::status).
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder().pidfile("/tmp/doc-pid.pid").step(|| {}).build()?;
    /// assert_eq!(daemon.pid()?, None);
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn pid(&self) -> Result<Option<Pid>, Error> {
        Ok(self.status()?.pid())
    }

    /// Send `signal` to the running daemon and return its pid. The pid is checked against the
    /// pidfile's lock and signalled through a pidfd, so a reused pid is never hit.
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] when the daemon does not run.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Daemon, Error, Signal};
    ///
    /// let daemon = Daemon::builder().pidfile("/tmp/doc-send.pid").step(|| {}).build()?;
    /// assert!(matches!(daemon.send(Signal::SIGHUP), Err(Error::NotRunning { .. })));
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn send(&self, signal: Signal) -> Result<Pid, Error> {
        control::send(&self.engine.pidfile(), signal)
    }
}

/// How a [`restart`](Daemon::restart) went: the sockets handed over, or a stop, then a start.
///
/// # Examples
///
/// ```
/// use daemons::{Pid, Restarted, Stopped};
///
/// let r = Restarted::StoppedThenStarted { pid: Pid::from_raw(43), stopped: Stopped::NotRunning, fallback: None };
/// assert_eq!(r.pid(), Pid::from_raw(43));
/// assert!(!r.handed_over());
/// assert_eq!(r.to_string(), "restarted (pid 43)");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Restarted {
    /// The new instance took the listening sockets and the pidfile over from the running one:
    /// no connection was refused, and the old instance has exited.
    HandedOver {
        /// The daemon that holds the pidfile now: the new instance (or, if another restart came
        /// right after this one, that one's).
        pid: Pid,
        /// The instance that handed its sockets over.
        old: Pid,
    },
    /// The running instance, if any, was stopped, then a new one started.
    StoppedThenStarted {
        /// The new instance.
        pid: Pid,
        /// How the running one was stopped.
        stopped: Stopped,
        /// Why the sockets were not handed over, for a daemon with listening sockets whose
        /// handover failed ([`Error::Handover`]); `None` when none was tried.
        fallback: Option<Error>,
    },
}

impl Restarted {
    /// The daemon that runs now.
    ///
    /// # Examples
    ///
    /// See [`Restarted`].
    pub fn pid(&self) -> Pid {
        match self {
            Restarted::HandedOver { pid, .. } | Restarted::StoppedThenStarted { pid, .. } => *pid,
        }
    }

    /// Whether the listening sockets were handed over, so that no connection was refused.
    ///
    /// # Examples
    ///
    /// See [`Restarted`].
    pub fn handed_over(&self) -> bool {
        matches!(self, Restarted::HandedOver { .. })
    }
}

impl fmt::Display for Restarted {
    /// `restarted (pid 43, on the same sockets)`, or `restarted (pid 43)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restarted::HandedOver { pid, .. } => {
                write!(f, "restarted (pid {pid}, on the same sockets)")
            }
            Restarted::StoppedThenStarted { pid, .. } => write!(f, "restarted (pid {pid})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Daemon>();
    }
}
