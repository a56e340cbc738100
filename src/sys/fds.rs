//! Raw descriptors: their close-on-exec flag, the copies a fork leaves, and the adoption of those
//! passed on purpose. Which descriptors are open is the OS files' (`open_fds`).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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

/// Set close-on-exec, and `O_NONBLOCK` if asked, on a descriptor just made by a call that cannot
/// set them itself (macOS has no `pipe2`, `SOCK_CLOEXEC` or `SOCK_NONBLOCK`). A fork and exec in
/// another thread between the call and this would let its child inherit the descriptor.
#[cfg(target_os = "macos")]
pub(crate) fn set_flags_late(fd: &OwnedFd, nonblocking: bool) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    if nonblocking {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    Ok(())
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
