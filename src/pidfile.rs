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

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::unistd::{Pid, geteuid};

use crate::error::{Action, Error};
use crate::gate::path::{Dir, Trusted};
use crate::sys::{self, holds_flock};

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
    /// `child` (see [`Restart`](crate::Restart)). `restarts` counts the children it started
    /// again after the first.
    Supervised {
        /// The supervisor: what `stop()` and `send()` signal.
        pid: Pid,
        /// The process that runs the body now, if one does (none during a backoff wait). The pid
        /// that the pidfile names is shown only if it is a child of the supervisor.
        child: Option<Pid>,
        /// How many times the body was started again.
        restarts: u32,
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
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Status::Running(pid) | Status::Supervised { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Running(pid) => write!(f, "running (pid {pid})"),
            Status::Starting => f.write_str("starting"),
            Status::Dead {
                failure: Some(failure),
                ..
            } => write!(f, "failed: {failure}"),
            Status::Dead { pid: Some(pid), .. } => {
                write!(f, "not running (stale pidfile names pid {pid})")
            }
            Status::Dead { pid: None, .. } => f.write_str("not running (stale pidfile)"),
            Status::NotRunning => f.write_str("not running"),
            Status::Supervised {
                pid,
                child,
                restarts,
            } => {
                write!(f, "running (pid {pid}, supervised")?;
                if let Some(child) = child {
                    write!(f, "; its body runs in pid {child}")?;
                }
                write!(f, "; {restarts} restarts)")
            }
        }
    }
}

/// The exclusive lock on a pidfile, held for the daemon's life.
///
/// Dropping it, or calling [`release`](PidfileLock::release), unlinks the file and then unlocks
/// it, in that order, so that a successor's pidfile is never deleted. A process that exits
/// without either (killed, or `process::exit`) leaves a stale file, which the next
/// [`Pidfile::acquire`] or `stop()` takes care of.
///
/// The descriptor is close-on-exec, so programs that the daemon executes do not inherit the lock,
/// and a child that the process forks without exec closes it at once (a `pthread_atfork` child
/// handler): a child that outlives the daemon never keeps the pidfile locked.
///
/// # Examples
///
/// ```
/// use daemons::Pidfile;
///
/// let dir = tempfile::tempdir()?;
/// let lock = Pidfile::new(dir.path().join("a.pid")).acquire()?;
/// assert!(lock.path().exists());
/// drop(lock);
/// assert!(!dir.path().join("a.pid").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PidfileLock {
    file: Option<File>,
    path: PathBuf,
    /// The locked file's identity, to tell whether the path still names it.
    meta: fs::Metadata,
    /// The process that took the lock: a child forked without exec has a copy of this value,
    /// but not of the lock.
    owner: Pid,
    /// Whether the lock's open file is shared with another instance, at a restart that hands
    /// it over.
    sharing: Sharing,
    /// Who besides root may own the pidfile's directories, to take the path again.
    trusted: Trusted,
    /// Let the process's exit release the lock, rather than the unlink (see
    /// [`PidfileLock::release_at_exit`]).
    at_exit: bool,
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

    /// Take the lock, without writing the pid yet: a daemon writes it once it catches its stop
    /// signals, so that a `stop` that reads the pid always finds a daemon that stops gracefully.
    pub(crate) fn lock(&self) -> Result<PidfileLock, Error> {
        let dir = self.dir(Action::TakePidfile)?;
        let deadline = Instant::now() + SETTLE;
        let mut pause = Duration::from_micros(200);
        loop {
            let file = match dir.open_existing(&self.path) {
                Ok(Some(file)) => file,
                Ok(None) => match self.create_locked(&dir)? {
                    Some(lock) => return Ok(lock),
                    // Somebody created it meanwhile: open theirs.
                    None => continue,
                },
                Err(e) => return Err(Error::open(Action::OpenPidfile, &self.path, e)),
            };
            let meta = self.check(&file)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let refused = match self.examine(&file, &meta)? {
                        // The holder let go between our two tries: try again, after a pause.
                        Lock::Free => {
                            thread::sleep(pause);
                            continue;
                        }
                        Lock::Held(pid) => Error::AlreadyRunning {
                            pidfile: self.path.clone(),
                            pid: Some(pid),
                        },
                        Lock::Starting => Error::AlreadyRunning {
                            pidfile: self.path.clone(),
                            pid: None,
                        },
                        Lock::Unverified { named, holder } => self.unverified(named, holder),
                    };
                    // A daemon that has not written its pid yet, the old content of a stale file
                    // that a new daemon has just locked, or a probe holding a shared lock for a
                    // moment: each settles within microseconds.
                    let settled = matches!(refused, Error::AlreadyRunning { pid: Some(_), .. });
                    if settled || Instant::now() >= deadline {
                        return Err(refused);
                    }
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                    continue;
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(Action::LockPidfile, &self.path, e));
                }
            }
            // Only now, locked: a file that a daemon holds is never refused for the moment it
            // has two names (the BSDs place a pidfile with a hard link, then an unlink).
            dir.check_written(&meta, &self.path, Action::TakePidfile, self.trusted)?;
            // A daemon that was exiting may have unlinked the path between our open and our lock;
            // the lock would then be on a file nobody else can find.
            if !dir.names(&self.path, &meta) {
                continue;
            }
            return Ok(PidfileLock::new(
                file,
                self.path.clone(),
                meta,
                self.trusted,
            ));
        }
    }

    /// Create the pidfile already locked: a new file is made under a temporary name beside the
    /// path, locked, then renamed to the path unless something is there by then, so that nobody
    /// ever sees it unlocked (a probe in between would call it stale, and a `stop` would remove
    /// it). `None` when the path exists.
    fn create_locked(&self, dir: &Dir) -> Result<Option<PidfileLock>, Error> {
        let (file, temporary) = dir
            .create_temporary(&self.path)
            .map_err(|e| Error::open(Action::CreatePidfile, &self.path, e))?;
        let placed = (|| {
            let meta = self.check(&file)?;
            file.try_lock()
                .map_err(|e| Error::io(Action::LockPidfile, &self.path, e.into()))?;
            match dir.rename_unless_exists(&temporary, &self.path) {
                Ok(true) => Ok(Placed::Renamed(Box::new(meta))),
                Ok(false) => Ok(Placed::Exists),
                Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(Placed::Unsupported),
                Err(e) => Err(Error::open(Action::CreatePidfile, &self.path, e)),
            }
        })();
        if !matches!(placed, Ok(Placed::Renamed(_))) {
            let _ = dir.remove(&temporary);
        }
        match placed? {
            Placed::Renamed(meta) => Ok(Some(PidfileLock::new(
                file,
                self.path.clone(),
                *meta,
                self.trusted,
            ))),
            Placed::Exists => Ok(None),
            // Where the file system cannot rename without replacing, create it in place: it is
            // visible unlocked for the moment between the open and the lock.
            Placed::Unsupported => self.create_in_place(dir),
        }
    }

    /// Create the pidfile at its path and lock it; `None` when it exists by then.
    fn create_in_place(&self, dir: &Dir) -> Result<Option<PidfileLock>, Error> {
        let file = match dir.create_new(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(Error::open(Action::CreatePidfile, &self.path, e)),
        };
        let meta = self.check(&file)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(PidfileLock::new(
                file,
                self.path.clone(),
                meta,
                self.trusted,
            ))),
            // Taken between our create and our lock: theirs now.
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io(Action::LockPidfile, &self.path, e)),
        }
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
        let deadline = Instant::now() + SETTLE;
        let mut pause = Duration::from_micros(200);
        loop {
            let found = self.probe_once()?;
            let settled = match &found {
                Probed::Status(status) => *status != Status::Starting,
                Probed::Unverified { .. } | Probed::Gone => false,
            };
            if settled || Instant::now() >= deadline {
                return match found {
                    Probed::Status(status) => Ok(status),
                    Probed::Gone => Ok(Status::NotRunning),
                    Probed::Unverified { named, holder } => Err(self.unverified(named, holder)),
                };
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
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
                let content = read_content(&file);
                Probed::Status(Status::Dead {
                    pid: parse_pid(&content),
                    failure: parse_failure(&content),
                })
            }
            Lock::Held(pid) => Probed::Status(match parse_supervision(&read_content(&file)) {
                Some((child, restarts)) => Status::Supervised {
                    pid,
                    // Whoever can write the file can write any pid there: only a child of the
                    // supervisor is its body's process.
                    child: child.filter(|&child| sys::parent_of(child) == Some(pid)),
                    restarts,
                },
                None => Status::Running(pid),
            }),
            Lock::Starting => Probed::Status(Status::Starting),
            Lock::Unverified { named, holder } => Probed::Unverified { named, holder },
        })
    }

    /// Who holds the lock of `file`, read but not locked by us.
    fn examine(&self, file: &File, meta: &fs::Metadata) -> Result<Lock, Error> {
        let content = read_content(file);
        let named = parse_pid(&content);
        // During a restart the other instance shares the lock, and the file names it too.
        let candidates: Vec<Pid> = named.into_iter().chain(parse_handover(&content)).collect();
        sys::check_proc().map_err(|reason| Error::ForeignProc {
            pidfile: self.path.clone(),
            reason,
        })?;
        // The usual case: the pid named holds the lock through a descriptor of its own.
        if sys::LOCK_LINES
            && let Some(&pid) = candidates
                .iter()
                .find(|&&pid| holds_flock(pid, meta) == Some(true))
        {
            return Ok(Lock::Held(pid));
        }
        // Is anybody holding it, even a shared lock (`flock -s`)? An exclusive lock taken and
        // dropped at once answers; a `start()` or a probe that it meets meanwhile retries.
        if !self.is_locked(file)? {
            return Ok(Lock::Free);
        }
        // Where no lock line names the holder, the pid named is the holder if the lock is
        // exclusive (a daemon's) and that pid has this very file open.
        if !sys::LOCK_LINES
            && self.is_locked_exclusively(file)?
            && let Some(&pid) = candidates
                .iter()
                .find(|&&pid| sys::has_open(pid, file, meta) == Some(true))
        {
            return Ok(Lock::Held(pid));
        }
        let holders = sys::flock_holders(meta).unwrap_or_default();
        let written = meta.modified().unwrap_or(UNIX_EPOCH);
        for &holder in &holders {
            if Some(holder) == named {
                // `/proc/PID/fd` could not be read (another user's process, or one that is not
                // dumpable). The lock was taken by that pid; it is still the daemon if it
                // started before it wrote the file, not if the pid was reused since.
                if holds_flock(holder, meta).is_none()
                    && sys::started_before(holder, written) == Some(true)
                {
                    return Ok(Lock::Held(holder));
                }
            } else if let Some(named) = named
                && sys::ns_pids(holder)
                    .is_some_and(|ns| ns.len() > 1 && ns.last() == Some(&named.as_raw()))
            {
                // A daemon in a pid namespace of its own wrote its pid there.
                let verified = match holds_flock(holder, meta) {
                    Some(held) => held,
                    None => sys::started_before(holder, written) == Some(true),
                };
                if verified {
                    return Ok(Lock::Held(holder));
                }
            }
        }
        let recent = SystemTime::now()
            .duration_since(written)
            .is_ok_and(|age| age < STARTING);
        if named.is_none() && recent {
            return Ok(Lock::Starting);
        }
        Ok(Lock::Unverified {
            named,
            holder: holders.first().copied(),
        })
    }

    fn unverified(&self, named: Option<Pid>, holder: Option<Pid>) -> Error {
        Error::Unverified {
            pidfile: self.path.clone(),
            named,
            holder,
            command: holder.and_then(sys::command),
        }
    }

    /// Open the pidfile for reading, without following a symlink and without blocking (a FIFO at
    /// the path must hang nobody); `None` when it does not exist. What writes it opens it
    /// through the path gate.
    pub(crate) fn open(&self) -> Result<Option<File>, Error> {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::open(Action::OpenPidfile, &self.path, e)),
        }
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
        Ok(self.open_identified()?.and_then(|(pid, _, _)| pid))
    }

    /// The pidfile, open for reading, the pid written in it if it holds one, and the file's
    /// identity; `None` when there is no file.
    pub(crate) fn open_identified(
        &self,
    ) -> Result<Option<(Option<Pid>, File, fs::Metadata)>, Error> {
        let Some(file) = self.open()? else {
            return Ok(None);
        };
        let meta = self.check(&file)?;
        Ok(Some((read_pid(&file), file, meta)))
    }

    /// Whether the path still names the file identified by `meta`.
    pub(crate) fn names(&self, meta: &fs::Metadata) -> bool {
        same_file(&self.path, meta)
    }

    /// The other instance of a restart under way that the pidfile names after the first pid
    /// (`handover: PID`), if it does. Whether it holds the lock is for the caller to check.
    pub(crate) fn partner(&self) -> Result<Option<Pid>, Error> {
        let Some(file) = self.open()? else {
            return Ok(None);
        };
        self.check(&file)?;
        Ok(parse_handover(&read_content(&file)))
    }

    /// Whether `pid` holds the lock of `file` (identified by `meta`), whatever the path names
    /// now: an instance whose successor took the path over holds its own file's lock until it
    /// is stopped.
    pub(crate) fn holds(&self, pid: Pid, file: &File, meta: &fs::Metadata) -> bool {
        if sys::LOCK_LINES {
            holds_flock(pid, meta) == Some(true)
        } else {
            self.is_locked_exclusively(file).unwrap_or(false)
                && sys::has_open(pid, file, meta) == Some(true)
        }
    }

    /// Whether anybody holds a lock on `file`, even a shared one: an exclusive lock, taken and
    /// dropped at once, is refused.
    pub(crate) fn is_locked(&self, file: &File) -> Result<bool, Error> {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(false)
            }
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(Error::io(Action::LockPidfile, &self.path, e)),
        }
    }

    /// Whether somebody holds an exclusive lock on `file`, as a daemon does: a shared lock,
    /// taken and dropped at once, is refused. Only where no lock line names the holder: the
    /// shared lock would show among the holders in `/proc/locks` for that moment.
    pub(crate) fn is_locked_exclusively(&self, file: &File) -> Result<bool, Error> {
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(false)
            }
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(Error::io(Action::LockPidfile, &self.path, e)),
        }
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
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::AlreadyRunning {
                    pidfile: self.path.clone(),
                    pid: None,
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(Action::LockPidfile, &self.path, e));
            }
        }
        let dir = self.dir(Action::RemovePidfile)?;
        also();
        dir.remove_if_names(&self.path, &meta)
            .map_err(|e| Error::io(Action::RemovePidfile, &self.path, e))
    }

    /// Refuse what can never be a pidfile, and, as root, what someone else could have written:
    /// root signalling a pid that a user put in a file is how CVE-2017-14159 happened. The
    /// daemon's own user is not someone else.
    pub(crate) fn check(&self, file: &File) -> Result<fs::Metadata, Error> {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(Action::OpenPidfile, &self.path, e))?;
        if !meta.is_file() {
            return Err(Error::not_a_file(
                Action::OpenPidfile,
                &self.path,
                file_kind(&meta),
            ));
        }
        if let Some(kind) = sys::kernel_file_system(file) {
            return Err(Error::not_a_file(
                Action::OpenPidfile,
                &self.path,
                &format!("a file of {kind}, a kernel interface"),
            ));
        }
        if geteuid().is_root() {
            // The daemon's own user may have written it (a daemon that dropped root takes its
            // pidfile again in a directory of its user's): the lock, not the pid written, says
            // who holds it, and only that holder is ever signalled.
            if meta.uid() != 0 && self.trusted.user != Some(meta.uid()) {
                let whose = match self.trusted.user {
                    Some(user) => format!("neither by root nor by the daemon's user (uid {user})"),
                    None => "not by root".to_string(),
                };
                return Err(Error::Untrusted {
                    path: self.path.clone(),
                    reason: format!("it is owned by uid {}, {whose}", meta.uid()),
                });
            }
            if meta.mode() & 0o022 != 0 {
                return Err(Error::Untrusted {
                    path: self.path.clone(),
                    reason: format!(
                        "its mode {:o} lets other users write it",
                        meta.mode() & 0o777
                    ),
                });
            }
        }
        Ok(meta)
    }
}

/// What the lock of an open pidfile says.
enum Lock {
    /// Nobody holds it.
    Free,
    /// This process holds it, and it is the daemon (verified).
    Held(Pid),
    /// Held, no pid written yet, and the file written moments ago.
    Starting,
    /// Held by a process that is not verifiably the daemon the file names.
    Unverified {
        named: Option<Pid>,
        holder: Option<Pid>,
    },
}

/// How [`Pidfile::create_locked`] fared.
enum Placed {
    // Boxed: a `Metadata` is large on some systems (FreeBSD).
    Renamed(Box<fs::Metadata>),
    Exists,
    Unsupported,
}

/// Whether a lock's open file is shared with another instance, at a restart that hands the
/// listening sockets and the pidfile over (see the `handover` module): the same open file, so
/// the same lock and the same inode, in both. One of them writes the file at a time, and only
/// the one that holds it alone unlinks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// This instance alone: it writes its pid, and unlinks the file at its end.
    Alone,
    /// Sent to a successor that has not taken over yet: this instance writes again only if it
    /// takes the file back, and never unlinks it meanwhile.
    Offered,
    /// Received from the instance that runs, before taking over: nothing is written or
    /// unlinked.
    Received,
    /// Taken over by a successor: this instance never writes or unlinks it again, and lets go of
    /// its copy at its end.
    Given,
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

impl PidfileLock {
    fn new(file: File, path: PathBuf, meta: fs::Metadata, trusted: Trusted) -> PidfileLock {
        // SAFETY: the lock never uses or closes its file in a forked child: it remembers the
        // process it was made in (`owner`) and forgets the file anywhere else (`take_file`).
        unsafe { sys::close_in_forked_children(file.as_raw_fd()) };
        PidfileLock {
            file: Some(file),
            path,
            meta,
            owner: Pid::this(),
            sharing: Sharing::Alone,
            trusted,
            at_exit: false,
        }
    }

    /// The pidfile's path.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let lock = daemons::Pidfile::new(dir.path().join("p.pid")).acquire()?;
    /// assert!(lock.path().ends_with("p.pid"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write this process's pid over the old content, then cut what is left of it, if anything
    /// (the length seen under the lock is final: only a holder writes). Truncating to zero first
    /// would make ext4 flush the file to disk when the daemon closes it at exit (auto_da_alloc),
    /// which stalls every stop on the disk. A probe that reads the file between the two calls
    /// finds no valid pid and retries.
    pub(crate) fn write_pid(&mut self) -> Result<(), Error> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.sharing != Sharing::Alone {
            return Ok(());
        }
        let content = format!("{}\n", Pid::this());
        let len = content.len() as u64;
        let old_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        file.write_all_at(content.as_bytes(), 0)
            .and_then(|()| {
                if old_len > len {
                    file.set_len(len)
                } else {
                    Ok(())
                }
            })
            .map_err(|e| Error::io(Action::WritePidfile, &self.path, e))
    }

    /// Whether the path still names the locked file: a /tmp cleaner or a careless `rm` may have
    /// removed it, or someone replaced it. A lock shared with another instance of a restart
    /// counts as named: it is not taken again meanwhile.
    pub(crate) fn still_named(&self) -> bool {
        self.file.is_none() || self.sharing != Sharing::Alone || same_file(&self.path, &self.meta)
    }

    /// The lock of a successor at a restart: the open file that the instance that runs sent,
    /// verified by the caller to be the pidfile and to hold its lock. Nothing is written or
    /// unlinked through it until the successor takes over ([`PidfileLock::take_over`]).
    pub(crate) fn received(file: File, path: PathBuf, meta: fs::Metadata) -> PidfileLock {
        let mut lock = PidfileLock::new(file, path, meta, Trusted::default());
        lock.sharing = Sharing::Received;
        lock
    }

    /// The locked descriptor, to send to a successor.
    pub(crate) fn descriptor(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.file.as_ref().map(AsFd::as_fd)
    }

    /// Share the lock with `successor`, which is sent the descriptor next: the file names it
    /// after this process's pid (`handover: PID`), so that `status` and `stop` find it if this
    /// process dies before it takes over (where the system does not tell the successor's pid,
    /// the file names this process alone).
    pub(crate) fn offer_to(&mut self, successor: Option<Pid>) -> Result<(), Error> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let content = match successor {
            Some(successor) => format!("{}\n{HANDOVER}{successor}\n", Pid::this()),
            None => format!("{}\n", Pid::this()),
        };
        self.write(file, &content)?;
        self.sharing = Sharing::Offered;
        Ok(())
    }

    /// The successor went without taking over: this instance holds the file alone again.
    pub(crate) fn take_back(&mut self) -> Result<(), Error> {
        if self.sharing != Sharing::Offered {
            return Ok(());
        }
        self.sharing = Sharing::Alone;
        self.write_pid()
    }

    /// The successor took over: from now on it writes the file, and this instance never touches
    /// it again.
    pub(crate) fn give(&mut self) {
        self.sharing = Sharing::Given;
    }

    /// A successor takes over: it writes its pid, and `handover: PID` after it while its
    /// `predecessor` may still be running; from now on it holds the file as its own.
    pub(crate) fn take_over(&mut self, predecessor: Option<Pid>) -> Result<(), Error> {
        self.sharing = Sharing::Alone;
        match (predecessor, &self.file) {
            (Some(predecessor), Some(file)) => {
                self.write(file, &format!("{}\n{HANDOVER}{predecessor}\n", Pid::this()))
            }
            _ => self.write_pid(),
        }
    }

    /// Take the path again after it stopped naming the locked file: create it anew, or lock the
    /// file that replaced it if nobody holds that one. The old file's lock is let go of.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] (or [`Error::Unverified`]) when another process holds the file
    /// that the path names now: another instance took the path.
    pub(crate) fn retake(&mut self) -> Result<(), Error> {
        let pidfile = Pidfile::new(&self.path).trusting(self.trusted);
        let mut lock = pidfile.lock()?;
        lock.write_pid()?;
        lock.at_exit = self.at_exit;
        lock.sharing = Sharing::Alone;
        std::mem::swap(self, &mut lock);
        // `lock` now holds the old file, whose path is gone or names the new one: it must only
        // let go of its lock, not unlink.
        if let Some(file) = lock.file.take() {
            sys::forget_in_forked_children(file.as_raw_fd());
        }
        Ok(())
    }

    /// Unlink the pidfile, then release the lock. Removing first means that a successor that
    /// takes the lock the moment it is released always works on a file of its own.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be removed; the lock is released all the same.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("r.pid");
    /// daemons::Pidfile::new(&path).acquire()?.release()?;
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(mut self) -> Result<(), Error> {
        self.unlink()
    }

    /// Write which child runs the body, after the supervisor's pid: `status` reads it.
    pub(crate) fn write_supervision(
        &mut self,
        child: Option<Pid>,
        restarts: u32,
    ) -> Result<(), Error> {
        let child = child.map_or("-".to_string(), |pid| pid.to_string());
        match &self.file {
            Some(file) => self.write(
                file,
                &format!("{}\n{SUPERVISING}{child} {restarts}\n", Pid::this()),
            ),
            None => Ok(()),
        }
    }

    /// Leave the pidfile in place with why the daemon failed after its pid, then let go of the
    /// lock: `status` reports the daemon dead and the reason, until the next start takes the
    /// file again.
    pub(crate) fn keep_with_failure(&mut self, reason: &str) -> Result<(), Error> {
        let Some(file) = self.take_file() else {
            return Ok(());
        };
        if self.sharing != Sharing::Alone {
            // Another instance of a restart has the file too: it is that one's to write.
            self.let_go(file);
            return Ok(());
        }
        let line: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(1000)
            .collect();
        let written = self.write(&file, &format!("{}\n{FAILED}{line}\n", Pid::this()));
        self.let_go(file);
        written
    }

    /// From now on, the unlink leaves the lock to the process's exit: the kernel releases it
    /// when the last thread is gone, so that whoever waits for the lock (the portable `stop()`,
    /// see [`control`](crate::control)) sees the daemon gone, not only its pidfile. For a
    /// detached daemon, which ends with `_exit` right after.
    pub(crate) fn release_at_exit(&mut self) {
        self.at_exit = true;
    }

    /// Let go of the lock of `file`, or leave it to the exit.
    fn let_go(&self, file: File) {
        if self.at_exit {
            // Still closed in forked children: the descriptor stays open until the exit.
            std::mem::forget(file);
        } else {
            sys::forget_in_forked_children(file.as_raw_fd());
            drop(file);
        }
    }

    /// Write the whole content of the pidfile through the locked descriptor.
    fn write(&self, file: &File, content: &str) -> Result<(), Error> {
        file.write_all_at(content.as_bytes(), 0)
            .and_then(|()| file.set_len(content.len() as u64))
            .map_err(|e| Error::io(Action::WritePidfile, &self.path, e))
    }

    /// The locked file, taken out to be let go of: `None` when it is gone already, or in a
    /// child forked without exec, whose copy of the descriptor was closed at the fork (the
    /// number may name another file by now, and the pidfile is its parent's).
    fn take_file(&mut self) -> Option<File> {
        let file = self.file.take()?;
        if Pid::this() != self.owner {
            std::mem::forget(file);
            return None;
        }
        Some(file)
    }

    /// [`release`](PidfileLock::release) in place; later calls do nothing.
    pub(crate) fn unlink(&mut self) -> Result<(), Error> {
        let Some(file) = self.take_file() else {
            return Ok(());
        };
        if self.sharing != Sharing::Alone {
            // Another instance of a restart has the file too, and the lock with it: only this
            // copy goes (a close, never an unlock, which would release the other's lock).
            self.let_go(file);
            return Ok(());
        }
        let dir = Dir::of(&self.path, Action::RemovePidfile, self.trusted);
        let result = dir.and_then(|dir| {
            dir.remove_if_names(&self.path, &self.meta)
                .map_err(|e| Error::io(Action::RemovePidfile, &self.path, e))
        });
        self.let_go(file);
        result
    }
}

impl Drop for PidfileLock {
    fn drop(&mut self) {
        let _ = self.unlink();
    }
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

/// The pid in a pidfile's content, or `None` for anything that is not one positive number:
/// a pidfile is data that someone else may have written, and `0` or `-1` would name a process
/// group to `kill`.
pub(crate) fn parse_pid(content: &str) -> Option<Pid> {
    let raw: i32 = content.lines().next()?.trim().parse().ok()?;
    (raw > 0).then(|| Pid::from_raw(raw))
}

fn read_pid(file: &File) -> Option<Pid> {
    parse_pid(&read_content(file))
}

/// The pidfile's content, from its start whoever read the descriptor before: a pid line, and
/// after a failure the reason. A larger file is not a pidfile anyway.
fn read_content(file: &File) -> String {
    let mut content = vec![0u8; 4096];
    let n = file.read_at(&mut content, 0).unwrap_or(0);
    content.truncate(n);
    String::from_utf8_lossy(&content).into_owned()
}

/// The reason a failed daemon left in its pidfile: the line after the pid, `failed: ...`.
fn parse_failure(content: &str) -> Option<String> {
    let reason = content.lines().nth(1)?.strip_prefix(FAILED)?;
    Some(reason.trim().to_owned()).filter(|r| !r.is_empty())
}

/// The mark of the line that says why a daemon failed.
const FAILED: &str = "failed: ";

/// The mark of the line where a supervisor says which child runs the body, and how many
/// restarts there were: `supervising: CHILD RESTARTS` (CHILD `-` during a backoff wait).
const SUPERVISING: &str = "supervising: ";

/// The mark of the line where an instance names the other instance of a restart under way:
/// `handover: PID`, its successor before that one takes over, its predecessor after.
const HANDOVER: &str = "handover: ";

/// The other instance of a restart under way, from the pidfile's second line.
fn parse_handover(content: &str) -> Option<Pid> {
    parse_pid(content.lines().nth(1)?.strip_prefix(HANDOVER)?)
}

fn parse_supervision(content: &str) -> Option<(Option<Pid>, u32)> {
    let rest = content.lines().nth(1)?.strip_prefix(SUPERVISING)?;
    let mut fields = rest.split_whitespace();
    let child = fields.next()?;
    let restarts = fields.next()?.parse().ok()?;
    Some((parse_pid(child), restarts))
}

fn same_file(path: &Path, meta: &fs::Metadata) -> bool {
    fs::symlink_metadata(path).is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino())
}

/// What a file that is not a regular file is, for messages.
fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "an unknown kind of file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_read_from_the_second_line() {
        assert_eq!(parse_pid("42\nfailed: boom\n"), Some(Pid::from_raw(42)));
        assert_eq!(parse_failure("42\nfailed: boom\n").as_deref(), Some("boom"));
        assert_eq!(parse_failure("42\n"), None);
        assert_eq!(parse_failure("42\nsomething else\n"), None);
    }

    #[test]
    fn pids_are_positive_numbers_only() {
        assert_eq!(parse_pid("123\n"), Some(Pid::from_raw(123)));
        assert_eq!(parse_pid("  77  "), Some(Pid::from_raw(77)));
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("-1"), None);
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("12abc"), None);
        assert_eq!(parse_pid("99999999999999"), None);
    }

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
