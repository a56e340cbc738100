//! Waiting for a process to exit on macOS and the BSDs: a kqueue with an `EVFILT_PROC` filter
//! for `NOTE_EXIT`. The filter is attached to the process itself, not to its pid: registered
//! before the holder of a pidfile is checked, it keeps telling about that very process, and
//! wakes the waiter the moment it exits (no sleep loop), whoever its parent is.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Pid;

use crate::sync::Deadline;

/// A process watched through a kqueue.
#[derive(Debug)]
pub(crate) struct ExitWatch {
    kqueue: OwnedFd,
    pid: Pid,
    /// The exit event is delivered once: remembered here.
    exited: AtomicBool,
}

impl ExitWatch {
    /// Watch `pid`; `None` when it has exited.
    ///
    /// # Errors
    ///
    /// When no kqueue can be made, or the kernel refuses to watch that process.
    pub(crate) fn new(pid: Pid) -> io::Result<Option<ExitWatch>> {
        // SAFETY: kqueue takes no argument and returns a new descriptor or -1.
        let fd = unsafe { libc::kqueue() };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor and nothing else owns it.
        let kqueue = unsafe { OwnedFd::from_raw_fd(fd) };
        // A kqueue is not inherited by a fork; close-on-exec keeps it from an exec too.
        super::fds::set_cloexec(kqueue.as_raw_fd());
        // SAFETY: a zeroed kevent is a valid value of the plain C struct.
        let mut change: libc::kevent = unsafe { std::mem::zeroed() };
        change.ident = pid.as_raw() as libc::uintptr_t;
        change.filter = libc::EVFILT_PROC as _;
        change.flags = (libc::EV_ADD | libc::EV_ONESHOT) as _;
        change.fflags = libc::NOTE_EXIT as _;
        // SAFETY: one change, read from a valid kevent; no event list, so nothing is written.
        let rc = unsafe {
            libc::kevent(
                kqueue.as_raw_fd(),
                &change,
                1,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // Gone (or a zombie, which macOS does not watch).
                Some(libc::ESRCH) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(ExitWatch {
            kqueue,
            pid,
            exited: AtomicBool::new(false),
        }))
    }

    /// Wait at most `timeout` for the process to exit; whether it did.
    pub(crate) fn exited(&self, timeout: Duration) -> io::Result<bool> {
        if self.exited.load(Ordering::Acquire) {
            return Ok(true);
        }
        let deadline = Deadline::after(timeout);
        loop {
            let left = deadline.left();
            let wait = (left != Duration::MAX).then(|| libc::timespec {
                tv_sec: left.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: left.subsec_nanos() as _,
            });
            // SAFETY: a zeroed kevent is a valid value of the plain C struct.
            let mut event: libc::kevent = unsafe { std::mem::zeroed() };
            // SAFETY: no changes; room for one event in `event`; the timeout, if any, lives
            // through the call.
            let n = unsafe {
                libc::kevent(
                    self.kqueue.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    &mut event,
                    1,
                    wait.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                )
            };
            if n > 0 {
                // NOTE_EXIT, or an error on a process that went away meanwhile: gone either way.
                self.exited.store(true, Ordering::Release);
                return Ok(true);
            }
            if n == 0 {
                if deadline.passed() {
                    return Ok(false);
                }
                // A wait longer than one call can take goes on.
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// In a fork's child: nothing to close, a kqueue is not inherited by a fork.
    ///
    /// # Safety
    ///
    /// None needed here; the contract is that of the other systems' watches.
    pub(crate) unsafe fn forget_in_this_copy(&self) {}

    /// The pid: there is no `/proc` of another namespace to tie it to.
    pub(crate) fn pid_in_proc(&self) -> io::Result<Option<Pid>> {
        Ok(Some(self.pid))
    }

    /// Where [`pid_in_proc`](ExitWatch::pid_in_proc) reads, for error messages: nowhere.
    pub(crate) fn fdinfo(&self) -> String {
        String::new()
    }
}
