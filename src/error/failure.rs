//! The user's errors as the crate carries them: boxed with their sources, and the crate's own
//! [`Failure`] for what has no error value of the user's (a panic, a closure that did not return)
//! or comes back as text (through the start report).

use std::error::Error as StdError;
use std::fmt;

/// A user's error, kept with its chain of sources: what [`Error::Body`](super::Error::Body),
/// [`Error::Setup`](super::Error::Setup) and [`Error::StopHandler`](super::Error::StopHandler)
/// carry.
pub(crate) type UserError = Box<dyn StdError + Send + Sync>;

/// A failure said in words, with the error that caused it, if any: a panic (`panicked: MSG`),
/// what the engine says of a closure (`a step failed`, with the step's error as its source), or
/// a user's error that came through the start report as the texts of its chain, each the source
/// of the one before.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    source: Option<UserError>,
}

impl Failure {
    /// A failure that has no cause of its own.
    pub(crate) fn text(message: impl Into<String>) -> UserError {
        Box::new(Failure {
            message: message.into(),
            source: None,
        })
    }

    /// `message`, caused by `source`.
    pub(crate) fn because(message: impl Into<String>, source: UserError) -> UserError {
        Box::new(Failure {
            message: message.into(),
            source: Some(source),
        })
    }

    /// A panic, by the text of its payload.
    pub(crate) fn panicked(message: &str) -> UserError {
        Failure::text(format!("panicked: {message}"))
    }

    /// The texts of a chain, first the error's own, rebuilt into errors each of which is the
    /// source of the one before; `None` for no text at all.
    pub(crate) fn chain(texts: Vec<String>) -> Option<UserError> {
        texts.into_iter().rev().fold(None, |source, message| {
            Some(Box::new(Failure { message, source }) as _)
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// The error and each of its sources, in order.
pub(crate) fn sources<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// The text of an error with its sources, each after a colon, as `{:#}` shows the crate's own
/// errors: what the engine logs.
pub(crate) fn chain_text(error: &(dyn StdError + 'static)) -> String {
    sources(error)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Saving(std::io::Error);

    impl fmt::Display for Saving {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot save the counter")
        }
    }

    impl StdError for Saving {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_chain_is_said_whole_and_rebuilt_from_its_texts() {
        let error: UserError = Box::new(Saving(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        let said = "cannot save the counter: No space left on device (os error 28)";
        assert_eq!(chain_text(&*error), said);
        let texts: Vec<String> = sources(&*error).map(ToString::to_string).collect();
        let rebuilt = Failure::chain(texts).expect("a chain");
        assert_eq!(rebuilt.to_string(), "cannot save the counter");
        assert_eq!(chain_text(&*rebuilt), said);
        assert!(Failure::chain(Vec::new()).is_none());
    }

    #[test]
    fn a_cause_follows_its_context() {
        let failed = Failure::because("a step failed", "disk full".into());
        assert_eq!(failed.to_string(), "a step failed");
        assert_eq!(chain_text(&*failed), "a step failed: disk full");
        assert_eq!(Failure::panicked("boom").to_string(), "panicked: boom");
    }
}
