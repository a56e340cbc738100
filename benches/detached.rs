//! The threaded message pool in a detached daemon, timed by the daemon itself from its first
//! `get` to its last handled message (pool of 4, a million trivial messages), beside a bare
//! bounded crossbeam channel of the same size feeding 4 threads in this process, timed the same
//! way, and beside the same pool in the foreground (`run()` in this process).
//!
//! `cargo bench --bench detached`. Runs alternate, and the medians are compared; the context
//! switches of the daemon's threads are printed beside. `DETACHED_RUNS` (default 9) and
//! `DETACHED_MESSAGES` (default 1,000,000) change the sizes.
//!
//! Measured on the 2-core machine of the project, the pool's workers waiting with a blocking
//! `recv()` (a park without a timeout) gave 0.53x-0.65x detached and 0.78x-0.87x in the
//! foreground; the same code with only `recv_timeout` in the workers gave 0.91x and 1.09x; the
//! pool as it is (workers that retire after 10 s idle, so `recv_timeout`) 0.89x-0.93x detached.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use daemons::Daemon;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, raise};

const POOL: usize = 4;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The handler's work: next to nothing, so that the pool's own cost is what is measured.
fn work(n: u64, sink: &AtomicU64) {
    sink.fetch_add(black_box(n) & 1, Ordering::Relaxed);
}

/// A message daemon that hands out `messages` numbers, then nothing; the handler of the last
/// one writes the time since the first `get` to `result`, in nanoseconds. With `stop`, that
/// handler also asks the daemon to stop (for the foreground run).
fn timed_daemon(pidfile: &Path, result: &Path, messages: u64, stop: bool) -> Daemon {
    let first: Arc<OnceLock<(Instant, u64)>> = Arc::default();
    let started = first.clone();
    let handled = Arc::new(AtomicU64::new(0));
    let sink = Arc::new(AtomicU64::new(0));
    let result = result.to_path_buf();
    let mut next = 0u64;
    Daemon::builder()
        .pidfile(pidfile)
        .messages(
            move || {
                started.get_or_init(|| (Instant::now(), switches()));
                (next < messages).then(|| {
                    next += 1;
                    next
                })
            },
            move |n: u64| {
                work(n, &sink);
                if handled.fetch_add(1, Ordering::AcqRel) + 1 == messages {
                    let (since, before) = first.get().copied().expect("a first get");
                    let took = since.elapsed();
                    let line = format!("{} {}", took.as_nanos(), switches() - before);
                    let _ = fs::write(&result, line);
                    if stop {
                        let _ = raise(Signal::SIGTERM);
                    }
                }
            },
        )
        .pool_size(POOL)
        .idle_time(Duration::from_secs(60))
        .build()
        .expect("a valid daemon")
}

/// Context switches, voluntary and not, of every thread of this process so far.
fn switches() -> u64 {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The daemon's figures: the time from its first `get` to its last message handled, and the
/// context switches of its threads meanwhile.
fn read_result(result: &Path) -> Option<(Duration, u64)> {
    let text = fs::read_to_string(result).ok()?;
    let (nanos, switches) = text.trim().split_once(' ')?;
    Some((
        Duration::from_nanos(nanos.parse().ok()?),
        switches.parse().ok()?,
    ))
}

/// Start the daemon, wait for its own figure, stop it.
fn detached(dir: &Path, messages: u64) -> (Duration, u64) {
    assert_single_threaded();
    let result = dir.join("detached.ns");
    let _ = fs::remove_file(&result);
    // The daemon stops itself after its last message, and this process waits for its exit on
    // a pidfd, asleep: nothing here competes with the daemon for the two cores while it runs.
    let daemon = timed_daemon(&dir.join("detached.pid"), &result, messages, true);
    let pid = daemon.start().expect("start the daemon");
    let pidfd = pidfd_open(pid.as_raw());
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    poll(
        &mut fds,
        PollTimeout::try_from(120_000i32).expect("a timeout"),
    )
    .expect("wait for the daemon's exit");
    read_result(&result).expect("the daemon's figure")
}

/// The same daemon in the foreground, timed the same way.
fn foreground(dir: &Path, messages: u64) -> (Duration, u64) {
    let result = dir.join("foreground.ns");
    let _ = fs::remove_file(&result);
    let daemon = timed_daemon(&dir.join("foreground.pid"), &result, messages, true);
    daemon.run().expect("a clean run");
    read_result(&result).expect("the daemon's figure")
}

/// A bounded crossbeam channel of `POOL` feeding `POOL` threads, from the first send to the
/// last message handled.
fn channel(messages: u64) -> Duration {
    let sink = Arc::new(AtomicU64::new(0));
    let handled = Arc::new(AtomicU64::new(0));
    let done: Arc<OnceLock<Instant>> = Arc::default();
    let (sender, receiver) = crossbeam_channel::bounded::<u64>(POOL);
    let workers: Vec<_> = (0..POOL)
        .map(|_| {
            let (receiver, sink, handled, done) = (
                receiver.clone(),
                sink.clone(),
                handled.clone(),
                done.clone(),
            );
            thread::spawn(move || {
                for n in receiver {
                    work(n, &sink);
                    if handled.fetch_add(1, Ordering::AcqRel) + 1 == messages {
                        done.get_or_init(Instant::now);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    for n in 1..=messages {
        sender.send(n).expect("workers alive");
    }
    drop(sender);
    for worker in workers {
        worker.join().expect("worker");
    }
    done.get().expect("all handled").duration_since(started)
}

fn pidfd_open(pid: i32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor was just returned by the kernel and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn assert_single_threaded() {
    let threads = fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count();
    assert_eq!(
        threads, 1,
        "the bench process must not run threads when it forks"
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (a filter) is ignored.
    let runs = env_number("DETACHED_RUNS", 9) as usize;
    let messages = env_number("DETACHED_MESSAGES", 1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let per_message = |d: Duration| d.as_nanos() as f64 / messages as f64;
    let (mut ours, mut fg, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_cs, mut fg_cs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (took, cs) = detached(dir.path(), messages);
        ours.push(per_message(took));
        ours_cs.push(cs as f64 / messages as f64);
        bare.push(per_message(channel(messages)));
        let (took, cs) = foreground(dir.path(), messages);
        fg.push(per_message(took));
        fg_cs.push(cs as f64 / messages as f64);
        // The foreground run's signal thread and keeper are gone once `run()` returns; give
        // the kernel a moment to reap them before the next fork checks.
        let end = Instant::now() + Duration::from_secs(5);
        while fs::read_dir("/proc/self/task").map_or(1, |d| d.count()) > 1 && Instant::now() < end {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let (ours, fg, bare) = (median(&mut ours), median(&mut fg), median(&mut bare));
    println!(
        "pool of {POOL}, {messages} trivial messages, median of {runs} alternating runs (ns/message):"
    );
    println!(
        "  detached daemon {ours:6.1} | foreground daemon {fg:6.1} | bounded({POOL}) channel {bare:6.1}"
    );
    println!(
        "  detached / channel: {:.2}x, foreground / channel: {:.2}x (goal: at least 0.8x)",
        bare / ours,
        bare / fg
    );
    println!(
        "  context switches per message: detached {:.2}, foreground {:.2}",
        median(&mut ours_cs),
        median(&mut fg_cs)
    );
}
