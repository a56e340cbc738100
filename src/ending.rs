//! How a daemon ends, done once by whichever thread gets there first: the main thread once the
//! body has returned, or the keeper when the body does not return in time after a stop request
//! (a wrapped function, which knows nothing of `ctl`, at once).
//!
//! The keeper is a thread of the daemon's own that, until the stop, also watches that the
//! pidfile's path still names the locked file.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Pid, getpgrp};

use crate::ctl::Lifecycle;
use crate::error::{Error, NotSignalled};
use crate::gate::process::{self, Pinned, Refused, Target};
use crate::handover::Offer;
use crate::listen::Listeners;
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
    /// The pidfile, unless this is a supervised child (its supervisor holds it).
    lock: Mutex<Option<PidfileLock>>,
    /// A supervised child's report pipe: why the body ended goes there.
    parent: Mutex<Option<File>>,
    /// Where a successor asks for the listening sockets, once the daemon offers them, and the
    /// sockets.
    offer: OnceLock<Offer>,
    listeners: Arc<Listeners>,
    /// The sockets went to a successor, which takes the pidfile's path: the keeper no longer
    /// takes it back.
    handed_over: AtomicBool,
    log: Log,
    detached: bool,
    /// End the daemon's process group too, giving it this long after SIGTERM.
    stop_children: Option<Duration>,
    /// The daemon switched users, and may no longer unlink root's pidfile.
    dropped_privileges: bool,
    /// Set, and notified, once the body has returned.
    body_done: (Mutex<bool>, Condvar),
    /// What the keeper last said about the pidfile, so that a lasting problem is logged once.
    last_complaint: Mutex<Option<String>>,
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
    pub(crate) lock: Option<PidfileLock>,
    pub(crate) parent: Option<File>,
    pub(crate) listeners: Arc<Listeners>,
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
            parent: Mutex::new(parts.parent),
            offer: OnceLock::new(),
            listeners: parts.listeners,
            handed_over: AtomicBool::new(false),
            log: parts.log,
            detached: parts.detached,
            stop_children: parts.stop_children,
            dropped_privileges: parts.dropped_privileges,
            body_done: (Mutex::new(false), Condvar::new()),
            last_complaint: Mutex::new(None),
        })
    }

    /// Offer the listening sockets to a successor from now on.
    pub(crate) fn offer(&self, offer: Offer) {
        let _ = self.offer.set(offer);
    }

    /// A successor takes the pidfile's path (see [`PidfileLock::take_path`]).
    pub(crate) fn take_path(&self) -> Result<(), Error> {
        match lock(&self.lock).as_mut() {
            Some(pidfile) => pidfile.take_path(),
            None => Ok(()),
        }
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
        let mut parent = lock(&self.parent);
        if let Err(Error::Body { message }) = &result
            && self.detached
            && parent.is_none()
        {
            // In the foreground the caller of `run()` gets the error, and a supervisor logs its
            // child's: it is not logged twice.
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
        if let (Some(pipe), Err(e)) = (parent.as_mut(), &result) {
            use std::io::Write;
            let _ = pipe.write_all(&crate::report::failure(e));
        }
        // A caller of `start()` still waiting hears the failure itself: nothing is left then.
        let reporter = lifecycle.take_unused_reporter();
        if let Some(offer) = self.offer.get() {
            offer.withdraw();
        }
        let mut pidfile = lock(&self.lock);
        let released = match (pidfile.as_mut(), &result) {
            (None, _) => Ok(()),
            // The daemon failed by itself: the reason stays in its pidfile until the next start.
            (Some(pidfile), Err(e @ Error::Body { .. })) if !asked && reporter.is_none() => {
                pidfile.keep_with_failure(&e.to_string())
            }
            (Some(pidfile), _) => pidfile.unlink(),
        };
        match released {
            // Once root is dropped the daemon may not be allowed to unlink root's pidfile;
            // `stop()` removes it after the exit.
            Err(e) if self.dropped_privileges && e.is_permission_denied() => {}
            Err(e) => self.log.log(&e.to_string()),
            Ok(()) => {}
        }
        if let Some(mut reporter) = reporter {
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
        loop {
            let (stopping, successor) = self.wait(WATCH_PERIOD);
            if stopping {
                break;
            }
            if successor && let Some(offer) = self.offer.get() {
                // The end takes the pidfile first: it waits for an answer under way, and for its
                // log line, instead of exiting between the two.
                let _answering = lock(&self.lock);
                match offer.answer(&self.listeners) {
                    Ok(true) => {
                        self.handed_over.store(true, Ordering::Release);
                        self.log.log(
                            "handed the listening sockets to a new instance, which takes the pidfile; serving on until stopped",
                        );
                    }
                    Ok(false) => {}
                    Err(e) => self.log.log(&format!(
                        "a new instance asked for the listening sockets and did not get them: {e}"
                    )),
                }
            }
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

    /// Wait at most `timeout` for a stop request or a successor; says which came.
    fn wait(&self, timeout: Duration) -> (bool, bool) {
        if self.lifecycle.stop_requested() {
            return (true, false);
        }
        let mut fds = vec![self.lifecycle.wake_fd()];
        fds.extend(self.offer.get().map(Offer::fd));
        let ready = sys::wait_any_readable(&fds, timeout);
        (
            self.lifecycle.stop_requested(),
            ready.get(1).copied().unwrap_or(false),
        )
    }

    /// A /tmp cleaner or a careless `rm` may remove the pidfile, or someone replace it: the
    /// daemon would look stopped, and the next `start()` would run a second instance. The path
    /// is taken again when it is free; when another instance holds it, this one stops.
    fn watch_pidfile(&self) {
        let mut pidfile = lock(&self.lock);
        let Some(pidfile) = pidfile.as_mut() else {
            return;
        };
        if pidfile.still_named() {
            return;
        }
        let path = pidfile.path().display().to_string();
        match pidfile.retake() {
            Ok(()) => self.log.log(&format!(
                "pidfile {path} no longer named this daemon's locked file (removed or replaced): taken again"
            )),
            // The successor that got the sockets took the path: this instance serves on until
            // it is stopped, and runs its stop handlers then.
            Err(Error::AlreadyRunning { .. } | Error::Unverified { .. })
                if self.handed_over.load(Ordering::Acquire) => {}
            Err(e @ (Error::AlreadyRunning { .. } | Error::Unverified { .. })) => {
                self.log.log(&format!(
                    "pidfile {path} was taken by another process ({e}): stopping, so that two instances do not run"
                ));
                self.lifecycle.request_stop(None);
            }
            // Without the right to create its pidfile again (a daemon that dropped root, whose
            // pidfile is in a directory of root's), the daemon would run on where `status` and
            // `stop` cannot find it, and the next `start` would run a second one beside it.
            Err(e) if !self.handed_over.load(Ordering::Acquire) && cannot_take_again(&e) => {
                self.log.log(&format!(
                    "pidfile {path} no longer names this daemon's locked file and cannot be taken again ({e}): stopping, so that no daemon runs where `status` and `stop` cannot see it (keep the pidfile in a directory that the daemon's user may write, as systemd's RuntimeDirectory= makes one)"
                ));
                self.lifecycle.request_stop(None);
            }
            Err(e) => {
                let complaint = format!(
                    "pidfile {path} no longer names this daemon's locked file and cannot be taken again: {e}"
                );
                let mut last = lock(&self.last_complaint);
                if last.as_deref() != Some(complaint.as_str()) {
                    self.log.log(&complaint);
                    *last = Some(complaint);
                }
            }
        }
    }
}

/// Whether a pidfile that could not be taken again never will be, by this process: it may not
/// create the file there (its user lost the right with root, or never had it), or the path gate
/// refuses the place, or the directory is gone.
fn cannot_take_again(e: &Error) -> bool {
    e.is_permission_denied()
        || matches!(
            e,
            Error::UnsafeDirectory { .. }
                | Error::UnsafeFile { .. }
                | Error::Untrusted { .. }
                | Error::MissingDirectory { .. }
        )
}

/// End the other processes of the daemon's process group: SIGTERM and SIGCONT, then SIGKILL for
/// those still there after `grace`. Each is pinned first (a pidfd, or a kqueue outside Linux),
/// then checked to be in the group still, then confirmed alive (the signal gate): a member that
/// exits after the group was read, and whose pid another process gets, is not that process.
/// The wait wakes as each exits.
fn stop_children(grace: Duration, log: &Log) {
    let group = getpgrp();
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
                    log.log(&format!(
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
        log.log(&format!(
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
    match nix::unistd::getpgid(Some(pid)) {
        Ok(found) if found == group => Ok(()),
        Ok(found) => Err(format!(
            "pid {pid} is in process group {found}, not in the daemon's group {group}"
        )),
        Err(e) => Err(format!(
            "the process group of pid {pid} cannot be read: {e}"
        )),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // What these locks guard stays whole across a panic: a flag, a handle, a file.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
