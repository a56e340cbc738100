//! The only `fork` of the crate: [`fork`] refuses unless the process is known to run exactly one
//! thread.
//!
//! A fork copies only the calling thread. A lock that another thread held at that moment (the
//! allocator's, stdout's, a `Mutex` of the program's) stays locked for ever in the child, and
//! the child deadlocks the first time it takes it; POSIX lets such a child make only
//! async-signal-safe calls until it execs. The crate's children run its own code (the daemon,
//! the supervised body, PID 1's daemon, the lock waiter), so the process must run one thread,
//! and one that cannot tell how many it runs (`/proc` not mounted) is refused too: "probably
//! one" is how a daemon ends up deadlocked at start, once in a thousand starts.
//!
//! Every caller: the two forks of `detach` (the caller's, counted, and the intermediate
//! process's, which [`fork_again`] lets through on the proof that a fork's child holds, [`Alone`]),
//! PID 1's split in `init`, each child of the supervisor, and the portable lock waiter (which,
//! refused, looks at the lock instead of forking a child to wait on it).

use std::io;
use std::marker::PhantomData;

use nix::unistd::ForkResult;

use super::process::Child;
use crate::Pid;
use crate::error::Error;
use crate::sys;

/// Which side of a [`fork`] this is.
#[derive(Debug)]
pub(crate) enum Forked {
    /// The calling process, with its new child (unreaped: its pid is its own until it is
    /// waited for).
    Parent(Child),
    /// The child: a copy of the caller, running one thread, which must never return into the
    /// caller's frames (it ends with `_exit`).
    Child(Alone),
}

/// What a fork's child holds: it was born running one thread, and [`fork_again`] spends it
/// instead of counting the threads, which costs a new process more than anything else it does
/// (its first look into `/proc/self` builds the directory: about 50 µs). Not `Send`: it stays
/// on the one thread.
#[derive(Debug)]
pub(crate) struct Alone(PhantomData<*const ()>);

/// Fork, if this process is known to run exactly one thread.
///
/// # Errors
///
/// [`Error::Threads`] when the process runs other threads, or the system does not tell how many
/// it runs (`count: None`); [`Error::Fork`] when `fork` fails (`EAGAIN` under `RLIMIT_NPROC`).
pub(crate) fn fork() -> Result<Forked, Error> {
    let count = sys::thread_count();
    if count != Some(1) {
        return Err(Error::Threads {
            count,
            test_harness: sys::in_test_harness(),
        });
    }
    // SAFETY: the process runs a single thread (checked just above; with one thread, nothing
    // can spawn another in between).
    unsafe { fork_one_thread(true) }
}

/// Fork again in a fork's child that `alone` says runs one thread, without counting them: the
/// middle process of a double fork, which exits at once. So its new child is not pinned with a
/// pidfd (that process never signals or waits for it): the parent side is the bare pid.
///
/// # Safety
///
/// The process has spawned no thread since the fork whose child got `alone`.
///
/// # Errors
///
/// [`Error::Fork`] when `fork` fails.
pub(crate) unsafe fn fork_again(alone: Alone) -> Result<Forked, Error> {
    let Alone(_) = alone;
    // SAFETY: a fork's child runs one thread, and by the caller's contract it has spawned none
    // since.
    unsafe { fork_one_thread(false) }
}

/// Fork; the parent's side pins the child with a pidfd where the system has them, if `pin`.
///
/// # Safety
///
/// The process runs a single thread.
// The door: the only place where the crate forks.
#[allow(clippy::disallowed_methods)]
unsafe fn fork_one_thread(pin: bool) -> Result<Forked, Error> {
    // SAFETY: the process runs a single thread (the caller's contract), so the child is a
    // complete copy and may run any code, not only async-signal-safe code.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => {
            Ok(Forked::Parent(Child::forked(Pid::from_nix(child), pin)))
        }
        Ok(ForkResult::Child) => Ok(Forked::Child(Alone(PhantomData))),
        Err(e) => Err(Error::Fork {
            source: io::Error::from_raw_os_error(e as i32),
        }),
    }
}
