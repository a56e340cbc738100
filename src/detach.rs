//! Detaching from the caller: the double fork of daemon(7), with the outcome sent back.
//!
//! [`detach`] forks, starts a new session and forks again, so that the daemon is nobody's child
//! in the caller's session and can never regain a controlling terminal. The caller gets a
//! [`Pending`] that waits for the daemon's word; the daemon gets a [`Reporter`] to give it,
//! once it is ready or has failed. The caller's `start()` can thus return the daemon's own error
//! ("already running", "no such directory") instead of exiting 0 and leaving the failure unseen.
//!
//! The other steps of the procedure ([`redirect_stdio`], [`close_inherited_fds`],
//! [`reset_signals`]) are separate functions, for programs that detach by other means.
//!
//! ```rust,standalone_crate
//! # // Runs as its own single-threaded process: fork is only safe there.
//! use daemons::detach::{detach, Side};
//! use std::time::Duration;
//!
//! match detach()? {
//!     Side::Caller(pending) => {
//!         let pid = pending.wait(Duration::from_secs(10))?;
//!         assert!(pid.as_raw() > 0);
//!     }
//!     Side::Daemon(reporter) => {
//!         // Set up here; report, then do the work, then exit: never return into the caller's code.
//!         reporter.ready();
//!         std::process::exit(0);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Pid, Signal};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, setsid};

use crate::error::{Action, Error, NotSignalled};
use crate::gate::fork::{Forked, fork, fork_again};
use crate::gate::process::{Pinned, Refused, Target};
use crate::gate::{self, path::Trusted};
use crate::report;
use crate::sync::Deadline;
use crate::sys;

/// How long a daemon killed at the ready timeout is waited for. A killed process is gone within
/// microseconds unless it is stuck in the kernel, which nothing here can change.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Which side of [`detach`] this is. A fork has two sides and never more, so this enum is
/// exhaustive on purpose: a `match` needs no arm for a side that cannot be.
///
/// # Examples
///
/// ```
/// use daemons::detach::Side;
///
/// fn describe(side: &Side) -> &'static str {
///     match side {
///         Side::Caller(_) => "the original process",
///         Side::Daemon(_) => "the daemon",
///     }
/// }
/// ```
#[derive(Debug)]
#[must_use = "the caller and the daemon go on from here: match the side to tell them apart"]
pub enum Side {
    /// The original process, which should wait for the daemon's report.
    Caller(Pending),
    /// The daemon: a grandchild of the caller, in a session of its own.
    Daemon(Reporter),
}

/// The caller's end of the report pipe.
///
/// # Examples
///
/// See [the module documentation](self).
#[derive(Debug)]
#[must_use = "wait() says whether the daemon started; dropped, its outcome is lost"]
pub struct Pending {
    pipe: File,
    /// The daemon's session: the intermediate process's pid, which the kernel does not give to
    /// another process while a session or group of that id exists.
    session: Pid,
    /// The daemon, pinned and verified the moment its pid line came (or why it could not be),
    /// so that the ready timeout kills the daemon and never a process that got its pid since.
    daemon: Option<Result<Target, NotSignalled>>,
}

/// The daemon's end of the report pipe. Dropping it without reporting counts as a failure on the
/// caller's side ([`Error::DaemonVanished`]).
///
/// # Examples
///
/// See [the module documentation](self).
#[derive(Debug)]
pub struct Reporter {
    pipe: File,
}

/// Fork twice with a `setsid` between, as daemon(7) describes. Returns [`Side::Caller`] in the
/// calling process once the intermediate process has exited and been reaped (no zombie is left),
/// and [`Side::Daemon`] in the daemon.
///
/// Rust's buffered stdout and stderr, and C's stdio streams, are flushed first, so that nothing
/// buffered is written twice.
///
/// A fork copies only the calling thread, and any lock another thread held stays locked forever
/// in the child, so this refuses a process that runs other threads.
///
/// # Errors
///
/// [`Error::Threads`] when the process runs more than one thread, or cannot tell how many it
/// runs; [`Error::Fork`] when `fork` fails in the caller; [`Error::Sys`] when `pipe` fails; a
/// failure in the intermediate process (`setsid`, the second `fork`) arrives through
/// [`Pending::wait`].
///
/// # Platform-specific behavior
///
/// The threads are counted in `/proc/self/task` on Linux, with `proc_pidinfo(PROC_PIDTASKINFO)`
/// on macOS, in `kern.proc` (`ki_numthreads`) on FreeBSD and `kern.proc2` (`p_nlwps`) on NetBSD;
/// where that cannot be read (`/proc` not mounted), the fork is refused. macOS has no `pipe2`:
/// the report pipe is made close-on-exec right after `pipe`.
///
/// # Examples
///
/// See [the module documentation](self).
pub fn detach() -> Result<Side, Error> {
    // What the caller left buffered (a C library's too) would otherwise be written again by the
    // daemon.
    sys::flush_stdio();
    let (read, write) = sys::pipe(false).map_err(|e| Error::Sys {
        call: "pipe",
        source: e,
    })?;
    match fork()? {
        Forked::Parent(mut intermediate) => {
            drop(write);
            // The intermediate process exits right after its own fork; reaping it here is what
            // keeps the caller free of zombies.
            let _ = intermediate.wait();
            Ok(Side::Caller(Pending {
                pipe: File::from(read),
                session: intermediate.pid(),
                daemon: None,
            }))
        }
        Forked::Child(alone) => {
            drop(read);
            let mut reporter = Reporter {
                pipe: File::from(write),
            };
            // The intermediate process must not run the caller's exit handlers, and has nothing
            // of its own to flush: it writes only to the pipe.
            if let Err(e) = setsid() {
                reporter.fail(&Error::sys("setsid", e));
                sys::exit_unflushed(1);
            }
            // SAFETY: this, the intermediate process, spawns no thread: since its fork it has
            // only made a reporter and called setsid.
            match unsafe { fork_again(alone) } {
                Ok(Forked::Parent(_)) => sys::exit_unflushed(0),
                Ok(Forked::Child(_)) => {
                    // The daemon itself writes its pid, first: with one writer the pid line
                    // always comes before the final word (the intermediate process, which knows
                    // the pid too, could be scheduled after the daemon has reported).
                    let _ = reporter.pipe.write_all(&report::pid_line(Pid::this()));
                    Ok(Side::Daemon(reporter))
                }
                Err(e) => {
                    reporter.fail(&e);
                    sys::exit_unflushed(1)
                }
            }
        }
    }
}

impl Pending {
    /// Wait for the daemon's report, at most `timeout`. Returns the daemon's pid once it says it
    /// is ready, or the error it reported.
    ///
    /// # Errors
    ///
    /// The daemon's own error; [`Error::DaemonVanished`] if it exited without a word;
    /// [`Error::StartTimeout`] if it said nothing in time, in which case it is killed (a daemon
    /// that never got ready must not linger). The daemon is pinned the moment its pid line
    /// comes, and verified to be in the session that [`detach`] made: the kill goes to that
    /// process, never to one that got its pid after it died (a child it forked may keep the
    /// pipe open after it); `StartTimeout`'s `not_killed` says when nothing was killed, and why.
    ///
    /// # Examples
    ///
    /// See [the module documentation](self).
    pub fn wait(mut self, timeout: Duration) -> Result<Pid, Error> {
        let deadline = Deadline::after(timeout);
        let mut message = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let readable =
                sys::poll_readable(&[self.pipe.as_fd()], deadline).map_err(|e| Error::Sys {
                    call: "poll",
                    source: e,
                })?;
            if !readable[0] {
                let pid = report::parse(&message).0;
                let not_killed = match (pid, self.daemon.take()) {
                    (None, _) => None,
                    (Some(_), Some(Ok(daemon))) => kill_and_wait(&daemon),
                    (Some(_), Some(Err(why))) => Some(why),
                    (Some(pid), None) => Some(NotSignalled::Unverified {
                        reason: format!("pid {pid} was never pinned"),
                    }),
                };
                return Err(Error::StartTimeout {
                    after: timeout,
                    pid,
                    not_killed,
                });
            }
            match self.pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    message.extend_from_slice(&buf[..n]);
                    match report::parse(&message) {
                        // "Ready" is the last word: no need to wait for the pipe to close.
                        (Some(pid), Some(Ok(()))) => return Ok(pid),
                        (Some(pid), _) if self.daemon.is_none() => {
                            self.daemon = Some(pin_daemon(pid, self.session));
                        }
                        _ => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Sys {
                        call: "read",
                        source: e,
                    });
                }
            }
        }
        match report::parse(&message) {
            (Some(pid), Some(Ok(()))) => Ok(pid),
            (_, Some(Err(e))) => {
                // The daemon closes the pipe on its way out, not at its very end: a failed
                // start returns once it is gone, so that no process is left when `start()`
                // says why it failed (a daemon that reported a failure exits at once; a bounded
                // wait all the same).
                if let Some(Ok(daemon)) = &self.daemon {
                    let _ = daemon.exited(deadline.left().min(KILL_WAIT));
                }
                Err(e)
            }
            _ => Err(Error::DaemonVanished),
        }
    }
}

/// Pin `pid`, then verify that it is the daemon: a process of the session whose leader was the
/// intermediate process `session`. That session id cannot be another process's pid while the
/// daemon's session lasts, so a process that got the daemon's pid after it died is in another
/// session (unless the daemon's own descendants forked it, in the daemon's session).
fn pin_daemon(pid: Pid, session: Pid) -> Result<Target, NotSignalled> {
    Pinned::pin(pid)
        .and_then(|pinned| {
            pinned.verify(move |pid| match sys::session_of(pid) {
                Ok(sid) if sid == session => Ok(()),
                Ok(sid) => Err(format!(
                    "pid {pid} is in session {sid}, not in the daemon's session {session}"
                )),
                Err(e) => Err(format!("the session of pid {pid} cannot be read: {e}")),
            })
        })
        .map_err(Refused::into_not_signalled)
}

/// SIGKILL `daemon` and wait (at most [`KILL_WAIT`]) until it is gone; why not, if it was not
/// killed.
fn kill_and_wait(daemon: &Target) -> Option<NotSignalled> {
    match daemon.signal(Signal::SIGKILL) {
        Ok(()) => {
            let _ = daemon.exited(KILL_WAIT);
            None
        }
        Err(refused) => Some(refused.into_not_signalled()),
    }
}

impl Reporter {
    /// A reporter over `pipe` for a process whose parent reads it (a supervised daemon's body),
    /// opened with this process's pid line, as [`detach`] opens it.
    pub(crate) fn to_parent(pipe: File) -> Reporter {
        let mut reporter = Reporter { pipe };
        let _ = reporter.pipe.write_all(&report::pid_line(Pid::this()));
        reporter
    }

    /// Another handle on the same pipe, to say later why the process ended.
    pub(crate) fn try_clone(&self) -> io::Result<File> {
        self.pipe.try_clone()
    }

    /// Tell the caller that the daemon is ready. Its `start()` returns `Ok(pid)`.
    ///
    /// # Examples
    ///
    /// See [the module documentation](self).
    pub fn ready(mut self) {
        let _ = self.pipe.write_all(&[report::READY]);
    }

    /// Tell the caller that the daemon failed to start, and why. Its `start()` returns this error.
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// # use daemons::detach::{detach, Side};
    /// # use std::time::Duration;
    /// match detach()? {
    ///     Side::Caller(pending) => {
    ///         let err = pending.wait(Duration::from_secs(10)).unwrap_err();
    ///         assert!(matches!(err, daemons::Error::MissingDirectory { .. }));
    ///     }
    ///     Side::Daemon(mut reporter) => {
    ///         let missing = std::io::Error::from_raw_os_error(libc::ENOENT);
    ///         reporter.fail(&daemons::Error::MissingDirectory {
    ///             path: "/nope/x.pid".into(),
    ///             action: daemons::Action::OpenPidfile,
    ///             source: missing,
    ///         });
    ///         std::process::exit(1);
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fail(&mut self, error: &Error) {
        let _ = self.pipe.write_all(&report::failure(error));
    }
}

/// Point stdin at `/dev/null`, and stdout and stderr at `/dev/null` or at the given files,
/// opened for appending (created with mode 0644 less the umask). Either all three are redirected
/// or, on error, none is.
///
/// A log file is never opened through a symbolic link, and a FIFO without a reader is an error
/// rather than a wait. As root, every directory from `/` to the file's must belong to root and be
/// writable by root only (or be sticky, as `/tmp` is), and the file itself must be root's, with
/// no other hard link: otherwise another user could make root append to a file of their choice.
///
/// # Errors
///
/// [`Error::MissingDirectory`], [`Error::Symlink`], [`Error::NotAFile`] or [`Error::Io`] naming
/// the log file that could not be opened; as root, [`Error::UnsafeDirectory`] naming the
/// directory that another user could change, or [`Error::UnsafeFile`].
///
/// # Examples
///
/// ```rust,standalone_crate
/// # // Changes this process's stdio, so it runs as a process of its own.
/// let dir = tempfile::tempdir()?;
/// let log = dir.path().join("out.log");
/// daemons::detach::redirect_stdio(Some(&log), None)?;
/// println!("hello");
/// # std::io::Write::flush(&mut std::io::stdout())?;
/// assert_eq!(std::fs::read_to_string(&log)?, "hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn redirect_stdio(stdout: Option<&Path>, stderr: Option<&Path>) -> Result<(), Error> {
    open_stdio(stdout, stderr, Trusted::default())?.redirect()
}

/// A daemon's log files (`None` is `/dev/null`), and who besides root may own them and their
/// directories: the daemon's own user.
#[derive(Debug, Clone, Default)]
pub(crate) struct Logs {
    pub(crate) stdout: Option<PathBuf>,
    pub(crate) stderr: Option<PathBuf>,
    pub(crate) trusted: Trusted,
}

impl Logs {
    /// Whether both go to `/dev/null`.
    pub(crate) fn is_none(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    /// Open the three, through the path gate.
    pub(crate) fn open(&self) -> Result<Stdio, Error> {
        open_stdio(self.stdout.as_deref(), self.stderr.as_deref(), self.trusted)
    }

    /// Open the log files again and point stdout and stderr at them: a rotated log is let go of.
    pub(crate) fn reopen(&self) -> Result<(), Error> {
        self.open()?.redirect()
    }
}

/// stdin, stdout and stderr, open, before they take descriptors 0, 1 and 2.
pub(crate) struct Stdio {
    /// `/dev/null`, open for reading and writing, as daemon(3) opens it: stdin, and stdout or
    /// stderr where no log file is given. One open serves all three.
    null: File,
    out: Option<File>,
    err: Option<File>,
}

impl Stdio {
    pub(crate) fn stdout(&self) -> &File {
        self.out.as_ref().unwrap_or(&self.null)
    }

    pub(crate) fn stderr(&self) -> &File {
        self.err.as_ref().unwrap_or(&self.null)
    }

    /// Make them descriptors 0, 1 and 2.
    pub(crate) fn redirect(self) -> Result<(), Error> {
        dup2_stdout(self.stdout()).map_err(|e| Error::sys("dup2", e))?;
        dup2_stderr(self.stderr()).map_err(|e| Error::sys("dup2", e))?;
        dup2_stdin(self.null).map_err(|e| Error::sys("dup2", e))?;
        Ok(())
    }
}

fn open_stdio(
    stdout: Option<&Path>,
    stderr: Option<&Path>,
    trusted: Trusted,
) -> Result<Stdio, Error> {
    let open = |path: Option<&Path>| path.map(|p| gate::path::open_log(p, trusted)).transpose();
    Ok(Stdio {
        null: gate::path::open_null()?,
        out: open(stdout)?,
        err: open(stderr)?,
    })
}

/// Close every descriptor above 2 that this process inherited through `exec`, except `keep`.
///
/// Inherited descriptors are the ones without close-on-exec: Rust opens everything with it, so
/// files, sockets and pipes that this process opened itself (and that a body may have captured)
/// stay open, while a descriptor leaked by whoever started the program (a terminal, a socket
/// held by a shell, another daemon's lock) is closed. The open descriptors are listed by the
/// kernel instead of looping to the descriptor limit, which can be in the millions.
///
/// # Safety
///
/// No descriptor above 2 that lacks close-on-exec, other than those in `keep`, may be owned by
/// anything in this process: a `File`, a socket or an `OwnedFd` of such a descriptor would be
/// closed under its owner, which would then use or close a number that may by then be another
/// file's. std opens everything with close-on-exec, so this holds unless the program cleared
/// the flag itself, or adopted an inherited descriptor (`OwnedFd::from_raw_fd` on a socket that a
/// service manager passed) without setting it: name such a descriptor in `keep`, or set its
/// close-on-exec flag first (as the crate does with the sockets that systemd passes).
///
/// # Errors
///
/// [`Error::Io`] when the list of open descriptors cannot be read.
///
/// # Platform-specific behavior
///
/// The list is `/proc/self/fd` on Linux, `/dev/fd` on macOS (and on Linux built with
/// `--cfg daemons_portable`), and the kernel's own on FreeBSD (`kern.proc.filedesc`) and NetBSD
/// (`kern.file2`), where `/dev/fd` shows only 0, 1 and 2 unless fdescfs is mounted.
/// `closefrom` is not used: it would close the descriptors that the program opened itself.
///
/// # Examples
///
/// ```rust,standalone_crate
/// let file = std::fs::File::open("/dev/null")?;           // close-on-exec, like all of std's
/// // SAFETY: this program owns no descriptor without close-on-exec.
/// unsafe { daemons::detach::close_inherited_fds(&[]) }?;
/// assert!(nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFD).is_ok()); // still open
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Closing descriptors that something else may own takes an `unsafe` block:
///
/// ```compile_fail,E0133
/// daemons::detach::close_inherited_fds(&[]).unwrap();
/// ```
pub unsafe fn close_inherited_fds(keep: &[RawFd]) -> Result<(), Error> {
    // SAFETY: the caller guarantees that nothing owns the descriptors that lack close-on-exec,
    // but those in `keep`.
    unsafe { close_listed_fds(&inherited_fds()?, keep) };
    Ok(())
}

/// The descriptors above 2 that lack close-on-exec, which [`close_inherited_fds`] would close.
///
/// The caller of `start()` lists them before it forks: the daemon inherits exactly these, and
/// its own first look into `/proc/self` would cost far more than the caller's (a new process's
/// entries there are built on first use).
pub(crate) fn inherited_fds() -> Result<Vec<RawFd>, Error> {
    let fds = sys::open_fds()
        .map_err(|e| Error::io(Action::CloseInherited, Path::new(sys::OPEN_FDS_DIR), e))?;
    Ok(fds
        .into_iter()
        .filter(|&fd| fd > 2 && !sys::is_cloexec(fd))
        .collect())
}

/// Close those of `fds` that still lack close-on-exec, except `keep`.
///
/// # Safety
///
/// As [`close_inherited_fds`]: nothing in this process owns a descriptor of `fds` that lacks
/// close-on-exec and is not in `keep`.
pub(crate) unsafe fn close_listed_fds(fds: &[RawFd], keep: &[RawFd]) {
    for &fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: the caller guarantees that nothing owns it if it lacks close-on-exec.
            unsafe { sys::close_unowned(fd) };
        }
    }
}

/// Clear the signal mask and set every signal's disposition to its default, except that SIGPIPE
/// stays ignored (Rust's runtime ignores it at start-up and its I/O code relies on that) and that
/// the signals in `keep` keep a handler this process installed itself.
///
/// A disposition of "ignored" survives `exec`: `nohup` leaves SIGHUP ignored, a shell may leave
/// SIGINT ignored, and a daemon started from them would not react to them.
///
/// # Errors
///
/// [`Error::Sys`] when `sigprocmask` fails.
///
/// # Examples
///
/// ```rust,standalone_crate
/// use nix::sys::signal::{signal, SigHandler, Signal};
///
/// // SAFETY: installing SIG_IGN runs no code in signal context.
/// unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) }?;     // as nohup does
/// daemons::detach::reset_signals(&[])?;
/// // SAFETY: as above.
/// let previous = unsafe { signal(Signal::SIGHUP, SigHandler::SigDfl) }?;
/// assert!(matches!(previous, SigHandler::SigDfl));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn reset_signals(keep: &[Signal]) -> Result<(), Error> {
    sys::unblock_all().map_err(|source| Error::Sys {
        call: "sigprocmask",
        source,
    })?;
    sys::reset_dispositions(keep);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_refuses_a_process_with_threads() {
        // A thread of our own, alive during the call, so that the process has two threads even
        // when the harness runs tests on its main thread: this must never fork.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || wait.recv());
        let result = detach();
        drop(done);
        let _ = other.join();
        let Err(
            e @ Error::Threads {
                count: Some(count),
                test_harness: true,
            },
        ) = result
        else {
            panic!("refused as a test harness: {result:?}");
        };
        assert!(count >= 2);
        let message = e.to_string();
        assert!(
            message.contains("test harness") && message.contains("guide#testing-a-daemon"),
            "the message points a test at the guide: {message}"
        );
    }
}
