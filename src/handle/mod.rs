//! The caller's side: the handle ([`Daemon`]) in `daemon.rs` and `restart.rs`, its builder
//! (the setters in `builder.rs`, the bodies in `bodies.rs`, the checks in `build.rs`), and the
//! command line. Nothing in the engine imports it.

mod bodies;
mod build;
mod builder;
pub mod cli;
mod daemon;
mod restart;

pub use bodies::{step, wrap};
pub use builder::DaemonBuilder;
pub use daemon::{Daemon, Health};
pub use restart::Restarted;
