//! The bodies, given to the builder: `run`, `step`, `wrap`, `messages` and their async kinds,
//! and the one-line daemons [`wrap()`] and [`step()`]. A new body kind is given here and driven in
//! the engine's `body/`.

use std::path::PathBuf;

use crate::engine::{Body, Ctl, Fetch, Outcome, pool};
use crate::error::Error;
use crate::handle::builder::DaemonBuilder;
use crate::handle::daemon::Daemon;

impl DaemonBuilder {
    /// The body: an existing function that knows nothing about [`Ctl`]. At a stop request it is
    /// abandoned: the stop signal's handlers run at once, the pidfile goes and the process exits
    /// 0, whatever the function is doing, as the Python original's `daemonizer` did. When it
    /// returns by itself, the daemon ends as a `run` body does. It may return `()` or a `Result`.
    ///
    /// Stop hooks and handlers still run at a stop, so the cleanup belongs in
    /// [`on_stop`](DaemonBuilder::on_stop) (or `.on(SIGTERM, ...)`). For code that
    /// can look at `ctl`, [`run`](DaemonBuilder::run) lets the work under way finish instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Daemon, Signal::SIGTERM};
    ///
    /// fn work() {
    ///     loop {
    ///         std::thread::sleep(std::time::Duration::from_secs(1));
    ///     }
    /// }
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-wrap.pid")
    ///     .on(SIGTERM, || println!("cleaning up"))
    ///     .wrap(work)
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn wrap<F, R>(mut self, function: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: Outcome,
    {
        self.bodies
            .push(Body::Wrap(Some(Box::new(move || function().into_result()))));
        self
    }

    /// The body: a closure that loops by itself and returns when `ctl.running()` turns false (or
    /// whenever it likes: the daemon stops when it returns). It may return `()` or a `Result`.
    ///
    /// (Not to be confused with [`Daemon::run`](crate::Daemon::run), which runs a built daemon
    /// in the foreground: why both keep the name is said there.)
    ///
    /// Threads and async runtimes belong inside the body: `start()` forks, and a fork copies only
    /// the calling thread. A child that the body forks without `exec` inherits the pidfile's
    /// lock; it must not outlive the daemon, or the pidfile stays locked.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::time::Duration;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-run.pid")
    ///     .run(|ctl| {
    ///         while ctl.running() {
    ///             ctl.sleep(Duration::from_secs(1));
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn run<F, R>(mut self, mut body: F) -> Self
    where
        F: FnMut(&Ctl) -> R + Send + 'static,
        R: Outcome,
    {
        self.bodies
            .push(Body::Run(Box::new(move |ctl| body(ctl).into_result())));
        self
    }

    /// The body: a step, called in a loop until a stop is asked, with an optional
    /// [`interval`](DaemonBuilder::interval) between calls. A stop lets the step under way
    /// finish. It may return `()` or a `Result`: an error stops the daemon with a failure code,
    /// unless [`keep_going`](DaemonBuilder::keep_going) is set.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    ///
    /// let mut count = 0u64;
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-step.pid")
    ///     .step(move || count += 1)
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn step<F, R>(mut self, mut step: F) -> Self
    where
        F: FnMut() -> R + Send + 'static,
        R: Outcome,
    {
        self.bodies
            .push(Body::Step(Box::new(move || step().into_result())));
        self
    }

    /// The body: messages fetched by `get` on the daemon's main thread and handled by `handle` on
    /// a pool of up to [`pool_size`](DaemonBuilder::pool_size) worker threads.
    ///
    /// - `get` returns `Option<M>`, or a `Result` of one. `None` means "nothing now": the body
    ///   waits [`idle_time`](DaemonBuilder::idle_time) (a stop cuts the wait short) and asks again.
    ///   `get` should not block for long: a stop cannot interrupt it.
    /// - `get` is not called while every worker is busy, so at most `pool_size` messages are
    ///   fetched and not yet handled (backpressure).
    /// - At stop, fetching ends and every message already fetched is handled before the stop
    ///   handlers run and the process exits: a graceful stop loses nothing.
    /// - A `handle` that panics or returns an error loses only its own message, which is logged
    ///   with its number (the first fetched is #1); the worker goes on.
    /// - A `get` that panics or returns an error ends the daemon like a failed step, after the
    ///   messages already fetched have been handled.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::sync::mpsc;
    /// use std::sync::Mutex;
    ///
    /// let (tx, rx) = mpsc::channel::<String>();
    /// let rx = Mutex::new(rx);
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-messages.pid")
    ///     .messages(
    ///         move || rx.lock().ok()?.try_recv().ok(),
    ///         |job: String| println!("handling {job}"),
    ///     )
    ///     .pool_size(4)
    ///     .build()?;
    /// # drop(tx);
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn messages<M, G, F, H, R>(mut self, get: G, handle: H) -> Self
    where
        M: Send + 'static,
        G: FnMut() -> F + Send + 'static,
        F: Fetch<M>,
        H: Fn(M) -> R + Send + Sync + 'static,
        R: Outcome,
    {
        self.bodies.push(Body::Messages(pool::adapter(get, handle)));
        self
    }

    /// The body, async: `body(ctl)` makes a future that runs on a tokio runtime until it
    /// returns, and the daemon stops when it does. It may return `()` or a `Result`; an `Err`, or
    /// a panic, ends the daemon like a failed body. Needs the `tokio` feature.
    ///
    /// The runtime is built when the body starts, in the daemon, after the fork: never before,
    /// since a fork keeps only the calling thread and would leave a runtime's workers and driver
    /// behind. It is current-thread (the tasks run on the daemon's main thread) unless
    /// [`worker_threads`](DaemonBuilder::worker_threads) asks for more, and it has every driver
    /// that the program's tokio was compiled with (timers always; sockets if some crate enables
    /// tokio's `net`). A task on it pings the systemd watchdog, so a runtime that is wedged stops
    /// the pings. [`ctl.stopped()`](Ctl::stopped) resolves at a stop; tasks that the body spawned
    /// and did not wait for are dropped when it returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::time::Duration;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-run-async.pid")
    ///     .run_async(|ctl| async move {
    ///         let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ///         let mut stopped = std::pin::pin!(ctl.stopped());
    ///         loop {
    ///             tokio::select! {
    ///                 _ = ticks.tick() => println!("tick"),
    ///                 () = &mut stopped => break,
    ///             }
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[cfg(feature = "tokio")]
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn run_async<F, Fut, R>(mut self, body: F) -> Self
    where
        F: FnMut(Ctl) -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Outcome,
    {
        self.asynchronous = true;
        self.bodies
            .push(Body::Run(crate::engine::asynchronous::run_adapter(
                body,
                self.runtime.clone(),
            )));
        self
    }

    /// The body, async: messages fetched by awaiting `get` and handled each in a task of its
    /// own, on a tokio runtime built in the daemon (see [`run_async`](DaemonBuilder::run_async)).
    /// Needs the `tokio` feature. The rules are those of [`messages`](DaemonBuilder::messages):
    ///
    /// - `get` makes a future of `Option<M>` (or a `Result` of one); `None` means "nothing now":
    ///   the body waits [`idle_time`](DaemonBuilder::idle_time) and asks again.
    /// - `get` is awaited only while fewer than [`pool_size`](DaemonBuilder::pool_size) handlers
    ///   run (a semaphore): at most `pool_size` messages are fetched and not yet handled. Here
    ///   `pool_size` counts tasks, not threads: up to 100,000.
    /// - At a stop, fetching ends at once: a `get` that is waiting is dropped where it waits, so
    ///   it should be cancel-safe (as `tokio::sync::mpsc::Receiver::recv` is). Every message
    ///   already fetched is then handled before the body returns: nothing is lost.
    /// - `handle(message)` makes the handler's future, which runs as a task; one that panics or
    ///   returns an error loses only its own message, logged with its number.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tokio::sync::{Mutex, mpsc};
    ///
    /// let (tx, rx) = mpsc::channel::<String>(64);
    /// let rx = Arc::new(Mutex::new(rx));
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-messages-async.pid")
    ///     .messages_async(
    ///         move || {
    ///             let rx = rx.clone();
    ///             async move { rx.lock().await.recv().await }
    ///         },
    ///         |job: String| async move {
    ///             tokio::time::sleep(Duration::from_millis(10)).await;
    ///             println!("handled {job}");
    ///         },
    ///     )
    ///     .pool_size(10_000)
    ///     .build()?;
    /// # drop(tx);
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[cfg(feature = "tokio")]
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn messages_async<M, G, GF, F, H, HF, R>(mut self, get: G, handle: H) -> Self
    where
        M: Send + 'static,
        G: FnMut() -> GF + Send + 'static,
        GF: Future<Output = F>,
        F: Fetch<M>,
        H: FnMut(M) -> HF + Send + 'static,
        HF: Future<Output = R> + Send + 'static,
        R: Outcome + 'static,
    {
        self.asynchronous = true;
        self.bodies.push(Body::Messages(
            crate::engine::asynchronous::messages_adapter(get, handle, self.runtime.clone()),
        ));
        self
    }

    /// The runtime of an async body ([`run_async`](DaemonBuilder::run_async),
    /// [`messages_async`](DaemonBuilder::messages_async)): a multi-thread runtime with `workers`
    /// worker threads. Default: a current-thread runtime, whose tasks all run on the daemon's
    /// main thread; enough for I/O-bound daemons, and the lightest. Needs the `tokio` feature.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder()
    ///     .run_async(|ctl| async move { ctl.stopped().await })
    ///     .worker_threads(4);
    /// ```
    #[cfg(feature = "tokio")]
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn worker_threads(self, workers: usize) -> Self {
        self.runtime.set(workers);
        self
    }
}

/// Wrap an existing function into a daemon in one line: the Python original's
/// `@daemonizer.run(pidfile=...)`. The function knows nothing of the daemon; a stop abandons it
/// (see [`DaemonBuilder::wrap`]). For signal handlers and other settings, use the builder:
/// `Daemon::builder().pidfile(p).on(SIGTERM, cleanup).wrap(f)`.
///
/// # Errors
///
/// Those of [`DaemonBuilder::build`].
///
/// # Examples
///
/// ```rust,standalone_crate
/// fn work() {
///     loop {
///         std::thread::sleep(std::time::Duration::from_secs(1));
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let daemon = daemons::wrap(dir.path().join("work.pid"), work)?;
/// daemon.start()?;
/// assert!(!daemon.stop()?.was_killed());   // abandoned at once, not killed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wrap<F, R>(pidfile: impl Into<PathBuf>, function: F) -> Result<Daemon, Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Outcome,
{
    Daemon::builder().pidfile(pidfile).wrap(function).build()
}

/// Call an existing function in a loop as a daemon, in one line: the Python original's
/// `@daemonizer.step(pidfile=...)`. A stop lets the call under way finish (see
/// [`DaemonBuilder::step`]). For an interval, signal handlers and other settings, use the
/// builder.
///
/// # Errors
///
/// Those of [`DaemonBuilder::build`].
///
/// # Examples
///
/// ```rust,standalone_crate
/// fn poll_queue() {
///     std::thread::sleep(std::time::Duration::from_millis(10));
/// }
///
/// let dir = tempfile::tempdir()?;
/// let daemon = daemons::step(dir.path().join("poll.pid"), poll_queue)?;
/// let pid = daemon.start()?;
/// assert_eq!(daemon.stop()?.pid(), Some(pid));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn step<F, R>(pidfile: impl Into<PathBuf>, function: F) -> Result<Daemon, Error>
where
    F: FnMut() -> R + Send + 'static,
    R: Outcome,
{
    Daemon::builder().pidfile(pidfile).step(function).build()
}
