//! A step daemon: it counts, and appends `tick N` to its log once a second.
//!
//! It shows a `.step()` body with an `.interval()`, a SIGHUP handler (SIGHUP never stops a
//! daemon: here it only logs `reload`), and a SIGTERM handler, which runs once at shutdown, after
//! the last step has finished (and a SIGINT handler, so that Ctrl-C in the foreground does too).
//!
//! ```text
//! cargo run --example counter -- start     # returns once the daemon is up
//! cat /tmp/daemons-counter.log             # tick 1, tick 2, ...
//! cargo run --example counter -- reload    # SIGHUP: the log says `reload`
//! cargo run --example counter -- status
//! cargo run --example counter -- stop      # SIGTERM: the log gets a last line
//! cargo run --example counter -- run       # in the foreground, logging to the terminal
//! ```
//!
//! The pidfile and the log live in the temporary directory (`/tmp/daemons-counter.pid` and
//! `/tmp/daemons-counter.log`); `--pidfile PATH` before the command (`counter --pidfile
//! /run/counter.pid start`) or `DAEMONS_COUNTER_PIDFILE` moves the pidfile, and
//! `DAEMONS_COUNTER_LOG` the log.
//! `.cli()` is the whole command line; its exit codes are those of an LSB init script: 0 done
//! (or running, for `status`), 1 error (or dead with a pidfile left behind, for `status`), 2
//! usage error, 3 not running.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemons::Daemon;
use daemons::Signal::{SIGHUP, SIGINT, SIGTERM};

fn main() -> ExitCode {
    let pidfile = path_from_env("DAEMONS_COUNTER_PIDFILE", "daemons-counter.pid");
    let log = path_from_env("DAEMONS_COUNTER_LOG", "daemons-counter.log");

    let ticks = Arc::new(AtomicU64::new(0));
    // The last words, for `stop` (SIGTERM) and for Ctrl-C in the foreground (SIGINT).
    let farewell = |ticks: Arc<AtomicU64>| {
        move || println!("stopping at tick {}", ticks.load(Ordering::Relaxed))
    };
    Daemon::builder()
        .name("counter")
        .pidfile(&pidfile)
        .stdout(&log) // println! goes to the log...
        .stderr(&log) // ...and so do the crate's own messages (panics, step errors)
        .on(SIGHUP, || println!("reload"))
        .on(SIGTERM, farewell(ticks.clone()))
        .on(SIGINT, farewell(ticks.clone()))
        .step(move || {
            let n = ticks.fetch_add(1, Ordering::Relaxed) + 1;
            println!("tick {n} at unix time {}", unix_time());
        })
        .interval(Duration::from_secs(1))
        .cli() // start | stop | restart | reload | status | run | help
}

/// `$VAR` if set, else `name` in the temporary directory.
fn path_from_env(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| std::env::temp_dir().join(name), PathBuf::from)
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
