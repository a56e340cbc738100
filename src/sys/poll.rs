//! The one way to wait for descriptors with a deadline: [`poll_readable`]. Every wait of the
//! crate on a pipe, a socket or a pidfd goes through it.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::sync::Deadline;

/// Wait until one of `fds` is readable (or hung up, or in error) or `deadline` passes; which
/// are, by index (all `false` at the deadline). Restarts after `EINTR`, and after a wait longer
/// than one `poll` can take.
///
/// # Errors
///
/// When `poll` fails for another reason (`EINVAL`: more descriptors than the limit allows).
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], deadline: Deadline) -> io::Result<Vec<bool>> {
    loop {
        let mut polled: Vec<PollFd<'_>> = fds
            .iter()
            .map(|&fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut polled, timeout(deadline)) {
            Ok(0) if deadline.passed() => return Ok(vec![false; fds.len()]),
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => {
                return Ok(polled
                    .iter()
                    .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                    .collect());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The time left until `deadline`, as `poll` takes it: rounded up, since a timeout rounded down
/// to 0 ms would spin for the last fraction of a millisecond; at most the longest it takes.
fn timeout(deadline: Deadline) -> PollTimeout {
    let millis = deadline.left().as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

/// Wait at most `timeout` for `fd` to become readable (or hung up); whether it did: the one
/// descriptor form of [`poll_readable`].
///
/// # Errors
///
/// As [`poll_readable`].
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    Ok(poll_readable(&[fd], Deadline::after(timeout))?[0])
}

/// Wait at most `timeout` until one of `fds` is readable; which are, by index. A failed `poll`
/// counts as nothing readable. A thin call of [`poll_readable`], kept for the upper floors until
/// they call it with their [`Deadline`].
pub(crate) fn wait_any_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    poll_readable(fds, Deadline::after(timeout)).unwrap_or_else(|_| vec![false; fds.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::time::Instant;

    #[test]
    fn a_poll_says_which_is_readable_and_keeps_its_deadline() {
        let (read, write) = super::super::pipe(false).expect("pipe");
        let (idle, _idle_write) = super::super::pipe(false).expect("pipe");
        let fds = [idle.as_fd(), read.as_fd()];
        let started = Instant::now();
        let none = poll_readable(&fds, Deadline::after(Duration::from_millis(20))).expect("poll");
        assert_eq!(none, [false, false]);
        assert!(started.elapsed() >= Duration::from_millis(20));
        std::fs::File::from(write).write_all(b"x").expect("write");
        let ready = poll_readable(&fds, Deadline::after(Duration::MAX)).expect("poll");
        assert_eq!(ready, [false, true]);
    }
}
