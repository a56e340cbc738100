//! An idle step daemon made with this crate, for the whole-process bench (`benches/process.rs`):
//! `idle-daemons start PIDFILE`, `idle-daemons start-supervised PIDFILE`, `idle-daemons stop PIDFILE`.

use std::process::ExitCode;
use std::time::Duration;

use daemons::{Daemon, Supervision};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, pidfile] = &args[..] else {
        eprintln!("usage: idle-daemons start|start-supervised|stop PIDFILE");
        return ExitCode::from(2);
    };
    let builder = Daemon::builder()
        .pidfile(pidfile)
        .step(|| {})
        .interval(Duration::from_secs(3600));
    let builder = match command.as_str() {
        "start-supervised" => builder.supervise(Supervision::on_failure()),
        _ => builder,
    };
    let daemon = match builder.build() {
        Ok(daemon) => daemon,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let done = match command.as_str() {
        "start" | "start-supervised" => daemon.start().map(drop),
        "stop" => daemon.stop().map(drop),
        _ => {
            eprintln!("unknown command {command}");
            return ExitCode::from(2);
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
