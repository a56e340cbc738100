//! Opening the pidfile, and taking it: reading opens it here (no symbolic link followed, no wait
//! on a FIFO); what writes it goes through the path gate (`gate::path::Dir`), which creates it
//! locked under a name that nobody can foresee and then gives it its own name, or, where the file
//! system cannot, creates it in place.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use nix::unistd::geteuid;

use super::holder::Lock;
use super::{Pidfile, PidfileLock, SETTLE};
use crate::error::{Action, Error};
use crate::gate::path::Dir;
use crate::sync::Backoff;
use crate::sys;

/// Which lock to try to take.
#[derive(Debug, Clone, Copy)]
pub(super) enum Take {
    Exclusive,
    Shared,
}

/// How [`Pidfile::create_locked`] fared.
enum Placed {
    // Boxed: a `Metadata` is large on some systems (FreeBSD).
    Renamed(Box<fs::Metadata>),
    Exists,
    Unsupported,
}

impl Pidfile {
    /// Take the lock, without writing the pid yet: a daemon writes it once it catches its stop
    /// signals, so that a `stop` that reads the pid always finds a daemon that stops gracefully.
    pub(crate) fn lock(&self) -> Result<PidfileLock, Error> {
        // As root the directory is open: its descriptor moves out of the way of the pidfile's.
        let dir = self.dir(Action::TakePidfile)?.above_low_descriptors();
        let mut lock = self.lock_in(&dir)?;
        lock.keep_dir(dir);
        Ok(lock)
    }

    /// [`lock`](Pidfile::lock), in `dir`, the pidfile's directory.
    fn lock_in(&self, dir: &Dir) -> Result<PidfileLock, Error> {
        let mut backoff = Backoff::within(SETTLE);
        loop {
            let file = match dir.open_existing(&self.path) {
                Ok(Some(file)) => file,
                Ok(None) => match self.create_locked(dir)? {
                    Some(lock) => return Ok(lock),
                    // Somebody created it meanwhile: open theirs.
                    None => continue,
                },
                Err(e) => return Err(Error::open(Action::OpenPidfile, &self.path, e)),
            };
            let meta = self.check(&file)?;
            if !self.try_lock(&file, Take::Exclusive)? {
                let refused = match self.examine(&file, &meta)? {
                    // The holder let go between our two tries: try again, after a pause.
                    Lock::Free => {
                        backoff.sleep();
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
                if settled || !backoff.sleep() {
                    return Err(refused);
                }
                continue;
            }
            // Only now, locked: a file that a daemon holds is never refused for the moment it
            // has two names (the BSDs place a pidfile with a hard link, then an unlink).
            dir.check_written(&meta, &self.path, Action::TakePidfile, self.trusted)?;
            // A daemon that was exiting may have unlinked the path between our open and our lock;
            // the lock would then be on a file nobody else can find.
            if !dir.names(&self.path, &meta) {
                continue;
            }
            return Ok(self.lock_of(file, meta));
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
        let placed = self.lock_new(&file).and_then(|meta| {
            let Some(meta) = meta else {
                return Ok(Placed::Exists);
            };
            match dir.rename_unless_exists(&temporary, &self.path) {
                Ok(true) => Ok(Placed::Renamed(Box::new(meta))),
                Ok(false) => Ok(Placed::Exists),
                Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(Placed::Unsupported),
                Err(e) => Err(Error::open(Action::CreatePidfile, &self.path, e)),
            }
        });
        if !matches!(placed, Ok(Placed::Renamed(_))) {
            let _ = dir.remove(&temporary);
        }
        match placed? {
            Placed::Renamed(meta) => Ok(Some(self.lock_of(file, *meta))),
            Placed::Exists => Ok(None),
            // Where the file system cannot rename without replacing, create it in place: it is
            // visible unlocked for the moment between the open and the lock.
            Placed::Unsupported => self.create_in_place(dir),
        }
    }

    /// Create the pidfile at its path and lock it; `None` when it exists by then, or another
    /// process locked it between our create and our lock (it is theirs now).
    fn create_in_place(&self, dir: &Dir) -> Result<Option<PidfileLock>, Error> {
        let file = match dir.create_new(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(Error::open(Action::CreatePidfile, &self.path, e)),
        };
        Ok(self.lock_new(&file)?.map(|meta| self.lock_of(file, meta)))
    }

    /// Check a file just created and lock it: its identity, or `None` when another process
    /// locked it first.
    fn lock_new(&self, file: &File) -> Result<Option<fs::Metadata>, Error> {
        let meta = self.check(file)?;
        Ok(self.try_lock(file, Take::Exclusive)?.then_some(meta))
    }

    fn lock_of(&self, file: File, meta: fs::Metadata) -> PidfileLock {
        PidfileLock::new(file, self.path.clone(), meta, self.trusted)
    }

    /// Take `take` on `file` without waiting: whether it was taken (`false`: a lock that refuses
    /// it is held).
    pub(super) fn try_lock(&self, file: &File, take: Take) -> Result<bool, Error> {
        let tried = match take {
            Take::Exclusive => file.try_lock(),
            Take::Shared => file.try_lock_shared(),
        };
        match tried {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(Error::io(Action::LockPidfile, &self.path, e)),
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
