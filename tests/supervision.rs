//! Supervision (`.supervise(Supervision::...)`), checked from outside: the supervisor holds the
//! pidfile and runs the body in a child, which comes back after a crash with a backoff that
//! doubles, until the limit; signals reach the child, a stop ends both, and nothing is left.
//!
//! The supervisor is a detached daemon, so a child of this test process (their subreaper):
//! `reap` reads its exit status. Its own children it reaps itself, and they die with it
//! (`PR_SET_PDEATHSIG`).

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use common::{DEADLINE, Fixture, alive, all_pids, holders, stat, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// A fixture whose body runs under a supervisor with `policy` (`on-failure` or `always`).
fn supervised(body: &str, policy: &str) -> Fixture {
    Fixture::new()
        .with("FIXTURE_BODY", body)
        .with("FIXTURE_RESTART", policy)
}

/// What `api status` says of a supervised daemon: `supervised SUP CHILD|- RESTARTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Supervised {
    sup: Pid,
    child: Option<Pid>,
    restarts: u32,
}

/// `api status`, if it says `supervised ...`.
fn status(fx: &Fixture) -> Option<Supervised> {
    let reply = fx.run("api status");
    if reply.word(0) != "supervised" {
        return None;
    }
    Some(Supervised {
        sup: reply.pid(),
        child: reply.word(2).parse().ok().map(Pid::from_raw),
        restarts: reply.word(3).parse().expect("a number of restarts"),
    })
}

/// Wait until `api status` says `supervised` and `cond` holds of it; return it.
#[track_caller]
fn status_until(fx: &Fixture, what: &str, mut cond: impl FnMut(&Supervised) -> bool) -> Supervised {
    let mut last = None;
    let seen = wait_until(DEADLINE, || {
        last = status(fx);
        last.as_ref().is_some_and(&mut cond)
    });
    assert!(
        seen,
        "{what}: the last status was {last:?}\nmarks: {:?}\nlog: {}",
        fx.marks(),
        fx.stderr_log()
    );
    last.expect("a status")
}

/// The pid on the pidfile's first line: the supervisor's.
fn pidfile_pid(fx: &Fixture) -> Option<Pid> {
    let content = fx.pidfile_content()?;
    content.lines().next()?.parse().ok().map(Pid::from_raw)
}

/// The `step PID N [MICROS]` marks, in order: (PID, N, MICROS or 0).
fn steps(fx: &Fixture) -> Vec<(Pid, u32, u128)> {
    fx.marks()
        .iter()
        .filter_map(|line| {
            let mut words = line.strip_prefix("step ")?.split_whitespace();
            let pid = Pid::from_raw(words.next()?.parse().ok()?);
            let n = words.next()?.parse().ok()?;
            let micros = words.next().map_or(Some(0), |w| w.parse().ok())?;
            Some((pid, n, micros))
        })
        .collect()
}

/// The processes that marked steps, in the order of their first step.
fn stepping_pids(fx: &Fixture) -> Vec<Pid> {
    let mut pids = Vec::new();
    for (pid, _, _) in steps(fx) {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The supervisor's lines about a child that ended, in order.
fn restart_lines(fx: &Fixture) -> Vec<String> {
    fx.stderr_log()
        .lines()
        .filter(|line| line.contains("the body's process (pid "))
        .map(str::to_owned)
        .collect()
}

/// The children of `parent` that are zombies, dead and not yet reaped.
fn zombies_of(parent: Pid) -> Vec<Pid> {
    let zombie =
        |pid: &Pid| stat(*pid).is_some_and(|s| s.ppid == parent.as_raw() && s.state == 'Z');
    all_pids().into_iter().filter(zombie).collect()
}

/// No pidfile, and no live process of the fixture.
#[track_caller]
fn assert_nothing_left(fx: &Fixture) {
    assert!(
        fs::symlink_metadata(fx.pidfile()).is_err(),
        "the pidfile was left behind: {:?}",
        fx.pidfile_content()
    );
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "processes left: {:?}",
        fx.processes()
    );
}

/// `api stop` ends the child, then the supervisor `sup`, which exits 0; nothing is left.
#[track_caller]
fn stop_and_reap(fx: &Fixture, sup: Pid) {
    fx.stop_gracefully(sup);
    assert_eq!(fx.exit_code(sup), 0, "the supervisor exits 0 after a stop");
    assert_nothing_left(fx);
}

#[test]
fn a_step_that_panics_comes_back_in_a_new_child_under_the_same_supervisor() {
    let fx = supervised("panic-third-once", "on-failure").with("FIXTURE_BACKOFF_MS", "50");
    let sup = fx.start();
    assert_eq!(pidfile_pid(&fx), Some(sup));

    // The first child steps 1, 2, 3 and panics; the next one starts over at 1.
    assert!(
        wait_until(DEADLINE, || stepping_pids(&fx).len() == 2),
        "no second child: {:?}",
        fx.marks()
    );
    let pids = stepping_pids(&fx);
    let (first, second) = (pids[0], pids[1]);
    assert_ne!(first, second);
    assert!(![first, second].contains(&sup), "the body runs in children");
    let numbers = |pid| -> Vec<u32> {
        let of_pid = steps(&fx).into_iter().filter(|s| s.0 == pid);
        of_pid.map(|s| s.1).collect()
    };
    assert_eq!(
        numbers(first),
        [1, 2, 3],
        "the first child ended at its third step"
    );
    assert_eq!(numbers(second)[0], 1, "the second child's steps start over");
    assert!(
        wait_until(DEADLINE, || !alive(first)),
        "the child that panicked is gone"
    );

    let now = status_until(&fx, "one restart", |s| s.restarts == 1);
    assert_eq!(
        now,
        Supervised {
            sup,
            child: Some(second),
            restarts: 1
        }
    );
    assert_eq!(
        pidfile_pid(&fx),
        Some(sup),
        "the pidfile still names the supervisor"
    );

    let cli = fx.run("status");
    assert_eq!(cli.code(), Some(0), "{cli:?}");
    for part in [
        format!("pid {sup}"),
        format!("pid {second}"),
        "1 restarts".to_owned(),
    ] {
        assert!(cli.stdout.contains(&part), "{part:?} in {cli:?}");
    }

    let lines = restart_lines(&fx);
    assert_eq!(lines.len(), 1, "one line per restart: {lines:?}");
    for part in [
        format!("(pid {first}) ended: exit code 1 ("),
        "the third step panics".to_owned(),
        "restart 1 in 50ms".to_owned(),
    ] {
        assert!(lines[0].contains(&part), "{part:?} in {:?}", lines[0]);
    }
    stop_and_reap(&fx, sup);
}

#[test]
fn a_child_killed_with_sigkill_comes_back_and_each_restart_is_logged_with_its_cause() {
    let fx = supervised("idle", "on-failure").with("FIXTURE_BACKOFF_MS", "10");
    let sup = fx.start();
    let mut children = vec![status_until(&fx, "a child", |s| s.child.is_some()).child];
    for restart in 1..=2 {
        let child = children.last().copied().flatten().expect("a child");
        assert!(
            wait_until(DEADLINE, || fx.count("body") == restart as usize),
            "the child {child} runs the body: {:?}",
            fx.marks()
        );
        kill(child, Signal::SIGKILL).expect("kill the child");
        let now = status_until(&fx, "the next child", |s| {
            s.restarts == restart && s.child.is_some_and(|c| c != child && alive(c))
        });
        assert_eq!(now.sup, sup);
        children.push(now.child);
    }
    let children: Vec<Pid> = children.into_iter().flatten().collect();
    assert_eq!(
        children.iter().collect::<BTreeSet<_>>().len(),
        3,
        "three children in turn: {children:?}"
    );
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 3),
        "each child ran the body: {:?}",
        fx.marks()
    );
    assert_eq!(pidfile_pid(&fx), Some(sup));

    let lines = restart_lines(&fx);
    assert_eq!(lines.len(), 2, "one line per restart: {lines:?}");
    for (n, line) in lines.iter().enumerate() {
        for part in [
            format!("[{sup}]"),
            format!("(pid {}) ended: killed by SIGKILL;", children[n]),
            format!("restart {}", n + 1),
        ] {
            assert!(line.contains(&part), "{part:?} in {line:?}");
        }
    }
    stop_and_reap(&fx, sup);
}

#[test]
fn the_backoff_doubles_from_one_crash_to_the_next() {
    let fx = supervised("panic-third-timed", "on-failure")
        .with("FIXTURE_BACKOFF_MS", "100")
        .with("FIXTURE_LIMIT", "100")
        .with("FIXTURE_LIMIT_MS", "60000");
    let sup = fx.start();
    // Five children: four waits of 100, 200, 400 and 800 ms between them.
    assert!(
        wait_until(DEADLINE, || stepping_pids(&fx).len() >= 5),
        "five children: {:?}",
        fx.marks()
    );
    let steps = steps(&fx);
    let pids = stepping_pids(&fx);
    let at = |pid: Pid, n: u32| -> u128 {
        let step = steps.iter().find(|s| s.0 == pid && s.1 == n);
        step.unwrap_or_else(|| panic!("no step {n} of {pid}: {steps:?}"))
            .2
    };
    // From a child's last step (the panic follows at once) to its successor's first: the
    // wait, and the child's exit and the next one's start around it. Each wait is kept in full,
    // and not much more: the start of a child takes milliseconds, or a few hundred on a busy
    // machine, which a ratio of two gaps cannot tell from a wrong wait, and a bound can.
    let gaps: Vec<f64> = pids
        .windows(2)
        .take(4)
        .map(|w| (at(w[1], 1) - at(w[0], 3)) as f64 / 1000.0)
        .collect();
    for (gap, planned) in gaps.iter().zip([100.0, 200.0, 400.0, 800.0]) {
        assert!(
            (planned..planned + 1000.0).contains(gap),
            "each wait doubles, and is kept: gaps {gaps:?} ms"
        );
    }
    let lines = restart_lines(&fx);
    for (n, wait) in ["100ms", "200ms", "400ms", "800ms"].iter().enumerate() {
        let said = format!("restart {} in {wait}", n + 1);
        assert!(
            lines.get(n).is_some_and(|l| l.contains(&said)),
            "{said:?} in {lines:?}"
        );
    }
    stop_and_reap(&fx, sup);
}

#[test]
fn past_the_limit_the_supervisor_gives_up_says_why_and_the_next_start_clears_it() {
    let mut fx = supervised("panic-third", "on-failure")
        .with("FIXTURE_BACKOFF_MS", "10")
        .with("FIXTURE_LIMIT", "3")
        .with("FIXTURE_LIMIT_MS", "60000");
    let sup = fx.start();
    assert_eq!(
        fx.exit_code(sup),
        1,
        "the supervisor exits 1 when it gives up"
    );
    assert_eq!(
        stepping_pids(&fx).len(),
        3,
        "three children: {:?}",
        fx.marks()
    );
    assert_eq!(
        restart_lines(&fx).len(),
        2,
        "two restarts before the third failure"
    );

    let log = fx.stderr_log();
    let gave_up: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gave up after 3 failures"))
        .collect();
    assert_eq!(gave_up.len(), 1, "one line says it gave up: {log}");
    assert!(gave_up[0].contains("the third step panics"), "{gave_up:?}");

    let reply = fx.run("api status");
    assert!(
        reply
            .line()
            .starts_with(&format!("dead {sup} failed: gave up after 3 failures")),
        "{reply:?}"
    );
    let cli = fx.run("status");
    assert_eq!(cli.code(), Some(1), "{cli:?}");
    assert!(
        cli.stdout
            .contains(&format!("failed (pid {sup}): gave up after 3 failures")),
        "{cli:?}"
    );

    // The next start takes the pidfile again and forgets the failure.
    fx.set("FIXTURE_BODY", "idle");
    let next = fx.start();
    assert_ne!(next, sup);
    let now = status_until(&fx, "the new supervisor", |s| s.child.is_some());
    assert_eq!((now.sup, now.restarts), (next, 0));
    let content = fx.pidfile_content().expect("a pidfile");
    assert!(!content.contains("failed"), "{content:?}");
    assert!(fx.run("status").stdout.contains("running"));
    stop_and_reap(&fx, next);
}

#[test]
fn failures_older_than_the_limits_window_are_forgotten_and_the_backoff_stops_at_its_maximum() {
    // Two failures within 120 ms would end it; a child runs 40 ms at least (three steps 20 ms
    // apart) after a wait of 100 ms or more, so they never come that close.
    let fx = supervised("panic-third", "on-failure")
        .with("FIXTURE_BACKOFF_MS", "100")
        .with("FIXTURE_BACKOFF_MAX_MS", "200")
        .with("FIXTURE_LIMIT", "2")
        .with("FIXTURE_LIMIT_MS", "120");
    let sup = fx.start();
    let now = status_until(&fx, "four restarts", |s| s.restarts >= 4);
    assert_eq!(now.sup, sup);
    assert!(!fx.stderr_log().contains("gave up"), "{}", fx.stderr_log());
    let lines = restart_lines(&fx);
    let waits: Vec<&str> = lines
        .iter()
        .take(4)
        .map(|l| l.rsplit(" in ").next().expect("a wait"))
        .collect();
    assert_eq!(waits, ["100ms", "200ms", "200ms", "200ms"], "{lines:?}");
    stop_and_reap(&fx, sup);
}

#[test]
fn a_clean_exit_ends_the_daemon_under_on_failure() {
    let fx = supervised("return", "on-failure").with("FIXTURE_BACKOFF_MS", "10");
    let sup = fx.start();
    assert_eq!(fx.exit_code(sup), 0, "a body that returned is a clean end");
    assert_nothing_left(&fx);
    assert_eq!(fx.count("body"), 1, "not restarted: {:?}", fx.marks());
    assert!(restart_lines(&fx).is_empty(), "{}", fx.stderr_log());
    assert_eq!(fx.run("api status").line(), "not-running");
}

#[test]
fn a_clean_exit_comes_back_under_always_and_never_counts_toward_the_limit() {
    // Clean exits are not failures, whatever the limit.
    let fx = supervised("return", "always").with("FIXTURE_BACKOFF_MS", "10");
    let sup = fx.start();
    let now = status_until(&fx, "six restarts", |s| s.restarts >= 6);
    assert_eq!(now.sup, sup);
    assert!(fx.count("body") >= 6, "{:?}", fx.marks());
    let lines = restart_lines(&fx);
    assert!(lines.len() >= 6, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("ended: exit code 0;")),
        "{lines:?}"
    );
    assert!(!fx.stderr_log().contains("gave up"));
    stop_and_reap(&fx, sup);
}

#[test]
fn a_stop_during_a_backoff_wait_is_immediate() {
    let fx = supervised("panic-third", "on-failure").with("FIXTURE_BACKOFF_MS", "60000");
    let sup = fx.start();
    assert!(
        wait_until(DEADLINE, || restart_lines(&fx)
            .iter()
            .any(|l| l.contains("restart 1 in 60s"))),
        "the first child crashed: {}",
        fx.stderr_log()
    );
    let reply = fx.run("api stop");
    assert_eq!(
        (reply.word(0), reply.pid(), reply.word(2)),
        ("stopped", sup, "exited"),
        "{reply:?}"
    );
    let after: u64 = reply.word(3).parse().expect("milliseconds");
    assert!(
        after < 5_000,
        "the stop did not wait out the backoff: {reply:?}"
    );
    assert!(reply.elapsed < Duration::from_secs(10), "{reply:?}");
    assert_eq!(fx.exit_code(sup), 0);
    assert_nothing_left(&fx);
    assert_eq!(stepping_pids(&fx).len(), 1, "no child after the stop");
}

/// The pidfile's format says `supervising: - RESTARTS AT LAST` during a backoff wait, and
/// `Status::Supervised` documents `child: None` then ("none during a backoff wait"), with a
/// countdown to the next child and how the last one ended.
#[test]
fn during_a_backoff_wait_status_names_no_child_and_counts_down_to_the_next() {
    let fx = supervised("panic-third", "on-failure").with("FIXTURE_BACKOFF_MS", "60000");
    let sup = fx.start();
    assert!(
        wait_until(DEADLINE, || restart_lines(&fx)
            .iter()
            .any(|l| l.contains("restart 1 in 60s"))),
        "the first child crashed: {}",
        fx.stderr_log()
    );
    let crashed = stepping_pids(&fx)[0];
    assert!(wait_until(DEADLINE, || !alive(crashed)));
    let now = status(&fx).expect("supervised");
    assert_eq!(now.sup, sup);
    assert_eq!(
        now.child, None,
        "no child runs the body during the wait; {crashed} ended"
    );
    let said = fx.run("status").line().to_owned();
    let countdown = said
        .split_once("restarting in ")
        .and_then(|(_, rest)| rest.split_once(" s (restart 1, last: exit code 1"))
        .and_then(|(secs, _)| secs.parse::<f64>().ok());
    assert!(
        countdown.is_some_and(|secs| secs > 0.0 && secs <= 60.0),
        "a countdown within the 60 s backoff, and the last ending: {said:?}"
    );
    stop_and_reap(&fx, sup);
}

#[test]
fn sighup_reaches_the_childs_handler_and_a_stop_ends_the_child_gracefully_then_the_supervisor() {
    let fx = supervised("idle", "on-failure").with("FIXTURE_HANDLER_PIDS", "1");
    let sup = fx.start();
    let child = status_until(&fx, "a child", |s| s.child.is_some())
        .child
        .expect("a child");
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));

    assert_eq!(
        fx.run("api pid").line(),
        format!("pid {sup}"),
        "the pid is the supervisor's"
    );
    let sent = fx.run("api send SIGHUP");
    assert_eq!((sent.word(0), sent.pid()), ("sent", sup), "{sent:?}");
    assert!(
        wait_until(DEADLINE, || fx.count(&format!("hup {child}")) == 1),
        "the child's handler ran: {:?}",
        fx.marks()
    );
    // Any signal with handlers is passed on.
    fx.run("api send SIGUSR1");
    assert!(
        wait_until(DEADLINE, || fx.count(&format!("usr1 {child}")) == 1),
        "the child's SIGUSR1 handler ran: {:?}",
        fx.marks()
    );
    let now = status(&fx).expect("supervised");
    assert_eq!(now.child, Some(child), "the same child, not restarted");
    assert_eq!(now.restarts, 0);

    let reply = fx.stop_gracefully(sup);
    assert_eq!(
        fx.count(&format!("term {child}")),
        1,
        "{reply:?} {:?}",
        fx.marks()
    );
    assert_eq!(
        fx.count("term"),
        1,
        "one term handler ran: {:?}",
        fx.marks()
    );
    assert_eq!(
        fx.count("hup"),
        1,
        "one SIGHUP, handled once: {:?}",
        fx.marks()
    );
    assert!(
        !fx.marks().iter().any(|m| m.ends_with(&format!(" {sup}"))),
        "no handler ran in the supervisor: {:?}",
        fx.marks()
    );
    assert!(!alive(child), "the child is gone before stop() returns");
    assert_eq!(fx.exit_code(sup), 0);
    assert_nothing_left(&fx);
    assert!(restart_lines(&fx).is_empty(), "a stop is no crash");
}

#[test]
fn no_zombie_children_pile_up_over_twenty_restarts() {
    let fx = supervised("panic-third", "on-failure")
        .with("FIXTURE_BACKOFF_MS", "0")
        .with("FIXTURE_LIMIT", "1000")
        .with("FIXTURE_LIMIT_MS", "60000");
    let sup = fx.start();
    let mut most = 0;
    let mut checks = 0;
    let mut restarts = 0;
    let done = wait_until(Duration::from_secs(30), || {
        most = most.max(zombies_of(sup).len());
        checks += 1;
        restarts = status(&fx).map_or(restarts, |s| s.restarts);
        restarts >= 20
    });
    assert!(done, "20 restarts: {restarts}; {}", fx.stderr_log());
    assert!(
        most <= 1,
        "at most one zombie at a time ({most} in {checks} checks)"
    );
    assert!(
        wait_until(DEADLINE, || zombies_of(sup).is_empty()),
        "zombies at the end: {:?}",
        zombies_of(sup)
    );
    // The 21st child is counted when it is forked, and steps a moment later.
    assert!(
        wait_until(DEADLINE, || stepping_pids(&fx).len() >= 21),
        "{:?}",
        stepping_pids(&fx)
    );
    stop_and_reap(&fx, sup);
}

#[test]
fn a_first_child_that_fails_before_ready_fails_start_with_its_error_and_leaves_nothing() {
    let fx = supervised("fail-before-ready", "on-failure").with("FIXTURE_BACKOFF_MS", "10");
    let reply = fx.run("api start");
    reply.assert_error("Body");
    assert!(reply.line().contains("no database"), "{reply:?}");

    // The body marked `body CHILD SUPERVISOR`: it ran in a child, once, never restarted.
    let marks = fx.marks();
    let bodies: Vec<&String> = marks.iter().filter(|m| m.starts_with("body ")).collect();
    assert_eq!(bodies.len(), 1, "{marks:?}");
    let pids: Vec<Pid> = bodies[0]
        .split_whitespace()
        .skip(1)
        .map(|w| Pid::from_raw(w.parse().expect("a pid")))
        .collect();
    let (child, sup) = (pids[0], pids[1]);
    assert_ne!(child, sup);
    assert_eq!(fx.exit_code(sup), 1, "the supervisor exits 1");
    assert!(!alive(child));
    assert_nothing_left(&fx);
    assert!(restart_lines(&fx).is_empty(), "{}", fx.stderr_log());
    assert_eq!(fx.run("api status").line(), "not-running");
}

#[test]
fn a_supervisor_killed_with_sigkill_takes_its_child_along() {
    let fx = supervised("idle", "on-failure");
    let sup = fx.start();
    let child = status_until(&fx, "a child", |s| s.child.is_some())
        .child
        .expect("a child");
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    assert_eq!(
        holders(&fx.pidfile()),
        [sup],
        "only the supervisor holds the pidfile, not its child"
    );

    kill(sup, Signal::SIGKILL).expect("kill the supervisor");
    assert_eq!(
        fx.reap(sup),
        WaitStatus::Signaled(sup, Signal::SIGKILL, false)
    );
    // Orphaned, the child was reparented to this subreaper, and killed by PR_SET_PDEATHSIG.
    assert_eq!(
        fx.reap(child),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "{:?}",
        fx.processes()
    );
    assert_eq!(fx.run("api status").line(), format!("dead {sup}"));

    // A stale pidfile does not keep the next supervisor out.
    let next = fx.start();
    status_until(&fx, "the new supervisor", |s| {
        s.sup == next && s.child.is_some()
    });
    stop_and_reap(&fx, next);
}

#[test]
fn a_stop_that_times_out_kills_the_supervisor_and_its_child_dies_with_it() {
    let fx = supervised("idle", "on-failure")
        .with("FIXTURE_TERM_BLOCKS", "1")
        .with("FIXTURE_STOP_TIMEOUT_MS", "1000");
    let sup = fx.start();
    let child = status_until(&fx, "a child", |s| s.child.is_some())
        .child
        .expect("a child");
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));

    let reply = fx.run("api stop");
    assert_eq!(
        (reply.word(0), reply.pid(), reply.word(2)),
        ("stopped", sup, "killed"),
        "{reply:?}"
    );
    assert_eq!(
        fx.count("term"),
        1,
        "the child's handler ran: {:?}",
        fx.marks()
    );
    assert_eq!(
        fx.reap(sup),
        WaitStatus::Signaled(sup, Signal::SIGKILL, false)
    );
    assert_eq!(
        fx.reap(child),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
    assert_nothing_left(&fx);
}

#[test]
fn restart_gives_a_new_supervisor_and_a_new_child() {
    let fx = supervised("idle", "on-failure");
    let sup = fx.start();
    let first = status_until(&fx, "a child", |s| s.child.is_some());
    let reply = fx.run("api restart");
    assert_eq!(reply.word(0), "started", "{reply:?}");
    let next = reply.pid();
    assert_ne!(next, sup);
    assert_eq!(fx.exit_code(sup), 0, "the first supervisor stopped cleanly");
    let now = status_until(&fx, "the new supervisor", |s| {
        s.sup == next && s.child.is_some()
    });
    assert_ne!(now.child, first.child);
    assert_eq!(now.restarts, 0, "a new supervisor counts from 0");
    assert!(!alive(first.child.expect("a child")));
    stop_and_reap(&fx, next);
}

#[test]
fn sighup_reopens_the_supervisors_log_for_the_restart_lines() {
    let fx = supervised("idle", "on-failure").with("FIXTURE_BACKOFF_MS", "10");
    let sup = fx.start();
    let child = status_until(&fx, "a child", |s| s.child.is_some())
        .child
        .expect("a child");
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));

    // logrotate: move the log away, then SIGHUP.
    let rotated = fx.path("stderr.log.1");
    fs::rename(fx.path("stderr.log"), &rotated).expect("rotate the log");
    fx.run("api send SIGHUP");
    // The supervisor reopens its log before it passes the signal on.
    assert!(wait_until(DEADLINE, || fx.count("hup") == 1));
    kill(child, Signal::SIGKILL).expect("kill the child");
    status_until(&fx, "a restart", |s| s.restarts == 1);
    assert!(
        wait_until(DEADLINE, || restart_lines(&fx).len() == 1),
        "the restart line is in the new log: {}",
        fx.stderr_log()
    );
    let old = fs::read_to_string(&rotated).expect("the rotated log");
    assert!(!old.contains("ended"), "{old}");
    stop_and_reap(&fx, sup);
}

/// Start a daemon whose body never says ready, stop it while `start()` waits, and return what
/// `start()` answered.
fn stopped_during_start_up(fx: &Fixture) -> String {
    let mut start = fx.foreground(&mut fx.command("api start"));
    let mut daemon = None;
    assert!(
        wait_until(DEADLINE, || {
            daemon = pidfile_pid(fx);
            daemon.is_some() && fx.count("body") == 1
        }),
        "the body runs: {:?}",
        fx.marks()
    );
    let daemon = daemon.expect("a pid");
    let stop = fx.run("api stop");
    assert_eq!((stop.word(0), stop.pid()), ("stopped", daemon), "{stop:?}");
    start.wait();
    assert!(fx.exit_code(daemon) <= 1);
    assert_nothing_left(fx);
    fs::read_to_string(fx.path("run.out")).expect("start's output")
}

#[test]
fn a_stop_during_the_first_childs_start_up_gives_start_the_childs_own_error() {
    let unsupervised = Fixture::new().with("FIXTURE_BODY", "never-ready");
    let alone = stopped_during_start_up(&unsupervised);
    assert!(alone.starts_with("error ReturnedBeforeReady "), "{alone}");

    let fx = supervised("never-ready", "on-failure");
    let answer = stopped_during_start_up(&fx);
    assert_eq!(
        answer.split_whitespace().nth(1),
        Some("ReturnedBeforeReady"),
        "start() answers as it does without supervision: {answer}"
    );
}

/// The nanoseconds that `pid` has spent on a CPU (`/proc/PID/schedstat`).
fn cpu_nanos(pid: Pid) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
    let first = stat.split_whitespace().next().expect("a field");
    first.parse().expect("a number")
}

#[test]
fn a_child_that_execs_another_program_leaves_the_supervisor_idle() {
    let fx = supervised("exec-sleep", "on-failure");
    let sup = fx.start();
    let child = status_until(&fx, "a child", |s| s.child.is_some())
        .child
        .expect("a child");
    assert!(
        wait_until(DEADLINE, || fs::read_to_string(format!(
            "/proc/{child}/comm"
        ))
        .is_ok_and(|c| c.trim() == "sleep")),
        "the child runs sleep"
    );
    // A second of an idle supervisor: a few wake-ups at most, nowhere near 200 ms of CPU.
    let (before, since) = (cpu_nanos(sup), std::time::Instant::now());
    let busy = wait_until(Duration::from_secs(1), || {
        cpu_nanos(sup) - before > 200_000_000
    });
    let used = Duration::from_nanos(cpu_nanos(sup) - before);
    assert!(
        !busy,
        "the supervisor used {used:?} of CPU in {:?} while its child slept",
        since.elapsed()
    );
    stop_and_reap(&fx, sup);
}

#[test]
fn a_sighup_during_a_backoff_wait_reopens_the_log_too() {
    let fx = supervised("panic-third", "on-failure").with("FIXTURE_BACKOFF_MS", "3000");
    let sup = fx.start();
    assert!(
        wait_until(DEADLINE, || restart_lines(&fx)
            .iter()
            .any(|l| l.contains("restart 1 in 3s"))),
        "the first child crashed: {}",
        fx.stderr_log()
    );
    // logrotate, while the supervisor waits to start the next child.
    let rotated = fx.path("stderr.log.1");
    fs::rename(fx.path("stderr.log"), &rotated).expect("rotate the log");
    let sent = fx.run("api send SIGHUP");
    assert_eq!(sent.word(0), "sent", "{sent:?}");
    assert_eq!(restart_lines(&fx).len(), 0, "sent before the next child");
    // The next child panics too: its panic and the supervisor's line go to the new file.
    assert!(
        wait_until(DEADLINE, || fs::read_to_string(&rotated)
            .unwrap_or_default()
            .contains("restart 2 in")
            || restart_lines(&fx).len() == 1),
        "the second child crashed"
    );
    let old = fs::read_to_string(&rotated).expect("the rotated log");
    assert!(
        !old.contains("restart 2 in"),
        "the supervisor still writes to the rotated log: {old}"
    );
    assert!(fx.stderr_log().contains("the third step panics"));
    stop_and_reap(&fx, sup);
}

#[test]
fn a_child_stopped_with_sigstop_is_continued_and_stops_gracefully() {
    let fx = supervised("idle", "on-failure").with("FIXTURE_STOP_TIMEOUT_MS", "3000");
    let sup = fx.start();
    let child = status_until(&fx, "a child", |s| s.child.is_some())
        .child
        .expect("a child");
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    kill(child, Signal::SIGSTOP).expect("kill -STOP");
    assert!(
        wait_until(DEADLINE, || stat(child).is_some_and(|s| s.state == 'T')),
        "{:?}",
        stat(child)
    );
    let reply = fx.run("api stop");
    assert_eq!(
        (reply.word(0), reply.pid(), reply.word(2)),
        ("stopped", sup, "exited"),
        "a graceful stop, as without supervision: {reply:?}"
    );
    assert_eq!(
        fx.count("term"),
        1,
        "the term handler ran: {:?}",
        fx.marks()
    );
    assert_eq!(fx.exit_code(sup), 0);
    assert_nothing_left(&fx);
}

/// The live children of `parent`, from `/proc/PARENT/task/PARENT/children`.
fn children_of(parent: Pid) -> Vec<Pid> {
    fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

#[test]
fn a_stop_that_comes_the_moment_a_child_is_started_again_is_never_lost() {
    // A child that has just been forked has not caught its own signals yet: a stop forwarded
    // then must wait for it (blocked), not reach an action that does nothing. Each round kills
    // the child, and sends SIGTERM to the supervisor the moment the next child exists.
    let rounds: usize = if std::env::var_os("DAEMONS_TEST_LONG").is_some() {
        300
    } else {
        30
    };
    for round in 0..rounds {
        let fx = supervised("idle", "on-failure")
            .with("FIXTURE_BACKOFF_MS", "0")
            .with("FIXTURE_LIMIT", "1000");
        let sup = fx.start();
        let first = status_until(&fx, "a child", |s| s.child.is_some())
            .child
            .expect("a child");
        kill(first, Signal::SIGKILL).expect("kill the child");
        // Spin: the supervisor forks the next child within microseconds of the first's end.
        let deadline = std::time::Instant::now() + DEADLINE;
        let next = loop {
            if let Some(&next) = children_of(sup).iter().find(|&&c| c != first) {
                break next;
            }
            assert!(std::time::Instant::now() < deadline, "no second child");
            std::hint::spin_loop();
        };
        kill(sup, Signal::SIGTERM).expect("stop the supervisor");
        assert!(
            wait_until(DEADLINE, || !alive(sup)),
            "round {round}: the stop was lost (the second child {next} runs on): {}",
            fx.stderr_log()
        );
        assert_eq!(fx.exit_code(sup), 0, "round {round}");
        assert_nothing_left(&fx);
    }
}
