//! Message daemons: throughput of a trivial handler on pools of 1, 4 and 16 workers, beside the
//! same messages pushed through a bare bounded crossbeam channel into as many threads; and the
//! CPU that an idle message daemon burns.
//!
//! `cargo bench --bench messages`. Before criterion's groups (each holds `daemons` and its
//! baseline), it prints the idle CPU figure and a comparison of alternating runs, which a busy
//! two-core machine disturbs far less than two groups measured one after the other.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use daemons::{Daemon, Stopped};

#[path = "programs/bare_pool.rs"]
mod bare_pool;
use nix::sys::signal::{Signal, raise};

/// The handler's work: next to nothing, so that the pool's own cost is what is measured.
fn work(n: u64, sink: &AtomicU64) {
    sink.fetch_add(black_box(n) & 1, Ordering::Relaxed);
}

/// `messages` through a foreground daemon: `get` hands out `messages` numbers, then asks the
/// daemon to stop (SIGTERM to this process), and `run()` returns once every one is handled.
fn through_daemon(pool: usize, messages: u64, pidfile: &Path) -> Duration {
    let sink = Arc::new(AtomicU64::new(0));
    let handled = sink.clone();
    let mut next = 0u64;
    let daemon = Daemon::builder()
        .pidfile(pidfile)
        .messages(
            move || {
                if next == messages {
                    next += 1;
                    let _ = raise(Signal::SIGTERM);
                }
                (next < messages).then(|| {
                    next += 1;
                    next
                })
            },
            move |n: u64| work(n, &handled),
        )
        .pool_size(pool)
        .idle_time(Duration::from_secs(60))
        .build()
        .expect("a valid daemon");
    let started = Instant::now();
    daemon.run().expect("a clean run");
    started.elapsed()
}

/// The same through a crossbeam channel of `capacity` and `pool` plain threads.
fn through_channel(pool: usize, capacity: usize, messages: u64) -> Duration {
    let sink = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    bare_pool::run(pool, capacity, messages, move |n| work(n, &sink));
    started.elapsed()
}

fn throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("bench.pid");
    for pool in [1usize, 4, 16] {
        let mut group = c.benchmark_group(format!("messages/pool-{pool}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(4));
        // Each sample runs a whole daemon over many messages, so start-up is amortised.
        group.bench_function(BenchmarkId::new("daemons", pool), |b| {
            b.iter_custom(|iters| {
                let sent = iters.max(MIN_MESSAGES);
                scale(through_daemon(pool, sent, &pidfile), sent, iters)
            })
        });
        group.bench_function(BenchmarkId::new("crossbeam-baseline", pool), |b| {
            b.iter_custom(|iters| {
                let sent = iters.max(MIN_MESSAGES);
                scale(through_channel(pool, pool, sent), sent, iters)
            })
        });
        group.finish();
    }
}

/// A run sends at least this many messages, so that starting the pool is amortised.
const MIN_MESSAGES: u64 = 10_000;

/// The time `iters` messages take, from the time `sent` took.
fn scale(elapsed: Duration, sent: u64, iters: u64) -> Duration {
    elapsed.mul_f64(iters as f64 / sent as f64)
}

/// The CPU an idle message daemon (default idle time, 100 ms) uses per second of wall time,
/// read from /proc/PID/schedstat (nanoseconds on CPU), printed for the record. The daemon is
/// started from this process, so this runs first: `start()` forks, and refuses to while other
/// threads run (the throughput runs below start some).
fn idle_cpu() {
    assert_single_threaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::builder()
        .pidfile(dir.path().join("idle.pid"))
        .messages(|| None::<u64>, |_n: u64| {})
        .build()
        .expect("a valid daemon");
    let pid = daemon.start().expect("start the idle daemon");
    let cpu = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
        stat.split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .expect("a number")
    };
    // Let start-up settle, then measure a few seconds of idling.
    thread::sleep(Duration::from_millis(200));
    let (before, t0) = (cpu(), Instant::now());
    thread::sleep(Duration::from_secs(3));
    let (after, wall) = (cpu(), t0.elapsed());
    let per_second = (after - before) as f64 / wall.as_secs_f64() / 1e6;
    println!("idle message daemon: {per_second:.3} ms of CPU per second (goal: under 1 ms)");
    let stopped = daemon.stop().expect("stop the idle daemon");
    assert!(
        matches!(stopped, Stopped::Exited { .. }),
        "the idle daemon did not exit on SIGTERM: {stopped:?}"
    );
}

/// `start()` needs a single-threaded process.
fn assert_single_threaded() {
    let threads = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count();
    assert_eq!(
        threads, 1,
        "the bench process must not run threads before it forks"
    );
}

/// The comparison the goal is stated in, robust to a noisy machine: daemon and baseline runs
/// alternate, many times over, and the medians are compared. Two baselines: a channel with
/// room for `pool` messages (up to twice `pool` in flight), and a rendezvous channel, whose
/// backpressure is the pool's own (a message is handed over only to a worker that is free).
fn interleaved() {
    const RUNS: usize = 15;
    const MESSAGES: u64 = 200_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("interleaved.pid");
    let per_message = |d: Duration| d.as_nanos() as f64 / MESSAGES as f64;
    println!("throughput, {RUNS} alternating runs of {MESSAGES} messages (median ns/message):");
    for pool in [1usize, 4, 16] {
        let (mut ours, mut roomy, mut rendezvous) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            ours.push(per_message(through_daemon(pool, MESSAGES, &pidfile)));
            roomy.push(per_message(through_channel(pool, pool, MESSAGES)));
            rendezvous.push(per_message(through_channel(pool, 0, MESSAGES)));
        }
        let ours = median(&mut ours);
        let (roomy, rendezvous) = (median(&mut roomy), median(&mut rendezvous));
        println!(
            "  pool {pool:>2}: daemons {ours:7.1} | bounded({pool}) {roomy:7.1}, ratio {:.2} | bounded(0) {rendezvous:7.1}, ratio {:.2}",
            roomy / ours,
            rendezvous / ours,
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn benches(c: &mut Criterion) {
    // Before anything that starts a thread in this process.
    idle_cpu();
    interleaved();
    throughput(c);
}

criterion_group!(group, benches);
criterion_main!(group);
