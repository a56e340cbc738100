//! An idle daemon made with the `daemonize` crate (0.5), the most used Rust peer, for the
//! whole-process bench (`benches/process.rs`): `idle-daemonize start PIDFILE`. It has no stop:
//! the bench stops it as `idle-bare stop` stops the bare one.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, pidfile] = &args[..] else {
        eprintln!("usage: idle-daemonize start PIDFILE");
        return ExitCode::from(2);
    };
    if command != "start" {
        eprintln!("usage: idle-daemonize start PIDFILE");
        return ExitCode::from(2);
    }
    match daemonize::Daemonize::new().pid_file(pidfile).start() {
        Ok(()) => loop {
            nix::unistd::pause();
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
