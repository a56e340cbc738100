//! The daemon's own log lines: one line each on its stderr (the log file, once detached),
//! prefixed with the daemon's name.

use std::fmt;
use std::sync::Arc;

/// Where the crate's messages go. Cheap to clone into worker threads; tests give it a sink of
/// their own.
#[derive(Clone)]
pub(crate) struct Log(Arc<dyn Fn(&str) + Send + Sync>);

impl Log {
    pub(crate) fn new(name: &str) -> Log {
        let name: Arc<str> = name.into();
        Log(Arc::new(move |message| eprintln!("{name}: {message}")))
    }

    #[cfg(test)]
    pub(crate) fn to(sink: impl Fn(&str) + Send + Sync + 'static) -> Log {
        Log(Arc::new(sink))
    }

    #[cfg(test)]
    pub(crate) fn quiet() -> Log {
        Log::to(|_| {})
    }

    pub(crate) fn log(&self, message: &str) {
        (self.0)(message)
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Log(..)")
    }
}
