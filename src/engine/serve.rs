//! Serving a daemon, from taking its process to its end: take the pidfile, stdio, descriptors
//! and credentials, catch the signals and write the pid, start the signal thread and the keeper,
//! set up, report ready, run the body (or a supervisor that runs it in a child), then end.

use std::io::IsTerminal;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::stat::{Mode, umask};
use nix::unistd::chdir;

use crate::detach::{Reporter, close_inherited_fds, close_listed_fds};
use crate::engine::body::outcome::panic_message;
use crate::engine::ctl::Ctl;
use crate::engine::ending::{Ending, Leaving, Parts};
use crate::engine::init::{self, Split};
use crate::engine::keeper;
use crate::engine::lifecycle::Lifecycle;
use crate::engine::readiness::Readiness;
use crate::engine::role::Role;
use crate::engine::signals::{CaughtSignals, Reload, catch_signals};
use crate::engine::successors::{Handover, Successors};
use crate::engine::supervise::{Child, Supervisor};
use crate::engine::watchdog::Watchdog;
use crate::engine::{Detached, Engine};
use crate::error::{Action, Error, Failure};
use crate::handover;
use crate::listen::Listeners;
use crate::pidfile::PidfileLock;
use crate::sync::lock;
use crate::sys::{self, PlainThread};
use crate::systemd::{self, Notifier, watchdog_period};

/// systemd's default start timeout (`DefaultTimeoutStartSec=`): a longer ready timeout asks the
/// manager for more time (`EXTEND_TIMEOUT_USEC=`).
const MANAGER_START_TIMEOUT: Duration = Duration::from_secs(90);

/// What [`Engine::take_process`] got: the pidfile, the listening sockets, and the instance's
/// part in restarts.
struct Taken {
    lock: PidfileLock,
    listeners: Listeners,
    handover: Handover,
}

/// What [`Engine::catch`] hands to [`Engine::begin`].
struct Prepared {
    pidfile: Option<PidfileLock>,
    signals: CaughtSignals,
    ctl: Ctl,
    lifecycle: Arc<Lifecycle>,
    readiness: Arc<Readiness>,
    listeners: Arc<Listeners>,
    reload: Reload,
}

/// What [`Engine::begin`] hands back: the daemon's end, the body's `Ctl`, readiness, and the
/// keeper.
struct Begun {
    ending: Arc<Ending>,
    ctl: Ctl,
    readiness: Arc<Readiness>,
    keeper: PlainThread,
}

impl Engine {
    /// The daemon's side of `start()`'s fork: serve, then leave the process, never returning
    /// into the caller's code (the daemon is a copy of the caller, and would go on running it).
    pub(crate) fn serve_detached(&self, detached: Detached) -> ! {
        let served = catch_unwind(AssertUnwindSafe(|| self.serve(Some(detached))));
        let code = match served {
            Ok(Ok(())) => 0,
            Ok(Err(_)) | Err(_) => 1,
        };
        Role::Detached.leave(code)
    }

    /// `run()`: serve in the calling process. As PID 1 of a pid namespace, an init stays behind
    /// and the daemon runs as its child (see `init.rs`).
    pub(crate) fn serve_in_foreground(&self) -> Result<(), Error> {
        // The daemon proper, here or under a PID 1 that reaps for it: the caller's code goes on
        // in it after `run()`, as it would without the split.
        if let Split::Unsplit(why) = init::split()? {
            self.log.warn(&format!(
                "running as PID 1 without an init of its own ({why}): orphans of this pid namespace are not reaped (run it under tini, or `docker run --init`)"
            ));
        }
        self.serve(None)
    }

    /// The engine, detached (`detached`) or in the foreground: take the process, then serve the
    /// body here, or run a supervisor that serves it in a child.
    fn serve(&self, detached: Option<Detached>) -> Result<(), Error> {
        let role = match detached {
            Some(_) => Role::Detached,
            None => Role::Foreground,
        };
        let (mut reporter, inherited, successor) = match detached {
            Some(d) => (Some(d.reporter), Some(d.inherited), d.successor),
            None => (None, None, false),
        };
        let ready_fd = match systemd::ready_fd(self.settings.notify_fd) {
            Ok(fd) => fd,
            Err(reason) => {
                let error = Error::InvalidSetting {
                    setting: "notify_fd",
                    reason,
                };
                if let Some(reporter) = reporter.as_mut() {
                    reporter.fail(&error);
                }
                return Err(error);
            }
        };
        let notifier = Notifier::new(ready_fd).unwrap_or_else(|e| {
            self.log
                .warn(&format!("NOTIFY_SOCKET is set but unusable: {e}"));
            None
        });
        // A set-up allowed longer than systemd's default start timeout (90 s) asks for it.
        if self.settings.ready_timeout > MANAGER_START_TIMEOUT
            && let Some(notifier) = &notifier
        {
            let _ = notifier.extend_start(self.settings.ready_timeout);
        }
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
                if let Some(notifier) = &notifier {
                    let _ = notifier.failed(&error);
                }
                return Err(error);
            }
        };
        if let Some(notifier) = &notifier {
            match listeners.bound_for_store() {
                Ok(sockets) => notifier.store_when_ready(sockets),
                Err(e) => self.log.warn(&format!(
                    "cannot keep the listening sockets in the service manager's store ({e}): a restart will bind them again"
                )),
            }
        }
        if let Some(policy) = self.settings.supervision {
            drop(handover);
            let supervisor = Supervisor {
                policy,
                lock,
                listeners,
                log: &self.log,
                role,
                logs: self.logs(),
                forwarded: self.forwarded_signals(),
            };
            return supervisor.supervise(self, reporter, notifier);
        }
        self.serve_body(Some(lock), listeners, handover, reporter, notifier, role)
    }

    /// Everything from catching the signals on, in the process that runs the body: the daemon
    /// itself (with its `pidfile`), or a supervised child (no pidfile; `reporter` is its
    /// parent, who also hears why it ended).
    fn serve_body(
        &self,
        pidfile: Option<PidfileLock>,
        listeners: Listeners,
        handover: Handover,
        mut reporter: Option<Reporter>,
        notifier: Option<Notifier>,
        role: Role,
    ) -> Result<(), Error> {
        let started = self
            .catch(pidfile, listeners, notifier, role)
            .and_then(|prepared| self.begin(prepared, handover, role));
        let Begun {
            ending,
            ctl,
            readiness,
            keeper,
        } = match started {
            Ok(started) => started,
            Err(error) => {
                if let Some(reporter) = reporter.as_mut() {
                    reporter.fail(&error);
                }
                if !matches!(role, Role::SupervisedChild { .. })
                    && let Ok(Some(notifier)) = Notifier::from_env()
                {
                    let _ = notifier.failed(&error);
                }
                return Err(error);
            }
        };
        if let Some(reporter) = reporter {
            readiness.wait_for_it(reporter, role);
        }
        if !self.settings.manual_ready {
            readiness.report();
        }

        let outcome = lock(&self.body).drive(&ctl, &self.log, &self.settings);
        let Some(result) = ending.body_returned(outcome) else {
            // The keeper abandoned the body and is ending the process: it must finish first.
            loop {
                thread::park();
            }
        };
        // A process of its own leaves with `_exit` now, and the keeper can do nothing any more
        // (the end is claimed, the pidfile let go of): waiting for it would only cost the stop
        // two context switches. A foreground caller goes on, so there it is joined.
        if !role.owns_process() {
            keeper.join();
        }
        result
    }

    /// Everything that must exist before the daemon is ready, after `catch`: the signal thread,
    /// the keeper, and the user's set-up. A daemon that cannot have them fails its start instead
    /// of dying after `start()` said "started".
    fn begin(&self, prepared: Prepared, handover: Handover, role: Role) -> Result<Begun, Error> {
        let signals = prepared.signals.start_thread(
            self.handlers.clone(),
            prepared.lifecycle.clone(),
            prepared.reload,
            self.log.clone(),
        )?;
        let s = &self.settings;
        let ending = Ending::new(Parts {
            lifecycle: prepared.lifecycle,
            readiness: prepared.readiness.clone(),
            signals,
            pidfile: prepared.pidfile,
            successors: Successors::new(prepared.listeners, s.ready_timeout, self.log.clone()),
            leaving: Leaving {
                role,
                stop_children: s.stop_children.then(|| s.stop_timeout / 2),
                dropped_privileges: self.credentials.is_set(),
            },
            log: self.log.clone(),
        });
        // Each ping of the body marks the pidfile, for the `health` check: the end holds it.
        if let Some(watchdog) = ending.lifecycle().watchdog() {
            let end = Arc::downgrade(&ending);
            watchdog.on_ping(move || {
                if let Some(end) = end.upgrade() {
                    end.mark_alive();
                }
            });
        }
        let wrapped = lock(&self.body).is_wrapped();
        let grace = if wrapped {
            Duration::ZERO
        } else {
            self.grace()
        };
        // The keeper exists before ready: a daemon whose pidfile nobody guards, or whose body
        // nobody abandons when it ignores a stop (a wrapped function can only be stopped that
        // way), would break what `start()` promises. It fails the start instead.
        let keeper = keeper::spawn(&ending, grace, wrapped).map_err(|e| Error::Sys {
            call: "spawn the keeper thread",
            source: e,
        });
        let keeper = keeper.and_then(|keeper| self.set_up().map(|()| keeper));
        // A successor takes over last, once nothing else can fail: until then the instance that
        // runs keeps serving and holding its pidfile, and a failed successor leaves it as it was
        // (dropping the takeover gives it up). Only then does it offer its sockets to its own
        // successor. A first instance offers from now on.
        let successors = ending.successors();
        let keeper = match handover {
            Handover::Takeover(takeover) => keeper.and_then(|keeper| {
                // A service manager that follows a new main process (systemd's `Type=notify`
                // with `NotifyAccess=all`) must hear of it before the running instance stops,
                // or that exit ends the service; READY=1 follows once this one is ready. If the
                // takeover fails, the running instance is the main process again.
                let notifier = ending.lifecycle().notifier();
                let predecessor = takeover.predecessor_pid();
                if let Some(notifier) = &notifier {
                    let _ = notifier.send(&format!("MAINPID={}", std::process::id()));
                }
                successors
                    .take_over(ending.pidfile(), takeover)
                    .inspect_err(|_| {
                        if let (Some(notifier), Some(pid)) = (&notifier, predecessor) {
                            let _ = notifier.send(&format!("MAINPID={pid}"));
                        }
                    })
                    .map(|()| keeper)
            }),
            Handover::Offer(Ok(offer)) => {
                if keeper.is_ok() {
                    successors.offer(offer);
                }
                keeper
            }
            Handover::Offer(Err(e)) => {
                self.log.warn(&format!(
                    "cannot offer the listening sockets to a successor ({e}): a restart will stop, then start"
                ));
                keeper
            }
            Handover::None => keeper,
        };
        let keeper = match keeper {
            Ok(keeper) => keeper,
            Err(error) => {
                // Nothing is left behind: the signal thread and the keeper end (no body to wait
                // for), the pidfile goes; no stop handler runs, as nothing was started.
                ending.never_started();
                return Err(error);
            }
        };
        Ok(Begun {
            ending,
            ctl: prepared.ctl,
            readiness: prepared.readiness,
            keeper,
        })
    }

    /// Run the user's set-up, once the daemon is detached and before it is ready.
    fn set_up(&self) -> Result<(), Error> {
        let mut setup = lock(&self.setup);
        let Some(setup) = setup.as_mut() else {
            return Ok(());
        };
        match catch_unwind(AssertUnwindSafe(setup)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::Setup { source }),
            Err(panic) => Err(Error::Setup {
                source: Failure::panicked(&panic_message(&*panic)),
            }),
        }
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
                    Action::ChangeDirectory,
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
            let handover = match s.hands_over() {
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
        self.install_logger();
        Ok(Taken {
            lock,
            listeners,
            handover,
        })
    }

    /// Run the user's logger once, with `NO_COLOR=1` while it runs where stderr is not a
    /// terminal (a log file, the journal), so that no ANSI code reaches a file. The variable is
    /// set only in a process of one thread (a daemon is one here; a program that calls `run()`
    /// after starting threads keeps its environment as it is), and put back as it was.
    fn install_logger(&self) {
        let Some(logger) = lock(&self.logger).take() else {
            return;
        };
        let colourless = !std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none()
            && sys::thread_count() == Some(1);
        if colourless {
            // SAFETY: this process runs one thread (counted just above), so no other thread
            // reads the environment while it changes.
            unsafe { std::env::set_var("NO_COLOR", "1") };
        }
        logger();
        // A logger that started a thread keeps `NO_COLOR` set: changing the environment under
        // another thread is not safe, and the variable only keeps colours out of a file.
        if colourless && sys::thread_count() == Some(1) {
            // SAFETY: this process still runs one thread (counted just above).
            unsafe { std::env::remove_var("NO_COLOR") };
        }
    }

    /// Catch the signals, then write the pid: a `stop` that reads it always finds a daemon that
    /// stops gracefully.
    fn catch(
        &self,
        mut pidfile: Option<PidfileLock>,
        listeners: Listeners,
        notifier: Option<Notifier>,
        role: Role,
    ) -> Result<Prepared, Error> {
        let notifier = notifier.map(Arc::new);
        let readiness = Arc::new(Readiness::new(notifier.clone()));
        // A supervised child's pings go to its supervisor, which the service manager knows as
        // its main process: the child pings at the period that the manager asked of it.
        let supervised = matches!(role, Role::SupervisedChild { .. });
        let manager_period = match supervised {
            true => systemd::watchdog_period_for(nix::unistd::getppid().as_raw() as u32),
            false => watchdog_period(),
        };
        let period = manager_period.map_or(self.settings.health_period, |p| {
            p.min(self.settings.health_period)
        });
        let watchdog = Watchdog::new(
            period / 2,
            notifier.clone().filter(|_| manager_period.is_some()),
            supervised.then(|| readiness.clone()),
        );
        let lifecycle = Lifecycle::new(notifier, Some(watchdog)).map_err(|e| Error::Sys {
            call: "pipe",
            source: e,
        })?;
        let listeners = Arc::new(listeners);
        let ctl = Ctl::new(lifecycle.clone(), readiness.clone(), listeners.clone());
        let reload = Reload {
            notifier: lifecycle.notifier(),
            logs: role.has_log_files().then(|| self.logs()),
            supervisor: supervised.then(|| readiness.clone()),
        };
        let signals = catch_signals(&self.handlers, &lifecycle, role, &reload)?;
        if let Some(pidfile) = pidfile.as_mut() {
            pidfile.write_pid()?;
        }
        Ok(Prepared {
            pidfile,
            signals,
            ctl,
            lifecycle,
            readiness,
            listeners,
            reload,
        })
    }
}

impl Child for Engine {
    fn serve_child(&self, report: Reporter, role: Role, listeners: &Listeners) -> i32 {
        // Its own process group, so that `stop_children` ends the body's children, never the
        // supervisor; signals come through the supervisor.
        let _ = crate::sys::own_process_group();
        // The body's process must never unwind into the supervisor's code, a copy of which it is.
        let served = catch_unwind(AssertUnwindSafe(|| {
            let listeners = listeners.duplicate().map_err(|e| Error::Sys {
                call: "dup",
                source: e,
            })?;
            self.serve_body(None, listeners, Handover::None, Some(report), None, role)
        }));
        i32::from(!matches!(served, Ok(Ok(()))))
    }
}
