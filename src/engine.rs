//! What runs inside the daemon, detached or in the foreground: take the pidfile, set up stdio,
//! credentials and signals, report ready, run the body, run the stop handlers, remove the
//! pidfile.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Pid, chdir, getpgrp};

use crate::body::Body;
use crate::ctl::{Ctl, Lifecycle};
use crate::detach::{Reporter, close_inherited_fds, close_listed_fds, redirect_stdio};
use crate::error::Error;
use crate::log::Log;
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
    handlers: Arc<Mutex<Handlers>>,
}

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
        handlers: Handlers,
    ) -> Engine {
        let name = settings.name.clone().unwrap_or_else(default_name);
        Engine {
            settings,
            credentials,
            log: Log::new(&name),
            name,
            body: Mutex::new(body),
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

    /// The daemon's side of `start()`: serve, then leave the process, never returning into the
    /// caller's code (the daemon is a copy of the caller, and would go on running it).
    pub(crate) fn serve_detached(
        &self,
        reporter: Reporter,
        inherited: Result<Vec<RawFd>, Error>,
    ) -> ! {
        let served = catch_unwind(AssertUnwindSafe(|| {
            self.serve(Launch::Detached(reporter, inherited))
        }));
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

    /// The engine, in the daemon or in the foreground: take the pidfile, catch signals, report,
    /// run the body, run the stop handlers, remove the pidfile.
    pub(crate) fn serve(&self, launch: Launch) -> Result<(), Error> {
        let (mut reporter, inherited) = match launch {
            Launch::Detached(reporter, inherited) => (Some(reporter), Some(inherited)),
            Launch::Foreground => (None, None),
        };
        let detached = inherited.is_some();
        let Prepared {
            lock,
            signals,
            ctl,
            reload,
        } = match self.prepare(inherited) {
            Ok(prepared) => prepared,
            Err(error) => {
                if let Some(reporter) = reporter.as_mut() {
                    reporter.fail(&error);
                }
                return Err(error);
            }
        };
        let lifecycle = ctl.lifecycle();
        // Ready only once everything the daemon needs exists, the control thread included: a
        // daemon that cannot spawn it fails its start instead of dying after `start()` said
        // "started".
        let control = match signals.start_control_thread(
            self.handlers.clone(),
            lifecycle.clone(),
            reload,
            self.log.clone(),
        ) {
            Ok(control) => control,
            Err(error) => {
                if let Some(reporter) = reporter.as_mut() {
                    reporter.fail(&error);
                }
                return Err(error);
            }
        };
        if let Some(reporter) = reporter {
            lifecycle.hold_reporter(reporter);
        }
        if !self.settings.manual_ready {
            lifecycle.report_ready();
        }
        // Housekeeping, not needed to serve: spawned after the report, so that a start does not
        // wait for it; a daemon that cannot spawn it runs on without.
        let lock = Arc::new(Mutex::new(lock));
        let guard = match spawn_guard(&lock, lifecycle, &self.log) {
            Ok(guard) => Some(guard),
            Err(e) => {
                self.log.log(&format!(
                    "cannot spawn the thread that watches the pidfile ({e}); going on without it"
                ));
                None
            }
        };

        let outcome = self
            .body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .run(&ctl, &self.log);
        // Whether asked to or not, the daemon is stopping now: the pidfile guard ends.
        lifecycle.request_stop(None);
        lifecycle.tell_stopping();
        // No handler may run after the pidfile is gone.
        if detached {
            control.stop_for_exit();
        } else {
            control.stop_and_restore();
        }
        let mut result = outcome.map_err(|message| {
            self.log.log(&format!("stopping: {message}"));
            Error::Body { message }
        });
        if let Some(signal) = lifecycle.stop_signal() {
            let mut handlers = self.handlers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(message) = handlers.run(signal, &self.log) {
                result = result.and(Err(Error::StopHandler { message }));
            }
        }
        if self.settings.stop_children && (detached || getpgrp() == Pid::this()) {
            stop_children(self.settings.stop_timeout / 2, &self.log);
        }
        // The guard may be taking the path again: wait for it, then it is over.
        if let Some(guard) = guard {
            let _ = guard.join();
        }
        let released = lock.lock().unwrap_or_else(PoisonError::into_inner).unlink();
        match released {
            // Once root is dropped the daemon may not be allowed to unlink root's pidfile;
            // `stop()` removes it after the exit.
            Err(e) if self.credentials.is_set() && e.is_permission_denied() => {}
            Err(e) => self.log.log(&e.to_string()),
            Ok(()) => {}
        }
        if let Some(mut reporter) = lifecycle.take_unused_reporter() {
            reporter.fail(result.as_ref().err().unwrap_or(&Error::ReturnedBeforeReady));
        }
        result
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

/// End the other processes of the daemon's process group: SIGTERM and SIGCONT, then SIGKILL for
/// those still there after `grace`. Each is pinned by a pidfd first, so a pid that is reused
/// meanwhile is never hit, and the wait is a `poll` on those pidfds.
fn stop_children(grace: Duration, log: &Log) {
    let members: Vec<(Pid, OwnedFd)> = sys::process_group_members(getpgrp())
        .into_iter()
        .filter_map(|pid| Some((pid, sys::pidfd_open(pid).ok()?)))
        .collect();
    if members.is_empty() {
        return;
    }
    for (_, pidfd) in &members {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGTERM);
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGCONT);
    }
    let fds: Vec<_> = members.iter().map(|(_, pidfd)| pidfd.as_fd()).collect();
    let left = sys::wait_all_readable(&fds, grace);
    if !left.is_empty() {
        let pids: Vec<String> = left.iter().map(|&i| members[i].0.to_string()).collect();
        log.log(&format!(
            "stopping the daemon's children: pid {} outlived SIGTERM by {grace:?}, sending SIGKILL",
            pids.join(", ")
        ));
        for &i in &left {
            let _ = sys::pidfd_send_signal(members[i].1.as_fd(), Signal::SIGKILL);
        }
    }
}

/// How often the guard looks at the pidfile's path.
const GUARD_PERIOD: Duration = Duration::from_secs(1);

/// Watch that the pidfile's path still names the locked file, until the daemon stops. A /tmp
/// cleaner or a careless `rm` may remove it, or someone replace it: the daemon would look stopped,
/// and the next `start()` would run a second instance. The guard takes the path again when it
/// is free; when another instance holds it, this one stops gracefully.
fn spawn_guard(
    lock: &Arc<Mutex<PidfileLock>>,
    lifecycle: &Arc<Lifecycle>,
    log: &Log,
) -> std::io::Result<JoinHandle<()>> {
    let (lock, lifecycle, log) = (lock.clone(), lifecycle.clone(), log.clone());
    thread::Builder::new()
        .name("daemons-pidfile".into())
        .spawn(move || {
            while !lifecycle.wait_for_stop(GUARD_PERIOD) {
                let mut lock = lock.lock().unwrap_or_else(PoisonError::into_inner);
                if lock.still_named() {
                    continue;
                }
                let path = lock.path().display().to_string();
                match lock.retake() {
                    Ok(()) => log.log(&format!(
                        "pidfile {path} no longer named this daemon's locked file (removed or replaced): taken again"
                    )),
                    Err(e @ (Error::AlreadyRunning { .. } | Error::Unverified { .. })) => {
                        log.log(&format!(
                            "pidfile {path} was taken by another process ({e}): stopping, so that two instances do not run"
                        ));
                        lifecycle.request_stop(None);
                    }
                    Err(e) => log.log(&format!(
                        "pidfile {path} no longer names this daemon's locked file and cannot be taken again: {e}"
                    )),
                }
            }
        })
}

fn default_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "daemon".to_string())
}
