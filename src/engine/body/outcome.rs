//! What a user's closure ended with: a value, an error, or a panic.
//!
//! Bodies, steps and handlers may return `()` or a `Result`, and `get` an `Option` or a `Result`
//! of one; the engine only needs "went fine" or "failed, and here is why". These traits turn each
//! into that, so the builder's methods take any of them.

use std::any::Any;
use std::fmt;

/// What a body or a step may return: `()`, or a `Result` whose error is logged and stops the
/// daemon with a failure exit code.
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
pub trait Outcome {
    /// `Ok(())`, or the error's message.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Outcome;
    ///
    /// assert_eq!(().into_result(), Ok(()));
    /// assert_eq!(Err::<(), _>("disk full").into_result(), Err("disk full".to_string()));
    /// ```
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T, E: fmt::Display> Outcome for Result<T, E> {
    fn into_result(self) -> Result<(), String> {
        self.map(drop).map_err(|e| e.to_string())
    }
}

/// What `get` may return: `Option<M>` (`None`: nothing now, ask again after the idle time), or a
/// `Result` of one, whose error ends the daemon like a failed step.
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
pub trait Fetch<M> {
    /// The message, `None` for nothing now, or the error's message.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Fetch;
    ///
    /// assert_eq!(Some(7).into_message(), Ok(Some(7)));
    /// assert_eq!(Err::<Option<u8>, _>("gone").into_message(), Err("gone".to_string()));
    /// ```
    fn into_message(self) -> Result<Option<M>, String>;
}

impl<M> Fetch<M> for Option<M> {
    fn into_message(self) -> Result<Option<M>, String> {
        Ok(self)
    }
}

impl<M, E: fmt::Display> Fetch<M> for Result<Option<M>, E> {
    fn into_message(self) -> Result<Option<M>, String> {
        self.map_err(|e| e.to_string())
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

    #[test]
    fn outcomes_convert() {
        assert_eq!(().into_result(), Ok(()));
        assert_eq!(Ok::<u8, String>(3).into_result(), Ok(()));
        assert_eq!(Err::<(), _>("no").into_result(), Err("no".to_string()));
    }

    #[test]
    fn panic_payloads_become_text() {
        let text = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*text), "boom 7");
        let opaque = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert!(panic_message(&*opaque).contains("non-text"));
    }
}
