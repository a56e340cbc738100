//! The public builder: every setting documented, the closures, and the checks that
//! [`DaemonBuilder::build`] makes all at once.

use std::fmt;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::engine::body::Body;
use crate::engine::body::outcome::{Fetch, Outcome};
use crate::engine::body::pool::{self, PoolSize};
use crate::engine::ctl::Ctl;
use crate::engine::signals::{Handler, Handlers, is_forbidden};
use crate::engine::{Engine, SetupFn};
use crate::error::Error;
use crate::handle::daemon::Daemon;
use crate::privileges::Credentials;
use crate::settings::{Account, Address, Restart};
use crate::settings::{DEFAULT_IDLE_TIME, DEFAULT_POOL_SIZE, Settings, SettingsBuilder};

/// Builds a [`Daemon`]: where its pidfile is, what it runs, how it stops.
///
/// Get one from [`Daemon::builder`]. Every setter takes and returns the builder;
/// [`build`](DaemonBuilder::build) checks all settings at once, and
/// [`cli`](DaemonBuilder::cli) builds and runs the command line in one call.
///
/// # Examples
///
/// ```
/// use daemons::{Daemon, Signal::SIGHUP};
/// use std::time::Duration;
///
/// let daemon = Daemon::builder()
///     .pidfile("/tmp/heartbeat.pid")
///     .stdout("/tmp/heartbeat.log")
///     .on(SIGHUP, || println!("reloading"))
///     .step(|| println!("beat"))
///     .interval(Duration::from_secs(1))
///     .build()?;
/// assert!(daemon.pidfile().is_absolute());
/// # Ok::<(), daemons::Error>(())
/// ```
#[derive(Default)]
pub struct DaemonBuilder {
    settings: SettingsBuilder,
    handlers: Vec<(Signal, Handler)>,
    bodies: Vec<Body>,
    setup: Option<SetupFn>,
    listen: Vec<String>,
    /// The runtime of an async body, which it reads when it starts.
    #[cfg(feature = "tokio")]
    runtime: crate::engine::body::asynchronous::RuntimeChoice,
    /// Whether a body is async: the pool may then be larger, and a runtime may be chosen.
    #[cfg(feature = "tokio")]
    asynchronous: bool,
}

impl fmt::Debug for DaemonBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaemonBuilder")
            .field("settings", &self.settings)
            .field("handlers", &self.handlers.len())
            .field("bodies", &self.bodies)
            .field("setup", &self.setup.is_some())
            .field("listen", &self.listen)
            .finish()
    }
}

impl Daemon {
    /// A builder for a daemon.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-builder.pid")
    ///     .step(|| {})
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }
}

impl DaemonBuilder {
    fn set(mut self, f: impl FnOnce(SettingsBuilder) -> SettingsBuilder) -> Self {
        self.settings = f(self.settings);
        self
    }

    /// The pidfile: locked for the daemon's whole life, removed when it stops. Required. A
    /// relative path is made absolute at [`build`](DaemonBuilder::build), against the current
    /// directory; a leading `~/` is the home directory (`$HOME`).
    /// [`pidfile::runtime_dir`](crate::pidfile::runtime_dir) is the conventional place.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().pidfile("/run/user/1000/tool.pid");
    /// let b = daemons::Daemon::builder().pidfile("~/.tool.pid");
    /// let b = daemons::Daemon::builder().pidfile(daemons::pidfile::runtime_dir().join("tool.pid"));
    /// ```
    pub fn pidfile(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.pidfile(path.into()))
    }

    /// The daemon's working directory. Default `/`, so that it keeps no file system busy.
    /// `run()` in the foreground stays where it is.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().workdir("/var/lib/tool");
    /// ```
    pub fn workdir(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.workdir(path.into()))
    }

    /// The daemon's file mode creation mask. Default `0o022`: files it creates are not writable
    /// by others.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().umask(0o077);
    /// ```
    pub fn umask(self, mask: u32) -> Self {
        self.set(|s| s.umask(mask))
    }

    /// A file that the daemon's stdout is appended to. Default `/dev/null`. Reopened on SIGHUP,
    /// so that a rotated log is let go of.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().stdout("/var/log/tool.log");
    /// ```
    pub fn stdout(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.stdout(path.into()))
    }

    /// A file that the daemon's stderr is appended to: panics, step errors and the crate's own
    /// messages are logged there. Default `/dev/null`. It may be the same file as `stdout`.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().stderr("/var/log/tool.err");
    /// ```
    pub fn stderr(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.stderr(path.into()))
    }

    /// How long `stop()` waits after SIGTERM before it sends SIGKILL. Default 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().stop_timeout(std::time::Duration::from_secs(30));
    /// ```
    pub fn stop_timeout(self, timeout: Duration) -> Self {
        self.set(|s| s.stop_timeout(timeout))
    }

    /// How long `start()` waits for the daemon to report that it is ready before it kills it and
    /// fails. Default 30 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().ready_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn ready_timeout(self, timeout: Duration) -> Self {
        self.set(|s| s.ready_timeout(timeout))
    }

    /// The pause between two steps of a [`step`](DaemonBuilder::step) body, cut short by a
    /// stop. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().step(|| {}).interval(std::time::Duration::from_secs(1));
    /// ```
    pub fn interval(self, pause: Duration) -> Self {
        self.set(|s| s.interval(pause))
    }

    /// Whether a step that returns an error is only logged (`true`) or stops the daemon with a
    /// failure exit code (`false`, the default).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder()
    ///     .step(|| std::fs::metadata("/maybe").map(drop))
    ///     .keep_going(true);
    /// ```
    pub fn keep_going(self, keep_going: bool) -> Self {
        self.set(|s| s.keep_going(keep_going))
    }

    /// The name the daemon logs under and the command line prints. Default: the executable's
    /// file name.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().name("counter");
    /// ```
    pub fn name(self, name: impl Into<String>) -> Self {
        self.set(|s| s.name(name.into()))
    }

    /// How many messages a [`messages`](DaemonBuilder::messages) body handles at once: the
    /// number of worker threads, at most 4096. Default 100, as in the Python original. Workers
    /// are spawned as the load needs them, and a worker that has had no message for 10 s exits:
    /// a burst that needed a thousand threads does not leave a thousand behind.
    ///
    /// For `messages_async` (the `tokio` feature), the number
    /// of handler tasks at once, at most 100,000.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().messages(|| None::<u32>, |_n| {}).pool_size(16);
    /// ```
    pub fn pool_size(self, workers: usize) -> Self {
        self.set(|s| s.pool_size(workers))
    }

    /// How long a [`messages`](DaemonBuilder::messages) body waits, interruptibly, after `get`
    /// returned `None` before it asks again. Default 100 ms, as in the Python original.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder()
    ///     .messages(|| None::<u32>, |_n| {})
    ///     .idle_time(std::time::Duration::from_secs(1));
    /// ```
    pub fn idle_time(self, wait: Duration) -> Self {
        self.set(|s| s.idle_time(wait))
    }

    /// The user the daemon runs as, by name or uid: it switches after taking its pidfile and
    /// opening its logs, which stay root's. Needs root. An unknown name is a build error. The
    /// group defaults to the user's primary group, and supplementary groups are the user's.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().user("nobody");
    /// let b = daemons::Daemon::builder().user(65534);
    /// ```
    pub fn user(self, user: impl Into<Account>) -> Self {
        self.set(|s| s.user(user.into()))
    }

    /// The group the daemon runs as, by name or gid (see [`user`](DaemonBuilder::user)).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().group("nogroup");
    /// ```
    pub fn group(self, group: impl Into<Account>) -> Self {
        self.set(|s| s.group(group.into()))
    }

    /// Descriptors the daemon keeps open even though they were inherited without close-on-exec
    /// (a socket passed by a supervisor, say). Every other inherited descriptor above 2 is closed.
    ///
    /// A descriptor counts as inherited when it lacks close-on-exec: std opens everything with
    /// it. One that the program owns without it (an `OwnedFd` adopted from a raw number, a file
    /// whose flag it cleared) must be named here, or be given the flag before `start()`: the
    /// daemon would close it under its owner.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().keep_fds([3]);
    /// ```
    pub fn keep_fds(self, fds: impl IntoIterator<Item = RawFd>) -> Self {
        let fds: Vec<RawFd> = fds.into_iter().collect();
        self.set(|s| s.keep_fds(fds))
    }

    /// How long the body may take to return after a stop request before it is abandoned: the
    /// stop signal's handlers then run, the pidfile goes and the process exits with code 1,
    /// saying so in the log. Default: half the [`stop_timeout`](DaemonBuilder::stop_timeout),
    /// so that the stop handlers run before `stop()` would send SIGKILL. A
    /// [`wrap`](DaemonBuilder::wrap)ped function is abandoned at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let b = daemons::Daemon::builder()
    ///     .stop_timeout(Duration::from_secs(30))
    ///     .stop_grace(Duration::from_secs(20));
    /// ```
    pub fn stop_grace(self, grace: Duration) -> Self {
        self.set(|s| s.grace(grace))
    }

    /// Set-up that runs in the daemon once it is detached (its stdio redirected, its privileges
    /// dropped, its signals caught) and before it reports ready: loggers, connections, the
    /// threads that feed a [`messages`](DaemonBuilder::messages) body, an async runtime. What
    /// it makes is the daemon's own, created after the fork, where threads are safe.
    ///
    /// An `Err` (or a panic) fails `start()` with [`Error::Setup`] carrying its message; the
    /// pidfile is removed and nothing is left running. It may return `()` or a `Result`.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::sync::{mpsc, Arc, Mutex, OnceLock};
    ///
    /// // Filled by the set-up, inside the daemon; read by `get`.
    /// let jobs: Arc<OnceLock<Mutex<mpsc::Receiver<u64>>>> = Arc::default();
    /// let feed = jobs.clone();
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-setup.pid")
    ///     .setup(move || -> std::io::Result<()> {
    ///         let (tx, rx) = mpsc::channel();
    ///         std::thread::Builder::new().spawn(move || {
    ///             for n in 0.. {
    ///                 if tx.send(n).is_err() {
    ///                     break;
    ///                 }
    ///                 std::thread::sleep(std::time::Duration::from_secs(1));
    ///             }
    ///         })?;
    ///         let _ = feed.set(Mutex::new(rx));
    ///         Ok(())
    ///     })
    ///     .messages(
    ///         move || jobs.get()?.lock().ok()?.try_recv().ok(),
    ///         |n: u64| println!("job {n}"),
    ///     )
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn setup<F, R>(mut self, mut setup: F) -> Self
    where
        F: FnMut() -> R + Send + 'static,
        R: Outcome,
    {
        self.setup = Some(Box::new(move || setup().into_result()));
        self
    }

    /// The body: an existing function that knows nothing about [`Ctl`]. At a stop request it is
    /// abandoned: the stop signal's handlers run at once, the pidfile goes and the process exits
    /// 0, whatever the function is doing, as the Python original's `daemonizer` did. When it
    /// returns by itself, the daemon ends as a `run` body does. It may return `()` or a `Result`.
    ///
    /// Handlers still run at a stop, so the cleanup belongs in `.on(SIGTERM, ...)`. For code that
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
    pub fn wrap<F, R>(mut self, function: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: Outcome,
    {
        self.bodies
            .push(Body::Wrap(Some(Box::new(move || function().into_result()))));
        self
    }

    /// Supervise the body: the daemon becomes a small supervisor that holds the pidfile and runs
    /// the body in a child process, started again after it fails (or whenever it ends, with
    /// [`Restart::always`]), after a backoff, until the policy's limit. Without it, a failed
    /// body ends the daemon.
    ///
    /// Signals sent to the daemon (`send`, `reload`, the stop signals) are passed on to the
    /// child, whose handlers run as they would without supervision; `stop()` stops the child
    /// gracefully, then the supervisor. `status()` is [`Status::Supervised`](crate::Status),
    /// with the child's pid and the number of restarts; the log has a line per restart with its
    /// cause, and past the limit the supervisor exits non-zero and its pidfile says why.
    ///
    /// # Platform-specific behavior
    ///
    /// On Linux the child gets SIGKILL when the supervisor dies (`PR_SET_PDEATHSIG`), so that a
    /// supervisor killed at the stop timeout takes its child with it. Under systemd the
    /// supervisor is the main process; the watchdog is not pinged from a supervised body.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Daemon, Restart};
    /// use std::time::Duration;
    ///
    /// let b = Daemon::builder()
    ///     .pidfile("/tmp/doc-supervised.pid")
    ///     .restart(Restart::on_failure().backoff(Duration::from_secs(1), Duration::from_secs(60)))
    ///     .step(|| {});
    /// ```
    pub fn restart(self, policy: Restart) -> Self {
        self.set(|s| s.restart(policy))
    }

    /// Listen on `address` (`host:port` for TCP, an absolute path or `unix:PATH` for a Unix
    /// stream socket); any number of times. The daemon binds before it reports ready, so
    /// `start()` fails with [`Error::Listen`] when the address is taken, and a client that
    /// connects once `start()` has returned is never refused. As root, the socket is bound
    /// before privileges are dropped, so a port below 1024 works for a daemon that runs as a user.
    ///
    /// Under a service manager that passes sockets (systemd's `.socket` units, sd_listen_fds(3):
    /// `$LISTEN_FDS` with `$LISTEN_PID` this process, as for `run()` under `Type=notify`), the
    /// passed socket with the same address is taken instead of binding, else the passed ones in
    /// order; the variables are removed from the environment. The body gets the sockets with
    /// [`ctl.tcp_listener(i)`](crate::Ctl::tcp_listener) and
    /// [`ctl.unix_listener(i)`](crate::Ctl::unix_listener), in the order of the `listen` calls.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder()
    ///     .listen("127.0.0.1:7000")
    ///     .listen("/run/echo.sock");
    /// ```
    pub fn listen(mut self, address: impl Into<String>) -> Self {
        self.listen.push(address.into());
        self
    }

    /// Whether a stop also ends the processes that the body started (`Command`s, say), as
    /// systemd's `KillMode=control-group` does. Default `false`: they outlive the daemon.
    ///
    /// With `true`, after the stop signal's handlers have run and before the pidfile goes, every
    /// other process in the daemon's process group gets SIGTERM and SIGCONT; those still there
    /// after half the [`stop_timeout`](DaemonBuilder::stop_timeout) get SIGKILL. A process that
    /// moved to a group of its own (`setsid`, `setpgid`) is not reached. Each member is pinned
    /// (a pidfd; a kqueue on macOS and the BSDs) before it is checked to be in the group still,
    /// so a member that exits meanwhile, and the process that gets its pid, are left alone.
    /// In the foreground
    /// (`run()`), only a daemon that leads its process group does this (under systemd it does),
    /// so that a shell's job is never hit.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().stop_children(true);
    /// ```
    pub fn stop_children(self, stop: bool) -> Self {
        self.set(|s| s.stop_children(stop))
    }

    /// Whether the body says itself when the daemon is ready, with
    /// [`ctl.ready()`](crate::Ctl::ready): `start()` (and `READY=1` under systemd) then waits for
    /// it, at most the [`ready_timeout`](DaemonBuilder::ready_timeout). Default `false`: ready
    /// once the pidfile is taken and the signals are caught.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().manual_ready(true);
    /// ```
    pub fn manual_ready(self, manual: bool) -> Self {
        self.set(|s| s.manual_ready(manual))
    }

    /// Run `handler` when the daemon receives `signal`. Any number of handlers may be registered
    /// for one signal; they run in registration order, one at a time, on a control thread (not
    /// in signal context: they may allocate, lock and log).
    ///
    /// Handlers of the stop signals (SIGTERM, SIGINT, SIGQUIT) run once, at shutdown, after the
    /// body has finished. A SIGKILL, SIGSTOP, SIGSEGV, SIGILL or SIGFPE handler is refused by
    /// [`build`](DaemonBuilder::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Daemon, Signal::{SIGHUP, SIGTERM}};
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-on.pid")
    ///     .on(SIGHUP, || println!("reload the configuration"))
    ///     .on(SIGTERM, || println!("flush the cache"))
    ///     .step(|| {})
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn on(mut self, signal: Signal, handler: impl FnMut() + Send + 'static) -> Self {
        self.handlers.push((signal, Handler::new(handler)));
        self
    }

    /// The body: a closure that loops by itself and returns when `ctl.running()` turns false (or
    /// whenever it likes: the daemon stops when it returns). It may return `()` or a `Result`.
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
    pub fn step<F, R>(mut self, mut step: F) -> Self
    where
        F: FnMut() -> R + Send + 'static,
        R: Outcome,
    {
        self.bodies.push(Body::Step {
            step: Box::new(move || step().into_result()),
            interval: Duration::ZERO,
            keep_going: false,
        });
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
    pub fn messages<M, G, F, H, R>(mut self, get: G, handle: H) -> Self
    where
        M: Send + 'static,
        G: FnMut() -> F + Send + 'static,
        F: Fetch<M>,
        H: Fn(M) -> R + Send + Sync + 'static,
        R: Outcome,
    {
        self.bodies.push(Body::Messages {
            serve: pool::adapter(get, handle),
            pool: PoolSize {
                workers: DEFAULT_POOL_SIZE,
                idle_time: DEFAULT_IDLE_TIME,
            },
        });
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
    pub fn run_async<F, Fut, R>(mut self, body: F) -> Self
    where
        F: FnMut(Ctl) -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Outcome,
    {
        self.asynchronous = true;
        self.bodies
            .push(Body::Run(crate::engine::body::asynchronous::run_adapter(
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
        self.bodies.push(Body::Messages {
            serve: crate::engine::body::asynchronous::messages_adapter(
                get,
                handle,
                self.runtime.clone(),
            ),
            pool: PoolSize {
                workers: DEFAULT_POOL_SIZE,
                idle_time: DEFAULT_IDLE_TIME,
            },
        });
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
    pub fn worker_threads(self, workers: usize) -> Self {
        self.runtime.set(workers);
        self
    }

    /// Check every setting and build the [`Daemon`]. Relative paths become absolute here, against
    /// the current directory, so that the daemon (which changes to its working directory) and a
    /// later `stop()` agree on where the pidfile is.
    ///
    /// # Errors
    ///
    /// [`Error::NoBody`], [`Error::SeveralBodies`], [`Error::ForbiddenSignal`], and
    /// [`Error::InvalidSetting`] for a missing or empty pidfile, an `interval` without a `step`,
    /// a `pool_size` of 0, above 4096 (100,000 for `messages_async`) or without `messages`, a
    /// umask above `0o777` or one that takes reading or writing from the daemon's own user, a
    /// zero ready or stop timeout, a `worker_threads` of 0 or without an async body, or an
    /// unknown user or group.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Daemon, Error, Signal::SIGKILL};
    ///
    /// let err = Daemon::builder().pidfile("x.pid").on(SIGKILL, || {}).step(|| {}).build();
    /// assert!(matches!(err, Err(Error::ForbiddenSignal { signal: SIGKILL })));
    ///
    /// let daemon = Daemon::builder().pidfile("x.pid").step(|| {}).build()?;
    /// assert!(daemon.pidfile().is_absolute());
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn build(self) -> Result<Daemon, Error> {
        let DaemonBuilder {
            settings,
            handlers: given,
            mut bodies,
            setup,
            listen,
            #[cfg(feature = "tokio")]
            runtime,
            #[cfg(feature = "tokio")]
            asynchronous,
        } = self;
        let mut body = match bodies.len() {
            0 => return Err(Error::NoBody),
            1 => bodies.remove(0),
            _ => return Err(Error::SeveralBodies),
        };
        if let Some((signal, _)) = given.iter().find(|(s, _)| is_forbidden(*s)) {
            return Err(Error::ForbiddenSignal { signal: *signal });
        }
        let mut settings = settings.build().map_err(|e| {
            Error::setting(
                e.field_name(),
                format!("is required: call .{}(...) on the builder", e.field_name()),
            )
        })?;
        #[cfg(feature = "tokio")]
        let most_workers = validate_runtime(&runtime, asynchronous)?;
        #[cfg(not(feature = "tokio"))]
        let most_workers = MAX_POOL_SIZE;
        validate(&settings, &body, most_workers)?;
        settings.pidfile = absolute(&settings.pidfile, "pidfile")?;
        settings.workdir = absolute(&settings.workdir, "workdir")?;
        for (setting, path) in [
            ("stdout", &mut settings.stdout),
            ("stderr", &mut settings.stderr),
        ] {
            if let Some(path) = path {
                *path = absolute(path, setting)?;
            }
        }
        for given in &listen {
            let address = match Address::parse(given).map_err(|e| Error::setting("listen", e))? {
                Address::Unix(path) => Address::Unix(absolute(&path, "listen")?),
                tcp => tcp,
            };
            settings.listen.push(address);
        }
        let credentials = Credentials::resolve(settings.user.as_ref(), settings.group.as_ref())?;
        match &mut body {
            Body::Run(_) | Body::Wrap(_) => {}
            Body::Step {
                interval,
                keep_going,
                ..
            } => {
                *interval = settings.interval.unwrap_or_default();
                *keep_going = settings.keep_going;
            }
            Body::Messages { pool, .. } => {
                *pool = PoolSize {
                    workers: settings.pool_size.unwrap_or(DEFAULT_POOL_SIZE),
                    idle_time: settings.idle_time.unwrap_or(DEFAULT_IDLE_TIME),
                };
            }
        }
        let mut handlers = Handlers::default();
        for (signal, handler) in given {
            handlers.add(signal, handler);
        }
        Ok(Daemon::new(Engine::new(
            settings,
            credentials,
            body,
            setup,
            handlers,
        )))
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

/// The most worker threads a `messages` pool may have: each is an OS thread with its own stack.
const MAX_POOL_SIZE: usize = 4096;

/// The checks of the settings against each other and against the body.
/// An async body's runtime: `worker_threads` needs an async body, and at least one worker.
/// Returns the largest pool the body may have: an async pool's handlers are tasks, not threads.
#[cfg(feature = "tokio")]
fn validate_runtime(
    runtime: &crate::engine::body::asynchronous::RuntimeChoice,
    asynchronous: bool,
) -> Result<usize, Error> {
    match runtime.workers() {
        Some(_) if !asynchronous => Err(Error::setting(
            "worker_threads",
            "only an async body has a runtime: use .run_async(...) or .messages_async(...)",
        )),
        Some(0) => Err(Error::setting(
            "worker_threads",
            "0 worker threads could run no task: give at least 1, or leave the setting out for a current-thread runtime",
        )),
        _ if asynchronous => Ok(crate::engine::body::asynchronous::MAX_ASYNC_POOL_SIZE),
        _ => Ok(MAX_POOL_SIZE),
    }
}

fn validate(s: &Settings, body: &Body, most_workers: usize) -> Result<(), Error> {
    if s.interval.is_some() && !matches!(body, Body::Step { .. }) {
        return Err(Error::setting(
            "interval",
            "only a step body has an interval: use .step(...), or sleep with ctl.sleep() in a run body",
        ));
    }
    if s.pool_size == Some(0) {
        return Err(Error::setting(
            "pool_size",
            "0 workers could handle no message: give at least 1",
        ));
    }
    let messages = matches!(body, Body::Messages { .. });
    for (setting, given) in [
        ("pool_size", s.pool_size.is_some()),
        ("idle_time", s.idle_time.is_some()),
    ] {
        if given && !messages {
            return Err(Error::setting(
                setting,
                "only a messages body has a worker pool: use .messages(get, handle)",
            ));
        }
    }
    if s.pidfile.as_os_str().is_empty() {
        return Err(Error::setting(
            "pidfile",
            "the path is empty: give a file name",
        ));
    }
    if s.workdir.as_os_str().is_empty() {
        return Err(Error::setting(
            "workdir",
            "the path is empty: give a directory, or leave the default /",
        ));
    }
    if s.umask > 0o777 {
        return Err(Error::setting(
            "umask",
            format!(
                "{:#o} is not a file mode mask: give a value from 0o000 to 0o777",
                s.umask
            ),
        ));
    }
    if s.umask & 0o600 != 0 {
        return Err(Error::setting(
            "umask",
            format!(
                "{:#o} takes reading or writing from the daemon's own user: it could not read its pidfile or write its logs; keep 0o600 out of the mask, as 0o022 or 0o077 do",
                s.umask
            ),
        ));
    }
    if s.stop_timeout.is_zero() {
        return Err(Error::setting(
            "stop_timeout",
            "zero leaves the daemon no time to stop gracefully (SIGKILL at once): give a few seconds at least",
        ));
    }
    if let Some(grace) = s.grace
        && grace >= s.stop_timeout
    {
        return Err(Error::setting(
            "stop_grace",
            format!(
                "{grace:?} is not shorter than the stop timeout ({:?}): stop() would kill the daemon before its stop handlers could run; give less",
                s.stop_timeout
            ),
        ));
    }
    if s.pool_size.is_some_and(|n| n > most_workers) {
        let what = if most_workers == MAX_POOL_SIZE {
            "worker threads is more than the most a threaded pool may have"
        } else {
            "handlers is more than the most an async pool may have"
        };
        return Err(Error::setting(
            "pool_size",
            format!(
                "{} {what}, {most_workers}: give fewer",
                s.pool_size.unwrap_or_default()
            ),
        ));
    }
    if s.ready_timeout.is_zero() {
        return Err(Error::setting(
            "ready_timeout",
            "zero leaves the daemon no time to start: give a few seconds at least",
        ));
    }
    for (setting, path) in [("stdout", &s.stdout), ("stderr", &s.stderr)] {
        if let Some(path) = path
            && path.as_os_str().is_empty()
        {
            return Err(Error::setting(
                setting,
                "the path is empty: give a file name, or leave the default /dev/null",
            ));
        }
    }
    Ok(())
}

/// `path` made absolute against the current directory, `~/` standing for the home directory.
fn absolute(path: &Path, setting: &'static str) -> Result<PathBuf, Error> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    };
    let path = match path.strip_prefix("~") {
        Ok(rest) => match home() {
            Some(home) => home.join(rest),
            None => {
                return Err(Error::setting(
                    setting,
                    format!(
                        "{} starts with ~ but $HOME is not set: give an absolute path",
                        path.display()
                    ),
                ));
            }
        },
        Err(_) => path.to_path_buf(),
    };
    std::path::absolute(&path).map_err(|e| {
        Error::setting(
            setting,
            format!(
                "{} cannot be made absolute ({e}): give an absolute path",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_required_and_only_one() {
        let none = Daemon::builder().pidfile("x.pid").build();
        assert!(matches!(none, Err(Error::NoBody)));
        let two = Daemon::builder()
            .pidfile("x.pid")
            .step(|| {})
            .run(|_| {})
            .build();
        assert!(matches!(two, Err(Error::SeveralBodies)));
    }

    #[test]
    fn the_pidfile_is_required_and_not_empty() {
        let missing = Daemon::builder().step(|| {}).build();
        assert!(matches!(
            missing,
            Err(Error::InvalidSetting {
                setting: "pidfile",
                ..
            })
        ));
        let empty = Daemon::builder().pidfile("").step(|| {}).build();
        assert!(matches!(
            empty,
            Err(Error::InvalidSetting {
                setting: "pidfile",
                ..
            })
        ));
    }

    #[test]
    fn uncatchable_signals_are_refused() {
        for signal in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV] {
            let result = Daemon::builder()
                .pidfile("x.pid")
                .on(signal, || {})
                .step(|| {})
                .build();
            assert!(matches!(result, Err(Error::ForbiddenSignal { signal: s }) if s == signal));
        }
    }

    #[test]
    fn odd_settings_are_refused() {
        let umask = Daemon::builder()
            .pidfile("x")
            .umask(0o1000)
            .step(|| {})
            .build();
        assert!(matches!(
            umask,
            Err(Error::InvalidSetting {
                setting: "umask",
                ..
            })
        ));
        let interval = Daemon::builder()
            .pidfile("x")
            .run(|_| {})
            .interval(Duration::from_secs(1))
            .build();
        assert!(matches!(
            interval,
            Err(Error::InvalidSetting {
                setting: "interval",
                ..
            })
        ));
        let timeout = Daemon::builder()
            .pidfile("x")
            .step(|| {})
            .ready_timeout(Duration::ZERO)
            .build();
        assert!(matches!(
            timeout,
            Err(Error::InvalidSetting {
                setting: "ready_timeout",
                ..
            })
        ));
        let log = Daemon::builder()
            .pidfile("x")
            .stdout("")
            .step(|| {})
            .build();
        assert!(matches!(
            log,
            Err(Error::InvalidSetting {
                setting: "stdout",
                ..
            })
        ));
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let refused = |b: DaemonBuilder, setting: &str| match b.build() {
            Err(Error::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{setting}: {other:?}"),
        };
        let b = || Daemon::builder().pidfile("x").step(|| {});
        refused(b().stop_timeout(Duration::ZERO), "stop_timeout");
        refused(b().umask(0o777), "umask");
        refused(b().umask(0o200), "umask");
        let pool = || {
            Daemon::builder()
                .pidfile("x")
                .messages(|| None::<u8>, |_m| {})
        };
        refused(pool().pool_size(usize::MAX), "pool_size");
        assert!(pool().pool_size(MAX_POOL_SIZE).build().is_ok());
        // Durations too long to add to an instant are accepted: waits saturate.
        assert!(
            b().ready_timeout(Duration::MAX)
                .stop_timeout(Duration::MAX)
                .build()
                .is_ok()
        );
        assert!(b().umask(0o077).build().is_ok());
    }

    #[test]
    fn pool_settings_need_a_messages_body() {
        let zero = Daemon::builder()
            .pidfile("x")
            .messages(|| None::<u8>, |_m| {})
            .pool_size(0)
            .build();
        assert!(matches!(
            zero,
            Err(Error::InvalidSetting {
                setting: "pool_size",
                ..
            })
        ));
        let stray = Daemon::builder()
            .pidfile("x")
            .step(|| {})
            .pool_size(4)
            .build();
        assert!(matches!(
            stray,
            Err(Error::InvalidSetting {
                setting: "pool_size",
                ..
            })
        ));
        let two = Daemon::builder()
            .pidfile("x")
            .messages(|| None::<u8>, |_m| {})
            .step(|| {})
            .build();
        assert!(matches!(two, Err(Error::SeveralBodies)));
        let fine = Daemon::builder()
            .pidfile("x")
            .messages(|| None::<u8>, |_m| {})
            .pool_size(16)
            .build();
        assert!(fine.is_ok());
    }

    #[test]
    fn unknown_users_are_build_errors() {
        let user = Daemon::builder()
            .pidfile("x")
            .user("no-such-user-anywhere")
            .step(|| {})
            .build();
        assert!(matches!(
            user,
            Err(Error::InvalidSetting {
                setting: "user",
                ..
            })
        ));
        let group = Daemon::builder()
            .pidfile("x")
            .group("no-such-group-anywhere")
            .step(|| {})
            .build();
        assert!(matches!(
            group,
            Err(Error::InvalidSetting {
                setting: "group",
                ..
            })
        ));
    }

    #[test]
    fn relative_paths_become_absolute_at_build() {
        let daemon = Daemon::builder()
            .pidfile("run/x.pid")
            .stdout("x.log")
            .workdir(".")
            .step(|| {})
            .build()
            .expect("valid");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(daemon.pidfile(), cwd.join("run/x.pid"));
        assert!(
            daemon
                .engine()
                .settings()
                .stdout
                .as_deref()
                .is_some_and(Path::is_absolute)
        );
        assert!(daemon.engine().settings().workdir.is_absolute());
    }

    #[test]
    fn a_tilde_is_the_home_directory() {
        let daemon = Daemon::builder()
            .pidfile("~/x.pid")
            .step(|| {})
            .build()
            .expect("valid");
        let home = std::env::var_os("HOME").expect("HOME is set for the tests");
        assert_eq!(daemon.pidfile(), Path::new(&home).join("x.pid"));
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_bodies_have_their_own_limits_and_runtime_settings() {
        let refused = |b: DaemonBuilder, setting: &str| match b.build() {
            Err(Error::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{setting}: {other:?}"),
        };
        let pool = || {
            Daemon::builder()
                .pidfile("x")
                .messages_async(|| async { None::<u8> }, |_m| async {})
        };
        assert!(pool().pool_size(100_000).build().is_ok());
        refused(pool().pool_size(100_001), "pool_size");
        assert!(pool().worker_threads(2).build().is_ok());
        refused(pool().worker_threads(0), "worker_threads");
        // Told before the body, as well as after.
        let early = Daemon::builder()
            .pidfile("x")
            .worker_threads(3)
            .run_async(|ctl| async move { ctl.stopped().await });
        assert!(early.build().is_ok());
        refused(
            Daemon::builder().pidfile("x").step(|| {}).worker_threads(2),
            "worker_threads",
        );
        refused(
            Daemon::builder()
                .pidfile("x")
                .run_async(|_ctl| async {})
                .pool_size(8),
            "pool_size",
        );
        assert!(matches!(
            Daemon::builder()
                .pidfile("x")
                .run_async(|_ctl| async {})
                .step(|| {})
                .build(),
            Err(Error::SeveralBodies)
        ));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let daemon = Daemon::builder()
            .pidfile("/x.pid")
            .step(|| {})
            .build()
            .expect("valid");
        let s = daemon.engine().settings();
        assert_eq!(s.workdir, Path::new("/"));
        assert_eq!(s.umask, 0o022);
        assert_eq!(s.stop_timeout, Duration::from_secs(10));
        assert!(s.stdout.is_none() && s.stderr.is_none());
    }
}
