//! The small mechanisms that every layer waits and shares with, each written once: a lock that
//! a panic elsewhere does not make unusable ([`lock`]), a point in time to wait until
//! ([`Deadline`]), and the pauses of a wait that has nothing to poll ([`Backoff`]).
//!
//! Below every layer: nothing here imports the rest of the crate.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Lock `mutex`, whether or not a thread panicked while it held it: what the crate keeps behind
/// a mutex (handlers, wakers, a waiter) is whole between two statements, and a panicking handler
/// must not take the daemon's shutdown with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When a wait ends: an instant, or never (a timeout too long to add to now is never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// The time left; `Duration::MAX` when there is no deadline.
    pub(crate) fn left(&self) -> Duration {
        self.0.map_or(Duration::MAX, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    /// Whether the deadline has passed.
    pub(crate) fn passed(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }
}

/// The pauses of a wait that looks again and again for something that nothing announces (a lock
/// let go of, a process gone without a pidfd or a kqueue): 200 µs, doubling up to 20 ms, cut
/// short at the deadline. Short enough that a state that settles within microseconds costs
/// little, long enough that a state that takes a while costs no CPU. A short wait whose end is
/// worth seeing at once pauses the same time at each look instead ([`Backoff::every`]).
#[derive(Debug)]
pub(crate) struct Backoff {
    pause: Duration,
    deadline: Deadline,
    /// Whether each pause is twice the one before (else they are all the first).
    doubles: bool,
}

impl Backoff {
    /// The first pause.
    const FIRST: Duration = Duration::from_micros(200);
    /// The longest pause.
    const LONGEST: Duration = Duration::from_millis(20);

    /// Pauses until `deadline`.
    pub(crate) fn until(deadline: Deadline) -> Backoff {
        Backoff {
            pause: Backoff::FIRST,
            deadline,
            doubles: true,
        }
    }

    /// Pauses for at most `timeout` from now.
    pub(crate) fn within(timeout: Duration) -> Backoff {
        Backoff::until(Deadline::after(timeout))
    }

    /// Pauses of `pause` each, for at most `timeout` from now: for a short wait whose end is
    /// worth seeing at once, which a doubling pause would overshoot by as much as it waited.
    pub(crate) fn every(pause: Duration, timeout: Duration) -> Backoff {
        Backoff {
            pause,
            deadline: Deadline::after(timeout),
            doubles: false,
        }
    }

    /// The deadline.
    pub(crate) fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The next pause, cut short at the deadline (the one after it is twice as long, unless the
    /// pauses are steady: [`Backoff::every`]); `None` once the deadline has passed.
    pub(crate) fn next_pause(&mut self) -> Option<Duration> {
        let left = self.deadline.left();
        if left.is_zero() {
            return None;
        }
        let pause = self.pause.min(left);
        if self.doubles {
            self.pause = (self.pause * 2).min(Backoff::LONGEST);
        }
        Some(pause)
    }

    /// Sleep for the next pause; `false`, without sleeping, once the deadline has passed.
    pub(crate) fn sleep(&mut self) -> bool {
        match self.next_pause() {
            Some(pause) => {
                std::thread::sleep(pause);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backoff_doubles_up_to_its_longest_pause_and_stops_at_the_deadline() {
        let mut backoff = Backoff::within(Duration::MAX);
        let pauses: Vec<Duration> = (0..9).filter_map(|_| backoff.next_pause()).collect();
        let micros: Vec<u128> = pauses.iter().map(Duration::as_micros).collect();
        assert_eq!(
            micros,
            [200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000]
        );
        let mut done = Backoff::within(Duration::ZERO);
        assert_eq!(done.next_pause(), None);
        assert!(!done.sleep());
        let mut steady = Backoff::every(Duration::from_micros(50), Duration::MAX);
        let steady: Vec<Option<Duration>> = (0..3).map(|_| steady.next_pause()).collect();
        assert_eq!(steady, [Some(Duration::from_micros(50)); 3]);
        let mut short = Backoff::within(Duration::from_micros(50));
        assert!(
            short
                .next_pause()
                .is_some_and(|p| p <= Duration::from_micros(50))
        );
    }

    #[test]
    fn a_deadline_too_far_is_never() {
        let never = Deadline::after(Duration::MAX);
        assert_eq!(never, Deadline(None));
        assert_eq!(never.left(), Duration::MAX);
        assert!(!never.passed());
        assert!(Deadline::after(Duration::ZERO).passed());
    }

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let holder = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = holder.lock();
            panic!("poisons the lock");
        })
        .join();
        assert!(mutex.is_poisoned());
        *lock(&mutex) += 1;
        assert_eq!(*lock(&mutex), 2);
    }
}
