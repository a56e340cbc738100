//! macOS: libproc (`proc_pidinfo`, `proc_pidfdinfo`, `proc_listpgrppids`, `proc_name`) tells
//! what Linux reads in `/proc`.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Pid;

/// `struct proc_fileinfo` of `<sys/proc_info.h>`, which libc does not have. Only its layout is
/// needed: the kernel fills it, nothing reads it.
#[repr(C)]
#[allow(dead_code)]
struct ProcFileInfo {
    fi_openflags: u32,
    fi_status: u32,
    fi_offset: libc::off_t,
    fi_type: i32,
    fi_guardflags: u32,
}

/// `struct vnode_fdinfo`: what `proc_pidfdinfo(PROC_PIDFDVNODEINFO)` fills.
#[repr(C)]
struct VnodeFdInfo {
    pfi: ProcFileInfo,
    pvi: libc::vnode_info,
}

const PROC_PIDFDVNODEINFO: libc::c_int = 1;

/// The device and inode of descriptor `fd` of `pid`, if it is a vnode; the errno otherwise.
fn vnode_of(pid: Pid, fd: i32) -> Result<(u32, u64), i32> {
    // SAFETY: a zeroed VnodeFdInfo is a valid value of the plain C struct.
    let mut info: VnodeFdInfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<VnodeFdInfo>() as libc::c_int;
    // SAFETY: the buffer is `info`, of `size` bytes, which the call fills at most.
    let n = unsafe {
        libc::proc_pidfdinfo(
            pid.as_raw(),
            fd,
            PROC_PIDFDVNODEINFO,
            (&mut info as *mut VnodeFdInfo).cast(),
            size,
        )
    };
    if n != size {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok((info.pvi.vi_stat.vst_dev, info.pvi.vi_stat.vst_ino))
}

/// Whether `pid` has the file of `meta` open, from `proc_pidinfo(PROC_PIDLISTFDS)` and
/// `proc_pidfdinfo(PROC_PIDFDVNODEINFO)`, matched by device and inode. `None` when that
/// process's descriptors cannot be read (another user's, unless this process is root).
pub(crate) fn has_open(pid: Pid, _file: &File, meta: &fs::Metadata) -> Option<bool> {
    let wanted = (meta.dev() as u32, meta.ino());
    // A daemon of this crate takes its pidfile before it opens anything else.
    match vnode_of(pid, 3) {
        Ok(found) if found == wanted => return Some(true),
        Err(libc::ESRCH) => return Some(false),
        _ => {}
    }
    let entry = std::mem::size_of::<libc::proc_fdinfo>();
    // SAFETY: with a null buffer, PROC_PIDLISTFDS only says how many bytes it would need.
    let needed = unsafe {
        libc::proc_pidinfo(
            pid.as_raw(),
            libc::PROC_PIDLISTFDS,
            0,
            std::ptr::null_mut(),
            0,
        )
    };
    if needed <= 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Some(false),
            _ => None,
        };
    }
    // Room for descriptors opened meanwhile.
    let mut fds: Vec<libc::proc_fdinfo> = (0..needed as usize / entry + 16)
        .map(|_| libc::proc_fdinfo {
            proc_fd: -1,
            proc_fdtype: 0,
        })
        .collect();
    // SAFETY: the buffer is `fds`, of the size given, which the call fills at most.
    let got = unsafe {
        libc::proc_pidinfo(
            pid.as_raw(),
            libc::PROC_PIDLISTFDS,
            0,
            fds.as_mut_ptr().cast(),
            (fds.len() * entry) as libc::c_int,
        )
    };
    if got <= 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Some(false),
            _ => None,
        };
    }
    fds.truncate(got as usize / entry);
    let mut unreadable = false;
    for fd in &fds {
        if fd.proc_fdtype != libc::PROX_FDTYPE_VNODE as u32 || fd.proc_fd == 3 {
            continue;
        }
        match vnode_of(pid, fd.proc_fd) {
            Ok(found) if found == wanted => return Some(true),
            Ok(_) | Err(libc::EBADF) => {}
            Err(libc::ESRCH) => return Some(false),
            Err(_) => unreadable = true,
        }
    }
    (!unreadable).then_some(false)
}

/// How many threads this process runs: `pti_threadnum` of `proc_pidinfo(PROC_PIDTASKINFO)`.
pub(crate) fn thread_count() -> Option<usize> {
    // SAFETY: a zeroed proc_taskinfo is a valid value of the plain C struct.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: the buffer is `info`, of `size` bytes, which the call fills at most.
    let n = unsafe {
        libc::proc_pidinfo(
            std::process::id() as libc::c_int,
            libc::PROC_PIDTASKINFO,
            0,
            (&mut info as *mut libc::proc_taskinfo).cast(),
            size,
        )
    };
    (n == size && info.pti_threadnum > 0).then_some(info.pti_threadnum as usize)
}

/// The parent of `pid`: `pbi_ppid` of `proc_pidinfo(PROC_PIDTBSDINFO)`.
pub(crate) fn parent_of(pid: Pid) -> Option<Pid> {
    // SAFETY: a zeroed proc_bsdinfo is a valid value of the plain C struct.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is `info`, of `size` bytes, which the call fills at most.
    let n = unsafe {
        libc::proc_pidinfo(
            pid.as_raw(),
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    (n == size).then(|| Pid::from_raw(info.pbi_ppid as i32))
}

/// The other processes of process group `group`, from `proc_listpgrppids`.
pub(crate) fn process_group_members(group: Pid) -> Vec<Pid> {
    // SAFETY: with a null buffer the call only says how many pids it would return.
    let count = unsafe { libc::proc_listpgrppids(group.as_raw(), std::ptr::null_mut(), 0) };
    if count <= 0 {
        return Vec::new();
    }
    let mut pids: Vec<libc::pid_t> = vec![0; count as usize + 16];
    let size = (pids.len() * std::mem::size_of::<libc::pid_t>()) as libc::c_int;
    // SAFETY: the buffer is `pids`, of `size` bytes, which the call fills at most.
    let got = unsafe { libc::proc_listpgrppids(group.as_raw(), pids.as_mut_ptr().cast(), size) };
    pids.truncate(got.clamp(0, pids.len() as libc::c_int) as usize);
    let me = Pid::this();
    pids.into_iter()
        .filter(|&pid| pid > 0)
        .map(Pid::from_raw)
        .filter(|&pid| pid != me)
        .collect()
}

/// The executable that `pid` runs, from `proc_pidpath`, where it can be read.
pub(crate) fn executable(pid: Pid) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut path = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    // SAFETY: the buffer is `path`, of the size given, which the call fills at most.
    let n =
        unsafe { libc::proc_pidpath(pid.as_raw(), path.as_mut_ptr().cast(), path.len() as u32) };
    let n = usize::try_from(n).ok().filter(|&n| n > 0)?;
    Some(std::ffi::OsStr::from_bytes(&path[..n.min(path.len())]).into())
}

/// The command name of `pid`, from `proc_name`.
pub(crate) fn command(pid: Pid) -> Option<String> {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is `name`, of the size given, which the call fills at most.
    let n = unsafe { libc::proc_name(pid.as_raw(), name.as_mut_ptr().cast(), name.len() as u32) };
    let n = usize::try_from(n).ok().filter(|&n| n > 0)?;
    Some(String::from_utf8_lossy(&name[..n.min(name.len())]).into_owned())
}

/// The kernel's own file systems (devfs, fdesc), from `fstatfs`'s type name.
pub(crate) fn kernel_file_system(file: &File) -> Option<&'static str> {
    // SAFETY: a zeroed statfs is a valid value of the plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open (borrowed from `file`), and `fs` is written at most.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return None;
    }
    super::portable::kernel_type(&fs.f_fstypename, &["devfs", "fdesc"])
}

/// Rename `from` to `to`, both in the directory `dir`, unless `to` exists (`Ok(false)`):
/// `renameatx_np(RENAME_EXCL)`, or, on a file system that does not support it, a hard link and
/// an unlink.
pub(crate) fn rename_unless_exists(
    dir: BorrowedFd<'_>,
    from: &Path,
    to: &Path,
) -> io::Result<bool> {
    let c = |path: &Path| {
        std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
    };
    let (c_from, c_to) = (c(from)?, c(to)?);
    let fd = dir.as_raw_fd();
    // SAFETY: both paths are valid NUL-terminated strings for the length of the call, and `fd`
    // is borrowed for it (or is AT_FDCWD).
    if unsafe { libc::renameatx_np(fd, c_from.as_ptr(), fd, c_to.as_ptr(), libc::RENAME_EXCL) } == 0
    {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(false),
        Some(libc::ENOTSUP | libc::EINVAL) => super::portable::link_unless_exists(dir, from, to),
        _ => Err(e),
    }
}
