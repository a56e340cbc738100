//! The body's view of the daemon ([`Ctl`]) and the life-cycle state behind it: whether a stop
//! was asked and by which signal, the wake-up pipe that interrupts every sleep, readiness, the
//! service manager's watchdog, and the stop as a future for any executor ([`StopFuture`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::detach::Reporter;
use crate::listen::{Listeners, Socket};
use crate::sys;
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
    listeners: Arc<Listeners>,
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
    /// The futures waiting for the stop ([`Ctl::stopped`]).
    stop_wakers: StopWakers,
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
            let _ = sys::wait_readable(self.wake_read.as_fd(), timeout);
        }
        self.stop_requested()
    }

    /// The wake-up pipe's read end: readable for good once a stop is asked.
    pub(crate) fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake_read.as_fd()
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

    /// Send `WATCHDOG=1` if there is a watchdog and a ping is due.
    #[cfg(feature = "tokio")]
    pub(crate) fn ping(&self) {
        if let Some(watchdog) = &self.watchdog {
            self.ping_if_due(watchdog);
        }
    }

    pub(crate) fn stop_wakers(&self) -> &StopWakers {
        &self.stop_wakers
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
    pub(crate) fn until_ping(&self) -> Option<Duration> {
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
            listeners: Arc::default(),
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
                stop_wakers: StopWakers::default(),
            }),
        })
    }

    pub(crate) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// The listening sockets, shared.
    pub(crate) fn listener_set(&self) -> Arc<Listeners> {
        self.listeners.clone()
    }

    /// This `Ctl`, handing the body `listeners`.
    pub(crate) fn with_listeners(self, listeners: Listeners) -> Ctl {
        Ctl {
            listeners: Arc::new(listeners),
            ..self
        }
    }

    /// The `index`th listening socket, as a TCP listener: the sockets given to
    /// [`listen`](crate::DaemonBuilder::listen), in order, bound before the daemon was ready or
    /// passed by the service manager (socket activation), then any other socket it passed. Each
    /// call gives another handle on the same socket.
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such socket, `InvalidInput` when it is a Unix socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::io::Write;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-listen.pid")
    ///     .listen("127.0.0.1:7000")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = ctl.tcp_listener(0)?;
    ///         listener.set_nonblocking(true)?;
    ///         while ctl.running() {
    ///             match listener.accept() {
    ///                 Ok((mut client, _)) => client.write_all(b"hello\n")?,
    ///                 Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
    ///                     ctl.sleep(std::time::Duration::from_millis(10));
    ///                 }
    ///                 Err(e) => return Err(e),
    ///             }
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn tcp_listener(&self, index: usize) -> io::Result<TcpListener> {
        match self.listeners.get(index)? {
            Socket::Tcp(listener) => Ok(listener),
            Socket::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "listening socket #{index} is a Unix socket: use ctl.unix_listener({index})"
                ),
            )),
        }
    }

    /// The `index`th listening socket, as a Unix listener (see
    /// [`tcp_listener`](Ctl::tcp_listener)).
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such socket, `InvalidInput` when it is a TCP socket.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-listen-unix.pid")
    ///     .listen("/tmp/doc-listen.sock")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = ctl.unix_listener(0)?;
    ///         drop(listener);
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn unix_listener(&self, index: usize) -> io::Result<UnixListener> {
        match self.listeners.get(index)? {
            Socket::Unix(listener) => Ok(listener),
            Socket::Tcp(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listening socket #{index} is a TCP socket: use ctl.tcp_listener({index})"),
            )),
        }
    }

    /// How many listening sockets the daemon has.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-listeners.pid")
    ///     .run(|ctl| assert_eq!(ctl.listeners(), 0))
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn listeners(&self) -> usize {
        self.listeners.len()
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
        self.wait(None, duration) == Woken::TimedOut
    }

    /// Wait until `fd` is readable (a listener has a client, a socket has data), a stop is
    /// asked, or `timeout` passes, whichever comes first. Returns whether `fd` is readable; after
    /// a stop it returns `false` at once. For a body that serves a socket without a thread of its
    /// own blocked in `accept`, and without a polling sleep.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::time::Duration;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-readable.pid")
    ///     .listen("127.0.0.1:7001")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = ctl.tcp_listener(0)?;
    ///         while ctl.running() {
    ///             if ctl.readable(&listener, Duration::from_secs(60)) {
    ///                 let (client, _) = listener.accept()?;
    ///                 drop(client);
    ///             }
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn readable(&self, fd: impl AsFd, timeout: Duration) -> bool {
        self.wait(Some(fd.as_fd()), timeout) == Woken::Readable
    }

    /// Wait for `fd` (if any) to be readable, a stop, or `duration`, pinging the watchdog on
    /// the way.
    fn wait(&self, fd: Option<BorrowedFd<'_>>, duration: Duration) -> Woken {
        let deadline = Instant::now().checked_add(duration);
        loop {
            if !self.running() {
                self.lifecycle.tell_stopping();
                return Woken::Stopped;
            }
            let mut left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Woken::TimedOut;
            }
            if let Some(ping) = self.lifecycle.until_ping() {
                left = left.min(ping);
            }
            // A stop makes the pipe readable for good; a signal or a watchdog ping ends the wait
            // early; either way the loop looks again.
            let wake = self.lifecycle.wake_fd();
            let ready = match fd {
                Some(fd) => sys::wait_any_readable(&[fd, wake], left),
                None => sys::wait_any_readable(&[wake], left),
            };
            if fd.is_some() && ready.first() == Some(&true) && !self.lifecycle.stop_requested() {
                return Woken::Readable;
            }
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

    /// A future that resolves once a stop is asked (a stop signal, [`Ctl::stop`], the end of
    /// the daemon), for async code on any executor: it needs no runtime and no cargo feature.
    /// Race it against the work (`select!`), or hand it to a server's graceful shutdown.
    ///
    /// Its waker is called from a small thread that waits on the stop pipe, started by the first
    /// future that has to wait: a stop signal's handler cannot call a waker itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-stopped.pid")
    ///     .run(|ctl| {
    ///         // A `Future<Output = ()>`: await it on the executor of your choice, e.g.
    ///         // `runtime.block_on(server.with_graceful_shutdown(ctl.stopped()))`.
    ///         let stopped = ctl.stopped();
    ///         # drop(stopped);
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn stopped(&self) -> StopFuture {
        StopFuture::new(self.clone())
    }

    /// The stop as a descriptor, for code that polls descriptors (`poll(2)`, mio, tokio's
    /// `AsyncFd`, an event loop of its own): it becomes readable when a stop is asked and stays
    /// readable from then on. It is non-blocking and close-on-exec.
    ///
    /// Only poll it: never read from it, close it or make it blocking; it is the pipe that wakes
    /// every [`sleep`](Ctl::sleep) of the daemon.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-stop-fd.pid")
    ///     .run(|ctl| {
    ///         // Wait for the stop and for other descriptors in one poll(2).
    ///         let mut fds = [PollFd::new(ctl.stop_fd(), PollFlags::POLLIN)];
    ///         let _ = poll(&mut fds, PollTimeout::NONE);
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn stop_fd(&self) -> BorrowedFd<'_> {
        self.lifecycle.wake_read.as_fd()
    }
}

/// What ended a [`Ctl`] wait.
#[derive(Debug, PartialEq, Eq)]
enum Woken {
    Readable,
    Stopped,
    TimedOut,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock here means a body thread panicked while holding it; the stop state it
    // guards is two plain fields, always consistent, so going on is right.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// The stop as a future.
//
// The stop request as a future ([`StopFuture`], from [`Ctl::stopped`]) that any executor can
// await: tokio, async-std, smol, a hand-made `block_on`. Nothing here depends on a runtime.
//
// A stop is asked from a stop signal's handler, which may only do async-signal-safe things: it
// sets a flag and writes to the wake pipe, and can neither lock the list of wakers nor call one.
// So the wakers are called from a thread: a watcher that waits for the pipe to become readable,
// wakes every registered waker, and ends. It is started by the first poll that has to wait,
// once per daemon; a daemon whose body never awaits a stop never runs it.
//
// Why a thread of its own rather than the keeper (which also waits on the pipe): a waker runs
// the executor's code (it may lock, send on a channel, write to an eventfd), and the keeper is
// what ends a daemon whose body does not return in time: nothing that a body's executor does
// may delay it. The watcher also serves a `Ctl` that no keeper watches.

/// The wakers of the futures that wait for the stop, and whether the watcher runs.
#[derive(Default)]
pub(crate) struct StopWakers(Mutex<Registry>);

#[derive(Default)]
struct Registry {
    next: u64,
    wakers: HashMap<u64, Waker>,
    watching: bool,
}

impl StopWakers {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A waker that panicked in `wake` leaves nothing half-done here.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register (or replace) the waker of the future that holds `slot`. Returns false if the
    /// watcher cannot be started: the caller must then not wait for it.
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
                while !watched.wait_for_stop(Duration::from_secs(3600)) {}
                let wakers: Vec<Waker> = watched
                    .stop_wakers()
                    .lock()
                    .wakers
                    .drain()
                    .map(|(_, w)| w)
                    .collect();
                for waker in wakers {
                    waker.wake();
                }
            });
        registry.watching = started.is_ok();
        registry.watching
    }

    fn remove(&self, slot: u64) {
        self.lock().wakers.remove(&slot);
    }
}

impl fmt::Debug for StopWakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopWakers")
            .field("waiting", &self.lock().wakers.len())
            .finish()
    }
}

/// A future that resolves once a stop is asked: a stop signal, [`Ctl::stop`], or the end of the
/// daemon. Get one from [`Ctl::stopped`]; it works with any executor.
///
/// It is cheap to poll again with the same waker (one atomic load, no lock), and it may be
/// raced against other futures (`select!`) in a loop: a new `StopFuture` each time costs one
/// lock and one map entry when it has to wait, nothing when the stop is there already.
///
/// # Examples
///
/// ```
/// use daemons::{Ctl, StopFuture};
/// use std::future::Future;
///
/// // What an executor sees: a future of `()`, `Send`, `Unpin` and `'static`.
/// fn usable<F: Future<Output = ()> + Send + Unpin + 'static>(_: F) {}
/// fn body(ctl: &Ctl) {
///     let stopped: StopFuture = ctl.stopped();
///     usable(stopped);
/// }
/// ```
#[must_use = "a future does nothing unless it is awaited"]
pub struct StopFuture {
    ctl: Ctl,
    /// This future's entry in the wakers, once it has waited.
    slot: Option<u64>,
    /// The waker registered last, so that a poll with the same one takes no lock.
    registered: Option<Waker>,
}

impl StopFuture {
    pub(crate) fn new(ctl: Ctl) -> StopFuture {
        StopFuture {
            ctl,
            slot: None,
            registered: None,
        }
    }

    fn forget(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.ctl.lifecycle().stop_wakers().remove(slot);
        }
        self.registered = None;
    }
}

impl Future for StopFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.ctl.lifecycle().stop_requested() {
            this.forget();
            this.ctl.lifecycle().tell_stopping();
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let lifecycle = this.ctl.lifecycle().clone();
        if lifecycle
            .stop_wakers()
            .register(&lifecycle, &mut this.slot, cx.waker())
        {
            this.registered = Some(cx.waker().clone());
        } else {
            // No thread could be started to wake it: ask to be polled again, so that the stop
            // is seen late rather than never.
            this.registered = None;
            cx.waker().wake_by_ref();
        }
        // The stop may have come between the first look and the registration; once the
        // registration is in, the watcher will see it if this look does not.
        if lifecycle.stop_requested() {
            this.forget();
            lifecycle.tell_stopping();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for StopFuture {
    fn drop(&mut self) {
        self.forget();
    }
}

impl fmt::Debug for StopFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopFuture")
            .field("stopped", &self.ctl.lifecycle().stop_requested())
            .finish()
    }
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

#[cfg(test)]
mod stop_future_tests {
    use super::*;
    use nix::sys::signal::Signal;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Wake;
    use std::time::Instant;

    /// The smallest executor: poll on this thread, park until woken.
    struct Unpark(thread::Thread, AtomicBool);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.1.store(true, Ordering::Release);
            self.0.unpark();
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let unpark = Arc::new(Unpark(thread::current(), AtomicBool::new(false)));
        let waker = Waker::from(unpark.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            while !unpark.1.swap(false, Ordering::AcqRel) {
                thread::park();
            }
        }
    }

    #[test]
    fn a_stop_from_another_thread_wakes_the_future() {
        let ctl = Ctl::new();
        let stopper = ctl.clone();
        let since = Instant::now();
        let other = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            stopper.stop();
        });
        block_on(ctl.stopped());
        assert!(since.elapsed() >= Duration::from_millis(50));
        assert!(!ctl.running());
        other.join().expect("join");
    }

    #[test]
    fn a_stop_signal_wakes_the_future_through_the_watcher() {
        // What a signal handler does: the flag and the pipe, no lock and no waker.
        let ctl = Ctl::new();
        let lifecycle = ctl.lifecycle().clone();
        let other = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            lifecycle.request_stop(Some(Signal::SIGTERM));
        });
        block_on(ctl.stopped());
        assert_eq!(ctl.lifecycle().stop_signal(), Some(Signal::SIGTERM));
        other.join().expect("join");
    }

    #[test]
    fn a_stop_asked_already_is_ready_at_once_and_waits_for_nothing() {
        let ctl = Ctl::new();
        ctl.stop();
        block_on(ctl.stopped());
        block_on(ctl.stopped());
        assert!(ctl.lifecycle().stop_wakers().lock().wakers.is_empty());
        assert!(!ctl.lifecycle().stop_wakers().lock().watching);
    }

    #[test]
    fn many_waiters_all_wake_and_dropped_ones_leave_no_waker() {
        let ctl = Ctl::new();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let ctl = ctl.clone();
                thread::spawn(move || block_on(ctl.stopped()))
            })
            .collect();
        {
            // Polled once, then dropped: its waker goes with it.
            let mut abandoned = ctl.stopped();
            let waker = Waker::from(Arc::new(Unpark(thread::current(), AtomicBool::new(false))));
            let pending = Pin::new(&mut abandoned).poll(&mut Context::from_waker(&waker));
            assert!(pending.is_pending());
        }
        let registry = || ctl.lifecycle().stop_wakers().lock().wakers.len();
        let end = Instant::now() + Duration::from_secs(10);
        while registry() < 8 && Instant::now() < end {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            registry(),
            8,
            "the eight blocked waiters, not the dropped one"
        );
        ctl.stop();
        for waiter in waiters {
            waiter.join().expect("every waiter wakes");
        }
        assert_eq!(registry(), 0);
    }

    #[test]
    fn the_stop_descriptor_is_readable_only_after_a_stop() {
        let ctl = Ctl::new();
        let readable = |ctl: &Ctl| crate::sys::wait_readable(ctl.stop_fd(), Duration::ZERO);
        assert!(!readable(&ctl).expect("poll"));
        ctl.stop();
        assert!(readable(&ctl).expect("poll"));
        assert!(readable(&ctl).expect("poll"), "and stays readable");
    }
}
