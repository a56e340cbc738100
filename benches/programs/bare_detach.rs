//! The bare double fork of the baselines (`idle-bare`, `messages-bare`): fork, `setsid`, fork;
//! the caller waits for the middle process and for one byte from the daemon. No check and no
//! report of an error: the floor that this crate's start is measured against.

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;

use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pipe2, setsid};

/// Which side of the double fork this is.
pub enum Side {
    /// The caller, with its exit code: success once the daemon said it is ready.
    Caller(ExitCode),
    /// The daemon, with the pipe on which it says it is ready (one byte).
    Daemon(File),
}

/// Detach, in a process that runs one thread.
pub fn detach() -> Side {
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let mut read = File::from(read);
    // SAFETY: the programs that call this run one thread.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => {
            drop(write);
            let _ = waitpid(child, None);
            let mut byte = [0u8; 1];
            Side::Caller(match read.read(&mut byte) {
                Ok(1) => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            })
        }
        ForkResult::Child => {
            drop(read);
            setsid().expect("setsid");
            // SAFETY: one thread.
            if let ForkResult::Parent { .. } = unsafe { fork() }.expect("fork") {
                // SAFETY: _exit ends the process.
                unsafe { libc::_exit(0) };
            }
            Side::Daemon(File::from(write))
        }
    }
}
