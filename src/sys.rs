//! The system underneath: raw system calls that nix lacks, `/proc`, raw descriptors, and the
//! process's exit. Nearly all of the crate's `unsafe` is here, each block with the reason it
//! holds; what is specific to Linux is here too, so that another system has one place to differ.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};
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

/// Wait at most `timeout` until one of `fds` is readable; which are, by index.
pub(crate) fn wait_any_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    if poll(&mut polled, timeout).is_err() {
        return vec![false; fds.len()];
    }
    polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect()
}

/// Wait at most `timeout` until every one of `fds` is readable (for pidfds: until every process
/// has exited). Returns which are not, by index.
pub(crate) fn wait_all_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<usize> {
    let deadline = Instant::now().checked_add(timeout);
    let mut left: Vec<usize> = (0..fds.len()).collect();
    while !left.is_empty() {
        let remaining = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if remaining.is_zero() {
            break;
        }
        let millis = remaining.as_nanos().div_ceil(1_000_000);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        let mut polled: Vec<PollFd<'_>> = left
            .iter()
            .map(|&i| PollFd::new(fds[i], PollFlags::POLLIN))
            .collect();
        match poll(&mut polled, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        let ready: Vec<bool> = polled
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        let mut kept = ready.iter();
        left.retain(|_| !kept.next().copied().unwrap_or(false));
    }
    left
}

/// The other processes of process group `group`, from `/proc/*/stat`.
pub(crate) fn process_group_members(group: Pid) -> Vec<Pid> {
    let me = Pid::this();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // The command name may hold spaces and parentheses: fields start after the
                // last ')'; the group is the third of them (state, ppid, pgrp).
                stat.rfind(')').and_then(|at| {
                    stat[at + 1..]
                        .split_whitespace()
                        .nth(2)?
                        .parse::<i32>()
                        .ok()
                }) == Some(group.as_raw())
            })
        })
        .collect()
}

/// Have the kernel SIGKILL this process when its parent dies, as a supervised body must not
/// outlive its supervisor (killed at a stop timeout, say); exit at once if the parent is gone
/// already.
pub(crate) fn die_with_parent() {
    let parent = nix::unistd::getppid();
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    if nix::unistd::getppid() != parent {
        exit_now(1);
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

/// Make `fd` close-on-exec; `false` when it is not open.
pub(crate) fn set_cloexec(fd: RawFd) -> bool {
    // SAFETY: F_GETFD and F_SETFD read and set a descriptor's flags, touching no memory; on a
    // descriptor that is not open they fail with EBADF.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) == 0
    }
}

/// Take ownership of descriptors that were passed to this process on purpose (a service
/// manager's listening sockets, sd_listen_fds(3)), made close-on-exec; those not open are
/// left out.
pub(crate) fn adopt_passed_fds(fds: std::ops::Range<RawFd>) -> Vec<OwnedFd> {
    fds.filter(|&fd| set_cloexec(fd))
        // SAFETY: the service manager passed these descriptors to this process for it to own;
        // nothing else in it has taken them (they are adopted once, before anything else
        // runs), and `set_cloexec` just checked that each is open.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Remove `names` from the environment, if this process runs a single thread: with more,
/// another thread could be reading the environment meanwhile.
pub(crate) fn remove_env_if_alone(names: &[&str]) {
    if thread_count() != Some(1) {
        return;
    }
    for name in names {
        // SAFETY: the process runs a single thread (checked above), so nothing reads the
        // environment while it changes.
        unsafe { std::env::remove_var(name) };
    }
}

/// Send `fds` over a connected Unix socket (`SCM_RIGHTS`), with one byte of data.
pub(crate) fn send_fds(
    socket: &std::os::unix::net::UnixStream,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let count = [u8::try_from(raw.len()).unwrap_or(u8::MAX)];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[io::IoSlice::new(&count)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Receive the descriptors (at most 64) sent with [`send_fds`], close-on-exec.
pub(crate) fn receive_fds(socket: &std::os::unix::net::UnixStream) -> io::Result<Vec<OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let mut count = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 64]);
    let mut iov = [io::IoSliceMut::new(&mut count)];
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let mut fds = Vec::new();
    for cmsg in message
        .cmsgs()
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?
    {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this process for it to
            // own (SCM_RIGHTS); nothing else holds them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok(fds)
}

/// Close this process's copy of `fd`, in the child of a fork whose owner of `fd` (a value on a
/// frame of the caller's) never runs again there: the daemon side of `start()`.
pub(crate) fn close_copy(fd: RawFd) {
    // SAFETY: the value that owns `fd` lives on a frame this process never returns to (the
    // daemon ends with `_exit`), so nothing uses or closes the number after this.
    unsafe { libc::close(fd) };
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

/// The pidfile descriptors that a child forked without exec must close: it would otherwise keep
/// the lock after the daemon died, and no `start()` could take the pidfile again. A few slots,
/// for a process that holds several pidfiles.
static LOCKED: [AtomicI32; 4] = [const { AtomicI32::new(-1) }; 4];
static AT_FORK: Once = Once::new();

/// Close `fd` in every child that this process forks from now on, before the child runs any
/// code of its own.
pub(crate) fn close_in_forked_children(fd: RawFd) {
    AT_FORK.call_once(|| {
        // SAFETY: the handler is an `extern "C"` function that only does atomic operations and
        // close(2), both async-signal-safe, as a child handler of a multi-threaded fork must be.
        unsafe { libc::pthread_atfork(None, None, Some(close_locked_in_child)) };
    });
    for slot in &LOCKED {
        if slot
            .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
}

/// Stop closing `fd` in forked children: the lock is released, and the number may be reused.
pub(crate) fn forget_in_forked_children(fd: RawFd) {
    for slot in &LOCKED {
        let _ = slot.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Acquire);
    }
}

extern "C" fn close_locked_in_child() {
    for slot in &LOCKED {
        let fd = slot.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: in the child of a fork, `fd` is a copy of the parent's locked pidfile; the
            // child's `PidfileLock` knows it is not the owner and never uses or closes it.
            unsafe { libc::close(fd) };
        }
    }
}

/// Whether `pid` holds a `flock` on the file of `meta`, read from `/proc/PID/fdinfo`: a
/// descriptor's `lock:` lines are the locks of its open file, each naming the process that took
/// it. `None` when that process's descriptors cannot be read (it belongs to another user, or it
/// is not dumpable). `/proc/locks` would answer too, but each read of it waits for an RCU grace
/// period.
///
/// A descriptor is this file when a `stat` through `/proc/PID/fd/N` says so: that is the same
/// view of the file system as the caller's `stat`. The device in a lock line is the one the lock
/// was taken on, which overlayfs (with `xino=off`) and btrfs subvolumes report differently.
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
                && lock.held_in(&format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy())),
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
    /// Whether the `fdinfo` file at `path` shows this very lock, device and inode included.
    fn is_in(&self, path: &str) -> bool {
        self.lines(path)
            .iter()
            .any(|lock| is_flock_of(lock, &self.pid, Some(&self.file_id)))
    }

    /// Whether the `fdinfo` file at `path`, of a descriptor known to be the file, shows a flock
    /// that this pid took.
    fn held_in(&self, path: &str) -> bool {
        self.lines(path)
            .iter()
            .any(|lock| is_flock_of(lock, &self.pid, None))
    }

    fn lines(&self, path: &str) -> Vec<String> {
        let mut content = Vec::with_capacity(512);
        if read_small(Path::new(path), &mut content).is_err() {
            return Vec::new();
        }
        String::from_utf8_lossy(&content)
            .lines()
            .filter_map(|line| line.strip_prefix("lock:"))
            .map(str::to_owned)
            .collect()
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
fn is_flock_of(lock: &str, pid: &str, file_id: Option<&str>) -> bool {
    let fields: Vec<&str> = lock.split_whitespace().collect();
    matches!(fields.as_slice(), [_, "FLOCK", _, _, holder, id, ..]
        if *holder == pid && file_id.is_none_or(|file_id| *id == file_id))
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

/// Whether `/proc` is this process's: in another pid namespace's `/proc` (a `stop` run under
/// `unshare --pid --fork` without `--mount-proc`, say) every pid would name another process.
pub(crate) fn check_proc() -> Result<(), String> {
    let me = std::process::id();
    match fs::read_link("/proc/self") {
        Ok(target) if target.to_str().and_then(|t| t.parse::<u32>().ok()) == Some(me) => Ok(()),
        Ok(target) => Err(format!(
            "/proc belongs to another pid namespace (/proc/self is {}, this process is pid {me})",
            target.display()
        )),
        Err(e) => Err(format!("/proc cannot be read ({e})")),
    }
}

/// The pid that a pidfd designates, as `/proc/self/fdinfo` shows it: in the namespace of this
/// `/proc`, which is how the pidfd is tied to the pid that was checked there.
pub(crate) fn pidfd_pid(pidfd: BorrowedFd<'_>) -> Option<Pid> {
    use std::os::fd::AsRawFd;
    let mut content = Vec::with_capacity(256);
    read_small(
        Path::new(&format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())),
        &mut content,
    )
    .ok()?;
    let text = String::from_utf8_lossy(&content);
    let pid: i32 = text
        .lines()
        .find_map(|line| line.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()?;
    (pid > 0).then(|| Pid::from_raw(pid))
}

/// The pids of `pid` in each pid namespace it belongs to, from this one inwards (`NSpid:`).
pub(crate) fn ns_pids(pid: Pid) -> Option<Vec<i32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|n| n.parse().ok()).collect()
}

/// The command name of `pid`, where it can be read.
pub(crate) fn command(pid: Pid) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned()).filter(|c| !c.is_empty())
}

/// Whether the process `pid` started before `time` (with a margin of two clock ticks), from
/// `/proc/PID/stat`, which any user may read. `None` when that cannot be told.
///
/// A daemon writes its pid into its pidfile after it started; a process that started after the
/// file was last written is not the one that wrote it, whatever the file and `/proc/locks` say
/// (a pid reused after the daemon died).
pub(crate) fn started_before(pid: Pid, time: std::time::SystemTime) -> Option<bool> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // `starttime` is field 22 of stat(5); the slice starts at field 3.
    let ticks: u64 = fields.get(19)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)? as u64;
    let started = Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz);
    let boottime =
        Duration::from(nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?);
    let now = std::time::SystemTime::now();
    // When the system booted, on the wall clock: `time` and `started` meet there.
    let booted = now.checked_sub(boottime)?;
    let Ok(since_boot) = time.duration_since(booted) else {
        // Before this boot: nothing running now started before it.
        return Some(false);
    };
    Some(started < since_boot + Duration::from_nanos(2 * 1_000_000_000 / hz))
}

/// Rename `from` to `to` unless `to` exists: `Ok(false)` when it does. `Err` with
/// `ErrorKind::Unsupported` where the file system cannot do it atomically.
///
/// Unlike a hard link, a rename moves the name that open descriptors of the file show in
/// `/proc/PID/fd`, so a daemon's pidfile appears under its own name there.
pub(crate) fn rename_unless_exists(from: &Path, to: &Path) -> io::Result<bool> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EEXIST) => Ok(false),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this file system cannot rename without replacing",
        )),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// The kernel's own file systems, where a "file" is a setting or a view: a pidfile there would
/// write the pid into a sysctl. `None` for any other file system.
pub(crate) fn kernel_file_system(file: &File) -> Option<&'static str> {
    use nix::sys::statfs::{PROC_SUPER_MAGIC, SYSFS_MAGIC, fstatfs};
    let kind = fstatfs(file).ok()?.filesystem_type();
    if kind == PROC_SUPER_MAGIC {
        Some("procfs")
    } else if kind == SYSFS_MAGIC {
        Some("sysfs")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn fdinfo_lock_lines_are_matched_exactly() {
        let line = "\t1: FLOCK  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF";
        assert!(is_flock_of(line, "1742", Some("fe:00:10010715")));
        assert!(is_flock_of(line, "1742", None));
        assert!(!is_flock_of(line, "1743", Some("fe:00:10010715")));
        assert!(!is_flock_of(line, "1743", None));
        assert!(!is_flock_of(line, "1742", Some("fe:00:1001071")));
        let posix = "\t1: POSIX  ADVISORY  WRITE 1742 fe:00:10010715 0 EOF";
        assert!(!is_flock_of(posix, "1742", Some("fe:00:10010715")));
        assert!(!is_flock_of("", "1742", None));
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
    fn this_process_reads_its_own_proc() {
        assert_eq!(check_proc(), Ok(()));
        let me = pidfd_open(Pid::this()).expect("pidfd");
        assert_eq!(pidfd_pid(me.as_fd()), Some(Pid::this()));
        assert_eq!(
            ns_pids(Pid::this()).and_then(|p| p.last().copied()),
            Some(Pid::this().as_raw())
        );
        let now = std::time::SystemTime::now();
        assert_eq!(started_before(Pid::this(), now), Some(true));
        let long_ago = now - Duration::from_secs(10 * 365 * 86400);
        assert_eq!(started_before(Pid::this(), long_ago), Some(false));
    }

    #[test]
    fn kernel_file_systems_are_told_apart() {
        let sysctl = File::open("/proc/sys/kernel/pid_max").expect("open a sysctl");
        assert_eq!(kernel_file_system(&sysctl), Some("procfs"));
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = File::create(dir.path().join("x")).expect("create");
        assert_eq!(kernel_file_system(&plain), None);
    }

    #[test]
    fn a_pidfd_signals_and_waits() {
        let me = pidfd_open(Pid::this()).expect("pidfd of this process");
        assert!(!wait_readable(me.as_fd(), Duration::from_millis(1)).expect("poll"));
        assert_eq!(thread_count().map(|n| n >= 1), Some(true));
        assert!(open_fds().expect("list").contains(&me.as_raw_fd()));
    }
}
