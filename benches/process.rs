//! Whole processes, measured from outside as a user's script sees them, side by side in one run:
//! a daemon of this crate, a daemon made of the bare system calls (the floor), and one made
//! with the `daemonize` crate (0.5, the most used peer). Each is a program of this package
//! (`programs/`), started and stopped as its own process:
//!
//! - start: from spawning `PROGRAM start PIDFILE` until that program has exited and the
//!   pidfile names a live process;
//! - stop: from spawning the stop (`idle-daemons stop`, or `idle-bare stop` for the two others,
//!   which have none of their own) until the daemon is gone (a pidfd on it, opened before);
//! - messages: a detached message daemon of this crate (`messages-daemons`: a trivial handler,
//!   a pool of 4) against the same messages pushed by a detached bare program through a bounded
//!   crossbeam channel of 4 into 4 threads (`messages-bare`), each timed inside and writing its
//!   messages per second into a file; the two alternate in each repetition, and the ratio is the
//!   median of each repetition's own ratio, because the machine's speed at passing a cache line
//!   between cores changes by 5x from one minute to the next (the cache line round trip between
//!   CPUs 0 and 1, measured before each repetition, says which it was and whether it moved), and
//!   the two runs of one repetition see the same;
//! - memory: the idle daemon's `VmRSS` and its anonymous memory (`RssAnon`: what it wrote of its
//!   own, the private part that no other process could share; file pages, the executable's and
//!   the libraries', are counted in `VmRSS`), and the same for a supervised daemon (supervisor
//!   and child).
//!
//! `cargo bench --bench process`. `PROCESS_RUNS` runs (default 3) of `PROCESS_REPS` repetitions
//! (default 15), the three programs interleaved in each repetition, in an order that turns; each
//! run's medians are printed, then the ratios of each run, last. `PROCESS_MESSAGES` (default
//! 1,000,000) messages per message run.

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

/// Run a message program (`PIDFILE RESULT MESSAGES`) to the end of its detached daemon; the
/// messages per second it measured.
fn messages_rate(program: &str, dir: &Path, messages: u64) -> f64 {
    let pidfile = dir.join("messages.pid");
    let result = dir.join("messages.rate");
    let _ = fs::remove_file(&result);
    let started = Command::new(program)
        .arg(&pidfile)
        .arg(&result)
        .arg(messages.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(started, "{program} did not start");
    // Waited for on a pidfd, which takes no CPU from the daemon being measured; it may be gone
    // already.
    if let Some(pid) = live_pid(&pidfile) {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: the descriptor was just returned by the kernel and is owned by nobody else.
            let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            assert!(exited(&pidfd, DEADLINE), "{program}'s daemon did not end");
        }
    }
    let rate = fs::read_to_string(&result).unwrap_or_default();
    rate.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{program} wrote no rate into {}", result.display()))
}

/// The time a cache line takes to go from CPU 0 to CPU 1 and back, in nanoseconds (two threads
/// pinned there, spinning): what the message figures depend on most, printed beside them.
/// `None` on a machine of one CPU.
fn cache_line_round_trip() -> Option<f64> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const TRIPS: u64 = 20_000;
    fn pin(cpu: usize) -> bool {
        // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity get a valid
        // pointer to it and its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    let line = Arc::new(AtomicU64::new(0));
    let (back, there) = (line.clone(), line);
    let echo = thread::spawn(move || {
        if !pin(1) {
            back.store(u64::MAX, Ordering::Release);
            return;
        }
        for trip in 0..TRIPS {
            loop {
                match back.load(Ordering::Acquire) {
                    u64::MAX => return,
                    now if now == 2 * trip + 1 => break,
                    _ => std::hint::spin_loop(),
                }
            }
            back.store(2 * trip + 2, Ordering::Release);
        }
    });
    let measured = thread::spawn(move || {
        if !pin(0) {
            there.store(u64::MAX, Ordering::Release);
            return None;
        }
        let began = Instant::now();
        for trip in 0..TRIPS {
            if there
                .compare_exchange(2 * trip, 2 * trip + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return None;
            }
            loop {
                match there.load(Ordering::Acquire) {
                    u64::MAX => return None,
                    now if now == 2 * trip + 2 => break,
                    _ => std::hint::spin_loop(),
                }
            }
        }
        Some(began.elapsed().as_nanos() as f64 / TRIPS as f64)
    })
    .join()
    .expect("the measuring thread");
    echo.join().expect("the echoing thread");
    measured
}

/// `reps` repetitions of the two message programs, their order turning; prints their medians
/// and returns the median of the repetitions' ratios (this crate's rate over the bare one's).
fn messages_section(reps: usize, dir: &Path) -> f64 {
    let messages = env_number("PROCESS_MESSAGES", 1_000_000) as u64;
    // Measured before each repetition: a run whose round trip moved between levels compared its
    // pools on different machines, and says so.
    let mut trips = Vec::new();
    let programs = [
        env!("CARGO_BIN_EXE_messages-daemons"),
        env!("CARGO_BIN_EXE_messages-bare"),
    ];
    let (mut ours, mut bare, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        trips.extend(cache_line_round_trip());
        let mut rates = [0.0; 2];
        for turn in 0..2 {
            let which = (rep + turn) % 2;
            rates[which] = messages_rate(programs[which], dir, messages);
        }
        ours.push(rates[0]);
        bare.push(rates[1]);
        ratios.push(rates[0] / rates[1]);
    }
    let spread = {
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        (sorted[0], sorted[sorted.len() - 1])
    };
    trips.sort_by(f64::total_cmp);
    let placement = match (trips.first(), trips.last()) {
        (Some(low), Some(high)) => {
            let middle = trips[trips.len() / 2];
            format!("{low:.0}..{high:.0} ns, median {middle:.0}")
        }
        _ => "unknown".to_string(),
    };
    println!(
        "  messages/s, pool of 4, {messages} messages: daemons {:.2} M, bare crossbeam pool {:.2} M; ratio per repetition {:.2}..{:.2} (cache line round trip between CPUs before each repetition: {placement})",
        median(ours) / 1e6,
        median(bare) / 1e6,
        spread.0,
        spread.1,
    );
    median(ratios)
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
    let mut message_ratios = Vec::new();
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
        message_ratios.push(messages_section(reps, dir.path()));
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
    let message_ratios: Vec<String> = message_ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "  messages {} bare, per run (goal >= 0.90x)",
        message_ratios.join("x, ") + "x"
    );
}
