//! How the engine runs: in which process, and what that process is to the daemon.

use crate::sys;

/// How the engine runs, decided once where it starts: what it may change in its process, whose
/// files its stdio is, and how it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) enum Role {
    /// After `start()`'s double fork: a process of its own, its stdio on the log files.
    Detached,
    /// `run()`: in the caller's process, which goes on after it; nothing is forked, redirected
    /// or reset.
    Foreground,
    /// The body's process, forked by a supervisor (a restart policy): a process of its own, with
    /// the supervisor's stdio.
    SupervisedChild {
        /// Whether the supervisor is detached, its stdio (and so the child's) the log files.
        detached: bool,
    },
}

impl Role {
    /// Whether the process is the daemon's own: it resets what it inherited, keeps nothing for
    /// a caller that goes on, and leaves with `_exit`.
    pub(in crate::engine) fn owns_process(self) -> bool {
        !matches!(self, Role::Foreground)
    }

    /// Whether stdout and stderr are the daemon's log files, reopened at a SIGHUP so that a
    /// rotated log is let go of.
    pub(in crate::engine) fn has_log_files(self) -> bool {
        matches!(
            self,
            Role::Detached | Role::SupervisedChild { detached: true }
        )
    }

    /// The role of the body's process under a supervisor that runs in this role.
    pub(in crate::engine) fn child(self) -> Role {
        Role::SupervisedChild {
            detached: self == Role::Detached,
        }
    }

    /// Leave the process with `code`, never returning into the caller's code. A process of the
    /// daemon's own is a copy of the caller: it leaves with `_exit`, as the middle process of the
    /// double fork does, since the exit handlers of this copy are the caller's, and running them
    /// (libc's and the loader's among them) copies a page at each write, ~20 µs of every stop.
    /// Only the buffers need flushing, and what they hold is the daemon's own: `detach` flushed
    /// the caller's. In the foreground the process is the caller's own: it leaves as `exit`
    /// does.
    pub(in crate::engine) fn leave(self, code: i32) -> ! {
        if self.owns_process() {
            sys::exit(code)
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(code)
    }
}
