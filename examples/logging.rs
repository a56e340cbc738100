//! A daemon that logs through a logger installed inside it, with the crate's own lines in the
//! same format: `env_logger` (the default) or `tracing-subscriber` (`DAEMONS_LOGGING_WITH=tracing`).
//!
//! It shows `.logger()`, which installs the logger in the daemon once its stderr is the log file
//! (a logger installed in `main`, while stderr is still the terminal, would write colour codes
//! into the file), and the `log` feature, which sends the crate's lines (here, the warning of a
//! failed step under `keep_going`) through that logger under the target `daemons`.
//!
//! ```text
//! cargo run --features log --example logging -- start
//! cat /tmp/daemons-logging.log          # [... INFO  logging] tick 1, ... WARN  daemons] a step failed: ...
//! RUST_LOG=info,daemons=off cargo run --features log --example logging -- restart   # no crate lines
//! cargo run --features log --example logging -- stop
//! ```
//!
//! `DAEMONS_LOGGING_PIDFILE` and `DAEMONS_LOGGING_LOG` move the pidfile and the log (by default
//! in the temporary directory); `RUST_LOG` filters as usual (default `info`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use daemons::Daemon;

fn main() -> ExitCode {
    let pidfile = path_from_env("DAEMONS_LOGGING_PIDFILE", "daemons-logging.pid");
    let log = path_from_env("DAEMONS_LOGGING_LOG", "daemons-logging.log");
    let tracing = std::env::var("DAEMONS_LOGGING_WITH").is_ok_and(|with| with == "tracing");

    let mut ticks = 0u64;
    Daemon::builder()
        .name("logging")
        .pidfile(&pidfile)
        .stderr(&log)
        .logger(move || match tracing {
            // Its log bridge takes the `log` records of the crate (and of any library).
            true => tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .init(),
            false => {
                env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                    .init()
            }
        })
        .keep_going(true)
        .step(move || -> Result<(), String> {
            ticks += 1;
            match tracing {
                true => tracing::info!("tick {ticks}"),
                false => log::info!("tick {ticks}"),
            }
            // Every third step fails: the crate logs a warning and goes on.
            match ticks % 3 {
                0 => Err(format!("tick {ticks} was a third one")),
                _ => Ok(()),
            }
        })
        .interval(Duration::from_millis(100))
        .cli()
}

/// `$VAR` if set, else `name` in the temporary directory.
fn path_from_env(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| std::env::temp_dir().join(name), PathBuf::from)
}
