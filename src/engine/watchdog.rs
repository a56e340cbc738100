//! The service manager's watchdog: `WATCHDOG=1`, sent from the body's own loop
//! ([`Ctl::running`](crate::Ctl::running), its sleeps, or a task on an async body's runtime), so
//! that a hung body stops the pings and the service manager sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::systemd::Notifier;

/// The pings, every `every` (half the period the service manager asked for).
pub(in crate::engine) struct Watchdog {
    every: Duration,
    since: Instant,
    /// When the next ping is due, in nanoseconds after `since`.
    due: AtomicU64,
    notifier: Arc<Notifier>,
}

impl Watchdog {
    pub(in crate::engine) fn new(notifier: Arc<Notifier>, every: Duration) -> Watchdog {
        Watchdog {
            every,
            since: Instant::now(),
            due: AtomicU64::new(0),
            notifier,
        }
    }

    /// Send `WATCHDOG=1` if it is due.
    #[cold]
    pub(in crate::engine) fn ping_if_due(&self) {
        let now = self.since.elapsed().as_nanos() as u64;
        if now >= self.due.load(Ordering::Relaxed) {
            self.due
                .store(now + self.every.as_nanos() as u64, Ordering::Relaxed);
            let _ = self.notifier.send("WATCHDOG=1");
        }
    }

    /// How long until the next ping is due.
    pub(in crate::engine) fn until_ping(&self) -> Duration {
        let now = self.since.elapsed().as_nanos() as u64;
        Duration::from_nanos(self.due.load(Ordering::Relaxed).saturating_sub(now))
    }
}
