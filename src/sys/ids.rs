//! The groups and sessions of processes, named by the crate's [`Pid`].

use std::io;

use crate::Pid;

/// The calling process's process group.
pub(crate) fn process_group() -> Pid {
    Pid::from_nix(nix::unistd::getpgrp())
}

/// The process group of `pid`.
pub(crate) fn process_group_of(pid: Pid) -> io::Result<Pid> {
    nix::unistd::getpgid(Some(pid.nix()))
        .map(Pid::from_nix)
        .map_err(io::Error::from)
}

/// The session of `pid`.
pub(crate) fn session_of(pid: Pid) -> io::Result<Pid> {
    nix::unistd::getsid(Some(pid.nix()))
        .map(Pid::from_nix)
        .map_err(io::Error::from)
}

/// Move the calling process into a process group of its own.
pub(crate) fn own_process_group() -> io::Result<()> {
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
        .map_err(io::Error::from)
}
