//! What each error says: the one rendering of each variant.

use std::fmt;
use std::io;
use std::time::Duration;

use super::{Error, HandoverKind, NotSignalled};

/// A duration in seconds with one decimal (`2.5`), to the nearest tenth: how the messages say a
/// duration. Written with integers: formatting an `f64` would bring 17 KiB of code into every
/// program, for a digit after the point.
pub(crate) struct Tenths(pub(crate) Duration);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0.as_nanos() + 50_000_000) / 100_000_000;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// `0.6 ms`, `3 ms`, `250 ms`, `10 s`, `2.5 s`: how people say durations.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1 {
        // Under a millisecond, a thousand times as long in seconds reads the same.
        format!("{} ms", Tenths(d * 1000))
    } else if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        let text = Tenths(d).to_string();
        format!("{} s", text.trim_end_matches(".0"))
    }
}

/// What to do about a system error, where its errno says.
fn hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (run as a user that may write there, or choose another path)"
        }
        Some(libc::EROFS) => " (the file system is read-only: choose a path on a writable one)",
        Some(libc::ENOSPC) => " (the disk is full: free some space)",
        Some(libc::EMFILE) => {
            " (this process has as many descriptors open as its limit allows: raise the limit, `ulimit -n`)"
        }
        Some(libc::ENFILE) => " (the system has as many files open as it allows: close some)",
        _ => "",
    }
}

impl fmt::Display for Error {
    /// The message, which names the path, pid or signal and says what to do, without the
    /// source (which [`source`](std::error::Error::source) returns, for `anyhow` and `eyre` to
    /// print once); with `{:#}`, the sources follow, each after a colon.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message(f)?;
        if f.alternate() {
            let mut source = std::error::Error::source(self);
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
        }
        Ok(())
    }
}

impl Error {
    /// The message alone.
    fn message(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoBody => write!(
                f,
                "the daemon has no body: give the builder one of .run(|ctl| ...), .step(|| ...) or .messages(get, handle)"
            ),
            Error::SeveralBodies => write!(
                f,
                "the daemon has more than one body: give the builder only one of .run, .step or .messages"
            ),
            Error::ForbiddenSignal { signal } => write!(
                f,
                "{signal} cannot be handled: the kernel does not let a process catch it (or catching it hides a crash); register handlers for other signals"
            ),
            Error::InvalidSetting { setting, reason } => write!(f, ".{setting}(): {reason}"),
            Error::Threads {
                count,
                test_harness,
            } => {
                match count {
                    Some(count) => write!(
                        f,
                        "cannot fork: this process runs {count} threads, and fork copies only one of them; start() and a supervised run() fork: call them before spawning threads or building a runtime, and create those inside the body"
                    )?,
                    None => write!(
                        f,
                        "cannot fork: this process cannot tell how many threads it runs (on Linux, /proc/self/task cannot be read: mount /proc), and fork is only safe with one"
                    )?,
                }
                if *test_harness {
                    write!(
                        f,
                        "; this is a test harness, whose tests run among its threads: start the daemon from a program of its own (an example or a binary the test runs), or from a doc-test, which runs as a process of its own (see the guide's section \"Testing a daemon\", daemons::guide#testing-a-daemon)"
                    )?;
                }
                Ok(())
            }
            Error::Fork { source } => {
                write!(f, "fork failed")?;
                if source.raw_os_error() == Some(libc::EAGAIN) {
                    write!(
                        f,
                        " (the user's process limit, `ulimit -u`, is reached, or the system has no more processes to give: end some, or raise the limit)"
                    )?;
                }
                Ok(())
            }
            Error::InsideRuntime => write!(
                f,
                "start() was called from inside a tokio runtime; fork copies only the calling thread, and the runtime's workers, driver and locks would be left broken in the daemon: call start() before building the runtime (not under #[tokio::main]), and run async code inside the daemon with .run_async() or .messages_async()"
            ),
            Error::AlreadyRunning { pidfile, pid } => match pid {
                Some(pid) => write!(
                    f,
                    "already running (pid {pid}, pidfile {}): stop it first, or use restart",
                    pidfile.display()
                ),
                None => write!(
                    f,
                    "already running or starting (pidfile {} is locked): stop it first, or use restart",
                    pidfile.display()
                ),
            },
            Error::Unverified {
                pidfile,
                named,
                holder,
                command,
            } => {
                let named =
                    named.map_or("names no pid".to_string(), |pid| format!("names pid {pid}"));
                match holder {
                    Some(holder) => {
                        let command = command
                            .as_deref()
                            .map_or(String::new(), |c| format!(" ({c})"));
                        write!(
                            f,
                            "pidfile {} is locked by pid {holder}{command}, which is not the daemon (the file {named}): its state is unknown and nothing was signalled; if pid {holder} should not hold the lock, end it, then try again",
                            pidfile.display()
                        )
                    }
                    None => write!(
                        f,
                        "pidfile {} is locked, but by no process that can be seen from here (the file {named}): its state is unknown and nothing was signalled; look for the holder with `fuser {}` as root",
                        pidfile.display(),
                        pidfile.display()
                    ),
                }
            }
            Error::ForeignProc { pidfile, reason } => write!(
                f,
                "cannot tell who holds pidfile {}: {reason}; nothing was signalled (run this in the pid namespace that /proc shows, or mount a /proc of this one, as `unshare --mount-proc` does)",
                pidfile.display()
            ),
            Error::NotRunning { pidfile } => write!(
                f,
                "not running (no process holds pidfile {}): start it first",
                pidfile.display()
            ),
            Error::OtherProgram {
                pidfile,
                pid,
                program,
            } => write!(
                f,
                "pidfile {} is held by pid {pid}, which runs {}, another program than this one: nothing was signalled (give each program a pidfile of its own; stop that one with its own command)",
                pidfile.display(),
                program.display()
            ),
            Error::NotPermitted { pidfile, pid, user } => write!(
                f,
                "not permitted to signal pid {pid} (pidfile {}), which user {user} started: run this as {user} (`sudo -u {user} ...`)",
                pidfile.display()
            ),
            Error::MissingDirectory { path, action, .. } => write!(
                f,
                "cannot {action} {}: the directory does not exist (create it first, or choose another path)",
                path.display()
            ),
            Error::Symlink { path, action, .. } => write!(
                f,
                "cannot {action} {}: it is a symbolic link, which is refused (remove the link, or give the real path)",
                path.display()
            ),
            Error::NotAFile { path, action, .. } => write!(
                f,
                "cannot {action} {}: not a regular file (give the path of a regular file)",
                path.display()
            ),
            Error::Untrusted { path, reason } => write!(
                f,
                "{}: refusing to trust this pidfile as root: {reason} (if a daemon holds it, stop that daemon as the user it runs as; if no process holds it, as `fuser {}` shows, remove it; then start again as root)",
                path.display(),
                path.display()
            ),
            Error::UnsafeDirectory {
                path,
                directory,
                action,
                reason,
            } => write!(
                f,
                "cannot {action} {} as root: {} {reason}",
                path.display(),
                directory.display()
            ),
            Error::UnsafeFile {
                path,
                action,
                reason,
            } => write!(f, "cannot {action} {} as root: {reason}", path.display()),
            Error::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}{}", path.display(), hint(source)),
            Error::Sys { call, source } => write!(f, "{call} failed{}", hint(source)),
            Error::Listen { address, source } => {
                write!(f, "cannot listen on {address}")?;
                if source.kind() == io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        " (another process listens there: stop it, or choose another address)"
                    )?;
                }
                Ok(())
            }
            Error::Privileges { reason } => write!(
                f,
                "cannot drop privileges: {reason} (start the daemon as root, or leave out .user() and .group())"
            ),
            Error::StartTimeout {
                after,
                pid,
                not_killed,
            } => {
                write!(f, "the daemon did not report ready within {after:?}")?;
                match (pid, not_killed) {
                    (Some(pid), None) => write!(f, " and was killed (pid {pid})")?,
                    (Some(pid), Some(NotSignalled::Exited)) => {
                        write!(f, "; it had exited already (pid {pid}): nothing to kill")?
                    }
                    (Some(pid), Some(why)) => write!(
                        f,
                        "; pid {pid} was not killed: {why} (if it is still the daemon, end it yourself)"
                    )?,
                    (None, _) => {}
                }
                write!(
                    f,
                    "; raise .ready_timeout() or look at its stderr log for the cause"
                )
            }
            Error::DaemonVanished => write!(
                f,
                "the daemon exited during start-up without reporting; look at its stderr log for the cause"
            ),
            Error::StillAlive { pid } => write!(
                f,
                "pid {pid} is still alive after SIGTERM and SIGKILL (stuck in the kernel?); look at /proc/{pid}/stack"
            ),
            Error::Body { .. } => write!(f, "the daemon's body failed"),
            Error::Setup { .. } => write!(f, "the daemon's set-up failed"),
            Error::ReturnedBeforeReady => write!(
                f,
                "the body returned before it called ctl.ready(): call it once the daemon can serve, or leave out .manual_ready(true)"
            ),
            Error::StopHandler { .. } => write!(f, "a stop handler failed"),
            Error::Handover {
                pidfile,
                kind,
                reason,
            } => {
                write!(
                    f,
                    "cannot hand the listening sockets of the daemon of pidfile {} over: {reason}",
                    pidfile.display()
                )?;
                match kind {
                    HandoverKind::Busy => {
                        write!(
                            f,
                            " (another restart is under way: try again once it is done)"
                        )
                    }
                    HandoverKind::Refused => {
                        write!(f, " (restart it as root, or as the user that started it)")
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_micros(600)), "0.6 ms");
        assert_eq!(human(Duration::from_micros(2500)), "2 ms");
        assert_eq!(human(Duration::from_millis(999)), "999 ms");
        assert_eq!(human(Duration::from_secs(10)), "10 s");
        assert_eq!(human(Duration::from_millis(10_020)), "10 s");
        assert_eq!(human(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(human(Duration::from_micros(999_960)), "999 ms");
        assert_eq!(human(Duration::from_nanos(960)), "0.0 ms");
        assert_eq!(human(Duration::from_nanos(50_000)), "0.1 ms");
        let tenths = |ms| Tenths(Duration::from_millis(ms)).to_string();
        assert_eq!(tenths(0), "0.0");
        assert_eq!(tenths(49), "0.0");
        assert_eq!(tenths(50), "0.1");
        assert_eq!(tenths(1_500), "1.5");
        assert_eq!(tenths(59_960), "60.0");
        assert_eq!(tenths(3_600_000), "3600.0");
    }
}
