//! The start report: what a starting daemon tells the caller of `start()` through the pipe that
//! `detach()` makes.
//!
//! The daemon writes its pid on a line as soon as it exists (so that a caller that gives up
//! waiting can kill it), then one final word: `R` for ready, or `E` and its [`Error`], encoded.
//! Both ends are the same build of this crate, so the encoding only needs to be unambiguous:
//! the variant's name, then its fields, each as a decimal length, a colon and the bytes. Which
//! fields, in which order, is written once per variant (`codec!`); how each type of field is
//! written and read, once per type ([`Field`]).

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::{Pid, Signal};

use super::failure::{Failure, UserError, sources};
use super::{Action, Error, HandoverKind, NotSignalled};

pub(crate) const READY: u8 = b'R';
pub(crate) const FAILED: u8 = b'E';
/// After `R`, from a supervised child: its SIGHUP handlers have run.
pub(crate) const RELOADED: u8 = b'L';
/// After `R`, from a supervised child: its body's loop showed life (the watchdog's ping).
pub(crate) const ALIVE: u8 = b'W';

/// The events that a supervised child sent after `R` and before any final word, taken out of
/// what was heard so that the final word follows `R` again: how many reloads ended, and whether
/// the body showed life.
pub(crate) fn take_events(heard: &mut Vec<u8>) -> (usize, bool) {
    let Some(newline) = heard.iter().position(|&b| b == b'\n') else {
        return (0, false);
    };
    if heard.get(newline + 1) != Some(&READY) {
        return (0, false);
    }
    let from = newline + 2;
    let events = heard[from..]
        .iter()
        .take_while(|&&b| b == RELOADED || b == ALIVE)
        .count();
    let taken: Vec<u8> = heard.drain(from..from + events).collect();
    let reloads = taken.iter().filter(|&&b| b == RELOADED).count();
    (reloads, taken.contains(&ALIVE))
}

/// The pid line that opens every report.
pub(crate) fn pid_line(pid: Pid) -> Vec<u8> {
    pid.line().into_bytes()
}

/// The final word of a failed start.
pub(crate) fn failure(error: &Error) -> Vec<u8> {
    let mut message = vec![FAILED];
    message.extend(encode(error));
    message
}

/// What a report holds so far: the daemon's pid, once its line is complete, and the final word,
/// once it has come.
pub(crate) fn parse(message: &[u8]) -> (Option<Pid>, Option<Result<(), Error>>) {
    // The intermediate process fails before the daemon exists: its word comes without a pid.
    if let Some((&FAILED, encoded)) = message.split_first() {
        return (
            None,
            Some(Err(decode(encoded).unwrap_or(Error::DaemonVanished))),
        );
    }
    let Some(newline) = message.iter().position(|&b| b == b'\n') else {
        return (None, None);
    };
    let pid = std::str::from_utf8(&message[..newline])
        .ok()
        .and_then(|line| line.parse::<i32>().ok())
        .filter(|&raw| raw > 0)
        .map(Pid::from_raw);
    let word = match message[newline + 1..].split_first() {
        Some((&READY, _)) => Some(Ok(())),
        Some((&FAILED, encoded)) => Some(Err(decode(encoded).unwrap_or(Error::DaemonVanished))),
        _ => None,
    };
    (pid, word)
}

/// What a process said after it was ready: the error it ended with, if it sent one.
pub(crate) fn last_words(message: &[u8]) -> Option<Error> {
    let newline = message.iter().position(|&b| b == b'\n')?;
    match message[newline + 1..].split_first() {
        Some((&READY, rest)) => match rest.split_first() {
            Some((&FAILED, encoded)) => decode(encoded),
            _ => None,
        },
        _ => None,
    }
}

/// The encoding of each variant: its fields, in the order the report carries them. Also the
/// variant's name ([`Error::name`]), which opens its encoding and its `Debug`. A variant that is
/// not listed here does not compile.
macro_rules! codec {
    ($($variant:ident { $($field:ident),* }),* $(,)?) => {
        impl Error {
            /// The variant's name.
            pub(crate) fn name(&self) -> &'static str {
                match self {
                    $(Error::$variant { .. } => stringify!($variant),)*
                }
            }
        }

        fn encode(error: &Error) -> Vec<u8> {
            let mut w = Writer(Vec::new());
            w.text(error.name());
            match error {
                $(Error::$variant { $($field),* } => { $(Field::put($field, &mut w);)* })*
            }
            w.0
        }

        fn decode(bytes: &[u8]) -> Option<Error> {
            let mut r = Reader(bytes);
            Some(match r.text()?.as_str() {
                $(stringify!($variant) => Error::$variant { $($field: Field::take(&mut r)?),* },)*
                _ => return None,
            })
        }

        /// One error of each variant, its fields the samples of their types.
        #[cfg(test)]
        pub(super) fn samples() -> Vec<Error> {
            vec![$(Error::$variant { $($field: Field::sample()),* }),*]
        }
    };
}

codec! {
    NoBody {},
    SeveralBodies {},
    ForbiddenSignal { signal },
    InvalidSetting { setting, reason },
    Threads { count, test_harness },
    Fork { source },
    InsideRuntime {},
    AlreadyRunning { pidfile, pid },
    Unverified { pidfile, named, holder, command },
    ForeignProc { pidfile, reason },
    NotRunning { pidfile },
    OtherProgram { pidfile, pid, program },
    NotPermitted { pidfile, pid, user },
    MissingDirectory { path, action, source },
    Symlink { path, action, source },
    NotAFile { path, action, source },
    Untrusted { path, reason },
    UnsafeDirectory { path, directory, action, reason },
    UnsafeFile { path, action, reason },
    Io { action, path, source },
    Listen { address, source },
    Sys { call, source },
    Privileges { reason },
    StartTimeout { after, pid, not_killed },
    DaemonVanished {},
    StillAlive { pid },
    Body { source },
    Setup { source },
    ReturnedBeforeReady {},
    StopHandler { source },
    Handover { pidfile, kind, reason },
}

/// The names that the crate gives as a `&'static str`: the calls of [`Error::Sys`] and the
/// settings of [`Error::InvalidSetting`]. A name that arrives is given back as the crate's own
/// `&'static str`; one not listed (a test lists every one the sources give) arrives as
/// [`UNNAMED`].
const NAMES: &[&str] = &[
    // Calls.
    "dup",
    "dup2",
    "flock",
    "fork",
    "install signal handlers",
    "kevent",
    "kill",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "poll",
    "pthread_sigmask",
    "read",
    "read /proc",
    "setsid",
    "sigprocmask",
    "spawn the signal thread",
    "spawn the keeper thread",
    // Settings: the builder's methods.
    "command",
    "group",
    "interval",
    "listen",
    "notify_fd",
    "pidfile",
    "pool_size",
    "ready_timeout",
    "stdout",
    "stderr",
    "stop_grace",
    "stop_timeout",
    "umask",
    "user",
    "workdir",
    "worker_threads",
];

/// What a name not in [`NAMES`] arrives as.
const UNNAMED: &str = "(unnamed)";

/// A field of an error, as the report writes and reads it.
trait Field: Sized {
    fn put(&self, w: &mut Writer);
    fn take(r: &mut Reader<'_>) -> Option<Self>;
    /// A value that tests the encoding: odd bytes where the type allows them.
    #[cfg(test)]
    fn sample() -> Self;
}

impl Field for String {
    fn put(&self, w: &mut Writer) {
        w.text(self);
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        r.text()
    }
    #[cfg(test)]
    fn sample() -> Self {
        "5:a reason\0with odd bytes\n".into()
    }
}

impl Field for &'static str {
    fn put(&self, w: &mut Writer) {
        w.text(self);
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        let name = r.text()?;
        Some(
            NAMES
                .iter()
                .find(|known| **known == name)
                .map_or(UNNAMED, |known| known),
        )
    }
    #[cfg(test)]
    fn sample() -> Self {
        "spawn the signal thread"
    }
}

impl Field for PathBuf {
    fn put(&self, w: &mut Writer) {
        w.bytes(self.as_os_str().as_bytes());
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        Some(PathBuf::from(OsString::from_vec(r.bytes()?.to_vec())))
    }
    #[cfg(test)]
    fn sample() -> Self {
        PathBuf::from(OsString::from_vec(b"/tmp/a\nb:\xff\0.pid".to_vec()))
    }
}

impl Field for Pid {
    fn put(&self, w: &mut Writer) {
        w.number(self.as_raw());
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        Some(Pid::from_raw(r.number()?))
    }
    #[cfg(test)]
    fn sample() -> Self {
        Pid::from_raw(4242)
    }
}

impl Field for usize {
    fn put(&self, w: &mut Writer) {
        w.number(self);
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        r.number()
    }
    #[cfg(test)]
    fn sample() -> Self {
        7
    }
}

impl Field for bool {
    fn put(&self, w: &mut Writer) {
        w.number(u8::from(*self));
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        Some(r.number::<u8>()? != 0)
    }
    #[cfg(test)]
    fn sample() -> Self {
        true
    }
}

impl Field for Duration {
    fn put(&self, w: &mut Writer) {
        w.number(self.as_nanos());
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        Some(Duration::from_nanos(
            u64::try_from(r.number::<u128>()?).ok()?,
        ))
    }
    #[cfg(test)]
    fn sample() -> Self {
        Duration::from_millis(1500)
    }
}

impl Field for Signal {
    fn put(&self, w: &mut Writer) {
        w.number(*self as i32);
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        Signal::try_from(r.number::<i32>()?).ok()
    }
    #[cfg(test)]
    fn sample() -> Self {
        Signal::SIGKILL
    }
}

/// The errno, and the message for an error that has none.
impl Field for io::Error {
    fn put(&self, w: &mut Writer) {
        w.number(self.raw_os_error().unwrap_or(0));
        w.text(&self.to_string());
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        let errno: i32 = r.number()?;
        let message = r.text()?;
        Some(if errno != 0 {
            io::Error::from_raw_os_error(errno)
        } else {
            io::Error::other(message)
        })
    }
    #[cfg(test)]
    fn sample() -> Self {
        io::Error::from_raw_os_error(libc::EAGAIN)
    }
}

/// A user's error: the texts of its chain, which come back as [`Failure`]s, each the source of
/// the one before, so that the caller says the same chain as the daemon.
impl Field for UserError {
    fn put(&self, w: &mut Writer) {
        let texts: Vec<String> = sources(&**self).map(ToString::to_string).collect();
        w.number(texts.len());
        for text in &texts {
            w.text(text);
        }
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        let count: usize = r.number()?;
        // No more texts than the bytes left could hold: a count that lies allocates nothing.
        let texts = (0..count.min(r.0.len()))
            .map(|_| r.text())
            .collect::<Option<Vec<String>>>()?;
        Failure::chain(texts)
    }
    #[cfg(test)]
    fn sample() -> Self {
        Failure::because(
            "cannot save the counter",
            Box::new(io::Error::from_raw_os_error(libc::ENOSPC)),
        )
    }
}

/// An enum of the crate's whose variants have their words: written and read by them.
macro_rules! worded_field {
    ($($name:ident => $sample:expr),*) => {
        $(impl Field for $name {
            fn put(&self, w: &mut Writer) {
                w.text(self.words());
            }
            fn take(r: &mut Reader<'_>) -> Option<Self> {
                let words = r.text()?;
                $name::ALL.iter().copied().find(|known| known.words() == words)
            }
            #[cfg(test)]
            fn sample() -> Self {
                $sample
            }
        })*
    };
}

worded_field!(Action => Action::CloseInherited, HandoverKind => HandoverKind::Unresponsive);

impl Field for NotSignalled {
    fn put(&self, w: &mut Writer) {
        match self {
            NotSignalled::Exited => w.text("Exited"),
            NotSignalled::Unverified { reason } => {
                w.text("Unverified");
                w.text(reason);
            }
            NotSignalled::Refused { reason } => {
                w.text("Refused");
                w.text(reason);
            }
        }
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        Some(match r.text()?.as_str() {
            "Exited" => NotSignalled::Exited,
            "Unverified" => NotSignalled::Unverified { reason: r.text()? },
            "Refused" => NotSignalled::Refused { reason: r.text()? },
            _ => return None,
        })
    }
    #[cfg(test)]
    fn sample() -> Self {
        NotSignalled::Unverified {
            reason: "in session 9, not 7".into(),
        }
    }
}

/// `-` for nothing, `+` and the value for something.
impl<T: Field> Field for Option<T> {
    fn put(&self, w: &mut Writer) {
        match self {
            None => w.text("-"),
            Some(value) => {
                w.text("+");
                value.put(w);
            }
        }
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        match r.text()?.as_str() {
            "-" => Some(None),
            "+" => Some(Some(T::take(r)?)),
            _ => None,
        }
    }
    #[cfg(test)]
    fn sample() -> Self {
        Some(T::sample())
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes.len().to_string().as_bytes());
        self.0.push(b':');
        self.0.extend_from_slice(bytes);
    }

    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    fn number(&mut self, n: impl ToString) {
        self.text(&n.to_string());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let colon = self.0.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.0[..colon]).ok()?.parse().ok()?;
        let rest = &self.0[colon + 1..];
        let (field, rest) = (rest.get(..len)?, rest.get(len..)?);
        self.0 = rest;
        Some(field)
    }

    fn text(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn number<T: FromStr>(&mut self) -> Option<T> {
        self.text()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The same error, as far as the report tells: the same encoding, the same message.
    fn same(decoded: &Error, sent: &Error) {
        assert_eq!(encode(decoded), encode(sent), "{sent:?}");
        assert_eq!(decoded.to_string(), sent.to_string());
    }

    #[test]
    fn every_variant_survives_the_pipe() {
        for error in samples() {
            let decoded =
                decode(&encode(&error)).unwrap_or_else(|| panic!("{} decodes", error.name()));
            same(&decoded, &error);
        }
    }

    #[test]
    fn every_shape_of_the_optional_fields_survives_the_pipe() {
        let timeout = |not_killed| Error::StartTimeout {
            after: Duration::from_secs(3),
            pid: Some(Pid::from_raw(12)),
            not_killed,
        };
        for error in [
            Error::Threads {
                count: None,
                test_harness: true,
            },
            Error::Unverified {
                pidfile: "/run/x.pid".into(),
                named: None,
                holder: None,
                command: None,
            },
            timeout(None),
            timeout(Some(NotSignalled::Exited)),
            timeout(Some(NotSignalled::Refused {
                reason: "pidfd_open: Too many open files".into(),
            })),
        ] {
            same(&decode(&encode(&error)).expect("decodes"), &error);
        }
    }

    #[test]
    fn every_action_and_handover_kind_survives_the_pipe() {
        for &action in Action::ALL {
            let error = Error::Io {
                action,
                path: "/run/x.pid".into(),
                source: io::Error::from_raw_os_error(libc::EACCES),
            };
            match decode(&encode(&error)) {
                Some(Error::Io {
                    action: decoded, ..
                }) => assert_eq!(decoded, action),
                other => panic!("{action}: {other:?}"),
            }
        }
        for &kind in HandoverKind::ALL {
            let error = Error::Handover {
                pidfile: "/run/x.pid".into(),
                kind,
                reason: "why".into(),
            };
            match decode(&encode(&error)) {
                Some(Error::Handover { kind: decoded, .. }) => assert_eq!(decoded, kind),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_keep_their_text() {
        let e = Error::io(
            Action::CloseInherited,
            Path::new("/proc/self/fd"),
            io::Error::from_raw_os_error(libc::EACCES),
        );
        let decoded = decode(&encode(&e)).expect("decodes");
        assert!(
            decoded
                .to_string()
                .starts_with("cannot close inherited descriptors from /proc/self/fd"),
            "{decoded}"
        );
        assert!(decoded.to_string().contains("may write there"), "{decoded}");
        let sys = Error::Sys {
            call: "spawn the keeper thread",
            source: io::Error::other("no room"),
        };
        match decode(&encode(&sys)) {
            Some(Error::Sys { call, source }) => {
                assert_eq!(call, "spawn the keeper thread");
                assert_eq!(source.to_string(), "no room");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every name that the crate's sources give to a `call` or a `setting` comes back through
    /// the pipe as itself: it is in [`NAMES`].
    #[test]
    fn every_name_the_sources_give_is_known() {
        let mut missing = Vec::new();
        let mut todo = vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    todo.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with(file!()) {
                    let source = std::fs::read_to_string(&path).expect("read");
                    for name in given_names(&source) {
                        if !NAMES.contains(&name.as_str()) {
                            missing.push(format!("{}: {name:?}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "add to NAMES: {missing:#?}");
    }

    /// The string literals right after `call: `, `sys(` and `setting(`, `setting: `.
    fn given_names(source: &str) -> Vec<String> {
        let mut names = Vec::new();
        for mark in ["call: ", "sys(", "setting(", "setting: "] {
            for (at, _) in source.match_indices(mark) {
                let rest = source[at + mark.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"')
                    && let Some(end) = literal.find('"')
                {
                    names.push(literal[..end].to_string());
                }
            }
        }
        names
    }

    #[test]
    fn reports_parse() {
        let ok = parse(b"1234\nR");
        assert_eq!(ok.0, Some(Pid::from_raw(1234)));
        assert!(matches!(ok.1, Some(Ok(()))));

        let mut failed = b"99\n".to_vec();
        failed.extend(failure(&Error::not_a_file(
            Action::Open,
            Path::new("/tmp"),
            "a directory",
        )));
        let failed = parse(&failed);
        assert_eq!(failed.0, Some(Pid::from_raw(99)));
        assert!(matches!(failed.1, Some(Err(Error::NotAFile { .. }))));

        let silent = parse(b"77\n");
        assert_eq!(silent.0, Some(Pid::from_raw(77)));
        assert!(silent.1.is_none());
        assert_eq!(parse(b"77").0, None, "an unfinished pid line names nobody");
        let middle = parse(&failure(&Error::Sys {
            call: "fork",
            source: io::Error::from_raw_os_error(libc::EAGAIN),
        }));
        assert_eq!(middle.0, None);
        assert!(
            matches!(middle.1, Some(Err(Error::Sys { call: "fork", .. }))),
            "{middle:?}"
        );
        assert_eq!(parse(b"").0, None);
    }

    #[test]
    fn last_words_follow_the_ready_word() {
        let mut message = b"42\nR".to_vec();
        assert!(last_words(&message).is_none());
        message.extend(failure(&Error::Body {
            source: "boom".into(),
        }));
        assert!(
            matches!(last_words(&message), Some(Error::Body { source }) if source.to_string() == "boom")
        );
        assert!(matches!(parse(&message).1, Some(Ok(()))), "still ready");
    }

    #[test]
    fn garbage_is_no_error_at_all() {
        assert!(decode(b"zzz").is_none());
        assert!(decode(b"").is_none());
        assert!(decode(b"2:Io99:x").is_none());
        assert!(matches!(
            parse(b"1\nEjunk").1,
            Some(Err(Error::DaemonVanished))
        ));
    }
}
