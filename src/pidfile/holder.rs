//! Who holds a pidfile's lock: the pid that the file names, verified to hold it (a `lock:` line
//! of its own on Linux; elsewhere, the file is locked and that pid has it open), or, when it is
//! not that one, the holder that `/proc/locks` names, verified in its own pid namespace. A pid
//! that is not verified is never reported as the daemon's.

use std::fs::{self, File};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Pid;

use super::content::Content;
use super::create::Take;
use super::{Pidfile, STARTING};
use crate::error::Error;
use crate::sys::{self, holds_flock};

/// What the lock of an open pidfile says.
pub(super) enum Lock {
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

impl Pidfile {
    /// Who holds the lock of `file`, read but not locked by us.
    pub(super) fn examine(&self, file: &File, meta: &fs::Metadata) -> Result<Lock, Error> {
        let content = Content::read(file);
        let named = content.pid;
        // During a restart the other instance shares the lock, and the file names it too.
        let candidates: Vec<Pid> = named.into_iter().chain(content.handover()).collect();
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

    pub(super) fn unverified(&self, named: Option<Pid>, holder: Option<Pid>) -> Error {
        Error::Unverified {
            pidfile: self.path.clone(),
            named,
            holder,
            command: holder.and_then(sys::command),
        }
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
        self.is_held(file, Take::Exclusive)
    }

    /// Whether somebody holds an exclusive lock on `file`, as a daemon does: a shared lock,
    /// taken and dropped at once, is refused. Only where no lock line names the holder: the
    /// shared lock would show among the holders in `/proc/locks` for that moment.
    pub(crate) fn is_locked_exclusively(&self, file: &File) -> Result<bool, Error> {
        self.is_held(file, Take::Shared)
    }

    /// Whether a lock of `file` is held that refuses `take`; the lock taken to tell is let go
    /// of at once.
    fn is_held(&self, file: &File, take: Take) -> Result<bool, Error> {
        let taken = self.try_lock(file, take)?;
        if taken {
            let _ = file.unlock();
        }
        Ok(!taken)
    }
}
