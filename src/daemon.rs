//! The handle: start, stop, restart, status, pid, send, and the engine that runs in the daemon.

use std::fmt;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::Signal;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Pid, chdir};

use crate::body::{Body, Ctl, Log, StepPlan, drive};
use crate::builder::{DaemonBuilder, Settings};
use crate::control::{self, Stopped};
use crate::detach::{
    Side, close_inherited_fds, close_listed_fds, detach, inherited_fds, redirect_stdio,
};
use crate::error::Error;
use crate::notify::{Notifier, watchdog_period};
use crate::pidfile::{Pidfile, PidfileLock, State};
use crate::pool::PoolPlan;
use crate::privileges::Credentials;
use crate::signals::{Catcher, Handlers, Reload, catch};

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
    settings: Settings,
    credentials: Credentials,
    name: String,
    log: Log,
    plan: StepPlan,
    body: Mutex<Body>,
    handlers: Arc<Mutex<Handlers>>,
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Daemon")
            .field("name", &self.name)
            .field("pidfile", &self.settings.pidfile)
            .finish_non_exhaustive()
    }
}

/// What [`Daemon::status`] found.
///
/// # Examples
///
/// ```
/// use daemons::{Pid, Status};
///
/// assert!(Status::Running(Pid::from_raw(1)).is_running());
/// assert!(!Status::Dead { pid: None }.is_running());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The daemon runs with this pid (it holds the pidfile's lock).
    Running(Pid),
    /// The pidfile is locked by a daemon that is still starting.
    Starting,
    /// The daemon is gone but left its pidfile behind (it was killed, or crashed). `pid` is what
    /// the file names, which may now be an unrelated process: it is never signalled.
    Dead {
        /// The pid written in the stale pidfile, if any.
        pid: Option<Pid>,
    },
    /// There is no pidfile: the daemon is not running.
    NotRunning,
}

impl Status {
    /// Whether a daemon process is alive (running or starting).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!daemons::Status::NotRunning.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running(_) | Status::Starting)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Running(pid) => write!(f, "running (pid {pid})"),
            Status::Starting => f.write_str("starting"),
            Status::Dead { pid: Some(pid) } => {
                write!(f, "not running (stale pidfile names pid {pid})")
            }
            Status::Dead { pid: None } => f.write_str("not running (stale pidfile)"),
            Status::NotRunning => f.write_str("not running"),
        }
    }
}

/// How the daemon is being run.
enum Launch {
    /// After `start()`'s fork: do every daemon(7) step and report to the caller.
    /// The descriptors to close are those the caller listed before the fork (see
    /// [`inherited_fds`]), or, if it could not, those the daemon finds itself.
    Detached(crate::detach::Reporter, Result<Vec<RawFd>, Error>),
    /// `run()`: the same engine in the calling process, nothing forked or redirected.
    Foreground,
}

impl Daemon {
    /// A builder for a daemon.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-builder.pid")
    ///     .step(|| {})
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// Put the engine together from checked settings and the closures taken out of them.
    pub(crate) fn new(
        settings: Settings,
        credentials: Credentials,
        body: Body,
        handlers: Handlers,
    ) -> Daemon {
        let name = settings.name.clone().unwrap_or_else(default_name);
        let plan = StepPlan {
            interval: settings.interval.unwrap_or_default(),
            keep_going: settings.keep_going,
            pool: PoolPlan {
                size: settings.pool_size,
                idle_time: settings.idle_time,
            },
        };
        Daemon {
            settings,
            credentials,
            log: Log::new(&name),
            name,
            plan,
            body: Mutex::new(body),
            handlers: Arc::new(Mutex::new(handlers)),
        }
    }

    #[cfg(test)]
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
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
        &self.settings.pidfile
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
        &self.name
    }

    fn pidfile_handle(&self) -> Pidfile {
        Pidfile::new(&self.settings.pidfile)
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
    /// process already runs other threads (fork would copy only one of them); the daemon's
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
        if let State::Running(pid) = self.pidfile_handle().probe()? {
            return Err(Error::AlreadyRunning {
                pidfile: self.settings.pidfile.clone(),
                pid: Some(pid),
            });
        }
        let threads = thread_count();
        if threads > 1 {
            return Err(Error::Threads { count: threads });
        }
        // Listed before the fork, where /proc/self is cheap to read; closed in the daemon.
        let inherited = inherited_fds();
        match detach()? {
            Side::Caller(pending) => {
                let started = pending.wait(self.settings.ready_timeout);
                if let Err(Error::StartTimeout { .. }) = started {
                    // The daemon was killed before it could remove its pidfile.
                    let _ = self.pidfile_handle().remove();
                }
                started
            }
            Side::Daemon(reporter) => {
                // Whatever happens, the daemon must not unwind into the caller's code: it is a
                // copy of the caller, and would go on running it.
                let served = catch_unwind(AssertUnwindSafe(|| {
                    self.serve(Launch::Detached(reporter, inherited))
                }));
                let code = match served {
                    Ok(Ok(())) => 0,
                    Ok(Err(_)) | Err(_) => 1,
                };
                // Leave with `_exit`, as the middle process does: the exit handlers of this copy
                // are the caller's, and running them (libc's and the loader's among them) copies
                // a page at each write, ~20 µs of every stop. Only the buffers need flushing, and
                // what they hold is the daemon's own: `detach` flushed the caller's.
                let _ = std::io::Write::flush(&mut std::io::stdout());
                // SAFETY: fflush(NULL) flushes every C stdio stream and touches no Rust object.
                unsafe { libc::fflush(std::ptr::null_mut()) };
                // SAFETY: `_exit` ends the process at once; nothing runs after it.
                unsafe { libc::_exit(code) }
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
        self.serve(Launch::Foreground)
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
        control::stop(&self.pidfile_handle(), self.settings.stop_timeout)
    }

    /// Stop the daemon if it runs, then start it.
    ///
    /// # Errors
    ///
    /// Those of [`stop`](Daemon::stop) and [`start`](Daemon::start).
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
    /// assert_ne!(first, second);
    /// daemon.stop()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restart(&self) -> Result<Pid, Error> {
        self.stop()?;
        self.start()
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
        Ok(match self.pidfile_handle().probe()? {
            State::Absent => Status::NotRunning,
            State::Running(pid) => Status::Running(pid),
            State::Starting => Status::Starting,
            State::Stale(pid) => Status::Dead { pid },
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
        Ok(match self.status()? {
            Status::Running(pid) => Some(pid),
            _ => None,
        })
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
        control::send(&self.pidfile_handle(), signal)
    }

    /// The engine, in the daemon or in the foreground: take the pidfile, catch signals, report,
    /// run the body, run the stop handlers, remove the pidfile.
    fn serve(&self, launch: Launch) -> Result<(), Error> {
        let (mut reporter, inherited) = match launch {
            Launch::Detached(reporter, inherited) => (Some(reporter), Some(inherited)),
            Launch::Foreground => (None, None),
        };
        let detached = inherited.is_some();
        let Prepared {
            lock,
            catcher,
            ctl,
            reload,
        } = match self.prepare(inherited) {
            Ok(prepared) => prepared,
            Err(error) => {
                if let Some(reporter) = reporter.as_mut() {
                    reporter.fail(&error);
                }
                return Err(error);
            }
        };
        if let Some(reporter) = reporter {
            ctl.shared().await_ready(reporter);
        }
        // Ready before the control thread exists: the signals are caught already, and the
        // caller need not wait for a thread to be spawned.
        if !self.settings.manual_ready {
            ctl.shared().report_ready();
        }
        let listener = match catcher.listen(
            self.handlers.clone(),
            ctl.shared().clone(),
            reload,
            self.log.clone(),
        ) {
            Ok(listener) => listener,
            Err(error) => {
                self.log.log(&format!("stopping: {error}"));
                if let Some(mut reporter) = ctl.shared().unreported() {
                    reporter.fail(&error);
                }
                return Err(error);
            }
        };

        let outcome = {
            let mut body = self.body.lock().unwrap_or_else(PoisonError::into_inner);
            drive(&mut body, self.plan, &ctl, &self.log)
        };
        if !ctl.running() {
            ctl.shared().tell_stopping();
        }
        // No handler may run after the pidfile is gone.
        if detached {
            listener.close();
        } else {
            listener.release();
        }
        let mut result = outcome.map_err(|message| {
            self.log.log(&format!("stopping: {message}"));
            Error::Body { message }
        });
        if let Some(signal) = ctl.shared().stop_signal() {
            let mut handlers = self.handlers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(message) = handlers.run(signal, &self.log) {
                result = result.and(Err(Error::StopHandler { message }));
            }
        }
        match lock.release() {
            // Once root is dropped the daemon may not be allowed to unlink root's pidfile;
            // `stop()` removes it after the exit.
            Err(e) if self.credentials.is_set() && is_permission_denied(&e) => {}
            Err(e) => self.log.log(&e.to_string()),
            Ok(()) => {}
        }
        if let Some(mut reporter) = ctl.shared().unreported() {
            let message = match &result {
                Err(Error::Body { message }) => message.clone(),
                Err(e) => e.to_string(),
                Ok(()) => "the body returned before it called ctl.ready()".to_string(),
            };
            reporter.fail(&Error::Body { message });
        }
        result
    }

    /// Everything before the body runs. On failure, the pidfile (if taken) is already removed.
    /// `inherited` is there when detached: the descriptors to close.
    fn prepare(&self, inherited: Option<Result<Vec<RawFd>, Error>>) -> Result<Prepared, Error> {
        let s = &self.settings;
        let detached = inherited.is_some();
        if detached {
            umask(Mode::from_bits_truncate(s.umask as libc::mode_t));
            chdir(&s.workdir).map_err(|e| {
                Error::io(
                    "change to the working directory",
                    &s.workdir,
                    std::io::Error::from_raw_os_error(e as i32),
                )
            })?;
        }
        // First, so that its descriptor is the lowest free one: a probe looks there first.
        // From here on, an early return drops `lock`, which removes the pidfile.
        let lock = self.pidfile_handle().acquire()?;
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            self.log
                .log(&format!("NOTIFY_SOCKET is set but unusable: {e}"));
            None
        });
        let ctl =
            Ctl::notifying(notifier, watchdog_period().map(|period| period / 2)).map_err(|e| {
                Error::Sys {
                    call: "pipe",
                    source: e,
                }
            })?;
        let reload = Reload {
            notifier: ctl.shared().notifier(),
            logs: detached.then(|| (s.stdout.clone(), s.stderr.clone())),
        };
        if let Some(inherited) = inherited {
            redirect_stdio(s.stdout.as_deref(), s.stderr.as_deref())?;
            match inherited {
                Ok(fds) => close_listed_fds(&fds, &s.keep_fds),
                Err(_) => close_inherited_fds(&s.keep_fds)?,
            }
            // The logs are the daemon's: once it is no longer root it must still be able to
            // reopen them after a rotation.
            for log in [&s.stdout, &s.stderr].into_iter().flatten() {
                self.credentials.give(log)?;
            }
        }
        self.credentials.apply()?;
        let catcher = catch(&self.handlers, ctl.shared(), detached, &reload)?;
        Ok(Prepared {
            lock,
            catcher,
            ctl,
            reload,
        })
    }
}

/// What [`Daemon::prepare`] hands to the engine.
struct Prepared {
    lock: PidfileLock,
    catcher: Catcher,
    ctl: Ctl,
    reload: Reload,
}

fn is_permission_denied(e: &Error) -> bool {
    e.io_error()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
}

fn default_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "daemon".to_string())
}

/// How many threads this process runs, from `/proc/self/task`. Where that cannot be read the
/// answer is 1: the check is a guard against a known mistake, not a security boundary.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |dir| dir.count())
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
