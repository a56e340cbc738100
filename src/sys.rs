//! The system underneath: raw system calls that nix lacks, `/proc` and its equivalents, raw
//! descriptors, and the process's exit. Nearly all of the crate's `unsafe` is here, each block
//! with the reason it holds, and so is everything that differs from one system to another: the
//! rest of the crate asks the functions below and never names a system.
//!
//! Each question has one answer per mechanism:
//!
//! | question | Linux | Linux, `--cfg daemons_portable` | macOS | FreeBSD | NetBSD |
//! | --- | --- | --- | --- | --- | --- |
//! | who holds the pidfile's lock | the `lock:` line in `/proc/PID/fdinfo/FD` ([`LOCK_LINES`]) | the file is locked (a `LOCK_SH \| LOCK_NB` is refused) and the pid has it open: `/proc/PID/fd` | locked, and open: `proc_pidinfo(PROC_PIDLISTFDS)`, `proc_pidfdinfo` | locked, and a descriptor of the pid that holds a lock on it: `kern.proc.filedesc` (`KF_FLAG_HASLOCK`) | locked, and a descriptor of the pid that holds a lock on it: `kern.file2`, where kernel addresses are shown (else `/proc/PID/fd`) |
//! | the holder when the pid named is not it | `/proc/locks` | unknown | unknown | unknown | unknown |
//! | waiting for a daemon to exit | pidfd ([`ExitWatch`]) | a child process blocked on the pidfile's lock ([`LockWaiter`]) | kqueue `EVFILT_PROC` ([`ExitWatch`]) | kqueue | kqueue |
//! | pinning a process before it is checked ([`ExitWatch`]; the signal itself is sent by `gate::process`) | a pidfd, which `pidfd_send_signal` goes through | its start time in `/proc/PID/stat`; a `kill` after the check again | a kqueue; a `kill` once it says the process has not exited, after the check again | as macOS | as macOS |
//! | descriptors inherited through exec | `/proc/self/fd` | `/dev/fd` | `/dev/fd` | `kern.proc.filedesc` | `kern.file2` |
//! | threads before a fork | `/proc/self/task` | `/proc/self/task` | `PROC_PIDTASKINFO` | `ki_numthreads` | `p_nlwps` |
//! | the daemon's process group | `/proc/*/stat` | `/proc/*/stat` | `proc_listpgrppids` | `kern.proc.pgrp` | `kern.proc2` |
//! | create the pidfile locked ([`rename_unless_exists`], in the directory that the path gate opened) | `renameat2(RENAME_NOREPLACE)` | as Linux | `renameatx_np(RENAME_EXCL)` | `linkat`, then `unlinkat` | as FreeBSD |
//! | temporary names nobody can foresee ([`random`]) | `getrandom` | as Linux | `arc4random_buf` | `arc4random_buf` | `arc4random_buf` |
//! | the parent of a process ([`parent_of`]) | `/proc/PID/stat` | `/proc/PID/stat` | `PROC_PIDTBSDINFO` | `ki_ppid` | `p_ppid` |
//! | a supervised child dies with its parent ([`die_with_parent`]) | `PR_SET_PDEATHSIG` | as Linux | nothing | `PROC_PDEATHSIG_CTL` | nothing |
//! | the peer of a Unix socket ([`peer`]) | `SO_PEERCRED` | as Linux | `getpeereid`, `LOCAL_PEERPID` | `LOCAL_PEERCRED` | `LOCAL_PEEREID` |
//! | a handed descriptor shares the pidfile's lock ([`holds_exclusive_flock`]) | its own `lock:` line in `/proc/self/fdinfo` | unknown: the handover takes the lock through it while a fresh open is refused | unknown | unknown | unknown |
//! | a Unix socket path longer than `sun_path` ([`socket_path`]) | `/proc/self/fd/DIR/NAME` | as Linux | refused | refused | refused |
//! | passed descriptors close-on-exec ([`receive_fds`]) | `MSG_CMSG_CLOEXEC` | as Linux | set after they arrive | `MSG_CMSG_CLOEXEC` | `MSG_CMSG_CLOEXEC` |

#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
compile_error!("daemons supports Linux, macOS, FreeBSD and NetBSD");

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

// The wait on a pidfile's lock, which needs only flock.
mod lockwait;

// What every build of Linux reads in /proc.
#[cfg(target_os = "linux")]
mod linux;

// The mechanisms that only Linux has: pidfds, fdinfo lock lines, /proc/locks.
#[cfg(all(target_os = "linux", not(daemons_portable)))]
mod pidfd;

// The mechanisms that work without those, and what each other system offers.
#[cfg(any(not(target_os = "linux"), daemons_portable))]
mod portable;

#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "netbsd"))]
mod kqueue;

#[cfg(target_os = "macos")]
mod macos;

#[cfg(target_os = "freebsd")]
mod freebsd;

#[cfg(target_os = "netbsd")]
mod netbsd;

#[cfg(target_os = "freebsd")]
use freebsd as os;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
use macos as os;
#[cfg(target_os = "netbsd")]
use netbsd as os;

pub(crate) use os::{
    command, has_open, kernel_file_system, parent_of, process_group_members, rename_unless_exists,
    thread_count,
};

#[cfg(target_os = "linux")]
pub(crate) use linux::{check_proc, ns_pids, started_before};
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::{check_proc, ns_pids, started_before};

#[cfg(all(target_os = "linux", not(daemons_portable)))]
pub(crate) use pidfd::{
    ExitWatch, OPEN_FDS_DIR, flock_holders, holds_exclusive_flock, holds_flock, open_fds,
    wait_all_exited,
};
#[cfg(any(not(target_os = "linux"), daemons_portable))]
pub(crate) use portable::{flock_holders, holds_exclusive_flock, holds_flock, wait_all_exited};

pub(crate) use lockwait::LockWaiter;

#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "netbsd"))]
pub(crate) use kqueue::ExitWatch;
#[cfg(all(target_os = "linux", daemons_portable))]
pub(crate) use portable::ExitWatch;

#[cfg(any(target_os = "freebsd", target_os = "netbsd"))]
pub(crate) use os::{OPEN_FDS_DIR, open_fds};
#[cfg(any(target_os = "macos", all(target_os = "linux", daemons_portable)))]
pub(crate) use portable::{OPEN_FDS_DIR, open_fds};

/// Whether [`holds_flock`] reads the lock's holder from the kernel (Linux's fdinfo lock lines).
/// Where it does not, the holder check is [`has_open`] on a file that the caller found locked.
pub(crate) const LOCK_LINES: bool = cfg!(all(target_os = "linux", not(daemons_portable)));

/// Whether an [`ExitWatch`] wakes the moment its process exits (a pidfd, a kqueue). Where it
/// does not (Linux built with `daemons_portable`, which has neither), it looks again at growing
/// intervals, and a stop waits on the pidfile's lock instead ([`LockWaiter`]).
pub(crate) const EXIT_EVENTS: bool = !cfg!(all(target_os = "linux", daemons_portable));

/// Whether an [`ExitWatch`] is a handle that a signal can go through and that reaches the very
/// process that was watched, whatever happened to its pid since (a pidfd). Elsewhere a signal is
/// a `kill` of the pid, which the signal gate (`gate::process`) sends once the watch says the
/// process has not exited, and once its check holds again.
pub(crate) const SIGNALS_PINNED: bool = cfg!(all(target_os = "linux", not(daemons_portable)));

/// A pipe, both ends close-on-exec, and both non-blocking if asked (as `pipe2` makes them).
///
/// # Platform-specific behavior
///
/// macOS has no `pipe2`: the flags are set right after `pipe`, and a fork in another thread in
/// between would let its child inherit the ends (`detach` refuses a process with other threads).
pub(crate) fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "macos")]
    {
        use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
        let (read, write) = nix::unistd::pipe()?;
        for end in [&read, &write] {
            fcntl(end, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        }
        if nonblocking {
            for end in [&read, &write] {
                fcntl(end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            }
        }
        Ok((read, write))
    }
    #[cfg(not(target_os = "macos"))]
    {
        use nix::fcntl::OFlag;
        let mut flags = OFlag::O_CLOEXEC;
        if nonblocking {
            flags |= OFlag::O_NONBLOCK;
        }
        Ok(nix::unistd::pipe2(flags)?)
    }
}

/// 64 bits that nobody can foresee, for the temporary names of files that another user could
/// otherwise create first: `getrandom` on Linux (which does not wait for the entropy pool at
/// early boot: `/dev/urandom` then), `arc4random_buf` elsewhere.
pub(crate) fn random() -> u64 {
    let mut bytes = [0u8; 8];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the kernel writes at most `bytes.len()` bytes into `bytes`, which outlives the
        // call.
        let n =
            unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
        if n != bytes.len() as isize {
            use std::io::Read;
            let urandom = std::fs::File::open("/dev/urandom");
            if urandom.and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
                // No kernel source at all: the clock and the pid, the best there is.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                bytes = (now ^ (u64::from(std::process::id()) << 32)).to_ne_bytes();
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: arc4random_buf fills exactly `bytes.len()` bytes of `bytes`, and cannot fail.
        unsafe { libc::arc4random_buf(bytes.as_mut_ptr().cast(), bytes.len()) };
    }
    u64::from_ne_bytes(bytes)
}

/// Set this process's supplementary groups to those of user `name`, plus `gid`.
pub(crate) fn init_groups(name: &std::ffi::CStr, gid: nix::unistd::Gid) -> nix::Result<()> {
    #[cfg(target_os = "macos")]
    {
        // SAFETY: `name` is a valid NUL-terminated string for the length of the call.
        let rc = unsafe { libc::initgroups(name.as_ptr(), gid.as_raw() as libc::c_int) };
        nix::errno::Errno::result(rc).map(drop)
    }
    #[cfg(not(target_os = "macos"))]
    {
        nix::unistd::initgroups(name, gid)
    }
}

/// Set this process's supplementary groups to `gid` alone.
pub(crate) fn set_groups(gid: nix::unistd::Gid) -> nix::Result<()> {
    #[cfg(target_os = "macos")]
    {
        let groups = [gid.as_raw()];
        // SAFETY: the pointer and the count describe `groups`, which lives through the call.
        let rc = unsafe { libc::setgroups(1, groups.as_ptr()) };
        nix::errno::Errno::result(rc).map(drop)
    }
    #[cfg(not(target_os = "macos"))]
    {
        nix::unistd::setgroups(&[gid])
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

/// Have the kernel SIGKILL this process when its parent dies, as a supervised body must not
/// outlive its supervisor (killed at a stop timeout, say); exit at once if the parent is gone
/// already.
///
/// # Platform-specific behavior
///
/// `prctl(PR_SET_PDEATHSIG)` on Linux, `procctl(PROC_PDEATHSIG_CTL)` on FreeBSD. macOS and NetBSD
/// have no such request: there the child only exits at once if its parent is gone already, and
/// a supervisor killed with SIGKILL leaves its child running.
pub(crate) fn die_with_parent() {
    let parent = nix::unistd::getppid();
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL));
    #[cfg(target_os = "freebsd")]
    {
        let mut signal: libc::c_int = libc::SIGKILL;
        // SAFETY: PROC_PDEATHSIG_CTL on this process reads one int, `signal`, which lives through
        // the call.
        let _ = unsafe {
            libc::procctl(
                libc::P_PID,
                0,
                libc::PROC_PDEATHSIG_CTL,
                (&mut signal as *mut libc::c_int).cast(),
            )
        };
    }
    if nix::unistd::getppid() != parent {
        exit_now(1);
    }
}

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
///
/// # Safety
///
/// Nothing else in this process owns any of `fds`: they were passed to it for it to own, and
/// no other value has taken them (they are adopted once).
pub(crate) unsafe fn adopt_passed_fds(fds: std::ops::Range<RawFd>) -> Vec<OwnedFd> {
    fds.filter(|&fd| set_cloexec(fd))
        // SAFETY: nothing else owns these descriptors (the caller's contract), and
        // `set_cloexec` just checked that each is open.
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

/// Send `data` and `fds` over a connected Unix socket in one message (`SCM_RIGHTS`).
pub(crate) fn send_with_fds(
    socket: &std::os::unix::net::UnixStream,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let control: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[io::IoSlice::new(data)],
        control,
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    if sent < data.len() {
        // The descriptors went with the first part; the rest is plain data.
        io::Write::write_all(&mut &*socket, &data[sent..])?;
    }
    Ok(())
}

/// Receive what [`send_with_fds`] sent: at most `buf.len()` bytes of data (how many, returned)
/// and the descriptors that came with them (at most 64), close-on-exec. Zero bytes and no
/// descriptor is the end of the stream.
pub(crate) fn receive_with_fds(
    socket: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let mut space = nix::cmsg_space!([RawFd; 64]);
    let mut iov = [io::IoSliceMut::new(buf)];
    // macOS has no MSG_CMSG_CLOEXEC: the descriptors are made close-on-exec right after they
    // arrive, and a fork and exec in another thread in between would let them leak into it.
    #[cfg(not(target_os = "macos"))]
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    #[cfg(target_os = "macos")]
    let flags = MsgFlags::empty();
    let message = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), flags)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let received = message.bytes;
    let mut fds = Vec::new();
    for cmsg in message
        .cmsgs()
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?
    {
        if let ControlMessageOwned::ScmRights(arrived) = cmsg {
            #[cfg(target_os = "macos")]
            for &fd in &arrived {
                set_cloexec(fd);
            }
            // SAFETY: the kernel just installed these descriptors in this process for it to
            // own (SCM_RIGHTS); nothing else holds them.
            fds.extend(
                arrived
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((received, fds))
}

/// Connect to the Unix stream socket at `path` without blocking: a listener whose queue of
/// connections is full answers `EAGAIN` at once. The stream returned blocks, close-on-exec.
///
/// # Platform-specific behavior
///
/// macOS has no `SOCK_CLOEXEC` or `SOCK_NONBLOCK`: the flags are set right after `socket`, and
/// a fork and exec in another thread in between would let its child inherit the socket.
pub(crate) fn connect_without_blocking(
    path: &std::path::Path,
) -> io::Result<std::os::unix::net::UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::AsRawFd;
    let errno = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
    let address = UnixAddr::new(path).map_err(errno)?;
    #[cfg(not(target_os = "macos"))]
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(errno)?;
    #[cfg(target_os = "macos")]
    let fd = {
        use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .map_err(errno)?;
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(errno)?;
        fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(errno)?;
        fd
    };
    connect(fd.as_raw_fd(), &address).map_err(errno)?;
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether the socket file at `path` is one where nobody listens any more: a connection, tried
/// without blocking (a full queue is somebody's), is refused. A path too long for a socket
/// address is reached as [`socket_path`] reaches it.
pub(crate) fn nobody_listens(path: &std::path::Path) -> bool {
    socket_path(path).is_ok_and(|(address, _dir)| {
        connect_without_blocking(&address)
            .is_err_and(|e| e.raw_os_error() == Some(libc::ECONNREFUSED))
    })
}

/// Whether `fd` is a Unix stream socket that listens (`listen(2)` was called on it).
pub(crate) fn is_listening_unix_stream(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{
        AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
    };
    use std::os::fd::AsRawFd;
    let unix = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .is_ok_and(|local| local.family() == Some(AddressFamily::Unix));
    unix && getsockopt(&fd, sockopt::SockType).is_ok_and(|kind| kind == SockType::Stream)
        && getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false)
}

/// Whether `fd` is a stream socket that listens, of any family.
pub(crate) fn is_listening_stream(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{SockType, getsockopt, sockopt};
    getsockopt(&fd, sockopt::SockType).is_ok_and(|kind| kind == SockType::Stream)
        && getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false)
}

/// The longest path a Unix socket address holds here (`sun_path`, less its terminating NUL).
pub(crate) fn socket_path_max() -> usize {
    // SAFETY: a zeroed sockaddr_un is a valid value of the plain C struct; only its field's
    // size is read.
    let address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_path.len() - 1
}

/// A path that names the same place as `path` and fits in a Unix socket address, for `bind`
/// and `connect`, with the descriptor that it goes through (kept open while the path is used).
///
/// # Platform-specific behavior
///
/// On Linux a path too long for `sun_path` is reached through a descriptor of its directory,
/// as `/proc/self/fd/N/NAME`. Elsewhere such a path is an error of kind `InvalidInput`.
pub(crate) fn socket_path(
    path: &std::path::Path,
) -> io::Result<(std::path::PathBuf, Option<OwnedFd>)> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().len() <= socket_path_max() {
        return Ok((path.to_path_buf(), None));
    }
    let too_long = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is longer than the {} bytes a Unix socket address holds",
                path.display(),
                socket_path_max()
            ),
        )
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(too_long());
        };
        let dir = std::fs::File::open(dir)?;
        let short =
            std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        if short.as_os_str().as_bytes().len() > socket_path_max() {
            return Err(too_long());
        }
        Ok((short, Some(OwnedFd::from(dir))))
    }
    #[cfg(not(target_os = "linux"))]
    Err(too_long())
}

/// Who is at the other end of a connected Unix socket: its effective user, and its pid where the
/// system tells (`SO_PEERCRED` on Linux; `getpeereid` and `LOCAL_PEERPID` on macOS;
/// `LOCAL_PEERCRED` on FreeBSD, whose pid FreeBSD 13 and later fill in; `LOCAL_PEEREID` on
/// NetBSD).
pub(crate) struct Peer {
    pub(crate) uid: u32,
    pub(crate) pid: Option<nix::unistd::Pid>,
}

/// The [`Peer`] of `socket`.
pub(crate) fn peer(socket: &std::os::unix::net::UnixStream) -> io::Result<Peer> {
    use std::os::fd::AsRawFd;
    let errno = |e: nix::errno::Errno| io::Error::from_raw_os_error(e as i32);
    let pid = |raw: libc::pid_t| (raw > 0).then(|| nix::unistd::Pid::from_raw(raw));
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let cred = getsockopt(socket, PeerCredentials).map_err(errno)?;
        let _ = socket.as_raw_fd();
        Ok(Peer {
            uid: cred.uid(),
            pid: pid(cred.pid()),
        })
    }
    #[cfg(target_os = "macos")]
    {
        use nix::sys::socket::{getsockopt, sockopt::LocalPeerPid};
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: getpeereid writes the two ids through pointers to locals that outlive the call.
        if unsafe { libc::getpeereid(socket.as_raw_fd(), &mut uid, &mut gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Peer {
            uid,
            pid: pid(getsockopt(socket, LocalPeerPid).map_err(errno)?),
        })
    }
    #[cfg(target_os = "freebsd")]
    {
        // SAFETY: a zeroed xucred is a valid value of the plain C struct.
        let mut cred: libc::xucred = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xucred>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `cred`, and the new length to `len`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                0,
                libc::LOCAL_PEERCRED,
                (&mut cred as *mut libc::xucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = errno;
        Ok(Peer {
            uid: cred.cr_uid,
            // SAFETY: the union holds the peer's pid since FreeBSD 13, and zero before it; any
            // value of a pid_t is valid.
            pid: pid(unsafe { cred.cr_pid__c_anonymous_union.cr_pid }),
        })
    }
    #[cfg(target_os = "netbsd")]
    {
        // SAFETY: a zeroed unpcbid is a valid value of the plain C struct.
        let mut id: libc::unpcbid = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::unpcbid>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `id`, and the new length to `len`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                0,
                libc::LOCAL_PEEREID,
                (&mut id as *mut libc::unpcbid).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = errno;
        Ok(Peer {
            uid: id.unp_euid,
            pid: pid(id.unp_pid),
        })
    }
}

/// Close this process's copy of `fd`, in the child of a fork whose owner of `fd` (a value on a
/// frame of the caller's) never runs again there: the daemon side of `start()`.
///
/// # Safety
///
/// The value that owns `fd` must never use or close it again in this process: it lives on a
/// frame that this process never returns to (it ends with `_exit`), and is never dropped.
pub(crate) unsafe fn close_copy(fd: RawFd) {
    // SAFETY: the caller guarantees that the owner of `fd` never uses or closes it after this.
    unsafe { libc::close(fd) };
}

/// Close `fd` if it lacks close-on-exec: a descriptor inherited through `exec`.
///
/// # Safety
///
/// Nothing in this process may own `fd` if it lacks close-on-exec: no `File`, socket or
/// `OwnedFd` may use or close it after this. std opens everything with close-on-exec, so such
/// a descriptor is one that this process inherited, unless the program cleared the flag itself
/// or adopted an inherited descriptor (`OwnedFd::from_raw_fd`) without setting it.
pub(crate) unsafe fn close_unowned(fd: RawFd) {
    if is_cloexec(fd) {
        return;
    }
    // SAFETY: the descriptor lacks close-on-exec (checked above), so by the caller's contract
    // nothing in this process owns it, and closing it pulls nothing out from under an owner.
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
///
/// # Safety
///
/// The value that owns `fd` never uses or closes it in a forked child (it knows the process it
/// was made in, as a `PidfileLock` does), until [`forget_in_forked_children`] is called.
pub(crate) unsafe fn close_in_forked_children(fd: RawFd) {
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

/// The time left until `deadline`; `None` is no deadline.
fn remaining(deadline: Option<Instant>) -> Duration {
    deadline.map_or(Duration::MAX, |d| {
        d.saturating_duration_since(Instant::now())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};
    use std::os::fd::AsFd;

    #[test]
    fn a_pipe_is_close_on_exec() {
        use std::os::fd::AsRawFd;
        let (read, write) = pipe(true).expect("pipe");
        assert!(is_cloexec(read.as_raw_fd()) && is_cloexec(write.as_raw_fd()));
        assert!(!wait_readable(read.as_fd(), Duration::from_millis(1)).expect("poll"));
    }

    #[test]
    fn this_process_is_seen_holding_its_own_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("open.pid");
        let file = File::create(&path).expect("create");
        // Locked, as a pidfile is: where the kernel tells, the descriptor must hold the lock.
        file.try_lock().expect("lock");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(has_open(nix::unistd::Pid::this(), &file, &meta), Some(true));
        // The test harness that started this process has no descriptor of the file; where its
        // descriptors cannot be read (another user's), nothing is claimed.
        assert_ne!(
            has_open(nix::unistd::Pid::parent(), &file, &meta),
            Some(true)
        );
    }

    #[test]
    fn threads_and_descriptors_are_listed() {
        use std::os::fd::AsRawFd;
        assert_eq!(thread_count().map(|n| n >= 1), Some(true));
        let file = File::open("/dev/null").expect("open");
        assert!(open_fds().expect("list").contains(&file.as_raw_fd()));
    }

    #[test]
    fn an_exit_watch_sees_a_live_process() {
        let me = ExitWatch::new(nix::unistd::Pid::this())
            .expect("watch")
            .expect("this process is alive");
        assert!(!me.exited(Duration::from_millis(1)).expect("wait"));
    }

    #[test]
    fn an_exit_watch_sees_a_child_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .expect("sleep");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let watch = ExitWatch::new(pid).expect("watch").expect("alive");
        assert!(watch.exited(Duration::from_secs(5)).expect("wait"));
        let _ = child.wait();
        let watches = [&watch];
        assert!(wait_all_exited(&watches, Duration::from_millis(1)).is_empty());
    }

    #[test]
    fn the_pidfile_is_placed_unless_something_is_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("new"), dir.path().join("x.pid"));
        fs::write(&from, "1").expect("write");
        let here = nix::fcntl::AT_FDCWD;
        assert!(rename_unless_exists(here, &from, &to).expect("rename"));
        assert!(!from.exists() && to.exists());
        fs::write(&from, "2").expect("write");
        assert!(!rename_unless_exists(here, &from, &to).expect("rename"));
        assert_eq!(fs::read_to_string(&to).expect("read"), "1");
    }
}
