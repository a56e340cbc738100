//! Whole processes, measured from outside as a user's script sees them, side by side in one run:
//! a daemon of this crate, a daemon made of the bare system calls (the floor), and one made
//! with the `daemonize` crate (0.5, the most used peer). Each is a program of this package
//! (`programs/`), started and stopped as its own process:
//!
//! - start: from spawning `PROGRAM start PIDFILE` until that program has exited and the
//!   pidfile names a live process;
//! - stop: from spawning the stop (`idle-daemons stop`, or `idle-bare stop` for the two others,
//!   which have none of their own) until the daemon is gone (a pidfd on it, opened before);
//! - memory: the idle daemon's `VmRSS` and its anonymous memory (`RssAnon`: what it wrote of its
//!   own, the private part that no other process could share; file pages, the executable's and
//!   the libraries', are counted in `VmRSS`), and the same for a supervised daemon (supervisor
//!   and child).
//!
//! `cargo bench --bench process`. `PROCESS_RUNS` runs (default 3) of `PROCESS_REPS` repetitions
//! (default 15), the three programs interleaved in each repetition, in an order that turns; each
//! run's medians are printed, then the ratios of each run, last.

use std::fs;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const DEADLINE: Duration = Duration::from_secs(20);

/// One of the programs under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Subject {
    Daemons,
    Bare,
    Daemonize,
}

impl Subject {
    const ALL: [Subject; 3] = [Subject::Daemons, Subject::Bare, Subject::Daemonize];

    fn name(self) -> &'static str {
        match self {
            Subject::Daemons => "daemons",
            Subject::Bare => "bare system calls",
            Subject::Daemonize => "daemonize 0.5",
        }
    }

    fn starter(self) -> &'static str {
        match self {
            Subject::Daemons => env!("CARGO_BIN_EXE_idle-daemons"),
            Subject::Bare => env!("CARGO_BIN_EXE_idle-bare"),
            Subject::Daemonize => env!("CARGO_BIN_EXE_idle-daemonize"),
        }
    }

    fn stopper(self) -> &'static str {
        match self {
            Subject::Daemons => env!("CARGO_BIN_EXE_idle-daemons"),
            Subject::Bare | Subject::Daemonize => env!("CARGO_BIN_EXE_idle-bare"),
        }
    }
}

/// What one start, look and stop of a subject measured.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    start: f64,
    stop: f64,
    rss: f64,
    private: f64,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `program command pidfile` to its end; whether it succeeded.
fn run(program: &str, command: &str, pidfile: &Path) -> bool {
    Command::new(program)
        .arg(command)
        .arg(pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pid the pidfile names, if it names a live process.
fn live_pid(pidfile: &Path) -> Option<i32> {
    let content = fs::read_to_string(pidfile).ok()?;
    let pid: i32 = content.lines().next()?.trim().parse().ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 2..].chars().next()?;
    (pid > 0 && !matches!(state, 'Z' | 'X')).then_some(pid)
}

fn wait_for<T>(mut found: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < end, "nothing came within {DEADLINE:?}");
        thread::sleep(Duration::from_micros(20));
    }
}

fn pidfd_open(pid: i32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor was just returned by the kernel and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn exited(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    poll(&mut fds, PollTimeout::from(millis)).is_ok_and(|n| n > 0)
}

/// `kB` fields of a `/proc` file, summed.
fn kib(path: &str, fields: &[&str]) -> f64 {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            fields.contains(&name.trim()).then(|| {
                rest.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
        })
        .sum()
}

fn memory(pid: i32) -> (f64, f64) {
    (
        kib(&format!("/proc/{pid}/status"), &["VmRSS"]),
        kib(&format!("/proc/{pid}/status"), &["RssAnon"]),
    )
}

/// Start `subject`, look at it, stop it.
fn sample(subject: Subject, pidfile: &Path) -> Sample {
    let began = Instant::now();
    assert!(
        run(subject.starter(), "start", pidfile),
        "{subject:?} start"
    );
    let pid = wait_for(|| live_pid(pidfile));
    let start = began.elapsed();
    let pidfd = pidfd_open(pid);
    let (rss, private) = memory(pid);
    let began = Instant::now();
    assert!(run(subject.stopper(), "stop", pidfile), "{subject:?} stop");
    assert!(exited(&pidfd, DEADLINE), "{subject:?} did not exit");
    let stop = began.elapsed();
    let _ = fs::remove_file(pidfile);
    Sample {
        start: start.as_secs_f64() * 1e3,
        stop: stop.as_secs_f64() * 1e3,
        rss,
        private,
    }
}

/// The memory of a `daemonize` daemon that spawned one idle thread (`VmRSS`, private): the floor
/// of any daemon that runs a thread. A first thread costs a new process more than its stack: its
/// creation resolves a symbol of glibc's lazily (`_dl_allocate_tls`), which maps the dynamic
/// loader's code and the symbol tables of the program and of each library.
fn daemonize_with_a_thread(pidfile: &Path) -> (f64, f64) {
    let program = Subject::Daemonize.starter();
    assert!(
        run(program, "start-with-thread", pidfile),
        "daemonize start with a thread"
    );
    let pid = wait_for(|| live_pid(pidfile));
    // The thread is spawned after the pidfile is written: wait until it runs.
    wait_for(|| {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let threads: u32 = status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))?
            .trim()
            .parse()
            .ok()?;
        (threads >= 2).then_some(())
    });
    let pidfd = pidfd_open(pid);
    let measured = memory(pid);
    assert!(
        run(Subject::Daemonize.stopper(), "stop", pidfile),
        "daemonize stop"
    );
    assert!(
        exited(&pidfd, DEADLINE),
        "the daemonize daemon did not exit"
    );
    let _ = fs::remove_file(pidfile);
    measured
}

/// A supervised daemon's memory: the supervisor's and its child's (`VmRSS`, private).
fn supervised(pidfile: &Path) -> ((f64, f64), (f64, f64)) {
    let program = Subject::Daemons.starter();
    assert!(
        run(program, "start-supervised", pidfile),
        "supervised start"
    );
    let supervisor = wait_for(|| live_pid(pidfile));
    let child: i32 = wait_for(|| {
        let content = fs::read_to_string(pidfile).ok()?;
        let line = content.lines().nth(1)?;
        line.split_whitespace().nth(1)?.parse().ok()
    });
    let pidfd = pidfd_open(supervisor);
    let measured = (memory(supervisor), memory(child));
    assert!(run(program, "stop", pidfile), "supervised stop");
    assert!(exited(&pidfd, DEADLINE), "the supervisor did not exit");
    measured
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runs = env_number("PROCESS_RUNS", 3);
    let reps = env_number("PROCESS_REPS", 15);
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile: PathBuf = dir.path().join("idle.pid");
    let mut ratios = Vec::new();
    for run_number in 1..=runs {
        let mut samples: Vec<(Subject, Sample)> = Vec::new();
        for rep in 0..reps {
            for turn in 0..Subject::ALL.len() {
                let subject = Subject::ALL[(rep + turn) % Subject::ALL.len()];
                samples.push((subject, sample(subject, &pidfile)));
            }
        }
        let of = |subject: Subject, field: fn(&Sample) -> f64| {
            median(
                samples
                    .iter()
                    .filter(|(s, _)| *s == subject)
                    .map(|(_, sample)| field(sample))
                    .collect(),
            )
        };
        println!("run {run_number} of {runs}: medians of {reps} interleaved repetitions");
        for subject in Subject::ALL {
            println!(
                "  {:<18} start {:6.3} ms  stop {:6.3} ms  VmRSS {:6.0} KiB  anonymous {:5.0} KiB",
                subject.name(),
                of(subject, |s| s.start),
                of(subject, |s| s.stop),
                of(subject, |s| s.rss),
                of(subject, |s| s.private),
            );
        }
        let ((sup_rss, sup_private), (child_rss, child_private)) = supervised(&pidfile);
        println!(
            "  supervised daemons: supervisor VmRSS {sup_rss:.0} KiB, anonymous {sup_private:.0} KiB; child VmRSS {child_rss:.0} KiB, anonymous {child_private:.0} KiB"
        );
        let (threaded_rss, threaded_private) = daemonize_with_a_thread(&pidfile);
        println!(
            "  daemonize 0.5 with one thread: VmRSS {threaded_rss:.0} KiB, anonymous {threaded_private:.0} KiB"
        );
        let ours = |f: fn(&Sample) -> f64| of(Subject::Daemons, f);
        ratios.push((
            ours(|s| s.start) / of(Subject::Bare, |s| s.start),
            ours(|s| s.stop) / of(Subject::Bare, |s| s.stop),
            ours(|s| s.rss) / of(Subject::Daemonize, |s| s.rss),
            ours(|s| s.private) / of(Subject::Daemonize, |s| s.private),
            sup_rss / of(Subject::Daemonize, |s| s.rss),
            sup_private / of(Subject::Daemonize, |s| s.private),
            ours(|s| s.rss) / threaded_rss,
        ));
    }
    println!(
        "ratios, one line per run (goals: start <= 1.10x bare, stop <= 1.05x bare, anonymous <= 1.2x and VmRSS <= 1.5x daemonize):"
    );
    for (start, stop, rss, private, sup_rss, sup_private, threaded) in ratios {
        println!(
            "  start {start:.2}x bare  stop {stop:.2}x bare  VmRSS {rss:.2}x daemonize  anonymous {private:.2}x daemonize  supervisor VmRSS {sup_rss:.2}x, anonymous {sup_private:.2}x  (VmRSS {threaded:.2}x daemonize with a thread)"
        );
    }
}
