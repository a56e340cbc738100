//! The crate's own [`Signal`]: the signals a daemon is sent, handles and forwards, named as
//! users write them (`Signal::SIGHUP`), with their raw numbers; nix's type only behind the
//! `nix` feature, so that a new nix is not a breaking change of this crate.

use std::fmt;

/// Defines [`Signal`], its names and its list from one table, each variant with the
/// platforms that have it.
macro_rules! signals {
    ($($(#[$cfg:meta])* $name:ident: $doc:literal,)+) => {
        /// A signal, named as in C (`SIGHUP`), with the number of this platform.
        ///
        /// Only the signals that every supported platform knows by a name are here (with
        /// `SIGSTKFLT`, `SIGPWR` on Linux and `SIGEMT`, `SIGINFO` on macOS and the BSDs); the
        /// list may grow, so a `match` needs a wildcard arm.
        ///
        /// # Examples
        ///
        /// ```
        /// use daemons::Signal::{self, SIGHUP};
        ///
        /// assert_eq!(SIGHUP.to_string(), "SIGHUP");
        /// assert_eq!(Signal::try_from(SIGHUP.as_raw()), Ok(SIGHUP));
        /// assert_eq!(Signal::try_from(0), Err(daemons::UnknownSignal(0)));
        /// ```
        #[repr(i32)]
        #[non_exhaustive]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Signal {
            $(
                #[doc = $doc]
                $(#[$cfg])*
                $name = libc::$name,
            )+
        }

        impl Signal {
            /// Every signal of this platform, in the order of the table.
            pub(crate) const ALL: &'static [Signal] = &[$($(#[$cfg])* Signal::$name,)+];

            /// The signal's name, as C writes it: `"SIGHUP"`.
            ///
            /// # Examples
            ///
            /// ```
            /// assert_eq!(daemons::Signal::SIGTERM.name(), "SIGTERM");
            /// ```
            pub const fn name(self) -> &'static str {
                match self {
                    $($(#[$cfg])* Signal::$name => stringify!($name),)+
                }
            }

            /// nix's name of the signal, for the system calls (the one way the crate converts).
            pub(crate) const fn nix(self) -> nix::sys::signal::Signal {
                match self {
                    $($(#[$cfg])* Signal::$name => nix::sys::signal::Signal::$name,)+
                }
            }
        }
    };
}

signals! {
    SIGHUP: "Hangup: by custom, reload the configuration and reopen the logs.",
    SIGINT: "Interrupt (Ctrl-C): a stop signal.",
    SIGQUIT: "Quit: a stop signal.",
    SIGILL: "Illegal instruction.",
    SIGTRAP: "Trace trap.",
    SIGABRT: "Abort.",
    SIGBUS: "Bus error.",
    SIGFPE: "Floating-point exception.",
    SIGKILL: "Kill: cannot be caught or ignored.",
    SIGUSR1: "User-defined signal 1.",
    SIGSEGV: "Segmentation violation.",
    SIGUSR2: "User-defined signal 2.",
    SIGPIPE: "Write on a pipe with no reader.",
    SIGALRM: "Alarm clock.",
    SIGTERM: "Termination: the stop signal that `stop` sends.",
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        not(any(
            target_arch = "mips",
            target_arch = "mips32r6",
            target_arch = "mips64",
            target_arch = "mips64r6",
            target_arch = "sparc",
            target_arch = "sparc64"
        ))
    ))]
    SIGSTKFLT: "Stack fault (Linux).",
    SIGCHLD: "A child stopped or exited.",
    SIGCONT: "Continue a stopped process.",
    SIGSTOP: "Stop: cannot be caught or ignored.",
    SIGTSTP: "Stop from the terminal (Ctrl-Z).",
    SIGTTIN: "Background read from the terminal.",
    SIGTTOU: "Background write to the terminal.",
    SIGURG: "Urgent condition on a socket.",
    SIGXCPU: "CPU time limit exceeded.",
    SIGXFSZ: "File size limit exceeded.",
    SIGVTALRM: "Virtual timer alarm.",
    SIGPROF: "Profiling timer alarm.",
    SIGWINCH: "Window size changed.",
    SIGIO: "Input or output possible.",
    #[cfg(any(target_os = "linux", target_os = "android"))]
    SIGPWR: "Power failure (Linux).",
    SIGSYS: "Bad system call.",
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    SIGEMT: "Emulator trap (macOS and the BSDs).",
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    SIGINFO: "Status request from the terminal (Ctrl-T; macOS and the BSDs).",
}

impl Signal {
    /// The signal's number on this platform.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(daemons::Signal::SIGKILL.as_raw(), 9);
    /// ```
    #[must_use]
    pub const fn as_raw(self) -> i32 {
        self as i32
    }

    /// The crate's name of a signal that nix gave, if the crate names it.
    pub(crate) fn from_nix(signal: nix::sys::signal::Signal) -> Option<Signal> {
        Signal::try_from(signal as i32).ok()
    }
}

/// A number that names no [`Signal`] of this platform.
///
/// # Examples
///
/// ```
/// use daemons::{Signal, UnknownSignal};
///
/// assert_eq!(Signal::try_from(-1), Err(UnknownSignal(-1)));
/// assert_eq!(UnknownSignal(-1).to_string(), "-1 is not a signal number of this platform");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSignal(pub i32);

impl fmt::Display for UnknownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a signal number of this platform", self.0)
    }
}

impl std::error::Error for UnknownSignal {}

impl TryFrom<i32> for Signal {
    type Error = UnknownSignal;

    /// The signal of a number, if this platform names one by it.
    fn try_from(raw: i32) -> Result<Signal, UnknownSignal> {
        Signal::ALL
            .iter()
            .copied()
            .find(|s| s.as_raw() == raw)
            .ok_or(UnknownSignal(raw))
    }
}

/// A signal by its name, as C writes it or without the `SIG`, in any case: `"SIGHUP"`, `"HUP"`,
/// `"hup"`. Numbers are not names: `Signal::try_from(1)` takes those.
///
/// # Examples
///
/// ```
/// use daemons::{Signal, UnknownSignalName};
///
/// assert_eq!("SIGHUP".parse(), Ok(Signal::SIGHUP));
/// assert_eq!("term".parse(), Ok(Signal::SIGTERM));
/// assert_eq!(
///     "SIGNOPE".parse::<Signal>(),
///     Err(UnknownSignalName("SIGNOPE".into()))
/// );
/// ```
impl std::str::FromStr for Signal {
    type Err = UnknownSignalName;

    fn from_str(name: &str) -> Result<Signal, UnknownSignalName> {
        let bare = |n: &'static str| n.strip_prefix("SIG").unwrap_or(n);
        let given = match name.get(..3) {
            Some(prefix) if prefix.eq_ignore_ascii_case("SIG") => &name[3..],
            _ => name,
        };
        Signal::ALL
            .iter()
            .copied()
            .find(|s| bare(s.name()).eq_ignore_ascii_case(given))
            .ok_or_else(|| UnknownSignalName(name.to_string()))
    }
}

/// A name that names no [`Signal`] of this platform: what [`str::parse`] gives for one.
///
/// # Examples
///
/// ```
/// use daemons::{Signal, UnknownSignalName};
///
/// let e = "SIGNOPE".parse::<Signal>().unwrap_err();
/// assert_eq!(e, UnknownSignalName("SIGNOPE".into()));
/// assert_eq!(
///     e.to_string(),
///     "\"SIGNOPE\" is not the name of a signal of this platform (write SIGHUP, HUP or hup)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownSignalName(pub String);

impl fmt::Display for UnknownSignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not the name of a signal of this platform (write SIGHUP, HUP or hup)",
            self.0
        )
    }
}

impl std::error::Error for UnknownSignalName {}

impl From<Signal> for i32 {
    fn from(signal: Signal) -> i32 {
        signal.as_raw()
    }
}

impl fmt::Display for Signal {
    /// The signal's name: `SIGHUP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// nix's signal of the same number (with the `nix` feature).
///
/// ```
/// let signal: nix::sys::signal::Signal = daemons::Signal::SIGHUP.into();
/// assert_eq!(signal, nix::sys::signal::Signal::SIGHUP);
/// ```
#[cfg(feature = "nix")]
impl From<Signal> for nix::sys::signal::Signal {
    fn from(signal: Signal) -> nix::sys::signal::Signal {
        signal.nix()
    }
}

/// The crate's signal of nix's (with the `nix` feature); fallible because nix's list is
/// non-exhaustive too, and a later nix may name signals that this crate does not.
///
/// ```
/// use daemons::Signal;
///
/// assert_eq!(Signal::try_from(nix::sys::signal::Signal::SIGHUP), Ok(Signal::SIGHUP));
/// ```
#[cfg(feature = "nix")]
impl TryFrom<nix::sys::signal::Signal> for Signal {
    type Error = UnknownSignal;

    fn try_from(signal: nix::sys::signal::Signal) -> Result<Signal, UnknownSignal> {
        Signal::try_from(signal as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_has_nix_s_number_and_name() {
        for &signal in Signal::ALL {
            let theirs = signal.nix();
            assert_eq!(theirs as i32, signal.as_raw());
            assert_eq!(theirs.as_str(), signal.name());
            assert_eq!(Signal::from_nix(theirs), Some(signal));
            assert_eq!(signal.name().parse(), Ok(signal));
            assert_eq!(signal.name().to_lowercase().parse(), Ok(signal));
            assert_eq!(signal.name()[3..].parse(), Ok(signal));
        }
        assert_eq!("SigHup".parse(), Ok(Signal::SIGHUP));
        for wrong in [
            "",
            "SIG",
            "é",
            "sigé",
            "sig",
            "SIGSIGHUP",
            "1",
            "HUP ",
            "SIGHUPX",
        ] {
            assert_eq!(
                wrong.parse::<Signal>(),
                Err(UnknownSignalName(wrong.to_string())),
                "{wrong:?}"
            );
        }
        for theirs in nix::sys::signal::Signal::iterator() {
            assert!(Signal::from_nix(theirs).is_some(), "{theirs} is named");
        }
    }
}
