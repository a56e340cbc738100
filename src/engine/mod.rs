//! What runs inside the daemon, detached or in the foreground: take the pidfile, set up stdio,
//! credentials and signals, report ready, run the body, run the stop handlers, remove the
//! pidfile.

pub(crate) mod body;
pub(crate) mod ctl;
pub(crate) mod ending;
pub(crate) mod init;
pub(crate) mod log;
pub(crate) mod signals;
pub(crate) mod supervise;

pub use body::outcome::{Fetch, Outcome};
pub use ctl::{Ctl, StopFuture};

use std::fs::File;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Pid, chdir};

use crate::detach::{Logs, Reporter, close_inherited_fds, close_listed_fds};
use crate::engine::body::Body;
use crate::engine::body::outcome::panic_message;
use crate::engine::ending::{Ended, Ending, Parts};
use crate::engine::log::Log;
use crate::engine::signals::{CaughtSignals, Handlers, Reload, STOP_SIGNALS, catch_signals};
use crate::engine::supervise::{Child, Supervisor};
use crate::error::Error;
use crate::handover;
use crate::listen::Listeners;
use crate::pidfile::{Pidfile, PidfileLock};
use crate::privileges::Credentials;
use crate::settings::Settings;
use crate::sys;
use crate::systemd::{self, Notifier, watchdog_period};

/// A daemon's checked settings and closures: everything the engine needs to run it.
pub(crate) struct Engine {
    settings: Settings,
    credentials: Credentials,
    name: String,
    log: Log,
    // Behind a mutex only so that the `Daemon` that keeps the engine is `Sync`: one thread runs
    // the body.
    body: Mutex<Body>,
    setup: Mutex<Option<SetupFn>>,
    handlers: Arc<Mutex<Handlers>>,
}

/// The user's set-up, run in the daemon before it is ready.
pub(crate) type SetupFn = Box<dyn FnMut() -> Result<(), String> + Send>;

/// How the daemon is being run.
pub(crate) enum Launch {
    /// After `start()`'s fork: do every daemon(7) step and report to the caller.
    /// The descriptors to close are those the caller listed before the fork, or, if it could
    /// not, those the daemon finds itself.
    /// `true` for a successor at a restart: the instance that runs hands it its listening
    /// sockets and its pidfile (see `handover`).
    Detached(Reporter, Result<Vec<RawFd>, Error>, bool),
    /// `run()`: the same engine in the calling process, nothing forked or redirected.
    Foreground,
}

/// What [`Engine::begin`] hands back: the daemon's end, the body's `Ctl`, and the keeper.
struct Begun {
    ending: Arc<Ending>,
    ctl: Ctl,
    keeper: JoinHandle<()>,
}

/// What [`Engine::take_process`] got: the pidfile, the listening sockets, and the instance's
/// part in restarts.
struct Taken {
    lock: PidfileLock,
    listeners: Listeners,
    handover: Handover,
}

/// An instance's part in the restarts that hand its listening sockets over.
pub(crate) enum Handover {
    /// None: no listening sockets, or a supervisor (whose restart is a stop, then a start).
    None,
    /// The first instance: the offer it bound, or why it could not.
    Offer(Result<handover::Offer, Error>),
    /// A successor: what it must do to take over once set up (or give up, when dropped).
    Takeover(handover::Takeover),
}

/// What [`Engine::prepare`] hands to [`Engine::serve`].
struct Prepared {
    lock: Option<PidfileLock>,
    signals: CaughtSignals,
    ctl: Ctl,
    reload: Reload,
}

impl Engine {
    pub(crate) fn new(
        settings: Settings,
        credentials: Credentials,
        body: Body,
        setup: Option<SetupFn>,
        handlers: Handlers,
    ) -> Engine {
        let name = settings.name.clone().unwrap_or_else(default_name);
        Engine {
            settings,
            credentials,
            log: Log::new(&name),
            name,
            body: Mutex::new(body),
            setup: Mutex::new(setup),
            handlers: Arc::new(Mutex::new(handlers)),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    /// The pidfile, whose directories may also be the daemon's user's.
    pub(crate) fn pidfile(&self) -> Pidfile {
        Pidfile::new(&self.settings.pidfile).trusting(self.credentials.trusted())
    }

    /// The log files, whose directories may also be the daemon's user's.
    fn logs(&self) -> Logs {
        Logs {
            stdout: self.settings.stdout.clone(),
            stderr: self.settings.stderr.clone(),
            trusted: self.credentials.trusted(),
        }
    }

    /// The daemon's side of `start()`'s fork: serve, then leave the process, never returning
    /// into the caller's code (the daemon is a copy of the caller, and would go on running it).
    pub(crate) fn serve_detached_and_exit(&self, launch: Launch) -> ! {
        let served = catch_unwind(AssertUnwindSafe(|| self.serve(launch)));
        let code = match served {
            Ok(Ok(())) => 0,
            Ok(Err(_)) | Err(_) => 1,
        };
        // Leave with `_exit`, as the middle process does: the exit handlers of this copy are the
        // caller's, and running them (libc's and the loader's among them) copies a page at each
        // write, ~20 µs of every stop. Only the buffers need flushing, and what they hold is the
        // daemon's own: `detach` flushed the caller's.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        sys::flush_c_stdio();
        sys::exit_now(code)
    }

    /// The engine, in the daemon or in the foreground: take the pidfile, catch signals, set up,
    /// report, run the body (or a supervisor that runs it in a child), then end (stop handlers,
    /// pidfile).
    pub(crate) fn serve(&self, launch: Launch) -> Result<(), Error> {
        let (mut reporter, inherited, successor) = match launch {
            Launch::Detached(reporter, inherited, successor) => {
                (Some(reporter), Some(inherited), successor)
            }
            Launch::Foreground => (None, None, false),
        };
        let detached = inherited.is_some();
        let Taken {
            lock,
            listeners,
            handover,
        } = match self.take_process(inherited, successor) {
            Ok(taken) => taken,
            Err(error) => {
                if let Some(reporter) = reporter.as_mut() {
                    reporter.fail(&error);
                }
                return Err(error);
            }
        };
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            self.log
                .log(&format!("NOTIFY_SOCKET is set but unusable: {e}"));
            None
        });
        if let Some(policy) = self.settings.restart {
            drop(handover);
            let supervisor = Supervisor {
                policy,
                lock,
                listeners,
                log: &self.log,
                detached,
                logs: self.logs(),
                forwarded: self.forwarded_signals(),
            };
            return supervisor.run(self, reporter, notifier);
        }
        self.serve_body(
            Some(lock),
            listeners,
            handover,
            reporter,
            notifier,
            detached,
            detached,
        )
    }

    /// The signals a supervisor passes on to its child: those that stop the daemon, SIGHUP, and
    /// every one with handlers.
    fn forwarded_signals(&self) -> Vec<Signal> {
        let mut signals: Vec<Signal> = STOP_SIGNALS.to_vec();
        // SIGCONT too: `stop()` sends it after SIGTERM, for a child that was stopped.
        signals.extend([Signal::SIGHUP, Signal::SIGCONT]);
        let handlers = self.handlers.lock().unwrap_or_else(PoisonError::into_inner);
        for signal in handlers.signals() {
            if !signals.contains(&signal) {
                signals.push(signal);
            }
        }
        signals
    }

    /// Everything from catching the signals on, in the process that runs the body: the daemon
    /// itself (`lock` is its pidfile), or a supervised child (no pidfile; `reporter` is its
    /// parent, who also hears why it ended).
    #[allow(clippy::too_many_arguments)]
    fn serve_body(
        &self,
        lock: Option<PidfileLock>,
        listeners: Listeners,
        handover: Handover,
        mut reporter: Option<Reporter>,
        notifier: Option<Notifier>,
        own_process: bool,
        reopen_logs: bool,
    ) -> Result<(), Error> {
        let parent = match (&lock, &reporter) {
            (None, Some(reporter)) => reporter.try_clone().ok(),
            _ => None,
        };
        let started = self
            .catch(lock, listeners, notifier, own_process, reopen_logs)
            .and_then(|prepared| self.begin(prepared, handover, own_process, parent));
        let Begun {
            ending,
            ctl,
            keeper,
        } = match started {
            Ok(started) => started,
            Err(error) => {
                if let Some(reporter) = reporter.as_mut() {
                    reporter.fail(&error);
                }
                return Err(error);
            }
        };
        let lifecycle = ctl.lifecycle();
        if let Some(reporter) = reporter {
            lifecycle.hold_reporter(reporter);
        }
        if !self.settings.manual_ready {
            lifecycle.report_ready();
        }

        let outcome = self
            .body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .run(&ctl, &self.log);
        ending.body_returned();
        if !ending.begin() {
            // The keeper abandoned the body and is ending the process: it must finish first.
            loop {
                thread::park();
            }
        }
        let result = ending.finish(Ended::Returned(outcome));
        // A process of its own leaves with `_exit` now, and the keeper can do nothing any more
        // (the end is claimed, the pidfile let go of): waiting for it would only cost the stop
        // two context switches. A foreground caller goes on, so there it is joined.
        if !own_process {
            let _ = keeper.join();
        }
        result
    }

    /// Everything that must exist before the daemon is ready, after `prepare`: the control
    /// thread, the keeper, and the user's set-up. A daemon that cannot have them fails its start
    /// instead of dying after `start()` said "started".
    fn begin(
        &self,
        prepared: Prepared,
        handover: Handover,
        detached: bool,
        parent: Option<File>,
    ) -> Result<Begun, Error> {
        let Prepared {
            lock,
            signals,
            ctl,
            reload,
        } = prepared;
        let lifecycle = ctl.lifecycle();
        let control = signals.start_control_thread(
            self.handlers.clone(),
            lifecycle.clone(),
            reload,
            self.log.clone(),
        )?;
        let s = &self.settings;
        let ending = Ending::new(Parts {
            lifecycle: lifecycle.clone(),
            handlers: self.handlers.clone(),
            control,
            lock,
            listeners: ctl.listener_set(),
            parent,
            log: self.log.clone(),
            detached,
            stop_children: s.stop_children.then(|| s.stop_timeout / 2),
            dropped_privileges: self.credentials.is_set(),
            handing_limit: s
                .ready_timeout
                .saturating_add(handover::step(s.ready_timeout) * 2),
        });
        let wrapped = self
            .body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_wrapped();
        let grace = if wrapped {
            Duration::ZERO
        } else {
            self.grace()
        };
        // The keeper exists before ready: a daemon whose pidfile nobody guards, or whose body
        // nobody abandons when it ignores a stop (a wrapped function can only be stopped that
        // way), would break what `start()` promises. It fails the start instead.
        let keeper = ending.spawn_keeper(grace, wrapped).map_err(|e| Error::Sys {
            call: "spawn the keeper thread",
            source: e,
        });
        let keeper = keeper.and_then(|keeper| self.set_up().map(|()| keeper));
        // A successor takes over last, once nothing else can fail: until then the instance that
        // runs keeps serving and holding its pidfile, and a failed successor leaves it as it was
        // (dropping the takeover gives it up). Only then does it offer its sockets to its own
        // successor. A first instance offers from now on.
        let keeper = match handover {
            Handover::Takeover(takeover) => {
                keeper.and_then(|keeper| ending.take_over(takeover).map(|()| keeper))
            }
            Handover::Offer(Ok(offer)) => {
                if keeper.is_ok() {
                    ending.offer(offer);
                }
                keeper
            }
            Handover::Offer(Err(e)) => {
                self.log.log(&format!(
                    "cannot offer the listening sockets to a successor ({e}): a restart will stop, then start"
                ));
                keeper
            }
            Handover::None => keeper,
        };
        let keeper = match keeper {
            Ok(keeper) => keeper,
            Err(error) => {
                // Nothing is left behind: the control thread and the keeper end (no body to wait
                // for), the pidfile goes; no stop handler runs, as nothing was started.
                ending.body_returned();
                if ending.begin() {
                    let _ = ending.finish(Ended::Returned(Ok(())));
                }
                return Err(error);
            }
        };
        Ok(Begun {
            ending,
            ctl,
            keeper,
        })
    }

    /// Run the user's set-up, once the daemon is detached and before it is ready.
    fn set_up(&self) -> Result<(), Error> {
        let mut setup = self.setup.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(setup) = setup.as_mut() else {
            return Ok(());
        };
        match catch_unwind(AssertUnwindSafe(setup)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::Setup { message }),
            Err(panic) => Err(Error::Setup {
                message: format!("it panicked: {}", panic_message(&*panic)),
            }),
        }
    }

    /// How long a body may take to return after a stop request.
    fn grace(&self) -> Duration {
        self.settings
            .grace
            .unwrap_or(self.settings.stop_timeout / 2)
    }

    /// What a daemon process does first, before any signal is caught: umask and working
    /// directory, the pidfile's lock (the pid not yet written), stdio and inherited descriptors,
    /// privileges. `inherited` is there when detached: the descriptors to close. A `successor`
    /// receives the pidfile's lock and the listening sockets from the instance that runs; a
    /// first instance with listening sockets binds its offer for its successors. On failure the
    /// pidfile, if taken, is already removed, and a successor has given up.
    fn take_process(
        &self,
        inherited: Option<Result<Vec<RawFd>, Error>>,
        successor: bool,
    ) -> Result<Taken, Error> {
        let s = &self.settings;
        if inherited.is_some() {
            umask(Mode::from_bits_truncate(s.umask as libc::mode_t));
            chdir(&s.workdir).map_err(|e| {
                Error::io(
                    "change to the working directory",
                    &s.workdir,
                    std::io::Error::from_raw_os_error(e as i32),
                )
            })?;
        }
        // First, so that its descriptor is the lowest free one: a probe looks there first.
        // From here on, an early return drops `lock`, which removes the pidfile (a successor's
        // is left to the instance that runs). The pid is written once the stop signals are
        // caught.
        let pidfile = self.pidfile();
        let step = handover::step(s.ready_timeout);
        let offers = !s.listen.is_empty() && s.restart.is_none();
        // Before the inherited descriptors are closed (a service manager's sockets are among
        // them) and before privileges are dropped (a port below 1024, and the offer socket,
        // which stays the starting user's).
        let (mut lock, listeners, handover) = if successor {
            let received = handover::receive(&pidfile, step)?;
            let listeners =
                Listeners::take_handed(&s.listen, received.sockets, self.credentials.trusted())?;
            (
                received.lock,
                listeners,
                Handover::Takeover(received.takeover),
            )
        } else {
            let lock = pidfile.lock()?;
            let listeners =
                Listeners::open(&s.listen, systemd::listen_fds(), self.credentials.trusted())?;
            let handover = match offers {
                true => Handover::Offer(handover::Offer::bind(&pidfile, step)),
                false => Handover::None,
            };
            (lock, listeners, handover)
        };
        if inherited.is_some() {
            // A detached daemon ends with `_exit`: its lock goes with it (see `control`).
            lock.release_at_exit();
        }
        if let Some(inherited) = inherited {
            let stdio = self.logs().open()?;
            // The logs are the daemon's: once it is no longer root it must still be able to
            // reopen them after a rotation. What changes hands is what was opened and checked.
            if let Some(path) = &s.stdout {
                self.credentials.give(stdio.stdout(), path)?;
            }
            if let Some(path) = &s.stderr {
                self.credentials.give(stdio.stderr(), path)?;
            }
            stdio.redirect()?;
            // What lacks close-on-exec here, but `keep_fds`, is the daemon's to close: std opens
            // everything with close-on-exec, the crate's own descriptors have it (the sockets
            // adopted from a service manager are given it as they are adopted), and a program
            // that owns one without it must name it in `keep_fds` (`DaemonBuilder::keep_fds`
            // says so).
            match inherited {
                // SAFETY: see above.
                Ok(fds) => unsafe { close_listed_fds(&fds, &s.keep_fds) },
                // SAFETY: see above.
                Err(_) => unsafe { close_inherited_fds(&s.keep_fds) }?,
            }
        }
        self.credentials.apply()?;
        Ok(Taken {
            lock,
            listeners,
            handover,
        })
    }

    /// Catch the signals, then write the pid: a `stop` that reads it always finds a daemon that
    /// stops gracefully. `reset` clears what the process inherited (detached, or a child).
    fn catch(
        &self,
        mut lock: Option<PidfileLock>,
        listeners: Listeners,
        notifier: Option<Notifier>,
        reset: bool,
        reopen_logs: bool,
    ) -> Result<Prepared, Error> {
        let ctl = Ctl::notifying(notifier, watchdog_period().map(|period| period / 2))
            .map_err(|e| Error::Sys {
                call: "pipe",
                source: e,
            })?
            .with_listeners(listeners);
        let reload = Reload {
            notifier: ctl.lifecycle().notifier(),
            logs: reopen_logs.then(|| self.logs()),
        };
        let signals = catch_signals(&self.handlers, ctl.lifecycle(), reset, &reload)?;
        if let Some(lock) = lock.as_mut() {
            lock.write_pid()?;
        }
        Ok(Prepared {
            lock,
            signals,
            ctl,
            reload,
        })
    }
}

impl Child for Engine {
    fn run_child(&self, report: Reporter, detached: bool, listeners: &Listeners) -> i32 {
        // Its own process group, so that `stop_children` ends the body's children, never the
        // supervisor; signals come through the supervisor.
        let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        // The body's process must never unwind into the supervisor's code, a copy of which it is.
        let served = catch_unwind(AssertUnwindSafe(|| {
            let listeners = listeners.duplicate().map_err(|e| Error::Sys {
                call: "dup",
                source: e,
            })?;
            self.serve_body(
                None,
                listeners,
                Handover::None,
                Some(report),
                None,
                true,
                detached,
            )
        }));
        i32::from(!matches!(served, Ok(Ok(()))))
    }
}

fn default_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "daemon".to_string())
}
