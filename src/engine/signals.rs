//! Catching signals: the one way is signal-hook's self-pipe, [`SignalPipe`]. Its handler only
//! marks the signal and writes a byte to a socket; the signal is then taken from the pipe outside
//! signal context. The engine reads it on a signal thread, which calls the user's handlers one
//! at a time, in registration order; the supervisor, which must stay single-threaded, polls it
//! with its child's descriptors. (PID 1 alone waits with `sigwait`: see `init.rs` for why.)
//!
//! The stop signals (SIGTERM, SIGINT, SIGQUIT) only ask the body to stop, from the signal
//! handler itself; their own handlers run once, on the main thread, after the body has finished.
//!
//! The kernel coalesces a signal that arrives while the same one is still pending, and so does
//! the pipe, so a burst of 10,000 SIGHUPs runs the SIGHUP handlers far fewer times: a handler
//! learns that the signal came, not how often.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Signal;
use signal_hook::SigId;
use signal_hook::iterator::backend::{Handle, SignalDelivery};
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::detach::{Logs, reset_signals};
use crate::engine::handlers::{Handlers, STOP_SIGNALS};
use crate::engine::lifecycle::Lifecycle;
use crate::engine::log::Log;
use crate::engine::readiness::Readiness;
use crate::engine::role::Role;
use crate::error::{Error, Tenths, report};
use crate::sync::lock;
use crate::systemd::Notifier;

/// Signals caught into signal-hook's self-pipe, until it is dropped (which gives them back).
pub(in crate::engine) struct SignalPipe(SignalDelivery<UnixStream, SignalOnly>);

impl SignalPipe {
    /// Catch `signals`.
    pub(in crate::engine) fn catch(signals: &[Signal]) -> Result<SignalPipe, Error> {
        let caught = UnixStream::pair().and_then(|(read, write)| {
            SignalDelivery::with_pipe(read, write, SignalOnly, signals.iter().map(|&s| s as i32))
        });
        caught.map(SignalPipe).map_err(|e| Error::Sys {
            call: "install signal handlers",
            source: e,
        })
    }

    /// Readable when a signal came, for a `poll` that waits for other things too.
    pub(in crate::engine) fn fd(&self) -> BorrowedFd<'_> {
        self.0.get_read().as_fd()
    }

    /// The signals that came since the last look, without waiting.
    pub(in crate::engine) fn pending(&mut self) -> Vec<Signal> {
        self.0
            .pending()
            .filter_map(|raw| Signal::try_from(raw).ok())
            .collect()
    }

    /// Wait for signals; `None` once the pipe is closed through its [`Handle`].
    fn wait(&mut self) -> Option<Vec<Signal>> {
        let pending = self.0.poll_pending(&mut |read: &mut UnixStream| loop {
            match read.read(&mut [0u8]) {
                Ok(n) => break Ok(n > 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        });
        let pending = pending.ok()??;
        Some(
            pending
                .filter_map(|raw| Signal::try_from(raw).ok())
                .collect(),
        )
    }

    fn handle(&self) -> Handle {
        self.0.handle()
    }
}

/// What a SIGHUP does before and after its handlers: tell the service manager, and reopen the
/// log files so that a rotated log is let go of.
pub(in crate::engine) struct Reload {
    pub(in crate::engine) notifier: Option<Arc<Notifier>>,
    /// The stdout and stderr files, when they are the daemon's.
    pub(in crate::engine) logs: Option<Logs>,
    /// A supervised child's supervisor, which tells the service manager when a reload ends.
    pub(in crate::engine) supervisor: Option<Arc<Readiness>>,
}

impl Reload {
    /// Whether a SIGHUP does anything besides running its handlers.
    fn is_idle(&self) -> bool {
        self.notifier.is_none()
            && self.supervisor.is_none()
            && self.logs.as_ref().is_none_or(Logs::is_none)
    }

    fn begin(&self, log: &Log) {
        if let Some(notifier) = &self.notifier {
            let _ = notifier.reloading();
        }
        if let Some(logs) = &self.logs {
            reopen_logs(logs, log);
        }
    }

    fn end(&self) {
        if let Some(notifier) = &self.notifier {
            let _ = notifier.send("READY=1");
        }
        if let Some(supervisor) = &self.supervisor {
            supervisor.tell_supervisor_event(report::RELOADED);
        }
    }
}

/// Open the log files again and point stdout and stderr at them, keeping the old ones if that
/// fails: what a SIGHUP does for a daemon, or a supervisor, whose stdio is its log files.
pub(in crate::engine) fn reopen_logs(logs: &Logs, log: &Log) {
    if !logs.is_none()
        && let Err(e) = logs.reopen()
    {
        log.warn(&format!("keeping the old log files: {e}"));
    }
}

/// The running signal thread, if the daemon has one, and the signal actions installed.
pub(in crate::engine) struct SignalThread {
    /// The user's handlers: the signal thread calls them, then the end a stop signal's.
    handlers: Arc<Mutex<Handlers>>,
    handle: Option<Handle>,
    thread: Option<JoinHandle<SignalPipe>>,
    actions: Vec<SigId>,
    /// The signal whose handlers run now, and since when: a stop that has to wait for them
    /// says so.
    busy: Arc<Mutex<Option<(Signal, Instant)>>>,
    /// Told when the thread ends, so that the wait for it can have a timeout.
    ended: Option<Arc<Ended>>,
    log: Log,
}

/// How long a stop waits for a handler in silence before it logs that it is waiting.
const PATIENCE: Duration = Duration::from_secs(1);

/// That the signal thread has left its loop, or unwound out of it: a wait for it can have a
/// timeout, which a join cannot. (A flag and a condition variable rather than a channel: std's
/// channel brings 23 KiB of code and a kilobyte of relocated data into every program.)
#[derive(Default)]
struct Ended {
    done: Mutex<bool>,
    told: Condvar,
}

impl Ended {
    /// Whether it was told within `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let (done, _) = self
            .told
            .wait_timeout_while(lock(&self.done), timeout, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        *done
    }
}

/// Tells its [`Ended`] when dropped: at the end of the thread's loop, or as a panic unwinds it.
struct TellEnded(Arc<Ended>);

impl Drop for TellEnded {
    fn drop(&mut self) {
        *lock(&self.0.done) = true;
        self.0.told.notify_all();
    }
}

/// The signals caught, before the signal thread runs: what arrives meanwhile waits in the pipe.
/// Without `pipe`, no signal has work for a signal thread.
pub(in crate::engine) struct CaughtSignals {
    pipe: Option<SignalPipe>,
    actions: Vec<SigId>,
}

/// Catch the stop signals, SIGHUP and every signal that has handlers. In a process of the
/// daemon's own, every other signal's disposition goes back to its default and the mask is
/// cleared (the daemon(7) steps), after our handlers are in place so that no stop signal can slip
/// in between.
///
/// A stop signal asks the body to stop from the signal handler itself, so that a sleeping body
/// wakes at once instead of after two hops through the signal thread. When no other signal has
/// work to do (no handlers, and a SIGHUP that `reload` would not act on), there is no signal
/// thread at all: SIGHUP is caught by an action that does nothing, so that it neither kills the
/// daemon nor stays ignored in the programs it executes. A thread costs its spawn at start, a
/// join at stop, and a larger teardown at exit.
pub(in crate::engine) fn catch_signals(
    handlers: &Mutex<Handlers>,
    lifecycle: &Arc<Lifecycle>,
    role: Role,
    reload: &Reload,
) -> Result<CaughtSignals, Error> {
    let mut caught: Vec<Signal> = STOP_SIGNALS.to_vec();
    caught.push(Signal::SIGHUP);
    let registered: Vec<Signal> = lock(handlers).signals().collect();
    let listening = !reload.is_idle()
        || registered
            .iter()
            .any(|signal| !STOP_SIGNALS.contains(signal));
    for signal in registered {
        if !caught.contains(&signal) {
            caught.push(signal);
        }
    }
    let install_failed = |e| Error::Sys {
        call: "install signal handlers",
        source: e,
    };
    let mut actions = Vec::new();
    let pipe = if listening {
        Some(SignalPipe::catch(&caught)?)
    } else {
        for signal in caught.iter().filter(|s| !STOP_SIGNALS.contains(s)) {
            // A flag that nobody reads: the safe way to install an action that does nothing.
            let id = signal_hook::flag::register(*signal as i32, Arc::new(AtomicBool::new(false)))
                .map_err(install_failed)?;
            actions.push(id);
        }
        None
    };
    // In the foreground a second stop signal forces the end, as a second Ctrl-C does for
    // servers; a detached daemon's stop is the service manager's or `stop()`'s, which escalate
    // by themselves (SIGKILL after their timeout).
    let forcing = role == Role::Foreground;
    for signal in STOP_SIGNALS {
        let lifecycle = lifecycle.clone();
        // SAFETY: the action only does atomic operations and write(2)s on descriptors that
        // `lifecycle` keeps open (`Lifecycle::request_stop`, `Lifecycle::stop_or_force`), all
        // async-signal-safe; it allocates, locks and panics nowhere.
        let id = unsafe {
            signal_hook::low_level::register(signal as i32, move || match forcing {
                true => lifecycle.stop_or_force(signal),
                false => lifecycle.request_stop(Some(signal)),
            })
        }
        .map_err(install_failed)?;
        actions.push(id);
    }
    if role.owns_process() {
        // Before the signal thread exists: it inherits the mask of the thread that spawns it.
        reset_signals(&caught)?;
    }
    Ok(CaughtSignals { pipe, actions })
}

impl CaughtSignals {
    /// Start the signal thread, if there is work for one. It ends at the first stop signal:
    /// the body is asked to stop, and nothing else may run during the shutdown.
    pub(in crate::engine) fn start_thread(
        self,
        handlers: Arc<Mutex<Handlers>>,
        lifecycle: Arc<Lifecycle>,
        reload: Reload,
        log: Log,
    ) -> Result<SignalThread, Error> {
        let actions = self.actions;
        let busy = Arc::new(Mutex::new(None));
        let Some(mut pipe) = self.pipe else {
            return Ok(SignalThread {
                handlers,
                handle: None,
                thread: None,
                actions,
                busy,
                ended: None,
                log,
            });
        };
        let handle = pipe.handle();
        let ended = Arc::new(Ended::default());
        let tell_ended = TellEnded(ended.clone());
        let (running, thread_log, called) = (busy.clone(), log.clone(), handlers.clone());
        let thread = thread::Builder::new()
            .name("daemons-signals".into())
            .spawn(move || {
                let log = thread_log;
                'listening: while let Some(signals) = pipe.wait() {
                    for signal in signals {
                        if STOP_SIGNALS.contains(&signal) {
                            // The signal handler has asked the body to stop already.
                            lifecycle.tell_stopping();
                            break 'listening;
                        }
                        let hup = signal == Signal::SIGHUP;
                        if hup {
                            reload.begin(&log);
                        }
                        *lock(&running) = Some((signal, Instant::now()));
                        let _ = lock(&called).call(signal, &log);
                        *lock(&running) = None;
                        if hup {
                            reload.end();
                        }
                    }
                }
                drop(tell_ended);
                // Handed back rather than dropped here: closing the pipe writes to this
                // socket, which must still have a reader.
                pipe
            })
            .map_err(|e| Error::Sys {
                call: "spawn the signal thread",
                source: e,
            })?;
        Ok(SignalThread {
            handlers,
            handle: Some(handle),
            thread: Some(thread),
            actions,
            busy,
            ended: Some(ended),
            log,
        })
    }
}

impl SignalThread {
    /// Stop listening and wait for the signal thread, so that no handler runs after this; the
    /// handlers are handed back, for the stop signal's. In a process of the daemon's own the
    /// signals stay caught (and ignored) until it exits; a process that goes on after the daemon
    /// (`run()` in the foreground) gets them back.
    pub(in crate::engine) fn stop(mut self, role: Role) -> Arc<Mutex<Handlers>> {
        let handlers = self.handlers.clone();
        if role.owns_process() {
            if let Some(pipe) = self.join() {
                // Unregistering takes signal-hook's global lock once per signal, for nothing:
                // the process is about to exit.
                std::mem::forget(pipe);
            }
            return handlers;
        }
        for id in self.actions.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        drop(self.join());
        handlers
    }

    fn join(mut self) -> Option<SignalPipe> {
        if let Some(handle) = &self.handle {
            handle.close();
        }
        // A handler that never returns keeps the stop handlers from running, and the daemon is
        // then killed at the stop timeout: the log says why.
        if let Some(ended) = &self.ended
            && !ended.wait(PATIENCE)
            && let Some((signal, since)) = *lock(&self.busy)
        {
            self.log.log(&format!(
                "stopping: a {signal} handler has been running for {} s; the stop handlers wait for it to return",
                Tenths(since.elapsed())
            ));
        }
        self.thread.take().and_then(|thread| thread.join().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_seen_to_end_whether_it_returns_or_panics() {
        let ended = Arc::new(Ended::default());
        let go = Arc::new(Mutex::new(()));
        let held = lock(&go);
        let (tell, gate) = (TellEnded(ended.clone()), go.clone());
        let thread = thread::spawn(move || {
            let _tell = tell;
            // Runs until the test lets go of the mutex.
            let _held = lock(&gate);
        });
        assert!(!ended.wait(Duration::from_millis(20)), "still running");
        drop(held);
        assert!(ended.wait(Duration::from_secs(10)), "told at its end");
        thread.join().expect("joined");

        let ended = Arc::new(Ended::default());
        let tell = TellEnded(ended.clone());
        let thread = thread::spawn(move || {
            let _tell = tell;
            panic!("on purpose");
        });
        assert!(ended.wait(Duration::from_secs(10)), "told as it unwinds");
        assert!(thread.join().is_err());
    }
}
