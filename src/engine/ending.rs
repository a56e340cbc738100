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

use crate::engine::ctl::Lifecycle;
use crate::engine::log::Log;
use crate::engine::signals::{ControlThread, Handlers};
use crate::error::{Error, NotSignalled};
use crate::gate::process::{self, Pinned, Refused, Target};
use crate::handover::{Answer, Heard, Lifeline, Offer, Predecessor, Takeover};
use crate::listen::Listeners;
use crate::pidfile::PidfileLock;
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
    /// The instance that handed its sockets to this one, until it has exited: a successor that
    /// asks meanwhile is told that a restart is under way.
    predecessor: Mutex<Option<Predecessor>>,
    /// A successor that got the sockets when the stop came: its connection stays open until
    /// this process exits, so that it can take over then.
    parked: Mutex<Option<Lifeline>>,
    /// How long a successor may take to take over before this instance serves on alone.
    handing_limit: Duration,
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

/// What woke the keeper.
struct Woke {
    stopping: bool,
    /// A successor waits at the offer.
    successor: bool,
    /// The successor being handed the sockets said something, or went.
    lifeline: bool,
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
    pub(crate) handing_limit: Duration,
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
            predecessor: Mutex::new(None),
            parked: Mutex::new(None),
            handing_limit: parts.handing_limit,
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

    /// A successor takes over from the instance that runs (see [`Takeover::take_over`]), and
    /// offers its sockets from now on.
    pub(crate) fn take_over(&self, takeover: Takeover) -> Result<(), Error> {
        let mut pidfile = lock(&self.lock);
        let Some(pidfile) = pidfile.as_mut() else {
            return Ok(());
        };
        let (offer, predecessor) = takeover.take_over(pidfile)?;
        if let Some(predecessor) = &predecessor {
            self.log.log(&format!(
                "took the listening sockets and the pidfile over from pid {}, which stops",
                predecessor.pid()
            ));
        }
        *lock(&self.predecessor) = predecessor;
        let _ = self.offer.set(offer);
        Ok(())
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
        // Under the pidfile's hold: the keeper changes what is shared with a successor under it.
        let mut pidfile = lock(&self.lock);
        if let Some(offer) = self.offer.get() {
            offer.withdraw();
        }
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
        // The successor that got the sockets and has not taken over yet, if one has.
        let mut handing: Option<Lifeline> = None;
        loop {
            let woke = self.wait(WATCH_PERIOD, handing.as_ref());
            if woke.stopping {
                break;
            }
            if let Some(lifeline) = handing.take() {
                handing = self.hear(lifeline, woke.lifeline);
            }
            // Taken over: the successor answers at the offer from now on.
            if self.lifecycle.stop_requested() {
                break;
            }
            if woke.successor {
                handing = self.answer(handing);
            }
            self.forget_exited_predecessor();
            if handing.is_none() {
                self.watch_pidfile();
            }
        }
        // A successor that got everything may still take over: this instance stops anyway, and
        // the connection closes with it. The pidfile and the offer stay shared meanwhile, so
        // the end leaves them in place.
        if let Some(lifeline) = handing {
            *lock(&self.parked) = Some(lifeline);
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

    /// Wait at most `timeout` for a stop request, a successor at the offer, or a word on the
    /// lifeline of the successor being handed the sockets; says which came.
    fn wait(&self, timeout: Duration, handing: Option<&Lifeline>) -> Woke {
        if self.lifecycle.stop_requested() {
            return Woke {
                stopping: true,
                successor: false,
                lifeline: false,
            };
        }
        let mut fds = vec![self.lifecycle.wake_fd()];
        let offer = self.offer.get().map(Offer::fd);
        fds.extend(offer);
        fds.extend(handing.map(Lifeline::fd));
        let ready = sys::wait_any_readable(&fds, timeout);
        let at = |i: usize| ready.get(i).copied().unwrap_or(false);
        let (successor, lifeline) = match (offer.is_some(), handing.is_some()) {
            (true, true) => (at(1), at(2)),
            (true, false) => (at(1), false),
            (false, true) => (false, at(1)),
            (false, false) => (false, false),
        };
        Woke {
            stopping: self.lifecycle.stop_requested(),
            successor,
            lifeline,
        }
    }

    /// Answer a successor waiting at the offer: it gets the sockets, unless a handover is under
    /// way already (`handing`) or this instance's own predecessor has not exited yet, in which
    /// case it is told that another restart is under way. Returns the handover under way.
    fn answer(&self, handing: Option<Lifeline>) -> Option<Lifeline> {
        let Some(offer) = self.offer.get() else {
            return handing;
        };
        let mut busy = handing.as_ref().map(|l| l.successor());
        if busy.is_none()
            && let Some(predecessor) = lock(&self.predecessor).as_ref()
        {
            // It was told to stop when this instance took over: it is usually on its way out.
            let step = self.handing_limit / 16;
            if !predecessor.exited(step.min(Duration::from_secs(1))) {
                busy = Some(Some(predecessor.pid()));
            }
        }
        let mut pidfile = lock(&self.lock);
        let Some(pidfile) = pidfile.as_mut() else {
            return handing;
        };
        let busy_with = busy.map(|pid| pid.unwrap_or_else(Pid::this));
        match offer.answer(pidfile, &self.listeners, busy_with) {
            Answer::Nobody => {}
            Answer::Refused { uid, pid } => self.log.log(&format!(
                "refused the listening sockets to uid {uid}{}: only root and the user that started this daemon get them",
                pid.map_or(String::new(), |pid| format!(" (pid {pid})"))
            )),
            Answer::Busy { pid } => self.log.log(&format!(
                "a new instance{} asked for the listening sockets during another restart: told it is busy",
                pid.map_or(String::new(), |pid| format!(" (pid {pid})"))
            )),
            Answer::Sent(lifeline) => return Some(lifeline),
            Answer::Failed(e) => self.log.log(&format!(
                "a new instance asked for the listening sockets and did not get them: {e}"
            )),
        }
        handing
    }

    /// Hear the successor that is being handed the sockets: it takes over (this instance then
    /// stops, as SIGTERM would stop it), gives up or goes (this instance serves on alone), or
    /// has said nothing yet. Returns the handover if it is still under way.
    fn hear(&self, mut lifeline: Lifeline, readable: bool) -> Option<Lifeline> {
        let heard = if readable {
            lifeline.hear()
        } else {
            Heard::Nothing
        };
        let mut pidfile = lock(&self.lock);
        let offer = self.offer.get();
        let successor = lifeline
            .successor()
            .map_or("a new instance".to_string(), |pid| format!("pid {pid}"));
        match heard {
            Heard::Take => {
                if let Some(pidfile) = pidfile.as_mut() {
                    pidfile.give();
                }
                lifeline.confirm();
                self.log.log(&format!(
                    "handed the listening sockets and the pidfile to {successor}, which took over: stopping"
                ));
                self.lifecycle.request_stop(Some(Signal::SIGTERM));
                None
            }
            Heard::GiveUp | Heard::Gone => {
                if let (Some(offer), Some(pidfile)) = (offer, pidfile.as_mut()) {
                    offer.take_back(pidfile);
                }
                self.log.log(&format!(
                    "{successor} got the listening sockets but did not take over: serving on"
                ));
                if heard == Heard::GiveUp {
                    lifeline.acknowledge();
                } else {
                    lifeline.close();
                }
                None
            }
            Heard::Nothing if lifeline.age() > self.handing_limit => {
                if let (Some(offer), Some(pidfile)) = (offer, pidfile.as_mut()) {
                    offer.take_back(pidfile);
                }
                self.log.log(&format!(
                    "{successor} got the listening sockets and did not take over within {:?}: serving on",
                    self.handing_limit
                ));
                lifeline.close();
                None
            }
            Heard::Nothing => Some(lifeline),
        }
    }

    /// Once the predecessor has exited, the pidfile no longer names it.
    fn forget_exited_predecessor(&self) {
        let mut predecessor = lock(&self.predecessor);
        if predecessor
            .as_ref()
            .is_some_and(|p| p.exited(Duration::ZERO))
        {
            *predecessor = None;
            if let Some(pidfile) = lock(&self.lock).as_mut() {
                let _ = pidfile.write_pid();
            }
        }
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
            Err(e @ (Error::AlreadyRunning { .. } | Error::Unverified { .. })) => {
                self.log.log(&format!(
                    "pidfile {path} was taken by another process ({e}): stopping, so that two instances do not run"
                ));
                self.lifecycle.request_stop(None);
            }
            // Without the right to create its pidfile again (a daemon that dropped root, whose
            // pidfile is in a directory of root's), the daemon would run on where `status` and
            // `stop` cannot find it, and the next `start` would run a second one beside it.
            Err(e) if cannot_take_again(&e) => {
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
