//! What only Linux offers, and the default build for Linux uses: pidfds, which keep naming one
//! process whatever happens to its pid, and the `lock:` lines of `/proc/PID/fdinfo` and
//! `/proc/locks`, which name a lock's holder.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::Pid;
use nix::sys::stat::{major, minor};

use super::linux::{find_fd, read_small};
use super::poll::{poll_readable, wait_readable};
use crate::sync::Deadline;

/// A process pinned by a pidfd: the handle keeps naming that very process, even once its pid is
/// reused, and becomes readable the moment it exits. Signals go through it in the signal gate
/// (`gate::process`).
#[derive(Debug)]
pub(crate) struct ExitWatch {
    pidfd: OwnedFd,
}

impl ExitWatch {
    /// Pin `pid`; `None` when it has exited.
    pub(crate) fn new(pid: Pid) -> io::Result<Option<ExitWatch>> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory
        // is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(Some(ExitWatch { pidfd }))
    }

    /// Wait at most `timeout` for the process to exit; whether it did.
    pub(crate) fn exited(&self, timeout: Duration) -> io::Result<bool> {
        wait_readable(self.pidfd.as_fd(), timeout)
    }

    /// The pidfd: readable once the process has exited; what a signal goes through.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// In a fork's child: close the child's copy of the pidfd.
    ///
    /// # Safety
    ///
    /// The frames that own this watch never run again in this process (it ends with `_exit`
    /// without returning into them), so nothing uses or closes the descriptor after this.
    pub(crate) unsafe fn forget_in_this_copy(&self) {
        // SAFETY: the caller guarantees that the owner of the descriptor never runs again here.
        unsafe { super::fds::close_copy(self.pidfd.as_raw_fd()) };
    }

    /// The pid that the pidfd designates, as `/proc/self/fdinfo` shows it: in the namespace of
    /// this `/proc`, which is how the pidfd is tied to the pid that was checked there. `None`
    /// when the fdinfo names none (a `/proc` of another namespace, where the process has no
    /// pid).
    ///
    /// # Errors
    ///
    /// When the fdinfo cannot be read: `/proc` is not mounted, or this process may open no more
    /// descriptors (`EMFILE`).
    pub(crate) fn pid_in_proc(&self) -> io::Result<Option<Pid>> {
        let mut content = Vec::with_capacity(256);
        read_small(Path::new(&self.fdinfo()), &mut content)?;
        let text = String::from_utf8_lossy(&content);
        let pid = text
            .lines()
            .find_map(|line| line.strip_prefix("Pid:"))
            .and_then(|pid| pid.trim().parse::<i32>().ok());
        Ok(pid.filter(|&pid| pid > 0).map(Pid::from_raw))
    }

    /// Where [`pid_in_proc`](ExitWatch::pid_in_proc) reads, for error messages.
    pub(crate) fn fdinfo(&self) -> String {
        format!("/proc/self/fdinfo/{}", self.pidfd.as_raw_fd())
    }
}

/// Wait at most `timeout` until every one of `watches` has exited. Returns which have not, by
/// index: one `poll` on all the pidfds.
pub(crate) fn wait_all_exited(watches: &[&ExitWatch], timeout: Duration) -> Vec<usize> {
    let deadline = Deadline::after(timeout);
    let mut left: Vec<usize> = (0..watches.len()).collect();
    while !left.is_empty() && !deadline.passed() {
        let fds: Vec<BorrowedFd<'_>> = left.iter().map(|&i| watches[i].pidfd.as_fd()).collect();
        let Ok(exited) = poll_readable(&fds, deadline) else {
            break;
        };
        let mut exited = exited.into_iter();
        left.retain(|_| !exited.next().unwrap_or(false));
    }
    left
}

/// The descriptors this process has open, from `/proc/self/fd` (the descriptor that reads the
/// directory is among them, closed by the time this returns).
pub(crate) fn open_fds() -> io::Result<Vec<RawFd>> {
    super::linux::numbered_entries(OPEN_FDS_DIR)
}

/// Where [`open_fds`] looks, for error messages.
pub(crate) const OPEN_FDS_DIR: &str = "/proc/self/fd";

/// Whether `pid` holds the exclusive `flock` on the file of `meta`, read from
/// `/proc/PID/fdinfo`: whether one of its descriptors is that file and shows a `lock:` line of
/// an exclusive flock. A descriptor's `lock:` lines are the locks of its own open file, so the
/// line is there exactly when the descriptor shares the open file that holds the lock: whoever
/// took the lock, or a process it was handed to (a successor at a restart), whatever pid the
/// line names (the process that took it, which may be gone since). `None` when that process's
/// descriptors cannot be read (it belongs to another user, or it is not dumpable).
/// `/proc/locks` would answer too, but each read of it waits for an RCU grace period.
///
/// A descriptor is this file when a `stat` through `/proc/PID/fd/N` says so: that is the same
/// view of the file system as the caller's `stat`. The device in a lock line is the one the lock
/// was taken on, which overlayfs (with `xino=off`) and btrfs subvolumes report differently.
pub(crate) fn holds_flock(pid: Pid, meta: &fs::Metadata) -> Option<bool> {
    let dev = meta.dev();
    let file_id = format!("{:02x}:{:02x}:{}", major(dev), minor(dev), meta.ino());
    // A daemon of this crate takes its pidfile before it opens anything else. A lock line in a
    // descriptor's fdinfo names that descriptor's own lock, so no `stat` is needed to ask.
    if exclusive_flocks(&format!("/proc/{pid}/fdinfo/3")).contains(&file_id) {
        return Some(true);
    }
    find_fd(pid, meta, |fd| {
        !exclusive_flocks(&format!("/proc/{pid}/fdinfo/{fd}")).is_empty()
    })
}

/// Whether `file`, a descriptor of this process, shares the open file that holds an exclusive
/// `flock`: its own `lock:` line says so, whoever took the lock. `None` where the kernel does
/// not tell.
pub(crate) fn holds_exclusive_flock(file: &File) -> Option<bool> {
    Some(!exclusive_flocks(&format!("/proc/self/fdinfo/{}", file.as_raw_fd())).is_empty())
}

/// The files (`MAJOR:MINOR:INODE`) on which the `fdinfo` file at `path` shows an exclusive
/// flock, held through that descriptor's open file.
fn exclusive_flocks(path: &str) -> Vec<String> {
    let mut content = Vec::with_capacity(512);
    if read_small(Path::new(path), &mut content).is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&content)
        .lines()
        .filter_map(|line| line.strip_prefix("lock:"))
        .filter_map(exclusive_flock_of)
        .collect()
}

/// The file of the rest of a fdinfo `lock:` line, if it is an exclusive flock:
/// `1: FLOCK  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF`.
fn exclusive_flock_of(lock: &str) -> Option<String> {
    let fields: Vec<&str> = lock.split_whitespace().collect();
    match fields.as_slice() {
        [_, "FLOCK", _, "WRITE", _, id, ..] => Some((*id).to_owned()),
        _ => None,
    }
}

/// The processes that `/proc/locks` names as holding a `flock` on the file of `meta`, as pids of
/// this `/proc`'s namespace. Slow (each read waits for an RCU grace period): only for the rare
/// case where the pid in a pidfile does not verifiably hold its lock.
///
/// A lock line names the device the lock was taken on, which overlayfs and btrfs report
/// differently from `stat`: a line for the same inode on another device counts only when no
/// line names the device that `stat` gives.
pub(crate) fn flock_holders(meta: &fs::Metadata) -> io::Result<Vec<Pid>> {
    let mut content = Vec::with_capacity(4096);
    read_small(Path::new("/proc/locks"), &mut content)?;
    let text = String::from_utf8_lossy(&content);
    let dev = format!("{:02x}:{:02x}", major(meta.dev()), minor(meta.dev()));
    let ino = meta.ino().to_string();
    let mut exact = Vec::new();
    let mut same_inode = Vec::new();
    for line in text.lines() {
        // `1: FLOCK  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF`; blocked waiters start `->`.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, "FLOCK", _, _, pid, id, ..] = fields.as_slice() else {
            continue;
        };
        let Some((line_dev, line_ino)) = id.rsplit_once(':') else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        if line_ino != ino || pid <= 0 {
            continue;
        }
        let list = if line_dev == dev {
            &mut exact
        } else {
            &mut same_inode
        };
        if !list.contains(&Pid::from_raw(pid)) {
            list.push(Pid::from_raw(pid));
        }
    }
    Ok(if exact.is_empty() { same_inode } else { exact })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lock_lines_are_matched_exactly() {
        let line = "\t1: FLOCK  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF";
        assert_eq!(exclusive_flock_of(line).as_deref(), Some("fe:00:10010715"));
        let shared = "\t1: FLOCK  ADVISORY  READ 1742 fe:00:10010715 0 EOF";
        assert_eq!(exclusive_flock_of(shared), None);
        let posix = "\t1: POSIX  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF";
        assert_eq!(exclusive_flock_of(posix), None);
        assert_eq!(exclusive_flock_of(""), None);
    }

    #[test]
    fn a_descriptor_handed_over_holds_the_lock_whoever_took_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared.pid");
        let file = File::create(&path).expect("create");
        let other = File::open(&path).expect("open");
        assert_eq!(holds_exclusive_flock(&file), Some(false));
        file.try_lock().expect("lock");
        // A copy of the descriptor shares the open file, and its lock; another open does not.
        let copy = file.try_clone().expect("dup");
        assert_eq!(holds_exclusive_flock(&copy), Some(true));
        assert_eq!(holds_exclusive_flock(&other), Some(false));
        drop(file);
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(holds_flock(Pid::this(), &meta), Some(true));
        drop(copy);
        assert_eq!(holds_flock(Pid::this(), &meta), Some(false));
    }

    #[test]
    fn own_lock_is_seen_in_proc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("self.pid");
        let file = File::create(&path).expect("create");
        file.try_lock().expect("lock");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(holds_flock(Pid::this(), &meta), Some(true));
        assert_eq!(holds_flock(Pid::parent(), &meta), Some(false));
        drop(file);
        assert_eq!(holds_flock(Pid::this(), &meta), Some(false));
    }

    #[test]
    fn a_lock_on_a_high_descriptor_is_seen_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("high.pid");
        let file = File::create(&path).expect("create");
        file.try_lock().expect("lock");
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor (or -1), owned by nobody else.
        let high = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900) };
        assert!(high >= 900, "{}", io::Error::last_os_error());
        // SAFETY: `high` was just returned by the kernel and is owned here only.
        let high = unsafe { OwnedFd::from_raw_fd(high) };
        // The lock belongs to the open file, which the high descriptor alone now keeps.
        drop(file);
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(holds_flock(Pid::this(), &meta), Some(true));
        drop(high);
        assert_eq!(holds_flock(Pid::this(), &meta), Some(false));
    }

    #[test]
    fn proc_locks_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("locked.pid");
        let file = File::create(&path).expect("create");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(flock_holders(&meta).expect("read /proc/locks"), []);
        file.try_lock().expect("lock");
        assert_eq!(
            flock_holders(&meta).expect("read /proc/locks"),
            [Pid::this()]
        );
    }

    #[test]
    fn a_pidfd_names_its_pid() {
        let me = ExitWatch::new(Pid::this()).expect("pidfd").expect("alive");
        assert_eq!(me.pid_in_proc().expect("fdinfo"), Some(Pid::this()));
    }
}
