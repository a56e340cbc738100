//! The crate's one error type.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Everything that can go wrong when building, starting, probing or stopping a daemon.
///
/// Every message names the path, pid or signal involved and says what to do about it. Errors that
/// happen inside the daemon while it starts (after the fork) travel back to the caller of
/// [`Daemon::start`](crate::Daemon::start) and arrive there as the same variants.
///
/// # Examples
///
/// ```
/// use daemons::{Daemon, Error};
///
/// let err = Daemon::builder().pidfile("/tmp/x.pid").build().unwrap_err();
/// assert!(matches!(err, Error::NoBody));
/// assert!(err.to_string().contains("step"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given no body: one of `run`, `step` or `messages` is needed.
    NoBody,
    /// The builder was given more than one body.
    SeveralBodies,
    /// A handler was registered for a signal that cannot be caught (or must not be).
    ForbiddenSignal {
        /// The signal.
        signal: Signal,
    },
    /// A setting has a value that cannot work.
    InvalidSetting {
        /// The builder method.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `start()` was called in a process that already runs other threads; `fork` would copy only
    /// the calling one and leave any lock they hold locked forever.
    Threads {
        /// How many threads the process runs.
        count: usize,
    },
    /// Another instance holds the pidfile.
    AlreadyRunning {
        /// The pidfile.
        pidfile: PathBuf,
        /// The instance's pid, where the pidfile names it already.
        pid: Option<Pid>,
    },
    /// A daemon was expected to run, but the pidfile is not held by anyone.
    NotRunning {
        /// The pidfile.
        pidfile: PathBuf,
    },
    /// The directory that should contain a file does not exist.
    MissingDirectory {
        /// The file that could not be created.
        path: PathBuf,
    },
    /// The pidfile path is a symbolic link, which a pidfile must never be.
    Symlink {
        /// The pidfile.
        path: PathBuf,
    },
    /// The path names something other than a regular file (a directory, say).
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// As root, a pidfile that someone else could have written: it is not trusted.
    Untrusted {
        /// The pidfile.
        path: PathBuf,
        /// Why it is not trusted.
        reason: String,
    },
    /// A file operation failed.
    Io {
        /// What was being done ("open the pidfile", "open the log file", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A system call that has no path failed (fork, setsid, pipe, ...).
    Sys {
        /// The call.
        call: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The daemon could not switch to its user or group.
    Privileges {
        /// What failed, and for which account.
        reason: String,
    },
    /// The daemon did not report within the ready timeout; it was killed.
    StartTimeout {
        /// The timeout.
        after: Duration,
        /// The daemon's pid, where it was known.
        pid: Option<Pid>,
    },
    /// The daemon exited during start-up without saying why.
    DaemonVanished,
    /// The daemon is still alive after SIGTERM, the stop timeout and SIGKILL.
    StillAlive {
        /// The daemon's pid.
        pid: Pid,
    },
    /// The body failed: it panicked, or a step returned an error.
    Body {
        /// The panic message or the step's error.
        message: String,
    },
    /// A handler of the stop signal panicked while the daemon was shutting down.
    StopHandler {
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// The path the error is about, where there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Pidfile;
    ///
    /// let err = Pidfile::new("/no/such/dir/x.pid").acquire().unwrap_err();
    /// assert_eq!(err.path().unwrap(), std::path::Path::new("/no/such/dir/x.pid"));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::AlreadyRunning { pidfile, .. } | Error::NotRunning { pidfile } => Some(pidfile),
            Error::MissingDirectory { path }
            | Error::Symlink { path }
            | Error::NotAFile { path }
            | Error::Untrusted { path, .. }
            | Error::Io { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The pid the error is about, where there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Error, Pid};
    ///
    /// let err = Error::StillAlive { pid: Pid::from_raw(42) };
    /// assert_eq!(err.pid(), Some(Pid::from_raw(42)));
    /// ```
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Error::AlreadyRunning { pid, .. } | Error::StartTimeout { pid, .. } => *pid,
            Error::StillAlive { pid } => Some(*pid),
            _ => None,
        }
    }

    /// The underlying I/O error, where there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Pidfile;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let err = Pidfile::new(dir.path()).acquire().unwrap_err();
    /// assert!(err.io_error().is_none()); // a directory is named as such, not as an errno
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::Sys { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Classify a failed `open` of `path`: a missing parent directory, a symlink refused by
    /// `O_NOFOLLOW` and a directory get their own variants.
    pub(crate) fn open(action: &'static str, path: &Path, source: io::Error) -> Error {
        let parent_missing = || {
            path.parent()
                .is_some_and(|dir| !dir.as_os_str().is_empty() && !dir.is_dir())
        };
        match source.raw_os_error() {
            // ENOENT also comes from places where files cannot be created (/proc/x.pid):
            // only a parent that really is missing is named as such.
            Some(libc::ENOENT) if parent_missing() => Error::MissingDirectory {
                path: path.to_path_buf(),
            },
            Some(libc::ENOTDIR) if parent_missing() => Error::MissingDirectory {
                path: path.to_path_buf(),
            },
            Some(libc::ELOOP) => Error::Symlink {
                path: path.to_path_buf(),
            },
            Some(libc::EISDIR) => Error::NotAFile {
                path: path.to_path_buf(),
            },
            _ => Error::io(action, path, source),
        }
    }

    pub(crate) fn sys(call: &'static str, errno: nix::Error) -> Error {
        Error::Sys {
            call,
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }

    pub(crate) fn setting(setting: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidSetting {
            setting,
            reason: reason.into(),
        }
    }
}

fn hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (run as a user that may write there, or choose another path)"
        }
        Some(libc::EROFS) => " (the file system is read-only: choose a path on a writable one)",
        Some(libc::ENOSPC) => " (the disk is full: free some space)",
        _ => "",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoBody => write!(
                f,
                "the daemon has no body: give the builder one of .run(|ctl| ...), .step(|| ...) or .messages(get, handle)"
            ),
            Error::SeveralBodies => write!(
                f,
                "the daemon has more than one body: give the builder only one of .run, .step or .messages"
            ),
            Error::ForbiddenSignal { signal } => write!(
                f,
                "{signal} cannot be handled: the kernel does not let a process catch it (or catching it hides a crash); register handlers for other signals"
            ),
            Error::InvalidSetting { setting, reason } => write!(f, ".{setting}(): {reason}"),
            Error::Threads { count } => write!(
                f,
                "start() was called while the process runs {count} threads; fork copies only one of them: start the daemon before spawning threads or building a runtime, and create those inside the body"
            ),
            Error::AlreadyRunning { pidfile, pid } => match pid {
                Some(pid) => write!(
                    f,
                    "already running (pid {pid}, pidfile {}): stop it first, or use restart",
                    pidfile.display()
                ),
                None => write!(
                    f,
                    "already running or starting (pidfile {} is locked): stop it first, or use restart",
                    pidfile.display()
                ),
            },
            Error::NotRunning { pidfile } => write!(
                f,
                "not running (no process holds pidfile {}): start it first",
                pidfile.display()
            ),
            Error::MissingDirectory { path } => write!(
                f,
                "{}: the directory does not exist (create it first, or choose another path)",
                path.display()
            ),
            Error::Symlink { path } => write!(
                f,
                "{}: the pidfile is a symbolic link, which is refused (remove the link, or give the real path)",
                path.display()
            ),
            Error::NotAFile { path } => write!(
                f,
                "{}: not a regular file (give the path of a file, not of a directory or device)",
                path.display()
            ),
            Error::Untrusted { path, reason } => write!(
                f,
                "{}: refusing to trust this pidfile as root: {reason} (remove it, or fix its owner and mode)",
                path.display()
            ),
            Error::Io {
                action,
                path,
                source,
            } => write!(
                f,
                "cannot {action} {}: {source}{}",
                path.display(),
                hint(source)
            ),
            Error::Sys { call, source } => write!(f, "{call} failed: {source}"),
            Error::Privileges { reason } => write!(
                f,
                "cannot drop privileges: {reason} (start the daemon as root, or leave out .user() and .group())"
            ),
            Error::StartTimeout { after, pid } => {
                write!(f, "the daemon did not report ready within {after:?}")?;
                if let Some(pid) = pid {
                    write!(f, " and was killed (pid {pid})")?;
                }
                write!(
                    f,
                    "; raise .ready_timeout() or look at its stderr log for the cause"
                )
            }
            Error::DaemonVanished => write!(
                f,
                "the daemon exited during start-up without reporting; look at its stderr log for the cause"
            ),
            Error::StillAlive { pid } => write!(
                f,
                "pid {pid} is still alive after SIGTERM and SIGKILL (stuck in the kernel?); look at /proc/{pid}/stack"
            ),
            Error::Body { message } => write!(f, "the daemon's body failed: {message}"),
            Error::StopHandler { message } => {
                write!(f, "a stop-signal handler failed: {message}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Sys { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<derive_builder::UninitializedFieldError> for Error {
    fn from(e: derive_builder::UninitializedFieldError) -> Error {
        Error::setting(
            e.field_name(),
            format!("is required: call .{}(...) on the builder", e.field_name()),
        )
    }
}

// The daemon reports its start-up error to the caller through a pipe. The encoding is private to
// one build of this crate (both ends are the same binary), so it only needs to be unambiguous:
// a tag byte, then fields separated by NUL. Errors that cannot occur in a starting daemon travel
// as their message.
const SEP: u8 = 0;

impl Error {
    pub(crate) fn encode(&self) -> Vec<u8> {
        fn path_bytes(p: &Path) -> &[u8] {
            p.as_os_str().as_bytes()
        }
        let mut out = Vec::new();
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(bytes);
            out.push(SEP);
        };
        match self {
            Error::AlreadyRunning { pidfile, pid } => {
                field(b"A");
                field(path_bytes(pidfile));
                field(pid.map_or(0, Pid::as_raw).to_string().as_bytes());
            }
            Error::MissingDirectory { path } => {
                field(b"M");
                field(path_bytes(path));
            }
            Error::Symlink { path } => {
                field(b"L");
                field(path_bytes(path));
            }
            Error::NotAFile { path } => {
                field(b"F");
                field(path_bytes(path));
            }
            Error::Untrusted { path, reason } => {
                field(b"U");
                field(path_bytes(path));
                field(reason.as_bytes());
            }
            Error::Io {
                action,
                path,
                source,
            } => {
                field(b"I");
                field(action.as_bytes());
                field(path_bytes(path));
                field(source.raw_os_error().unwrap_or(0).to_string().as_bytes());
                field(source.to_string().as_bytes());
            }
            Error::Sys { call, source } => {
                field(b"S");
                field(call.as_bytes());
                field(source.raw_os_error().unwrap_or(0).to_string().as_bytes());
            }
            Error::Privileges { reason } => {
                field(b"P");
                field(reason.as_bytes());
            }
            Error::InvalidSetting { setting, reason } => {
                field(b"V");
                field(setting.as_bytes());
                field(reason.as_bytes());
            }
            Error::Body { message } => {
                field(b"B");
                field(message.as_bytes());
            }
            other => {
                field(b"B");
                field(other.to_string().as_bytes());
            }
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Error {
        let mut fields = bytes.split(|&b| b == SEP);
        let tag = fields.next().unwrap_or_default();
        let mut next = || fields.next().unwrap_or_default();
        let path = |b: &[u8]| PathBuf::from(OsString::from_vec(b.to_vec()));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let number = |b: &[u8]| text(b).parse::<i32>().unwrap_or(0);
        match tag {
            b"A" => {
                let pidfile = path(next());
                let pid = Some(number(next())).filter(|&p| p > 0).map(Pid::from_raw);
                Error::AlreadyRunning { pidfile, pid }
            }
            b"M" => Error::MissingDirectory { path: path(next()) },
            b"L" => Error::Symlink { path: path(next()) },
            b"F" => Error::NotAFile { path: path(next()) },
            b"U" => Error::Untrusted {
                path: path(next()),
                reason: text(next()),
            },
            b"I" => {
                let action = static_action(&text(next()));
                let path = path(next());
                let errno = number(next());
                let message = text(next());
                let source = if errno != 0 {
                    io::Error::from_raw_os_error(errno)
                } else {
                    io::Error::other(message)
                };
                Error::Io {
                    action,
                    path,
                    source,
                }
            }
            b"S" => {
                let call = static_action(&text(next()));
                Error::Sys {
                    call,
                    source: io::Error::from_raw_os_error(number(next())),
                }
            }
            b"V" => {
                let setting = static_action(&text(next()));
                Error::InvalidSetting {
                    setting,
                    reason: text(next()),
                }
            }
            b"P" => Error::Privileges {
                reason: text(next()),
            },
            b"B" => Error::Body {
                message: text(next()),
            },
            _ => Error::DaemonVanished,
        }
    }
}

/// The actions and calls named in errors are static strings of this crate; map a decoded one back
/// to its static form so that `Error` stays free of owned strings there.
fn static_action(s: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "open the pidfile",
        "lock the pidfile",
        "write the pidfile",
        "remove the pidfile",
        "read the pidfile",
        "open the log file",
        "open",
        "change to the working directory",
        "setsid",
        "fork",
        "pipe",
        "sigprocmask",
        "sigaction",
        "dup2",
        "install signal handlers",
        "spawn the control thread",
        "close inherited descriptors",
        "user",
        "group",
        "setgroups",
        "setgid",
        "setuid",
        "pidfd_open",
        "pidfd_send_signal",
        "poll",
    ];
    KNOWN.iter().find(|k| **k == s).copied().unwrap_or("set up")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(e: Error) -> Error {
        Error::decode(&e.encode())
    }

    #[test]
    fn already_running_survives_the_pipe() {
        let e = roundtrip(Error::AlreadyRunning {
            pidfile: "/run/x.pid".into(),
            pid: Some(Pid::from_raw(4242)),
        });
        match e {
            Error::AlreadyRunning { pidfile, pid } => {
                assert_eq!(pidfile, Path::new("/run/x.pid"));
                assert_eq!(pid, Some(Pid::from_raw(4242)));
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn io_errors_keep_errno_action_and_path() {
        let e = roundtrip(Error::io(
            "open the log file",
            Path::new("/var/log/x.log"),
            io::Error::from_raw_os_error(libc::EACCES),
        ));
        match &e {
            Error::Io {
                action,
                path,
                source,
            } => {
                assert_eq!(*action, "open the log file");
                assert_eq!(path, Path::new("/var/log/x.log"));
                assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
            }
            other => panic!("decoded as {other:?}"),
        }
        assert!(e.to_string().contains("may write there"), "{e}");
    }

    #[test]
    fn paths_with_odd_bytes_survive() {
        let odd = PathBuf::from(OsString::from_vec(b"/tmp/a\nb\xff.pid".to_vec()));
        match roundtrip(Error::Symlink { path: odd.clone() }) {
            Error::Symlink { path } => assert_eq!(path, odd),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn body_messages_are_not_wrapped_twice() {
        let e = roundtrip(Error::Body {
            message: "cannot bind".into(),
        });
        assert_eq!(e.to_string(), "the daemon's body failed: cannot bind");
    }

    #[test]
    fn garbage_decodes_to_vanished() {
        assert!(matches!(Error::decode(b"zzz"), Error::DaemonVanished));
        assert!(matches!(Error::decode(b""), Error::DaemonVanished));
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::MissingDirectory {
            path: "/nope/x.pid".into(),
        };
        assert!(e.to_string().contains("/nope/x.pid"));
        assert!(e.to_string().contains("create it"));
        let e = Error::Threads { count: 3 };
        assert!(e.to_string().contains("3 threads"));
    }
}
