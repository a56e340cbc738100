//! How a daemon ends, done once by whichever thread gets there first: the main thread once the
//! body has returned, or the keeper when the body does not return in time after a stop request
//! (a wrapped function, which knows nothing of `ctl`, at once).
//!
//! The keeper is a thread of the daemon's own that, until the stop, also watches that the
//! pidfile's path still names the locked file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Pid, getpgrp};

use crate::ctl::Lifecycle;
use crate::error::Error;
use crate::log::Log;
use crate::pidfile::PidfileLock;
use crate::signals::{ControlThread, Handlers};
use crate::sys;

/// How often the keeper looks at the pidfile's path.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Everything the end of a daemon needs, shared by the main thread and the keeper.
pub(crate) struct Ending {
    begun: AtomicBool,
    pub(crate) lifecycle: Arc<Lifecycle>,
    handlers: Arc<Mutex<Handlers>>,
    control: Mutex<Option<ControlThread>>,
    lock: Mutex<PidfileLock>,
    log: Log,
    detached: bool,
    /// End the daemon's process group too, giving it this long after SIGTERM.
    stop_children: Option<Duration>,
    /// The daemon switched users, and may no longer unlink root's pidfile.
    dropped_privileges: bool,
    /// Set, and notified, once the body has returned.
    body_done: (Mutex<bool>, Condvar),
}

/// How the daemon's body ended, for [`Ending::finish`].
pub(crate) enum Ended {
    /// It returned, with this outcome.
    Returned(Result<(), String>),
    /// It was abandoned after a stop request.
    Abandoned {
        /// A wrapped function: abandoning it is how it stops, not a failure.
        wrapped: bool,
    },
}

/// What the engine hands over to [`Ending::new`].
pub(crate) struct Parts {
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) handlers: Arc<Mutex<Handlers>>,
    pub(crate) control: ControlThread,
    pub(crate) lock: PidfileLock,
    pub(crate) log: Log,
    pub(crate) detached: bool,
    pub(crate) stop_children: Option<Duration>,
    pub(crate) dropped_privileges: bool,
}

impl Ending {
    pub(crate) fn new(parts: Parts) -> Arc<Ending> {
        Arc::new(Ending {
            begun: AtomicBool::new(false),
            lifecycle: parts.lifecycle,
            handlers: parts.handlers,
            control: Mutex::new(Some(parts.control)),
            lock: Mutex::new(parts.lock),
            log: parts.log,
            detached: parts.detached,
            stop_children: parts.stop_children,
            dropped_privileges: parts.dropped_privileges,
            body_done: (Mutex::new(false), Condvar::new()),
        })
    }

    /// Claim the end of the daemon: `false` when the other thread has it already.
    pub(crate) fn begin(&self) -> bool {
        !self.begun.swap(true, Ordering::AcqRel)
    }

    /// Tell the keeper that the body has returned.
    pub(crate) fn body_returned(&self) {
        *lock(&self.body_done.0) = true;
        self.body_done.1.notify_all();
    }

    /// Wait at most `grace` for the body to return; returns whether it did.
    fn wait_for_body(&self, grace: Duration) -> bool {
        let done = lock(&self.body_done.0);
        let (done, _) = self
            .body_done
            .1
            .wait_timeout_while(done, grace, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        *done
    }

    /// Stop the control thread, run the stop signal's handlers once, end the children if asked,
    /// and let go of the pidfile: unlinked after a stop, kept with the reason in it after a
    /// failure of the daemon's own, so that `status` can tell why it died.
    pub(crate) fn finish(&self, ended: Ended) -> Result<(), Error> {
        let lifecycle = &self.lifecycle;
        lifecycle.request_stop(None);
        lifecycle.tell_stopping();
        // No handler may run after the pidfile is gone.
        if let Some(control) = lock(&self.control).take() {
            if self.detached {
                control.stop_for_exit();
            } else {
                control.stop_and_restore();
            }
        }
        let asked = lifecycle.stop_signal().is_some();
        let mut result = match ended {
            Ended::Returned(Ok(())) | Ended::Abandoned { wrapped: true } => Ok(()),
            Ended::Returned(Err(message)) => Err(Error::Body { message }),
            Ended::Abandoned { wrapped: false } => Err(Error::Body {
                message: "it did not return after the stop request, and was abandoned".into(),
            }),
        };
        if let Err(Error::Body { message }) = &result
            && self.detached
        {
            // In the foreground the caller of `run()` gets the error: it is not logged twice.
            self.log.log(&format!("stopping: {message}"));
        }
        if let Some(signal) = lifecycle.stop_signal()
            && let Err(message) = lock(&self.handlers).run(signal, &self.log)
        {
            result = result.and(Err(Error::StopHandler { message }));
        }
        if let Some(grace) = self.stop_children
            && (self.detached || getpgrp() == Pid::this())
        {
            stop_children(grace, &self.log);
        }
        let mut pidfile = lock(&self.lock);
        let released = match &result {
            // The daemon failed by itself: the reason stays in its pidfile until the next start.
            Err(e @ Error::Body { .. }) if !asked => pidfile.keep_with_failure(&e.to_string()),
            _ => pidfile.unlink(),
        };
        match released {
            // Once root is dropped the daemon may not be allowed to unlink root's pidfile;
            // `stop()` removes it after the exit.
            Err(e) if self.dropped_privileges && e.is_permission_denied() => {}
            Err(e) => self.log.log(&e.to_string()),
            Ok(()) => {}
        }
        if let Some(mut reporter) = lifecycle.take_unused_reporter() {
            reporter.fail(result.as_ref().err().unwrap_or(&Error::ReturnedBeforeReady));
        }
        result
    }

    /// Start the keeper: it watches the pidfile until a stop is asked, then gives the body
    /// `grace` to return, and ends the daemon itself if it does not.
    pub(crate) fn spawn_keeper(
        self: &Arc<Ending>,
        grace: Duration,
        wrapped: bool,
    ) -> std::io::Result<JoinHandle<()>> {
        let ending = self.clone();
        thread::Builder::new()
            .name("daemons-keeper".into())
            .spawn(move || ending.keep(grace, wrapped))
    }

    fn keep(&self, grace: Duration, wrapped: bool) {
        while !self.lifecycle.wait_for_stop(WATCH_PERIOD) {
            self.watch_pidfile();
        }
        if self.wait_for_body(grace) || !self.begin() {
            return;
        }
        if !wrapped {
            self.log.log(&format!(
                "the body did not return within {grace:?} of the stop request; running the stop handlers and exiting"
            ));
        }
        let result = self.finish(Ended::Abandoned { wrapped });
        let code = i32::from(result.is_err());
        let _ = std::io::Write::flush(&mut std::io::stdout());
        if self.detached {
            sys::flush_c_stdio();
            sys::exit_now(code);
        }
        // In the foreground the process is the caller's own: leave it as `exit` does.
        std::process::exit(code);
    }

    /// A /tmp cleaner or a careless `rm` may remove the pidfile, or someone replace it: the
    /// daemon would look stopped, and the next `start()` would run a second instance. The path
    /// is taken again when it is free; when another instance holds it, this one stops.
    fn watch_pidfile(&self) {
        let mut pidfile = lock(&self.lock);
        if pidfile.still_named() {
            return;
        }
        let path = pidfile.path().display().to_string();
        match pidfile.retake() {
            Ok(()) => self.log.log(&format!(
                "pidfile {path} no longer named this daemon's locked file (removed or replaced): taken again"
            )),
            Err(e @ (Error::AlreadyRunning { .. } | Error::Unverified { .. })) => {
                self.log.log(&format!(
                    "pidfile {path} was taken by another process ({e}): stopping, so that two instances do not run"
                ));
                self.lifecycle.request_stop(None);
            }
            Err(e) => self.log.log(&format!(
                "pidfile {path} no longer names this daemon's locked file and cannot be taken again: {e}"
            )),
        }
    }
}

/// End the other processes of the daemon's process group: SIGTERM and SIGCONT, then SIGKILL for
/// those still there after `grace`. Each is pinned first (a pidfd, or a kqueue outside Linux),
/// so a pid that is reused meanwhile is never hit, and the wait wakes as each exits.
fn stop_children(grace: Duration, log: &Log) {
    let members: Vec<(Pid, sys::ExitWatch)> = sys::process_group_members(getpgrp())
        .into_iter()
        .filter_map(|pid| Some((pid, sys::ExitWatch::new(pid).ok()??)))
        .collect();
    if members.is_empty() {
        return;
    }
    for (_, watch) in &members {
        let _ = watch.signal(Signal::SIGTERM);
        let _ = watch.signal(Signal::SIGCONT);
    }
    let watches: Vec<&sys::ExitWatch> = members.iter().map(|(_, watch)| watch).collect();
    let left = sys::wait_all_exited(&watches, grace);
    if !left.is_empty() {
        let pids: Vec<String> = left.iter().map(|&i| members[i].0.to_string()).collect();
        log.log(&format!(
            "stopping the daemon's children: pid {} outlived SIGTERM by {grace:?}, sending SIGKILL",
            pids.join(", ")
        ));
        for &i in &left {
            let _ = members[i].1.signal(Signal::SIGKILL);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // What these locks guard stays whole across a panic: a flag, a handle, a file.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
