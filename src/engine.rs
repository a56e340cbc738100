//! What runs inside the daemon, detached or in the foreground: take the pidfile, set up stdio,
//! credentials and signals, report ready, run the body, run the stop handlers, remove the
//! pidfile.

use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::stat::{Mode, umask};
use nix::unistd::chdir;

use crate::body::Body;
use crate::ctl::Ctl;
use crate::detach::{Reporter, close_inherited_fds, close_listed_fds, redirect_stdio};
use crate::ending::{Ended, Ending, Parts};
use crate::error::Error;
use crate::log::Log;
use crate::outcome::panic_message;
use crate::pidfile::{Pidfile, PidfileLock};
use crate::privileges::Credentials;
use crate::settings::Settings;
use crate::signals::{CaughtSignals, Handlers, Reload, catch_signals};
use crate::sys;
use crate::systemd::{Notifier, watchdog_period};

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
    Detached(Reporter, Result<Vec<RawFd>, Error>),
    /// `run()`: the same engine in the calling process, nothing forked or redirected.
    Foreground,
}

/// What [`Engine::prepare`] hands to [`Engine::serve`].
struct Prepared {
    lock: PidfileLock,
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

    pub(crate) fn pidfile(&self) -> Pidfile {
        Pidfile::new(&self.settings.pidfile)
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
    /// report, run the body, then end (stop handlers, pidfile).
    pub(crate) fn serve(&self, launch: Launch) -> Result<(), Error> {
        let (mut reporter, inherited) = match launch {
            Launch::Detached(reporter, inherited) => (Some(reporter), Some(inherited)),
            Launch::Foreground => (None, None),
        };
        let detached = inherited.is_some();
        let started = self
            .prepare(inherited)
            .and_then(|prepared| self.begin(prepared, detached));
        let (ending, ctl, keeper) = match started {
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
        let _ = keeper.join();
        result
    }

    /// Everything that must exist before the daemon is ready, after `prepare`: the control
    /// thread, the keeper, and the user's set-up. A daemon that cannot have them fails its start
    /// instead of dying after `start()` said "started".
    fn begin(
        &self,
        prepared: Prepared,
        detached: bool,
    ) -> Result<(Arc<Ending>, Ctl, JoinHandle<()>), Error> {
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
            log: self.log.clone(),
            detached,
            stop_children: s.stop_children.then(|| s.stop_timeout / 2),
            dropped_privileges: self.credentials.is_set(),
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
        let keeper = ending.spawn_keeper(grace, wrapped).map_err(|e| Error::Sys {
            call: "spawn the keeper thread",
            source: e,
        });
        let keeper = match keeper.and_then(|keeper| self.set_up().map(|()| keeper)) {
            Ok(keeper) => keeper,
            Err(error) => {
                // Nothing is left behind: the control thread and the keeper end, the pidfile
                // goes; no stop handler runs, as nothing was started.
                if ending.begin() {
                    let _ = ending.finish(Ended::Returned(Ok(())));
                }
                return Err(error);
            }
        };
        Ok((ending, ctl, keeper))
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

    /// Everything before the body runs. On failure, the pidfile (if taken) is already removed.
    /// `inherited` is there when detached: the descriptors to close.
    fn prepare(&self, inherited: Option<Result<Vec<RawFd>, Error>>) -> Result<Prepared, Error> {
        let s = &self.settings;
        let detached = inherited.is_some();
        if detached {
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
        // From here on, an early return drops `lock`, which removes the pidfile. The pid is
        // written once the stop signals are caught.
        let mut lock = self.pidfile().lock()?;
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            self.log
                .log(&format!("NOTIFY_SOCKET is set but unusable: {e}"));
            None
        });
        let ctl =
            Ctl::notifying(notifier, watchdog_period().map(|period| period / 2)).map_err(|e| {
                Error::Sys {
                    call: "pipe",
                    source: e,
                }
            })?;
        let reload = Reload {
            notifier: ctl.lifecycle().notifier(),
            logs: detached.then(|| (s.stdout.clone(), s.stderr.clone())),
        };
        if let Some(inherited) = inherited {
            redirect_stdio(s.stdout.as_deref(), s.stderr.as_deref())?;
            match inherited {
                Ok(fds) => close_listed_fds(&fds, &s.keep_fds),
                Err(_) => close_inherited_fds(&s.keep_fds)?,
            }
            // The logs are the daemon's: once it is no longer root it must still be able to
            // reopen them after a rotation.
            for log in [&s.stdout, &s.stderr].into_iter().flatten() {
                self.credentials.give(log)?;
            }
        }
        self.credentials.apply()?;
        let signals = catch_signals(&self.handlers, ctl.lifecycle(), detached, &reload)?;
        lock.write_pid()?;
        Ok(Prepared {
            lock,
            signals,
            ctl,
            reload,
        })
    }
}

fn default_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "daemon".to_string())
}
