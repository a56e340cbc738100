//! A run daemon: it watches a directory and logs the files that appear (`+ name`) and vanish
//! (`- name`).
//!
//! It shows a `.run(|ctl| ...)` body, which loops by itself: `ctl.running()` turns false when a
//! stop is asked, and `ctl.sleep()` returns early then, so `stop` takes milliseconds even though
//! the body sleeps a second at a time. The body returns an `io::Result`: if the directory goes
//! away, the error is logged, the pidfile removed, and the daemon exits with code 1.
//!
//! ```text
//! cargo run --example watcher -- start     # returns once the daemon is up
//! touch /tmp/daemons-watcher.d/hello
//! sleep 1; cat /tmp/daemons-watcher.log    # + hello
//! cargo run --example watcher -- status
//! cargo run --example watcher -- stop
//! cargo run --example watcher -- run       # in the foreground, logging to the terminal
//! ```
//!
//! The watched directory (created if missing), the pidfile and the log live in the temporary
//! directory (`/tmp/daemons-watcher.d`, `/tmp/daemons-watcher.pid`, `/tmp/daemons-watcher.log`);
//! `DAEMONS_WATCHER_DIR`, `DAEMONS_WATCHER_PIDFILE` and `DAEMONS_WATCHER_LOG` move them.
//! The exit codes are those of an LSB init script: 0 done (or running, for `status`), 1 error (or
//! dead with a pidfile left behind, for `status`), 2 usage error, 3 not running.
//!
//! Like every `.cli()` tool, it takes `--pidfile PATH` before the command to name another pidfile.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use daemons::Daemon;

const POLL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let dir = path_from_env("DAEMONS_WATCHER_DIR", "daemons-watcher.d");
    let pidfile = path_from_env("DAEMONS_WATCHER_PIDFILE", "daemons-watcher.pid");
    let log = path_from_env("DAEMONS_WATCHER_LOG", "daemons-watcher.log");

    // The daemon runs in `/`: it needs absolute paths (the builder makes its own settings
    // absolute, but not the paths that the body captures).
    let dir = match std::path::absolute(&dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("watcher: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let command = std::env::args().nth(1).unwrap_or_default();
    if matches!(command.as_str(), "start" | "restart" | "run")
        && let Err(e) = std::fs::create_dir_all(&dir)
    {
        eprintln!("watcher: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let watched = dir.clone();
    Daemon::builder()
        .name("watcher")
        .pidfile(&pidfile)
        .stdout(&log)
        .stderr(&log)
        .run(move |ctl| -> io::Result<()> {
            let mut seen = entries(&watched)?;
            println!("watching {}", watched.display());
            while ctl.running() {
                let now = entries(&watched)?;
                for name in now.difference(&seen) {
                    println!("+ {}", name.to_string_lossy());
                }
                for name in seen.difference(&now) {
                    println!("- {}", name.to_string_lossy());
                }
                seen = now;
                ctl.sleep(POLL); // returns at once when a stop is asked
            }
            println!("stopped watching {}", watched.display());
            Ok(())
        })
        .cli() // start | stop | restart | reload | status | run | help
}

/// The names in `dir`. The error names the directory: it ends up in the log.
fn entries(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.map(|entry| entry.map(|e| e.file_name())).collect())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", dir.display())))
}

/// `$VAR` if set, else `name` in the temporary directory.
fn path_from_env(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| std::env::temp_dir().join(name), PathBuf::from)
}
