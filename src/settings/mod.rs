//! The settings that both the caller's side and the engine read: every plain setting of a daemon
//! with its default, collected by a derived builder that stays inside the crate (the public
//! [`DaemonBuilder`](crate::DaemonBuilder) wraps it, and checks the values), the addresses it
//! listens on, the accounts it runs as, and its supervision policy. Nothing here imports the
//! engine or the handle.

mod account;
mod address;
mod supervision;

pub use account::Account;
pub(crate) use address::{Address, Listen};
pub use supervision::Supervision;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use derive_builder::Builder;

/// Every plain setting, with its default here and nowhere else; the pidfile has none, and a
/// build without it says it is required.
#[derive(Builder, Debug, Clone)]
#[builder(
    name = "SettingsBuilder",
    vis = "pub(crate)",
    pattern = "owned",
    build_fn(error = "derive_builder::UninitializedFieldError"),
    derive(Debug)
)]
pub(crate) struct Settings {
    #[builder(setter(into))]
    pub(crate) pidfile: PathBuf,
    #[builder(setter(into), default = "PathBuf::from(\"/\")")]
    pub(crate) workdir: PathBuf,
    #[builder(default = "0o022")]
    pub(crate) umask: u32,
    /// `None`: `/dev/null`.
    #[builder(setter(into, strip_option), default)]
    pub(crate) stdout: Option<PathBuf>,
    #[builder(setter(into, strip_option), default)]
    pub(crate) stderr: Option<PathBuf>,
    #[builder(default = "Duration::from_secs(10)")]
    pub(crate) stop_timeout: Duration,
    #[builder(default = "Duration::from_secs(30)")]
    pub(crate) ready_timeout: Duration,
    /// The pause between two steps of a step body.
    #[builder(default)]
    pub(crate) interval: Duration,
    /// Whether a failed step is only logged.
    #[builder(default)]
    pub(crate) keep_going: bool,
    /// `None`: the file name of `argv[0]`, else of the executable.
    #[builder(setter(into, strip_option), default)]
    pub(crate) name: Option<String>,
    /// The Python original's default, kept.
    #[builder(default = "100")]
    pub(crate) pool_size: usize,
    /// The Python original's default, kept.
    #[builder(default = "Duration::from_millis(100)")]
    pub(crate) idle_time: Duration,
    #[builder(setter(into, strip_option), default)]
    pub(crate) user: Option<Account>,
    #[builder(setter(into, strip_option), default)]
    pub(crate) group: Option<Account>,
    #[builder(default)]
    pub(crate) keep_fds: Vec<RawFd>,
    #[builder(default)]
    pub(crate) manual_ready: bool,
    #[builder(default)]
    pub(crate) stop_children: bool,
    /// `None`: half the stop timeout.
    #[builder(setter(strip_option), default)]
    pub(crate) grace: Option<Duration>,
    #[builder(setter(strip_option), default)]
    pub(crate) supervision: Option<Supervision>,
    /// How long the body's loop may go without a sign of life before `health` says it is not
    /// well.
    #[builder(default = "Duration::from_secs(30)")]
    pub(crate) health_period: Duration,
    /// The readiness descriptor of s6 or dinit, when the builder names it.
    #[builder(setter(strip_option), default)]
    pub(crate) notify_fd: Option<RawFd>,
    /// Filled by the public builder, which collects them one `listen` call at a time.
    #[builder(setter(skip), default)]
    pub(crate) listen: Vec<Listen>,
}

impl Settings {
    /// Whether a restart hands the listening sockets to the new instance: there are some, and no
    /// supervisor (whose restart is a stop, then a start).
    pub(crate) fn hands_over(&self) -> bool {
        !self.listen.is_empty() && self.supervision.is_none()
    }
}

/// The settings of one kind of body that were given: a body of another kind refuses them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodySettings {
    /// `interval`, a step body's.
    pub(crate) step: bool,
    /// `pool_size` and `idle_time`, a messages body's, when given.
    pub(crate) messages: Option<&'static str>,
}

impl SettingsBuilder {
    /// Which settings of one kind of body were given.
    pub(crate) fn body_settings(&self) -> BodySettings {
        BodySettings {
            step: self.interval.is_some(),
            messages: if self.pool_size.is_some() {
                Some("pool_size")
            } else if self.idle_time.is_some() {
                Some("idle_time")
            } else {
                None
            },
        }
    }
}
