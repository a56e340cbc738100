//! Process control from outside the daemon: signal it, wait for it, stop it.
//!
//! The name is the one of init scripts and `start-stop-daemon` ("process control"), and this
//! module is their side: a program that has only the pidfile. [`Ctl`](crate::Ctl) is the other
//! side, the body's view of its own daemon from inside (is a stop asked, sleep until it is,
//! report ready); nothing here runs inside the daemon, and nothing in `Ctl` reaches another
//! process. Renaming the module would only move the confusion to a less familiar word.
//!
//! Every operation starts from the pidfile and never trusts the pid written in it: the pid is
//! signalled only if it is the process that holds the pidfile's lock, and the signal goes through
//! a pidfd opened *before* that check, so a pid that the kernel reuses in between is never hit.
//! Waiting for the exit polls the pidfd, which becomes readable the moment the process dies:
//! there is no sleep loop, and a stop of an idle daemon takes a few milliseconds.
//!
//! ```
//! use daemons::{control, Pidfile};
//!
//! let dir = tempfile::tempdir()?;
//! let pidfile = Pidfile::new(dir.path().join("none.pid"));
//! // Nothing runs: stopping is a no-op that says so.
//! let stopped = control::stop(&pidfile, std::time::Duration::from_secs(1))?;
//! assert_eq!(stopped, control::Stopped::NotRunning);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Platform-specific behavior
//!
//! Pidfds are Linux's. Elsewhere (and on Linux built with `--cfg daemons_portable`):
//!
//! - The process is pinned by a kqueue (`EVFILT_PROC`, `NOTE_EXIT`) registered before its
//!   holding of the lock is checked, on macOS, FreeBSD and NetBSD: the kqueue keeps telling
//!   about that very process, and wakes the waiter the moment it exits. A signal is a `kill` of
//!   the pid once the holder is checked again and the kqueue says that the process has not
//!   exited: until it exits the pid is its own, and what remains is the moment between that
//!   look and the `kill`, in which the process would have to exit, be reaped and its pid be
//!   given to a new process.
//! - Where there is no kqueue (Linux without pidfds, or a kqueue that the kernel refused), a
//!   signal is a `kill` right after checking again that the pid holds the lock, with the same
//!   moment left between the check and the `kill`; a process that has let go of the lock is
//!   not signalled. The wait for the exit is a wait for the pidfile's lock, which the daemon
//!   holds until it dies: a child process of the caller blocks on a shared lock of
//!   the file and says when it got it (and lets go of it at once). It keeps no other descriptor
//!   of the caller's, and is reaped (killed first, if it is still waiting) when the [`Process`]
//!   is dropped, so nothing is left behind. A daemon started by `start()` leaves the release of
//!   its lock to its exit (the kernel releases it once its last thread is gone), so the wait
//!   ends with the daemon; a holder that lets go of the lock before it exits ends it then.

// The wait for a daemon's exit where only its pidfile's lock tells: a child process blocked on
// the lock. It forks, through the fork gate, so it is the control part's, not a mechanism of
// `sys`, which is below the gates.
pub(crate) mod lockwait;

use std::fmt;
use std::fs::{self, File};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::{Pid, Signal};

use crate::error::{Action, Error, human};
use crate::gate::process::{Pinned, Refused, Target};
use crate::pidfile::{Content, Pidfile, Status};
use crate::sync::{Backoff, Deadline, lock};
use crate::sys;

use lockwait::LockWaiter;

/// How long `stop` waits after SIGKILL. A killed process is gone within microseconds unless it
/// is stuck in the kernel, which nothing here can change.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a [`stop`] ended.
///
/// # Examples
///
/// ```
/// use daemons::control::Stopped;
/// use std::time::Duration;
///
/// let s = Stopped::Exited { pid: daemons::Pid::from_raw(42), after: Duration::from_millis(3) };
/// assert_eq!(s.pid(), Some(daemons::Pid::from_raw(42)));
/// assert!(!s.was_killed());
/// assert_eq!(s.to_string(), "stopped (pid 42, after 3 ms)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// Nothing was running (a stale pidfile, if there was one, was removed).
    NotRunning,
    /// The daemon exited after SIGTERM.
    Exited {
        /// Its pid.
        pid: Pid,
        /// How long it took.
        after: Duration,
    },
    /// The daemon did not exit within the stop timeout and was killed with SIGKILL.
    Killed {
        /// Its pid.
        pid: Pid,
        /// How long it took, the timeout included.
        after: Duration,
    },
}

impl Stopped {
    /// The pid of the daemon that was stopped, if one was.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(daemons::control::Stopped::NotRunning.pid(), None);
    /// ```
    #[must_use]
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Stopped::NotRunning => None,
            Stopped::Exited { pid, .. } | Stopped::Killed { pid, .. } => Some(*pid),
        }
    }

    /// Whether the daemon had to be killed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!daemons::control::Stopped::NotRunning.was_killed());
    /// ```
    #[must_use]
    pub fn was_killed(&self) -> bool {
        matches!(self, Stopped::Killed { .. })
    }

    /// The same words as [`Display`](fmt::Display), naming `pidfile` when nothing was running:
    /// what [`cli`](crate::cli) prints, so that a pidfile path that differs from the daemon's
    /// (a relative path, another runtime directory) shows.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::control::Stopped;
    /// use std::path::Path;
    ///
    /// assert_eq!(
    ///     Stopped::NotRunning.with_pidfile(Path::new("/run/x.pid")).to_string(),
    ///     "not running (no daemon holds pidfile /run/x.pid)"
    /// );
    /// ```
    #[must_use]
    pub fn with_pidfile<'a>(&'a self, pidfile: &'a Path) -> impl fmt::Display + 'a {
        StoppedWords {
            stopped: self,
            pidfile,
        }
    }
}

/// The words of a [`Stopped`], with the pidfile looked at.
struct StoppedWords<'a> {
    stopped: &'a Stopped,
    pidfile: &'a Path,
}

impl fmt::Display for StoppedWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stopped {
            Stopped::NotRunning => write!(
                f,
                "not running (no daemon holds pidfile {})",
                self.pidfile.display()
            ),
            stopped => stopped.fmt(f),
        }
    }
}

impl fmt::Display for Stopped {
    /// What `stop` says, one format per ending:
    ///
    /// ```
    /// use daemons::{control::Stopped, Pid};
    /// use std::time::Duration;
    ///
    /// let pid = Pid::from_raw(42);
    /// assert_eq!(Stopped::NotRunning.to_string(), "not running");
    /// let exited = Stopped::Exited { pid, after: Duration::from_millis(3) };
    /// assert_eq!(exited.to_string(), "stopped (pid 42, after 3 ms)");
    /// let killed = Stopped::Killed { pid, after: Duration::from_millis(10_010) };
    /// assert_eq!(killed.to_string(), "stopped (pid 42, killed after 10 s)");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::NotRunning => f.write_str("not running"),
            Stopped::Exited { pid, after } => {
                write!(f, "stopped (pid {pid}, after {})", human(*after))
            }
            Stopped::Killed { pid, after } => {
                write!(f, "stopped (pid {pid}, killed after {})", human(*after))
            }
        }
    }
}

/// A live process that holds a pidfile, pinned by a pidfd (outside Linux, a kqueue).
///
/// # Examples
///
/// ```
/// use daemons::{control::Process, Pidfile};
///
/// let dir = tempfile::tempdir()?;
/// let pidfile = Pidfile::new(dir.path().join("x.pid"));
/// assert!(Process::holding(&pidfile)?.is_none());
/// let _lock = pidfile.acquire()?;
/// let me = Process::holding(&pidfile)?.expect("this process holds it");
/// assert_eq!(me.pid(), daemons::Pid::this());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Process {
    /// The holder, pinned before its holding of the lock was checked (a pidfd on Linux, a
    /// kqueue on macOS and the BSDs) and verified by that check: what signals go to, through the
    /// signal gate.
    target: Target,
    /// The pidfile as it was checked, where the wait may be a wait on the lock (everywhere but
    /// in the default build for Linux).
    held: Option<Held>,
}

/// The pidfile that a [`Process`] was found holding.
#[derive(Debug)]
struct Held {
    pidfile: Pidfile,
    file: Arc<File>,
    meta: fs::Metadata,
    waiter: Mutex<Option<LockWaiter>>,
}

impl Process {
    fn new(target: Target, pidfile: &Pidfile, file: Arc<File>, meta: fs::Metadata) -> Process {
        let held = (!sys::SIGNALS_PINNED).then(|| Held {
            pidfile: pidfile.clone(),
            file,
            meta,
            waiter: Mutex::new(None),
        });
        Process { target, held }
    }

    /// The process that holds `pidfile`'s lock, or `None` if nobody does.
    ///
    /// The pidfd is opened first and the holder checked after: if the pid named in the file was
    /// reused in between, the new process does not hold the lock and the check fails, so the
    /// returned handle always designates the real holder (or a process that has since exited,
    /// which signals cannot reach).
    ///
    /// # Errors
    ///
    /// The pidfile's errors ([`Error::Untrusted`], [`Error::Symlink`], ...), and
    /// [`Error::Sys`] when `pidfd_open` fails for another reason than the process being gone
    /// (`EMFILE`: this process may open no more descriptors).
    ///
    /// # Platform-specific behavior
    ///
    /// Outside Linux a kqueue takes the pidfd's place, and where none can be had the process is
    /// not pinned: see [the module documentation](self).
    ///
    /// # Examples
    ///
    /// See [`Process`].
    pub fn holding(pidfile: &Pidfile) -> Result<Option<Process>, Error> {
        Ok(Process::holding_read(pidfile)?.map(|(process, _)| process))
    }

    /// [`Process::holding`], with what the pidfile said when the holder was found in the usual
    /// case's one read (`None` when the whole probe found it): a stop reads the other instance
    /// of a restart from it instead of opening the file again.
    fn holding_read(pidfile: &Pidfile) -> Result<Option<(Process, Option<Content>)>, Error> {
        // The usual case, a running daemon, in one read of the file: the pid it names, pinned
        // first, then checked to hold the lock.
        let Some((content, file, meta)) = pidfile.open_identified()? else {
            return Ok(None);
        };
        let file = Arc::new(file);
        if let Some(pid) = content.pid
            && let Some(target) = pin_holder(pid, pidfile, &file, &meta)?
            && pidfile.names(&meta)
        {
            return Ok(Some((
                Process::new(target, pidfile, file, meta),
                Some(content),
            )));
        }
        drop(file);
        // Anything else goes through the whole probe (a daemon in another pid namespace, a lock
        // that a stranger holds, a stale file), and a holder it names is pinned, then checked
        // again: each round fails only if the holder changed under us.
        for _ in 0..8 {
            let pid = match pidfile.probe()? {
                Status::Running(pid) | Status::Supervised { pid, .. } => pid,
                Status::Starting => {
                    return Err(Error::Unverified {
                        pidfile: pidfile.path().to_path_buf(),
                        named: None,
                        holder: None,
                        command: None,
                    });
                }
                Status::Dead { .. } | Status::NotRunning => return Ok(None),
            };
            if sys::LOCK_LINES {
                let again = pidfile.clone();
                let still_the_holder = move |pid: Pid| match again.probe() {
                    Ok(status) if status.pid() == Some(pid) => Ok(()),
                    Ok(status) => Err(format!("the pidfile says {status}")),
                    Err(e) => Err(e.to_string()),
                };
                if let Some(target) = pin_checked(pid, pidfile, still_the_holder)? {
                    return Ok(Some((Process { target, held: None }, None)));
                }
            } else if let Some((_, file, meta)) = pidfile.open_identified()? {
                let file = Arc::new(file);
                if let Some(target) = pin_holder(pid, pidfile, &file, &meta)?
                    && pidfile.names(&meta)
                {
                    return Ok(Some((Process::new(target, pidfile, file, meta), None)));
                }
            }
        }
        Err(Error::AlreadyRunning {
            pidfile: pidfile.path().to_path_buf(),
            pid: None,
        })
    }

    /// The process `pid`, if it holds `pidfile`'s lock: pinned first, then checked to share the
    /// open file that holds the lock. For the other instance of a restart under way, which the
    /// pidfile names after the first pid.
    pub(crate) fn holding_as(pidfile: &Pidfile, pid: Pid) -> Result<Option<Process>, Error> {
        let Some((_, file, meta)) = pidfile.open_identified()? else {
            return Ok(None);
        };
        let file = Arc::new(file);
        match pin_holder(pid, pidfile, &file, &meta)? {
            Some(target) if pidfile.names(&meta) => {
                Ok(Some(Process::new(target, pidfile, file, meta)))
            }
            _ => Ok(None),
        }
    }

    /// The process id.
    ///
    /// # Examples
    ///
    /// See [`Process`].
    pub fn pid(&self) -> Pid {
        self.target.pid()
    }

    /// In a fork's child: close the child's copies of this handle's descriptors (the pidfd,
    /// the pidfile), which nothing would close otherwise.
    ///
    /// # Safety
    ///
    /// The frames that own this handle never run again in this process (it ends with `_exit`
    /// without returning into them), so nothing uses or closes the descriptors after this.
    pub(crate) unsafe fn forget_in_this_copy(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: the caller guarantees that the owner never runs again here.
        unsafe { self.target.forget_in_this_copy() };
        if let Some(held) = &self.held {
            // SAFETY: as above; the file is shared with the target's check only, which is part
            // of the same handle.
            unsafe { sys::close_copy(held.file.as_raw_fd()) };
            if let Some(waiter) = lock(&held.waiter).as_ref() {
                // SAFETY: as above.
                unsafe { waiter.forget_in_this_copy() };
            }
        }
    }

    /// Send `signal` through the pidfd.
    ///
    /// A process that has exited, or (where the holder is checked again before each signal)
    /// that has let go of the lock, as a daemon does when it ends, is not signalled, and that is
    /// not an error.
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] when the kernel refuses.
    ///
    /// # Platform-specific behavior
    ///
    /// Outside Linux the signal is a `kill`, once the holder is checked again and a kqueue says
    /// that the process has not exited: see [the module documentation](self).
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use daemons::{control::Process, Pidfile, Signal};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let pidfile = Pidfile::new(dir.path().join("x.pid"));
    /// let _lock = pidfile.acquire()?;
    /// // SAFETY: ignoring a signal runs no code in signal context (nix's call, nix's name).
    /// let usr2 = nix::sys::signal::Signal::SIGUSR2;
    /// unsafe { nix::sys::signal::signal(usr2, nix::sys::signal::SigHandler::SigIgn) }?;
    /// Process::holding(&pidfile)?.unwrap().signal(Signal::SIGUSR2)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        match self.target.signal(signal) {
            Ok(()) => Ok(()),
            // Gone, or ending: an unverified pid is never signalled.
            Err(Refused::Not(_)) => Ok(()),
            Err(Refused::Sys { call, source }) => Err(Error::Sys { call, source }),
        }
    }

    /// Wait, at most `timeout`, for the process to exit. Returns whether it did. The wait is a
    /// `poll` on the pidfd: it wakes the moment the process dies, whoever its parent is.
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] when `poll` fails.
    ///
    /// # Platform-specific behavior
    ///
    /// Outside Linux the wait is on a kqueue, or, where there is none, on the pidfile's lock,
    /// through a child process that this call forks the first time (a process that runs other
    /// threads may not fork: it looks at the lock at growing intervals instead): see
    /// [the module documentation](self).
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{control::Process, Pidfile};
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let pidfile = Pidfile::new(dir.path().join("x.pid"));
    /// let _lock = pidfile.acquire()?;
    /// let me = Process::holding(&pidfile)?.unwrap();
    /// assert!(!me.wait(Duration::from_millis(1))?);   // this process is alive, of course
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self, timeout: Duration) -> Result<bool, Error> {
        if sys::EXIT_EVENTS {
            let exited = self.target.exited(timeout).map_err(|e| Error::Sys {
                call: if sys::SIGNALS_PINNED {
                    "poll"
                } else {
                    "kevent"
                },
                source: e,
            })?;
            if let Some(exited) = exited {
                return Ok(exited);
            }
        }
        let Some(held) = &self.held else {
            return Ok(true);
        };
        let mut waiter = lock(&held.waiter);
        let waiter = match &mut *waiter {
            Some(waiter) => waiter,
            empty => empty.insert(LockWaiter::start(&held.file)?),
        };
        if waiter.wait(timeout).map_err(|e| Error::Sys {
            call: "flock",
            source: e,
        })? {
            return Ok(true);
        }
        // The waiting child may wait behind a successor that took the lock of this same file the
        // moment it was free: a file that is not locked, or whose pid no longer has it open, is
        // let go of.
        Ok(self.let_go()? || sys::has_open(self.pid(), &held.file, &held.meta) == Some(false))
    }

    /// Whether the pidfile that the process was found holding is no longer locked, at a look:
    /// the sign of its exit where nothing else tells of it.
    fn let_go(&self) -> Result<bool, Error> {
        match &self.held {
            Some(held) => Ok(!held.pidfile.is_locked(&held.file)?),
            None => Ok(true),
        }
    }
}

/// Send `signal` to the process that holds `pidfile`, and return its pid.
///
/// # Errors
///
/// [`Error::NotRunning`] when nobody holds the pidfile (a stale pidfile's pid is never
/// signalled), and the errors of [`Process::holding`] and [`Process::signal`].
///
/// # Examples
///
/// ```
/// use daemons::{control, Error, Pidfile, Signal};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("stale.pid");
/// std::fs::write(&path, format!("{}\n", std::process::id()))?;   // names a live process...
/// let err = control::send(&Pidfile::new(&path), Signal::SIGTERM).unwrap_err();
/// assert!(matches!(err, Error::NotRunning { .. }));               // ...that is not signalled
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send(pidfile: &Pidfile, signal: Signal) -> Result<Pid, Error> {
    send_verified(pidfile, signal, &|_| Ok(()))
}

/// [`send`], to a holder that `verify` accepts: its error, and nothing sent, otherwise.
pub(crate) fn send_verified(
    pidfile: &Pidfile,
    signal: Signal,
    verify: Verify<'_>,
) -> Result<Pid, Error> {
    let process = Process::holding(pidfile)?.ok_or_else(|| Error::NotRunning {
        pidfile: pidfile.path().to_path_buf(),
    })?;
    verify(process.pid())?;
    process.signal(signal)?;
    Ok(process.pid())
}

/// What the handle asks of a holder before it is signalled (that it runs the same program),
/// in the same look at the pidfile as the signal's own checks.
pub(crate) type Verify<'a> = &'a dyn Fn(Pid) -> Result<(), Error>;

/// Stop the process that holds `pidfile`: SIGTERM and SIGCONT, a wait of at most `timeout`, then
/// SIGKILL.
/// A pidfile left behind (by a killed daemon, or stale from before) is removed.
///
/// During a restart two instances hold the pidfile (the one that runs, and the successor it
/// hands its sockets to, which the pidfile names after the first pid): both are stopped. So is
/// every instance that takes the pidfile over while the stop runs and that was started before
/// it began; one started later (a `start()` after this stop) is left alone.
///
/// # Errors
///
/// [`Error::StillAlive`] when the process survives SIGKILL (stuck in the kernel), and the errors
/// of [`Process::holding`].
///
/// # Examples
///
/// See [the module documentation](self).
pub fn stop(pidfile: &Pidfile, timeout: Duration) -> Result<Stopped, Error> {
    stop_verified(pidfile, timeout, &|_| Ok(()))
}

/// [`stop`], of holders that `verify` accepts: its error, and nothing signalled, otherwise.
pub(crate) fn stop_verified(
    pidfile: &Pidfile,
    timeout: Duration,
    verify: Verify<'_>,
) -> Result<Stopped, Error> {
    let began = SystemTime::now();
    let mut stopped = Stopped::NotRunning;
    let mut seen: Vec<Pid> = Vec::new();
    for round in 0..ROUNDS {
        let mut holders = holding_all(pidfile)?;
        // The first round stops what holds the pidfile when the stop begins; later rounds only
        // what took it over since and started before the stop (or was named already).
        if round > 0 {
            holders.retain(|p| {
                seen.contains(&p.pid()) || sys::started_before(p.pid(), began) == Some(true)
            });
        }
        if holders.is_empty() {
            break;
        }
        for holder in &holders {
            verify(holder.pid())?;
        }
        seen.extend(holders.iter().map(Process::pid));
        let ended = stop_all(&holders, timeout)?;
        if stopped == Stopped::NotRunning {
            stopped = ended;
        }
    }
    remove_stale(pidfile)?;
    Ok(stopped)
}

/// How many times [`stop`] looks again for an instance that took the pidfile over meanwhile.
const ROUNDS: usize = 8;

/// The processes that hold `pidfile`: the one it names, and the other instance of a restart
/// under way if it holds the lock too.
fn holding_all(pidfile: &Pidfile) -> Result<Vec<Process>, Error> {
    let Some((first, read)) = Process::holding_read(pidfile)? else {
        return Ok(Vec::new());
    };
    let partner = match read {
        Some(content) => content.handover(),
        None => pidfile.partner()?,
    };
    let mut holders = vec![first];
    if let Some(partner) = partner
        && partner != holders[0].pid()
        && let Some(partner) = Process::holding_as(pidfile, partner)?
    {
        holders.push(partner);
    }
    Ok(holders)
}

/// SIGTERM and SIGCONT to `process`, a wait of at most `timeout`, then SIGKILL; the pidfile is
/// left alone (a successor may hold it by then).
pub(crate) fn stop_process(process: &Process, timeout: Duration) -> Result<Stopped, Error> {
    stop_all(std::slice::from_ref(process), timeout)
}

/// [`stop_process`] for several at once, within one timeout; how the first ended.
fn stop_all(processes: &[Process], timeout: Duration) -> Result<Stopped, Error> {
    let started = Instant::now();
    for process in processes {
        process.signal(Signal::SIGTERM)?;
        // A stopped daemon (SIGSTOP, a debugger let go of) must run to act on the SIGTERM, as
        // systemd sends SIGCONT after it too.
        process.signal(Signal::SIGCONT)?;
    }
    let deadline = Deadline::after(timeout);
    let mut killed = vec![false; processes.len()];
    for (process, killed) in processes.iter().zip(&mut killed) {
        if !exited(process, deadline.left())? {
            process.signal(Signal::SIGKILL)?;
            *killed = true;
        }
    }
    for (process, killed) in processes.iter().zip(&killed) {
        if *killed && !exited(process, KILL_WAIT)? {
            return Err(Error::StillAlive { pid: process.pid() });
        }
    }
    let (Some(first), Some(&killed)) = (processes.first(), killed.first()) else {
        return Ok(Stopped::NotRunning);
    };
    let (pid, after) = (first.pid(), started.elapsed());
    Ok(match killed {
        true => Stopped::Killed { pid, after },
        false => Stopped::Exited { pid, after },
    })
}

/// Wait at most `timeout` for `process` to exit. Where nothing tells of its exit but the lock
/// (see [the module documentation](self)), the lock may outlive the process, shared with a
/// successor at a restart, so the wait also looks whether the process still has the pidfile
/// open, at growing intervals ([`Backoff`]); and a process whose first thread no longer has it
/// open may still be ending in its other threads, which hold its descriptors (its listening
/// sockets among them): those are waited for too. The first 2 ms look at the lock every 50 µs,
/// with sleeps that end when asked ([`sys::FineSleeps`]): a daemon usually lets go within a
/// millisecond of its SIGTERM, and a look that comes late adds its lateness to the stop.
pub(crate) fn exited(process: &Process, timeout: Duration) -> Result<bool, Error> {
    if sys::EXIT_EVENTS {
        return process.wait(timeout);
    }
    let _fine = sys::FineSleeps::new();
    let mut backoff = Backoff::within(timeout);
    let deadline = backoff.deadline();
    // Made after the process was checked to hold the pidfile, and before it is waited for: it
    // knows the process by its pid and start time.
    let threads = sys::ExitWatch::new(process.pid()).ok().flatten();
    let threads_exited = || match &threads {
        Some(threads) => threads.exited(deadline.left()).map_err(|e| Error::Sys {
            call: "read /proc",
            source: e,
        }),
        None => Ok(true),
    };
    // The wait on the lock is a child process (a fork); a daemon usually lets go of its pidfile
    // within a millisecond of its SIGTERM, so the lock is looked at first.
    let mut looks = Backoff::every(LOOK_EVERY, LOOK_AT_THE_LOCK.min(timeout));
    loop {
        if process.let_go()? {
            return threads_exited();
        }
        if !looks.sleep() {
            break;
        }
    }
    loop {
        if process.wait(backoff.next_pause().unwrap_or(Duration::ZERO))? {
            return threads_exited();
        }
        if deadline.passed() {
            return Ok(false);
        }
    }
}

/// How long a wait without exit events looks at the pidfile's lock itself, every
/// [`LOOK_EVERY`], before it starts a child that waits on it.
const LOOK_AT_THE_LOCK: Duration = Duration::from_millis(2);
const LOOK_EVERY: Duration = Duration::from_micros(50);

/// Pin `pid`, then verify that it holds the lock of `file` (the pidfile, identified by `meta`):
/// the holder, or `None`.
fn pin_holder(
    pid: Pid,
    pidfile: &Pidfile,
    file: &Arc<File>,
    meta: &fs::Metadata,
) -> Result<Option<Target>, Error> {
    let (again, file, meta) = (pidfile.clone(), file.clone(), meta.clone());
    pin_checked(pid, pidfile, move |pid: Pid| {
        if again.holds(pid, &file, &meta) {
            Ok(())
        } else {
            Err(format!(
                "pid {pid} does not hold the lock of pidfile {}",
                again.path().display()
            ))
        }
    })
}

/// Pin `pid` before `check` runs on it (the signal gate): a pidfd on Linux, a kqueue on macOS and
/// the BSDs. The pidfd names a process of this process's pid namespace, and the checks read
/// `/proc`, which may be another namespace's: the pidfd's own `fdinfo` must name the same pid
/// there, or nothing is done. `None` when the process is gone or `check` fails.
fn pin_checked(
    pid: Pid,
    pidfile: &Pidfile,
    check: impl Fn(Pid) -> Result<(), String> + Send + Sync + 'static,
) -> Result<Option<Target>, Error> {
    let foreign = |reason| Error::ForeignProc {
        pidfile: pidfile.path().to_path_buf(),
        reason,
    };
    if !sys::SIGNALS_PINNED {
        // The holder checks read `/proc` where there is one, and the pid that they find there
        // is signalled with `kill`, in this namespace: both must be the same one's.
        sys::check_proc().map_err(foreign)?;
    }
    let pinned = match Pinned::pin(pid) {
        Ok(pinned) => pinned,
        // Gone, or no process that can be pinned: not the holder.
        Err(Refused::Not(_)) => return Ok(None),
        Err(Refused::Sys { call, source }) => return Err(Error::Sys { call, source }),
    };
    match pinned.pid_in_proc() {
        Ok(Some(seen)) if seen == pid => {}
        Ok(Some(seen)) => {
            return Err(foreign(format!(
                "pid {pid} of this namespace is pid {seen} in the /proc that is mounted"
            )));
        }
        Ok(None) => {
            return Err(foreign(format!(
                "the /proc that is mounted does not show pid {pid} of this namespace"
            )));
        }
        Err(e) => {
            return Err(Error::io(
                Action::ReadPinnedPid,
                Path::new(&pinned.fdinfo()),
                e,
            ));
        }
    }
    Ok(pinned.verify(check).ok())
}

/// Remove the pidfile if nobody holds it. One held by a successor that started in the meantime is
/// left alone: it is not stale.
fn remove_stale(pidfile: &Pidfile) -> Result<(), Error> {
    // The offer socket of a daemon with listening sockets goes with it.
    match pidfile.remove_and(|| pidfile.remove_stale_offer()) {
        Err(Error::AlreadyRunning { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_handle_may_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Process>();
    }
}
