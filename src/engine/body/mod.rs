//! The bodies: a `run` closure, a `wrap`ped function, a `step` called in a loop, or a `messages`
//! pool (threads in `pool.rs`, tasks in `asynchronous.rs`), each driven to its end by
//! [`Body::drive`]. What a closure may return is in `outcome.rs`.
//!
//! Whatever the body, the daemon stops the same way: a stop signal sets a flag and wakes every
//! [`Ctl::sleep`]; a `run` body sees [`Ctl::running`] turn false and returns; a `step` loop
//! finishes the step under way and does not start another; a pool stops fetching and drains.

#[cfg(feature = "tokio")]
pub(crate) mod asynchronous;
pub(in crate::engine) mod outcome;
pub(crate) mod pool;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::engine::body::outcome::panic_message;
use crate::engine::body::pool::{MessagesFn, PoolSize};
use crate::engine::ctl::Ctl;
use crate::engine::log::Log;
use crate::error::{Failure, UserError, chain_text};
use crate::settings::Settings;

pub(crate) type RunFn = Box<dyn FnMut(&Ctl) -> Result<(), UserError> + Send>;
pub(crate) type StepFn = Box<dyn FnMut() -> Result<(), UserError> + Send>;
pub(crate) type WrapFn = Box<dyn FnOnce() -> Result<(), UserError> + Send>;

/// The body of a daemon; the settings of its kind (`interval`, `keep_going`, `pool_size`,
/// `idle_time`) are read when it runs.
pub(crate) enum Body {
    Run(RunFn),
    /// A function that knows nothing of `ctl`: a stop abandons it. It runs once.
    Wrap(Option<WrapFn>),
    Step(StepFn),
    Messages(MessagesFn),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Body::Run(_) => "Body::Run(..)",
            Body::Wrap(_) => "Body::Wrap(..)",
            Body::Step(_) => "Body::Step(..)",
            Body::Messages(_) => "Body::Messages(..)",
        })
    }
}

impl Body {
    /// Whether a stop abandons the body at once: it cannot be asked to return.
    pub(in crate::engine) fn is_wrapped(&self) -> bool {
        matches!(self, Body::Wrap(_))
    }

    /// Drive the body until it returns (run, wrap) or a stop is asked (step, messages), with
    /// the settings of its kind. A panic is caught and turned into an error, so that the engine
    /// can remove the pidfile and exit with a failure code.
    pub(in crate::engine) fn drive(
        &mut self,
        ctl: &Ctl,
        log: &Log,
        settings: &Settings,
    ) -> Result<(), UserError> {
        let result = catch_unwind(AssertUnwindSafe(|| match self {
            Body::Run(run) => run(ctl),
            Body::Wrap(wrapped) => match wrapped.take() {
                Some(function) => function(),
                None => Err(Failure::text(
                    "the wrapped function has run already: it runs once",
                )),
            },
            Body::Step(step) => step_loop(step, settings.interval, settings.keep_going, ctl, log),
            Body::Messages(serve) => {
                let pool = PoolSize {
                    workers: settings.pool_size,
                    idle_time: settings.idle_time,
                };
                serve(ctl, pool, log)
            }
        }));
        match result {
            Ok(outcome) => outcome,
            Err(panic) => Err(Failure::panicked(&panic_message(&*panic))),
        }
    }
}

fn step_loop(
    step: &mut StepFn,
    interval: Duration,
    keep_going: bool,
    ctl: &Ctl,
    log: &Log,
) -> Result<(), UserError> {
    while ctl.running() {
        if let Err(e) = step() {
            if !keep_going {
                return Err(Failure::because("a step failed", e));
            }
            log.warn(&format!("a step failed: {} (going on)", chain_text(&*e)));
        }
        if !interval.is_zero() {
            ctl.sleep(interval);
        }
    }
    ctl.lifecycle().tell_stopping();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    fn steps(step: impl FnMut() -> Result<(), UserError> + Send + 'static) -> Body {
        Body::Step(Box::new(step))
    }

    fn settings(keep_going: bool) -> Settings {
        crate::settings::SettingsBuilder::default()
            .pidfile("x.pid")
            .keep_going(keep_going)
            .build()
            .expect("settings")
    }

    #[test]
    fn step_loop_finishes_the_step_under_way() {
        let ctl = Ctl::for_tests();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let inner = ctl.clone();
        let mut body = steps(move || {
            if seen.fetch_add(1, Ordering::SeqCst) == 9 {
                inner.stop();
            }
            Ok(())
        });
        assert!(body.drive(&ctl, &Log::quiet(), &settings(false)).is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn step_errors_stop_or_are_logged() {
        let ctl = Ctl::for_tests();
        let mut body = steps(|| Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into()));
        let err = body
            .drive(&ctl, &Log::quiet(), &settings(false))
            .unwrap_err();
        assert_eq!(err.to_string(), "a step failed");
        let step_error = err.source().expect("the step's error");
        let io = step_error.downcast_ref::<std::io::Error>();
        assert_eq!(
            io.and_then(std::io::Error::raw_os_error),
            Some(libc::ENOSPC),
            "the step's own error value, not its text"
        );

        let logged = Arc::new(Mutex::new(Vec::new()));
        let inner = ctl.clone();
        let mut n = 0;
        let mut body = steps(move || {
            n += 1;
            if n == 3 {
                inner.stop();
            }
            Err(format!("failure {n}").into())
        });
        let sink = logged.clone();
        let log = Log::to(move |m| sink.lock().expect("log").push(m.to_string()));
        assert!(body.drive(&ctl, &log, &settings(true)).is_ok());
        assert_eq!(
            *logged.lock().expect("log"),
            ["failure 1", "failure 2", "failure 3"]
                .map(|f| format!("a step failed: {f} (going on)"))
        );
    }

    #[test]
    fn panics_become_errors() {
        let ctl = Ctl::for_tests();
        let mut body = Body::Run(Box::new(|_| panic!("boom")));
        let err = body
            .drive(&ctl, &Log::quiet(), &settings(false))
            .unwrap_err();
        assert_eq!(err.to_string(), "panicked: boom");
    }
}
