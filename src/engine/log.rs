//! The daemon's own log lines: one line each on its stderr (the log file, once detached),
//! stamped with the time (UTC) and the daemon's name and pid, so that a log file that several
//! processes share can be read: `2026-12-02T01:23:45.678Z counter[4242]: stopping: ...`.
//!
//! When stderr is the journal (`$JOURNAL_STREAM` names its device and inode), each line starts
//! with its sd-daemon(3) priority instead (`<3>` an error, `<4>` a warning, `<6>` information),
//! and carries no time, name or pid, which journald records itself.
//!
//! With the `log` feature, once the program has installed a logger (the `log` facade's maximum
//! level is above `Off`, as `env_logger`, `tracing-subscriber` and every other logger set it),
//! the lines go through it instead, at their level and under the target `daemons`: one format
//! in the file, and `RUST_LOG` filters them. Without a logger they stay the lines above.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the crate's messages go. Cheap to clone into worker threads; tests give it a sink of
/// their own.
#[derive(Clone)]
pub(crate) struct Log(Arc<Sink>);

/// Where a line goes, with its level.
type Sink = dyn Fn(Level, &str) + Send + Sync;

/// How much a line matters, as sd-daemon(3) numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

impl Log {
    pub(in crate::engine) fn new(name: &str) -> Log {
        let name: Arc<str> = name.into();
        Log(Arc::new(move |level, message| {
            #[cfg(feature = "log")]
            if facade::installed() {
                facade::emit(level, message);
                return;
            }
            // One write(2) a line: processes that share a log file (an instance and its
            // successor during a restart) never mix their lines. Whether stderr is the journal
            // is looked at each time: a detached daemon's stderr changes after the log is made.
            let line = match stderr_is_journal() {
                true => format!("<{}>{message}\n", level as u8),
                false => format!(
                    "{} {name}[{}]: {message}\n",
                    timestamp(SystemTime::now()),
                    std::process::id()
                ),
            };
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }))
    }

    #[cfg(test)]
    pub(in crate::engine) fn to(sink: impl Fn(&str) + Send + Sync + 'static) -> Log {
        Log(Arc::new(move |_, message| sink(message)))
    }

    #[cfg(test)]
    pub(in crate::engine) fn quiet() -> Log {
        Log::to(|_| {})
    }

    /// A line of information.
    pub(in crate::engine) fn log(&self, message: &str) {
        (self.0)(Level::Info, message)
    }

    /// A line about something that went wrong but is handled.
    pub(in crate::engine) fn warn(&self, message: &str) {
        (self.0)(Level::Warning, message)
    }

    /// A line about a failure.
    pub(in crate::engine) fn error(&self, message: &str) {
        (self.0)(Level::Error, message)
    }
}

/// Whether stderr is the stream that `$JOURNAL_STREAM` names (`DEV:INO`, compared with
/// stderr's own `st_dev` and `st_ino`): a child that inherited the variable with another
/// stderr is not writing to the journal.
pub(crate) fn stderr_is_journal() -> bool {
    let Some(named) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = named.to_str().and_then(|n| n.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // `st_dev` is `u64` on Linux, a signed `i32` on macOS: systemd prints it unsigned.
    #[allow(clippy::unnecessary_cast)]
    nix::sys::stat::fstat(std::io::stderr())
        .is_ok_and(|st| st.st_dev as u64 == dev && st.st_ino as u64 == ino)
}

/// The `log` facade, when the program installed a logger.
#[cfg(feature = "log")]
mod facade {
    use super::Level;

    /// The target of the crate's lines, which `RUST_LOG=daemons=LEVEL` filters.
    const TARGET: &str = "daemons";

    /// Whether a logger is installed: a logger raises the facade's maximum level from `Off`,
    /// which is where it stays without one.
    pub(super) fn installed() -> bool {
        log::max_level() != log::LevelFilter::Off
    }

    pub(super) fn emit(level: Level, message: &str) {
        let level = match level {
            Level::Error => log::Level::Error,
            Level::Warning => log::Level::Warn,
            Level::Info => log::Level::Info,
        };
        log::log!(target: TARGET, level, "{message}");
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Log(..)")
    }
}

/// `2026-12-02T01:23:45.678Z`: RFC 3339 in UTC, to the millisecond.
fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let at = |secs: u64, millis: u64| {
            timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_796_174_625, 678), "2026-12-02T01:23:45.678Z");
    }
}
