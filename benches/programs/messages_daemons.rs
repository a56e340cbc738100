//! A message daemon of this crate, for the whole-process bench (`benches/process.rs`):
//! `messages-daemons PIDFILE RESULT MESSAGES` starts it detached, as a user's script would, and
//! returns once it is ready. The daemon fetches `MESSAGES` numbers, hands each to a trivial
//! handler on a pool of 4, stops itself once it has fetched them all, and, its pool drained,
//! writes its own throughput (messages per second, from the first `get` to the drained pool) into
//! `RESULT` before it exits.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use daemons::Daemon;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pidfile, result, messages] = &args[..] else {
        eprintln!("usage: messages-daemons PIDFILE RESULT MESSAGES");
        return ExitCode::from(2);
    };
    let Ok(messages) = messages.parse::<u64>() else {
        eprintln!("MESSAGES is a number: {messages}");
        return ExitCode::from(2);
    };
    let result = result.clone();
    let first: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let began = first.clone();
    let mut next = 0u64;
    let daemon = Daemon::builder()
        .pidfile(pidfile)
        .messages(
            move || {
                if next == 0 {
                    let _ = began.set(Instant::now());
                }
                if next == messages {
                    // All fetched: the stop drains the pool, then the hook below times it.
                    next += 1;
                    let _ = kill(Pid::this(), Signal::SIGTERM);
                }
                (next < messages).then(|| {
                    next += 1;
                    next
                })
            },
            |n: u64| {
                black_box(n);
            },
        )
        .pool_size(4)
        .idle_time(Duration::from_secs(3600))
        .on_stop(move || {
            let Some(first) = first.get() else {
                return Ok(());
            };
            let rate = messages as f64 / first.elapsed().as_secs_f64();
            std::fs::write(&result, format!("{rate}\n"))
        })
        .build();
    let started = daemon.and_then(|daemon| daemon.start().map(drop));
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
