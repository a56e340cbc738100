//! Replacing the running instance: [`Daemon::restart`], a handover of the listening sockets to a
//! new instance where there are some, else a stop, then a start; [`Restarted`] says which.

use std::fmt;

use crate::Pid;

use crate::control::{self, Stopped};
use crate::error::{Error, HandoverKind};
use crate::handle::daemon::Daemon;

impl Daemon {
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
    /// with [`HandoverKind::Busy`]. When the sockets cannot be handed
    /// over (nothing offers them, something else is at `PIDFILE.handover`, the running instance
    /// does not answer, its path is too long...: an [`Error::Handover`] of another kind), this
    /// falls back to stop, then start; [`Restarted`] says which happened.
    ///
    /// # Errors
    ///
    /// Those of [`stop`](Daemon::stop) and [`start`](Daemon::start); a new instance that fails
    /// leaves the running one as it was; [`Error::Handover`] with
    /// [`HandoverKind::Busy`] when another restart is under way.
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
        self.restart_saying(|_, _| {})
    }

    /// [`restart`](Daemon::restart), saying how the running instance was stopped (and why its
    /// sockets were not handed over, when they could not be) as soon as it is, before the start:
    /// the command line prints it then.
    pub(super) fn restart_saying(
        &self,
        stopped: impl FnOnce(&Stopped, Option<&Error>),
    ) -> Result<Restarted, Error> {
        let settings = self.engine().settings();
        let mut fallback = None;
        if settings.hands_over() {
            let pidfile = self.engine().pidfile();
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
        let how = self.stop()?;
        stopped(&how, fallback.as_ref());
        let pid = self.start()?;
        Ok(Restarted::StoppedThenStarted {
            pid,
            stopped: how,
            fallback,
        })
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
/// assert_eq!(r.to_string(), "not running; started (pid 43)");
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
    #[must_use]
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
    #[must_use]
    pub fn handed_over(&self) -> bool {
        matches!(self, Restarted::HandedOver { .. })
    }
}

impl fmt::Display for Restarted {
    /// What `restart` says, one format per way it went: the sockets handed over; a stop, then a
    /// start; and the same after a handover that failed, which says why first.
    ///
    /// ```
    /// use daemons::{Error, HandoverKind, Pid, Restarted, Stopped};
    /// use std::time::Duration;
    ///
    /// let (old, pid) = (Pid::from_raw(42), Pid::from_raw(43));
    /// let handed = Restarted::HandedOver { pid, old };
    /// assert_eq!(handed.to_string(), "restarted (pid 43, on the same sockets)");
    ///
    /// let stopped = Stopped::Exited { pid: old, after: Duration::from_millis(3) };
    /// let again = Restarted::StoppedThenStarted { pid, stopped, fallback: None };
    /// assert_eq!(again.to_string(), "stopped (pid 42, after 3 ms); started (pid 43)");
    ///
    /// let fallback = Some(Error::Handover {
    ///     pidfile: "/run/x.pid".into(),
    ///     kind: HandoverKind::Unresponsive,
    ///     reason: "no answer within 2s".into(),
    /// });
    /// let instead = Restarted::StoppedThenStarted { pid, stopped, fallback };
    /// assert_eq!(
    ///     instead.to_string(),
    ///     "cannot hand the listening sockets of the daemon of pidfile /run/x.pid over: no answer \
    ///      within 2s; stopping, then starting instead: stopped (pid 42, after 3 ms); started (pid 43)"
    /// );
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restarted::HandedOver { pid, .. } => {
                write!(f, "restarted (pid {pid}, on the same sockets)")
            }
            Restarted::StoppedThenStarted {
                pid,
                stopped,
                fallback,
            } => {
                if let Some(why) = fallback {
                    write!(f, "{why}; stopping, then starting instead: ")?;
                }
                write!(f, "{stopped}; started (pid {pid})")
            }
        }
    }
}
