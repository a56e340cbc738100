//! Waiting for a daemon's exit by waiting for its pidfile's lock, which needs nothing but
//! `flock`: the fallback where no pidfd or kqueue tells when a process exits.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use crate::Signal;

use crate::error::Error;
use crate::gate::fork::{Forked, fork};
use crate::gate::process::Child;
use crate::sync::Backoff;
use crate::sys::{SignalSet, close_copy, open_fds, pipe, wait_readable};

/// A child process that waits, blocking, for a shared lock on a pidfile, and says through a
/// pipe when it got it: the daemon holds its exclusive lock until it dies (the kernel releases it
/// then, however the daemon ends), so the child's word comes the moment the daemon is gone, with
/// no sleep loop. The child lets go of the shared lock at once, before it writes its word, so
/// nothing of it is left when [`wait`](LockWaiter::wait) returns.
///
/// A process rather than a thread: a thread blocked in `flock` cannot be told to give up, and
/// `start()` refuses to fork a process that runs other threads, so a `restart()` would fail.
/// The child keeps none of the caller's descriptors but the pidfile's, blocks every signal, makes
/// only async-signal-safe calls, and is reaped (killed first, if it still waits) when the waiter
/// is dropped.
///
/// The fork gate lets only a process that runs one thread fork: in one that runs others (or
/// cannot tell), the waiter looks at the lock instead, at growing intervals ([`Backoff`]).
#[derive(Debug)]
pub(crate) struct LockWaiter {
    /// The waiting child and its word, or `None` where the waiter looks at the lock itself.
    child: Option<(Child, File)>,
    /// The open file that the child waits on: a lock that it got just before it was killed is
    /// let go of through it.
    file: File,
    done: bool,
}

impl LockWaiter {
    /// Start waiting for the lock of `file` (an open file of the caller's own, not the daemon's).
    ///
    /// # Errors
    ///
    /// When the file cannot be duplicated, or the pipe made; [`Error::Fork`] when `fork` fails.
    pub(crate) fn start(file: &File) -> Result<LockWaiter, Error> {
        let sys = |call, source| Error::Sys { call, source };
        let file = file.try_clone().map_err(|e| sys("dup", e))?;
        let (read, write) = pipe(false).map_err(|e| sys("pipe", e))?;
        let (lock_fd, word_fd) = (file.as_raw_fd(), write.as_raw_fd());
        // The child closes every other descriptor it inherits: it would otherwise keep the
        // caller's own locks, pipes and output open for as long as it waits (a `stop | cat`
        // would wait for it). Up to the highest one open now, and a margin.
        let highest = open_fds()
            .unwrap_or_default()
            .into_iter()
            .chain([lock_fd, word_fd])
            .max()
            .unwrap_or(2);
        let close_up_to = highest.saturating_add(64);
        // Every signal stays blocked in the child: none of the caller's handlers runs there,
        // and only SIGKILL ends it. The caller's mask is put back right after the fork.
        let masked = |source| Error::Sys {
            call: "pthread_sigmask",
            source,
        };
        let mask = SignalSet::all().block().map_err(masked)?;
        // The child dies with its caller: a waiter left behind by a killed caller would hold the
        // pidfile open for as long as the daemon lives.
        let parent = nix::unistd::getpid().as_raw();
        let forked = match fork() {
            Ok(Forked::Child(_)) => wait_for_lock(lock_fd, word_fd, close_up_to, parent),
            Ok(Forked::Parent(child)) => Ok(Some(child)),
            // Other threads, or no telling: no child, the waiter looks at the lock itself.
            Err(Error::Threads { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        mask.restore().map_err(masked)?;
        let child = forked?.map(|child| (child, File::from(read)));
        drop(write);
        Ok(LockWaiter {
            child,
            file,
            done: false,
        })
    }

    /// Wait at most `timeout` for the lock to be free; whether it is.
    ///
    /// # Errors
    ///
    /// When `poll` fails, or the child ended without its word.
    pub(crate) fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.done {
            return Ok(true);
        }
        let Some((_, word)) = &mut self.child else {
            self.done = self.look(timeout)?;
            return Ok(self.done);
        };
        if !wait_readable(word.as_fd(), timeout)? {
            return Ok(false);
        }
        let mut byte = [0u8; 1];
        let read = loop {
            match word.read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match read {
            // The child exits right after its word: it is reaped when the waiter is dropped,
            // while the caller goes on.
            Ok(1) => {
                self.done = true;
                Ok(true)
            }
            Ok(_) => {
                self.reap();
                Err(io::Error::other(
                    "the process that waits for the pidfile's lock ended without a word",
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Without a child: look at the lock at growing intervals, at most `timeout`.
    fn look(&self, timeout: Duration) -> io::Result<bool> {
        let mut backoff = Backoff::within(timeout);
        loop {
            match self.file.try_lock_shared() {
                Ok(()) => {
                    let _ = self.file.unlock();
                    return Ok(true);
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            if !backoff.sleep() {
                return Ok(false);
            }
        }
    }

    /// In a fork's child: close the child's copies of the waiter's descriptors. The waiting
    /// child is not this one's to reap.
    ///
    /// # Safety
    ///
    /// The frames that own this waiter never run again in this process (it ends with `_exit`
    /// without returning into them), so nothing uses or closes the descriptors after this.
    pub(crate) unsafe fn forget_in_this_copy(&self) {
        // SAFETY: the caller guarantees that the owner never runs again here.
        unsafe {
            if let Some((child, word)) = &self.child {
                close_copy(word.as_raw_fd());
                child.forget_in_this_copy();
            }
            close_copy(self.file.as_raw_fd());
        }
    }

    fn reap(&mut self) {
        if let Some((child, _)) = &mut self.child {
            let _ = child.wait();
        }
    }
}

impl Drop for LockWaiter {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.child {
            // Said its word and exiting, or still waiting: killed first. Unreaped, the child's
            // pid is still its own.
            if !self.done && matches!(child.try_wait(), Ok(None)) {
                let _ = child.signal(Signal::SIGKILL);
            }
            let _ = child.wait();
        }
        let _ = self.file.unlock();
    }
}

/// The child of [`LockWaiter`]: close every descriptor up to `close_up_to` but `lock` and
/// `word`, wait for a shared lock on `lock`, let go of it, write one byte to `word` and exit.
///
/// A waiter whose caller is gone (killed during a `restart()`, say) has no one to tell: on Linux
/// it dies with the thread that forked it, as the lock it waits for may outlive the daemon it
/// waited for (shared with a successor at a restart).
fn wait_for_lock(lock: RawFd, word: RawFd, close_up_to: RawFd, parent: libc::pid_t) -> ! {
    // SAFETY: prctl, getppid, close, flock, write and _exit are async-signal-safe; the
    // descriptors are this process's copies of the parent's, which nothing else here uses.
    unsafe {
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        for fd in 0..=close_up_to {
            if fd != lock && fd != word {
                libc::close(fd);
            }
        }
        while libc::flock(lock, libc::LOCK_SH) != 0 {
            if nix::errno::Errno::last_raw() != libc::EINTR {
                libc::_exit(1);
            }
        }
        libc::flock(lock, libc::LOCK_UN);
        libc::write(word, b"1".as_ptr().cast(), 1);
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{WaitPidFlag, waitpid};
    use std::time::Instant;

    #[test]
    fn the_lock_waiter_wakes_when_the_lock_is_let_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held.pid");
        let holder = File::create(&path).expect("create");
        holder.try_lock().expect("lock");
        let probe = File::open(&path).expect("open");
        let mut waiter = LockWaiter::start(&probe).expect("start");
        assert!(!waiter.wait(Duration::from_millis(20)).expect("wait"));
        let released = Instant::now();
        drop(holder);
        assert!(waiter.wait(Duration::from_secs(5)).expect("wait"));
        assert!(released.elapsed() < Duration::from_secs(1));
        assert!(waiter.wait(Duration::ZERO).expect("wait"));
        // Nothing of the child is left: the file can be locked exclusively.
        assert!(lockable(&path));
    }

    #[test]
    fn a_lock_waiter_that_gives_up_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held.pid");
        let holder = File::create(&path).expect("create");
        holder.try_lock().expect("lock");
        let probe = File::open(&path).expect("open");
        let waiter = LockWaiter::start(&probe).expect("start");
        let child = waiter.child.as_ref().map(|(child, _)| child.pid());
        drop(waiter);
        // Killed and reaped: no such child any more.
        if let Some(child) = child {
            assert!(waitpid(child.nix(), Some(WaitPidFlag::WNOHANG)).is_err());
        }
        drop(holder);
        assert!(lockable(&path));
    }

    /// Whether `path` can be locked exclusively within a few seconds: the other tests of this
    /// process fork too (a `Command`, a lock waiter), and each child holds copies of every
    /// descriptor for a moment, the holder's among them.
    fn lockable(path: &std::path::Path) -> bool {
        let file = File::open(path).expect("open");
        let deadline = Instant::now() + Duration::from_secs(5);
        while file.try_lock().is_err() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}
