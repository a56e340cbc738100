//! The pidfile: a lock, not a guess.
//!
//! A daemon holds an exclusive `flock` on its pidfile for its whole life. The lock, not the pid
//! written in the file, is what says "running": a file that nobody has locked is stale whatever
//! pid it names, so a pid that the kernel has since given to an unrelated process is never taken
//! for the daemon. Probing checks that the pid named in the file is the process that holds the
//! lock (on Linux, in `/proc/PID/fdinfo`); it never writes and never takes a lock that could make
//! a concurrent [`Pidfile::acquire`] fail (one that meets a probe's brief shared lock retries).
//!
//! # Platform-specific behavior
//!
//! The lock is a `flock` everywhere; what differs is how a probe learns who holds it:
//!
//! - Linux: the `lock:` line of `/proc/PID/fdinfo/FD` names the process that took the lock, on
//!   this very file. When the pid named is not the holder, `/proc/locks` names who is.
//! - macOS, FreeBSD, NetBSD (and Linux built with `--cfg daemons_portable`): the kernel does
//!   not name a lock's holder. A probe takes a shared lock without blocking on its own
//!   descriptor: taken (and dropped at once), the file is stale; refused, it is held, and the
//!   pid named is the holder if it has this very file open, matched by device and inode
//!   (`proc_pidinfo` on macOS; `kern.proc.filedesc` on FreeBSD, which also says that the
//!   descriptor holds a lock; `kern.file2` on NetBSD, which says so too, and which names the
//!   file only to root: elsewhere `/proc/PID/fd` where procfs is mounted; `/proc/PID/fd` on
//!   Linux). A locked file whose pid does not have it open, or whose pid's descriptors cannot
//!   be read, is [`Error::Unverified`]: nobody names the holder, and nothing is signalled. A
//!   daemon in a pid namespace of its own is only recognized on Linux.
//! - The pidfile is created locked under a temporary name that nobody can foresee (random bits
//!   from `getrandom`, or `arc4random_buf` outside Linux) and then given its own name unless
//!   something is there: `renameat2(RENAME_NOREPLACE)` on Linux, `renameatx_np(RENAME_EXCL)` on
//!   macOS, a hard link and an unlink on the BSDs; where the file system allows none of these,
//!   it is created in place and visible, unlocked, for the moment between its creation and its
//!   lock.
//!
//! What writes the pidfile (creates it, writes it, renames or removes it) goes through the
//! crate's path gate: no symbolic link is followed, and, as root, every directory from `/` down
//! to the pidfile's must belong to root and be writable by root only, or be sticky, as `/tmp` is
//! ([`Error::UnsafeDirectory`] names the one that is not), and a file with other hard links is
//! refused ([`Error::UnsafeFile`]). Otherwise another user could move the pidfile of a running
//! daemon away, and `stop` and `status` would no longer find it.
//!
//! [`Pidfile`] works on its own, without the builder:
//!
//! ```
//! use daemons::{Pidfile, Status};
//!
//! let dir = tempfile::tempdir()?;
//! let pidfile = Pidfile::new(dir.path().join("tool.pid"));
//! assert_eq!(pidfile.probe()?, Status::NotRunning);
//!
//! let lock = pidfile.acquire()?;                 // this process is now "running"
//! let me = daemons::Pid::this();
//! assert_eq!(pidfile.read()?, Some(me));
//! assert_eq!(pidfile.probe()?, Status::Running(me));
//! assert!(pidfile.acquire().is_err());           // a second instance is refused
//!
//! lock.release()?;                               // unlinks the file, then unlocks it
//! assert_eq!(pidfile.probe()?, Status::NotRunning);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The pidfile's concerns, one file each: this one is the public face (`Pidfile`, `Status`, the
// probe); `create` opens the file and takes its lock; `holder` finds who holds the lock;
// `lock` is the held lock (`PidfileLock`) and what it writes; `content` is the file's lines.
mod content;
mod create;
mod holder;
mod lock;

use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Pid;
use nix::unistd::geteuid;

use crate::error::{Action, Error, Tenths};
use crate::gate::path::{Dir, Trusted};
use crate::sync::Backoff;
use crate::sys;

pub(crate) use content::Content;
pub(crate) use content::Note;
use create::Take;
use holder::Lock;
pub use lock::PidfileLock;

/// How long a start or a probe waits for a locked pidfile to name its holder. A daemon writes its
/// pid microseconds after it takes the lock, and a probe from another user holds a shared lock for
/// microseconds, so this is only reached when something really is stuck.
const SETTLE: Duration = Duration::from_millis(500);

/// A locked pidfile that names no pid is a daemon starting only if it was written this recently;
/// a lock held for longer by a process that never wrote its pid is not a daemon's.
const STARTING: Duration = Duration::from_secs(5);

/// A pidfile path, and the operations on it.
///
/// # Examples
///
/// ```
/// use daemons::{Pidfile, Status};
///
/// let pidfile = Pidfile::new("/tmp/daemons-doc-nobody-uses-this.pid");
/// assert_eq!(pidfile.probe()?, Status::NotRunning);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pidfile {
    path: PathBuf,
    /// Who besides root may own the pidfile's directories: a daemon's own user.
    trusted: Trusted,
}

/// Whether a daemon runs, as its pidfile's lock tells: what [`Pidfile::probe`] and
/// [`Daemon::status`](crate::Daemon::status) find.
///
/// # Examples
///
/// ```
/// use daemons::{Pid, Pidfile, Status};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("old.pid");
/// std::fs::write(&path, "999999\n")?;   // left behind by a daemon that was killed
/// let status = Pidfile::new(&path).probe()?;
/// assert_eq!(status, Status::Dead { pid: Some(Pid::from_raw(999999)), failure: None });
/// assert!(!status.is_running());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// The daemon runs with this pid: it holds the pidfile's lock.
    Running(Pid),
    /// The pidfile is locked by a daemon that has not written its pid yet.
    Starting,
    /// The daemon is gone but left its pidfile behind: nobody holds the lock. `pid` is what the
    /// file names, which may now be an unrelated process: it is never signalled. The file is
    /// safe to remove.
    Dead {
        /// The pid written in the stale pidfile, if any.
        pid: Option<Pid>,
        /// Why it died, when it failed by itself (its body returned an error or panicked): the
        /// daemon leaves the reason in its pidfile, and it stays there until the next start.
        /// `None` when it was killed (`kill -9`, a crash), which leaves no word.
        failure: Option<String>,
    },
    /// There is no pidfile: the daemon is not running.
    NotRunning,
    /// A supervisor runs with this pid (it holds the pidfile's lock), and runs the body in
    /// `child` (see [`Supervision`](crate::Supervision)). `restarts` counts the children it started
    /// again after the first.
    Supervised {
        /// The supervisor: what `stop()` and `send()` signal.
        pid: Pid,
        /// The process that runs the body now, if one does (none during a backoff wait). The pid
        /// that the pidfile names is shown only if it is a child of the supervisor.
        child: Option<Pid>,
        /// How many times the body was started again.
        restarts: u32,
        /// During a backoff wait, how long until the next child starts (zero when it is due).
        restart_in: Option<Duration>,
        /// How the last child ended (`exit code 1`, `killed by SIGSEGV`), once one has.
        last_end: Option<String>,
    },
}

impl Status {
    /// Whether a daemon process is alive (running or starting).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!daemons::Status::NotRunning.is_running());
    /// assert!(daemons::Status::Starting.is_running());
    /// ```
    #[must_use]
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            Status::Running(_) | Status::Starting | Status::Supervised { .. }
        )
    }

    /// The pid of the running daemon, if there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Pid, Status};
    ///
    /// assert_eq!(Status::Running(Pid::from_raw(7)).pid(), Some(Pid::from_raw(7)));
    /// assert_eq!(Status::Dead { pid: Some(Pid::from_raw(7)), failure: None }.pid(), None);
    /// ```
    #[must_use]
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Status::Running(pid) | Status::Supervised { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

impl Status {
    /// The same words as [`Display`](fmt::Display), naming `pidfile` where it is left: what
    /// [`cli`](crate::cli) prints.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Pid, Status};
    /// use std::path::Path;
    ///
    /// let killed = Status::Dead { pid: Some(Pid::from_raw(42)), failure: None };
    /// assert_eq!(
    ///     killed.with_pidfile(Path::new("/run/x.pid")).to_string(),
    ///     "not running, but pidfile /run/x.pid is left, it names pid 42"
    /// );
    /// // Where it looked, so that a pidfile path that differs from the daemon's shows.
    /// assert_eq!(
    ///     Status::NotRunning.with_pidfile(Path::new("/run/x.pid")).to_string(),
    ///     "not running (no daemon holds pidfile /run/x.pid)"
    /// );
    /// ```
    #[must_use]
    pub fn with_pidfile<'a>(&'a self, pidfile: &'a Path) -> impl fmt::Display + 'a {
        Words {
            status: self,
            pidfile: Some(pidfile),
        }
    }
}

/// The words of a [`Status`], and the pidfile they name where it is left, if known.
struct Words<'a> {
    status: &'a Status,
    pidfile: Option<&'a Path>,
}

impl fmt::Display for Words<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left = |f: &mut fmt::Formatter<'_>| match self.pidfile {
            Some(pidfile) => write!(f, "pidfile {} is left", pidfile.display()),
            None => f.write_str("its pidfile is left"),
        };
        match self.status {
            Status::Running(pid) => write!(f, "running (pid {pid})"),
            Status::Starting => f.write_str("starting"),
            Status::Dead {
                pid,
                failure: Some(failure),
            } => {
                f.write_str("failed")?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                write!(f, ": {failure}; ")?;
                left(f)
            }
            Status::Dead { pid, failure: None } => {
                f.write_str("not running, but ")?;
                left(f)?;
                match pid {
                    Some(pid) => write!(f, ", it names pid {pid}"),
                    None => Ok(()),
                }
            }
            Status::NotRunning => match self.pidfile {
                Some(pidfile) => write!(
                    f,
                    "not running (no daemon holds pidfile {})",
                    pidfile.display()
                ),
                None => f.write_str("not running"),
            },
            Status::Supervised {
                pid,
                child,
                restarts,
                restart_in,
                last_end,
            } => {
                write!(f, "running (pid {pid}, supervised; ")?;
                match (child, restart_in) {
                    (None, Some(wait)) => {
                        write!(f, "restarting in {} s (restart {restarts}", Tenths(*wait))?;
                        if let Some(last) = last_end {
                            write!(f, ", last: {last}")?;
                        }
                        f.write_str("))")
                    }
                    _ => {
                        if let Some(child) = child {
                            write!(f, "its body runs in pid {child}; ")?;
                        }
                        write!(f, "{restarts} restarts")?;
                        if let (Some(last), true) = (last_end, *restarts > 0) {
                            write!(f, ", the last after {last}")?;
                        }
                        f.write_str(")")
                    }
                }
            }
        }
    }
}

impl fmt::Display for Status {
    /// What `status` says, one format per state:
    ///
    /// ```
    /// use daemons::{Pid, Status};
    /// use std::time::Duration;
    ///
    /// let pid = Pid::from_raw(42);
    /// assert_eq!(Status::Running(pid).to_string(), "running (pid 42)");
    /// assert_eq!(Status::Starting.to_string(), "starting");
    /// assert_eq!(
    ///     Status::Dead { pid: Some(pid), failure: Some("the disk is full".into()) }.to_string(),
    ///     "failed (pid 42): the disk is full; its pidfile is left"
    /// );
    /// assert_eq!(
    ///     Status::Dead { pid: Some(pid), failure: None }.to_string(),
    ///     "not running, but its pidfile is left, it names pid 42"
    /// );
    /// assert_eq!(
    ///     Status::Dead { pid: None, failure: None }.to_string(),
    ///     "not running, but its pidfile is left"
    /// );
    /// assert_eq!(Status::NotRunning.to_string(), "not running");
    /// let supervised = Status::Supervised {
    ///     pid,
    ///     child: Some(Pid::from_raw(43)),
    ///     restarts: 2,
    ///     restart_in: None,
    ///     last_end: Some("exit code 1".into()),
    /// };
    /// assert_eq!(
    ///     supervised.to_string(),
    ///     "running (pid 42, supervised; its body runs in pid 43; 2 restarts, the last after exit code 1)"
    /// );
    /// let waiting = Status::Supervised {
    ///     pid,
    ///     child: None,
    ///     restarts: 3,
    ///     restart_in: Some(Duration::from_millis(3240)),
    ///     last_end: Some("exit code 1".into()),
    /// };
    /// assert_eq!(
    ///     waiting.to_string(),
    ///     "running (pid 42, supervised; restarting in 3.2 s (restart 3, last: exit code 1))"
    /// );
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Words {
            status: self,
            pidfile: None,
        }
        .fmt(f)
    }
}

impl Pidfile {
    /// A pidfile at `path`. Nothing is touched until a method is called.
    ///
    /// # Examples
    ///
    /// ```
    /// let pidfile = daemons::Pidfile::new("/run/user/1000/tool.pid");
    /// assert_eq!(pidfile.path(), std::path::Path::new("/run/user/1000/tool.pid"));
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Pidfile {
        Pidfile {
            path: path.into(),
            trusted: Trusted::default(),
        }
    }

    /// The same pidfile, whose directories may also belong to `trusted` when root writes it: a
    /// daemon's own user.
    pub(crate) fn trusting(mut self, trusted: Trusted) -> Pidfile {
        self.trusted = trusted;
        self
    }

    /// The pidfile's directory, checked as root before `action` (see
    /// [`gate::path`](crate::gate::path)).
    pub(crate) fn dir(&self, action: Action) -> Result<Dir, Error> {
        Dir::of(&self.path, action, self.trusted)
    }

    /// The path.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(daemons::Pidfile::new("x.pid").path().ends_with("x.pid"));
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the pidfile for this process: create it (mode 0644, never through a symlink, and
    /// locked before it appears at its path), or open the stale one that is there; lock it
    /// exclusively without blocking; check that the path still names the file that was locked;
    /// and write this process's pid into it.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] when a daemon holds the lock (with its pid once it has written
    /// it); [`Error::Unverified`] when the lock is held by a process that is not the daemon the
    /// file names; [`Error::MissingDirectory`], [`Error::Symlink`], [`Error::NotAFile`],
    /// [`Error::Untrusted`] or [`Error::Io`] when the path cannot be a pidfile; as root,
    /// [`Error::UnsafeDirectory`] when another user could change a directory on the way to it
    /// (every directory from `/` down must belong to root and be writable by root only, or be
    /// sticky, as `/tmp` is), and [`Error::UnsafeFile`] for a file with other hard links.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Error, Pidfile};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let pidfile = Pidfile::new(dir.path().join("one.pid"));
    /// let _lock = pidfile.acquire()?;
    /// let second = pidfile.acquire().unwrap_err();
    /// assert!(matches!(second, Error::AlreadyRunning { pid: Some(_), .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<PidfileLock, Error> {
        let mut lock = self.lock()?;
        lock.write_pid()?;
        Ok(lock)
    }

    /// Find out, without writing anything, whether a live process holds the pidfile.
    ///
    /// A file whose lock is held by the pid it names is [`Status::Running`]; one nobody holds is
    /// [`Status::Dead`], even if the pid it names belongs to a live process (a reused pid). A
    /// locked file that names no pid yet is retried for a moment, then reported as
    /// [`Status::Starting`] if it was written moments ago.
    ///
    /// When the pid named does not verifiably hold the lock, `/proc/locks` names the holder: a
    /// daemon in a pid namespace of its own (whose file names its pid there, as `NSpid:` in
    /// `/proc/PID/status` shows) is reported with its pid in this namespace; any other holder
    /// is [`Error::Unverified`], and no pid is reported as the daemon's.
    ///
    /// # Platform-specific behavior
    ///
    /// Outside Linux (and on Linux built with `--cfg daemons_portable`) nothing names a lock's
    /// holder: a locked file is held by the pid it names if that pid has the file open (see
    /// [the module documentation](self)), and [`Error::Unverified`] otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Unverified`] when the lock is held by a process that is not the daemon the file
    /// names (a `flock(1)` reader, a leftover child, a stranger), or by one that cannot be seen;
    /// [`Error::ForeignProc`] when `/proc` is another pid namespace's; [`Error::Symlink`] or
    /// [`Error::NotAFile`] when the path cannot be a pidfile, and, as root, [`Error::Untrusted`]
    /// for a file that another user could have written.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Pidfile, Status};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("garbage.pid");
    /// std::fs::write(&path, "not a pid")?;
    /// assert_eq!(Pidfile::new(&path).probe()?, Status::Dead { pid: None, failure: None });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn probe(&self) -> Result<Status, Error> {
        let mut backoff = Backoff::within(SETTLE);
        loop {
            let found = self.probe_once()?;
            let settled = match &found {
                Probed::Status(status) => *status != Status::Starting,
                Probed::Unverified { .. } | Probed::Gone => false,
            };
            if settled || !backoff.sleep() {
                return match found {
                    Probed::Status(status) => Ok(status),
                    Probed::Gone => Ok(Status::NotRunning),
                    Probed::Unverified { named, holder } => Err(self.unverified(named, holder)),
                };
            }
        }
    }

    fn probe_once(&self) -> Result<Probed, Error> {
        // A file that a stopping daemon unlinks and unlocks between our open and our look is
        // not stale: the path no longer names it, and a second look finds what is there now.
        for _ in 0..4 {
            let found = self.probe_file()?;
            if !matches!(found, Probed::Gone) {
                return Ok(found);
            }
        }
        Ok(Probed::Status(Status::NotRunning))
    }

    fn probe_file(&self) -> Result<Probed, Error> {
        let Some(file) = self.open()? else {
            return Ok(Probed::Status(Status::NotRunning));
        };
        let meta = self.check(&file)?;
        Ok(match self.examine(&file, &meta)? {
            Lock::Free if !same_file(&self.path, &meta) => Probed::Gone,
            Lock::Free => {
                let content = Content::read(&file);
                Probed::Status(Status::Dead {
                    pid: content.pid,
                    failure: content.failure(),
                })
            }
            Lock::Held(pid) => Probed::Status(match Content::read(&file).note {
                Some(Note::Supervising {
                    child,
                    restarts,
                    next,
                    last,
                }) => {
                    // Whoever can write the file can write any pid there: only a child of the
                    // supervisor is its body's process.
                    let child = child.filter(|&child| sys::parent_of(child) == Some(pid));
                    Status::Supervised {
                        pid,
                        child,
                        restarts,
                        // The wall clock: the writer is another process.
                        restart_in: next.filter(|_| child.is_none()).map(|at| {
                            at.duration_since(std::time::SystemTime::now())
                                .unwrap_or_default()
                        }),
                        last_end: last,
                    }
                }
                _ => Status::Running(pid),
            }),
            Lock::Starting => Probed::Status(Status::Starting),
            Lock::Unverified { named, holder } => Probed::Unverified { named, holder },
        })
    }

    /// The pid written in the pidfile, if it exists and holds one. This says nothing about
    /// whether that process is the daemon: use [`probe`](Pidfile::probe) for that.
    ///
    /// # Errors
    ///
    /// [`Error::Symlink`], [`Error::NotAFile`] or [`Error::Io`] when the file cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Pid, Pidfile};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("x.pid");
    /// assert_eq!(Pidfile::new(&path).read()?, None);
    /// std::fs::write(&path, "1234\n")?;
    /// assert_eq!(Pidfile::new(&path).read()?, Some(Pid::from_raw(1234)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read(&self) -> Result<Option<Pid>, Error> {
        Ok(self
            .open_identified()?
            .and_then(|(content, _, _)| content.pid))
    }

    /// The pidfile, open for reading and checked, what it says (the pid, and a note after it),
    /// and the file's identity; `None` when there is no file.
    pub(crate) fn open_identified(&self) -> Result<Option<(Content, File, fs::Metadata)>, Error> {
        let Some(file) = self.open()? else {
            return Ok(None);
        };
        let meta = self.check(&file)?;
        Ok(Some((Content::read(&file), file, meta)))
    }

    /// Whether the path still names the file identified by `meta`.
    pub(crate) fn names(&self, meta: &fs::Metadata) -> bool {
        same_file(&self.path, meta)
    }

    /// The other instance of a restart under way that the pidfile names after the first pid
    /// (`handover: PID`), if it does. Whether it holds the lock is for the caller to check.
    pub(crate) fn partner(&self) -> Result<Option<Pid>, Error> {
        Ok(self
            .open_identified()?
            .and_then(|(content, _, _)| content.handover()))
    }

    /// Remove a stale pidfile. The file is locked first, so a pidfile that a live daemon holds is
    /// never removed; a missing file is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] when a process holds the lock; [`Error::Io`] when the file
    /// cannot be removed; as root, [`Error::UnsafeDirectory`] when another user could change a
    /// directory on the way to it, and nothing is removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Pidfile;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("stale.pid");
    /// std::fs::write(&path, "12345\n")?;
    /// Pidfile::new(&path).remove()?;
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self) -> Result<(), Error> {
        self.remove_and(|| {})
    }

    /// [`remove`](Pidfile::remove), doing `also` while the stale file is locked, before it is
    /// unlinked: no instance can start meanwhile.
    pub(crate) fn remove_and(&self, also: impl FnOnce()) -> Result<(), Error> {
        let Some(file) = self.open()? else {
            return Ok(());
        };
        let meta = self.check(&file)?;
        if !self.try_lock(&file, Take::Exclusive)? {
            return Err(Error::AlreadyRunning {
                pidfile: self.path.clone(),
                pid: None,
            });
        }
        let dir = self.dir(Action::RemovePidfile)?;
        also();
        dir.remove_if_names(&self.path, &meta)
            .map_err(|e| Error::io(Action::RemovePidfile, &self.path, e))
    }

    /// Where the daemon of this pidfile offers its listening sockets to a successor at a
    /// restart: a socket file beside the pidfile, `PIDFILE.handover`, which goes with a stale
    /// pidfile ([`remove_stale_offer`](Pidfile::remove_stale_offer)).
    pub(crate) fn offer_path(&self) -> PathBuf {
        let mut path = self.path.as_os_str().to_owned();
        path.push(".handover");
        PathBuf::from(path)
    }

    /// Remove the offer socket that a daemon left behind: a socket where nobody listens. For
    /// the end of a stop, under the lock of the stale pidfile ([`remove_and`](Pidfile::remove_and)),
    /// so that no instance that starts meanwhile has bound its own (a daemon that dropped root
    /// cannot remove root's socket file itself, nor one that was killed).
    pub(crate) fn remove_stale_offer(&self) {
        let path = self.offer_path();
        let stale = fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_socket())
            && sys::nobody_listens(&path);
        if stale && let Ok(dir) = self.dir(Action::RemoveOffer) {
            let _ = dir.remove(&path);
        }
    }
}

/// What one probe found.
enum Probed {
    Status(Status),
    /// The file opened was unlinked meanwhile: look again.
    Gone,
    Unverified {
        named: Option<Pid>,
        holder: Option<Pid>,
    },
}

/// The conventional directory for a pidfile: `/run` for root, `$XDG_RUNTIME_DIR` for a user who
/// has one (systemd gives each logged-in user `/run/user/UID`, removed at logout), else the
/// temporary directory.
///
/// # Examples
///
/// ```
/// let pidfile = daemons::pidfile::runtime_dir().join("counter.pid");
/// assert!(pidfile.is_absolute());
/// ```
pub fn runtime_dir() -> PathBuf {
    if geteuid().is_root() {
        return PathBuf::from("/run");
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && dir.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

fn same_file(path: &Path, meta: &fs::Metadata) -> bool {
    fs::symlink_metadata(path).is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let pidfile = Pidfile::new(&link);
        assert!(matches!(pidfile.acquire(), Err(Error::Symlink { .. })));
        assert!(matches!(pidfile.probe(), Err(Error::Symlink { .. })));
        assert!(!target.exists(), "nothing was created through the link");
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope/x.pid");
        match Pidfile::new(&path).acquire() {
            Err(Error::MissingDirectory { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
    }
}
