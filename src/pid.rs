//! The crate's own [`Pid`], so that nix's type is only behind the `nix` feature and a new nix
//! is not a breaking change of this crate.

use std::fmt;

/// A process id.
///
/// # Examples
///
/// ```
/// use daemons::Pid;
///
/// let pid = Pid::from_raw(42);
/// assert_eq!(pid.as_raw(), 42);
/// assert_eq!(pid.to_string(), "42");
/// assert_eq!(Pid::this().as_raw(), std::process::id() as i32);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(i32);

impl Pid {
    /// The pid of a raw number (no check: a pid read from a pidfile is verified where it is
    /// used, never here).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(daemons::Pid::from_raw(1).as_raw(), 1);
    /// ```
    #[must_use]
    pub const fn from_raw(raw: i32) -> Pid {
        Pid(raw)
    }

    /// The raw number.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(daemons::Pid::from_raw(7).as_raw(), 7);
    /// ```
    #[must_use]
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The pid of the calling process.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(daemons::Pid::this().as_raw(), std::process::id() as i32);
    /// ```
    #[must_use]
    pub fn this() -> Pid {
        // A pid fits in an i32 on every platform (pid_t); std gives it as u32.
        Pid(std::process::id() as i32)
    }

    /// The pid of the calling process's parent.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_ne!(daemons::Pid::parent(), daemons::Pid::this());
    /// ```
    #[must_use]
    pub fn parent() -> Pid {
        Pid(std::os::unix::process::parent_id() as i32)
    }

    /// nix's pid, for the system calls (the one way the crate converts).
    pub(crate) const fn nix(self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0)
    }

    /// The crate's pid of nix's.
    pub(crate) const fn from_nix(pid: nix::unistd::Pid) -> Pid {
        Pid(pid.as_raw())
    }

    /// The pid in decimal and a newline (a pidfile's first line, a report's pid line), written
    /// without `core::fmt`: on its way to ready a daemon formats nothing else, and the
    /// formatting machinery is pages of code that each new process faults in.
    pub(crate) fn line(self) -> String {
        let mut digits = [0u8; 12];
        let mut n = self.0.unsigned_abs();
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut line = String::with_capacity(digits.len() - at + 2);
        if self.0 < 0 {
            line.push('-');
        }
        line.extend(digits[at..].iter().map(|&d| char::from(d)));
        line.push('\n');
        line
    }
}

impl fmt::Debug for Pid {
    /// `Pid(42)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pid").field(&self.0).finish()
    }
}

impl fmt::Display for Pid {
    /// The number: `42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Pid> for i32 {
    fn from(pid: Pid) -> i32 {
        pid.0
    }
}

/// nix's pid of the same number (with the `nix` feature).
///
/// ```
/// let pid: nix::unistd::Pid = daemons::Pid::from_raw(42).into();
/// assert_eq!(pid.as_raw(), 42);
/// ```
#[cfg(feature = "nix")]
impl From<Pid> for nix::unistd::Pid {
    fn from(pid: Pid) -> nix::unistd::Pid {
        pid.nix()
    }
}

/// The crate's pid of nix's (with the `nix` feature).
///
/// ```
/// let pid: daemons::Pid = nix::unistd::Pid::from_raw(42).into();
/// assert_eq!(pid.as_raw(), 42);
/// ```
#[cfg(feature = "nix")]
impl From<nix::unistd::Pid> for Pid {
    fn from(pid: nix::unistd::Pid) -> Pid {
        Pid::from_nix(pid)
    }
}
