//! The body's liveness: pings sent from the body's own loop ([`Ctl::running`](crate::Ctl::running),
//! its sleeps, or a task on an async body's runtime), so that a hung body stops them. A ping goes
//! to whoever watches: the service manager (`WATCHDOG=1`, when it asked for a watchdog), the
//! supervisor of a supervised child (which pings the manager and marks the pidfile for it), and
//! the pidfile's modification time, which the `health` check reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::engine::readiness::Readiness;
use crate::error::report;
use crate::systemd::Notifier;

/// A hook run at each ping: the pidfile's mark, set once the daemon's end (which holds the
/// pidfile) exists.
type AliveHook = Box<dyn Fn() + Send + Sync>;

/// The pings, every `every`: half the shortest of the periods that the watchers allow.
pub(in crate::engine) struct Watchdog {
    every: Duration,
    since: Instant,
    /// When the next ping is due, in nanoseconds after `since`.
    due: AtomicU64,
    /// Raised by the keeper once a ping is due, so that `Ctl::running()`, which a busy body
    /// calls millions of times a second, reads a flag instead of the clock.
    flagged: AtomicBool,
    /// The service manager, when it asked for a watchdog.
    manager: Option<Arc<Notifier>>,
    /// A supervised child's supervisor.
    supervisor: Option<Arc<Readiness>>,
    hook: OnceLock<AliveHook>,
}

impl Watchdog {
    pub(in crate::engine) fn new(
        every: Duration,
        manager: Option<Arc<Notifier>>,
        supervisor: Option<Arc<Readiness>>,
    ) -> Watchdog {
        Watchdog {
            every,
            since: Instant::now(),
            due: AtomicU64::new(0),
            flagged: AtomicBool::new(false),
            manager,
            supervisor,
            hook: OnceLock::new(),
        }
    }

    /// Run `hook` at each ping from now on (once; later calls are ignored).
    pub(in crate::engine) fn on_ping(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.hook.set(Box::new(hook));
    }

    /// Ping if it is due.
    #[inline]
    pub(in crate::engine) fn ping_if_due(&self) {
        let now = self.since.elapsed().as_nanos() as u64;
        if now >= self.due.load(Ordering::Relaxed) {
            self.ping(now);
        }
    }

    /// Ping if the keeper raised the flag: one load on the path of `Ctl::running()`.
    #[inline]
    pub(in crate::engine) fn ping_if_flagged(&self) {
        if self.flagged.load(Ordering::Relaxed) {
            self.ping_or_lower();
        }
    }

    /// The flag is up: ping if the ping is still due (a sleep may have sent it meanwhile),
    /// lower the flag either way.
    #[cold]
    fn ping_or_lower(&self) {
        let now = self.since.elapsed().as_nanos() as u64;
        if now >= self.due.load(Ordering::Relaxed) {
            self.ping(now);
        } else {
            self.flagged.store(false, Ordering::Relaxed);
        }
    }

    /// For the keeper: raise the flag once a ping is due, and say how long until it should look
    /// again. Only the body's loop lowers the flag, by pinging, so a body that hangs leaves it
    /// up and sends nothing; while it is up the keeper looks every quarter of the interval, so
    /// that the next ping, once the body pinged, is raised at most that late (well within the
    /// watcher's period, which is twice the interval).
    pub(in crate::engine) fn flag_if_due(&self) -> Duration {
        let quarter = self.every / 4;
        if self.flagged.load(Ordering::Relaxed) {
            return quarter;
        }
        let left = self.until_ping();
        if left.is_zero() {
            self.flagged.store(true, Ordering::Relaxed);
            return quarter;
        }
        left
    }

    #[cold]
    fn ping(&self, now: u64) {
        self.due
            .store(now + self.every.as_nanos() as u64, Ordering::Relaxed);
        self.flagged.store(false, Ordering::Relaxed);
        if let Some(manager) = &self.manager {
            let _ = manager.send("WATCHDOG=1");
        }
        if let Some(supervisor) = &self.supervisor {
            supervisor.tell_supervisor_event(report::ALIVE);
        }
        if let Some(hook) = self.hook.get() {
            hook();
        }
    }

    /// How long until the next ping is due.
    pub(in crate::engine) fn until_ping(&self) -> Duration {
        let now = self.since.elapsed().as_nanos() as u64;
        Duration::from_nanos(self.due.load(Ordering::Relaxed).saturating_sub(now))
    }
}
