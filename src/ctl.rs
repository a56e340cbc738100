//! The body's view of the daemon ([`Ctl`]) and the life-cycle state behind it: whether a stop
//! was asked and by which signal, the wake-up pipe that interrupts every sleep, readiness, and
//! the service manager's watchdog.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::detach::Reporter;
use crate::sys::wait_readable;
use crate::systemd::Notifier;

/// The body's view of the daemon: whether to go on, an interruptible sleep, and a way to stop.
///
/// A `Ctl` is cheap to clone and may be moved into threads that the body spawns.
///
/// # Examples
///
/// ```
/// use daemons::Daemon;
/// use std::time::Duration;
///
/// let daemon = Daemon::builder()
///     .pidfile("/tmp/doc-ctl.pid")
///     .run(|ctl| {
///         while ctl.running() {
///             // do some work, then rest; a stop wakes the sleep at once
///             ctl.sleep(Duration::from_secs(60));
///         }
///     })
///     .build()?;
/// # Ok::<(), daemons::Error>(())
/// ```
#[derive(Clone)]
pub struct Ctl {
    lifecycle: Arc<Lifecycle>,
}

impl fmt::Debug for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctl")
            .field("running", &self.running())
            .finish()
    }
}

/// Where a daemon is in its life, shared by the body, the signal handlers and the engine.
pub(crate) struct Lifecycle {
    stopping: AtomicBool,
    /// The first stop signal's number, 0 while there is none (or the stop came from
    /// `Ctl::stop`).
    signal: AtomicI32,
    /// Readable once a stop is asked: every `Ctl::sleep` polls it. A pipe, because a stop
    /// signal's handler may write to it, and because `poll` returns on a signal where a futex
    /// wait would silently resume.
    wake_read: OwnedFd,
    wake_write: OwnedFd,
    stopping_told: AtomicBool,
    notifier: Option<Arc<Notifier>>,
    watchdog: Option<Watchdog>,
    /// Taken by whoever reports readiness first: the engine, or `ctl.ready()` when readiness is
    /// manual.
    reporter: Mutex<Option<Reporter>>,
    ready: AtomicBool,
}

/// `WATCHDOG=1` pings, sent from the body's own loop so that a hung body stops them.
struct Watchdog {
    every: Duration,
    since: Instant,
    /// When the next ping is due, in nanoseconds after `since`.
    due: AtomicU64,
}

impl Lifecycle {
    /// Ask the body to stop: set the flag, remember the first stop signal, wake every sleeper.
    ///
    /// Async-signal-safe (atomics and one `write`), because a stop signal's handler calls it
    /// directly: the body wakes without a detour through the control thread.
    pub(crate) fn request_stop(&self, signal: Option<Signal>) {
        if let Some(signal) = signal {
            let _ =
                self.signal
                    .compare_exchange(0, signal as i32, Ordering::AcqRel, Ordering::Acquire);
        }
        self.stopping.store(true, Ordering::Release);
        // Full pipe (EAGAIN) means it is readable already, which is all that matters.
        let _ = nix::unistd::write(&self.wake_write, b"s");
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Wait at most `timeout` for a stop request; returns whether one came.
    pub(crate) fn wait_for_stop(&self, timeout: Duration) -> bool {
        if !self.stop_requested() {
            let _ = wait_readable(self.wake_read.as_fd(), timeout);
        }
        self.stop_requested()
    }

    /// Tell the service manager, once, that the daemon is stopping. Not for signal context.
    pub(crate) fn tell_stopping(&self) {
        if let Some(notifier) = &self.notifier
            && !self.stopping_told.swap(true, Ordering::AcqRel)
        {
            let _ = notifier.send("STOPPING=1");
        }
    }

    pub(crate) fn stop_signal(&self) -> Option<Signal> {
        Signal::try_from(self.signal.load(Ordering::Acquire)).ok()
    }

    /// Keep the report pipe until readiness is reported (by the engine, or by `ctl.ready()`).
    pub(crate) fn hold_reporter(&self, reporter: Reporter) {
        *lock(&self.reporter) = Some(reporter);
    }

    /// Report readiness to the caller of `start()` and the service manager, once.
    pub(crate) fn report_ready(&self) {
        if self.ready.swap(true, Ordering::AcqRel) {
            return;
        }
        let reporter = lock(&self.reporter).take();
        if let Some(reporter) = reporter {
            reporter.ready();
        }
        if let Some(notifier) = &self.notifier {
            let _ = notifier.ready();
        }
    }

    /// The report pipe, if readiness was never reported: the caller of `start()` is still
    /// waiting, and should hear why the daemon ends.
    pub(crate) fn take_unused_reporter(&self) -> Option<Reporter> {
        if self.ready.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.reporter).take()
    }

    pub(crate) fn notifier(&self) -> Option<Arc<Notifier>> {
        self.notifier.clone()
    }

    /// Send `WATCHDOG=1` if it is due.
    #[cold]
    fn ping_if_due(&self, watchdog: &Watchdog) {
        let now = watchdog.since.elapsed().as_nanos() as u64;
        if now >= watchdog.due.load(Ordering::Relaxed) {
            watchdog
                .due
                .store(now + watchdog.every.as_nanos() as u64, Ordering::Relaxed);
            if let Some(notifier) = &self.notifier {
                let _ = notifier.send("WATCHDOG=1");
            }
        }
    }

    /// How long until the next watchdog ping is due, if there is a watchdog.
    fn until_ping(&self) -> Option<Duration> {
        let watchdog = self.watchdog.as_ref()?;
        let now = watchdog.since.elapsed().as_nanos() as u64;
        Some(Duration::from_nanos(
            watchdog.due.load(Ordering::Relaxed).saturating_sub(now),
        ))
    }
}

impl Ctl {
    #[cfg(test)]
    pub(crate) fn new() -> Ctl {
        Ctl::notifying(None, None).expect("a pipe")
    }

    /// A `Ctl` that tells the service manager about readiness and stops, and pings its watchdog
    /// every `watchdog` (half the period it asked for).
    pub(crate) fn notifying(
        notifier: Option<Notifier>,
        watchdog: Option<Duration>,
    ) -> io::Result<Ctl> {
        let notifier = notifier.map(Arc::new);
        let watchdog = watchdog
            .filter(|_| notifier.is_some())
            .map(|every| Watchdog {
                every,
                since: Instant::now(),
                due: AtomicU64::new(0),
            });
        let (wake_read, wake_write) = crate::sys::pipe(true)?;
        Ok(Ctl {
            lifecycle: Arc::new(Lifecycle {
                stopping: AtomicBool::new(false),
                signal: AtomicI32::new(0),
                wake_read,
                wake_write,
                stopping_told: AtomicBool::new(false),
                notifier,
                watchdog,
                reporter: Mutex::new(None),
                ready: AtomicBool::new(false),
            }),
        })
    }

    pub(crate) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// Whether the daemon should go on: false once a stop was asked.
    ///
    /// # Examples
    ///
    /// See [`Ctl`].
    #[inline]
    pub fn running(&self) -> bool {
        if let Some(watchdog) = &self.lifecycle.watchdog {
            self.lifecycle.ping_if_due(watchdog);
        }
        !self.lifecycle.stop_requested()
    }

    /// Sleep for `duration`, or until a stop is asked, whichever comes first. Returns `true` if
    /// the whole duration passed and the daemon is still running, `false` if a stop cut it short.
    ///
    /// # Examples
    ///
    /// ```
    /// # use daemons::Daemon;
    /// # use std::time::Duration;
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-sleep.pid")
    ///     .run(|ctl| {
    ///         while ctl.sleep(Duration::from_secs(5)) {
    ///             println!("still here");
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now().checked_add(duration);
        loop {
            if !self.running() {
                self.lifecycle.tell_stopping();
                return false;
            }
            let mut left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return true;
            }
            if let Some(ping) = self.lifecycle.until_ping() {
                left = left.min(ping);
            }
            // A stop makes the pipe readable for good; a signal or a watchdog ping ends the wait
            // early; either way the loop looks again.
            let _ = wait_readable(self.lifecycle.wake_read.as_fd(), left);
        }
    }

    /// Report that the daemon is ready, when the builder was told that readiness is manual
    /// ([`manual_ready`](crate::DaemonBuilder::manual_ready)): until then `start()` waits (at
    /// most the ready timeout) and the service manager hears no `READY=1`. Call it once the
    /// daemon can serve, after binding its socket, say. Later calls, and calls when readiness is
    /// automatic, do nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::net::TcpListener;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-ready.pid")
    ///     .manual_ready(true)
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = TcpListener::bind("127.0.0.1:0")?;
    ///         ctl.ready();                 // start() returns only now
    ///         listener.set_nonblocking(true)?;
    ///         while ctl.running() {
    ///             // accept and serve...
    ///             ctl.sleep(std::time::Duration::from_millis(50));
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn ready(&self) {
        self.lifecycle.report_ready();
    }

    /// Ask the daemon to stop, as a stop signal would, but without running any signal's
    /// handlers. Useful from a thread that the body spawned and that found a fatal condition.
    ///
    /// # Examples
    ///
    /// ```
    /// # use daemons::Daemon;
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-stop.pid")
    ///     .run(|ctl| {
    ///         let ctl2 = ctl.clone();
    ///         std::thread::spawn(move || ctl2.stop());
    ///         while ctl.running() {
    ///             ctl.sleep(std::time::Duration::from_millis(10));
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn stop(&self) {
        self.lifecycle.request_stop(None);
        self.lifecycle.tell_stopping();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock here means a body thread panicked while holding it; the stop state it
    // guards is two plain fields, always consistent, so going on is right.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn sleep_wakes_on_stop() {
        let ctl = Ctl::new();
        let other = ctl.clone();
        let waker = thread::spawn(move || other.stop());
        let slept = ctl.sleep(Duration::from_secs(600));
        waker.join().expect("join");
        assert!(!slept);
        assert!(!ctl.running());
    }

    #[test]
    fn sleep_runs_its_course_when_not_stopped() {
        let ctl = Ctl::new();
        assert!(ctl.sleep(Duration::from_millis(1)));
        assert!(ctl.running());
    }

    #[test]
    fn a_sleep_of_any_length_is_cut_short_by_a_stop() {
        let ctl = Ctl::new();
        ctl.stop();
        assert!(!ctl.sleep(Duration::MAX));
    }

    #[test]
    fn the_first_stop_signal_is_kept() {
        let ctl = Ctl::new();
        ctl.lifecycle().request_stop(Some(Signal::SIGINT));
        ctl.lifecycle().request_stop(Some(Signal::SIGTERM));
        assert_eq!(ctl.lifecycle().stop_signal(), Some(Signal::SIGINT));
    }
}
