//! The system underneath: raw system calls that nix lacks, `/proc`, raw descriptors, and the
//! process's exit. Nearly all of the crate's `unsafe` is here, each block with the reason it
//! holds; what is specific to Linux is here too, so that another system has one place to differ.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::stat::{major, minor};
use nix::unistd::Pid;

/// A pidfd for `pid`: a handle that keeps naming that very process, even once its pid is reused.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Send `signal` to the process of `pidfd`. A process that has exited answers `ESRCH`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal takes a valid descriptor (borrowed, so open), a signal number,
    // and a null siginfo pointer, which the kernel accepts as "like kill(2)".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Wait at most `timeout` for `fd` to become readable (or hung up). Restarts after `EINTR`.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let remaining = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        // Round up: a timeout rounded down to 0 ms would spin for the last fraction.
        let millis = remaining.as_nanos().div_ceil(1_000_000);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
            // A wait longer than poll can take in one call goes on.
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
    }
}

/// How many threads this process runs, from `/proc/self/task`. `None` where that cannot be read.
pub(crate) fn thread_count() -> Option<usize> {
    fs::read_dir("/proc/self/task").ok().map(|dir| dir.count())
}

/// The descriptors this process has open, from `/proc/self/fd` (the descriptor that reads the
/// directory is among them, closed by the time this returns).
pub(crate) fn open_fds() -> io::Result<Vec<RawFd>> {
    Ok(fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The path that [`open_fds`] reads, for error messages.
pub(crate) const OPEN_FDS_DIR: &str = "/proc/self/fd";

/// Whether `fd` is open with close-on-exec. A descriptor that is not open counts as such: there
/// is nothing to close.
pub(crate) fn is_cloexec(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads a descriptor's flags; on one that is not open it fails with
    // EBADF and touches nothing.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags < 0 || flags & libc::FD_CLOEXEC != 0
}

/// Close `fd`, which nothing in this process owns.
///
/// Only for descriptors without close-on-exec: std opens everything with it, so such a
/// descriptor was inherited through `exec` and no `File` or socket object will use or close it.
pub(crate) fn close_unowned(fd: RawFd) {
    if is_cloexec(fd) {
        return;
    }
    // SAFETY: checked just above: the descriptor lacks close-on-exec, so no std object owns it
    // (see the function's contract), and closing it cannot pull one out from under its owner.
    unsafe { libc::close(fd) };
}

/// Flush every C stdio stream, so that what a C library of this process buffered is written
/// once, before a fork copies it or `_exit` drops it.
pub(crate) fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes every C stdio stream and touches no Rust object.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// End this process at once with `code`: no exit handlers, no destructors, no buffers flushed.
///
/// For copies of the caller made by `fork`: their exit handlers are the caller's, and running
/// them again would flush its buffers twice and copy pages for nothing.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process; it touches no memory of this process and never returns.
    unsafe { libc::_exit(code) }
}

/// Whether `pid` holds a `flock` on the file of `meta`, read from `/proc/PID/fdinfo`: each
/// descriptor's `lock:` line names the locking pid and the file's device and inode. `None` when
/// that process's descriptors cannot be read (it belongs to another user, or there is no /proc).
/// `/proc/locks` would answer too, but each read of it waits for an RCU grace period.
///
/// Only the `fdinfo` of descriptors that are this file is read: a `stat` through
/// `/proc/PID/fd/N` tells which they are, in one system call.
pub(crate) fn holds_flock(pid: Pid, meta: &fs::Metadata) -> Option<bool> {
    let dev = meta.dev();
    let lock = LockLine {
        pid: pid.to_string(),
        file_id: format!("{:02x}:{:02x}:{}", major(dev), minor(dev), meta.ino()),
    };
    // A daemon of this crate takes its pidfile before it opens anything else. A lock line in a
    // descriptor's fdinfo names that descriptor's own lock, so no `stat` is needed to ask.
    if lock.is_in(&format!("/proc/{pid}/fdinfo/3")) {
        return Some(true);
    }
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let open = match fs::metadata(&fd_dir) {
        Ok(dir) => dir.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let holds = |fd: &OsStr| -> Option<bool> {
        // Follows the descriptor to its file; `None` when there is no such descriptor.
        let target = fd_dir.join(fd).metadata().ok()?;
        Some(
            target.dev() == dev
                && target.ino() == meta.ino()
                && lock.is_in(&format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy())),
        )
    };
    // Since Linux 6.2 the directory's size is the number of open descriptors. Reading the
    // directory makes /proc build an entry for every descriptor, which costs more than looking
    // up the few below the pidfile's: a daemon opens its pidfile early, so look from 3 upwards,
    // and only go through the whole directory when the numbers turn out sparse.
    if open > 0 {
        let mut seen = 0;
        let mut fd = 3u64;
        while seen + 3 < open && fd < open + 32 {
            match holds(OsStr::new(&fd.to_string())) {
                Some(true) => return Some(true),
                Some(false) => seen += 1,
                None => {}
            }
            fd += 1;
        }
        for fd in ["0", "1", "2"] {
            match holds(OsStr::new(fd)) {
                Some(true) => return Some(true),
                Some(false) => seen += 1,
                None => {}
            }
        }
        if seen >= open {
            return Some(false);
        }
    }
    let dir = match fs::read_dir(&fd_dir) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    Some(
        dir.flatten()
            .any(|entry| holds(&entry.file_name()) == Some(true)),
    )
}

/// The `lock:` line of a flock held by a given pid on a given file.
struct LockLine {
    pid: String,
    file_id: String,
}

impl LockLine {
    /// Whether the `fdinfo` file at `path` shows this lock.
    fn is_in(&self, path: &str) -> bool {
        let mut content = Vec::with_capacity(512);
        if read_small(Path::new(path), &mut content).is_err() {
            return false;
        }
        String::from_utf8_lossy(&content)
            .lines()
            .filter_map(|line| line.strip_prefix("lock:"))
            .any(|lock| is_flock_of(lock, &self.pid, &self.file_id))
    }
}

/// Read a small file whole. `fs::read` would first ask the file's size and position, which
/// `/proc` files do not know anyway.
fn read_small(path: &Path, content: &mut Vec<u8>) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut buf = [0u8; 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => content.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Parse the rest of a fdinfo `lock:` line: `1: FLOCK  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF`.
fn is_flock_of(lock: &str, pid: &str, file_id: &str) -> bool {
    let fields: Vec<&str> = lock.split_whitespace().collect();
    matches!(fields.as_slice(), [_, "FLOCK", _, _, holder, id, ..] if *holder == pid && *id == file_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn fdinfo_lock_lines_are_matched_exactly() {
        let line = "\t1: FLOCK  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF";
        assert!(is_flock_of(line, "1742", "fe:00:10010715"));
        assert!(!is_flock_of(line, "1743", "fe:00:10010715"));
        assert!(!is_flock_of(line, "1742", "fe:00:1001071"));
        let posix = "\t1: POSIX  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF";
        assert!(!is_flock_of(posix, "1742", "fe:00:10010715"));
        assert!(!is_flock_of("", "1742", "fe:00:10010715"));
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
    fn a_pidfd_signals_and_waits() {
        let me = pidfd_open(Pid::this()).expect("pidfd of this process");
        assert!(!wait_readable(me.as_fd(), Duration::from_millis(1)).expect("poll"));
        assert_eq!(thread_count().map(|n| n >= 1), Some(true));
        assert!(open_fds().expect("list").contains(&me.as_raw_fd()));
    }
}
