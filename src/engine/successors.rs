//! This instance's part in the restarts that hand the listening sockets over (see
//! [`Daemon::restart`](crate::Daemon::restart)): as a successor, taking over from the instance
//! that ran; then, on the keeper's thread, offering the sockets to the next successor, answering
//! it, and hearing whether it took over. The handover's protocol is the `handover` part's; what
//! the instance does at each step is here.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::{Pid, Signal};

use crate::engine::lifecycle::Lifecycle;
use crate::engine::log::Log;
use crate::error::Error;
use crate::handover::{self, Answer, Heard, Lifeline, Offer, Predecessor, Takeover};
use crate::listen::Listeners;
use crate::pidfile::PidfileLock;
use crate::sync::lock;
use crate::sys;

/// An instance's part in the restarts, as it starts.
pub(in crate::engine) enum Handover {
    /// None: no listening sockets, or a supervisor (whose restart is a stop, then a start).
    None,
    /// The first instance: the offer it bound, or why it could not.
    Offer(Result<Offer, Error>),
    /// A successor: what it must do to take over once set up (or give up, when dropped).
    Takeover(Takeover),
}

/// What the instance shares with its successors while it serves.
pub(in crate::engine) struct Successors {
    /// Where a successor asks for the listening sockets, once the daemon offers them.
    offer: OnceLock<Offer>,
    listeners: Arc<Listeners>,
    /// The instance that handed its sockets to this one, until it has exited: a successor that
    /// asks meanwhile is told that a restart is under way.
    predecessor: Mutex<Option<Predecessor>>,
    /// A successor that got the sockets when the stop came: its connection stays open until
    /// this process exits, so that it can take over then.
    parked: Mutex<Option<Lifeline>>,
    /// How long a successor may take to take over before this instance serves on alone.
    limit: Duration,
    /// A pipe made readable when the offer is made: the keeper, which already waits when the
    /// daemon makes it (after the set-up), looks at it at once rather than at its next round.
    /// None for a daemon without listening sockets, which never offers any.
    nudge: Option<(OwnedFd, OwnedFd)>,
    log: Log,
}

impl Successors {
    /// Nothing offered yet; a successor gets `listeners`, and has `ready_timeout` (and two
    /// steps of the handover) to take over.
    pub(in crate::engine) fn new(
        listeners: Arc<Listeners>,
        ready_timeout: Duration,
        log: Log,
    ) -> Successors {
        // Without the pipe the keeper finds the offer at its next round, within a second.
        let nudge = (listeners.len() > 0)
            .then(|| sys::pipe(true).ok())
            .flatten();
        Successors {
            offer: OnceLock::new(),
            listeners,
            predecessor: Mutex::new(None),
            parked: Mutex::new(None),
            limit: ready_timeout.saturating_add(handover::step(ready_timeout) * 2),
            nudge,
            log,
        }
    }

    /// Offer the listening sockets to a successor from now on.
    pub(in crate::engine) fn offer(&self, offer: Offer) {
        let _ = self.offer.set(offer);
        self.nudge_keeper();
    }

    /// Tell the keeper that the offer is made.
    fn nudge_keeper(&self) {
        if let Some((_, write)) = &self.nudge {
            // A full pipe (EAGAIN) is readable already, which is all that matters.
            let _ = nix::unistd::write(write, b"o");
        }
    }

    /// Readable once the offer is made (and from then on): what the keeper waits on while it
    /// has seen no offer, so that an offer made after it looked ends its round at once. `None`
    /// for a daemon that never offers.
    pub(in crate::engine) fn nudge_fd(&self) -> Option<BorrowedFd<'_>> {
        self.nudge.as_ref().map(|(read, _)| read.as_fd())
    }

    /// A successor takes over from the instance that runs (see [`Takeover::take_over`]), and
    /// offers its sockets from now on.
    pub(in crate::engine) fn take_over(
        &self,
        pidfile: &Mutex<Option<PidfileLock>>,
        takeover: Takeover,
    ) -> Result<(), Error> {
        let mut pidfile = lock(pidfile);
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
        self.nudge_keeper();
        Ok(())
    }

    /// The offer's descriptor, once the daemon offers its sockets: readable when a successor
    /// knocks.
    pub(in crate::engine) fn offer_fd(&self) -> Option<BorrowedFd<'_>> {
        self.offer.get().map(Offer::fd)
    }

    /// Answer a successor waiting at the offer: it gets the sockets, unless a handover is under
    /// way already (`handing`) or this instance's own predecessor has not exited yet, in which
    /// case it is told that another restart is under way. Returns the handover under way.
    pub(in crate::engine) fn answer(
        &self,
        pidfile: &Mutex<Option<PidfileLock>>,
        handing: Option<Lifeline>,
    ) -> Option<Lifeline> {
        let Some(offer) = self.offer.get() else {
            return handing;
        };
        let mut busy = handing.as_ref().map(|l| l.successor());
        if busy.is_none()
            && let Some(predecessor) = lock(&self.predecessor).as_ref()
        {
            // It was told to stop when this instance took over: it is usually on its way out.
            let step = self.limit / 16;
            if !predecessor.exited(step.min(Duration::from_secs(1))) {
                busy = Some(Some(predecessor.pid()));
            }
        }
        let mut pidfile = lock(pidfile);
        let Some(pidfile) = pidfile.as_mut() else {
            return handing;
        };
        let busy_with = busy.map(|pid| pid.unwrap_or_else(Pid::this));
        match offer.answer(pidfile, &self.listeners, busy_with) {
            Answer::Nobody => {}
            Answer::Refused { uid, pid } => self.log.warn(&format!(
                "refused the listening sockets to uid {uid}{}: only root and the user that started this daemon get them",
                pid.map_or(String::new(), |pid| format!(" (pid {pid})"))
            )),
            Answer::Busy { pid } => self.log.warn(&format!(
                "a new instance{} asked for the listening sockets during another restart: told it is busy",
                pid.map_or(String::new(), |pid| format!(" (pid {pid})"))
            )),
            Answer::Sent(lifeline) => return Some(lifeline),
            Answer::Failed(e) => self.log.warn(&format!(
                "a new instance asked for the listening sockets and did not get them: {e}"
            )),
        }
        handing
    }

    /// Hear the successor that is being handed the sockets: it takes over (this instance then
    /// stops, as SIGTERM would stop it), gives up or goes (this instance serves on alone), or
    /// has said nothing yet. Returns the handover if it is still under way.
    pub(in crate::engine) fn hear(
        &self,
        pidfile: &Mutex<Option<PidfileLock>>,
        lifecycle: &Lifecycle,
        mut lifeline: Lifeline,
        readable: bool,
    ) -> Option<Lifeline> {
        let heard = if readable {
            lifeline.hear()
        } else {
            Heard::Nothing
        };
        let mut pidfile = lock(pidfile);
        let offer = self.offer.get();
        let successor = lifeline
            .successor()
            .map_or("a new instance".to_string(), |pid| format!("pid {pid}"));
        match heard {
            Heard::Take => {
                // Silent before the confirmation: once confirmed, the successor reports ready, and
                // the `restart` that started it sends this instance a SIGTERM, whose handling says
                // STOPPING=1 unless this is set. A service manager that heard it would stop the
                // service, successor and all, once the reload ends.
                lifecycle.stop_silently();
                if let Some(pidfile) = pidfile.as_mut() {
                    pidfile.give();
                }
                lifeline.confirm();
                self.log.log(&format!(
                    "handed the listening sockets and the pidfile to {successor}, which took over: stopping"
                ));
                lifecycle.request_stop(Some(Signal::SIGTERM));
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
            Heard::Nothing if lifeline.age() > self.limit => {
                if let (Some(offer), Some(pidfile)) = (offer, pidfile.as_mut()) {
                    offer.take_back(pidfile);
                }
                self.log.log(&format!(
                    "{successor} got the listening sockets and did not take over within {:?}: serving on",
                    self.limit
                ));
                lifeline.close();
                None
            }
            Heard::Nothing => Some(lifeline),
        }
    }

    /// Once the predecessor has exited, the pidfile no longer names it.
    pub(in crate::engine) fn forget_exited_predecessor(
        &self,
        pidfile: &Mutex<Option<PidfileLock>>,
    ) {
        let mut predecessor = lock(&self.predecessor);
        if predecessor
            .as_ref()
            .is_some_and(|p| p.exited(Duration::ZERO))
        {
            *predecessor = None;
            if let Some(pidfile) = lock(pidfile).as_mut() {
                let _ = pidfile.write_pid();
            }
        }
    }

    /// A successor that got everything may still take over when the stop comes: this instance
    /// stops anyway, and the connection closes with it. The pidfile and the offer stay shared
    /// meanwhile, so the end leaves them in place.
    pub(in crate::engine) fn park(&self, handing: Option<Lifeline>) {
        if let Some(lifeline) = handing {
            *lock(&self.parked) = Some(lifeline);
        }
    }

    /// Offer nothing more: the daemon ends. Called with the pidfile held, under which the keeper
    /// changes what is shared with a successor.
    pub(in crate::engine) fn withdraw(&self) {
        if let Some(offer) = self.offer.get() {
            offer.withdraw();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;

    #[test]
    fn an_instance_that_confirms_a_takeover_never_says_stopping_after() {
        // The successor reports ready once it reads the confirmation, and the `restart` that
        // started it then sends this instance a SIGTERM: from that moment this instance must
        // be silent. The log line that follows the confirmation waits here until the successor
        // has looked, so that a confirmation sent before the silence is caught every time.
        let lifecycle = Lifecycle::new(None, None).expect("lifecycle");
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        let (looked, wait_for_look) = mpsc::channel::<bool>();
        let held = Mutex::new(Some(wait_for_look));
        let log = Log::to(move |_| {
            if let Some(wait) = lock(&held).take() {
                let _ = wait.recv_timeout(Duration::from_secs(10));
            }
        });
        let successors =
            Successors::new(Arc::new(Listeners::default()), Duration::from_secs(4), log);
        let watched = lifecycle.clone();
        let successor = std::thread::spawn(move || {
            (&theirs).write_all(b"take\n").expect("say take");
            let mut answer = String::new();
            BufReader::new(&theirs)
                .read_line(&mut answer)
                .expect("the answer");
            let silent = watched.stopping_settled();
            let _ = looked.send(silent);
            (answer, silent)
        });
        // The take has arrived once the socket is readable.
        assert!(sys::wait_readable(ours.as_fd(), Duration::from_secs(10)).expect("poll"));
        let left = successors.hear(
            &Mutex::new(None),
            &lifecycle,
            Lifeline::on(ours, None),
            true,
        );
        assert!(left.is_none(), "the handover is over");
        let (answer, silent) = successor.join().expect("the successor's side");
        assert_eq!(answer, "stopping\n");
        assert!(
            silent,
            "silent before the confirmation reached the successor"
        );
        assert!(lifecycle.stop_requested(), "and stopping");
    }
}
