//! Async message daemons (the `tokio` feature):
//!
//! - footprint: a detached `messages_async` daemon whose 10,000 handlers each await a 200 ms
//!   sleep, pool_size 10,000: its wall time from the first `get` to the last message handled,
//!   its peak RSS (`VmHWM`) and its most threads, beside the threaded pool of the same size in
//!   the same run. The threaded pool stops at 4096 threads, so both are also measured at 4096.
//! - throughput: trivial handlers through `messages_async` in the foreground, beside a bare
//!   tokio loop that spawns a task per message under a semaphore of the same size, in
//!   alternating runs (median).
//!
//! `cargo bench -p daemons-benches --features tokio --bench asynchronous`; `ASYNC_RUNS` (default
//! 9) sets how many alternating throughput runs there are.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use daemons::{Daemon, DaemonBuilder, Pid};
use nix::sys::signal::{Signal, raise};
use tokio::sync::Semaphore;

const SLEEP: Duration = Duration::from_millis(200);

/// What the daemon's last handler writes: the time since the first `get`.
struct Timer {
    first: OnceLock<Instant>,
    handled: AtomicU64,
}

impl Timer {
    fn fetched(&self) {
        self.first.get_or_init(Instant::now);
    }

    fn handled(&self, messages: u64, result: &Path) {
        if self.handled.fetch_add(1, Ordering::AcqRel) + 1 == messages {
            let took = self.first.get().map_or(Duration::ZERO, Instant::elapsed);
            let _ = fs::write(result, took.as_nanos().to_string());
        }
    }
}

/// `get` hands out `messages` numbers, then nothing.
fn numbers(messages: u64, timer: &Arc<Timer>) -> impl FnMut() -> Option<u64> + Send + 'static {
    let timer = timer.clone();
    let mut next = 0u64;
    move || {
        timer.fetched();
        (next < messages).then(|| {
            next += 1;
            next
        })
    }
}

fn sleepers_async(b: DaemonBuilder, messages: u64, result: &Path) -> DaemonBuilder {
    let timer = Arc::new(Timer {
        first: OnceLock::new(),
        handled: AtomicU64::new(0),
    });
    let mut get = numbers(messages, &timer);
    let result = result.to_path_buf();
    b.messages_async(
        move || std::future::ready(get()),
        move |_n: u64| {
            let (timer, result) = (timer.clone(), result.clone());
            async move {
                tokio::time::sleep(SLEEP).await;
                timer.handled(messages, &result);
            }
        },
    )
}

fn sleepers_threaded(b: DaemonBuilder, messages: u64, result: &Path) -> DaemonBuilder {
    let timer = Arc::new(Timer {
        first: OnceLock::new(),
        handled: AtomicU64::new(0),
    });
    let get = numbers(messages, &timer);
    let result = result.to_path_buf();
    b.messages(get, move |_n: u64| {
        thread::sleep(SLEEP);
        timer.handled(messages, &result);
    })
}

/// A `/proc/PID/status` field, in its unit (kB for memory).
fn status_field(pid: Pid, name: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct Footprint {
    wall: Duration,
    peak_rss_kib: u64,
    most_threads: u64,
}

/// Start the daemon, sample its thread count until its own figure arrives, read its peak RSS,
/// stop it.
fn footprint(dir: &Path, build: impl FnOnce(DaemonBuilder, &Path) -> DaemonBuilder) -> Footprint {
    assert_single_threaded();
    let result = dir.join("footprint.ns");
    let _ = fs::remove_file(&result);
    let daemon = build(
        Daemon::builder()
            .pidfile(dir.join("footprint.pid"))
            .idle_time(Duration::from_millis(10)),
        &result,
    )
    .build()
    .expect("a valid daemon");
    let pid = daemon.start().expect("start the daemon");
    let end = Instant::now() + Duration::from_secs(60);
    let mut most_threads = 0;
    let wall = loop {
        most_threads = most_threads.max(status_field(pid, "Threads").unwrap_or(0));
        if let Some(nanos) = fs::read_to_string(&result)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break Duration::from_nanos(nanos);
        }
        assert!(Instant::now() < end, "the daemon never finished");
        thread::sleep(Duration::from_millis(2));
    };
    let peak_rss_kib = status_field(pid, "VmHWM").unwrap_or(0);
    daemon.stop().expect("stop the daemon");
    Footprint {
        wall,
        peak_rss_kib,
        most_threads,
    }
}

fn print_footprint(what: &str, f: &Footprint) {
    println!(
        "  {what:<34} wall {:>7.1} ms | peak RSS {:>7.1} MiB | threads at most {:>5}",
        f.wall.as_secs_f64() * 1e3,
        f.peak_rss_kib as f64 / 1024.0,
        f.most_threads
    );
}

/// The handler's work: next to nothing, so that the pool's own cost is what is measured.
fn work(n: u64, sink: &AtomicU64) {
    sink.fetch_add(black_box(n) & 1, Ordering::Relaxed);
}

/// `messages` trivial messages through a foreground `messages_async` daemon: `get` asks for the
/// stop (SIGTERM to this process) after the last one, and `run()` returns once all are handled.
fn through_daemon(pool: usize, messages: u64, pidfile: &Path) -> Duration {
    let sink = Arc::new(AtomicU64::new(0));
    let mut next = 0u64;
    let daemon = Daemon::builder()
        .pidfile(pidfile)
        .messages_async(
            move || {
                if next == messages {
                    next += 1;
                    let _ = raise(Signal::SIGTERM);
                }
                let message = (next < messages).then(|| {
                    next += 1;
                    next
                });
                std::future::ready(message)
            },
            move |n: u64| {
                let sink = sink.clone();
                async move { work(n, &sink) }
            },
        )
        .pool_size(pool)
        .idle_time(Duration::from_secs(60))
        .build()
        .expect("a valid daemon");
    let started = Instant::now();
    daemon.run().expect("a clean run");
    started.elapsed()
}

/// The same messages through a bare current-thread runtime: a task per message, under a
/// semaphore of `pool` permits, then a wait for all the permits.
fn through_tokio(pool: usize, messages: u64) -> Duration {
    let sink = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let slots = Arc::new(Semaphore::new(pool));
        for n in 1..=messages {
            let permit = slots.clone().acquire_owned().await.expect("open");
            let sink = sink.clone();
            tokio::spawn(async move {
                work(n, &sink);
                drop(permit);
            });
        }
        let _ = slots.acquire_many(pool as u32).await;
    });
    drop(runtime);
    started.elapsed()
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
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // First: `start()` forks, and needs this process single-threaded.
    println!("handlers that each await a 200 ms sleep, detached daemons:");
    let big = 10_000u64;
    let f = footprint(d, |b, r| sleepers_async(b, big, r).pool_size(big as usize));
    print_footprint("messages_async, 10000 of 10000", &f);
    let f = footprint(d, |b, r| sleepers_async(b, 4096, r).pool_size(4096));
    print_footprint("messages_async, 4096 of 4096", &f);
    let f = footprint(d, |b, r| sleepers_threaded(b, 4096, r).pool_size(4096));
    print_footprint("messages (threads), 4096 of 4096", &f);
    let f = footprint(d, |b, r| sleepers_threaded(b, big, r).pool_size(4096));
    print_footprint("messages (threads), 10000 of 4096", &f);

    let runs: usize = std::env::var("ASYNC_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    const MESSAGES: u64 = 200_000;
    let pidfile = d.join("throughput.pid");
    let per_message = |t: Duration| t.as_nanos() as f64 / MESSAGES as f64;
    println!(
        "trivial handlers, {runs} alternating runs of {MESSAGES} messages (median ns/message):"
    );
    for pool in [100usize, 10_000] {
        let (mut ours, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(per_message(through_daemon(pool, MESSAGES, &pidfile)));
            bare.push(per_message(through_tokio(pool, MESSAGES)));
        }
        let (ours, bare) = (median(&mut ours), median(&mut bare));
        println!(
            "  pool {pool:>5}: messages_async {ours:6.1} | bare tokio loop {bare:6.1} | ratio {:.2} (goal: at least 0.8)",
            bare / ours
        );
    }
}
