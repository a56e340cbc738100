//! The caller's side: the handle ([`Daemon`]), its builder, and the command line.

pub(crate) mod builder;
pub mod cli;
pub(crate) mod daemon;

pub use builder::{DaemonBuilder, step, wrap};
pub use daemon::{Daemon, Restarted};
