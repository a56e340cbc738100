//! Turn closures into well-behaved Unix daemons.
//!
//! ```rust,standalone_crate
//! use daemons::{Daemon, Signal::SIGHUP};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let daemon = Daemon::builder()
//!     .pidfile(dir.path().join("counter.pid"))
//!     .stdout(dir.path().join("counter.log"))
//!     .on(SIGHUP, || println!("reloading"))
//!     .step(|| println!("tick"))
//!     .interval(Duration::from_millis(50))
//!     .build()?;
//!
//! let pid = daemon.start()?;       // back here once the daemon runs
//! daemon.send(SIGHUP)?;
//! let stopped = daemon.stop()?;    // graceful: the step under way finishes
//! assert_eq!(stopped.pid(), Some(pid));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Anatomy
//!
//! - [`Daemon`] and its [`DaemonBuilder`]: the settings, one body, the signal handlers, and the
//!   operations `start`, `stop`, `restart`, `status`, `pid`, `send` and `run` (foreground).
//! - [`pidfile`]: the pidfile as a lock held for the daemon's life. A pidfile that nobody holds
//!   is stale, whatever pid it names, so a reused pid is never signalled.
//! - [`detach`]: the daemon(7) double fork, with the daemon's outcome sent back to the caller.
//! - [`control`]: stopping and signalling from outside, through a pidfd checked against the lock.
//!
//! # Traps
//!
//! - `start()` forks. It refuses to run in a process that already has other threads (a fork
//!   copies only the calling one): start the daemon first, and create threads and async
//!   runtimes inside the body.
//! - Signals coalesce: ten thousand SIGHUPs sent in a burst may run the handler only a few
//!   times. A handler learns that the signal came, not how often.
//! - Handlers of the stop signals (SIGTERM, SIGINT, SIGQUIT) run once, at shutdown, after the
//!   body has finished; other handlers run on a control thread while the body runs.
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod body;
mod builder;
pub mod cli;
pub mod control;
mod daemon;
pub mod detach;
mod error;
pub mod guide;
pub mod notify;
pub mod pidfile;
mod pool;
mod privileges;
mod signals;

pub use body::{Ctl, Outcome};
pub use builder::DaemonBuilder;
pub use control::Stopped;
pub use daemon::{Daemon, Status};
pub use error::Error;
pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;
pub use pidfile::{Pidfile, PidfileLock};
pub use pool::Fetch;
pub use privileges::Account;

// The README's examples are compiled and run with the other doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
