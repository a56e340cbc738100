//! The settings that both the caller's side and the engine read: every plain setting of a daemon
//! with its default, collected by a derived builder that stays inside the crate (the public
//! [`DaemonBuilder`](crate::DaemonBuilder) wraps it, and checks the values), the addresses it
//! listens on, the accounts it runs as, and its supervision policy. Nothing here imports the
//! engine or the handle.

mod account;
mod address;
mod supervision;

pub use account::Account;
pub(crate) use address::Address;
pub use supervision::Restart;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use derive_builder::Builder;

#[derive(Builder, Debug, Clone)]
#[builder(
    name = "SettingsBuilder",
    vis = "pub(crate)",
    pattern = "owned",
    build_fn(error = "derive_builder::UninitializedFieldError"),
    derive(Debug)
)]
pub(crate) struct Settings {
    pub(crate) pidfile: PathBuf,
    #[builder(default = "PathBuf::from(\"/\")")]
    pub(crate) workdir: PathBuf,
    #[builder(default = "0o022")]
    pub(crate) umask: u32,
    #[builder(setter(strip_option), default)]
    pub(crate) stdout: Option<PathBuf>,
    #[builder(setter(strip_option), default)]
    pub(crate) stderr: Option<PathBuf>,
    #[builder(default = "Duration::from_secs(10)")]
    pub(crate) stop_timeout: Duration,
    #[builder(default = "Duration::from_secs(30)")]
    pub(crate) ready_timeout: Duration,
    #[builder(setter(strip_option), default)]
    pub(crate) interval: Option<Duration>,
    #[builder(default)]
    pub(crate) keep_going: bool,
    #[builder(setter(strip_option), default)]
    pub(crate) name: Option<String>,
    #[builder(setter(strip_option), default)]
    pub(crate) pool_size: Option<usize>,
    #[builder(setter(strip_option), default)]
    pub(crate) idle_time: Option<Duration>,
    #[builder(setter(strip_option), default)]
    pub(crate) user: Option<Account>,
    #[builder(setter(strip_option), default)]
    pub(crate) group: Option<Account>,
    #[builder(default)]
    pub(crate) keep_fds: Vec<RawFd>,
    #[builder(default)]
    pub(crate) manual_ready: bool,
    #[builder(default)]
    pub(crate) stop_children: bool,
    #[builder(setter(strip_option), default)]
    pub(crate) grace: Option<Duration>,
    #[builder(setter(strip_option), default)]
    pub(crate) restart: Option<Restart>,
    /// Filled by the public builder, which collects them one `listen` call at a time.
    #[builder(setter(skip), default)]
    pub(crate) listen: Vec<Address>,
}

/// The Python original's defaults, kept.
pub(crate) const DEFAULT_POOL_SIZE: usize = 100;
pub(crate) const DEFAULT_IDLE_TIME: Duration = Duration::from_millis(100);
