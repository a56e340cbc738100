//! The keeper: a thread of the daemon's own, started before it is ready, with four jobs, each
//! in one place. Until the stop it watches that the pidfile's path still names the locked file
//! ([`PidfileWatch`]), raises the watchdog's flag when a ping is due (the body's
//! `Ctl::running()` pings then, with one load instead of a clock read), and answers the successors that ask for the listening sockets at a restart
//! (`Successors`, whose work it does on its thread); after the stop it gives the body its grace
//! and ends the daemon itself if the body does not return ([`Ending::abandon_after`]).

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::ending::Ending;
use crate::error::Error;
use crate::handover::Lifeline;
use crate::sync::lock;
use crate::sys::{self, PlainThread};

/// How often the keeper looks at the pidfile's path.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Start the keeper: it watches the pidfile and answers successors until a stop is asked, then
/// gives the body `grace` to return, and ends the daemon itself if it does not.
///
/// A plain thread rather than std's (`sys::spawn_plain_thread` says what that spares a daemon
/// right after its fork); it allocates nothing while it waits, so it never has a malloc arena
/// of its own either.
pub(in crate::engine) fn spawn(
    ending: &Arc<Ending>,
    grace: Duration,
    wrapped: bool,
) -> std::io::Result<PlainThread> {
    let ending = ending.clone();
    sys::spawn_plain_thread(b"daemons-keeper", move || keep(&ending, grace, wrapped))
}

fn keep(ending: &Ending, grace: Duration, wrapped: bool) {
    let (lifecycle, successors, pidfile) =
        (ending.lifecycle(), ending.successors(), ending.pidfile());
    let mut watch = PidfileWatch::default();
    // The successor that got the sockets and has not taken over yet, if one has.
    let mut handing: Option<Lifeline> = None;
    loop {
        let offer = successors.offer_fd();
        // Until the offer is made, the pipe that says it is made: a round ends when it is.
        let first = offer.or_else(|| successors.nudge_fd());
        let lifeline = handing.as_ref().map(Lifeline::fd);
        // On the stack: the keeper allocates nothing while it waits (see `Lifecycle::wait`).
        let mut fds: [Option<BorrowedFd<'_>>; 2] = [first, lifeline];
        fds.sort_by_key(Option::is_none);
        let n = fds.iter().flatten().count();
        let fds: [BorrowedFd<'_>; 2] = fds.map(|fd| fd.unwrap_or(lifecycle.wake_fd()));
        // The keeper raises the watchdog's flag when a ping is due, and wakes for it.
        let period = lifecycle.watchdog().map_or(WATCH_PERIOD, |watchdog| {
            watchdog.flag_if_due().min(WATCH_PERIOD)
        });
        let woke = lifecycle.wait(&fds[..n], period);
        if woke.stopped() {
            break;
        }
        let knocked = offer.is_some() && woke.readable(0);
        let heard = lifeline.is_some() && woke.readable(usize::from(first.is_some()));
        if let Some(lifeline) = handing.take() {
            handing = successors.hear(pidfile, lifecycle, lifeline, heard);
        }
        // Taken over: the successor answers at the offer from now on.
        if lifecycle.stop_requested() {
            break;
        }
        if knocked {
            handing = successors.answer(pidfile, handing);
        }
        successors.forget_exited_predecessor(pidfile);
        if handing.is_none() {
            watch.look(ending);
        }
    }
    successors.park(handing);
    if let Some(result) = ending.abandon_after(grace, wrapped) {
        ending.role().leave(ending.exit_code(&result));
    }
}

/// The keeper's watch over the pidfile's path.
#[derive(Default)]
struct PidfileWatch {
    /// What it last said about the pidfile, so that a lasting problem is logged once.
    last_complaint: Option<String>,
}

impl PidfileWatch {
    /// A /tmp cleaner or a careless `rm` may remove the pidfile, or someone replace it: the
    /// daemon would look stopped, and the next `start()` would run a second instance. The path
    /// is taken again when it is free; when another instance holds it, this one stops.
    fn look(&mut self, ending: &Ending) {
        let (lifecycle, log) = (ending.lifecycle(), ending.log());
        let mut pidfile = lock(ending.pidfile());
        let Some(pidfile) = pidfile.as_mut() else {
            return;
        };
        if pidfile.still_named() {
            return;
        }
        let path = pidfile.path().display().to_string();
        match pidfile.retake() {
            Ok(()) => log.warn(&format!(
                "pidfile {path} no longer named this daemon's locked file (removed or replaced): taken again"
            )),
            Err(e @ (Error::AlreadyRunning { .. } | Error::Unverified { .. })) => {
                log.error(&format!(
                    "pidfile {path} was taken by another process ({e}): stopping, so that two instances do not run"
                ));
                lifecycle.request_stop(None);
            }
            // Without the right to create its pidfile again (a daemon that dropped root, whose
            // pidfile is in a directory of root's), the daemon would run on where `status` and
            // `stop` cannot find it, and the next `start` would run a second one beside it.
            Err(e) if cannot_take_again(&e) => {
                log.error(&format!(
                    "pidfile {path} no longer names this daemon's locked file and cannot be taken again ({e}): stopping, so that no daemon runs where `status` and `stop` cannot see it (keep the pidfile in a directory that the daemon's user may write, as systemd's RuntimeDirectory= makes one)"
                ));
                lifecycle.request_stop(None);
            }
            Err(e) => {
                let complaint = format!(
                    "pidfile {path} no longer names this daemon's locked file and cannot be taken again: {e}"
                );
                if self.last_complaint.as_deref() != Some(complaint.as_str()) {
                    log.warn(&complaint);
                    self.last_complaint = Some(complaint);
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
