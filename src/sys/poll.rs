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
    if let Some(ready) = poll_few(fds, deadline) {
        return ready.map(|ready| (0..fds.len()).map(|i| ready.get(i)).collect());
    }
    loop {
        let mut polled: Vec<PollFd<'_>> = fds
            .iter()
            .map(|&fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        if let Some(done) = poll_once(&mut polled, deadline) {
            return done.map(|()| {
                polled
                    .iter()
                    .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            });
        }
    }
}

/// Which of up to [`FEW`] descriptors are readable, by index: what a wait of the daemon's own
/// threads returns without allocating (the keeper waits every second for the daemon's life).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Readable(u8);

impl Readable {
    /// Whether the `i`th descriptor was readable.
    pub(crate) fn get(self, i: usize) -> bool {
        i < FEW && self.0 & (1 << i) != 0
    }
}

/// The most descriptors that [`poll_few`] takes.
pub(crate) const FEW: usize = 8;

/// [`poll_readable`] without allocating, for at most [`FEW`] descriptors (`None` for more).
fn poll_few(fds: &[BorrowedFd<'_>], deadline: Deadline) -> Option<io::Result<Readable>> {
    if fds.len() > FEW {
        return None;
    }
    let Some(&first) = fds.first() else {
        // Nothing to wait for but the deadline.
        loop {
            if let Some(done) = poll_once(&mut [], deadline) {
                return Some(done.map(|()| Readable(0)));
            }
        }
    };
    // The slots past `fds.len()` are never polled; they repeat the first descriptor only to
    // have a value.
    let mut array: [PollFd<'_>; FEW] =
        std::array::from_fn(|i| PollFd::new(*fds.get(i).unwrap_or(&first), PollFlags::POLLIN));
    let polled = &mut array[..fds.len()];
    loop {
        if let Some(done) = poll_once(polled, deadline) {
            return Some(done.map(|()| {
                let mut ready = 0u8;
                for (i, p) in polled.iter().enumerate() {
                    if p.revents().is_some_and(|r| !r.is_empty()) {
                        ready |= 1 << i;
                    }
                }
                Readable(ready)
            }));
        }
    }
}

/// One `poll` of `polled` until `deadline`: `None` to poll again (interrupted, or a wait longer
/// than one `poll` takes), `Some(Ok(()))` when done (every `revents` empty at the deadline).
fn poll_once(polled: &mut [PollFd<'_>], deadline: Deadline) -> Option<io::Result<()>> {
    match poll(polled, timeout(deadline)) {
        // At the deadline `poll` has left every `revents` empty.
        Ok(0) if deadline.passed() => Some(Ok(())),
        Ok(0) | Err(nix::errno::Errno::EINTR) => None,
        Ok(_) => Some(Ok(())),
        Err(e) => Some(Err(e.into())),
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

/// Wait at most `timeout` until one of `fds` (at most [`FEW`]) is readable; which are, by
/// index. A failed `poll` counts as nothing readable. Allocates nothing: the keeper's and the
/// supervisor's wait.
pub(crate) fn wait_any_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Readable {
    let deadline = Deadline::after(timeout);
    debug_assert!(fds.len() <= FEW, "{} descriptors to wait for", fds.len());
    match poll_few(fds, deadline) {
        Some(ready) => ready.unwrap_or_default(),
        None => {
            let ready = poll_readable(fds, deadline).unwrap_or_default();
            let mut bits = 0u8;
            for (i, _) in ready.iter().enumerate().take(FEW).filter(|(_, r)| **r) {
                bits |= 1 << i;
            }
            Readable(bits)
        }
    }
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
