//! The lock on a pidfile, held for the daemon's life: what it writes into the file, when it
//! shares the file with another instance of a restart, and how it lets go of it.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::Pid;

use super::Pidfile;
use super::content::{Note, render};
use crate::error::{Action, Error};
use crate::gate::path::{Dir, Trusted};
use crate::sys;

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
#[must_use = "the pidfile is locked while this lives: dropping it releases the lock"]
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
    /// The pidfile's directory as it was checked when the lock was taken (as root, a descriptor
    /// opened from `/`), kept for the unlink at the end, so that a stop does not walk the
    /// directories again. A directory that was safe then stays so: nobody but root may change
    /// it. `None` for a lock received from another instance, whose unlink walks them.
    dir: Option<Dir>,
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

impl PidfileLock {
    pub(super) fn new(
        file: File,
        path: PathBuf,
        meta: fs::Metadata,
        trusted: Trusted,
    ) -> PidfileLock {
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
            dir: None,
        }
    }

    /// Keep `dir`, the directory the lock was taken in, for the unlink.
    pub(super) fn keep_dir(&mut self, dir: Dir) {
        if let Some(fd) = dir.raw_fd() {
            // SAFETY: the lock never uses or closes the directory in a forked child: `take_dir`
            // forgets it in any process but the one that made the lock.
            unsafe { sys::close_in_forked_children(fd) };
        }
        self.dir = Some(dir);
    }

    /// The directory kept by [`keep_dir`](PidfileLock::keep_dir), in the process that made the
    /// lock; elsewhere (a forked child, which closed its copy) it is forgotten.
    fn take_dir(&mut self) -> Option<Dir> {
        let dir = self.dir.take()?;
        if Pid::this() != self.owner {
            std::mem::forget(dir);
            return None;
        }
        if let Some(fd) = dir.raw_fd() {
            sys::forget_in_forked_children(fd);
        }
        Some(dir)
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
    #[must_use]
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
        let content = render(Pid::this(), None);
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
        self.file.is_none()
            || self.sharing != Sharing::Alone
            || super::same_file(&self.path, &self.meta)
    }

    /// The lock of a successor at a restart: the open file that the instance that runs sent,
    /// verified by the caller to be the pidfile and to hold its lock. Nothing is written or
    /// unlinked through it until the successor takes over ([`PidfileLock::take_over`]).
    pub(crate) fn received(file: File, path: PathBuf, meta: fs::Metadata) -> PidfileLock {
        let mut lock = PidfileLock::new(file, path, meta, Trusted::default());
        lock.sharing = Sharing::Received;
        lock
    }

    /// Set the file's modification time to now, through the locked descriptor: the daemon's
    /// sign of life, which [`Pidfile::health`](crate::Pidfile::health) reads. A file that this
    /// process may not change (root's, after privileges were dropped) keeps its time.
    pub(crate) fn touch(&self) {
        if let Some(file) = &self.file {
            let now = nix::sys::time::TimeSpec::UTIME_NOW;
            let _ = nix::sys::stat::futimens(file, &now, &now);
        }
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
        let note = successor.map(Note::Handover);
        self.write(file, &render(Pid::this(), note.as_ref()))?;
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
            (Some(predecessor), Some(file)) => self.write(
                file,
                &render(Pid::this(), Some(&Note::Handover(predecessor))),
            ),
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

    /// Write this process's pid with `note` after it, for `status` to read (a supervisor says
    /// which child runs the body).
    pub(crate) fn write_note(&mut self, note: &Note) -> Result<(), Error> {
        match &self.file {
            Some(file) => self.write(file, &render(Pid::this(), Some(note))),
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
        let failed = Note::Failed(reason.to_owned());
        let written = self.write(&file, &render(Pid::this(), Some(&failed)));
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
        let kept = self.take_dir();
        let Some(file) = self.take_file() else {
            return Ok(());
        };
        if self.sharing != Sharing::Alone {
            // Another instance of a restart has the file too, and the lock with it: only this
            // copy goes (a close, never an unlock, which would release the other's lock).
            self.let_go(file);
            return Ok(());
        }
        let dir = kept.map_or_else(
            || Dir::of(&self.path, Action::RemovePidfile, self.trusted),
            Ok,
        );
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
