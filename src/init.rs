//! PID 1 of a pid namespace (a container's entrypoint, `unshare --pid --fork`): the kernel gives
//! it every orphan of the namespace to reap, and no default action for signals it does not
//! handle. When `run()` finds itself there, it forks, as tini does inside one process: PID 1
//! stays a small init that reaps every orphan and forwards signals, and the daemon runs as its
//! only child, whose own children are its own to wait for (a `Command` the body spawns keeps
//! its exit status).

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::error::Error;
use crate::sys;

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

/// Which process this is after [`split`].
pub(crate) enum Role {
    /// Not PID 1, or PID 1 with threads (which a fork would not copy): run the daemon here.
    Daemon,
    /// The child of PID 1: run the daemon here.
    Child,
    /// PID 1 after the daemon ended: leave with this code.
    Init(i32),
}

/// Split PID 1 into an init and the daemon; any other process runs the daemon itself.
pub(crate) fn split() -> Result<Role, Error> {
    if Pid::this().as_raw() != 1 {
        return Ok(Role::Daemon);
    }
    if sys::thread_count().is_some_and(|n| n > 1) {
        return Ok(Role::Daemon);
    }
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    // Blocked before the fork: what arrives meanwhile waits for the init to forward it.
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| Error::sys("sigprocmask", e))?;
    // SAFETY: the process runs a single thread (checked above), so the child is a complete
    // copy and may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)
                .map_err(|e| Error::sys("sigprocmask", e))?;
            Ok(Role::Child)
        }
        Ok(ForkResult::Parent { child }) => Ok(Role::Init(serve_as_init(child, &set))),
        Err(e) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            Err(Error::sys("fork", e))
        }
    }
}

/// Forward signals to `daemon` and reap every child until the daemon has exited; its exit code
/// (128 + the signal's number if a signal ended it) is the init's.
fn serve_as_init(daemon: Pid, set: &SigSet) -> i32 {
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(daemon) {
                    // The daemon is gone; the namespace ends with PID 1, which takes the other
                    // processes with it.
                    return code;
                }
            }
            Ok(signal) => {
                let _ = kill(daemon, signal);
            }
            Err(_) => {}
        }
    }
}

/// Reap every child that has ended; the daemon's exit code, if it is among them.
fn reap(daemon: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) if pid == daemon => code = Some(status),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == daemon => {
                code = Some(128 + signal as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return code,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return code,
        }
    }
}
