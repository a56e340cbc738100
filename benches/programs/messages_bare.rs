//! The bare baseline of `messages-daemons`, for the whole-process bench (`benches/process.rs`):
//! `messages-bare PIDFILE RESULT MESSAGES` detaches the same way as `idle-bare` (fork, `setsid`,
//! fork, the pid written to PIDFILE, ready said through a pipe), then pushes `MESSAGES` numbers
//! through a bounded crossbeam channel of 4 into 4 threads that run the same trivial handler,
//! and writes its throughput (messages per second, from the channel's creation to the workers'
//! end) into `RESULT` before it exits. No backpressure beyond the channel's (up to 8 messages in
//! flight), no stop signal, no error handling: the floor.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

#[path = "bare_detach.rs"]
mod bare_detach;
#[path = "bare_pool.rs"]
mod bare_pool;
use bare_detach::Side;

const POOL: usize = 4;

fn serve(messages: u64) -> f64 {
    let began = Instant::now();
    bare_pool::run(POOL, POOL, messages, |n| {
        black_box(n);
    });
    messages as f64 / began.elapsed().as_secs_f64()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pidfile, result, messages] = &args[..] else {
        eprintln!("usage: messages-bare PIDFILE RESULT MESSAGES");
        return ExitCode::from(2);
    };
    let Ok(messages) = messages.parse::<u64>() else {
        eprintln!("MESSAGES is a number: {messages}");
        return ExitCode::from(2);
    };
    let mut ready = match bare_detach::detach() {
        Side::Caller(code) => return code,
        Side::Daemon(ready) => ready,
    };
    fs::write(pidfile, format!("{}\n", std::process::id())).expect("write the pid");
    let _ = ready.write_all(b"R");
    drop(ready);
    let rate = serve(messages);
    fs::write(result, format!("{rate}\n")).expect("write the result");
    let _ = fs::remove_file(pidfile);
    ExitCode::SUCCESS
}
