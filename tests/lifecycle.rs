//! Start, stop, restart, status: a daemon's life, checked from outside through its pidfile and
//! /proc.

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{DEADLINE, Fixture, alive, cwd, fd_target, proc_status, stat, wait_until};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, getpgrp, getsid};

#[test]
fn start_returns_the_pid_that_the_pidfile_holds() {
    let fx = Fixture::new();
    let pid = fx.start();
    assert_eq!(fx.pidfile_content(), Some(format!("{pid}\n")));
    assert!(alive(pid), "/proc/{pid} shows a live process");
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 1),
        "the body runs"
    );
}

#[test]
fn the_daemon_is_detached_from_its_caller() {
    let fx = Fixture::new();
    let reply = fx.run("api start");
    let pid = reply.pid();
    let s = stat(pid).expect("the daemon's stat");
    assert_ne!(
        s.session,
        pid.as_raw(),
        "not a session leader after the second fork"
    );
    assert_ne!(s.session, getsid(None).expect("sid").as_raw());
    assert_ne!(s.pgrp, getpgrp().as_raw());
    assert_ne!(
        s.ppid,
        reply.caller.as_raw(),
        "its parent is not the caller"
    );
    assert_eq!(s.tty_nr, 0, "no controlling terminal");
}

#[test]
fn the_intermediate_process_is_reaped() {
    let fx = Fixture::new();
    let pid = fx.start();
    // The daemon's session was created by the intermediate process, so it bears its pid.
    let intermediate = Pid::from_raw(stat(pid).expect("stat").session);
    assert!(
        wait_until(DEADLINE, || stat(intermediate).is_none()),
        "the intermediate process {intermediate} is gone, not a zombie: {:?}",
        stat(intermediate)
    );
}

#[test]
fn the_daemon_runs_in_root_with_umask_0022_by_default() {
    let fx = Fixture::new();
    let pid = fx.start();
    assert_eq!(cwd(pid), Path::new("/"));
    assert_eq!(proc_status(pid, "Umask"), "0022");
}

#[test]
fn workdir_and_umask_are_applied() {
    let mut fx = Fixture::new();
    let work = fx.path("work");
    fs::create_dir(&work).expect("mkdir");
    fx.set("FIXTURE_WORKDIR", &work).set("FIXTURE_UMASK", "077");
    let pid = fx.start();
    assert_eq!(cwd(pid), work);
    assert_eq!(proc_status(pid, "Umask"), "0077");
}

#[test]
fn stdio_goes_to_dev_null_by_default() {
    let mut fx = Fixture::new();
    fx.unset("FIXTURE_STDERR");
    let pid = fx.start();
    for fd in 0..=2 {
        assert_eq!(
            fd_target(pid, fd),
            Path::new("/dev/null"),
            "descriptor {fd}"
        );
    }
}

#[test]
fn stdout_and_stderr_go_to_the_given_files() {
    let mut fx = Fixture::new();
    let (out, err) = (fx.path("out.log"), fx.path("err.log"));
    fx.set("FIXTURE_STDOUT", &out).set("FIXTURE_STDERR", &err);
    let pid = fx.start();
    assert_eq!(fd_target(pid, 0), Path::new("/dev/null"));
    assert_eq!(fd_target(pid, 1), out);
    assert_eq!(fd_target(pid, 2), err);
}

#[test]
fn start_with_captured_output_returns_while_the_daemon_runs_on() {
    let fx = Fixture::new();
    // `fx.run` captures stdout and stderr through pipes and waits for them to close, like
    // `start | cat`: a daemon that kept them open would hold it until the deadline.
    let reply = fx.run("api start");
    assert_eq!(reply.word(0), "started", "{reply:?}");
    assert!(
        reply.elapsed < Duration::from_secs(5),
        "took {:?}",
        reply.elapsed
    );
    assert!(alive(reply.pid()));
}

#[test]
fn stop_is_graceful_removes_the_pidfile_and_runs_the_term_handler_once() {
    let fx = Fixture::new();
    let pid = fx.start();
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
    assert!(!fx.pidfile().exists());
    assert_eq!(fx.count("term"), 1, "marks: {:?}", fx.marks());
}

#[test]
fn stopping_a_stopped_daemon_says_not_running_and_succeeds() {
    let fx = Fixture::new();
    let pid = fx.start();
    fx.stop_gracefully(pid);
    let again = fx.run("api stop");
    assert_eq!((again.line(), again.code()), ("not-running", Some(0)));
}

#[test]
fn restart_gives_a_new_pid() {
    let fx = Fixture::new();
    let first = fx.start();
    let reply = fx.run("api restart");
    assert_eq!(reply.word(0), "started", "{reply:?}");
    let second = reply.pid();
    assert_ne!(first, second);
    assert_eq!(
        fx.exit_code(first),
        0,
        "the first one was stopped gracefully"
    );
    assert!(alive(second));
    assert_eq!(fx.pidfile_content(), Some(format!("{second}\n")));
}

#[test]
fn status_says_running_then_not_running() {
    let fx = Fixture::new();
    assert_eq!(fx.run("api status").line(), "not-running");
    let pid = fx.start();
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    fx.stop_gracefully(pid);
    assert_eq!(fx.run("api status").line(), "not-running");
}

#[test]
fn status_says_dead_after_the_daemon_was_killed() {
    let fx = Fixture::new();
    let pid = fx.start();
    nix::sys::signal::kill(pid, Signal::SIGKILL).expect("kill -9");
    assert_eq!(
        fx.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    assert_eq!(fx.run("api status").line(), format!("dead {pid}"));
}

#[test]
fn pid_names_the_running_daemon_only() {
    let fx = Fixture::new();
    assert_eq!(fx.run("api pid").line(), "pid -");
    let pid = fx.start();
    assert_eq!(fx.run("api pid").line(), format!("pid {pid}"));
    fx.stop_gracefully(pid);
    assert_eq!(fx.run("api pid").line(), "pid -");
}

#[test]
fn a_second_start_says_already_running_with_the_first_pid() {
    let fx = Fixture::new();
    let pid = fx.start();
    let second = fx.run("api start");
    second.assert_error("AlreadyRunning");
    assert_eq!(second.pid(), pid);
    assert_eq!(fx.processes(), vec![pid]);
}

#[test]
fn the_step_under_way_finishes_on_stop() {
    let fx = Fixture::new().with("FIXTURE_BODY", "slow-step");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("begin") >= 1));
    fx.stop_gracefully(pid);
    let marks = fx.marks();
    assert_eq!(marks.last().map(String::as_str), Some("term"), "{marks:?}");
    assert_eq!(marks[marks.len() - 2], "end", "{marks:?}");
    assert_eq!(fx.count("begin"), fx.count("end"), "{marks:?}");
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn a_long_interval_is_cut_short_by_stop() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "step")
        .with("FIXTURE_INTERVAL_MS", "600000");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("step") == 1));
    fx.stop_gracefully(pid);
    assert_eq!(fx.count("step"), 1, "no second step after the stop");
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn a_body_that_returns_ends_the_daemon_cleanly() {
    let fx = Fixture::new().with("FIXTURE_BODY", "return");
    let pid = fx.start();
    assert_eq!(fx.exit_code(pid), 0);
    assert!(!fx.pidfile().exists());
    assert_eq!(fx.count("body"), 1);
}

#[test]
fn a_panicking_body_exits_non_zero_logs_once_and_its_pidfile_says_why() {
    let fx = Fixture::new().with("FIXTURE_BODY", "panic");
    let pid = fx.start();
    assert_ne!(fx.exit_code(pid), 0);
    let logged = fx.stderr_log();
    let why = "the fixture's step panics on purpose";
    // Rust's panic hook prints its own line, with the location; the daemon logs the end once.
    let ours: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains(why) && l.contains("stopping"))
        .collect();
    assert_eq!(ours.len(), 1, "logged once: {logged}");
    // The log line says when, and which process.
    let line = ours[0];
    assert!(line.contains(&format!("[{pid}]: ")), "{line}");
    assert!(line.starts_with("20") && line.contains('T'), "{line}");
    // The failure stays visible until the next start.
    let reply = fx.run("api status");
    assert_eq!((reply.word(0), reply.pid()), ("dead", pid), "{reply:?}");
    assert!(reply.line().contains(why), "{reply:?}");
    let out = fx.run("status");
    assert_eq!(
        out.code(),
        Some(1),
        "LSB: dead with a pidfile left: {out:?}"
    );
    assert!(
        out.stdout.contains("failed") && out.stdout.contains(why),
        "{out:?}"
    );
}

#[test]
fn a_failing_step_exits_non_zero_and_the_next_start_clears_the_failure() {
    let fx = Fixture::new().with("FIXTURE_BODY", "step-error");
    let pid = fx.start();
    assert_ne!(fx.exit_code(pid), 0);
    let reply = fx.run("api status");
    assert!(reply.line().contains("disk full"), "{reply:?}");
    let fx = fx.with("FIXTURE_BODY", "idle");
    let next = fx.start();
    assert_eq!(fx.run("api status").line(), format!("running {next}"));
    fx.stop_gracefully(next);
    assert_eq!(
        fx.run("api status").line(),
        "not-running",
        "a graceful stop leaves nothing"
    );
}

#[test]
fn keep_going_logs_failing_steps_and_runs_on() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "step-error")
        .with("FIXTURE_KEEP_GOING", "1")
        .with("FIXTURE_INTERVAL_MS", "20");
    let pid = fx.start();
    let failures = || fx.stderr_log().matches("disk full").count();
    assert!(wait_until(DEADLINE, || failures() >= 3), "{}", failures());
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn a_daemon_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "stubborn")
        .with("FIXTURE_TERM_BLOCKS", "1")
        .with("FIXTURE_STOP_TIMEOUT_MS", "300");
    let pid = fx.start();
    let reply = fx.run("api stop");
    assert_eq!(
        (reply.word(0), reply.pid(), reply.word(2), reply.code()),
        ("stopped", pid, "killed", Some(0)),
        "{reply:?}"
    );
    assert_eq!(
        fx.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    assert!(!fx.pidfile().exists());
}
