//! The handle: start, stop, status, pid, send and run, from the caller's side (`restart` is in
//! `restart.rs`).

use std::cell::Cell;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::{Pid, Signal};

use crate::control::{self, Stopped};
use crate::detach::{Side, detach, inherited_fds};
use crate::engine::{Detached, Engine};
use crate::error::{Error, Tenths};
use crate::pidfile::Status;
use crate::sys;

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
    commands: Vec<Command>,
}

/// What a command of the program's own runs (see
/// [`DaemonBuilder::command`](crate::DaemonBuilder::command)).
pub(super) type CommandFn =
    dyn Fn(&Daemon) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync;

/// A command of the program's own on the command line, beside the built-in ones.
pub(super) struct Command {
    pub(super) name: String,
    pub(super) help: String,
    pub(super) run: Box<CommandFn>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("help", &self.help)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Daemon")
            .field("name", &self.name())
            .field("pidfile", &self.pidfile())
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    pub(super) fn new(engine: Engine, commands: Vec<Command>) -> Daemon {
        Daemon { engine, commands }
    }

    /// The program's own commands, in the order they were given.
    pub(super) fn commands(&self) -> &[Command] {
        &self.commands
    }

    pub(super) fn engine(&self) -> &Engine {
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
        if crate::engine::asynchronous::inside_runtime() {
            return Err(Error::InsideRuntime);
        }
        if let Some(pid) = self.engine.pidfile().probe()?.pid() {
            self.same_program(pid)?;
            return Err(Error::AlreadyRunning {
                pidfile: self.pidfile().to_path_buf(),
                pid: Some(pid),
            });
        }
        self.start_after(None)
    }

    /// Start a daemon; with `predecessor`, a successor of that running instance, which hands it
    /// its listening sockets and its pidfile's path.
    pub(super) fn start_after(&self, predecessor: Option<&control::Process>) -> Result<Pid, Error> {
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
                    // caller's frames that own `predecessor` (`serve_detached` ends with
                    // `_exit`).
                    unsafe { predecessor.forget_in_this_copy() };
                }
                self.engine.serve_detached(Detached {
                    reporter,
                    inherited,
                    successor: predecessor.is_some(),
                })
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
    /// # A second Ctrl-C
    ///
    /// A second stop signal (a second Ctrl-C, or SIGTERM, SIGINT, SIGQUIT) that comes while the
    /// body is still returning forces the end at once instead of after the
    /// [grace](crate::DaemonBuilder::stop_grace): the body is abandoned, the stop signal's
    /// handlers and the [stop hooks](crate::DaemonBuilder::on_stop) run (once: none has run
    /// yet), the pidfile goes, and the process exits with 128 plus the second signal's number
    /// (130 for Ctrl-C, as shells report a process that SIGINT ended) without returning from
    /// `run()`. Once the body has returned, the handlers and hooks are let finish. A detached
    /// daemon (`start()`) has no such rule: its stop is `stop()`'s or the service manager's,
    /// which send SIGKILL after their timeout.
    ///
    /// # Two meanings of `run`, kept on purpose
    ///
    /// `Daemon::run()` runs the daemon in the foreground, as the command line's `run` does;
    /// [`DaemonBuilder::run`](crate::DaemonBuilder::run) gives the daemon a body that loops by
    /// itself. The two never meet in one place (a builder's method that takes a closure, a
    /// handle's that takes nothing); the commands of [`cli`](Daemon::cli) are named after the
    /// handle's methods (`start`, `stop`, `restart`, `status`, `run`), a correspondence that a
    /// rename of either would break; and the body keeps the name of the Python original's
    /// `RunDaemon`, whose users look for it.
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
    /// failed or panicked: unsupervised, its `source()` is the body's own error value (for a step
    /// or `get`, the source of one that says which), for `downcast_ref`; [`Error::StopHandler`]
    /// when a stop signal's handler panicked or a stop hook failed.
    /// With [`supervise`](crate::DaemonBuilder::supervise), the body runs in a child process:
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
        self.engine.serve_in_foreground()
    }

    /// Stop the daemon: SIGTERM, a wait for its exit (a poll on a pidfd, no sleep loop), SIGKILL
    /// after the stop timeout. A pidfile left behind is removed. Stopping a daemon that is not
    /// running is not an error: it returns [`Stopped::NotRunning`].
    ///
    /// # Errors
    ///
    /// [`Error::OtherProgram`] when the pidfile's holder runs another program, and
    /// [`Error::NotPermitted`] when the system refuses the signal (another user's daemon):
    /// nothing is signalled then. [`Error::StillAlive`] if even SIGKILL did not end it;
    /// [`Error::Untrusted`] and the other
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
        let holder = Cell::new(None);
        let verify = self.verifier(&holder);
        let timeout = self.engine.settings().stop_timeout;
        control::stop_verified(&self.engine.pidfile(), timeout, &verify)
            .map_err(|e| self.not_permitted(e, holder.get()))
    }

    /// Whether the daemon runs, judged by the pidfile's lock rather than by the pid in it.
    ///
    /// # Errors
    ///
    /// [`Error::OtherProgram`] when the pidfile's holder runs another program than this one (two
    /// programs given one pidfile). [`Error::Symlink`], [`Error::NotAFile`] or
    /// [`Error::Untrusted`] for a pidfile that cannot
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
        let status = self.engine.pidfile().probe()?;
        if let Some(pid) = status.pid() {
            self.same_program(pid)?;
        }
        Ok(status)
    }

    /// What `stop` and `send` ask of the holder before they signal it: that it runs this
    /// program. The pid it was asked about is kept in `holder`, for the error of a refused signal.
    fn verifier<'a>(
        &'a self,
        holder: &'a Cell<Option<Pid>>,
    ) -> impl Fn(Pid) -> Result<(), Error> + 'a {
        move |pid| {
            holder.set(Some(pid));
            self.same_program(pid)
        }
    }

    /// [`Error::OtherProgram`] when `pid`, the pidfile's holder, runs another program than this
    /// one. The executables are compared by path and, where the paths differ, by file name: a
    /// program upgraded in place (`/proc` says "(deleted)" of the old file) or the same program
    /// installed elsewhere (`target/release/counter` and `/usr/local/bin/counter`) is the same
    /// program. Where either executable cannot be read (another user's process), nothing is
    /// claimed.
    fn same_program(&self, pid: Pid) -> Result<(), Error> {
        let (Some(theirs), Some(ours)) = (sys::executable(pid), sys::executable(Pid::this()))
        else {
            return Ok(());
        };
        if theirs == ours || theirs.file_name() == ours.file_name() {
            return Ok(());
        }
        Err(Error::OtherProgram {
            pidfile: self.pidfile().to_path_buf(),
            pid,
            program: theirs,
        })
    }

    /// `error`, or [`Error::NotPermitted`] when it is the system's refusal to signal `holder`,
    /// naming the pidfile's owner, who started the daemon and may stop it.
    fn not_permitted(&self, error: Error, holder: Option<Pid>) -> Error {
        match (&error, holder) {
            (Error::Sys { source, .. }, Some(pid))
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                let uid = std::fs::metadata(self.pidfile()).map(|m| m.uid()).ok();
                let user = uid.map_or("another user".to_owned(), |uid| {
                    nix::unistd::User::from_uid(uid.into())
                        .ok()
                        .flatten()
                        .map_or(uid.to_string(), |user| user.name)
                });
                Error::NotPermitted {
                    pidfile: self.pidfile().to_path_buf(),
                    pid,
                    user,
                }
            }
            _ => error,
        }
    }

    /// Whether the daemon runs and its body showed life within the
    /// [`health_period`](crate::DaemonBuilder::health_period): the liveness that a container's
    /// health check wants, which sees a wedged body, not only a dead one. Each sign of life of
    /// the body (see `health_period`) sets the pidfile's modification time, which this reads; a
    /// supervised body's signs reach its supervisor, which sets it.
    ///
    /// # Errors
    ///
    /// As [`status`](Daemon::status).
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Health;
    ///
    /// let daemon = daemons::Daemon::builder().pidfile("/tmp/doc-health.pid").step(|| {}).build()?;
    /// assert_eq!(daemon.health()?, Health::NotRunning);
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn health(&self) -> Result<Health, Error> {
        let status = self.status()?;
        let Some(pid) = status.pid().filter(|_| status.is_running()) else {
            return Ok(Health::NotRunning);
        };
        let period = self.engine.settings().health_period;
        let quiet = std::fs::symlink_metadata(self.pidfile())
            .and_then(|m| m.modified())
            .map(|at| at.elapsed().unwrap_or_default())
            .map_err(|e| Error::io(crate::Action::OpenPidfile, self.pidfile(), e))?;
        Ok(match quiet <= period {
            true => Health::Healthy { pid, quiet },
            false => Health::Wedged { pid, quiet, period },
        })
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
    /// [`Error::NotRunning`] when the daemon does not run; [`Error::OtherProgram`] and
    /// [`Error::NotPermitted`] as for [`stop`](Daemon::stop).
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
        let holder = Cell::new(None);
        let verify = self.verifier(&holder);
        control::send_verified(&self.engine.pidfile(), signal, &verify)
            .map_err(|e| self.not_permitted(e, holder.get()))
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

/// What [`Daemon::health`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The daemon runs, and its body showed life `quiet` ago.
    Healthy {
        /// The daemon's pid.
        pid: Pid,
        /// How long ago the body last showed life.
        quiet: Duration,
    },
    /// The daemon runs, but its body has shown no life for `quiet`, longer than `period`.
    Wedged {
        /// The daemon's pid.
        pid: Pid,
        /// How long ago the body last showed life.
        quiet: Duration,
        /// The health period it exceeds.
        period: Duration,
    },
    /// No daemon runs.
    NotRunning,
}

impl std::fmt::Display for Health {
    /// What the command line's `health` prints.
    ///
    /// ```
    /// use daemons::{Health, Pid};
    /// use std::time::Duration;
    ///
    /// let h = Health::Healthy { pid: Pid::from_raw(42), quiet: Duration::from_millis(1500) };
    /// assert_eq!(h.to_string(), "healthy (pid 42; alive 1.5s ago)");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Healthy { pid, quiet } => {
                write!(f, "healthy (pid {pid}; alive {}s ago)", Tenths(*quiet))
            }
            Health::Wedged { pid, quiet, period } => write!(
                f,
                "wedged (pid {pid}): its body has shown no life for {}s, longer than {}s",
                Tenths(*quiet),
                Tenths(*period)
            ),
            Health::NotRunning => write!(f, "not running"),
        }
    }
}
