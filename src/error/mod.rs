//! The crate's one error type: the variants and their accessors here, what each says in
//! [`display`], the action of a file error in [`action`], and how an error travels from a
//! starting daemon to the caller of `start()` in [`report`].
//!
//! A new variant is written in three places, each of which the compiler asks for: the enum, its
//! message (`display.rs`), and its fields' order in the report (`report.rs`).

/// A public enum whose variants each have their words: the enum, its `Display` (the words), and
/// the list of its variants (`ALL`), for the start report to find one by its words.
macro_rules! worded {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$doc:meta])* $variant:ident => $words:literal,)*
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$doc])* $variant,)*
        }

        impl $name {
            /// Every variant.
            pub(crate) const ALL: &[$name] = &[$($name::$variant),*];

            /// The words of the variant.
            pub(crate) fn words(self) -> &'static str {
                match self {
                    $($name::$variant => $words,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.words())
            }
        }
    };
}

mod action;
mod display;
mod failure;
pub(crate) mod report;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Pid, Signal};

pub use action::Action;
pub(crate) use display::{Tenths, human};
pub(crate) use failure::{Failure, UserError, chain_text};

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
///
/// `Display` is the message alone (`{:#}` adds the sources after it), and `Debug` shows the
/// variant, the message and the source, so that `fn main() -> Result<(), daemons::Error>` and
/// `unwrap()` say what went wrong:
///
/// ```
/// use daemons::{Action, Error};
///
/// let err = Error::Io {
///     action: Action::RemovePidfile,
///     path: "/run/x.pid".into(),
///     source: std::io::Error::from_raw_os_error(libc::EROFS),
/// };
/// assert_eq!(
///     err.to_string(),
///     "cannot remove the pidfile /run/x.pid (the file system is read-only: choose a path on a writable one)"
/// );
/// assert!(format!("{err:#}").ends_with("(the file system is read-only: choose a path on a writable one): Read-only file system (os error 30)"));
/// assert!(format!("{err:?}").starts_with("Io { message: \"cannot remove the pidfile /run/x.pid"));
/// assert!(format!("{err:?}").contains("source: Os { code: 30"));
/// ```
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
    /// A fork was refused: the process runs other threads, or cannot tell how many it runs.
    /// `fork` would copy only the calling thread and leave any lock the others hold locked
    /// forever. `start()` forks, and so does `run()` with [`supervise`](crate::DaemonBuilder::supervise)
    /// (for each body).
    Threads {
        /// How many threads the process runs; `None` when the system does not tell (on Linux,
        /// `/proc` is not mounted), which is refused too.
        count: Option<usize>,
        /// Whether the process looks like a test harness (libtest names its threads after the
        /// tests, and is given `--test-threads` or `RUST_TEST_THREADS`): a `#[test]` always runs
        /// among other threads, and the message then says how to test a daemon instead.
        test_harness: bool,
    },
    /// `fork` failed: the process limit of the user (`RLIMIT_NPROC`, `ulimit -u`) is reached, or
    /// the system is short of memory or processes.
    Fork {
        /// The system's error (`EAGAIN`, `ENOMEM`).
        source: io::Error,
    },
    /// `start()` was called from inside a tokio runtime (in `block_on`, a task, or under
    /// `#[tokio::main]`), with the `tokio` feature: `fork` would leave the runtime's threads,
    /// driver and locks behind in the daemon.
    InsideRuntime,
    /// Another instance holds the pidfile.
    AlreadyRunning {
        /// The pidfile.
        pidfile: PathBuf,
        /// The instance's pid, where the pidfile names it already.
        pid: Option<Pid>,
    },
    /// The pidfile is locked, but not verifiably by the daemon it names: a `flock(1)` reader, a
    /// child the daemon left behind, a stranger, or a process this one cannot see. Its state is
    /// unknown, and nothing is signalled.
    Unverified {
        /// The pidfile.
        pidfile: PathBuf,
        /// The pid the file names, if any.
        named: Option<Pid>,
        /// The process that `/proc/locks` names as holding the lock, if any.
        holder: Option<Pid>,
        /// The holder's command name, where it can be read.
        command: Option<String>,
    },
    /// `/proc` cannot tell who holds a pidfile: it is another pid namespace's, or unreadable.
    ForeignProc {
        /// The pidfile.
        pidfile: PathBuf,
        /// What is wrong with `/proc`.
        reason: String,
    },
    /// A daemon was expected to run, but the pidfile is not held by anyone.
    NotRunning {
        /// The pidfile.
        pidfile: PathBuf,
    },
    /// The pidfile is held by a process that runs another program than the caller: two
    /// programs were given one pidfile. The handle neither counts it as its daemon nor signals
    /// it. (A program upgraded in place, or the same program installed at another path, is not
    /// another program.)
    OtherProgram {
        /// The pidfile.
        pidfile: PathBuf,
        /// The process that holds it.
        pid: Pid,
        /// The executable that process runs.
        program: PathBuf,
    },
    /// The system refused to signal the daemon (`EPERM`): it runs as another user than the
    /// caller, who is not root.
    NotPermitted {
        /// The pidfile.
        pidfile: PathBuf,
        /// The daemon.
        pid: Pid,
        /// The user who owns the pidfile (who started the daemon), by name where it has one.
        user: String,
    },
    /// The directory that should contain a file does not exist.
    MissingDirectory {
        /// The file that could not be created.
        path: PathBuf,
        /// What was being done.
        action: Action,
        /// The system's error (`ENOENT` or `ENOTDIR`).
        source: io::Error,
    },
    /// The pidfile path is a symbolic link, which a pidfile must never be.
    Symlink {
        /// The pidfile.
        path: PathBuf,
        /// What was being done.
        action: Action,
        /// The system's error (`ELOOP` from `O_NOFOLLOW`).
        source: io::Error,
    },
    /// The path names something other than a regular file (a directory, a FIFO, a device).
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What was being done.
        action: Action,
        /// What the path is instead (`EISDIR` for a directory).
        source: io::Error,
    },
    /// As root, a pidfile that someone else could have written: it is not trusted.
    Untrusted {
        /// The pidfile.
        path: PathBuf,
        /// Why it is not trusted.
        reason: String,
    },
    /// As root, a directory on the way to a file that the crate writes (the pidfile, a log) could
    /// be changed by another user: it belongs to one, other users may write it and it is not
    /// sticky, or a symbolic link that another user controls leads through it. Another user
    /// could then replace the file, or point the name elsewhere. Nothing was written.
    ///
    /// Trusted are root and, for a daemon's pidfile and logs, its own
    /// [`user`](crate::DaemonBuilder::user) and group.
    UnsafeDirectory {
        /// The file.
        path: PathBuf,
        /// The directory (or the symbolic link) that is not trusted.
        directory: PathBuf,
        /// What was being done.
        action: Action,
        /// Why it is not trusted, and what to do.
        reason: String,
    },
    /// As root, a file that the crate would write or give to the daemon's user is not safe to:
    /// it has other hard links (another of its names may be a file elsewhere that must not be
    /// written), or it belongs to another user. Nothing was written.
    UnsafeFile {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: Action,
        /// Why it is not safe, and what to do.
        reason: String,
    },
    /// A file operation failed.
    Io {
        /// What was being done.
        action: Action,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The daemon could not listen on an address given to
    /// [`listen`](crate::DaemonBuilder::listen), or a descriptor that the service manager
    /// passed is not a socket it can serve, or not the one its address asks for.
    Listen {
        /// The address, as given; for a passed descriptor, its number and name and what it
        /// is (`descriptor 3 passed by the service manager: it is a TCP stream socket that
        /// does not listen: ...`).
        address: String,
        /// The system's error (`EADDRINUSE`: another process listens there).
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
    /// The daemon did not report within the ready timeout. It was killed, unless
    /// `not_killed` says why not.
    StartTimeout {
        /// The timeout.
        after: Duration,
        /// The daemon's pid, where it was known.
        pid: Option<Pid>,
        /// Why the daemon was not killed: it had exited already, or its pid could not be
        /// verified to be the daemon's any more (it was given to another process), or the system
        /// refused to pin it. `None` when it was killed, or when no pid was known.
        not_killed: Option<NotSignalled>,
    },
    /// The daemon exited during start-up without saying why.
    DaemonVanished,
    /// The daemon is still alive after SIGTERM, the stop timeout and SIGKILL.
    StillAlive {
        /// The daemon's pid.
        pid: Pid,
    },
    /// The daemon's body failed: the body, a step or `get` returned an error or panicked.
    ///
    /// `source()` gives what failed, and its sources: the body's own error, or, for a step or
    /// `get`, an error that says which with the user's as its source; a panic is an error that
    /// says `panicked: MESSAGE`. In the foreground ([`Daemon::run`](crate::Daemon::run)) these
    /// are the user's error values themselves; from a daemon that `start()` detached, its
    /// supervisor or the pidfile, they come back as their texts, each the source of the one
    /// before, so that `{:#}` says the same chain in both.
    ///
    /// ```
    /// use daemons::Error;
    ///
    /// let err = Error::Body { source: "disk full".into() };
    /// assert_eq!(err.to_string(), "the daemon's body failed");
    /// assert_eq!(format!("{err:#}"), "the daemon's body failed: disk full");
    /// assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "disk full");
    /// ```
    ///
    /// In the foreground, the body's error is there as itself:
    ///
    /// ```rust,standalone_crate
    /// use daemons::{Daemon, Error};
    /// use std::io;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let daemon = Daemon::builder()
    ///     .pidfile(dir.path().join("full.pid"))
    ///     .run(|_ctl| Err::<(), _>(io::Error::from_raw_os_error(libc::ENOSPC)))
    ///     .build()?;
    /// match daemon.run() {
    ///     Err(Error::Body { source }) => {
    ///         let io = source.downcast_ref::<io::Error>().expect("the body's own error");
    ///         assert_eq!(io.raw_os_error(), Some(libc::ENOSPC));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Body {
        /// What failed, with its sources.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The set-up given to [`setup`](crate::DaemonBuilder::setup) failed: the daemon did not
    /// start.
    Setup {
        /// The set-up's error, with its sources, or its panic (`panicked: MESSAGE`), as
        /// [`Error::Body`] carries the body's.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// With manual readiness, the body returned without calling `ctl.ready()`.
    ReturnedBeforeReady,
    /// A handler of the stop signal panicked, or a stop hook
    /// ([`on_stop`](crate::DaemonBuilder::on_stop)) failed or panicked, while the daemon was
    /// shutting down.
    StopHandler {
        /// Which handler panicked and the panic's message, or the hook's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The listening sockets could not be handed to a new instance at a restart. `kind` says
    /// why; [`Daemon::restart`](crate::Daemon::restart) falls back to a stop, then a start, for
    /// every kind but [`HandoverKind::Busy`].
    Handover {
        /// The pidfile of the daemon whose sockets were asked for.
        pidfile: PathBuf,
        /// What went wrong, for a program to act on.
        kind: HandoverKind,
        /// What happened, in words, for people.
        reason: String,
    },
}

worded! {
    /// Why the listening sockets could not be handed over at a restart: the `kind` of
    /// [`Error::Handover`].
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Error, HandoverKind};
    ///
    /// fn retry_later(e: &Error) -> bool {
    ///     matches!(e, Error::Handover { kind: HandoverKind::Busy, .. })
    /// }
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum HandoverKind {
        /// Nothing offers the sockets at `PIDFILE.handover`: no socket there, or one where
        /// nobody listens, or a file, directory or FIFO in its place (an instance of an older
        /// build, or one that could not listen there).
        Absent => "absent",
        /// A socket there that the daemon's user did not make: it is not asked.
        Foreign => "foreign",
        /// `PIDFILE.handover` is too long for a Unix socket address on this system.
        PathTooLong => "path-too-long",
        /// The running instance did not answer within the step's timeout (stopped with SIGSTOP,
        /// or stuck).
        Unresponsive => "unresponsive",
        /// Another restart is under way: the running instance is handing its sockets to another
        /// new instance, or its predecessor has not exited yet.
        Busy => "busy",
        /// The running instance refused to hand its sockets to this user: only root and the user
        /// that started it get them.
        Refused => "refused",
        /// What came does not prove that the sender holds the pidfile's lock, or is not what the
        /// protocol says.
        Unproven => "unproven",
        /// The running instance went away, or gave the handover up, before it was done.
        Withdrawn => "withdrawn",
    }
}

/// Why a process was not signalled: every signal the crate sends to another process goes to a
/// process that was pinned first (a pidfd on Linux, a kqueue on macOS and the BSDs) and verified
/// after (the pidfile's lock holder, a member of the daemon's process group, the daemon of this
/// start), and one that cannot be is left alone.
///
/// # Examples
///
/// ```
/// use daemons::{Error, NotSignalled};
/// use std::time::Duration;
///
/// let e = Error::StartTimeout {
///     after: Duration::from_secs(5),
///     pid: Some(daemons::Pid::from_raw(42)),
///     not_killed: Some(NotSignalled::Exited),
/// };
/// assert!(e.to_string().contains("exited already"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotSignalled {
    /// It had exited already: there was nothing left to signal.
    Exited,
    /// The pid no longer names the process that was meant (it exited, and the pid was given to
    /// another process), or that cannot be told.
    Unverified {
        /// What the check found.
        reason: String,
    },
    /// The system refused to pin the process (this process may open no more descriptors, say),
    /// and nothing is signalled unpinned; or refused the signal itself.
    Refused {
        /// The call and the system's error.
        reason: String,
    },
}

impl fmt::Display for NotSignalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSignalled::Exited => f.write_str("it had exited already"),
            NotSignalled::Unverified { reason } => {
                write!(f, "it is no longer verifiably the process meant ({reason})")
            }
            NotSignalled::Refused { reason } => {
                write!(f, "the system refused to pin or signal it ({reason})")
            }
        }
    }
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
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::AlreadyRunning { pidfile, .. }
            | Error::NotRunning { pidfile }
            | Error::OtherProgram { pidfile, .. }
            | Error::NotPermitted { pidfile, .. }
            | Error::Unverified { pidfile, .. }
            | Error::ForeignProc { pidfile, .. }
            | Error::Handover { pidfile, .. } => Some(pidfile),
            Error::MissingDirectory { path, .. }
            | Error::Symlink { path, .. }
            | Error::NotAFile { path, .. }
            | Error::Untrusted { path, .. }
            | Error::UnsafeDirectory { path, .. }
            | Error::UnsafeFile { path, .. }
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
    #[must_use]
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Error::AlreadyRunning { pid, .. } | Error::StartTimeout { pid, .. } => *pid,
            Error::Unverified { holder, .. } => *holder,
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
    /// assert!(matches!(err, daemons::Error::NotAFile { .. }));
    /// assert_eq!(err.io_error().and_then(|e| e.raw_os_error()), Some(libc::EISDIR));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. }
            | Error::Sys { source, .. }
            | Error::MissingDirectory { source, .. }
            | Error::Symlink { source, .. }
            | Error::NotAFile { source, .. }
            | Error::Fork { source }
            | Error::Listen { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(crate) fn io(action: Action, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Classify a failed `open` of `path`: a missing parent directory, a symlink refused by
    /// `O_NOFOLLOW` and a directory get their own variants.
    pub(crate) fn open(action: Action, path: &Path, source: io::Error) -> Error {
        let parent_missing = || {
            path.parent()
                .is_some_and(|dir| !dir.as_os_str().is_empty() && !dir.is_dir())
        };
        let path = path.to_path_buf();
        match source.raw_os_error() {
            // ENOENT also comes from places where files cannot be created (/proc/x.pid):
            // only a parent that really is missing is named as such.
            Some(libc::ENOENT | libc::ENOTDIR) if parent_missing() => Error::MissingDirectory {
                path,
                action,
                source,
            },
            Some(code) if code == libc::ELOOP || Some(code) == NOFOLLOW_ERRNO => Error::Symlink {
                path,
                action,
                source,
            },
            Some(libc::EISDIR) => Error::NotAFile {
                path,
                action,
                source,
            },
            _ => Error::Io {
                action,
                path,
                source,
            },
        }
    }

    pub(crate) fn sys(call: &'static str, errno: nix::Error) -> Error {
        Error::Sys {
            call,
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }

    /// The path is not a regular file: `what` says what it is instead.
    pub(crate) fn not_a_file(action: Action, path: &Path, what: &str) -> Error {
        let source = if what == "a directory" {
            io::Error::from_raw_os_error(libc::EISDIR)
        } else {
            io::Error::other(format!("it is {what}"))
        };
        Error::NotAFile {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn is_permission_denied(&self) -> bool {
        self.io_error()
            .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
    }

    pub(crate) fn setting(setting: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidSetting {
            setting,
            reason: reason.into(),
        }
    }
}

/// What `open` with `O_NOFOLLOW` fails with on a symbolic link besides `ELOOP`, where the
/// system has its own: FreeBSD says `EMLINK`, NetBSD `EFTYPE`.
#[cfg(target_os = "freebsd")]
const NOFOLLOW_ERRNO: Option<i32> = Some(libc::EMLINK);
#[cfg(target_os = "netbsd")]
const NOFOLLOW_ERRNO: Option<i32> = Some(libc::EFTYPE);
#[cfg(not(any(target_os = "freebsd", target_os = "netbsd")))]
const NOFOLLOW_ERRNO: Option<i32> = None;

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Body { source } | Error::Setup { source } | Error::StopHandler { source } => {
                Some(&**source)
            }
            _ => self.io_error().map(|e| e as _),
        }
    }
}

impl fmt::Debug for Error {
    /// The variant, its message and its source, as `std::io::Error` shows an OS error:
    /// `Io { message: "cannot open the pidfile /run/x.pid (...)", source: Os { code: 13, ... } }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = f.debug_struct(self.name());
        shown.field("message", &self.to_string());
        if let Some(source) = std::error::Error::source(self) {
            shown.field("source", &source);
        }
        shown.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::open(
            Action::OpenPidfile,
            Path::new("/nope/x.pid"),
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(matches!(e, Error::MissingDirectory { .. }), "{e:?}");
        assert!(e.to_string().contains("/nope/x.pid"));
        assert!(e.to_string().contains("create it"));
        assert_eq!(
            e.io_error().and_then(io::Error::raw_os_error),
            Some(libc::ENOENT)
        );
        let e = Error::Threads {
            count: Some(3),
            test_harness: false,
        };
        assert!(e.to_string().contains("3 threads"));
        let e = Error::Threads {
            count: None,
            test_harness: false,
        };
        assert!(e.to_string().contains("mount /proc"));
        let e = Error::Fork {
            source: io::Error::from_raw_os_error(libc::EAGAIN),
        };
        assert!(e.to_string().contains("ulimit -u"), "{e}");
        let e = Error::Sys {
            call: "pidfd_open",
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert!(e.to_string().contains("ulimit -n"), "{e}");
        let e = Error::InsideRuntime;
        assert!(e.to_string().contains("before building the runtime"));
    }

    #[test]
    fn the_source_is_said_once() {
        for error in report::samples() {
            let Some(source) = std::error::Error::source(&error) else {
                continue;
            };
            let (message, cause) = (error.to_string(), source.to_string());
            assert!(!message.contains(&cause), "{message:?} repeats {cause:?}");
            let chained = format!("{error:#}");
            assert_eq!(chained, format!("{message}: {}", chain_text(source)));
            let shown = format!("{error:?}");
            assert!(shown.starts_with(error.name()), "{shown}");
            assert!(
                shown.contains("message: ") && shown.contains("source: "),
                "{shown}"
            );
        }
        let threads = format!(
            "{:?}",
            Error::Threads {
                count: Some(2),
                test_harness: false
            }
        );
        assert!(
            threads.starts_with("Threads { message: \"cannot fork: this process runs 2 threads"),
            "{threads}"
        );
    }

    #[test]
    fn a_missing_file_in_a_real_directory_is_not_a_missing_directory() {
        let e = Error::open(
            Action::OpenPidfile,
            Path::new("/proc/x.pid"),
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
    }
}
