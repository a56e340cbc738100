//! Turn closures into well-behaved Unix daemons.
//!
//! A whole program, as it would stand in `src/main.rs` (it needs nothing but this crate):
//!
//! ```rust,standalone_crate
//! use daemons::{Daemon, Signal::SIGHUP};
//! use std::time::Duration;
//!
//! fn main() -> Result<(), daemons::Error> {
//!     let dir = std::env::temp_dir();
//!     let daemon = Daemon::builder()
//!         .pidfile(dir.join("daemons-hello.pid"))
//!         .stdout(dir.join("daemons-hello.log"))
//!         .on(SIGHUP, || println!("reloading"))
//!         .step(|| println!("tick"))
//!         .interval(Duration::from_millis(50))
//!         .build()?;
//!
//!     let pid = daemon.start()?; // back here once the daemon runs
//!     daemon.send(SIGHUP)?;
//!     let stopped = daemon.stop()?; // graceful: the step under way finishes
//!     assert_eq!(stopped.pid(), Some(pid));
//!     Ok(())
//! }
//! ```
//!
//! End the builder with [`.cli()`](DaemonBuilder::cli) instead of `.build()?` and `main` is an
//! init script: `hello start`, `stop`, `restart`, `reload`, `status`, `run`.
//!
//! # Anatomy
//!
//! - [`Daemon`] and its [`DaemonBuilder`]: the settings, one body, the signal handlers, and the
//!   operations `start`, `stop`, `restart`, `status`, `pid`, `send` and `run` (foreground);
//!   [`cli`]: the init-script command line in one call, with the LSB exit codes.
//! - The bodies: `run(|ctl| ...)` loops by itself, `step(|| ...)` is called in a loop,
//!   `wrap(f)` runs a function that knows nothing of the daemon (a stop abandons it, as the
//!   Python original's `daemonizer` did; [`wrap()`] and [`step()`] do it in one line), and
//!   `messages(get, handle)` handles messages on a worker pool. [`Ctl`] is the body's view of
//!   the daemon; [`Outcome`] and [`Fetch`] are what the closures may return.
//! - Around the body: `setup(f)` runs in the daemon before it is ready; `listen(addr)` gives it
//!   listening sockets, bound before ready or passed by systemd, handed to the next instance at
//!   a restart so that no connection is refused; `supervise(`[`Supervision`]`)` supervises it, started
//!   again after a crash with a backoff and a limit.
//!   With the `tokio` feature, `run_async` and `messages_async` run async bodies on a runtime
//!   built inside the daemon; [`Ctl::stopped`] (a [`StopFuture`]) is the stop for any executor,
//!   feature or not (see [async bodies](guide#async)).
//! - The parts, usable on their own: [`pidfile`] (the pidfile as a lock held for the daemon's
//!   life: a pidfile that nobody holds is stale, whatever pid it names, so a reused pid is never
//!   signalled), [`detach`] (the daemon(7) double fork, with the daemon's outcome sent back to
//!   the caller), [`control`] (stopping and signalling from outside, through a pidfd checked
//!   against the lock, or a kqueue on macOS and the BSDs) and [`systemd`] (the service manager's notifications).
//! - [`guide`]: the guarantees, the signal rules, readiness, systemd and containers, logs and
//!   logrotate, privileges, and how to test a daemon.
//!
//! # Traps
//!
//! - `start()` forks. It refuses to run in a process that already has other threads (a fork
//!   copies only the calling one): start the daemon first, and create threads and async
//!   runtimes inside the body. A `#[test]` runs in such a process: see
//!   [how to test a daemon](guide#testing-a-daemon).
//! - Signals coalesce: ten thousand SIGHUPs sent in a burst may run the handler only a few
//!   times. A handler learns that the signal came, not how often.
//! - Handlers of the stop signals (SIGTERM, SIGINT, SIGQUIT) run once, at shutdown, after the
//!   body has finished, and only that signal's; other handlers run on a signal thread while the
//!   body runs. Cleanup for every end goes in `on_stop`.
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Every public builder method and query says when its result is dropped.
#![deny(clippy::must_use_candidate)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
// The calls that only a gate may make (clippy.toml); the gate's own file allows them.
#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

// The caller's side: the handle, its builder, the command line.
mod handle;
pub use handle::cli;

// Inside the daemon: the engine, the bodies it runs, and what they see.
mod engine;

// Below both: the settings that the handle collects and the engine reads.
mod settings;

// Parts that only the daemon uses: its listening sockets and their handover, its privileges.
mod listen;
use listen::handover;
mod privileges;

// The parts, usable on their own.
pub mod control;
pub mod detach;
pub mod pidfile;
pub mod systemd;

// The guide: guarantees, signals, systemd, logs, testing.
pub mod guide;

// Underneath: the names of signals and processes, then the errors.
mod error;
mod gate;
mod pid;
mod signal;
use error::report;
mod sync;
mod sys;

pub use control::Stopped;
pub use engine::{Ctl, Fetch, Outcome, StopFuture};
pub use error::{Action, Error, HandoverKind, NotSignalled};
pub use handle::{Daemon, DaemonBuilder, Health, Restarted, step, wrap};
pub use pid::Pid;
pub use pidfile::{Pidfile, PidfileLock, Status};
pub use settings::{Account, Supervision};
pub use signal::{Signal, UnknownSignal, UnknownSignalName};

// The README's examples are compiled and run with the other doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
