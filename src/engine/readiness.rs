//! Readiness, told once to whoever waits for it: the caller of `start()` (through the report pipe
//! of [`detach`](crate::detach)), the supervisor of a supervised child (through the child's report
//! pipe, which also hears why the body ended), and the service manager (`READY=1`).
//!
//! The report pipe stays in here: the body's [`Ctl`](crate::Ctl) can only say "ready", and the
//! end of the daemon can only tell a caller that never heard it why not.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::detach::Reporter;
use crate::engine::role::Role;
use crate::error::Error;
use crate::report;
use crate::sync::lock;
use crate::systemd::Notifier;

/// Whether the daemon said it is ready, and who waits to hear it.
pub(in crate::engine) struct Readiness {
    told: AtomicBool,
    /// The caller of `start()` or the supervisor, until it is told.
    waiting: Mutex<Option<Reporter>>,
    /// A supervised child's report pipe, kept after ready: why the body ended goes there.
    supervisor: Mutex<Option<File>>,
    notifier: Option<Arc<Notifier>>,
}

/// A caller still waiting for the start's outcome, once the daemon ends without having been
/// ready: it hears why.
pub(in crate::engine) struct Waiting(Reporter);

impl Readiness {
    pub(in crate::engine) fn new(notifier: Option<Arc<Notifier>>) -> Readiness {
        Readiness {
            told: AtomicBool::new(false),
            waiting: Mutex::new(None),
            supervisor: Mutex::new(None),
            notifier,
        }
    }

    /// From now on `reporter` waits to hear that the daemon is ready. A supervised child's
    /// supervisor also hears, later, why the body ended.
    pub(in crate::engine) fn wait_for_it(&self, reporter: Reporter, role: Role) {
        if matches!(role, Role::SupervisedChild { .. }) {
            *lock(&self.supervisor) = reporter.try_clone().ok();
        }
        *lock(&self.waiting) = Some(reporter);
    }

    /// Report readiness to the caller of `start()` and the service manager, once.
    pub(in crate::engine) fn report(&self) {
        if self.told.swap(true, Ordering::AcqRel) {
            return;
        }
        // `R` is written with the lock held: an event for the supervisor, which must come after
        // it, waits until it is written (see `tell_supervisor_event`).
        let mut waiting = lock(&self.waiting);
        if let Some(reporter) = waiting.take() {
            reporter.ready();
        }
        drop(waiting);
        if let Some(notifier) = &self.notifier {
            let _ = notifier.ready();
        }
    }

    /// Tell the service manager why the daemon fails, if it never said that it was ready.
    pub(in crate::engine) fn tell_manager_failure(&self, error: &Error) {
        if !self.told.load(Ordering::Acquire)
            && let Some(notifier) = &self.notifier
        {
            let _ = notifier.failed(error);
        }
    }

    /// The caller, if readiness was never reported: it is still waiting, and should hear why the
    /// daemon ends.
    pub(in crate::engine) fn still_waiting(&self) -> Option<Waiting> {
        if self.told.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.waiting).take().map(Waiting)
    }

    /// Tell a supervised child's supervisor of an event (`report::RELOADED`, `report::ALIVE`),
    /// once it has heard that the child is ready: the events follow `R` in the report.
    pub(in crate::engine) fn tell_supervisor_event(&self, event: u8) {
        let waiting = lock(&self.waiting);
        if !self.told.load(Ordering::Acquire) || waiting.is_some() {
            return;
        }
        if let Some(pipe) = lock(&self.supervisor).as_mut() {
            let _ = pipe.write_all(&[event]);
        }
    }

    /// Tell a supervised child's supervisor why the body failed.
    pub(in crate::engine) fn tell_supervisor(&self, error: &Error) {
        if let Some(pipe) = lock(&self.supervisor).as_mut() {
            let _ = pipe.write_all(&report::failure(error));
        }
    }
}

impl Waiting {
    /// Tell the caller that the start failed, and why.
    pub(in crate::engine) fn fail(mut self, error: &Error) {
        self.0.fail(error);
    }
}
