//! The start report: what a starting daemon tells the caller of `start()` through the pipe that
//! `detach()` makes.
//!
//! The daemon writes its pid on a line as soon as it exists (so that a caller that gives up
//! waiting can kill it), then one final word: `R` for ready, or `E` and its [`Error`], encoded.
//! Both ends are the same build of this crate, so the encoding only needs to be unambiguous:
//! the variant's name, then its fields, each as a decimal length, a colon and the bytes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, NotSignalled};

pub(crate) const READY: u8 = b'R';
pub(crate) const FAILED: u8 = b'E';

/// The pid line that opens every report.
pub(crate) fn pid_line(pid: Pid) -> Vec<u8> {
    format!("{pid}\n").into_bytes()
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

/// The variant's name: the first field of its encoding.
fn tag(error: &Error) -> &'static str {
    match error {
        Error::NoBody => "NoBody",
        Error::SeveralBodies => "SeveralBodies",
        Error::ForbiddenSignal { .. } => "ForbiddenSignal",
        Error::InvalidSetting { .. } => "InvalidSetting",
        Error::Threads { .. } => "Threads",
        Error::Fork { .. } => "Fork",
        Error::InsideRuntime => "InsideRuntime",
        Error::AlreadyRunning { .. } => "AlreadyRunning",
        Error::NotRunning { .. } => "NotRunning",
        Error::Unverified { .. } => "Unverified",
        Error::ForeignProc { .. } => "ForeignProc",
        Error::MissingDirectory { .. } => "MissingDirectory",
        Error::Symlink { .. } => "Symlink",
        Error::NotAFile { .. } => "NotAFile",
        Error::Untrusted { .. } => "Untrusted",
        Error::UnsafeDirectory { .. } => "UnsafeDirectory",
        Error::UnsafeFile { .. } => "UnsafeFile",
        Error::Io { .. } => "Io",
        Error::Sys { .. } => "Sys",
        Error::Listen { .. } => "Listen",
        Error::Privileges { .. } => "Privileges",
        Error::StartTimeout { .. } => "StartTimeout",
        Error::DaemonVanished => "DaemonVanished",
        Error::StillAlive { .. } => "StillAlive",
        Error::Body { .. } => "Body",
        Error::Setup { .. } => "Setup",
        Error::ReturnedBeforeReady => "ReturnedBeforeReady",
        Error::StopHandler { .. } => "StopHandler",
        Error::Handover { .. } => "Handover",
    }
}

fn encode(error: &Error) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.text(tag(error));
    match error {
        Error::NoBody
        | Error::SeveralBodies
        | Error::DaemonVanished
        | Error::InsideRuntime
        | Error::ReturnedBeforeReady => {}
        Error::ForbiddenSignal { signal } => w.number(*signal as i32),
        Error::InvalidSetting { setting, reason } => {
            w.text(setting);
            w.text(reason);
        }
        Error::Threads { count } => w.number(count.map_or(0, |n| n)),
        Error::Fork { source } => w.io(source),
        Error::AlreadyRunning { pidfile, pid } => {
            w.path(pidfile);
            w.pid(*pid);
        }
        Error::NotRunning { pidfile } => w.path(pidfile),
        Error::Unverified {
            pidfile,
            named,
            holder,
            command,
        } => {
            w.path(pidfile);
            w.pid(*named);
            w.pid(*holder);
            w.text(command.as_deref().unwrap_or_default());
        }
        Error::ForeignProc { pidfile, reason } => {
            w.path(pidfile);
            w.text(reason);
        }
        Error::MissingDirectory {
            path,
            action,
            source,
        }
        | Error::Symlink {
            path,
            action,
            source,
        }
        | Error::NotAFile {
            path,
            action,
            source,
        }
        | Error::Io {
            path,
            action,
            source,
        } => {
            w.path(path);
            w.text(action);
            w.io(source);
        }
        Error::Untrusted { path, reason } => {
            w.path(path);
            w.text(reason);
        }
        Error::UnsafeDirectory {
            path,
            directory,
            action,
            reason,
        } => {
            w.path(path);
            w.path(directory);
            w.text(action);
            w.text(reason);
        }
        Error::UnsafeFile {
            path,
            action,
            reason,
        } => {
            w.path(path);
            w.text(action);
            w.text(reason);
        }
        Error::Sys { call, source } => {
            w.text(call);
            w.io(source);
        }
        Error::Listen { address, source } => {
            w.text(address);
            w.io(source);
        }
        Error::Privileges { reason } => w.text(reason),
        Error::StartTimeout {
            after,
            pid,
            not_killed,
        } => {
            w.number(after.as_nanos());
            w.pid(*pid);
            match not_killed {
                None => w.text(""),
                Some(NotSignalled::Exited) => w.text("Exited"),
                Some(NotSignalled::Unverified { reason }) => {
                    w.text("Unverified");
                    w.text(reason);
                }
                Some(NotSignalled::Refused { reason }) => {
                    w.text("Refused");
                    w.text(reason);
                }
            }
        }
        Error::StillAlive { pid } => w.pid(Some(*pid)),
        Error::Body { message } | Error::Setup { message } | Error::StopHandler { message } => {
            w.text(message)
        }
        Error::Handover {
            pidfile,
            kind,
            reason,
        } => {
            w.path(pidfile);
            w.text(kind.name());
            w.text(reason);
        }
    }
    w.0
}

fn decode(bytes: &[u8]) -> Option<Error> {
    let mut r = Reader(bytes);
    let tag = r.text()?;
    let file = |r: &mut Reader<'_>| -> Option<(PathBuf, &'static str, io::Error)> {
        Some((r.path()?, r.name()?, r.io()?))
    };
    Some(match tag.as_str() {
        "NoBody" => Error::NoBody,
        "SeveralBodies" => Error::SeveralBodies,
        "DaemonVanished" => Error::DaemonVanished,
        "ReturnedBeforeReady" => Error::ReturnedBeforeReady,
        "InsideRuntime" => Error::InsideRuntime,
        "ForbiddenSignal" => Error::ForbiddenSignal {
            signal: Signal::try_from(r.number::<i32>()?).ok()?,
        },
        "InvalidSetting" => Error::InvalidSetting {
            setting: r.name()?,
            reason: r.text()?,
        },
        "Threads" => Error::Threads {
            count: Some(r.number()?).filter(|&n| n > 0),
        },
        "Fork" => Error::Fork { source: r.io()? },
        "AlreadyRunning" => Error::AlreadyRunning {
            pidfile: r.path()?,
            pid: r.pid()?,
        },
        "NotRunning" => Error::NotRunning { pidfile: r.path()? },
        "Unverified" => Error::Unverified {
            pidfile: r.path()?,
            named: r.pid()?,
            holder: r.pid()?,
            command: Some(r.text()?).filter(|c| !c.is_empty()),
        },
        "ForeignProc" => Error::ForeignProc {
            pidfile: r.path()?,
            reason: r.text()?,
        },
        "MissingDirectory" => {
            let (path, action, source) = file(&mut r)?;
            Error::MissingDirectory {
                path,
                action,
                source,
            }
        }
        "Symlink" => {
            let (path, action, source) = file(&mut r)?;
            Error::Symlink {
                path,
                action,
                source,
            }
        }
        "NotAFile" => {
            let (path, action, source) = file(&mut r)?;
            Error::NotAFile {
                path,
                action,
                source,
            }
        }
        "Io" => {
            let (path, action, source) = file(&mut r)?;
            Error::Io {
                path,
                action,
                source,
            }
        }
        "Untrusted" => Error::Untrusted {
            path: r.path()?,
            reason: r.text()?,
        },
        "UnsafeDirectory" => Error::UnsafeDirectory {
            path: r.path()?,
            directory: r.path()?,
            action: r.name()?,
            reason: r.text()?,
        },
        "UnsafeFile" => Error::UnsafeFile {
            path: r.path()?,
            action: r.name()?,
            reason: r.text()?,
        },
        "Sys" => Error::Sys {
            call: r.name()?,
            source: r.io()?,
        },
        "Privileges" => Error::Privileges { reason: r.text()? },
        "Listen" => Error::Listen {
            address: r.text()?,
            source: r.io()?,
        },
        "StartTimeout" => Error::StartTimeout {
            after: Duration::from_nanos(u64::try_from(r.number::<u128>()?).ok()?),
            pid: r.pid()?,
            not_killed: match r.text()?.as_str() {
                "" => None,
                "Exited" => Some(NotSignalled::Exited),
                "Unverified" => Some(NotSignalled::Unverified { reason: r.text()? }),
                "Refused" => Some(NotSignalled::Refused { reason: r.text()? }),
                _ => return None,
            },
        },
        "StillAlive" => Error::StillAlive { pid: r.pid()?? },
        "Body" => Error::Body { message: r.text()? },
        "Setup" => Error::Setup { message: r.text()? },
        "StopHandler" => Error::StopHandler { message: r.text()? },
        "Handover" => Error::Handover {
            pidfile: r.path()?,
            kind: crate::error::HandoverKind::from_name(&r.text()?)?,
            reason: r.text()?,
        },
        _ => return None,
    })
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

    fn path(&mut self, path: &Path) {
        self.bytes(path.as_os_str().as_bytes());
    }

    fn number(&mut self, n: impl ToString) {
        self.text(&n.to_string());
    }

    fn pid(&mut self, pid: Option<Pid>) {
        self.number(pid.map_or(0, Pid::as_raw));
    }

    /// The errno, and the message for an error that has none.
    fn io(&mut self, e: &io::Error) {
        self.number(e.raw_os_error().unwrap_or(0));
        self.text(&e.to_string());
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

    /// A name that the crate gave as a `&'static str` ("open the pidfile", "setsid", ...).
    fn name(&mut self) -> Option<&'static str> {
        Some(intern(&self.text()?))
    }

    fn path(&mut self) -> Option<PathBuf> {
        Some(PathBuf::from(OsString::from_vec(self.bytes()?.to_vec())))
    }

    fn number<T: FromStr>(&mut self) -> Option<T> {
        self.text()?.parse().ok()
    }

    fn pid(&mut self) -> Option<Option<Pid>> {
        let raw: i32 = self.number()?;
        Some((raw > 0).then(|| Pid::from_raw(raw)))
    }

    fn io(&mut self) -> Option<io::Error> {
        let errno: i32 = self.number()?;
        let message = self.text()?;
        Some(if errno != 0 {
            io::Error::from_raw_os_error(errno)
        } else {
            io::Error::other(message)
        })
    }
}

/// The `&'static str` for a name that arrived through the pipe. The names are the crate's own, a
/// few dozen at most, so each distinct one is leaked once and reused.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of each variant, from a list that is also matched against `Error` without a
    /// wildcard: a new variant does not compile until it has a sample here.
    macro_rules! one_of_each {
        ($($variant:ident => $sample:expr),* $(,)?) => {{
            fn _every_variant_is_listed(e: &Error) {
                match e {
                    $(Error::$variant { .. } => {})*
                }
            }
            vec![$((stringify!($variant), $sample)),*]
        }};
    }

    fn samples() -> Vec<(&'static str, Error)> {
        let odd = PathBuf::from(OsString::from_vec(b"/tmp/a\nb:\xff\0.pid".to_vec()));
        let errno = |n| io::Error::from_raw_os_error(n);
        one_of_each! {
            NoBody => Error::NoBody,
            SeveralBodies => Error::SeveralBodies,
            ForbiddenSignal => Error::ForbiddenSignal { signal: Signal::SIGKILL },
            InvalidSetting => Error::setting("umask", "5:a reason\0with odd bytes"),
            Threads => Error::Threads { count: Some(7) },
            Fork => Error::Fork { source: errno(libc::EAGAIN) },
            InsideRuntime => Error::InsideRuntime,
            AlreadyRunning => Error::AlreadyRunning { pidfile: odd.clone(), pid: Some(Pid::from_raw(4242)) },
            NotRunning => Error::NotRunning { pidfile: "/run/x.pid".into() },
            Unverified => Error::Unverified { pidfile: odd.clone(), named: Some(Pid::from_raw(4)), holder: Some(Pid::from_raw(77)), command: Some("flock".into()) },
            ForeignProc => Error::ForeignProc { pidfile: odd.clone(), reason: "/proc is another's".into() },
            MissingDirectory => Error::MissingDirectory { path: odd.clone(), action: "open the pidfile", source: errno(libc::ENOENT) },
            Symlink => Error::Symlink { path: odd.clone(), action: "open the pidfile", source: errno(libc::ELOOP) },
            NotAFile => Error::not_a_file("open the pidfile", &odd, "a FIFO"),
            Untrusted => Error::Untrusted { path: odd.clone(), reason: "owned by uid 1000".into() },
            UnsafeDirectory => Error::UnsafeDirectory { path: odd.clone(), directory: "/srv/a\nb".into(), action: "open the log file", reason: "is writable by every user".into() },
            UnsafeFile => Error::UnsafeFile { path: odd.clone(), action: "take the pidfile", reason: "it has 2 hard links".into() },
            Io => Error::io("close inherited descriptors from", Path::new("/proc/self/fd"), errno(libc::EMFILE)),
            Sys => Error::Sys { call: "spawn the control thread", source: io::Error::other("no room") },
            Privileges => Error::Privileges { reason: "setuid failed".into() },
            Listen => Error::Listen { address: "127.0.0.1:80".into(), source: errno(libc::EADDRINUSE) },
            StartTimeout => Error::StartTimeout { after: Duration::from_millis(1500), pid: Some(Pid::from_raw(8)), not_killed: Some(NotSignalled::Unverified { reason: "in session 9, not 7".into() }) },
            DaemonVanished => Error::DaemonVanished,
            StillAlive => Error::StillAlive { pid: Pid::from_raw(99) },
            Body => Error::Body { message: "cannot bind".into() },
            Setup => Error::Setup { message: "no database".into() },
            ReturnedBeforeReady => Error::ReturnedBeforeReady,
            StopHandler => Error::StopHandler { message: "a SIGTERM handler panicked".into() },
            Handover => Error::Handover { pidfile: odd.clone(), kind: crate::error::HandoverKind::Unresponsive, reason: "no answer within 2s".into() },
        }
    }

    #[test]
    fn every_variant_survives_the_pipe() {
        for (variant, error) in samples() {
            assert_eq!(
                tag(&error),
                variant,
                "the sample of {variant} is another variant"
            );
            let decoded = decode(&encode(&error)).unwrap_or_else(|| panic!("{variant} decodes"));
            assert_eq!(format!("{decoded:?}"), format!("{error:?}"));
            assert_eq!(decoded.to_string(), error.to_string());
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
            Error::Threads { count: None },
            timeout(None),
            timeout(Some(NotSignalled::Exited)),
            timeout(Some(NotSignalled::Refused {
                reason: "pidfd_open: Too many open files".into(),
            })),
        ] {
            let decoded = decode(&encode(&error)).expect("decodes");
            assert_eq!(format!("{decoded:?}"), format!("{error:?}"));
        }
    }

    #[test]
    fn every_handover_kind_survives_the_pipe() {
        use crate::error::HandoverKind::*;
        for kind in [
            Absent,
            Foreign,
            PathTooLong,
            Unresponsive,
            Busy,
            Refused,
            Unproven,
            Withdrawn,
        ] {
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
            "close inherited descriptors from",
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
    }

    #[test]
    fn reports_parse() {
        let ok = parse(b"1234\nR");
        assert_eq!(ok.0, Some(Pid::from_raw(1234)));
        assert!(matches!(ok.1, Some(Ok(()))));

        let mut failed = b"99\n".to_vec();
        failed.extend(failure(&Error::not_a_file(
            "open",
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
            message: "boom".into(),
        }));
        assert!(matches!(last_words(&message), Some(Error::Body { message }) if message == "boom"));
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
