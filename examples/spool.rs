//! A spool-directory worker: files dropped into `incoming/` are picked up, handled on a pool of
//! four workers, and moved to `done/`. A message daemon, the counterpart of the Python original's
//! `get_message`/`handle_message` daemons.
//!
//! ```text
//! cargo run --example spool -- start
//! for i in $(seq 20); do echo "job $i" > /tmp/daemons-spool/incoming/job-$i.txt; done
//! ls /tmp/daemons-spool/done                 # the twenty jobs, moments later
//! cat /tmp/daemons-spool.log                 # one line per job, with the worker that did it
//! cargo run --example spool -- stop          # jobs already taken are finished first
//! ```
//!
//! `get` claims a file by renaming it into `work/` (a rename is atomic, so a file is never taken
//! twice) and returns `None` when `incoming/` is empty: the daemon then rests for the idle time
//! (a stop cuts the rest short) and looks again. At most four files are in `work/` at once: `get`
//! is not called while every worker is busy. A file left in `work/` by a daemon that was killed
//! goes back to `incoming/` when the next one starts.
//!
//! `DAEMONS_SPOOL` moves the spool directory (default `/tmp/daemons-spool`); the pidfile and the
//! log sit beside it, as `daemons-spool.pid` and `daemons-spool.log`.
//!
//! Like every `.cli()` tool, it takes `--pidfile PATH` before the command to name another pidfile.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use daemons::Daemon;

fn main() -> ExitCode {
    let spool = std::env::var_os("DAEMONS_SPOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("daemons-spool"));
    for dir in ["incoming", "work", "done"] {
        if let Err(e) = fs::create_dir_all(spool.join(dir)) {
            eprintln!("spool: cannot create {}: {e}", spool.join(dir).display());
            return ExitCode::FAILURE;
        }
    }
    let log = spool.with_extension("log");

    let mut queue = Spool::new(&spool);
    let done = spool.join("done");
    Daemon::builder()
        .name("spool")
        .pidfile(spool.with_extension("pid"))
        .stdout(&log)
        .stderr(&log)
        .messages(
            move || queue.claim(),
            move |job: PathBuf| handle(&job, &done),
        )
        .pool_size(4)
        .idle_time(Duration::from_millis(200))
        .cli()
}

/// The spool as a message source.
struct Spool {
    incoming: PathBuf,
    work: PathBuf,
    recovered: bool,
}

impl Spool {
    fn new(root: &Path) -> Spool {
        Spool {
            incoming: root.join("incoming"),
            work: root.join("work"),
            recovered: false,
        }
    }

    /// Take the oldest-named file of `incoming/`, or `None` if there is none.
    fn claim(&mut self) -> io::Result<Option<PathBuf>> {
        if !self.recovered {
            // Whatever a killed predecessor had taken but not finished is done again.
            for entry in fs::read_dir(&self.work)? {
                let path = entry?.path();
                if let Some(name) = path.file_name() {
                    fs::rename(&path, self.incoming.join(name))?;
                }
            }
            self.recovered = true;
        }
        let mut names: Vec<_> = fs::read_dir(&self.incoming)?
            .filter_map(|entry| entry.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let claimed = self.work.join(&name);
            match fs::rename(self.incoming.join(&name), &claimed) {
                Ok(()) => return Ok(Some(claimed)),
                // Someone else took it (a second worker process, an operator): try the next.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// The work itself: count the file's lines and words, log them, and file it under `done/`.
fn handle(job: &Path, done: &Path) -> io::Result<()> {
    let text = fs::read_to_string(job)?;
    let name = job.file_name().unwrap_or_default();
    println!(
        "{}: {} lines, {} words (worker {})",
        name.to_string_lossy(),
        text.lines().count(),
        text.split_whitespace().count(),
        std::thread::current().name().unwrap_or("?"),
    );
    fs::rename(job, done.join(name))
}
