//! Benchmarks of the daemon life cycle, each beside a baseline made of the bare system calls.
//!
//! - `start`: `Daemon::start()` until it returns `Ok(pid)`, against pipe2 + fork + setsid + fork
//!   + flock of a pidfile + one byte through the pipe, done by hand.
//! - `stop`: `Daemon::stop()` until the daemon is gone and its pidfile removed, against
//!   pidfd_open + kill(SIGTERM) + poll on the pidfd of a bare daemon.
//! - `sighup`: from `kill(pid, SIGHUP)` to the daemon's handler having written one byte to a
//!   pipe, against a bare daemon whose handler writes that byte from signal context.
//! - `step`: the cost of one empty step in `Daemon::run()`, against a bare loop on a flag.
//!
//! `start()` refuses to fork a process that runs several threads, so nothing here may start a
//! thread before the forking groups are done: criterion without its default features (no rayon)
//! runs on the main thread, and [`assert_single_threaded`] checks it. The `step` group runs the
//! engine in this process, which installs signal handlers (SIGTERM among them) and a control
//! thread for the length of each run: it comes last.
//!
//! Every daemon started here is stopped or killed before its group ends, and waited for through a
//! pidfd: the daemons are grandchildren that belong to init, which reaps them lazily.

// The benchmarks play the operator: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use daemons::{Daemon, Pid, Signal, Stopped};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, raise, sigaction};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pause, pipe2, setsid};

/// An idle step daemon: it sleeps an hour between steps, so it only ever waits for signals.
fn idle_daemon(pidfile: &Path) -> Daemon {
    Daemon::builder()
        .pidfile(pidfile)
        .step(|| {})
        .interval(Duration::from_secs(3600))
        .build()
        .expect("a valid daemon")
}

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// `start()` and the bare fork both need a single-threaded process.
fn assert_single_threaded() {
    assert_eq!(
        thread_count(),
        1,
        "the bench process must not run threads before it forks"
    );
}

// ---------------------------------------------------------------------------------------------
// The summary: criterion reports each function alone; the goals are about ratios.

/// Samples per group. criterion calls a routine for its warm-up first, then once per sample, so
/// the last `SAMPLES` calls recorded for a routine are the samples its report is made of.
const START_SAMPLES: usize = 40;
const STOP_SAMPLES: usize = 40;
const SIGHUP_SAMPLES: usize = 50;
const STEP_SAMPLES: usize = 10;

/// Nanoseconds per iteration of every call of each routine, in call order.
static RECORDED: Mutex<Vec<(String, Vec<f64>)>> = Mutex::new(Vec::new());

/// Note the time a routine's call measured for `iters` iterations, and hand it to criterion.
fn record(id: &str, iters: u64, elapsed: Duration) -> Duration {
    let per_iter = elapsed.as_nanos() as f64 / iters.max(1) as f64;
    let mut recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    match recorded.iter_mut().find(|(name, _)| name == id) {
        Some((_, times)) => times.push(per_iter),
        None => recorded.push((id.to_string(), vec![per_iter])),
    }
    elapsed
}

/// The median time per iteration over a routine's last `samples` calls, if it ran that often
/// (it did not when filtered out, or under `cargo test`, which runs each routine once).
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

/// One line per group: both medians, their ratio, and whether the goal holds.
fn summary() {
    let groups = [
        ("start", START_SAMPLES, "ratio <= 1.5", 1.5),
        ("stop", STOP_SAMPLES, "ratio <= 1.5", 1.5),
        ("step", STEP_SAMPLES, "ratio <= 2", 2.0),
    ];
    let mut lines = Vec::new();
    for (group, samples, goal, limit) in groups {
        let ours = median(&format!("{group}/daemons"), samples);
        let base = median(&format!("{group}/baseline"), samples);
        if let (Some(ours), Some(base)) = (ours, base) {
            let ratio = ours / base;
            let verdict = if ratio <= limit { "met" } else { "MISSED" };
            lines.push(format!(
                "{group:<7} daemons {:>10}  baseline {:>10}  ratio {ratio:>5.2}  goal {goal}: {verdict}",
                human(ours),
                human(base)
            ));
        }
    }
    if let Some(ours) = median("sighup/daemons", SIGHUP_SAMPLES) {
        let base = median("sighup/baseline", SIGHUP_SAMPLES).map_or(String::new(), |base| {
            format!("  baseline {:>10}  ratio {:>5.2}", human(base), ours / base)
        });
        let verdict = if ours < 1e6 { "met" } else { "MISSED" };
        lines.push(format!(
            "sighup  daemons {:>10}{base}  goal median < 1 ms: {verdict}",
            human(ours)
        ));
    }
    if !lines.is_empty() {
        println!("\nMedians per iteration (the last samples of each routine):");
        for line in lines {
            println!("  {line}");
        }
    }
}

/// `kill(2)` of the crate's pid and signal: the benches use nix's calls without its types in the
/// crate's API (the `nix` feature is off, as a user's default build has it).
fn kill(pid: Pid, signal: Signal) -> nix::Result<()> {
    let signal = nix::sys::signal::Signal::try_from(signal.as_raw())?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.as_raw()), signal)
}

// ---------------------------------------------------------------------------------------------
// Process handling shared by the groups.

fn pidfd_open(pid: Pid) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Block until the process behind `pidfd` has exited.
fn wait_exit(pidfd: &OwnedFd) {
    loop {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("poll on a pidfd: {e}"),
        }
    }
}

/// Stops a daemon started by the library when dropped, so that a panicking bench leaves nothing
/// running.
struct Running<'a>(&'a Daemon);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// Start the library's daemon; check that it runs.
fn start(daemon: &Daemon) -> Running<'_> {
    daemon.start().expect("start");
    Running(daemon)
}

/// Stop the library's daemon and check that it went gracefully.
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
// The baseline daemon: the daemon(7) procedure and nothing else.

/// The write end of the bare daemon's SIGHUP pipe, for its signal handler.
static HUP_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn write_hup(_: libc::c_int) {
    let fd = HUP_FD.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; the buffer is a static byte.
    unsafe { libc::write(fd, b"h".as_ptr().cast(), 1) };
}

/// A bare daemon: killed (SIGKILL) and waited for when dropped, unless it is already gone.
struct Bare {
    pid: Pid,
    pidfile: PathBuf,
    gone: bool,
}

impl Bare {
    /// The timed part of the `stop` baseline: SIGTERM, then a poll on a pidfd until it exits.
    fn terminate(mut self) {
        let pidfd = pidfd_open(self.pid);
        kill(self.pid, Signal::SIGTERM).expect("kill");
        wait_exit(&pidfd);
        self.gone = true;
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        if !self.gone {
            let pidfd = pidfd_open(self.pid);
            let _ = kill(self.pid, Signal::SIGKILL);
            wait_exit(&pidfd);
        }
        let _ = fs::remove_file(&self.pidfile);
    }
}

/// The timed part of the `start` baseline: pipe2, fork, setsid, fork, the middle process exits
/// and is reaped, the daemon locks its pidfile, writes its pid and one byte to the pipe, which
/// this process reads. With `hup`, the daemon first installs a SIGHUP handler that writes one
/// byte to that descriptor.
fn bare_spawn(pidfile: &Path, hup: Option<RawFd>) {
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    // SAFETY: the groups that call this check that the process is single-threaded, and the child
    // only runs `bare_daemon`, which never returns.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => {
            drop(write);
            waitpid(child, None).expect("waitpid");
            let mut byte = [0u8; 1];
            let n = File::from(read).read(&mut byte).expect("read");
            assert_eq!(n, 1, "the bare daemon failed before reporting");
        }
        ForkResult::Child => {
            drop(read);
            bare_daemon(pidfile, write, hup)
        }
    }
}

/// The bare daemon's side: never returns into the bench's code.
fn bare_daemon(pidfile: &Path, report: OwnedFd, hup: Option<RawFd>) -> ! {
    let exit = |code| -> ! {
        // SAFETY: `_exit` leaves this copy of the bench without running its exit handlers or
        // flushing buffers a second time.
        unsafe { libc::_exit(code) }
    };
    if setsid().is_err() {
        exit(1);
    }
    // SAFETY: this process is a fresh fork of a single-threaded one.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => exit(0),
        Ok(ForkResult::Child) => {}
        Err(_) => exit(1),
    }
    if let Some(fd) = hup {
        HUP_FD.store(fd, Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(write_hup),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handler only calls write(2), which is async-signal-safe.
        if unsafe { sigaction(nix::sys::signal::Signal::SIGHUP, &action) }.is_err() {
            exit(1);
        }
    }
    let Ok(mut file) = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(pidfile)
    else {
        exit(1)
    };
    if file.try_lock().is_err()
        || file
            .write_all(format!("{}\n", std::process::id()).as_bytes())
            .is_err()
        || File::from(report).write_all(b"R").is_err()
    {
        exit(1);
    }
    // Keep the locked pidfile open until a signal ends this process.
    loop {
        pause();
    }
}

/// The pid a bare daemon wrote in its pidfile.
fn bare_pid(pidfile: &Path) -> Pid {
    let text = fs::read_to_string(pidfile).expect("read the bare pidfile");
    Pid::from_raw(text.trim().parse().expect("a pid"))
}

/// Start a bare daemon, untimed.
fn bare_start(pidfile: &Path, hup: Option<RawFd>) -> Bare {
    bare_spawn(pidfile, hup);
    Bare {
        pid: bare_pid(pidfile),
        pidfile: pidfile.to_path_buf(),
        gone: false,
    }
}

/// The bare daemons must die of SIGTERM: no handler may be installed in this process (the `step`
/// group, which installs one, runs last).
fn assert_default_sigterm() {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action only reads the current one into `old`.
    let rc = unsafe { libc::sigaction(libc::SIGTERM, std::ptr::null(), old.as_mut_ptr()) };
    assert_eq!(rc, 0, "sigaction");
    // SAFETY: sigaction succeeded, so it filled `old`.
    let old = unsafe { old.assume_init() };
    assert_eq!(old.sa_sigaction, libc::SIG_DFL, "SIGTERM must be SIG_DFL");
}

// ---------------------------------------------------------------------------------------------
// The groups.

fn bench_start(c: &mut Criterion) {
    assert_single_threaded();
    assert_default_sigterm();
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = idle_daemon(&dir.path().join("start.pid"));
    let bare_pidfile = dir.path().join("bare-start.pid");

    let mut group = c.benchmark_group("start");
    group
        .sample_size(START_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("daemons", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let running = start(&daemon);
                total += t0.elapsed();
                stop(running);
            }
            record("start/daemons", iters, total)
        })
    });
    group.bench_function("baseline", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                bare_spawn(&bare_pidfile, None);
                total += t0.elapsed();
                drop(Bare {
                    pid: bare_pid(&bare_pidfile),
                    pidfile: bare_pidfile.clone(),
                    gone: false,
                });
            }
            record("start/baseline", iters, total)
        })
    });
    group.finish();
    assert_single_threaded();
}

fn bench_stop(c: &mut Criterion) {
    assert_single_threaded();
    assert_default_sigterm();
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("stop.pid");
    let daemon = idle_daemon(&pidfile);
    let bare_pidfile = dir.path().join("bare-stop.pid");

    let mut group = c.benchmark_group("stop");
    group
        .sample_size(STOP_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("daemons", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let running = start(&daemon);
                let t0 = Instant::now();
                stop(running);
                total += t0.elapsed();
                assert!(!pidfile.exists(), "stop() left the pidfile behind");
            }
            record("stop/daemons", iters, total)
        })
    });
    group.bench_function("baseline", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let bare = bare_start(&bare_pidfile, None);
                let t0 = Instant::now();
                bare.terminate();
                total += t0.elapsed();
            }
            record("stop/baseline", iters, total)
        })
    });
    group.finish();
    assert_single_threaded();
}

fn bench_sighup(c: &mut Criterion) {
    assert_single_threaded();
    assert_default_sigterm();
    let dir = tempfile::tempdir().expect("tempdir");

    // Close-on-exec, like everything Rust opens: the daemon's descriptor cleanup keeps it.
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    let mut read = File::from(read);
    let mut write = File::from(write);
    let bare_write = write.try_clone().expect("dup");
    let daemon = Daemon::builder()
        .pidfile(dir.path().join("sighup.pid"))
        .on(Signal::SIGHUP, move || {
            let _ = write.write_all(b"h");
        })
        .step(|| {})
        .interval(Duration::from_secs(3600))
        .build()
        .expect("a valid daemon");

    let mut group = c.benchmark_group("sighup");
    group
        .sample_size(SIGHUP_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // One SIGHUP at a time: the next is sent once the handler has run, so none coalesce.
    let mut hup = |pid: Pid, iters: u64| {
        let mut byte = [0u8; 1];
        let t0 = Instant::now();
        for _ in 0..iters {
            kill(pid, Signal::SIGHUP).expect("kill");
            read.read_exact(&mut byte).expect("the handler's byte");
        }
        t0.elapsed()
    };
    {
        let running = start(&daemon);
        let pid = daemon.pid().expect("pid").expect("running");
        group.bench_function("daemons", |b| {
            b.iter_custom(|iters| record("sighup/daemons", iters, hup(pid, iters)))
        });
        stop(running);
    }
    {
        let bare = bare_start(
            &dir.path().join("bare-sighup.pid"),
            Some(bare_write.as_raw_fd()),
        );
        group.bench_function("baseline", |b| {
            b.iter_custom(|iters| record("sighup/baseline", iters, hup(bare.pid, iters)))
        });
        bare.terminate();
    }
    group.finish();
    assert_single_threaded();
}

/// Run the engine in the foreground for at least `n` empty steps; the `n`th raises SIGTERM.
/// Returns the time `run()` took and the steps actually executed (a few more than `n`: the loop
/// goes on until the signal thread has seen the signal).
fn engine_steps(pidfile: &Path, n: u64) -> (Duration, u64) {
    let executed = Arc::new(AtomicU64::new(0));
    let seen = executed.clone();
    let mut count = 0u64;
    let daemon = Daemon::builder()
        .pidfile(pidfile)
        .step(move || {
            count += 1;
            seen.store(count, Ordering::Relaxed);
            if count == n {
                let _ = raise(nix::sys::signal::Signal::SIGTERM);
            }
        })
        .build()
        .expect("a valid daemon");
    let t0 = Instant::now();
    daemon.run().expect("run");
    (t0.elapsed(), executed.load(Ordering::Relaxed))
}

/// The same step body in a bare loop on a flag, which the `n`th step sets.
// `black_box(step())` is the loop as the baseline is defined: the step stays opaque.
#[allow(clippy::unit_arg)]
fn bare_steps(n: u64) -> (Duration, u64) {
    let flag = Arc::new(AtomicBool::new(false));
    let executed = Arc::new(AtomicU64::new(0));
    let (stop, seen) = (black_box(flag.clone()), black_box(executed.clone()));
    let mut count = 0u64;
    let mut step = move || {
        count += 1;
        seen.store(count, Ordering::Relaxed);
        if count == n {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let t0 = Instant::now();
    while !flag.load(Ordering::Relaxed) {
        black_box(step());
    }
    (t0.elapsed(), executed.load(Ordering::Relaxed))
}

/// At least this many steps per measurement, so that the engine's set-up (pidfile, signal
/// thread) weighs less than 1% of it.
const MIN_STEPS: u64 = 5_000_000;

/// Time per step, from a run of at least `MIN_STEPS`, scaled to `iters` steps.
fn per_step(iters: u64, run: impl FnOnce(u64) -> (Duration, u64)) -> Duration {
    let (elapsed, executed) = run(iters.max(MIN_STEPS));
    assert!(executed >= iters.max(MIN_STEPS));
    let nanos = elapsed.as_nanos() * u128::from(iters) / u128::from(executed);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn bench_step(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("step.pid");

    let mut group = c.benchmark_group("step");
    group
        .sample_size(STEP_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("daemons", |b| {
        b.iter_custom(|iters| {
            let elapsed = per_step(iters, |n| engine_steps(&pidfile, n));
            record("step/daemons", iters, elapsed)
        })
    });
    group.bench_function("baseline", |b| {
        b.iter_custom(|iters| record("step/baseline", iters, per_step(iters, bare_steps)))
    });
    group.finish();
}

criterion_group!(benches, bench_start, bench_stop, bench_sighup, bench_step);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
