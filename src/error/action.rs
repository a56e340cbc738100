//! What was being done when a file operation failed: the `action` of the file errors.

use std::fmt;

worded! {
    /// What was being done when a file operation failed: the `action` of
    /// [`Error::Io`](crate::Error::Io), [`Error::MissingDirectory`](crate::Error::MissingDirectory)
    /// and the other errors about a file. Its `Display` is the words of the message:
    /// "cannot *open the pidfile* /run/x.pid".
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Action, Error};
    ///
    /// let err = Error::Io {
    ///     action: Action::WritePidfile,
    ///     path: "/run/x.pid".into(),
    ///     source: std::io::Error::from_raw_os_error(libc::ENOSPC),
    /// };
    /// assert!(matches!(err, Error::Io { action: Action::WritePidfile, .. }));
    /// assert_eq!(Action::WritePidfile.to_string(), "write the pidfile");
    /// assert!(err.to_string().starts_with("cannot write the pidfile /run/x.pid"));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum Action {
        /// Open the pidfile, to read it or to take it.
        OpenPidfile => "open the pidfile",
        /// Take the pidfile: check its directory, open or create it, lock it.
        TakePidfile => "take the pidfile",
        /// Create the pidfile.
        CreatePidfile => "create the pidfile",
        /// Lock the pidfile.
        LockPidfile => "lock the pidfile",
        /// Write the daemon's pid (or why it failed) into the pidfile.
        WritePidfile => "write the pidfile",
        /// Remove the pidfile.
        RemovePidfile => "remove the pidfile",
        /// Open a log file (the daemon's stdout or stderr).
        OpenLog => "open the log file",
        /// Give a log file to the daemon's user.
        GiveLog => "give the log file",
        /// Open a file of the system (`/dev/null`).
        Open => "open",
        /// Change to the daemon's working directory.
        ChangeDirectory => "change to the working directory",
        /// Listen on a Unix socket given to `listen`.
        Listen => "listen on",
        /// Listen for a successor at a restart, at the offer socket beside the pidfile.
        OfferSockets => "listen for a successor at",
        /// Remove the offer socket beside the pidfile.
        RemoveOffer => "remove the offer socket",
        /// List the descriptors inherited through `exec`, to close them.
        CloseInherited => "close inherited descriptors from",
        /// Read the pid of a pinned process from its pidfd's `fdinfo`.
        ReadPinnedPid => "read the pinned process's pid from",
    }
}
