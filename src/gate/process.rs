//! The only signals the crate sends to other processes. A pid read earlier is never signalled:
//!
//! 1. [`Pinned::pin`]: the process is pinned first, before anything about it is checked: a
//!    pidfd on Linux, which keeps naming that very process whatever happens to its pid; a
//!    kqueue (`EVFILT_PROC`) on macOS and the BSDs; its start time in `/proc/PID/stat` on Linux
//!    built with `--cfg daemons_portable`.
//! 2. [`Pinned::verify`]: the caller's check runs on what was pinned: it holds the pidfile's
//!    lock, it is a member of the daemon's process group, it is in the session that the start
//!    made. Had the pid been reused between the read and the pin, the check is about the new
//!    process, and fails.
//! 3. The pin says that the process is still alive after the check: what was checked is what
//!    was pinned. Only then is there a [`Target`].
//! 4. [`Target::signal`] goes through the pin: `pidfd_send_signal` on Linux. Where the pin is not
//!    a handle a signal can go through, the signal is a `kill` of the pid, sent once the check
//!    holds again and the pin says the process has not exited.
//!
//! A process that cannot be pinned or verified is not signalled, and the caller learns why
//! ([`NotSignalled`]). A child of this process (the supervisor's body, PID 1's daemon, the lock
//! waiter) is a [`Child`], made by the fork gate: its pid is its own until it is reaped, and it
//! is signalled only until then.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::{Pid, Signal};
use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::error::NotSignalled;
use crate::sync::Deadline;
use crate::sys::{self, ExitWatch};

/// How a child ended: its exit code, or the number of the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    /// The child's pid and how it ended, if the status says it ended (not stopped or continued).
    fn of(status: WaitStatus) -> Option<(Pid, Ended)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((Pid::from_nix(pid), Ended::Exited(code))),
            WaitStatus::Signaled(pid, signal, _) => {
                Some((Pid::from_nix(pid), Ended::Signaled(signal as i32)))
            }
            _ => None,
        }
    }

    /// The exit code a shell would give: the code, or 128 plus the signal's number.
    pub(crate) fn code(self) -> i32 {
        match self {
            Ended::Exited(code) => code,
            Ended::Signaled(signal) => 128 + signal,
        }
    }
}

/// Reap one child of this process that has ended, whichever it is (PID 1 reaps orphans too):
/// its pid and how it ended; `None` once no child has ended (or none is left).
pub(crate) fn reap_any() -> Option<(Pid, Ended)> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return None,
            // Stopped or continued: look again.
            Ok(status) => {
                if let Some(reaped) = Ended::of(status) {
                    return Some(reaped);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Why the gate did not signal a process: what [`NotSignalled`] says, or the system's error.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It exited, could not be verified, or could not be pinned.
    Not(NotSignalled),
    /// The system refused a call (`pidfd_open`, `pidfd_send_signal`, `kill`).
    Sys {
        /// The call.
        call: &'static str,
        /// Its error.
        source: io::Error,
    },
}

impl Refused {
    /// As [`NotSignalled`], the system's error in words.
    pub(crate) fn into_not_signalled(self) -> NotSignalled {
        match self {
            Refused::Not(why) => why,
            Refused::Sys { call, source } => NotSignalled::Refused {
                reason: format!("{call}: {source}"),
            },
        }
    }

    fn unverified(reason: String) -> Refused {
        Refused::Not(NotSignalled::Unverified { reason })
    }
}

/// A check of what was pinned: `Err` says what it found instead.
type Check = Box<dyn Fn(Pid) -> Result<(), String> + Send + Sync>;

/// A process pinned, not yet verified: nothing can be sent to it.
#[derive(Debug)]
pub(crate) struct Pinned {
    pid: Pid,
    /// `None` only where the pin is not a handle a signal goes through (a kqueue that the
    /// kernel refused): the check, run again right before each signal, stands in.
    watch: Option<ExitWatch>,
}

impl Pinned {
    /// Pin `pid`, before anything about it is checked.
    ///
    /// # Errors
    ///
    /// [`NotSignalled::Exited`] when there is no such process (or only a thread of that id, or
    /// a zombie); [`Refused::Sys`] when the system refuses to pin it (`EMFILE`: no descriptor
    /// left), which on Linux means it is not signalled at all.
    pub(crate) fn pin(pid: Pid) -> Result<Pinned, Refused> {
        if pid.as_raw() <= 0 {
            // 0 and -1 name groups, or every process: never one process.
            return Err(Refused::unverified(format!(
                "{pid} names no single process"
            )));
        }
        match ExitWatch::new(pid) {
            Ok(Some(watch)) => Ok(Pinned {
                pid,
                watch: Some(watch),
            }),
            Ok(None) => Err(Refused::Not(NotSignalled::Exited)),
            // A thread's id (EINVAL), a task the kernel will not hand a pidfd for (ENOENT): no
            // process that can be pinned.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
                Err(Refused::Not(NotSignalled::Exited))
            }
            // A kqueue that the kernel refused: the check, run again right before each signal,
            // stands in.
            Err(_) if !sys::SIGNALS_PINNED => Ok(Pinned { pid, watch: None }),
            Err(e) => Err(Refused::Sys {
                call: "pidfd_open",
                source: e,
            }),
        }
    }

    /// The pinned process's pid as the mounted `/proc` shows it (the pidfd's `fdinfo` on Linux),
    /// for a check that reads `/proc`: a `/proc` of another pid namespace names other processes.
    /// `None` when that `/proc` does not show the process.
    ///
    /// # Errors
    ///
    /// When the pidfd's `fdinfo` cannot be read, with where it was read ([`Pinned::fdinfo`]).
    pub(crate) fn pid_in_proc(&self) -> io::Result<Option<Pid>> {
        match &self.watch {
            Some(watch) => watch.pid_in_proc(),
            None => Ok(Some(self.pid)),
        }
    }

    /// What [`pid_in_proc`](Pinned::pid_in_proc) reads, for error messages.
    pub(crate) fn fdinfo(&self) -> String {
        self.watch
            .as_ref()
            .map(ExitWatch::fdinfo)
            .unwrap_or_default()
    }

    /// Run `check` on the pinned process, then make sure it is still alive: the process checked
    /// is then the one pinned. `check` answers what it found when it fails.
    ///
    /// Where a signal cannot go through the pin ([`sys::SIGNALS_PINNED`] is false), `check` is
    /// kept and runs again right before each signal.
    ///
    /// # Errors
    ///
    /// [`NotSignalled::Unverified`] with what `check` found; [`NotSignalled::Exited`] when the
    /// process exited meanwhile.
    pub(crate) fn verify(
        self,
        check: impl Fn(Pid) -> Result<(), String> + Send + Sync + 'static,
    ) -> Result<Target, Refused> {
        check(self.pid).map_err(Refused::unverified)?;
        if let Some(watch) = &self.watch
            && watch.exited(Duration::ZERO).unwrap_or(false)
        {
            return Err(Refused::Not(NotSignalled::Exited));
        }
        Ok(Target {
            pid: self.pid,
            watch: self.watch,
            check: Box::new(check),
        })
    }
}

/// A process pinned and verified: the only thing a signal goes to.
pub(crate) struct Target {
    pid: Pid,
    watch: Option<ExitWatch>,
    check: Check,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("pid", &self.pid)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The pid.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Send `signal` through the pin; where a signal cannot go through it, check again first.
    ///
    /// # Errors
    ///
    /// [`NotSignalled::Exited`] when the process has exited; [`NotSignalled::Unverified`] when
    /// the check, run again, fails; [`Refused::Sys`] when the kernel refuses (`EPERM`).
    // The door: signals to other processes are sent through `deliver`, from here and from
    // `Child::signal`.
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), Refused> {
        if !sys::SIGNALS_PINNED {
            (self.check)(self.pid).map_err(Refused::unverified)?;
        }
        // Without a watch, only where the pin is not a handle (see `Pinned`): checked just above.
        deliver(self.watch.as_ref(), self.pid, signal)
    }

    /// Wait at most `timeout` for the process to exit: whether it did, or `None` where nothing
    /// watches it (see [`Pinned`]).
    ///
    /// # Errors
    ///
    /// When the wait itself fails (`poll`, `kevent`).
    pub(crate) fn exited(&self, timeout: Duration) -> io::Result<Option<bool>> {
        self.watch
            .as_ref()
            .map(|watch| watch.exited(timeout))
            .transpose()
    }

    /// In a fork's child: close the child's copy of the pin's descriptor.
    ///
    /// # Safety
    ///
    /// The frames that own this target never run again in this process (it ends with `_exit`
    /// without returning into them), so nothing uses or closes the descriptor after this.
    pub(crate) unsafe fn forget_in_this_copy(&self) {
        if let Some(watch) = &self.watch {
            // SAFETY: the caller guarantees that the owner never runs again here.
            unsafe { watch.forget_in_this_copy() };
        }
    }
}

/// The call that [`send`] makes, for error messages.
const SEND_CALL: &str = if sys::SIGNALS_PINNED {
    "pidfd_send_signal"
} else {
    "kill"
};

/// Send `signal` to `pid` through its pin when there is one, by pid otherwise (the callers say
/// why the pid is safe then), and tell an exited process from a refusal.
fn deliver(pin: Option<&ExitWatch>, pid: Pid, signal: Signal) -> Result<(), Refused> {
    let sent = match pin {
        Some(watch) => send(watch, pid, signal),
        None => kill(pid, signal),
    };
    sent.map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => Refused::Not(NotSignalled::Exited),
        _ => Refused::Sys {
            call: SEND_CALL,
            source: e,
        },
    })
}

/// Send `signal` to the process that `watch` pins: through the pidfd on Linux.
#[cfg(all(target_os = "linux", not(daemons_portable)))]
fn send(watch: &ExitWatch, _pid: Pid, signal: Signal) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal takes a valid descriptor (borrowed from the watch, so open), a
    // signal number, and a null siginfo pointer, which the kernel accepts as "like kill(2)".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            watch.fd().as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Send `signal` to `pid`, which `watch` pins: a `kill`, once the watch says that the process
/// has not exited (until it exits, the pid is its own). What remains is the moment between that
/// look and the `kill`, in which the process would have to exit, be reaped and its pid be given
/// to a new process.
#[cfg(any(not(target_os = "linux"), daemons_portable))]
fn send(watch: &ExitWatch, pid: Pid, signal: Signal) -> io::Result<()> {
    if watch.exited(Duration::ZERO)? {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    kill(pid, signal)
}

/// `kill(2)`: only where the pin is not a handle, once the check holds (see [`Pinned`]), or to
/// a child not yet reaped. The door's one `kill`.
#[allow(clippy::disallowed_methods)]
fn kill(pid: Pid, signal: Signal) -> io::Result<()> {
    nix::sys::signal::kill(pid.nix(), signal.nix()).map_err(io::Error::from)
}

/// Wait at most `timeout` until every one of `targets` has exited. Returns which have not, by
/// index. A target that nothing watches is waited for until the deadline.
pub(crate) fn wait_all_exited(targets: &[Target], timeout: Duration) -> Vec<usize> {
    let deadline = Deadline::after(timeout);
    let watched: Vec<usize> = (0..targets.len())
        .filter(|&i| targets[i].watch.is_some())
        .collect();
    let watches: Vec<&ExitWatch> = watched
        .iter()
        .filter_map(|&i| targets[i].watch.as_ref())
        .collect();
    let mut left: Vec<usize> = sys::wait_all_exited(&watches, timeout)
        .into_iter()
        .map(|i| watched[i])
        .collect();
    let unwatched = (0..targets.len()).filter(|i| !watched.contains(i));
    let mut unwatched = unwatched.peekable();
    if unwatched.peek().is_some() {
        // Nothing tells when these exit: they get the whole of their time.
        // Nothing would end a wait without a deadline: a timeout too long to reach is not
        // waited out.
        let time = deadline.left();
        if time != Duration::MAX {
            std::thread::sleep(time);
        }
        left.extend(unwatched);
        left.sort_unstable();
    }
    left
}

/// A child of this process, made by the fork gate: its pid is its own until it is reaped, so it
/// is signalled by pid until then, and never after. On Linux it is pinned by a pidfd as well,
/// opened right after the fork: what a `poll` waits on for its exit, and what a signal goes
/// through, which covers a process that lets the kernel reap its children (SIGCHLD ignored).
#[derive(Debug)]
pub(crate) struct Child {
    pid: Pid,
    pidfd: Option<ExitWatch>,
    reaped: bool,
}

impl Child {
    /// The child that the fork gate just made, pinned if `pin`.
    pub(super) fn forked(pid: Pid, pin: bool) -> Child {
        let pidfd = if pin && sys::SIGNALS_PINNED {
            ExitWatch::new(pid).ok().flatten()
        } else {
            None
        };
        Child {
            pid,
            pidfd,
            reaped: false,
        }
    }

    /// The pid.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// A descriptor that becomes readable when the child exits, for a `poll` among others: its
    /// pidfd on Linux; `None` elsewhere, where SIGCHLD tells.
    pub(crate) fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        #[cfg(all(target_os = "linux", not(daemons_portable)))]
        {
            self.pidfd.as_ref().map(ExitWatch::fd)
        }
        #[cfg(any(not(target_os = "linux"), daemons_portable))]
        {
            None
        }
    }

    /// Send `signal` to the child, unless it was reaped.
    ///
    /// # Errors
    ///
    /// [`NotSignalled::Exited`] when it was reaped, or has exited; [`Refused::Sys`] when the
    /// kernel refuses.
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), Refused> {
        if self.reaped {
            return Err(Refused::Not(NotSignalled::Exited));
        }
        // Without a pidfd: unreaped, the pid is still this child's.
        deliver(self.pidfd.as_ref(), self.pid, signal)
    }

    /// Reap the child if it has ended: its status, or `Ok(None)` while it runs.
    ///
    /// # Errors
    ///
    /// `ECHILD` when it was reaped elsewhere (by the kernel, where SIGCHLD is ignored); it
    /// counts as reaped from then on.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<Ended>> {
        Ok(self.reap(Some(WaitPidFlag::WNOHANG))?)
    }

    /// Wait for the child to end and reap it.
    ///
    /// # Errors
    ///
    /// As [`try_wait`](Child::try_wait).
    pub(crate) fn wait(&mut self) -> io::Result<Ended> {
        loop {
            if let Some(ended) = self.reap(None)? {
                return Ok(ended);
            }
        }
    }

    fn reap(&mut self, flags: Option<WaitPidFlag>) -> nix::Result<Option<Ended>> {
        if self.reaped {
            return Err(Errno::ECHILD);
        }
        loop {
            match waitpid(self.pid.nix(), flags) {
                Ok(WaitStatus::StillAlive) => return Ok(None),
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.reaped = true;
                    return Ok(Ended::of(status).map(|(_, ended)| ended));
                }
                // Stopped or continued: still running, for this purpose.
                Ok(_) if flags.is_some() => return Ok(None),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    self.reaped = true;
                    return Err(e);
                }
            }
        }
    }

    /// After a `waitpid` of any child reaped `pid`: whether that was this child, which then
    /// counts as reaped.
    pub(crate) fn reaped_as(&mut self, pid: Pid) -> bool {
        let this = pid == self.pid;
        if this {
            self.reaped = true;
        }
        this
    }

    /// In a fork's child: close the child's copy of the pidfd.
    ///
    /// # Safety
    ///
    /// The frames that own this handle never run again in this process (it ends with `_exit`
    /// without returning into them), so nothing uses or closes the descriptor after this.
    pub(crate) unsafe fn forget_in_this_copy(&self) {
        if let Some(pidfd) = &self.pidfd {
            // SAFETY: the caller guarantees that the owner never runs again here.
            unsafe { pidfd.forget_in_this_copy() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_signalled_only_once_verified() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let pid = Pid::from_raw(child.id() as i32);
        let refused = Pinned::pin(pid)
            .expect("pinned")
            .verify(|pid| Err(format!("pid {pid} is not what was meant")));
        assert!(
            matches!(&refused, Err(Refused::Not(NotSignalled::Unverified { reason })) if reason.contains("not what")),
            "{refused:?}"
        );
        assert_eq!(child.try_wait().expect("try_wait"), None, "never signalled");
        let target = Pinned::pin(pid)
            .expect("pinned")
            .verify(|_| Ok(()))
            .expect("verified");
        target.signal(Signal::SIGKILL).expect("signalled");
        let _ = child.wait();
        assert!(matches!(
            target.signal(Signal::SIGKILL),
            Err(Refused::Not(NotSignalled::Exited))
        ));
    }

    #[test]
    fn no_group_is_ever_pinned() {
        for pid in [0, -1] {
            assert!(matches!(
                Pinned::pin(Pid::from_raw(pid)),
                Err(Refused::Not(NotSignalled::Unverified { .. }))
            ));
        }
    }
}
