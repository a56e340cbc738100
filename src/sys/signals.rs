//! The process's own signal state: the mask, blocked around a fork and restored, a wait for a
//! blocked signal, and the dispositions reset to their defaults. nix's signal sets and handlers
//! are made here and nowhere else.

use std::io;

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, pthread_sigmask};

use crate::Signal;

/// A set of signals, to block or to wait for.
#[derive(Debug, Clone)]
pub(crate) struct SignalSet(SigSet);

/// The calling thread's mask as it was before [`SignalSet::block`], to put back.
#[derive(Debug)]
pub(crate) struct Mask(SigSet);

impl SignalSet {
    pub(crate) fn of(signals: impl IntoIterator<Item = Signal>) -> SignalSet {
        let mut set = SigSet::empty();
        for signal in signals {
            set.add(signal.nix());
        }
        SignalSet(set)
    }

    /// Every signal (SIGKILL and SIGSTOP stay unblocked whatever the set says).
    pub(crate) fn all() -> SignalSet {
        SignalSet(SigSet::all())
    }

    /// Block these signals in the calling thread (in a single-threaded process, the process's
    /// mask); the mask that was. A fork's child inherits the mask of the thread that forked.
    pub(crate) fn block(&self) -> io::Result<Mask> {
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&self.0), Some(&mut old))?;
        Ok(Mask(old))
    }

    /// Wait until one of these signals, blocked, is pending, and take it: `None` for one the
    /// crate does not name, or a wait the system refused.
    pub(crate) fn wait(&self) -> Option<Signal> {
        self.0.wait().ok().and_then(Signal::from_nix)
    }
}

impl Mask {
    pub(crate) fn restore(&self) -> io::Result<()> {
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None)?;
        Ok(())
    }
}

/// Unblock every signal in the calling thread.
pub(crate) fn unblock_all() -> io::Result<()> {
    Mask(SigSet::empty()).restore()
}

/// Give every signal that can be caught its default action (SIGPIPE: ignored), except those in
/// `keep` that have a handler installed, which keep it.
pub(crate) fn reset_dispositions(keep: &[Signal]) {
    for &signal in Signal::ALL {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // A handler to keep is looked at without being changed (a disposition read costs what
        // a change does; a change and a change back would be two).
        if keep.contains(&signal) && has_handler(signal) {
            continue;
        }
        let wanted = if signal == Signal::SIGPIPE {
            SigHandler::SigIgn
        } else {
            SigHandler::SigDfl
        };
        // SAFETY: the dispositions set here are SIG_DFL and SIG_IGN, which run no code of ours.
        let Ok(previous) = (unsafe { nix::sys::signal::signal(signal.nix(), wanted) }) else {
            continue;
        };
        let own_handler = matches!(previous, SigHandler::Handler(_) | SigHandler::SigAction(_));
        if own_handler && keep.contains(&signal) {
            // SAFETY: this puts back the handler that was installed a moment ago.
            let _ = unsafe { nix::sys::signal::signal(signal.nix(), previous) };
        }
    }
}

/// Whether `signal` has a handler (neither the default action nor ignored).
fn has_handler(signal: Signal) -> bool {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action only reads the current one into `current`, which is large enough.
    let read = unsafe { libc::sigaction(signal as i32, std::ptr::null(), current.as_mut_ptr()) };
    if read != 0 {
        return false;
    }
    // SAFETY: sigaction succeeded, so it filled `current`.
    let handler = unsafe { current.assume_init() }.sa_sigaction;
    handler != libc::SIG_DFL && handler != libc::SIG_IGN
}
