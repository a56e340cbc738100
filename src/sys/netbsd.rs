//! NetBSD: the `kern.file2` and `kern.proc2` sysctls tell what Linux reads in `/proc`.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Pid;

/// `DTYPE_VNODE` of `<sys/file.h>`.
const DTYPE_VNODE: u32 = 1;
/// `FHASLOCK` of `<sys/fcntl.h>`: the open file holds a `flock`.
const FHASLOCK: u32 = 0x4000;

/// The records of a sysctl that returns an array of `T`, each `size_of::<T>()` bytes, whose
/// last two name elements are that size and how many fit: asked for the size first, then read
/// with room to spare.
fn records<T>(mib: &[libc::c_int]) -> io::Result<Vec<T>> {
    let elem = std::mem::size_of::<T>();
    let mut mib = mib.to_vec();
    mib.extend([elem as libc::c_int, 0]);
    let count_at = mib.len() - 1;
    for _ in 0..4 {
        let mut size: libc::size_t = 0;
        // SAFETY: a null buffer asks only for the size, written to `size`.
        let rc = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                mib.len() as libc::c_uint,
                std::ptr::null_mut(),
                &mut size,
                std::ptr::null(),
                0,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let count = size / elem + 16;
        mib[count_at] = count as libc::c_int;
        let mut found: Vec<T> = Vec::with_capacity(count);
        let mut size = count * elem;
        // SAFETY: the buffer is the capacity of `found`, `size` bytes, which the call fills at
        // most and whose used length it writes back to `size`.
        let rc = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                mib.len() as libc::c_uint,
                found.as_mut_ptr().cast(),
                &mut size,
                std::ptr::null(),
                0,
            )
        };
        if rc == 0 {
            // SAFETY: the kernel wrote `size / elem` whole records, and any byte pattern is a
            // valid value of these plain C structs.
            unsafe { found.set_len((size / elem).min(count)) };
            return Ok(found);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOMEM) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOMEM))
}

fn open_files(pid: Pid) -> io::Result<Vec<libc::kinfo_file>> {
    records(&[
        libc::CTL_KERN,
        libc::KERN_FILE2,
        libc::KERN_FILE_BYPID,
        pid.as_raw(),
    ])
}

/// Whether `pid` has the file of `file` (this process's own descriptor of it) open through a
/// descriptor that holds a lock, from `kern.file2`: the records name a file by the address of
/// its vnode, which the kernel shows to root only (`kern.expose_address`). Without it, a `stat`
/// through `/proc/PID/fd/N` (NetBSD's procfs, where it is mounted) tells whether the pid has
/// the file open. `None` when neither can be read.
pub(crate) fn has_open(pid: Pid, file: &File, meta: &fs::Metadata) -> Option<bool> {
    let mine = open_files(Pid::this())
        .ok()?
        .into_iter()
        .find(|f| f.ki_fd == file.as_raw_fd())
        .map(|f| f.ki_fdata)
        .filter(|&vnode| vnode != 0);
    let Some(vnode) = mine else {
        return proc_fd_has_open(pid, meta);
    };
    match open_files(pid) {
        Ok(files) => Some(files.iter().any(|f| {
            f.ki_pid == pid.as_raw() as u32
                && f.ki_ftype == DTYPE_VNODE
                && f.ki_fdata == vnode
                && f.ki_flag & FHASLOCK != 0
        })),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Some(false),
        Err(_) => None,
    }
}

/// Whether a `stat` through one of `/proc/PID/fd/*` finds the file of `meta`.
fn proc_fd_has_open(pid: Pid, meta: &fs::Metadata) -> Option<bool> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.flatten().any(|entry| {
        fs::metadata(entry.path()).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    }))
}

/// The descriptors this process has open, from `kern.file2`: `/dev/fd` shows only 0, 1 and 2
/// unless fdescfs is mounted there.
pub(crate) fn open_fds() -> io::Result<Vec<RawFd>> {
    let me = Pid::this().as_raw() as u32;
    Ok(open_files(Pid::this())?
        .into_iter()
        .filter(|f| f.ki_pid == me && f.ki_fd >= 0)
        .map(|f| f.ki_fd)
        .collect())
}

/// What [`open_fds`] reads, for error messages.
pub(crate) const OPEN_FDS_DIR: &str = "kern.file2";

fn processes(op: libc::c_int, arg: libc::c_int) -> io::Result<Vec<libc::kinfo_proc2>> {
    records(&[libc::CTL_KERN, libc::KERN_PROC2, op, arg])
}

/// How many threads (LWPs) this process runs: `p_nlwps` of `kern.proc2`.
pub(crate) fn thread_count() -> Option<usize> {
    let info = processes(libc::KERN_PROC_PID, Pid::this().as_raw())
        .ok()?
        .into_iter()
        .next()?;
    (info.p_nlwps > 0).then_some(info.p_nlwps as usize)
}

/// The parent of `pid`: `p_ppid` of `kern.proc2`.
pub(crate) fn parent_of(pid: Pid) -> Option<Pid> {
    let info = processes(libc::KERN_PROC_PID, pid.as_raw())
        .ok()?
        .into_iter()
        .next()?;
    Some(Pid::from_raw(info.p_ppid))
}

/// The other processes of process group `group`, from `kern.proc2`.
pub(crate) fn process_group_members(group: Pid) -> Vec<Pid> {
    let me = Pid::this();
    processes(libc::KERN_PROC_PGRP, group.as_raw())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.p__pgid == group.as_raw() && p.p_pid > 0)
        .map(|p| Pid::from_raw(p.p_pid))
        .filter(|&pid| pid != me)
        .collect()
}

/// The executable that `pid` runs: `kern.proc_args.PID.pathname`, where it can be read.
pub(crate) fn executable(pid: Pid) -> Option<std::path::PathBuf> {
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC_ARGS,
        pid.as_raw(),
        libc::KERN_PROC_PATHNAME,
    ];
    let mut path = vec![0u8; libc::PATH_MAX as usize];
    let mut size: libc::size_t = path.len();
    // SAFETY: the buffer is `path`, of `size` bytes, which the call fills at most and whose used
    // length it writes back to `size`.
    let rc = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            mib.len() as libc::c_uint,
            path.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    path.truncate(size);
    super::portable::path_of_c_bytes(&path)
}

/// The command name of `pid`: `p_comm`.
pub(crate) fn command(pid: Pid) -> Option<String> {
    let info = processes(libc::KERN_PROC_PID, pid.as_raw())
        .ok()?
        .into_iter()
        .next()?;
    Some(super::portable::c_name(&info.p_comm)).filter(|c| !c.is_empty())
}

/// The kernel's own file systems, from `fstatvfs`'s type name.
pub(crate) fn kernel_file_system(file: &File) -> Option<&'static str> {
    // SAFETY: a zeroed statvfs is a valid value of the plain C struct.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open (borrowed from `file`), and `fs` is written at most.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut fs) } != 0 {
        return None;
    }
    super::portable::kernel_type(&fs.f_fstypename, &["procfs", "kernfs", "ptyfs", "fdesc"])
}

/// Rename `from` to `to`, both in the directory `dir`, unless `to` exists (`Ok(false)`): this
/// system's `rename` always replaces, so a hard link, then an unlink.
pub(crate) fn rename_unless_exists(
    dir: std::os::fd::BorrowedFd<'_>,
    from: &Path,
    to: &Path,
) -> io::Result<bool> {
    super::portable::link_unless_exists(dir, from, to)
}
