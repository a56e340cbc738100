//! Pipes, made close-on-exec from the start where the system allows it.

use std::io;
use std::os::fd::OwnedFd;

/// A pipe, both ends close-on-exec, and both non-blocking if asked (as `pipe2` makes them).
///
/// # Platform-specific behavior
///
/// macOS has no `pipe2`: the flags are set right after `pipe` (`fds::set_flags_late`),
/// and a fork in another thread in between would let its child inherit the ends (`detach`
/// refuses a process with other threads).
pub(crate) fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "macos")]
    {
        let (read, write) = nix::unistd::pipe()?;
        for end in [&read, &write] {
            super::fds::set_flags_late(end, nonblocking)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::Duration;

    #[test]
    fn a_pipe_is_close_on_exec() {
        let (read, write) = pipe(true).expect("pipe");
        let cloexec = crate::sys::is_cloexec;
        assert!(cloexec(read.as_raw_fd()) && cloexec(write.as_raw_fd()));
        let deadline = crate::sync::Deadline::after(Duration::from_millis(1));
        let readable = crate::sys::poll_readable(&[read.as_fd()], deadline).expect("poll");
        assert_eq!(readable, [false]);
    }
}
