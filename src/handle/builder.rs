//! The public builder and its setters, every one documented; the bodies are given in
//! `bodies.rs`, and `build.rs` checks everything at once.

use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::Signal;

use crate::engine::{Body, Handler, LoggerFn, Outcome, SetupFn, StopHook};
use crate::handle::daemon::{Command, Daemon};
use crate::settings::{Account, SettingsBuilder, Supervision};

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
    pub(super) settings: SettingsBuilder,
    pub(super) handlers: Vec<(Signal, Handler)>,
    pub(super) on_stop: Vec<StopHook>,
    pub(super) commands: Vec<Command>,
    pub(super) bodies: Vec<Body>,
    pub(super) setup: Option<SetupFn>,
    pub(super) logger: Option<LoggerFn>,
    pub(super) listen: Vec<String>,
    /// The runtime of an async body, which it reads when it starts.
    #[cfg(feature = "tokio")]
    pub(super) runtime: crate::engine::asynchronous::RuntimeChoice,
    /// Whether a body is async: the pool may then be larger, and a runtime may be chosen.
    #[cfg(feature = "tokio")]
    pub(super) asynchronous: bool,
}

impl fmt::Debug for DaemonBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaemonBuilder")
            .field("settings", &self.settings)
            .field("handlers", &self.handlers.len())
            .field("on_stop", &self.on_stop.len())
            .field("commands", &self.commands)
            .field("bodies", &self.bodies)
            .field("setup", &self.setup.is_some())
            .field("logger", &self.logger.is_some())
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
    #[must_use = "the builder does nothing until .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn pidfile(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.pidfile(path))
    }

    /// The daemon's working directory. Default `/`, so that it keeps no file system busy.
    /// `run()` in the foreground stays where it is.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().workdir("/var/lib/tool");
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn workdir(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.workdir(path))
    }

    /// The daemon's file mode creation mask. Default `0o022`: files it creates are not writable
    /// by others.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().umask(0o077);
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn stdout(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.stdout(path))
    }

    /// A file that the daemon's stderr is appended to: panics, step errors and the crate's own
    /// messages are logged there. Default `/dev/null`. It may be the same file as `stdout`.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().stderr("/var/log/tool.err");
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn stderr(self, path: impl Into<PathBuf>) -> Self {
        self.set(|s| s.stderr(path))
    }

    /// How long `stop()` waits after SIGTERM before it sends SIGKILL. Default 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().stop_timeout(std::time::Duration::from_secs(30));
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn keep_going(self, keep_going: bool) -> Self {
        self.set(|s| s.keep_going(keep_going))
    }

    /// The name the daemon logs under and the command line prints. Default: the file name of the
    /// program as it was started (`argv[0]`, as syslog takes it), else the executable's.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().name("counter");
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn name(self, name: impl Into<String>) -> Self {
        self.set(|s| s.name(name))
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn user(self, user: impl Into<Account>) -> Self {
        self.set(|s| s.user(user))
    }

    /// The group the daemon runs as, by name or gid (see [`user`](DaemonBuilder::user)).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder().group("nogroup");
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn group(self, group: impl Into<Account>) -> Self {
        self.set(|s| s.group(group))
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn stop_grace(self, grace: Duration) -> Self {
        self.set(|s| s.grace(grace))
    }

    /// How long the body's loop may go without a sign of life before
    /// [`health`](crate::Daemon::health) (the command line's `health`, for a Kubernetes exec
    /// probe or a Docker `HEALTHCHECK`) says it is wedged. Default: 30 s. The signs are those
    /// the systemd watchdog hears: [`ctl.running()`](crate::Ctl::running), `ctl.sleep`,
    /// `ctl.readable`, each step, an idle messages body, a task on an async body's runtime. A
    /// `run` body that blocks longer than this (in `accept`, say) must wait with a timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let b = daemons::Daemon::builder().health_period(Duration::from_secs(10));
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn health_period(self, period: Duration) -> Self {
        self.set(|s| s.health_period(period))
    }

    /// The descriptor on which a supervisor of the s6 kind waits for readiness: once ready,
    /// the daemon writes a newline there and closes it, as s6's `notification-fd` (the file
    /// in the service directory that names the descriptor) and dinit's `ready-notification =
    /// pipefd:N` ask, so that they need no polling check. The descriptor becomes the daemon's.
    ///
    /// Without it, the environment variable `DAEMONS_NOTIFY_FD` names the descriptor (dinit's
    /// `ready-notification = pipevar:DAEMONS_NOTIFY_FD` sets it; so can a run script), and
    /// without that, the file `notification-fd` in the working directory does, where s6
    /// starts `./run`, if that descriptor is a pipe open for writing above 2. The variable is
    /// removed, and the descriptor made close-on-exec, so that the body's children take
    /// neither.
    ///
    /// A descriptor that this setting or the variable names and that is not the write end of
    /// a pipe fails the start with [`Error::InvalidSetting`](crate::Error::InvalidSetting),
    /// which says what it is instead. A daemon that fails before it is ready closes it without
    /// a newline. Under supervision the supervisor writes the newline once its first child is
    /// ready. It goes together with `$NOTIFY_SOCKET`: both are told.
    ///
    /// # Examples
    ///
    /// ```
    /// // s6's service directory holds `notification-fd` with 3 in it.
    /// let b = daemons::Daemon::builder().notify_fd(3);
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn notify_fd(self, fd: std::os::fd::RawFd) -> Self {
        self.set(|s| s.notify_fd(fd))
    }

    /// Set-up that runs in the daemon once it is detached (its stdio redirected, its privileges
    /// dropped, its signals caught) and before it reports ready: loggers, connections, the
    /// threads that feed a [`messages`](DaemonBuilder::messages) body, an async runtime. What
    /// it makes is the daemon's own, created after the fork, where threads are safe.
    ///
    /// An `Err` (or a panic) fails `start()` with [`Error::Setup`](crate::Error::Setup), whose
    /// `source()` is the error with its sources (or `panicked: MESSAGE`); the
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn setup<F, R>(mut self, mut setup: F) -> Self
    where
        F: FnMut() -> R + Send + 'static,
        R: Outcome,
    {
        self.setup = Some(Box::new(move || setup().into_result()));
        self
    }

    /// Install a logger (`env_logger`, `tracing-subscriber`, one's own `log::Log`) inside the
    /// daemon, where it belongs: it runs once, in the process that logs (the daemon, or its
    /// supervisor, whose children inherit it), as soon as the daemon's stdio is its log files
    /// and its privileges are dropped, before the crate's lines of the start and before
    /// [`setup`](DaemonBuilder::setup). In the foreground (`run()`) it runs too, first thing.
    ///
    /// A logger installed in `main` before `cli()` or `start()` decides its colours while
    /// stderr is still the terminal, and writes ANSI codes into the log file. Here, when stderr
    /// is not a terminal, `NO_COLOR=1` is set while `f` runs (in a process of one thread, which
    /// a daemon is at that point), which `env_logger` and `tracing-subscriber` both honour. With
    /// the `log` feature, the crate's own lines go through the installed logger too, under the
    /// target `daemons` (so `RUST_LOG=daemons=warn` filters them); see the guide's
    /// [Logs](crate::guide#logs-and-logrotate).
    ///
    /// `f` must not spawn threads under supervision (the supervisor forks each child): a
    /// logger that writes on a thread of its own belongs in [`setup`](DaemonBuilder::setup).
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-logger.pid")
    ///     .stderr("/tmp/doc-logger.log")
    ///     // env_logger::init() here, in a program that depends on env_logger.
    ///     .logger(|| eprintln!("the logger is installed here"))
    ///     .step(|| {})
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn logger<F>(mut self, f: F) -> Self
    where
        F: FnOnce() + Send + 'static,
    {
        self.logger = Some(Box::new(f));
        self
    }

    /// Supervise the body: the daemon becomes a small supervisor that holds the pidfile and runs
    /// the body in a child process, started again after it fails (or whenever it ends, with
    /// [`Supervision::always`]), after a backoff, until the policy's limit. Without it, a failed
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
    /// use daemons::{Daemon, Supervision};
    /// use std::time::Duration;
    ///
    /// let b = Daemon::builder()
    ///     .pidfile("/tmp/doc-supervised.pid")
    ///     .supervise(Supervision::on_failure().backoff(Duration::from_secs(1), Duration::from_secs(60)))
    ///     .step(|| {});
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn supervise(self, policy: Supervision) -> Self {
        self.set(|s| s.supervision(policy))
    }

    /// Listen on `address`: `host:port` (or `tcp:host:port`) for TCP, `udp:host:port` for a UDP
    /// socket, an absolute path or `unix:PATH` for a Unix stream socket; `NAME=` before it
    /// names the socket (`web=127.0.0.1:8080`). Any number of times. The daemon binds before it
    /// reports ready, so `start()` fails with [`Error::Listen`](crate::Error::Listen) when the
    /// address is taken, and a client that connects once `start()` has returned is never
    /// refused. As root, the socket is bound before privileges are dropped, so a port below
    /// 1024 works for a daemon that runs as a user.
    ///
    /// Under a service manager that passes sockets (systemd's `.socket` units, sd_listen_fds(3):
    /// `$LISTEN_FDS` with `$LISTEN_PID` this process, as for `run()` under `Type=notify`), a
    /// named address takes the passed socket of that name (`FileDescriptorName=`,
    /// `$LISTEN_FDNAMES`), each address the passed socket bound to it, and the addresses left
    /// without a name take the passed ones left, in order; the variables are removed from the
    /// environment. Every passed descriptor is checked: one that is not a socket the daemon
    /// serves (a connection, from a socket unit with `Accept=yes`), or not the kind its address
    /// asks for (a datagram socket for a TCP address), fails the start with `Error::Listen`,
    /// which names the descriptor and says what it is. The body gets the sockets with
    /// [`ctl.tcp_listener(i)`](crate::Ctl::tcp_listener),
    /// [`ctl.unix_listener(i)`](crate::Ctl::unix_listener) and
    /// [`ctl.udp_socket(i)`](crate::Ctl::udp_socket), in the order of the `listen` calls, and
    /// finds a named one with [`ctl.listener_index(name)`](crate::Ctl::listener_index).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = daemons::Daemon::builder()
    ///     .listen("127.0.0.1:7000")
    ///     .listen("admin=/run/echo.sock")
    ///     .listen("udp:127.0.0.1:5353");
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn manual_ready(self, manual: bool) -> Self {
        self.set(|s| s.manual_ready(manual))
    }

    /// Run `handler` when the daemon receives `signal`. Any number of handlers may be registered
    /// for one signal; they run in registration order, one at a time, on a signal thread (not
    /// in signal context: they may allocate, lock and log).
    ///
    /// Handlers of the stop signals (SIGTERM, SIGINT, SIGQUIT) run once, at shutdown, after the
    /// body has finished, and only for the signal that stopped it: cleanup for every way the
    /// daemon ends belongs in [`on_stop`](DaemonBuilder::on_stop), whose hooks run after them.
    /// A SIGKILL, SIGSTOP, SIGSEGV, SIGILL or SIGFPE handler is refused by
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
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn on(mut self, signal: Signal, handler: impl FnMut() + Send + 'static) -> Self {
        self.handlers.push((signal, Handler::new(handler)));
        self
    }

    /// Run `hook` once at the end of the daemon's body, however the daemon stops: a stop
    /// signal (SIGTERM, SIGINT, SIGQUIT: `stop()`, Ctrl-C in [`run`](crate::Daemon::run), a
    /// service manager), [`ctl.stop()`](crate::Ctl::stop), the body returning by itself or
    /// failing, or a body abandoned after its [grace](DaemonBuilder::stop_grace). The place for
    /// cleanup that must happen whichever way the daemon ends: flushing a buffer, removing a
    /// socket file, saying goodbye to a peer. Cleanup that is skipped on the failure path is the
    /// classic leak, so the hooks run on that path too.
    ///
    /// They run after the body has returned, in the daemon's process (under
    /// [`supervise`](DaemonBuilder::supervise), in the child that ran the body, at each of its
    /// ends), before the pidfile is removed: on the main thread, or on the thread that abandons
    /// a body that did not return in time. The stop signal's own handlers
    /// ([`on`](DaemonBuilder::on)`(SIGTERM, ..)`) run first, then every stop hook, in the order
    /// they were given, each once, however many stop signals arrive. They do not run when the
    /// start fails (the body never ran), nor at SIGKILL or a crash, which nothing survives.
    ///
    /// A hook returns `()` or a `Result`. One that fails or panics is logged and the next one
    /// runs; the daemon then exits 1 and [`run`](crate::Daemon::run) returns
    /// [`Error::StopHandler`](crate::Error::StopHandler), as for a failing stop signal handler.
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use daemons::Daemon;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let log = dir.path().join("hooks.log");
    /// let daemon = Daemon::builder()
    ///     .pidfile(dir.path().join("hooks.pid"))
    ///     .stdout(&log)
    ///     .run(|ctl| while ctl.sleep(std::time::Duration::from_secs(1)) {})
    ///     .on_stop(|| println!("flushed"))
    ///     .on_stop(|| -> std::io::Result<()> {
    ///         println!("closed");
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// daemon.start()?;
    /// daemon.stop()?;
    /// assert_eq!(std::fs::read_to_string(&log)?, "flushed\nclosed\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn on_stop<F, R>(mut self, mut hook: F) -> Self
    where
        F: FnMut() -> R + Send + 'static,
        R: Outcome,
    {
        self.on_stop
            .push(StopHook::new(move || hook().into_result()));
        self
    }

    /// A command of the program's own on the [command line](crate::cli), beside `start`,
    /// `stop` and the others: `stats`, `flush`, `check-config`. It runs in the process that the
    /// command line runs in (not in the daemon), with the [`Daemon`] handle, so it may signal
    /// the running daemon ([`send`](Daemon::send)), ask its [`status`](Daemon::status) or
    /// [`pid`](Daemon::pid), or do its work right there and print.
    ///
    /// The usage lists it with `help`; `--pidfile PATH` before it works as for the built-in
    /// commands (the handle then names that pidfile); an argument after it is a usage error
    /// (exit 2), as after any command. It exits 0 on `Ok`, and 1 on `Err`, with
    /// `NAME: COMMAND: ERROR` (the error with its sources) on stderr.
    ///
    /// A `name` that is empty, starts with `-`, contains whitespace, is a built-in command
    /// (`start`, `stop`, `restart`, `status`, `health`, `reload`, `run`, `help`) or was given
    /// already is refused by [`build`](DaemonBuilder::build) with
    /// [`Error::InvalidSetting`](crate::Error::InvalidSetting).
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Daemon, Error, Signal::SIGUSR1};
    /// use std::process::ExitCode;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-command.pid")
    ///     .on(SIGUSR1, || println!("counters: ..."))
    ///     .step(|| {})
    ///     .command("stats", "write the counters to the log (SIGUSR1)", |daemon| {
    ///         let pid = daemon.send(SIGUSR1)?;
    ///         println!("asked pid {pid} for its counters");
    ///         Ok(())
    ///     })
    ///     .command("where", "print the pidfile's path", |daemon| {
    ///         println!("{}", daemon.pidfile().display());
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// assert_eq!(daemon.cli_from(["where"]), ExitCode::SUCCESS);
    /// assert_eq!(daemon.cli_from(["stats"]), ExitCode::FAILURE);      // not running
    /// assert_eq!(daemon.cli_from(["where", "now"]), ExitCode::from(2));
    ///
    /// for name in ["stop", "", "--stats", "two words"] {
    ///     let refused = Daemon::builder()
    ///         .pidfile("/tmp/doc-command.pid")
    ///         .step(|| {})
    ///         .command(name, "the command line could not tell it apart", |_| Ok(()))
    ///         .build();
    ///     assert!(matches!(refused, Err(Error::InvalidSetting { setting: "command", .. })));
    /// }
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use = "the builder is returned, changed: chain the calls and end with .build()"]
    pub fn command<F>(mut self, name: impl Into<String>, help: impl Into<String>, f: F) -> Self
    where
        F: Fn(&Daemon) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
            + Send
            + Sync
            + 'static,
    {
        self.commands.push(Command {
            name: name.into(),
            help: help.into(),
            run: Box::new(f),
        });
        self
    }
}
