//! What a user's closure ended with: a value, an error, or a panic.
//!
//! Bodies, steps and handlers may return `()` or a `Result`, and `get` an `Option` or a `Result`
//! of one; the engine only needs "went fine" or "failed, and here is why". These traits turn each
//! into that, so the builder's methods take any of them.

use std::any::Any;
use std::error::Error as StdError;

use crate::error::UserError;

/// The traits of this module are the crate's to implement: what a closure may return is a
/// promise of the crate, not an extension point.
mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<T, E> Sealed for Result<T, E> {}
    impl<M> Sealed for Option<M> {}
}

/// What a body, a step, a set-up or a message handler may return: `()`, or a `Result` whose
/// error is logged and stops the daemon with a failure exit code. The error may be anything that
/// becomes a `Box<dyn Error + Send + Sync>` (any error type, `String`, `&str`, `anyhow::Error`),
/// and keeps its chain of sources.
///
/// A closure that never returns has the type `!`, which is not an `Outcome`: say what it would
/// return, `|| -> () { loop { ... } }`.
///
/// This trait is sealed: only the crate implements it.
///
/// # Examples
///
/// ```
/// use daemons::Daemon;
///
/// // A step that can fail: `?` works inside it.
/// let daemon = Daemon::builder()
///     .pidfile("/tmp/doc-outcome.pid")
///     .step(|| -> Result<(), std::io::Error> {
///         std::fs::metadata("/")?;
///         Ok(())
///     })
///     .build()?;
/// # Ok::<(), daemons::Error>(())
/// ```
///
/// A step that returns a number is refused, with a message that says what it may return:
///
/// ```compile_fail
/// let b = daemons::Daemon::builder().pidfile("/tmp/x.pid").step(|| 42_u64);
/// ```
///
/// And so is a closure that never returns, unless it says `-> ()`:
///
/// ```compile_fail
/// let f = daemons::wrap("/tmp/x.pid", || loop { std::thread::park() });
/// ```
///
/// ```no_run
/// let f = daemons::wrap("/tmp/x.pid", || -> () { loop { std::thread::park() } });
/// ```
#[diagnostic::on_unimplemented(
    message = "a daemon's body, step, set-up or message handler may return `()` or `Result<_, E>`, not `{Self}`",
    label = "this closure returns `{Self}`",
    note = "return `()`, or a `Result` whose error becomes a `Box<dyn Error + Send + Sync>` (an error type, `String`, `&str`); a closure that never returns has the type `!`: write `|| -> () {{ loop {{ ... }} }}`"
)]
pub trait Outcome: sealed::Sealed {
    /// `Ok(())`, or the error, with its sources.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Outcome;
    ///
    /// assert!(().into_result().is_ok());
    /// let failed = Err::<(), _>("disk full").into_result().unwrap_err();
    /// assert_eq!(failed.to_string(), "disk full");
    /// ```
    fn into_result(self) -> Result<(), Box<dyn StdError + Send + Sync>>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), UserError> {
        Ok(())
    }
}

impl<T, E: Into<Box<dyn StdError + Send + Sync>>> Outcome for Result<T, E> {
    fn into_result(self) -> Result<(), UserError> {
        self.map(drop).map_err(Into::into)
    }
}

/// What `get` may return: `Option<M>` (`None`: nothing now, ask again after the idle time), or a
/// `Result` of one, whose error (anything that becomes a `Box<dyn Error + Send + Sync>`) ends
/// the daemon like a failed step.
///
/// This trait is sealed: only the crate implements it.
///
/// # Examples
///
/// ```
/// use daemons::Daemon;
/// use std::sync::{Arc, Mutex};
///
/// let queue = Arc::new(Mutex::new(vec![1, 2, 3]));
/// let daemon = Daemon::builder()
///     .pidfile("/tmp/doc-fetch.pid")
///     .messages(move || queue.lock().map(|mut q| q.pop()).map_err(|_| "poisoned"), |n: i32| {
///         println!("{n}");
///     })
///     .build()?;
/// # Ok::<(), daemons::Error>(())
/// ```
///
/// A `get` that returns the message itself, not an `Option` of it, is refused with a message
/// that says what it may return:
///
/// ```compile_fail
/// let b = daemons::Daemon::builder().pidfile("/tmp/x.pid").messages(|| 7_u32, |n: u32| {});
/// ```
#[diagnostic::on_unimplemented(
    message = "`get` may return `Option<M>` or `Result<Option<M>, E>`, not `{Self}`",
    label = "this `get` returns `{Self}`",
    note = "return `Some(message)`, or `None` when there is nothing now (the daemon asks again after the idle time); a `Result` of that when fetching can fail"
)]
pub trait Fetch<M>: sealed::Sealed {
    /// The message, `None` for nothing now, or the error, with its sources.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Fetch;
    ///
    /// assert_eq!(Some(7).into_message().ok(), Some(Some(7)));
    /// let failed = Err::<Option<u8>, _>("gone").into_message().unwrap_err();
    /// assert_eq!(failed.to_string(), "gone");
    /// ```
    fn into_message(self) -> Result<Option<M>, Box<dyn StdError + Send + Sync>>;
}

impl<M> Fetch<M> for Option<M> {
    fn into_message(self) -> Result<Option<M>, UserError> {
        Ok(self)
    }
}

impl<M, E: Into<Box<dyn StdError + Send + Sync>>> Fetch<M> for Result<Option<M>, E> {
    fn into_message(self) -> Result<Option<M>, UserError> {
        self.map_err(Into::into)
    }
}

/// The text of a panic payload: panics carry a `&str` or a `String`, anything else is opaque.
pub(in crate::engine) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic with a non-text payload)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::chain_text;

    #[test]
    fn outcomes_convert_and_keep_the_chain() {
        assert!(().into_result().is_ok());
        assert!(Ok::<u8, String>(3).into_result().is_ok());
        let failed = Err::<(), _>("no").into_result().unwrap_err();
        assert_eq!(chain_text(&*failed), "no");
        #[derive(Debug)]
        struct Saving(std::io::Error);
        impl std::fmt::Display for Saving {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot save the counter")
            }
        }
        impl StdError for Saving {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let full = Saving(std::io::Error::from_raw_os_error(libc::ENOSPC));
        let failed = Err::<(), _>(full).into_result().unwrap_err();
        assert!(failed.source().is_some(), "the source is kept");
        assert_eq!(
            chain_text(&*failed),
            "cannot save the counter: No space left on device (os error 28)"
        );
    }

    #[test]
    fn panic_payloads_become_text() {
        let text = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*text), "boom 7");
        let opaque = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert!(panic_message(&*opaque).contains("non-text"));
    }
}
