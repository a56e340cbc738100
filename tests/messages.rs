//! Message daemons, driven from outside through `daemons-fixture`: every fetched message handled
//! exactly once, panicking handlers, backpressure, idle waits, a failing `get`, idle CPU use.
//!
//! The fixture's `get` writes `got N` to the marks file when it fetches message N, and its
//! handler writes `done N` when it has handled it; one lock orders the lines.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use common::{DEADLINE, Fixture, wait_until};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// The numbers of the `got N` and `done N` lines, in file order.
fn tally(marks: &[String]) -> (Vec<u64>, Vec<u64>) {
    let numbers = |prefix: &str| -> Vec<u64> {
        marks
            .iter()
            .filter_map(|m| m.strip_prefix(prefix))
            .map(|n| n.parse().expect("a message number"))
            .collect()
    };
    (numbers("got "), numbers("done "))
}

/// How many times each number occurs.
fn histogram(numbers: &[u64]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for &n in numbers {
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// Nanoseconds that all threads of `pid` have spent on a CPU (first field of each
/// `/proc/PID/task/TID/schedstat`).
fn cpu_ns(pid: Pid) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read the daemon's tasks")
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn every_message_is_handled_exactly_once_when_a_stop_comes_in_a_burst() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "messages")
        .with("FIXTURE_HANDLE_MS", "3")
        .with("FIXTURE_POOL", "4");
    let pid = fx.start();
    assert!(
        wait_until(DEADLINE, || fx.count_prefix("done ") >= 40),
        "messages are handled: {} done",
        fx.count_prefix("done ")
    );
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));

    let (got, done) = tally(&fx.marks());
    let last = *got.last().expect("messages were fetched");
    assert_eq!(
        got,
        (1..=last).collect::<Vec<_>>(),
        "get produced 1, 2, 3... once each"
    );
    let handled = histogram(&done);
    let twice: Vec<_> = handled.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let unfetched: Vec<_> = handled.keys().filter(|n| !got.contains(n)).collect();
    assert!(
        unfetched.is_empty(),
        "handled but never fetched: {unfetched:?}"
    );
    let lost: Vec<_> = got.iter().filter(|n| !handled.contains_key(n)).collect();
    assert!(lost.is_empty(), "fetched but never handled: {lost:?}");
}

#[test]
fn a_panicking_handler_loses_only_its_own_message_and_the_daemon_runs_on() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "messages")
        .with("FIXTURE_PANIC_EVERY", "3")
        .with("FIXTURE_COUNT", "30");
    let pid = fx.start();
    let poison: Vec<u64> = (3..=30).step_by(3).collect();
    let logged = |n: u64| {
        fx.stderr_log()
            .lines()
            .filter(|l| l.contains(&format!("message #{n}:")) && l.contains("panicked"))
            .count()
    };
    assert!(
        wait_until(DEADLINE, || fx.count_prefix("done ") == 20
            && poison.iter().all(|&n| logged(n) == 1)),
        "20 messages done and 10 panics logged; marks {:?}, log:\n{}",
        fx.marks(),
        fx.stderr_log()
    );

    let (got, done) = tally(&fx.marks());
    assert_eq!(got, (1..=30).collect::<Vec<_>>());
    let mut done = done;
    done.sort_unstable();
    let healthy: Vec<u64> = (1..=30).filter(|n| n % 3 != 0).collect();
    assert_eq!(done, healthy, "every other message is handled once");
    for n in healthy {
        assert_eq!(logged(n), 0, "message #{n} did not fail");
    }

    let status = fx.run("status");
    assert_eq!(status.code(), Some(0), "still running: {status:?}");
    assert!(status.stdout.contains(&format!("running (pid {pid})")));
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
}

#[test]
fn messages_are_never_fetched_faster_than_the_pool_handles_them() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "messages")
        .with("FIXTURE_HANDLE_MS", "20")
        .with("FIXTURE_POOL", "3");
    let pid = fx.start();
    assert!(
        wait_until(DEADLINE, || fx.count_prefix("done ") >= 30),
        "messages are handled"
    );
    fx.stop_gracefully(pid);

    let mut outstanding = 0i64;
    let mut worst = 0i64;
    for (line, mark) in fx.marks().iter().enumerate() {
        if mark.starts_with("got ") {
            outstanding += 1;
        } else if mark.starts_with("done ") {
            outstanding -= 1;
        }
        assert!(
            outstanding <= 3,
            "line {line} ({mark}): {outstanding} messages fetched and not handled, pool of 3"
        );
        worst = worst.max(outstanding);
    }
    assert_eq!(outstanding, 0, "all handled at the end");
    assert_eq!(worst, 3, "the whole pool was used");
}

#[test]
fn a_stop_cuts_a_long_idle_wait_short() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "messages-idle")
        .with("FIXTURE_IDLE_MS", "3600000")
        .with("FIXTURE_STOP_TIMEOUT_MS", "5000");
    let pid = fx.start();
    let out = fx.stop_gracefully(pid);
    assert!(!out.stdout.contains("killed"), "{out:?}");
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
}

#[test]
fn a_failing_get_ends_the_daemon_after_the_fetched_messages_are_handled() {
    let fx = Fixture::new().with("FIXTURE_BODY", "messages-get-fails");
    let pid = fx.start();
    match fx.reap(pid) {
        WaitStatus::Exited(_, code) => assert_ne!(code, 0, "a failure exit code"),
        other => panic!("the daemon did not exit by itself: {other:?}"),
    }
    let log = fx.stderr_log();
    assert!(
        log.contains("get failed: the queue went away"),
        "the log says why: {log}"
    );
    let (got, mut done) = tally(&fx.marks());
    // `messages-get-fails` fetches five messages; the sixth `get` fails.
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    done.sort_unstable();
    assert_eq!(done, vec![1, 2, 3, 4, 5], "what was fetched is handled");
    let status = fx.run("status");
    assert_eq!(
        status.code(),
        Some(1),
        "dead, its pidfile says why: {status:?}"
    );
    assert!(
        status.stdout.contains("get failed: the queue went away"),
        "{status:?}"
    );
}

#[test]
fn an_idle_message_daemon_uses_almost_no_cpu() {
    let fx = Fixture::new().with("FIXTURE_BODY", "messages-idle");
    let pid = fx.start();
    let (before, since) = (cpu_ns(pid), Instant::now());
    // The measurement window itself: not a wait for a condition.
    std::thread::sleep(Duration::from_secs(2));
    let (after, window) = (cpu_ns(pid), since.elapsed());
    let per_second = (after - before) as f64 / window.as_secs_f64();
    eprintln!(
        "idle messages daemon (idle time 100 ms): {:.3} ms of CPU per second ({} ns over {:?})",
        per_second / 1e6,
        after - before,
        window
    );
    assert!(
        per_second < 50e6,
        "an idle daemon spends {:.1} ms of CPU per second",
        per_second / 1e6
    );
    assert!(after > 0, "schedstat is read");
    fx.stop_gracefully(pid);
}
