//! The supervision policy: when a supervised daemon's body comes back after it ended.

use std::time::Duration;

/// When and how a supervised daemon's body comes back after it ended.
///
/// # Examples
///
/// ```
/// use daemons::{Daemon, Supervision};
/// use std::time::Duration;
///
/// let daemon = Daemon::builder()
///     .pidfile("/tmp/doc-restart.pid")
///     .supervise(
///         Supervision::on_failure()
///             .backoff(Duration::from_secs(1), Duration::from_secs(60))
///             .limit(5, Duration::from_secs(300)),
///     )
///     .step(|| {})
///     .build()?;
/// # Ok::<(), daemons::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervision {
    pub(crate) always: bool,
    /// The wait before the first restart.
    pub(crate) first: Duration,
    /// The longest wait: the backoff doubles up to it.
    pub(crate) max: Duration,
    /// At most this many failures within this long.
    pub(crate) limit: Option<(u32, Duration)>,
    /// How long a child runs before its failure starts the backoff over.
    pub(crate) stable: Duration,
}

impl Supervision {
    /// Start the body again when it fails: exits non-zero, or is killed by a signal that the
    /// supervisor did not send. A body that returns cleanly ends the daemon. Defaults: a backoff
    /// from 1 s doubling to 60 s, reset once a child has run 10 s, and no limit.
    ///
    /// Why no limit by default: a supervisor of this crate usually runs where nothing restarts
    /// it (a container, a machine without a service manager, a user's session), as runit's, s6's
    /// and Kubernetes' do, and like them it never gives up; the backoff makes a body that can
    /// never run cost one fork a minute, and `status` and the log say each time how it ended.
    /// Giving up there turns a short outage (a database down for two minutes) into one that
    /// lasts until someone notices. systemd (5 starts within 10 s) and supervisord (3 starts that
    /// fail within a second) give up so that a failed unit shows: when something above the
    /// daemon restarts it or raises an alarm, give it the failure with
    /// [`limit`](Supervision::limit).
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = daemons::Supervision::on_failure();
    /// ```
    #[must_use = "the policy is returned, changed: pass it to .supervise()"]
    pub fn on_failure() -> Supervision {
        Supervision {
            always: false,
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            limit: None,
            stable: Duration::from_secs(10),
        }
    }

    /// Start the body again whenever it ends, cleanly or not, until the daemon is stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = daemons::Supervision::always();
    /// ```
    #[must_use = "the policy is returned, changed: pass it to .supervise()"]
    pub fn always() -> Supervision {
        Supervision {
            always: true,
            ..Supervision::on_failure()
        }
    }

    /// The wait before the first restart, doubled after each failure up to `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = daemons::Supervision::on_failure().backoff(Duration::ZERO, Duration::from_secs(5));
    /// ```
    #[must_use = "the policy is returned, changed: pass it to .supervise()"]
    pub fn backoff(self, first: Duration, max: Duration) -> Supervision {
        Supervision {
            first,
            max: max.max(first),
            ..self
        }
    }

    /// Give up after `failures` failures within `within`: the daemon then exits non-zero, and
    /// its pidfile says why. No limit by default (see [`on_failure`](Supervision::on_failure)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = daemons::Supervision::on_failure().limit(3, Duration::from_secs(60));
    /// ```
    #[must_use = "the policy is returned, changed: pass it to .supervise()"]
    pub fn limit(self, failures: u32, within: Duration) -> Supervision {
        Supervision {
            limit: Some((failures, within)),
            ..self
        }
    }

    /// Never give up: the default; undoes a [`limit`](Supervision::limit).
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = daemons::Supervision::always().unlimited();
    /// ```
    #[must_use = "the policy is returned, changed: pass it to .supervise()"]
    pub fn unlimited(self) -> Supervision {
        Supervision {
            limit: None,
            ..self
        }
    }

    /// A child that has run this long is well again: the backoff starts over from the first
    /// wait. Default 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = daemons::Supervision::on_failure().stable_after(Duration::from_secs(60));
    /// ```
    #[must_use = "the policy is returned, changed: pass it to .supervise()"]
    pub fn stable_after(self, stable: Duration) -> Supervision {
        Supervision { stable, ..self }
    }

    /// Whether a body that ended cleanly (`clean`: exit code 0) or not comes back.
    pub(crate) fn restarts(&self, clean: bool) -> bool {
        self.always || !clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_reads_as_written() {
        let p = Supervision::on_failure().backoff(Duration::ZERO, Duration::from_secs(2));
        assert!(p.restarts(false));
        assert!(!p.restarts(true));
        assert!(Supervision::always().restarts(true));
        assert_eq!(p.limit, None, "no limit by default");
        let limited = p.limit(5, Duration::from_secs(300));
        assert_eq!(limited.limit, Some((5, Duration::from_secs(300))));
        assert_eq!(limited.unlimited().limit, None);
        let p = Supervision::on_failure().backoff(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(
            p.max,
            Duration::from_secs(5),
            "the maximum is never below the first wait"
        );
    }
}
