//! The user's signal handlers: any number for each signal, called in the order they were given,
//! never in signal context (the signal thread calls them, or the end of the daemon for a stop
//! signal's), so that they may allocate, lock and log.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::Signal;

use crate::engine::body::outcome::panic_message;
use crate::engine::log::Log;
use crate::error::{Failure, UserError, chain_text};

/// The signals that stop a daemon. SIGHUP is not one of them: it asks for a reload, and a daemon
/// that has no SIGHUP handler ignores it rather than dying with a stale pidfile.
pub(in crate::engine) const STOP_SIGNALS: [Signal; 3] =
    [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

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

/// A hook that runs at the end of the daemon's body (`on_stop`).
pub(crate) struct StopHook(Box<dyn FnMut() -> Result<(), UserError> + Send>);

impl StopHook {
    pub(crate) fn new(f: impl FnMut() -> Result<(), UserError> + Send + 'static) -> StopHook {
        StopHook(Box::new(f))
    }
}

impl fmt::Debug for StopHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StopHook(..)")
    }
}

/// Every handler, by signal, in registration order, and the stop hooks.
#[derive(Debug, Default)]
pub(crate) struct Handlers {
    table: Vec<(Signal, Vec<Handler>)>,
    on_stop: Vec<StopHook>,
}

impl Handlers {
    pub(crate) fn add(&mut self, signal: Signal, handler: Handler) {
        match self.table.iter_mut().find(|(s, _)| *s == signal) {
            Some((_, list)) => list.push(handler),
            None => self.table.push((signal, vec![handler])),
        }
    }

    pub(crate) fn add_on_stop(&mut self, hook: StopHook) {
        self.on_stop.push(hook);
    }

    pub(in crate::engine) fn signals(&self) -> impl Iterator<Item = Signal> + '_ {
        self.table.iter().map(|(s, _)| *s)
    }

    /// Call `signal`'s handlers in order. A panicking handler is logged and the next one runs;
    /// the first panic is returned.
    pub(in crate::engine) fn call(&mut self, signal: Signal, log: &Log) -> Result<(), UserError> {
        let mut first_failure = None;
        let Some((_, list)) = self.table.iter_mut().find(|(s, _)| *s == signal) else {
            return Ok(());
        };
        for handler in list {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (handler.0)())) {
                let message = format!("a {signal} handler panicked: {}", panic_message(&*panic));
                log.error(&message);
                first_failure.get_or_insert(message);
            }
        }
        first_failure.map_or(Ok(()), |message| Err(Failure::text(message)))
    }

    /// Call the stop hooks in order. One that fails or panics is logged and the next one runs;
    /// the first failure is returned.
    pub(in crate::engine) fn call_on_stop(&mut self, log: &Log) -> Result<(), UserError> {
        let mut first_failure = None;
        for hook in &mut self.on_stop {
            let failure = match catch_unwind(AssertUnwindSafe(|| (hook.0)())) {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => {
                    log.error(&format!("a stop hook failed: {}", chain_text(&*error)));
                    error
                }
                Err(panic) => {
                    let message = format!("a stop hook panicked: {}", panic_message(&*panic));
                    log.error(&message);
                    Failure::text(message)
                }
            };
            first_failure.get_or_insert(failure);
        }
        first_failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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
        let result = handlers.call(Signal::SIGHUP, &log);
        assert_eq!(*seen.lock().expect("seen"), vec![0, 1, 2]);
        assert_eq!(
            result.unwrap_err().to_string(),
            "a SIGHUP handler panicked: handler 1 fails"
        );
        assert_eq!(logged.lock().expect("log").len(), 1);
        assert!(handlers.call(Signal::SIGUSR1, &log).is_ok());
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
