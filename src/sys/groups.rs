//! Supplementary groups, for a daemon that drops root.

use nix::unistd::Gid;

/// Set this process's supplementary groups to those of user `name`, plus `gid`.
///
/// # Platform-specific behavior
///
/// nix offers no `initgroups` on macOS, whose own takes the group as an `int`.
pub(crate) fn init_groups(name: &std::ffi::CStr, gid: Gid) -> nix::Result<()> {
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
///
/// # Platform-specific behavior
///
/// nix offers no `setgroups` on macOS.
pub(crate) fn set_groups(gid: Gid) -> nix::Result<()> {
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
