//! Supervision: with a [`Supervision`] policy the daemon is a small supervisor that holds the
//! pidfile and runs the body in a child process, started again after a crash, with a backoff
//! that doubles and a limit.
//!
//! The supervisor stays single-threaded, so that forking the next child is always safe: it
//! spawns no thread, catches its signals into signal-hook's self-pipe as the engine does
//! ([`SignalPipe`]), and waits in one `poll` on that pipe and on the child's report pipe and
//! exit. Everything with threads (the signal thread, the keeper, the body's own) lives in the
//! child.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime};

use crate::Signal;
use nix::fcntl::OFlag;

use crate::detach::{Logs, Reporter};
use crate::engine::handlers::STOP_SIGNALS;
use crate::engine::log::Log;
use crate::engine::role::Role;
use crate::engine::signals::{SignalPipe, reopen_logs};
use crate::error::{Error, Failure};
use crate::gate::fork::{Forked, fork};
use crate::gate::process::{self, Ended};
use crate::listen::Listeners;
use crate::pidfile::{Note, PidfileLock};
use crate::report;
use crate::settings::Supervision;
use crate::sync::Deadline;
use crate::sys::{self, SignalSet};
use crate::systemd::Notifier;

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    fn is_clean(&self) -> bool {
        *self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by {signal}"),
        }
    }
}

/// What the supervisor needs from the engine: how to serve the body in one child.
pub(in crate::engine) trait Child {
    /// Serve the body in this, the freshly forked child, in `role`, reporting through `report`;
    /// returns the exit code.
    fn serve_child(&self, report: Reporter, role: Role, listeners: &Listeners) -> i32;
}

/// The supervisor's world: its pidfile, its signals, its log.
pub(in crate::engine) struct Supervisor<'a> {
    pub(in crate::engine) policy: Supervision,
    pub(in crate::engine) lock: PidfileLock,
    /// The listening sockets: the supervisor keeps them open across children, so that no
    /// connection is refused while a child is started again.
    pub(in crate::engine) listeners: Listeners,
    pub(in crate::engine) log: &'a Log,
    /// The supervisor's own role: detached, or in the foreground.
    pub(in crate::engine) role: Role,
    /// The log files, reopened on SIGHUP when they are the supervisor's stdio.
    pub(in crate::engine) logs: Logs,
    /// Every signal that the daemon has handlers for, or that stops it: forwarded to the child.
    pub(in crate::engine) forwarded: Vec<Signal>,
}

/// One child, running.
struct Running {
    child: process::Child,
    report: File,
    report_closed: bool,
    heard: Vec<u8>,
    since: Instant,
    ready: bool,
}

impl<'a> Supervisor<'a> {
    /// Supervise until stopped or given up. `first_report` is the caller of `start()`, told once
    /// the first child is ready (or why it could not start).
    pub(in crate::engine) fn supervise(
        mut self,
        child: &dyn Child,
        mut first_report: Option<Reporter>,
        notifier: Option<Notifier>,
    ) -> Result<(), Error> {
        let mut caught = self.forwarded.clone();
        caught.push(Signal::SIGCHLD);
        let mut signals = SignalPipe::catch(&caught)?;
        self.lock.write_pid()?;
        let mut restarts = 0u32;
        // How the last child ended, for `status`.
        let mut last_end: Option<String> = None;
        let mut failures: Vec<Instant> = Vec::new();
        let mut backoff = self.policy.first;
        let mut stopping = false;
        // The service manager hears READY=1 once, when the first child is ready; after that the
        // daemon stays ready across children, and hears of reloads and of the body's life.
        let mut told_ready = false;
        let watchdog = crate::systemd::watchdog_period().is_some();
        loop {
            let mut running = match self.spawn(restarts, last_end.as_deref()) {
                Ok(Spawned::Parent(running)) => running,
                Ok(Spawned::Child(report)) => {
                    // The child must not inherit the supervisor's signal actions.
                    drop(signals);
                    self.serve_child(child, report)
                }
                Err(error) => {
                    if !told_ready && let Some(notifier) = &notifier {
                        let _ = notifier.failed(&error);
                    }
                    // The first child: `start()` fails with the fork's error. A later one: the
                    // log says why the body is not started again.
                    match first_report.take() {
                        Some(mut reporter) => reporter.fail(&error),
                        None => self
                            .log
                            .error(&format!("cannot start the body's process again: {error}")),
                    }
                    let _ = self.lock.unlink();
                    return Err(error);
                }
            };
            let ended = loop {
                // A report pipe at its end (the child exited, or exec'ed another program, which
                // closed it) is no longer polled: it would be readable for ever.
                let report = (!running.report_closed).then_some(&running.report);
                let (signal_ready, report_ready) =
                    wait(signals.fd(), running.child.exit_fd(), report, None);
                if report_ready {
                    let (reloads, alive) = running.listen();
                    if running.ready && !stopping && !told_ready {
                        told_ready = true;
                        if let Some(reporter) = first_report.take() {
                            reporter.ready();
                        }
                        if let Some(notifier) = &notifier {
                            let _ = notifier.ready();
                        }
                    }
                    if let Some(notifier) = &notifier {
                        if reloads > 0 && !stopping {
                            let _ = notifier.send("READY=1");
                        }
                        if alive && watchdog {
                            let _ = notifier.send("WATCHDOG=1");
                        }
                    }
                    if alive {
                        self.lock.touch();
                    }
                }
                if signal_ready {
                    for signal in signals.pending() {
                        match signal {
                            Signal::SIGCHLD => {}
                            _ if STOP_SIGNALS.contains(&signal) => {
                                stopping = true;
                                if let Some(notifier) = &notifier {
                                    let _ = notifier.send("STOPPING=1");
                                }
                                let _ = running.child.signal(signal);
                            }
                            Signal::SIGHUP => {
                                // The child says when its handlers have run (READY=1 then).
                                if told_ready && let Some(notifier) = &notifier {
                                    let _ = notifier.reloading();
                                }
                                self.reopen_logs();
                                let _ = running.child.signal(signal);
                            }
                            _ => {
                                let _ = running.child.signal(signal);
                            }
                        }
                    }
                }
                if let Some(exit) = running.reap() {
                    break exit;
                }
            };
            running.listen();
            let cause = running.cause(&ended);
            if stopping {
                // A stop that came before the first child was ready: `start()` hears what that
                // child said, as it would from an unsupervised daemon stopped so early.
                if let Some(mut reporter) = first_report.take() {
                    reporter.fail(
                        &running
                            .startup_error()
                            .unwrap_or(Error::ReturnedBeforeReady),
                    );
                }
                self.lock.unlink()?;
                return Ok(());
            }
            if !told_ready {
                // The first child did not get as far as ready: `start()` fails with its error,
                // and the service manager hears it.
                let error = running.startup_error().unwrap_or(Error::DaemonVanished);
                if let Some(mut reporter) = first_report.take() {
                    reporter.fail(&error);
                }
                if let Some(notifier) = &notifier {
                    let _ = notifier.failed(&error);
                }
                let _ = self.lock.unlink();
                return Err(error);
            }
            if !self.policy.restarts(ended.is_clean()) {
                let _ = self.lock.unlink();
                return if ended.is_clean() {
                    Ok(())
                } else {
                    Err(Error::Body {
                        source: Failure::text(cause),
                    })
                };
            }
            // A child that ran long enough was well: its failure starts the backoff over.
            if running.since.elapsed() >= self.policy.stable {
                backoff = self.policy.first;
            }
            let now = Instant::now();
            if !ended.is_clean() {
                failures.push(now);
            }
            if let Some((limit, within)) = self.policy.limit {
                failures.retain(|&at| now.duration_since(at) <= within);
                if failures.len() as u64 >= u64::from(limit) {
                    let reason = format!(
                        "gave up after {} failures within {within:?}; the last: {cause}",
                        failures.len()
                    );
                    self.log.error(&reason);
                    let _ = self.lock.keep_with_failure(&reason);
                    return Err(Error::Body {
                        source: Failure::text(reason),
                    });
                }
            }
            restarts += 1;
            // No child runs during the wait: `status` says so.
            // The log line first: whoever reads the count in the pidfile finds its line logged.
            self.log.warn(&format!(
                "the body's process (pid {}) ended: {cause}; restart {restarts} in {backoff:?}",
                running.child.pid()
            ));
            let _ = self.lock.write_note(&Note::Supervising {
                child: None,
                restarts,
                next: SystemTime::now().checked_add(backoff),
                last: Some(ended.to_string()),
            });
            last_end = Some(ended.to_string());
            // The wait before the next child, cut short by a stop.
            let deadline = Deadline::after(backoff);
            while !deadline.passed() {
                let left = deadline.left();
                let (signal_ready, _) = wait(signals.fd(), None, None, Some(left));
                if !signal_ready {
                    continue;
                }
                for signal in signals.pending() {
                    if STOP_SIGNALS.contains(&signal) {
                        if let Some(notifier) = &notifier {
                            let _ = notifier.send("STOPPING=1");
                        }
                        self.lock.unlink()?;
                        return Ok(());
                    }
                    // No child to pass it to; the supervisor's own logs are reopened all the
                    // same, as a rotation needs.
                    if signal == Signal::SIGHUP {
                        self.reopen_logs();
                    }
                }
            }
            backoff = (backoff * 2).min(self.policy.max);
        }
    }

    /// Reopen the log files, when they are the supervisor's stdio: a rotated log is let go of.
    fn reopen_logs(&self) {
        if self.role.has_log_files() {
            reopen_logs(&self.logs, self.log);
        }
    }

    /// Fork the next child, which serves the body.
    fn spawn(&mut self, restarts: u32, last_end: Option<&str>) -> Result<Spawned, Error> {
        let (read, write) = sys::pipe(false).map_err(|e| Error::Sys {
            call: "pipe",
            source: e,
        })?;
        // The signals that the supervisor catches stay blocked in the child until it has caught
        // them itself (its engine clears the mask once its own actions are in place): one that
        // came in between would reach the supervisor's inherited action, which no longer acts on
        // anything in the child, and a stop forwarded at that moment would be lost.
        let caught = SignalSet::of(self.forwarded.iter().copied().chain([Signal::SIGCHLD]));
        let mask = caught.block().map_err(|source| Error::Sys {
            call: "sigprocmask",
            source,
        })?;
        // The supervisor runs a single thread (it spawns none; see the module's documentation):
        // the fork gate lets it fork. A caller of `run()` that runs threads is refused.
        let forked = fork();
        if !matches!(forked, Ok(Forked::Child(_))) {
            let _ = mask.restore();
        }
        match forked? {
            Forked::Child(_) => Ok(Spawned::Child(File::from(write))),
            Forked::Parent(child) => {
                drop(write);
                let _ = self.lock.write_note(&Note::Supervising {
                    child: Some(child.pid()),
                    restarts,
                    next: None,
                    last: last_end.map(str::to_owned),
                });
                let report = File::from(read);
                let _ =
                    nix::fcntl::fcntl(&report, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
                Ok(Spawned::Parent(Running {
                    child,
                    report,
                    report_closed: false,
                    heard: Vec::new(),
                    since: Instant::now(),
                    ready: false,
                }))
            }
        }
    }

    /// The freshly forked child: serve the body, reporting through `report`, then leave.
    fn serve_child(&self, child: &dyn Child, report: File) -> ! {
        // A child outlives no supervisor: SIGKILLed, the supervisor takes it along.
        sys::die_with_parent();
        let role = self.role.child();
        let code = child.serve_child(Reporter::to_parent(report), role, &self.listeners);
        role.leave(code)
    }
}

/// Which side of the fork of a child this is.
enum Spawned {
    /// The child, with the write end of its report pipe.
    Child(File),
    /// The supervisor, with the child running.
    Parent(Running),
}

impl Running {
    /// Read what the child said so far; returns the events it sent since (how many reloads
    /// ended, and whether its body showed life).
    fn listen(&mut self) -> (usize, bool) {
        let mut buf = [0u8; 4096];
        loop {
            match self.report.read(&mut buf) {
                Ok(0) => {
                    self.report_closed = true;
                    break;
                }
                Ok(n) => self.heard.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        let events = report::take_events(&mut self.heard);
        if let (_, Some(Ok(()))) = report::parse(&self.heard) {
            self.ready = true;
        }
        events
    }

    /// Reap the child if it has ended.
    fn reap(&mut self) -> Option<Exit> {
        match self.child.try_wait() {
            Ok(Some(Ended::Exited(code))) => Some(Exit::Code(code)),
            Ok(Some(ended @ Ended::Signaled(raw))) => {
                Some(Signal::try_from(raw).map_or(Exit::Code(ended.code()), Exit::Signal))
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Some(Exit::Code(1)),
            _ => None,
        }
    }

    /// The error the child reported before it got ready, if any.
    fn startup_error(&self) -> Option<Error> {
        match report::parse(&self.heard) {
            (_, Some(Err(e))) => Some(e),
            _ => None,
        }
    }

    /// Why the child ended, with its own words where it left some.
    fn cause(&self, ended: &Exit) -> String {
        match report::last_words(&self.heard).or_else(|| self.startup_error()) {
            Some(words) => format!("{ended} ({words:#})"),
            None => ended.to_string(),
        }
    }
}

/// Wait for a signal, the child's report or its exit (its pidfd), at most `timeout` (`None`:
/// for as long as it takes); returns whether the signal pipe and the report are readable.
fn wait(
    signals: BorrowedFd<'_>,
    pidfd: Option<BorrowedFd<'_>>,
    report: Option<&File>,
    timeout: Option<Duration>,
) -> (bool, bool) {
    let mut fds = [signals; 3];
    let mut n = 1;
    for fd in report.map(File::as_fd).into_iter().chain(pidfd) {
        fds[n] = fd;
        n += 1;
    }
    let ready = sys::wait_any_readable(&fds[..n], timeout.unwrap_or(Duration::MAX));
    (ready.get(0), report.is_some() && ready.get(1))
}
