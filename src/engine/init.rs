//! PID 1 of a pid namespace (a container's entrypoint, `unshare --pid --fork`): the kernel gives
//! it every orphan of the namespace to reap, and no default action for signals it does not
//! handle. When `run()` finds itself there, it forks, as tini does inside one process: PID 1
//! stays a small init that reaps every orphan and forwards signals, and the daemon runs as its
//! only child, whose own children are its own to wait for (a `Command` the body spawns keeps
//! its exit status).
//!
//! PID 1 catches its signals with `sigwait`, not with the engine's [`SignalPipe`]
//! (`signals.rs`), for two reasons that hold nowhere else. The kernel drops a signal that PID 1
//! does not catch, so the signals must be blocked before the fork and stay pending until the init
//! takes them: a handler installed before the fork would be inherited by the daemon, whose
//! process is the caller's own in the foreground and is not reset, and one installed after it
//! could fail when the daemon already runs, with nobody to tell. A blocked set that the init
//! waits on has no handler to install and nothing to fail after the fork.
//!
//! [`SignalPipe`]: crate::engine::signals::SignalPipe

use crate::{Pid, Signal};

use crate::engine::role::Role;
use crate::error::Error;
use crate::gate::fork::{Forked, fork};
use crate::gate::process::{self, Child};
use crate::sys::SignalSet;

/// The signals PID 1 passes on to the daemon; SIGCHLD is its own, to reap.
const FORWARDED: [Signal; 9] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
];

/// Where the daemon runs after [`split`].
pub(in crate::engine) enum Split {
    /// Here: not PID 1, or the child of a PID 1 that stays an init.
    Daemon,
    /// PID 1 that may not fork (it runs other threads, which a fork would not copy, or cannot
    /// tell how many it runs): here, as PID 1, for the reason given.
    Unsplit(Error),
}

/// Split PID 1 into an init and the daemon; any other process runs the daemon itself. The init
/// never returns: it leaves with the daemon's exit code.
pub(in crate::engine) fn split() -> Result<Split, Error> {
    if Pid::this().as_raw() != 1 {
        return Ok(Split::Daemon);
    }
    let set = SignalSet::of(FORWARDED.into_iter().chain([Signal::SIGCHLD]));
    let masked = |source| Error::Sys {
        call: "sigprocmask",
        source,
    };
    // Blocked before the fork: what arrives meanwhile waits for the init to forward it.
    let old = set.block().map_err(masked)?;
    let forked = fork();
    if !matches!(forked, Ok(Forked::Parent(_))) {
        old.restore().map_err(masked)?;
    }
    match forked {
        Ok(Forked::Child(_)) => Ok(Split::Daemon),
        // The init is the caller's process: it leaves as `exit` does.
        Ok(Forked::Parent(child)) => Role::Foreground.leave(serve_as_init(child, &set)),
        Err(e @ Error::Threads { .. }) => Ok(Split::Unsplit(e)),
        Err(e) => Err(e),
    }
}

/// Forward signals to `daemon` and reap every child until the daemon has exited; its exit code
/// (128 + the signal's number if a signal ended it) is the init's.
fn serve_as_init(mut daemon: Child, set: &SignalSet) -> i32 {
    loop {
        match set.wait() {
            Some(Signal::SIGCHLD) => {
                if let Some(code) = reap(&mut daemon) {
                    // The daemon is gone; the namespace ends with PID 1, which takes the other
                    // processes with it.
                    return code;
                }
            }
            Some(signal) => {
                let _ = daemon.signal(signal);
            }
            None => {}
        }
    }
}

/// Reap every child that has ended; the daemon's exit code, if it is among them.
fn reap(daemon: &mut Child) -> Option<i32> {
    let mut code = None;
    while let Some((pid, ended)) = process::reap_any() {
        if daemon.reaped_as(pid) {
            code = Some(ended.code());
        }
    }
    code
}
