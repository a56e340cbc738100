//! How a daemon ends, done once by whichever thread gets there first: the main thread once the
//! body has returned, or the keeper when the body does not return in time after a stop request
//! (a wrapped function, which knows nothing of `ctl`, at once). The end stops the signal thread,
//! runs the stop signal's handlers once, ends the children if asked, lets go of the pidfile, and
//! tells whoever still waits for the start why it failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Pid, Signal};

use crate::engine::lifecycle::Lifecycle;
use crate::engine::log::Log;
use crate::engine::readiness::Readiness;
use crate::engine::role::Role;
use crate::engine::signals::SignalThread;
use crate::engine::successors::Successors;
use crate::error::{Error, Failure, NotSignalled, UserError, chain_text};
use crate::gate::process::{self, Pinned, Refused, Target};
use crate::pidfile::PidfileLock;
use crate::sync::{Deadline, lock};
use crate::sys;

/// Everything the end of a daemon needs, shared by the main thread and the keeper.
pub(in crate::engine) struct Ending {
    claim: Claim,
    lifecycle: Arc<Lifecycle>,
    readiness: Arc<Readiness>,
    /// The signal thread and the user's handlers, until the end stops it.
    signals: Mutex<Option<SignalThread>>,
    /// The pidfile, unless this is a supervised child (its supervisor holds it). The keeper
    /// changes what is shared with a successor under its hold.
    pidfile: Mutex<Option<PidfileLock>>,
    successors: Successors,
    leaving: Leaving,
    log: Log,
}

/// How this daemon leaves.
#[derive(Debug, Clone, Copy)]
pub(in crate::engine) struct Leaving {
    pub(in crate::engine) role: Role,
    /// End the daemon's process group too, giving it this long after SIGTERM.
    pub(in crate::engine) stop_children: Option<Duration>,
    /// The daemon switched users, and may no longer unlink root's pidfile.
    pub(in crate::engine) dropped_privileges: bool,
}

/// What the engine hands over to [`Ending::new`].
pub(in crate::engine) struct Parts {
    pub(in crate::engine) lifecycle: Arc<Lifecycle>,
    pub(in crate::engine) readiness: Arc<Readiness>,
    pub(in crate::engine) signals: SignalThread,
    pub(in crate::engine) pidfile: Option<PidfileLock>,
    pub(in crate::engine) successors: Successors,
    pub(in crate::engine) leaving: Leaving,
    pub(in crate::engine) log: Log,
}

/// Which thread ends the daemon: the first to claim it.
struct Claim {
    claimed: AtomicBool,
    /// Set once the body has returned; the lifecycle's hurry pipe tells the keeper.
    body_done: AtomicBool,
}

/// How the daemon's body ended, for [`Ending::finish`].
enum Ended {
    /// It returned, with this outcome.
    Returned(Result<(), UserError>),
    /// It was abandoned after a stop request.
    Abandoned {
        /// A wrapped function: abandoning it is how it stops, not a failure.
        wrapped: bool,
    },
    /// It was abandoned at once, when a second stop signal forced the end during the stop.
    Forced(Signal),
    /// It never ran: the start failed before it (a set-up, a takeover). No hook runs, as
    /// nothing was started that could need one.
    NeverStarted,
}

impl Ending {
    pub(in crate::engine) fn new(parts: Parts) -> Arc<Ending> {
        Arc::new(Ending {
            claim: Claim {
                claimed: AtomicBool::new(false),
                body_done: AtomicBool::new(false),
            },
            lifecycle: parts.lifecycle,
            readiness: parts.readiness,
            signals: Mutex::new(Some(parts.signals)),
            pidfile: Mutex::new(parts.pidfile),
            successors: parts.successors,
            leaving: parts.leaving,
            log: parts.log,
        })
    }

    pub(in crate::engine) fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub(in crate::engine) fn pidfile(&self) -> &Mutex<Option<PidfileLock>> {
        &self.pidfile
    }

    /// Mark the pidfile as the body's sign of life (see `health`).
    pub(in crate::engine) fn mark_alive(&self) {
        if let Some(pidfile) = lock(&self.pidfile).as_ref() {
            pidfile.touch();
        }
    }

    pub(in crate::engine) fn successors(&self) -> &Successors {
        &self.successors
    }

    pub(in crate::engine) fn log(&self) -> &Log {
        &self.log
    }

    pub(in crate::engine) fn role(&self) -> Role {
        self.leaving.role
    }

    /// The body has returned with `outcome` (or never started: `Ok(())`): end the daemon, unless
    /// the keeper is ending it already (`None`), in which case it must be let finish.
    pub(in crate::engine) fn body_returned(
        &self,
        outcome: Result<(), UserError>,
    ) -> Option<Result<(), Error>> {
        self.end_from_main(Ended::Returned(outcome))
    }

    /// The start failed before the body ran: end what was begun (the signal thread, the
    /// keeper, the pidfile), running no handler and no stop hook.
    pub(in crate::engine) fn never_started(&self) {
        let _ = self.end_from_main(Ended::NeverStarted);
    }

    fn end_from_main(&self, ended: Ended) -> Option<Result<(), Error>> {
        self.claim.body_done.store(true, Ordering::Release);
        self.lifecycle.hurry();
        self.claim_it().then(|| self.finish(ended))
    }

    /// For the keeper, after a stop request: wait at most `grace` for the body to return (less
    /// if a second stop signal forces the end), then abandon it, unless the main thread ends
    /// the daemon. Returns the end's result if the keeper ended the daemon.
    pub(in crate::engine) fn abandon_after(
        &self,
        grace: Duration,
        wrapped: bool,
    ) -> Option<Result<(), Error>> {
        let deadline = Deadline::after(grace);
        let lifecycle = &self.lifecycle;
        // The hurry pipe turns readable only once the body has returned or the end is forced,
        // each of which ends the wait: it never spins.
        while !self.claim.body_done.load(Ordering::Acquire)
            && lifecycle.forced().is_none()
            && !deadline.passed()
        {
            sys::wait_any_readable(&[lifecycle.hurry_fd()], deadline.left());
        }
        if self.claim.body_done.load(Ordering::Acquire) || !self.claim_it() {
            return None;
        }
        let ended = match lifecycle.forced() {
            Some(signal) => {
                self.log.warn(&format!(
                    "a second stop signal ({signal}) came during the stop: the body is abandoned, the stop handlers run and the process exits"
                ));
                Ended::Forced(signal)
            }
            None => {
                if !wrapped {
                    self.log.warn(&format!(
                        "the body did not return within {grace:?} of the stop request; running the stop handlers and exiting"
                    ));
                }
                Ended::Abandoned { wrapped }
            }
        };
        Some(self.finish(ended))
    }

    /// The exit code of a process that the keeper ends with `result`: 128 and the signal's
    /// number when a second stop signal forced the end (130 for Ctrl-C, as shells say of a
    /// process that SIGINT ended), else 1 for a failure and 0.
    pub(in crate::engine) fn exit_code(&self, result: &Result<(), Error>) -> i32 {
        match self.lifecycle.forced() {
            Some(signal) => 128 + signal as i32,
            None => i32::from(result.is_err()),
        }
    }

    /// Claim the end of the daemon: `false` when the other thread has it already.
    fn claim_it(&self) -> bool {
        !self.claim.claimed.swap(true, Ordering::AcqRel)
    }

    /// Stop the signal thread, run the stop signal's handlers once, end the children if asked,
    /// and let go of the pidfile: unlinked after a stop, kept with the reason in it after a
    /// failure of the daemon's own, so that `status` can tell why it died.
    fn finish(&self, ended: Ended) -> Result<(), Error> {
        let lifecycle = &self.lifecycle;
        let role = self.leaving.role;
        lifecycle.request_stop(None);
        lifecycle.tell_stopping();
        // No handler may run after the pidfile is gone.
        let handlers = lock(&self.signals).take().map(|signals| signals.stop(role));
        let asked = lifecycle.stop_signal().is_some();
        let started = !matches!(ended, Ended::NeverStarted);
        let mut result = match ended {
            Ended::Returned(Ok(())) | Ended::Abandoned { wrapped: true } | Ended::NeverStarted => {
                Ok(())
            }
            Ended::Returned(Err(source)) => Err(Error::Body { source }),
            Ended::Abandoned { wrapped: false } => Err(Error::Body {
                source: Failure::text(
                    "it did not return after the stop request, and was abandoned",
                ),
            }),
            Ended::Forced(signal) => Err(Error::Body {
                source: Failure::text(format!(
                    "it had not returned when a second stop signal ({signal}) forced the end, and was abandoned"
                )),
            }),
        };
        if let Err(Error::Body { source }) = &result
            && role == Role::Detached
        {
            // In the foreground the caller of `run()` gets the error, and a supervisor logs its
            // child's: it is not logged twice.
            self.log
                .error(&format!("stopping: {}", chain_text(&**source)));
        }
        // The stop signal's own handlers first, then the hooks of every end: the specific
        // before the general, as a `finally` runs after the `catch`.
        if let Some(handlers) = &handlers {
            let mut handlers = lock(handlers);
            if let Some(signal) = lifecycle.stop_signal()
                && let Err(source) = handlers.call(signal, &self.log)
            {
                result = result.and(Err(Error::StopHandler { source }));
            }
            if started && let Err(source) = handlers.call_on_stop(&self.log) {
                result = result.and(Err(Error::StopHandler { source }));
            }
        }
        if let Some(grace) = self.leaving.stop_children
            && (role.owns_process() || sys::process_group() == Pid::this())
        {
            stop_children(grace, &self.log);
        }
        if let Err(e) = &result {
            self.readiness.tell_supervisor(e);
            self.readiness.tell_manager_failure(e);
        }
        // A caller of `start()` still waiting hears the failure itself: nothing is left then.
        let waiting = self.readiness.still_waiting();
        let mut pidfile = lock(&self.pidfile);
        self.successors.withdraw();
        let released = match (pidfile.as_mut(), &result) {
            (None, _) => Ok(()),
            // The daemon failed by itself: the reason stays in its pidfile until the next start.
            (Some(pidfile), Err(e @ Error::Body { .. })) if !asked && waiting.is_none() => {
                pidfile.keep_with_failure(&format!("{e:#}"))
            }
            (Some(pidfile), _) => pidfile.unlink(),
        };
        match released {
            // Once root is dropped the daemon may not be allowed to unlink root's pidfile;
            // `stop()` removes it after the exit.
            Err(e) if self.leaving.dropped_privileges && e.is_permission_denied() => {}
            Err(e) => self.log.warn(&e.to_string()),
            Ok(()) => {}
        }
        if let Some(waiting) = waiting {
            waiting.fail(result.as_ref().err().unwrap_or(&Error::ReturnedBeforeReady));
        }
        result
    }
}

/// End the other processes of the daemon's process group: SIGTERM and SIGCONT, then SIGKILL for
/// those still there after `grace`. Each is pinned first (a pidfd, or a kqueue outside Linux),
/// then checked to be in the group still, then confirmed alive (the signal gate): a member that
/// exits after the group was read, and whose pid another process gets, is not that process.
/// The wait wakes as each exits.
fn stop_children(grace: Duration, log: &Log) {
    let group = sys::process_group();
    let members: Vec<Target> = sys::process_group_members(group)
        .into_iter()
        .filter_map(|pid| {
            let pinned =
                Pinned::pin(pid).and_then(|pinned| pinned.verify(move |pid| in_group(pid, group)));
            match pinned {
                Ok(member) => Some(member),
                // Gone, or no longer a member: not the daemon's to stop.
                Err(Refused::Not(NotSignalled::Exited | NotSignalled::Unverified { .. })) => None,
                Err(refused) => {
                    log.warn(&format!(
                        "stopping the daemon's children: pid {pid} is left alone: {}",
                        refused.into_not_signalled()
                    ));
                    None
                }
            }
        })
        .collect();
    if members.is_empty() {
        return;
    }
    for member in &members {
        let _ = member.signal(Signal::SIGTERM);
        let _ = member.signal(Signal::SIGCONT);
    }
    let left = process::wait_all_exited(&members, grace);
    if !left.is_empty() {
        let pids: Vec<String> = left.iter().map(|&i| members[i].pid().to_string()).collect();
        log.warn(&format!(
            "stopping the daemon's children: pid {} outlived SIGTERM by {grace:?}, sending SIGKILL",
            pids.join(", ")
        ));
        for &i in &left {
            let _ = members[i].signal(Signal::SIGKILL);
        }
    }
}

/// Whether `pid` is in process group `group`; what it is in instead.
fn in_group(pid: Pid, group: Pid) -> Result<(), String> {
    match sys::process_group_of(pid) {
        Ok(found) if found == group => Ok(()),
        Ok(found) => Err(format!(
            "pid {pid} is in process group {found}, not in the daemon's group {group}"
        )),
        Err(e) => Err(format!(
            "the process group of pid {pid} cannot be read: {e}"
        )),
    }
}
