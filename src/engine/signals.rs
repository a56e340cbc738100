//! Signals: handlers run on a control thread, never in signal context.
//!
//! signal-hook's handler only writes the signal number to a pipe; a control thread reads it and
//! calls the user's closures, one at a time, in registration order. They may therefore allocate,
//! lock and log like any other code. The stop signals (SIGTERM, SIGINT, SIGQUIT) only ask the body
//! to stop; their own handlers run once, on the main thread, after the body has finished.
//!
//! The kernel coalesces a signal that arrives while the same one is still pending, so a burst of
//! 10,000 SIGHUPs runs the SIGHUP handlers far fewer times: a handler learns that the signal came,
//! not how often.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use signal_hook::SigId;
use signal_hook::iterator::{Handle, Signals};

use crate::detach::{Logs, reset_signals};
use crate::engine::body::outcome::panic_message;
use crate::engine::ctl::Lifecycle;
use crate::engine::log::Log;
use crate::error::Error;
use crate::systemd::Notifier;

/// The signals that stop a daemon. SIGHUP is not one of them: it asks for a reload, and a daemon
/// that has no SIGHUP handler ignores it rather than dying with a stale pidfile.
pub(crate) const STOP_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

/// Signals whose handlers the builder refuses: SIGKILL and SIGSTOP cannot be caught, and catching
/// SIGSEGV, SIGILL or SIGFPE would resume the faulting instruction forever (signal-hook refuses
/// them for the same reason).
pub(crate) fn is_forbidden(signal: Signal) -> bool {
    signal_hook::consts::FORBIDDEN.contains(&(signal as i32))
}

/// A user's signal handler.
pub(crate) struct Handler(Box<dyn FnMut() + Send>);

impl Handler {
    pub(crate) fn new(f: impl FnMut() + Send + 'static) -> Handler {
        Handler(Box::new(f))
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handler(..)")
    }
}

/// Every handler, by signal, in registration order.
#[derive(Debug, Default)]
pub(crate) struct Handlers {
    table: Vec<(Signal, Vec<Handler>)>,
}

impl Handlers {
    pub(crate) fn add(&mut self, signal: Signal, handler: Handler) {
        match self.table.iter_mut().find(|(s, _)| *s == signal) {
            Some((_, list)) => list.push(handler),
            None => self.table.push((signal, vec![handler])),
        }
    }

    pub(crate) fn signals(&self) -> impl Iterator<Item = Signal> + '_ {
        self.table.iter().map(|(s, _)| *s)
    }

    /// Run `signal`'s handlers in order. A panicking handler is logged and the next one runs;
    /// the first panic's message is returned.
    pub(crate) fn run(&mut self, signal: Signal, log: &Log) -> Result<(), String> {
        let mut first_failure = None;
        let Some((_, list)) = self.table.iter_mut().find(|(s, _)| *s == signal) else {
            return Ok(());
        };
        for handler in list {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (handler.0)())) {
                let message = format!("a {signal} handler panicked: {}", panic_message(&*panic));
                log.log(&message);
                first_failure.get_or_insert(message);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

/// What a SIGHUP does before and after its handlers: tell the service manager, and reopen the
/// log files so that a rotated log is let go of.
pub(crate) struct Reload {
    pub(crate) notifier: Option<Arc<Notifier>>,
    /// The stdout and stderr files, when the daemon is detached.
    pub(crate) logs: Option<Logs>,
}

impl Reload {
    /// Whether a SIGHUP does anything besides running its handlers.
    pub(crate) fn is_idle(&self) -> bool {
        self.notifier.is_none() && self.logs.as_ref().is_none_or(Logs::is_none)
    }

    fn begin(&self, log: &Log) {
        if let Some(notifier) = &self.notifier {
            let _ = notifier.reloading();
        }
        if let Some(logs) = &self.logs
            && !logs.is_none()
            && let Err(e) = logs.reopen()
        {
            log.log(&format!("keeping the old log files: {e}"));
        }
    }

    fn end(&self) {
        if let Some(notifier) = &self.notifier {
            let _ = notifier.send("READY=1");
        }
    }
}

/// The running control thread, if the daemon has one, and the signal actions installed.
pub(crate) struct ControlThread {
    handle: Option<Handle>,
    thread: Option<JoinHandle<Signals>>,
    actions: Vec<SigId>,
    /// The signal whose handlers run now, and since when: a stop that has to wait for them
    /// says so.
    busy: Arc<Mutex<Option<(Signal, Instant)>>>,
    /// Told when the thread ends, so that the wait for it can have a timeout.
    ended: Option<mpsc::Receiver<()>>,
    log: Log,
}

/// How long a stop waits for a handler in silence before it logs that it is waiting.
const PATIENCE: Duration = Duration::from_secs(1);

/// The signals caught, before the control thread runs: what arrives meanwhile waits in
/// signal-hook's pipe. Without `signals`, no signal has work for a control thread.
pub(crate) struct CaughtSignals {
    signals: Option<Signals>,
    actions: Vec<SigId>,
}

/// Catch the stop signals, SIGHUP and every signal that has handlers. With `reset`, every other
/// signal's disposition goes back to its default and the mask is cleared (the daemon(7) steps),
/// after our handlers are in place so that no stop signal can slip in between.
///
/// A stop signal asks the body to stop from the signal handler itself, so that a sleeping body
/// wakes at once instead of after two hops through the control thread. When no other signal has
/// work to do (no handlers, and a SIGHUP that `reload` would not act on), there is no control
/// thread at all: SIGHUP is caught by an action that does nothing, so that it neither kills the
/// daemon nor stays ignored in the programs it executes. A thread costs its spawn at start, a
/// join at stop, and a larger teardown at exit.
pub(crate) fn catch_signals(
    handlers: &Mutex<Handlers>,
    lifecycle: &Arc<Lifecycle>,
    reset: bool,
    reload: &Reload,
) -> Result<CaughtSignals, Error> {
    let mut caught: Vec<Signal> = STOP_SIGNALS.to_vec();
    caught.push(Signal::SIGHUP);
    let registered: Vec<Signal> = handlers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .signals()
        .collect();
    let listening = !reload.is_idle()
        || registered
            .iter()
            .any(|signal| !STOP_SIGNALS.contains(signal));
    for signal in registered {
        if !caught.contains(&signal) {
            caught.push(signal);
        }
    }
    let install_failed = |e| Error::Sys {
        call: "install signal handlers",
        source: e,
    };
    let mut actions = Vec::new();
    let signals = if listening {
        Some(Signals::new(caught.iter().map(|&s| s as i32)).map_err(install_failed)?)
    } else {
        for signal in caught.iter().filter(|s| !STOP_SIGNALS.contains(s)) {
            // A flag that nobody reads: the safe way to install an action that does nothing.
            let id = signal_hook::flag::register(*signal as i32, Arc::new(AtomicBool::new(false)))
                .map_err(install_failed)?;
            actions.push(id);
        }
        None
    };
    for signal in STOP_SIGNALS {
        let lifecycle = lifecycle.clone();
        // SAFETY: the action only does atomic operations and one write(2) on a descriptor that
        // `lifecycle` keeps open (`Lifecycle::request_stop`), all async-signal-safe; it allocates,
        // locks and panics nowhere.
        let id = unsafe {
            signal_hook::low_level::register(signal as i32, move || {
                lifecycle.request_stop(Some(signal))
            })
        }
        .map_err(install_failed)?;
        actions.push(id);
    }
    if reset {
        // Before the control thread exists: it inherits the mask of the thread that spawns it.
        reset_signals(&caught)?;
    }
    Ok(CaughtSignals { signals, actions })
}

impl CaughtSignals {
    /// Start the control thread, if there is work for one. It ends at the first stop signal:
    /// the body is asked to stop, and nothing else may run during the shutdown.
    pub(crate) fn start_control_thread(
        self,
        handlers: Arc<Mutex<Handlers>>,
        lifecycle: Arc<Lifecycle>,
        reload: Reload,
        log: Log,
    ) -> Result<ControlThread, Error> {
        let actions = self.actions;
        let busy = Arc::new(Mutex::new(None));
        let Some(mut signals) = self.signals else {
            return Ok(ControlThread {
                handle: None,
                thread: None,
                actions,
                busy,
                ended: None,
                log,
            });
        };
        let handle = signals.handle();
        let (tell_ended, ended) = mpsc::channel();
        let (running, thread_log) = (busy.clone(), log.clone());
        let thread = thread::Builder::new()
            .name("daemons-signals".into())
            .spawn(move || {
                let log = thread_log;
                for raw in signals.forever() {
                    let Ok(signal) = Signal::try_from(raw) else {
                        continue;
                    };
                    if STOP_SIGNALS.contains(&signal) {
                        // The signal handler has asked the body to stop already.
                        lifecycle.tell_stopping();
                        break;
                    }
                    let hup = signal == Signal::SIGHUP;
                    if hup {
                        reload.begin(&log);
                    }
                    *lock(&running) = Some((signal, Instant::now()));
                    let _ = lock(&handlers).run(signal, &log);
                    *lock(&running) = None;
                    if hup {
                        reload.end();
                    }
                }
                let _ = tell_ended.send(());
                // Handed back rather than dropped here: closing the listener writes to this
                // socket, which must still have a reader.
                signals
            })
            .map_err(|e| Error::Sys {
                call: "spawn the control thread",
                source: e,
            })?;
        Ok(ControlThread {
            handle: Some(handle),
            thread: Some(thread),
            actions,
            busy,
            ended: Some(ended),
            log,
        })
    }
}

impl ControlThread {
    /// Stop listening and wait for the control thread, so that no handler runs after this.
    /// The signals stay caught (and ignored) until the process exits.
    pub(crate) fn stop_for_exit(self) {
        if let Some(signals) = self.join() {
            // Unregistering takes signal-hook's global lock once per signal, for nothing: the
            // process is about to exit.
            std::mem::forget(signals);
        }
    }

    /// Stop listening and give the signals back to their previous handling, for a process that
    /// goes on after the daemon (`run()` in the foreground).
    pub(crate) fn stop_and_restore(mut self) {
        for id in self.actions.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        drop(self.join());
    }

    fn join(mut self) -> Option<Signals> {
        if let Some(handle) = &self.handle {
            handle.close();
        }
        // A handler that never returns keeps the stop handlers from running, and the daemon is
        // then killed at the stop timeout: the log says why.
        if let Some(ended) = &self.ended
            && ended.recv_timeout(PATIENCE) == Err(mpsc::RecvTimeoutError::Timeout)
            && let Some((signal, since)) = *lock(&self.busy)
        {
            self.log.log(&format!(
                "stopping: a {signal} handler has been running for {:.1} s; the stop handlers wait for it to return",
                since.elapsed().as_secs_f64()
            ));
        }
        self.thread.take().and_then(|thread| thread.join().ok())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked while another held the lock left nothing half-done in it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_run_in_order_and_survive_panics() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut handlers = Handlers::default();
        for n in 0..3 {
            let seen = seen.clone();
            handlers.add(
                Signal::SIGHUP,
                Handler::new(move || {
                    seen.lock().expect("seen").push(n);
                    if n == 1 {
                        panic!("handler {n} fails");
                    }
                }),
            );
        }
        let logged = Arc::new(Mutex::new(Vec::new()));
        let sink = logged.clone();
        let log = Log::to(move |m| sink.lock().expect("log").push(m.to_owned()));
        let result = handlers.run(Signal::SIGHUP, &log);
        assert_eq!(*seen.lock().expect("seen"), vec![0, 1, 2]);
        assert!(result.unwrap_err().contains("handler 1 fails"));
        assert_eq!(logged.lock().expect("log").len(), 1);
        assert_eq!(handlers.run(Signal::SIGUSR1, &log), Ok(()));
    }

    #[test]
    fn uncatchable_signals_are_forbidden() {
        assert!(is_forbidden(Signal::SIGKILL));
        assert!(is_forbidden(Signal::SIGSTOP));
        assert!(is_forbidden(Signal::SIGSEGV));
        assert!(!is_forbidden(Signal::SIGHUP));
        assert!(!is_forbidden(Signal::SIGTERM));
    }
}
