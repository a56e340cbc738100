//! Where a daemon is in its life, shared by the body, the signal handlers, the keeper and the
//! engine: whether a stop was asked and by which signal, the wake-up pipe that interrupts every
//! wait, and the one way to wait for a stop ([`Lifecycle::wait`]), which every sleep of the body,
//! the keeper and the futures of [`Ctl::stopped`](crate::Ctl::stopped) use.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::thread;
use std::time::Duration;

use crate::Signal;

use crate::engine::watchdog::Watchdog;
use crate::sync::lock;
use crate::sys;
use crate::systemd::Notifier;

/// The stop state of a daemon, and its service manager's ear.
pub(in crate::engine) struct Lifecycle {
    stopping: AtomicBool,
    /// The first stop signal's number, 0 while there is none (or the stop came from
    /// `Ctl::stop`).
    signal: AtomicI32,
    /// Readable once a stop is asked: every wait polls it. A pipe, because a stop signal's
    /// handler may write to it, and because `poll` returns on a signal where a futex wait would
    /// silently resume.
    wake_read: OwnedFd,
    wake_write: OwnedFd,
    /// Whether a stop signal has come, for [`stop_or_force`](Lifecycle::stop_or_force).
    signalled: AtomicBool,
    /// The stop signal that forced the end during a stop (`run()`'s second Ctrl-C), 0 while
    /// none did.
    forced: AtomicI32,
    /// Readable once whoever ends the daemon must look again without waiting out the grace:
    /// the body returned, or a stop signal forced the end. A pipe for the same reason as the
    /// wake-up pipe: a signal handler writes to it.
    hurry_read: OwnedFd,
    hurry_write: OwnedFd,
    stopping_told: AtomicBool,
    notifier: Option<Arc<Notifier>>,
    watchdog: Option<Watchdog>,
    /// The futures waiting for the stop ([`Ctl::stopped`](crate::Ctl::stopped)).
    stop_wakers: StopWakers,
}

/// How many descriptors a [`Lifecycle::wait`] polls at most, the wake-up pipe's among them.
const WAITED: usize = 4;

/// What ended a [`Lifecycle::wait`].
pub(in crate::engine) struct Woke {
    stopped: bool,
    /// Whether each descriptor polled is readable: the wake-up pipe first, then those given.
    ready: sys::Readable,
}

impl Woke {
    /// Whether a stop was asked.
    pub(in crate::engine) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether the `i`th descriptor given to the wait is readable; never once a stop is asked.
    pub(in crate::engine) fn readable(&self, i: usize) -> bool {
        !self.stopped && self.ready.get(i + 1)
    }
}

impl Lifecycle {
    /// A daemon's life that tells the service manager it stops, and whose body pings
    /// `watchdog`.
    pub(in crate::engine) fn new(
        notifier: Option<Arc<Notifier>>,
        watchdog: Option<Watchdog>,
    ) -> io::Result<Arc<Lifecycle>> {
        let (wake_read, wake_write) = sys::pipe(true)?;
        let (hurry_read, hurry_write) = sys::pipe(true)?;
        Ok(Arc::new(Lifecycle {
            stopping: AtomicBool::new(false),
            signal: AtomicI32::new(0),
            wake_read,
            wake_write,
            signalled: AtomicBool::new(false),
            forced: AtomicI32::new(0),
            hurry_read,
            hurry_write,
            stopping_told: AtomicBool::new(false),
            notifier,
            watchdog,
            stop_wakers: StopWakers::default(),
        }))
    }

    /// Ask the body to stop: set the flag, remember the first stop signal, wake every waiter.
    ///
    /// Async-signal-safe (atomics and one `write`), because a stop signal's handler calls it
    /// directly: the body wakes without a detour through the signal thread.
    pub(in crate::engine) fn request_stop(&self, signal: Option<Signal>) {
        if let Some(signal) = signal {
            let _ =
                self.signal
                    .compare_exchange(0, signal as i32, Ordering::AcqRel, Ordering::Acquire);
        }
        self.stopping.store(true, Ordering::Release);
        // Full pipe (EAGAIN) means it is readable already, which is all that matters.
        let _ = nix::unistd::write(&self.wake_write, b"s");
    }

    /// A stop signal where a second one forces the end (`run()` in the foreground, as a second
    /// Ctrl-C does for servers): the first asks for a stop, the second forces it. Only stop
    /// signals count: a stop asked otherwise (`Ctl::stop`, a successor that took over at a
    /// restart) is not hurried by the one signal that follows it.
    ///
    /// Async-signal-safe, as [`request_stop`](Lifecycle::request_stop) is.
    pub(in crate::engine) fn stop_or_force(&self, signal: Signal) {
        if self.signalled.swap(true, Ordering::AcqRel) {
            let _ =
                self.forced
                    .compare_exchange(0, signal as i32, Ordering::AcqRel, Ordering::Acquire);
            self.hurry();
        }
        self.request_stop(Some(signal));
    }

    /// The stop signal that forced the end, if one did.
    pub(in crate::engine) fn forced(&self) -> Option<Signal> {
        Signal::try_from(self.forced.load(Ordering::Acquire)).ok()
    }

    /// Make the hurry pipe readable: whoever ends the daemon looks again at once.
    /// Async-signal-safe.
    pub(in crate::engine) fn hurry(&self) {
        // Full pipe (EAGAIN) means it is readable already, which is all that matters.
        let _ = nix::unistd::write(&self.hurry_write, b"h");
    }

    /// Readable for good once [`hurry`](Lifecycle::hurry) was called.
    pub(in crate::engine) fn hurry_fd(&self) -> BorrowedFd<'_> {
        self.hurry_read.as_fd()
    }

    #[inline]
    pub(in crate::engine) fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(in crate::engine) fn stop_signal(&self) -> Option<Signal> {
        Signal::try_from(self.signal.load(Ordering::Acquire)).ok()
    }

    /// Wait until a stop is asked, one of `fds` (at most three) is readable, or `timeout` passes,
    /// whichever comes first; a signal may end it early too. The one wait for a stop.
    pub(in crate::engine) fn wait(&self, fds: &[BorrowedFd<'_>], timeout: Duration) -> Woke {
        if self.stop_requested() {
            return Woke {
                stopped: true,
                ready: sys::Readable::default(),
            };
        }
        // On the stack: a wait, which the keeper repeats every second for the daemon's life,
        // allocates nothing.
        let mut polled = [self.wake_read.as_fd(); WAITED];
        let n = fds.len().min(WAITED - 1) + 1;
        polled[1..n].copy_from_slice(&fds[..n - 1]);
        let ready = sys::wait_any_readable(&polled[..n], timeout);
        Woke {
            stopped: self.stop_requested(),
            ready,
        }
    }

    /// The wake-up pipe's read end: readable for good once a stop is asked.
    pub(in crate::engine) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// Tell the service manager, once, that the daemon is stopping. Not for signal context.
    pub(in crate::engine) fn tell_stopping(&self) {
        if let Some(notifier) = &self.notifier
            && !self.stopping_told.swap(true, Ordering::AcqRel)
        {
            let _ = notifier.send("STOPPING=1");
        }
    }

    /// Never tell the service manager that this instance stops: it hands the service to a
    /// successor, and systemd keeps the last READY=1 or STOPPING=1 it hears during a reload,
    /// stopping the unit if that was STOPPING=1.
    pub(in crate::engine) fn stop_silently(&self) {
        self.stopping_told.store(true, Ordering::Release);
    }

    /// Whether STOPPING=1 is said, or is never to be said, from now on.
    #[cfg(test)]
    pub(in crate::engine) fn stopping_settled(&self) -> bool {
        self.stopping_told.load(Ordering::Acquire)
    }

    pub(in crate::engine) fn notifier(&self) -> Option<Arc<Notifier>> {
        self.notifier.clone()
    }

    /// The service manager's watchdog, when it asked for one.
    #[inline]
    pub(in crate::engine) fn watchdog(&self) -> Option<&Watchdog> {
        self.watchdog.as_ref()
    }

    /// Register (or replace) the waker of the future that holds `slot`. Returns false if the
    /// watcher cannot be started: the caller must then not wait for it.
    pub(in crate::engine) fn register_waker(
        self: &Arc<Lifecycle>,
        slot: &mut Option<u64>,
        waker: &Waker,
    ) -> bool {
        self.stop_wakers.register(self, slot, waker)
    }

    /// Forget the waker of the future that held `slot`.
    pub(in crate::engine) fn forget_waker(&self, slot: u64) {
        self.stop_wakers.lock().wakers.remove(&slot);
    }

    /// How many wakers wait, and whether the watcher was started.
    #[cfg(test)]
    pub(in crate::engine) fn wakers(&self) -> (usize, bool) {
        let registry = self.stop_wakers.lock();
        (registry.wakers.len(), registry.watching)
    }
}

// The wakers of the stop as a future.
//
// A stop is asked from a stop signal's handler, which may only do async-signal-safe things: it
// sets a flag and writes to the wake pipe, and can neither lock the list of wakers nor call one.
// So the wakers are called from a thread: a watcher that waits for the stop, wakes every
// registered waker, and ends. It is started by the first poll that has to wait, once per daemon;
// a daemon whose body never awaits a stop never runs it.
//
// Why a thread of its own rather than the keeper (which also waits for the stop): a waker runs
// the executor's code (it may lock, send on a channel, write to an eventfd), and the keeper is
// what ends a daemon whose body does not return in time: nothing that a body's executor does
// may delay it. The watcher also serves a `Ctl` that no keeper watches.

/// The wakers of the futures that wait for the stop, and whether the watcher runs.
#[derive(Default)]
struct StopWakers(Mutex<Registry>);

#[derive(Default)]
struct Registry {
    next: u64,
    /// A B-tree rather than a hash map: a hash map's random keys would cost every daemon a
    /// `getrandom` at start, for a registry most of them never fill.
    wakers: BTreeMap<u64, Waker>,
    watching: bool,
}

impl StopWakers {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        lock(&self.0)
    }

    fn register(&self, lifecycle: &Arc<Lifecycle>, slot: &mut Option<u64>, waker: &Waker) -> bool {
        let mut registry = self.lock();
        let id = *slot.get_or_insert_with(|| {
            registry.next += 1;
            registry.next
        });
        registry.wakers.insert(id, waker.clone());
        if registry.watching {
            return true;
        }
        let watched = lifecycle.clone();
        let started = thread::Builder::new()
            .name("daemons-stop-watch".into())
            // It only polls a pipe and calls wakers.
            .stack_size(64 * 1024)
            .spawn(move || {
                while !watched.wait(&[], Duration::from_secs(3600)).stopped() {}
                let wakers = std::mem::take(&mut watched.stop_wakers.lock().wakers);
                let wakers: Vec<Waker> = wakers.into_values().collect();
                for waker in wakers {
                    waker.wake();
                }
            });
        registry.watching = started.is_ok();
        registry.watching
    }
}
