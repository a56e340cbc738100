//! The bodies: one run engine, and the step adapter over it.
//!
//! Whatever the body, the daemon stops the same way: a stop signal sets a flag and wakes every
//! [`Ctl::sleep`]; a `run` body sees [`Ctl::running`] turn false and returns; a `step` loop
//! finishes the step under way and does not start another.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::unistd::pipe2;

use crate::control::wait_readable;
use crate::detach::Reporter;
use crate::notify::Notifier;
use crate::pool::{MessagesFn, PoolPlan};

/// What a body or a step may return: `()`, or a `Result` whose error is logged and stops the
/// daemon with a failure exit code.
///
/// # Examples
///
/// ```
/// use daemons::Daemon;
///
/// // A step that can fail: `?` works inside it.
/// let daemon = Daemon::builder()
///     .pidfile("/tmp/doc-outcome.pid")
///     .step(|| -> Result<(), std::io::Error> {
///         std::fs::metadata("/")?;
///         Ok(())
///     })
///     .build()?;
/// # Ok::<(), daemons::Error>(())
/// ```
pub trait Outcome {
    /// `Ok(())`, or the error's message.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Outcome;
    ///
    /// assert_eq!(().into_result(), Ok(()));
    /// assert_eq!(Err::<(), _>("disk full").into_result(), Err("disk full".to_string()));
    /// ```
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T, E: fmt::Display> Outcome for Result<T, E> {
    fn into_result(self) -> Result<(), String> {
        self.map(drop).map_err(|e| e.to_string())
    }
}

pub(crate) type RunFn = Box<dyn FnMut(&Ctl) -> Result<(), String> + Send>;
pub(crate) type StepFn = Box<dyn FnMut() -> Result<(), String> + Send>;

/// The body of a daemon, as given to the builder.
pub(crate) enum Body {
    Run(RunFn),
    Step(StepFn),
    Messages(MessagesFn),
}

/// Where the daemon's own messages go: its stderr (the log file, once detached), one line each,
/// prefixed with the daemon's name. Cheap to clone into worker threads.
#[derive(Clone)]
pub(crate) struct Log(Arc<dyn Fn(&str) + Send + Sync>);

impl Log {
    pub(crate) fn new(name: &str) -> Log {
        let name: Arc<str> = name.into();
        Log(Arc::new(move |message| eprintln!("{name}: {message}")))
    }

    #[cfg(test)]
    pub(crate) fn to(sink: impl Fn(&str) + Send + Sync + 'static) -> Log {
        Log(Arc::new(sink))
    }

    pub(crate) fn log(&self, message: &str) {
        (self.0)(message)
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Log(..)")
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Body::Run(_) => "Body::Run(..)",
            Body::Step(_) => "Body::Step(..)",
            Body::Messages(_) => "Body::Messages(..)",
        })
    }
}

/// How the adapters run, beside the closures themselves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepPlan {
    pub(crate) interval: Duration,
    pub(crate) keep_going: bool,
    pub(crate) pool: PoolPlan,
}

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
    shared: Arc<Shared>,
}

impl fmt::Debug for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctl")
            .field("running", &self.running())
            .finish()
    }
}

pub(crate) struct Shared {
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

impl Shared {
    fn new(notifier: Option<Arc<Notifier>>, watchdog: Option<Watchdog>) -> io::Result<Shared> {
        let (wake_read, wake_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(Shared {
            stopping: AtomicBool::new(false),
            signal: AtomicI32::new(0),
            wake_read,
            wake_write,
            stopping_told: AtomicBool::new(false),
            notifier,
            watchdog,
            reporter: Mutex::new(None),
            ready: AtomicBool::new(false),
        })
    }

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

    pub(crate) fn notifier(&self) -> Option<Arc<Notifier>> {
        self.notifier.clone()
    }

    /// Hand the reporter over, to be used by [`report_ready`](Shared::report_ready).
    pub(crate) fn await_ready(&self, reporter: Reporter) {
        *lock(&self.reporter) = Some(reporter);
    }

    /// The reporter, if readiness was never reported.
    pub(crate) fn unreported(&self) -> Option<Reporter> {
        if self.ready.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.reporter).take()
    }

    /// Send `WATCHDOG=1` if it is due.
    #[cold]
    fn pet(&self, watchdog: &Watchdog) {
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
        Ok(Ctl {
            shared: Arc::new(Shared::new(notifier, watchdog)?),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether the daemon should go on: false once a stop was asked.
    ///
    /// # Examples
    ///
    /// See [`Ctl`].
    #[inline]
    pub fn running(&self) -> bool {
        if let Some(watchdog) = &self.shared.watchdog {
            self.shared.pet(watchdog);
        }
        !self.shared.stopping.load(Ordering::Acquire)
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
        let deadline = Instant::now() + duration;
        loop {
            if !self.running() {
                self.shared.tell_stopping();
                return false;
            }
            let mut left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if let Some(ping) = self.shared.until_ping() {
                left = left.min(ping);
            }
            // A stop makes the pipe readable for good; a signal or a watchdog ping ends the wait
            // early; either way the loop looks again.
            let _ = wait_readable(self.shared.wake_read.as_fd(), left);
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
        self.shared.report_ready();
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
        self.shared.request_stop(None);
        self.shared.tell_stopping();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock here means a body thread panicked while holding it; the stop state it
    // guards is two plain fields, always consistent, so going on is right.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Run the body until it returns (run) or a stop is asked (step). A panic is caught and turned
/// into an error, so that the caller can remove the pidfile and exit with a failure code.
pub(crate) fn drive(body: &mut Body, plan: StepPlan, ctl: &Ctl, log: &Log) -> Result<(), String> {
    let result = catch_unwind(AssertUnwindSafe(|| match body {
        Body::Run(run) => run(ctl),
        Body::Step(step) => step_loop(step, plan, ctl, log),
        Body::Messages(serve) => serve(ctl, plan.pool, log),
    }));
    match result {
        Ok(outcome) => outcome,
        Err(panic) => Err(format!("the body panicked: {}", panic_message(&*panic))),
    }
}

fn step_loop(step: &mut StepFn, plan: StepPlan, ctl: &Ctl, log: &Log) -> Result<(), String> {
    while ctl.running() {
        if let Err(e) = step() {
            if !plan.keep_going {
                return Err(format!("a step failed: {e}"));
            }
            log.log(&format!("a step failed: {e} (going on)"));
        }
        if !plan.interval.is_zero() {
            ctl.sleep(plan.interval);
        }
    }
    ctl.shared().tell_stopping();
    Ok(())
}

/// The text of a panic payload: panics carry a `&str` or a `String`, anything else is opaque.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic with a non-text payload)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    const PLAN: StepPlan = StepPlan {
        interval: Duration::ZERO,
        keep_going: false,
        pool: PoolPlan {
            size: 1,
            idle_time: Duration::ZERO,
        },
    };

    fn quiet() -> Log {
        Log::to(|_| {})
    }

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
    fn the_first_stop_signal_is_kept() {
        let ctl = Ctl::new();
        ctl.shared().request_stop(Some(Signal::SIGINT));
        ctl.shared().request_stop(Some(Signal::SIGTERM));
        assert_eq!(ctl.shared().stop_signal(), Some(Signal::SIGINT));
    }

    #[test]
    fn step_loop_finishes_the_step_under_way() {
        let ctl = Ctl::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let inner = ctl.clone();
        let mut body = Body::Step(Box::new(move || {
            if seen.fetch_add(1, Ordering::SeqCst) == 9 {
                inner.stop();
            }
            Ok(())
        }));
        assert_eq!(drive(&mut body, PLAN, &ctl, &quiet()), Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn step_errors_stop_or_are_logged() {
        let ctl = Ctl::new();
        let mut body = Body::Step(Box::new(|| Err("disk full".to_string())));
        let err = drive(&mut body, PLAN, &ctl, &quiet()).unwrap_err();
        assert!(err.contains("disk full"), "{err}");

        let logged = Arc::new(Mutex::new(Vec::new()));
        let inner = ctl.clone();
        let mut n = 0;
        let mut body = Body::Step(Box::new(move || {
            n += 1;
            if n == 3 {
                inner.stop();
            }
            Err(format!("failure {n}"))
        }));
        let plan = StepPlan {
            keep_going: true,
            ..PLAN
        };
        let sink = logged.clone();
        let log = Log::to(move |m| sink.lock().expect("log").push(m.to_string()));
        assert_eq!(drive(&mut body, plan, &ctl, &log), Ok(()));
        assert_eq!(logged.lock().expect("log").len(), 3);
    }

    #[test]
    fn panics_become_errors() {
        let ctl = Ctl::new();
        let mut body = Body::Run(Box::new(|_| panic!("boom")));
        let err = drive(&mut body, PLAN, &ctl, &quiet()).unwrap_err();
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn outcomes_convert() {
        assert_eq!(().into_result(), Ok(()));
        assert_eq!(Ok::<u8, String>(3).into_result(), Ok(()));
        assert_eq!(Err::<(), _>("no").into_result(), Err("no".to_string()));
    }
}
