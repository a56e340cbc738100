//! The mechanisms that need neither pidfds nor lock lines: what macOS and the BSDs use, and what
//! Linux uses when built with `--cfg daemons_portable`, so that they are tested there.
//!
//! - The holder of a pidfile's lock is not named by the kernel: the caller sees that the file is
//!   locked (a shared lock is refused) and asks [`has_open`](super::has_open) whether the pid
//!   named has this very file open; when the pid named is not the holder, nothing tells who is
//!   ([`flock_holders`] is unsupported), and the state is unknown.
//! - Where no kqueue tells when a process exits (Linux without pidfds), the wait for a daemon's
//!   exit is a wait for its lock: [`LockWaiter`](crate::control::lockwait::LockWaiter).

use std::fs;
use std::io;
#[cfg(any(target_os = "macos", target_os = "linux"))]
use std::os::fd::RawFd;
use std::path::Path;
use std::time::Duration;

use crate::Pid;

#[cfg(target_os = "linux")]
use crate::sync::Backoff;
use crate::sync::Deadline;

/// The lock lines of Linux are not read here: see [`has_open`](super::has_open).
pub(crate) fn holds_flock(_pid: Pid, _meta: &fs::Metadata) -> Option<bool> {
    None
}

/// The lock lines of Linux are not read here: whether a descriptor holds the lock is told by
/// taking it (see the handover).
pub(crate) fn holds_exclusive_flock(_file: &fs::File) -> Option<bool> {
    None
}

/// Nothing here names the holder of a lock: `/proc/locks` is Linux's, and is not read by the
/// portable build.
pub(crate) fn flock_holders(_meta: &fs::Metadata) -> io::Result<Vec<Pid>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this system does not name the holder of a lock",
    ))
}

/// Wait at most `timeout` until every one of `watches` has exited, one after the other within
/// the same deadline. Returns which have not, by index.
pub(crate) fn wait_all_exited(watches: &[&super::ExitWatch], timeout: Duration) -> Vec<usize> {
    let deadline = Deadline::after(timeout);
    (0..watches.len())
        .filter(|&i| !watches[i].exited(deadline.left()).unwrap_or(false))
        .collect()
}

/// A process watched by its pid and start time, from `/proc/PID/stat`: Linux without pidfds
/// offers no handle that wakes a waiter when a process that is not its child exits, so
/// [`exited`](ExitWatch::exited) looks again at growing intervals ([`Backoff`]).
/// Only the portable build for Linux has this; a stop waits on the pidfile's lock instead
/// ([`LockWaiter`](crate::control::lockwait::LockWaiter)).
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct ExitWatch {
    pid: Pid,
    started: u64,
}

#[cfg(target_os = "linux")]
impl ExitWatch {
    /// Watch `pid`; `None` when it has exited.
    pub(crate) fn new(pid: Pid) -> io::Result<Option<ExitWatch>> {
        match super::linux::state_and_start(pid) {
            // A leader that has exited while its other threads still end is not gone yet: they
            // hold the process's descriptors.
            Some((_, started)) => {
                let watch = ExitWatch { pid, started };
                Ok((!watch.gone()).then_some(watch))
            }
            None if !Path::new(&format!("/proc/{pid}")).exists() => Ok(None),
            None => Err(io::Error::other(format!("/proc/{pid}/stat cannot be read"))),
        }
    }

    /// Whether the process is gone: no such pid, another process under it, or a zombie whose
    /// threads have all exited (the leader of a process with threads is a zombie while the
    /// others are still ending, and still holding the process's descriptors).
    fn gone(&self) -> bool {
        super::linux::state_and_start(self.pid).is_none_or(|(state, started)| {
            started != self.started
                || (is_dead(state)
                    && super::linux::numbered_entries(&format!("/proc/{}/task", self.pid))
                        .map_or(true, |tasks| tasks.len() <= 1))
        })
    }

    /// Wait at most `timeout` for the process to exit; whether it did.
    pub(crate) fn exited(&self, timeout: Duration) -> io::Result<bool> {
        let mut backoff = Backoff::within(timeout);
        loop {
            if self.gone() {
                return Ok(true);
            }
            if !backoff.sleep() {
                return Ok(false);
            }
        }
    }

    /// In a fork's child: nothing to close, this watch holds no descriptor.
    ///
    /// # Safety
    ///
    /// None needed here; the contract is that of the other systems' watches.
    pub(crate) unsafe fn forget_in_this_copy(&self) {}

    /// The pid, which `/proc` shows in this process's namespace (see `check_proc`).
    pub(crate) fn pid_in_proc(&self) -> io::Result<Option<Pid>> {
        Ok(Some(self.pid))
    }

    /// Where [`pid_in_proc`](ExitWatch::pid_in_proc) reads, for error messages: nowhere.
    pub(crate) fn fdinfo(&self) -> String {
        String::new()
    }
}

#[cfg(target_os = "linux")]
fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// The descriptors this process has open, from `/dev/fd` (the descriptor that reads the
/// directory is among them, closed by the time this returns).
#[cfg(target_os = "macos")]
pub(crate) fn open_fds() -> io::Result<Vec<RawFd>> {
    Ok(fs::read_dir(OPEN_FDS_DIR)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The descriptors this process has open, from `/dev/fd`, read as Linux reads its directories of
/// numbers (see `linux::numbered_entries`).
#[cfg(target_os = "linux")]
pub(crate) fn open_fds() -> io::Result<Vec<RawFd>> {
    super::linux::numbered_entries(OPEN_FDS_DIR)
}

/// Where [`open_fds`] looks, for error messages.
#[cfg(any(target_os = "macos", target_os = "linux"))]
pub(crate) const OPEN_FDS_DIR: &str = "/dev/fd";

/// Give `from` the name `to`, both in the directory `dir`, unless `to` exists (`Ok(false)`): a
/// hard link, then the old name removed. `Err` with `ErrorKind::Unsupported` where the file
/// system has no hard links.
///
/// The lock is the file's, not the name's: the file is locked under both names, and nobody ever
/// sees it at `to` unlocked.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(super) fn link_unless_exists(
    dir: std::os::fd::BorrowedFd<'_>,
    from: &Path,
    to: &Path,
) -> io::Result<bool> {
    use nix::errno::Errno;
    use nix::fcntl::AtFlags;
    use nix::unistd::{UnlinkatFlags, linkat, unlinkat};
    match linkat(dir, from, dir, to, AtFlags::empty()) {
        Ok(()) => {
            // The file is in place; a temporary name left behind would only be clutter.
            let _ = unlinkat(dir, from, UnlinkatFlags::NoRemoveDir);
            Ok(true)
        }
        Err(Errno::EEXIST) => Ok(false),
        // ENOTSUP and EOPNOTSUPP are one number on some systems.
        Err(e)
            if [
                Errno::EPERM,
                Errno::ENOTSUP,
                Errno::EOPNOTSUPP,
                Errno::EMLINK,
                Errno::ENOSYS,
            ]
            .contains(&e) =>
        {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this file system has no hard links",
            ))
        }
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// A name that the kernel wrote NUL-terminated into a fixed array (a command, a file system's
/// type); the whole array if it has no NUL.
#[cfg(not(target_os = "linux"))]
pub(super) fn c_name(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Which of `kernel`, the kernel's own file systems, the type name `fstypename` is, if any.
#[cfg(not(target_os = "linux"))]
pub(super) fn kernel_type(
    fstypename: &[libc::c_char],
    kernel: &[&'static str],
) -> Option<&'static str> {
    let name = c_name(fstypename);
    kernel.iter().copied().find(|&k| k == name)
}

/// `/proc` is Linux's: there is no other pid namespace's `/proc` to be misled by.
#[cfg(not(target_os = "linux"))]
pub(crate) fn check_proc() -> Result<(), String> {
    Ok(())
}

/// Pid namespaces are Linux's.
#[cfg(not(target_os = "linux"))]
pub(crate) fn ns_pids(_pid: Pid) -> Option<Vec<i32>> {
    None
}

/// Only asked about a holder that something named, which nothing does here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn started_before(_pid: Pid, _time: std::time::SystemTime) -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn a_hard_link_places_the_file_unless_something_is_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("new"), dir.path().join("x.pid"));
        fs::write(&from, "1").expect("write");
        let locked = File::open(&from).expect("open");
        locked.try_lock().expect("lock");
        let here = nix::fcntl::AT_FDCWD;
        assert!(link_unless_exists(here, &from, &to).expect("link"));
        assert!(!from.exists());
        assert!(File::open(&to).expect("open").try_lock_shared().is_err());
        fs::write(&from, "2").expect("write");
        assert!(!link_unless_exists(here, &from, &to).expect("link"));
        assert_eq!(fs::read_to_string(&to).expect("read"), "1");
    }
}

/// A path that a system call wrote as C bytes, up to its first NUL; `None` when empty.
#[cfg(any(target_os = "freebsd", target_os = "netbsd"))]
pub(crate) fn path_of_c_bytes(bytes: &[u8]) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    (end > 0).then(|| std::ffi::OsStr::from_bytes(&bytes[..end]).into())
}
