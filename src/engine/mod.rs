//! Inside the daemon: the engine that serves it, detached or in the foreground, supervised or
//! not. `serve.rs` takes the process (pidfile, stdio, credentials), catches the signals
//! (`signals.rs`, the user's `handlers.rs`), sets up and reports ready (`readiness.rs`), runs the
//! body (`body/`: run, step, wrap, messages, async) with its view of the daemon (`ctl.rs`, over
//! the `lifecycle.rs` and the `watchdog.rs`), and ends it (`ending.rs`), guarded meanwhile by the
//! `keeper.rs`, which also serves the `successors.rs` at a restart. `supervise.rs` runs the body
//! in a child process instead, `init.rs` splits PID 1, `log.rs` writes the daemon's own lines,
//! and `role.rs` says which process the engine runs in.
//!
//! A new body kind goes in `body/`; nothing here imports the caller's side (`handle`).

mod body;
mod ctl;
mod ending;
mod handlers;
mod init;
mod keeper;
mod lifecycle;
mod log;
mod readiness;
mod role;
mod serve;
mod signals;
mod stop_future;
mod successors;
mod supervise;
mod watchdog;

#[cfg(feature = "tokio")]
pub(crate) use body::asynchronous;
pub use body::outcome::{Fetch, Outcome};
pub(crate) use body::{Body, pool};
pub use ctl::Ctl;
pub(crate) use handlers::{Handler, Handlers, StopHook, is_forbidden};
pub(crate) use log::stderr_is_journal;
pub use stop_future::StopFuture;

use std::os::fd::RawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Signal;

use crate::detach::{Logs, Reporter};
use crate::engine::handlers::STOP_SIGNALS;
use crate::engine::log::Log;
use crate::error::{Error, UserError};
use crate::pidfile::Pidfile;
use crate::privileges::Credentials;
use crate::settings::Settings;
use crate::sync::lock;

/// A daemon's checked settings and closures: everything the engine needs to serve it.
pub(crate) struct Engine {
    settings: Settings,
    credentials: Credentials,
    name: String,
    log: Log,
    // Behind a mutex only so that the `Daemon` that keeps the engine is `Sync`: one thread runs
    // the body.
    body: Mutex<Body>,
    setup: Mutex<Option<SetupFn>>,
    logger: Mutex<Option<LoggerFn>>,
    handlers: Arc<Mutex<Handlers>>,
}

/// The user's set-up, run in the daemon before it is ready.
pub(crate) type SetupFn = Box<dyn FnMut() -> Result<(), UserError> + Send>;

/// The user's logger, installed in the daemon as soon as its stdio is the log files.
pub(crate) type LoggerFn = Box<dyn FnOnce() + Send>;

/// What `start()` hands to the daemon's side of its fork.
pub(crate) struct Detached {
    /// Where the caller of `start()` waits for the daemon's word.
    pub(crate) reporter: Reporter,
    /// The descriptors to close: those the caller listed before the fork, or, if it could not,
    /// those the daemon finds itself.
    pub(crate) inherited: Result<Vec<RawFd>, Error>,
    /// A successor at a restart: the instance that runs hands it its listening sockets and its
    /// pidfile (see `handover`).
    pub(crate) successor: bool,
}

impl Engine {
    pub(crate) fn new(
        settings: Settings,
        credentials: Credentials,
        body: Body,
        setup: Option<SetupFn>,
        logger: Option<LoggerFn>,
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
            logger: Mutex::new(logger),
            handlers: Arc::new(Mutex::new(handlers)),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
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

    /// How long a body may take to return after a stop request.
    fn grace(&self) -> Duration {
        self.settings
            .grace
            .unwrap_or(self.settings.stop_timeout / 2)
    }

    /// The signals a supervisor passes on to its child: those that stop the daemon, SIGHUP, and
    /// every one with handlers.
    fn forwarded_signals(&self) -> Vec<Signal> {
        let mut signals: Vec<Signal> = STOP_SIGNALS.to_vec();
        // SIGCONT too: `stop()` sends it after SIGTERM, for a child that was stopped.
        signals.extend([Signal::SIGHUP, Signal::SIGCONT]);
        for signal in lock(&self.handlers).signals() {
            if !signals.contains(&signal) {
                signals.push(signal);
            }
        }
        signals
    }
}

/// The program's name as it was started (`argv[0]`'s file name, as syslog and glibc's
/// `program_invocation_short_name` take it), else the executable's file name. `argv[0]` costs
/// nothing to read; the executable is a readlink of `/proc/self/exe`.
fn default_name() -> String {
    let invoked = std::env::args_os()
        .next()
        .and_then(|arg| Some(Path::new(&arg).file_name()?.to_string_lossy().into_owned()));
    invoked
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.file_name()?.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "daemon".to_string())
}
