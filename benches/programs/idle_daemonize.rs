//! An idle daemon made with the `daemonize` crate (0.5), the most used Rust peer, for the
//! whole-process bench (`benches/process.rs`): `idle-daemonize start PIDFILE`. It has no stop:
//! the bench stops it as `idle-bare stop` stops the bare one.
//!
//! `idle-daemonize start-with-thread PIDFILE` is the same daemon with one idle thread spawned
//! after `daemonize` returns: what any daemon that runs a thread of its own (as each of this
//! crate's runs its keeper) pays in memory for it, measured on the peer.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, pidfile] = &args[..] else {
        eprintln!("usage: idle-daemonize start|start-with-thread PIDFILE");
        return ExitCode::from(2);
    };
    let thread = match command.as_str() {
        "start" => false,
        "start-with-thread" => true,
        _ => {
            eprintln!("usage: idle-daemonize start|start-with-thread PIDFILE");
            return ExitCode::from(2);
        }
    };
    match daemonize::Daemonize::new().pid_file(pidfile).start() {
        Ok(()) => {
            if thread {
                std::thread::spawn(|| {
                    loop {
                        std::thread::park();
                    }
                });
            }
            loop {
                nix::unistd::pause();
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
