//! Benchmarks of supervision (`.supervise(Supervision::...)`), each beside a baseline in the same run.
//!
//! - `respawn`: from `kill(supervisor, SIGUSR1)` (its child's handler then `_exit(1)`s) until
//!   the next child's body has written one byte to a pipe that this process reads, with a zero
//!   backoff; beside `Daemon::start()` of the same daemon unsupervised, until it returns. The
//!   body runs right after its process has reported ready, so both end at readiness: the crash is
//!   seen through the child's pidfd, reaped, logged, a child is forked, and it sets up (signals,
//!   signal thread, keeper) and reports, as a started daemon does after its double fork.
//! - `stop`: `Daemon::stop()` of a supervised idle daemon (SIGTERM to the supervisor, passed on
//!   to the child, which stops gracefully; then the supervisor exits) beside the same daemon
//!   unsupervised.
//! - the supervisor's memory: `VmRSS` (and its file-backed and anonymous parts), `Pss` and
//!   `Private_Dirty` of the supervisor, of its child and of the same daemon unsupervised, from
//!   `/proc/PID/status` and `smaps_rollup`; printed once, before the groups. `VmRSS` counts the
//!   pages of the executable and libc that the child maps too; `Private_Dirty` is what the
//!   supervisor wrote since its fork, its own.
//!
//! Before criterion's groups, [`alternating`] measures the same four things in rounds that
//! alternate between supervised and not, whose medians a busy two-core machine disturbs far
//! less than two routines measured one after the other.
//!
//! `start()` refuses to fork a process that runs several threads: criterion without its default
//! features runs on the main thread, and every group checks that the process is still
//! single-threaded. Every daemon started here is stopped before its group ends.

// The benchmarks play the operator: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use daemons::{Daemon, Pid, Signal, Status, Stopped, Supervision};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::pipe2;

/// How long a byte from the body may take before the bench calls the daemon lost.
const BYTE_TIMEOUT: Duration = Duration::from_secs(10);

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

fn assert_single_threaded() {
    assert_eq!(
        thread_count(),
        1,
        "the bench process must not run threads before it forks"
    );
}

/// A daemon whose body writes one byte to `ready` when it begins, then idles; SIGUSR1 ends its
/// process at once with exit code 1 (a crash, for a supervisor). `supervised`: restarted with
/// no wait and no limit.
fn daemon(pidfile: &Path, ready: &File, supervised: bool) -> Daemon {
    let ready = ready.try_clone().expect("dup the pipe");
    let mut b = Daemon::builder()
        .pidfile(pidfile)
        .on(Signal::SIGUSR1, || {
            // SAFETY: `_exit` ends the process at once; nothing runs after it.
            unsafe { libc::_exit(1) }
        })
        .run(move |ctl| {
            let _ = (&ready).write_all(b"R");
            while ctl.sleep(Duration::from_secs(3600)) {}
        });
    if supervised {
        b = b.supervise(
            Supervision::on_failure()
                .backoff(Duration::ZERO, Duration::ZERO)
                .unlimited(),
        );
    }
    b.build().expect("a valid daemon")
}

/// Read one byte that a body wrote, waiting at most [`BYTE_TIMEOUT`].
fn read_byte(read: &mut File) {
    let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(BYTE_TIMEOUT.as_millis() as u64).expect("a timeout");
    let ready = loop {
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.expect("poll"),
        }
    };
    assert!(ready > 0, "no byte from the body within {BYTE_TIMEOUT:?}");
    let mut byte = [0u8; 1];
    read.read_exact(&mut byte).expect("the body's byte");
}

/// Stops a daemon when dropped, so that a panicking bench leaves nothing running.
struct Running<'a>(&'a Daemon);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// Start the daemon, wait for its body's byte.
fn start<'a>(daemon: &'a Daemon, read: &mut File) -> Running<'a> {
    daemon.start().expect("start");
    read_byte(read);
    Running(daemon)
}

/// Stop it and check that it went gracefully.
fn stop(running: Running<'_>) {
    let daemon = running.0;
    std::mem::forget(running);
    let stopped = daemon.stop().expect("stop");
    assert!(
        matches!(stopped, Stopped::Exited { .. }),
        "the daemon did not exit on SIGTERM: {stopped:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Medians, as benches/core.rs records them.

const RESPAWN_SAMPLES: usize = 40;
const STOP_SAMPLES: usize = 40;

/// Nanoseconds per iteration of every call of each routine, in call order.
static RECORDED: Mutex<Vec<(String, Vec<f64>)>> = Mutex::new(Vec::new());

fn record(id: &str, iters: u64, elapsed: Duration) -> Duration {
    let per_iter = elapsed.as_nanos() as f64 / iters.max(1) as f64;
    let mut recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    match recorded.iter_mut().find(|(name, _)| name == id) {
        Some((_, times)) => times.push(per_iter),
        None => recorded.push((id.to_string(), vec![per_iter])),
    }
    elapsed
}

/// The median time per iteration over a routine's last `samples` calls, if it ran that often.
fn median(id: &str, samples: usize) -> Option<f64> {
    let recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    let (_, times) = recorded.iter().find(|(name, _)| name == id)?;
    if times.len() < samples {
        return None;
    }
    let mut last = times[times.len() - samples..].to_vec();
    last.sort_by(f64::total_cmp);
    Some(if samples % 2 == 1 {
        last[samples / 2]
    } else {
        (last[samples / 2 - 1] + last[samples / 2]) / 2.0
    })
}

fn human(nanos: f64) -> String {
    match nanos {
        n if n >= 1e6 => format!("{:.3} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.3} ns"),
    }
}

/// The memory figures, printed before the groups and again in the summary.
static MEMORY: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn summary() {
    let groups = [
        ("respawn", RESPAWN_SAMPLES, "supervised", "start"),
        ("stop", STOP_SAMPLES, "supervised", "unsupervised"),
    ];
    let mut lines = Vec::new();
    for (group, samples, ours, base) in groups {
        let o = median(&format!("{group}/{ours}"), samples);
        let b = median(&format!("{group}/{base}"), samples);
        if let (Some(o), Some(b)) = (o, b) {
            let ratio = o / b;
            let verdict = if ratio <= 1.5 { "met" } else { "MISSED" };
            lines.push(format!(
                "{group:<8} {ours} {:>10}  {base} {:>10}  ratio {ratio:>5.2}  goal ratio <= 1.5: {verdict}",
                human(o),
                human(b)
            ));
        }
    }
    lines.extend(
        ALTERNATING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned(),
    );
    lines.extend(
        MEMORY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned(),
    );
    if !lines.is_empty() {
        println!(
            "\nMedians per iteration (the last samples of each routine), of the alternating \
             rounds, and memory:"
        );
        for line in lines {
            println!("  {line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// `kill(2)` of the crate's pid and signal: the benches use nix's calls without its types in the
/// crate's API (the `nix` feature is off, as a user's default build has it).
fn kill(pid: Pid, signal: Signal) -> nix::Result<()> {
    let signal = nix::sys::signal::Signal::try_from(signal.as_raw())?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.as_raw()), signal)
}

/// A `NAME:   N kB` line of `/proc/PID/status` or `/proc/PID/smaps_rollup`, in KiB.
fn kib(pid: Pid, file: &str, name: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).expect("read /proc");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/{file}"));
    let number = line.trim().trim_end_matches("kB").trim();
    number.parse().expect("a number of kB")
}

fn memory_of(what: &str, pid: Pid) -> String {
    format!(
        "{what:<20} VmRSS {:>5} KiB  RssFile {:>5} KiB  RssAnon {:>4} KiB  Pss {:>5} KiB  Private_Dirty {:>4} KiB",
        kib(pid, "status", "VmRSS"),
        kib(pid, "status", "RssFile"),
        kib(pid, "status", "RssAnon"),
        kib(pid, "smaps_rollup", "Pss"),
        kib(pid, "smaps_rollup", "Private_Dirty"),
    )
}

fn measure_memory() {
    assert_single_threaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    let (mut read, write) = (File::from(read), File::from(write));
    let supervised = daemon(&dir.path().join("rss-sup.pid"), &write, true);
    let alone = daemon(&dir.path().join("rss-alone.pid"), &write, false);
    let mut lines = vec![memory_of("this bench process", Pid::this())];
    {
        let running = start(&supervised, &mut read);
        let Status::Supervised {
            pid,
            child: Some(child),
            ..
        } = supervised.status().expect("status")
        else {
            panic!("not supervised")
        };
        lines.push(memory_of("supervisor", pid));
        let rss = kib(pid, "status", "VmRSS");
        let verdict = if rss < 1024 { "met" } else { "MISSED" };
        lines.push(format!(
            "supervisor VmRSS {rss} KiB  goal under 1024 KiB: {verdict}"
        ));
        lines.push(memory_of("its child", child));
        stop(running);
    }
    {
        let running = start(&alone, &mut read);
        let pid = alone.pid().expect("pid").expect("running");
        lines.push(memory_of("unsupervised daemon", pid));
        stop(running);
    }
    println!("Memory:");
    for line in &lines {
        println!("  {line}");
    }
    *MEMORY.lock().unwrap_or_else(|e| e.into_inner()) = lines;
    assert_single_threaded();
}

// ---------------------------------------------------------------------------------------------
// Alternating rounds: criterion measures one routine after the other, and on a busy two-core
// machine the load can change from one to the next. Here each round measures all four once.

const ROUNDS: usize = 200;

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn alternating() {
    assert_single_threaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    let (mut read, write) = (File::from(read), File::from(write));
    let supervised = daemon(&dir.path().join("alt-sup.pid"), &write, true);
    let alone = daemon(&dir.path().join("alt-alone.pid"), &write, false);
    let nanos = |t0: Instant| t0.elapsed().as_nanos() as f64;
    let (mut respawn, mut started) = (Vec::new(), Vec::new());
    let (mut stop_supervised, mut stop_alone) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        // A plain start, until start() returns; then its stop.
        let t0 = Instant::now();
        alone.start().expect("start");
        started.push(nanos(t0));
        read_byte(&mut read);
        let running = Running(&alone);
        let t0 = Instant::now();
        stop(running);
        stop_alone.push(nanos(t0));

        // A supervised daemon: one crash and the next child's first byte; then its stop.
        let running = start(&supervised, &mut read);
        let sup = supervised.pid().expect("pid").expect("running");
        let t0 = Instant::now();
        kill(sup, Signal::SIGUSR1).expect("kill");
        read_byte(&mut read);
        respawn.push(nanos(t0));
        let t0 = Instant::now();
        stop(running);
        stop_supervised.push(nanos(t0));
    }
    let lines = [
        ("respawn", "supervised", &mut respawn, "start", &mut started),
        (
            "stop",
            "supervised",
            &mut stop_supervised,
            "unsupervised",
            &mut stop_alone,
        ),
    ]
    .map(|(group, ours, o, base, b)| {
        let (o, b) = (median_of(o), median_of(b));
        let verdict = if o / b <= 1.5 { "met" } else { "MISSED" };
        format!(
            "{group:<8} {ours} {:>10}  {base} {:>10}  ratio {:>5.2}  goal ratio <= 1.5: {verdict} ({ROUNDS} alternating rounds)",
            human(o),
            human(b),
            o / b
        )
    });
    println!("Medians of {ROUNDS} alternating rounds:");
    for line in &lines {
        println!("  {line}");
    }
    ALTERNATING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(lines);
    assert_single_threaded();
}

/// The alternating medians, printed again in the summary.
static ALTERNATING: Mutex<Vec<String>> = Mutex::new(Vec::new());

// ---------------------------------------------------------------------------------------------
// The groups.

fn bench_respawn(c: &mut Criterion) {
    measure_memory();
    alternating();
    assert_single_threaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    let (mut read, write) = (File::from(read), File::from(write));
    let supervised = daemon(&dir.path().join("respawn.pid"), &write, true);
    let alone = daemon(&dir.path().join("start.pid"), &write, false);

    let mut group = c.benchmark_group("respawn");
    group
        .sample_size(RESPAWN_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    {
        let running = start(&supervised, &mut read);
        let sup = supervised.pid().expect("pid").expect("running");
        group.bench_function("supervised", |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    kill(sup, Signal::SIGUSR1).expect("kill");
                    read_byte(&mut read);
                }
                record("respawn/supervised", iters, t0.elapsed())
            })
        });
        match supervised.status().expect("status") {
            Status::Supervised { pid, restarts, .. } => {
                assert_eq!(pid, sup, "one supervisor throughout");
                assert!(restarts > 0);
            }
            other => panic!("not supervised: {other:?}"),
        }
        stop(running);
    }
    group.bench_function("start", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                alone.start().expect("start");
                total += t0.elapsed();
                read_byte(&mut read);
                stop(Running(&alone));
            }
            record("respawn/start", iters, total)
        })
    });
    group.finish();
    assert_single_threaded();
}

fn bench_stop(c: &mut Criterion) {
    assert_single_threaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    let (mut read, write) = (File::from(read), File::from(write));
    let daemons = [
        (
            "stop/supervised",
            daemon(&dir.path().join("sup.pid"), &write, true),
        ),
        (
            "stop/unsupervised",
            daemon(&dir.path().join("alone.pid"), &write, false),
        ),
    ];

    let mut group = c.benchmark_group("stop");
    group
        .sample_size(STOP_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (id, daemon) in &daemons {
        let name = id.rsplit('/').next().expect("a name");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let running = start(daemon, &mut read);
                    let t0 = Instant::now();
                    stop(running);
                    total += t0.elapsed();
                    assert!(!daemon.pidfile().exists(), "stop() left the pidfile");
                }
                record(id, iters, total)
            })
        });
    }
    group.finish();
    assert_single_threaded();
}

criterion_group!(benches, bench_respawn, bench_stop);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
