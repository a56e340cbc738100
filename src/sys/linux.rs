//! What every build for Linux reads in `/proc`, the portable one included: a process's
//! descriptors, threads, group, command and start time, and the pid namespace of `/proc` itself.

use std::fs::{self, File};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Pid;

/// Whether `pid` has the file of `meta` open, from `/proc/PID/fd`: a `stat` through
/// `/proc/PID/fd/N` is the same view of the file system as the caller's `stat`. `None` when that
/// process's descriptors cannot be read (it belongs to another user, or it is not dumpable).
///
/// The portable build's holder check, on a file that the caller found locked: it stands in for
/// the listings that other systems offer (`proc_pidinfo`, `kern.proc.filedesc`).
pub(crate) fn has_open(pid: Pid, _file: &File, meta: &fs::Metadata) -> Option<bool> {
    find_fd(pid, meta, |_| true)
}

/// Whether one of `pid`'s descriptors is the file of `meta` and `accept` takes it (given the
/// descriptor's number); `None` when `/proc/PID/fd` cannot be read.
pub(super) fn find_fd(pid: Pid, meta: &fs::Metadata, accept: impl Fn(i32) -> bool) -> Option<bool> {
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let open = match fs::metadata(&fd_dir) {
        Ok(dir) => dir.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let holds = |fd: i32| -> Option<bool> {
        // Follows the descriptor to its file; `None` when there is no such descriptor.
        let target = fd_dir.join(fd.to_string()).metadata().ok()?;
        Some(target.dev() == meta.dev() && target.ino() == meta.ino() && accept(fd))
    };
    // Since Linux 6.2 the directory's size is the number of open descriptors. Reading the
    // directory makes /proc build an entry for every descriptor, which costs more than looking
    // up the few below the pidfile's: a daemon opens its pidfile early, so look from 3 upwards,
    // and only go through the whole directory when the numbers turn out sparse: after a run of
    // numbers that are not open (a process that is closing its descriptors as it exits has
    // none left to find).
    if open > 0 {
        const MISSES: u32 = 8;
        let mut seen = 0;
        let mut misses = 0;
        // No descriptor is guessed at beyond 32 past the count of open ones.
        let last = i32::try_from(open + 32).unwrap_or(i32::MAX);
        let mut fd = 3;
        while seen + 3 < open && fd < last && misses < MISSES {
            match holds(fd) {
                Some(true) => return Some(true),
                Some(false) => {
                    seen += 1;
                    misses = 0;
                }
                None => misses += 1,
            }
            fd += 1;
        }
        for fd in 0..3 {
            match holds(fd) {
                Some(true) => return Some(true),
                Some(false) => seen += 1,
                None => {}
            }
        }
        if seen >= open {
            return Some(false);
        }
    }
    let fds = match numbered_entries(&format!("/proc/{pid}/fd")) {
        Ok(fds) => fds,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    Some(fds.into_iter().any(|fd| holds(fd) == Some(true)))
}

/// A file of `/proc`, whole, as text; `None` where it cannot be read.
fn read_proc(path: String) -> Option<String> {
    let mut content = Vec::new();
    read_small(Path::new(&path), &mut content).ok()?;
    String::from_utf8(content).ok()
}

/// Read a small file whole, a KiB at a time. `fs::read` would first ask the file's size, which
/// `/proc` files do not know (they say 0), and then read in probes of 32 bytes upwards: seven
/// calls for a `stat` line, against two.
pub(super) fn read_small(path: &Path, content: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
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

/// The fields of `/proc/PID/stat` after the command name, which may hold spaces and
/// parentheses: they start after the last `)`. The first is the state (field 3 of proc(5)).
fn stat_fields(pid: Pid) -> Option<Vec<String>> {
    let stat = read_proc(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The state letter and the start time (in clock ticks since boot) of `pid`: together with the
/// pid, the start time tells one process from a later one that got the same pid.
#[cfg_attr(not(daemons_portable), allow(dead_code))]
pub(super) fn state_and_start(pid: Pid) -> Option<(char, u64)> {
    let fields = stat_fields(pid)?;
    let state = fields.first()?.chars().next()?;
    // `starttime` is field 22 of proc(5); the slice starts at field 3.
    Some((state, fields.get(19)?.parse().ok()?))
}

/// The parent of `pid`, from `/proc/PID/stat`; `None` when it cannot be read.
pub(crate) fn parent_of(pid: Pid) -> Option<Pid> {
    // The parent is the second field after the command (state, ppid).
    let ppid: i32 = stat_fields(pid)?.get(1)?.parse().ok()?;
    Some(Pid::from_raw(ppid))
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
            // The group is the third field after the command (state, ppid, pgrp).
            stat_fields(pid).and_then(|fields| fields.get(2)?.parse::<i32>().ok())
                == Some(group.as_raw())
        })
        .collect()
}

/// How many threads this process runs, from `/proc/self/task`. `None` where that cannot be read.
pub(crate) fn thread_count() -> Option<usize> {
    numbered_entries("/proc/self/task")
        .ok()
        .map(|tasks| tasks.len())
}

/// The entries of a directory of `/proc` whose names are numbers (`/proc/self/fd`,
/// `/proc/self/task`), read with `getdents64` into a buffer on the stack.
///
/// `opendir` would take a 32 KiB buffer from the heap. The caller of `start()` lists both
/// directories just before it forks: allocations made after that buffer spread its heap over
/// pages that the daemon then keeps, for 12 KiB more of its private memory.
pub(crate) fn numbered_entries(dir: &str) -> io::Result<Vec<i32>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    // A `linux_dirent64`: inode (8 bytes), offset (8), record length (2), type (1), then the
    // name, NUL-terminated, the record padded to 8 bytes.
    const RECLEN: usize = 16;
    const NAME: usize = 19;
    // Read only (std adds close-on-exec).
    let fd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    let mut numbers = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which lives across the
        // call, from a descriptor that `fd` owns.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let filled = match usize::try_from(n) {
            Ok(0) => return Ok(numbers),
            Ok(filled) => filled.min(buf.len()),
            Err(_) => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::Interrupted => continue,
                e => return Err(e),
            },
        };
        let mut records = &buf[..filled];
        while records.len() > NAME {
            let len = usize::from(u16::from_ne_bytes([records[RECLEN], records[RECLEN + 1]]));
            if len <= NAME || len > records.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "getdents64 returned a record that does not fit",
                ));
            }
            let name = &records[NAME..len];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(number) = std::str::from_utf8(name).ok().and_then(|n| n.parse().ok()) {
                numbers.push(number);
            }
            records = &records[len..];
        }
    }
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

/// The pids of `pid` in each pid namespace it belongs to, from this one inwards (`NSpid:`).
pub(crate) fn ns_pids(pid: Pid) -> Option<Vec<i32>> {
    let status = read_proc(format!("/proc/{pid}/status"))?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|n| n.parse().ok()).collect()
}

/// The executable that `pid` runs, from `/proc/PID/exe`, where it can be read (another user's
/// process is not, except by root).
pub(crate) fn executable(pid: Pid) -> Option<PathBuf> {
    let link = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(super::without_deleted(link))
}

/// The command name of `pid`, where it can be read.
pub(crate) fn command(pid: Pid) -> Option<String> {
    let comm = read_proc(format!("/proc/{pid}/comm"))?;
    Some(comm.trim_end().to_owned()).filter(|c| !c.is_empty())
}

/// Whether the process `pid` started before `time` (with a margin of two clock ticks), from
/// `/proc/PID/stat`, which any user may read. `None` when that cannot be told.
///
/// A daemon writes its pid into its pidfile after it started; a process that started after the
/// file was last written is not the one that wrote it, whatever the file and `/proc/locks` say
/// (a pid reused after the daemon died).
pub(crate) fn started_before(pid: Pid, time: std::time::SystemTime) -> Option<bool> {
    let (_, ticks) = state_and_start(pid)?;
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

/// Rename `from` to `to`, both in the directory `dir` (or relative to the working directory,
/// for `AT_FDCWD`), unless `to` exists: `Ok(false)` when it does. `Err` with
/// `ErrorKind::Unsupported` where the file system cannot do it atomically.
///
/// Unlike a hard link, a rename moves the name that open descriptors of the file show in
/// `/proc/PID/fd`, so a daemon's pidfile appears under its own name there.
pub(crate) fn rename_unless_exists(
    dir: BorrowedFd<'_>,
    from: &Path,
    to: &Path,
) -> io::Result<bool> {
    use nix::fcntl::{RenameFlags, renameat2};
    match renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE) {
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

    #[test]
    fn this_process_reads_its_own_proc() {
        assert_eq!(check_proc(), Ok(()));
        assert_eq!(
            ns_pids(Pid::this()).and_then(|p| p.last().copied()),
            Some(Pid::this().as_raw())
        );
        let now = std::time::SystemTime::now();
        assert_eq!(started_before(Pid::this(), now), Some(true));
        let long_ago = now - Duration::from_secs(10 * 365 * 86400);
        assert_eq!(started_before(Pid::this(), long_ago), Some(false));
        assert!(command(Pid::this()).is_some());
        assert_eq!(parent_of(Pid::this()), Some(Pid::parent()));
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
    fn a_descriptor_on_a_high_number_is_found() {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("high.pid");
        let file = File::create(&path).expect("create");
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor (or -1), owned by nobody else.
        let high = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900) };
        assert!(high >= 900, "{}", io::Error::last_os_error());
        // SAFETY: `high` was just returned by the kernel and is owned here only.
        let high = unsafe { OwnedFd::from_raw_fd(high) };
        let meta = fs::metadata(&path).expect("stat");
        let number = high.as_raw_fd();
        let probe = File::open(&path).expect("open");
        drop(file);
        assert_eq!(find_fd(Pid::this(), &meta, |fd| fd == number), Some(true));
        drop(high);
        assert_eq!(find_fd(Pid::this(), &meta, |fd| fd == number), Some(false));
        drop(probe);
        assert_eq!(find_fd(Pid::this(), &meta, |_| true), Some(false));
    }
}
