//! An idle daemon made of the bare system calls, the floor of the whole-process bench
//! (`benches/process.rs`): `idle-bare start PIDFILE` forks, `setsid`s, forks again, and the
//! daemon takes its pidfile (`O_CREAT`, `flock`, its pid written) and says so through a pipe
//! before the caller exits; `idle-bare stop PIDFILE` reads the pid, pins it with a pidfd, sends
//! SIGTERM, waits for the exit on the pidfd and removes the pidfile. No check, no report of an
//! error, no signal handling beyond the default: what any daemon must at least do.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, pause};

#[path = "bare_detach.rs"]
mod bare_detach;
use bare_detach::Side;

fn start(pidfile: &str) -> ExitCode {
    let mut ready = match bare_detach::detach() {
        Side::Caller(code) => return code,
        Side::Daemon(ready) => ready,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(pidfile)
        .expect("open the pidfile");
    file.try_lock().expect("lock the pidfile");
    file.set_len(0).expect("truncate");
    writeln!(file, "{}", std::process::id()).expect("write the pid");
    let _ = ready.write_all(b"R");
    drop(ready);
    loop {
        pause();
    }
}

fn stop(pidfile: &str) -> ExitCode {
    let Some(pid) = fs::read_to_string(pidfile)
        .ok()
        .and_then(|c| c.trim().parse::<i32>().ok())
    else {
        return ExitCode::SUCCESS;
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return ExitCode::SUCCESS;
    }
    // SAFETY: the kernel just returned this descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let mut fds = [PollFd::new(
        // SAFETY: `pidfd` lives to the end of the function.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(pidfd.as_raw_fd()) },
        PollFlags::POLLIN,
    )];
    let _ = poll(&mut fds, PollTimeout::NONE);
    let _ = fs::remove_file(pidfile);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [command, pidfile] if command == "start" => start(pidfile),
        [command, pidfile] if command == "stop" => stop(pidfile),
        _ => {
            eprintln!("usage: idle-bare start|stop PIDFILE");
            ExitCode::from(2)
        }
    }
}
