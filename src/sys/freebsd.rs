//! FreeBSD: the `kern.proc` sysctls tell what Linux reads in `/proc`, with no need for procfs or
//! fdescfs to be mounted.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Pid;

/// The value of the sysctl `mib`, whose size may change between two calls (a process opening
/// files meanwhile): asked for its size, then read with room to spare, again if it grew.
fn sysctl(mib: &[libc::c_int]) -> io::Result<Vec<u8>> {
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
        size += size / 4 + 4096;
        let mut buf = vec![0u8; size];
        // SAFETY: the buffer is `buf`, of `size` bytes, which the call fills at most and whose
        // used length it writes back to `size`.
        let rc = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                mib.len() as libc::c_uint,
                buf.as_mut_ptr().cast(),
                &mut size,
                std::ptr::null(),
                0,
            )
        };
        if rc == 0 {
            buf.truncate(size);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOMEM) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOMEM))
}

/// One descriptor of `struct kinfo_file`, as `kern.proc.filedesc` packs them: the offsets of
/// `<sys/user.h>` on FreeBSD 12 and later, whose union libc leaves opaque.
struct OpenFile {
    fd: i32,
    vnode: bool,
    has_lock: bool,
    dev: u64,
    ino: u64,
}

/// Offsets in a packed `struct kinfo_file`.
const KF_TYPE: usize = 4;
const KF_FD: usize = 8;
const KF_FLAGS: usize = 16;
/// `kf_un.kf_file.kf_file_fsid` and `kf_file_fileid`: the union starts at 32.
const KF_FILE_FSID: usize = 32 + 256;
const KF_FILE_FILEID: usize = 32 + 272;
/// A record holds at least the whole union and the status that follows it.
const KF_MIN: usize = 32 + 304;

fn int_at(record: &[u8], at: usize) -> i32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&record[at..at + 4]);
    i32::from_ne_bytes(bytes)
}

fn u64_at(record: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&record[at..at + 8]);
    u64::from_ne_bytes(bytes)
}

/// The descriptors of `pid`, from `kern.proc.filedesc`.
fn open_files(pid: Pid) -> io::Result<Vec<OpenFile>> {
    let buf = sysctl(&[
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_FILEDESC,
        pid.as_raw(),
    ])?;
    let mut files = Vec::new();
    let mut at = 0;
    while at + KF_MIN <= buf.len() {
        let size = int_at(&buf[at..], 0) as usize;
        if size < KF_MIN || at + size > buf.len() {
            break;
        }
        let record = &buf[at..at + size];
        files.push(OpenFile {
            fd: int_at(record, KF_FD),
            vnode: int_at(record, KF_TYPE) == libc::KF_TYPE_VNODE,
            has_lock: int_at(record, KF_FLAGS) & libc::KF_FLAG_HASLOCK != 0,
            dev: u64_at(record, KF_FILE_FSID),
            ino: u64_at(record, KF_FILE_FILEID),
        });
        at += size;
    }
    Ok(files)
}

/// Whether `pid` has the file of `meta` open through a descriptor that holds a lock
/// (`KF_FLAG_HASLOCK`), from `kern.proc.filedesc`. On a file that the caller found locked
/// exclusively, that names the holder. `None` when that process's descriptors cannot be read
/// (another user's, unless this process is root).
pub(crate) fn has_open(pid: Pid, _file: &File, meta: &fs::Metadata) -> Option<bool> {
    match open_files(pid) {
        Ok(files) => Some(
            files
                .iter()
                .any(|f| f.vnode && f.has_lock && f.dev == meta.dev() && f.ino == meta.ino()),
        ),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Some(false),
        Err(_) => None,
    }
}

/// The descriptors this process has open, from `kern.proc.filedesc`: `/dev/fd` shows only 0, 1
/// and 2 unless fdescfs is mounted there.
pub(crate) fn open_fds() -> io::Result<Vec<RawFd>> {
    Ok(open_files(Pid::this())?
        .into_iter()
        .map(|f| f.fd)
        .filter(|&fd| fd >= 0)
        .collect())
}

/// What [`open_fds`] reads, for error messages.
pub(crate) const OPEN_FDS_DIR: &str = "kern.proc.filedesc";

/// The `kinfo_proc` records of a `kern.proc` sysctl.
fn processes(mib: &[libc::c_int]) -> io::Result<Vec<libc::kinfo_proc>> {
    let buf = sysctl(mib)?;
    let mut found = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let size = int_at(&buf[at..], 0) as usize;
        if size == 0 || at + size > buf.len() {
            break;
        }
        // SAFETY: a zeroed kinfo_proc is a valid value of the plain C struct.
        let mut info: libc::kinfo_proc = unsafe { std::mem::zeroed() };
        let n = size.min(std::mem::size_of::<libc::kinfo_proc>());
        // SAFETY: `n` bytes are read from the record and written into `info`, which has room
        // for them; any byte pattern is a valid kinfo_proc.
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf[at..].as_ptr(),
                (&mut info as *mut libc::kinfo_proc).cast::<u8>(),
                n,
            );
        }
        found.push(info);
        at += size;
    }
    Ok(found)
}

fn process(pid: Pid) -> Option<libc::kinfo_proc> {
    processes(&[
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PID,
        pid.as_raw(),
    ])
    .ok()?
    .into_iter()
    .next()
}

/// How many threads this process runs: `ki_numthreads` of `kern.proc.pid`.
pub(crate) fn thread_count() -> Option<usize> {
    let info = process(Pid::this())?;
    (info.ki_numthreads > 0).then_some(info.ki_numthreads as usize)
}

/// The parent of `pid`: `ki_ppid` of `kern.proc.pid`.
pub(crate) fn parent_of(pid: Pid) -> Option<Pid> {
    Some(Pid::from_raw(process(pid)?.ki_ppid))
}

/// The other processes of process group `group`, from `kern.proc.pgrp`.
pub(crate) fn process_group_members(group: Pid) -> Vec<Pid> {
    let me = Pid::this();
    processes(&[
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PGRP,
        group.as_raw(),
    ])
    .unwrap_or_default()
    .into_iter()
    .filter(|p| p.ki_pgid == group.as_raw() && p.ki_pid > 0)
    .map(|p| Pid::from_raw(p.ki_pid))
    .filter(|&pid| pid != me)
    .collect()
}

/// The executable that `pid` runs: `kern.proc.pathname`, where it can be read.
pub(crate) fn executable(pid: Pid) -> Option<std::path::PathBuf> {
    let path = sysctl(&[
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PATHNAME,
        pid.as_raw(),
    ])
    .ok()?;
    super::portable::path_of_c_bytes(&path)
}

/// The command name of `pid`: `ki_comm`.
pub(crate) fn command(pid: Pid) -> Option<String> {
    Some(super::portable::c_name(&process(pid)?.ki_comm)).filter(|c| !c.is_empty())
}

/// The kernel's own file systems, from `fstatfs`'s type name.
pub(crate) fn kernel_file_system(file: &File) -> Option<&'static str> {
    // SAFETY: a zeroed statfs is a valid value of the plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open (borrowed from `file`), and `fs` is written at most.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return None;
    }
    let kernel = ["procfs", "linprocfs", "linsysfs", "devfs", "fdescfs"];
    super::portable::kernel_type(&fs.f_fstypename, &kernel)
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
