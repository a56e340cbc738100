//! `.on_stop(f)`: the hooks of every end of the body, each run once, after the body, in the
//! daemon's process, after the stop signal's own handlers.

// The tests play the operator: they signal as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{DEADLINE, Fixture, wait_until};
use nix::sys::signal::{Signal, kill};

/// The hooks' marks (`on-stop N PID`), in the order they came.
fn hooks(fx: &Fixture) -> Vec<String> {
    fx.marks()
        .into_iter()
        .filter(|m| m.starts_with("on-stop "))
        .collect()
}

/// Both hooks ran once, in order, in process `pid`.
fn assert_hooks_ran_once_in(fx: &Fixture, pid: u32) {
    assert_eq!(
        hooks(fx),
        [format!("on-stop 1 {pid}"), format!("on-stop 2 {pid}")],
        "{:?}",
        fx.marks()
    );
}

fn position(marks: &[String], mark: &str) -> Option<usize> {
    marks.iter().rposition(|m| m == mark)
}

fn stopped_by(signal: Signal, own_handler: Option<&str>) {
    let fx = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_BODY", "slow-step");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("end") >= 1), "a step ends");
    kill(pid, signal).expect("signal the daemon");
    assert_eq!(fx.exit_code(pid), 0, "{}", fx.stderr_log());
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
    assert_hooks_ran_once_in(&fx, pid.as_raw() as u32);
    let marks = fx.marks();
    let first_hook = position(&marks, &format!("on-stop 1 {pid}")).expect("the first hook");
    // After the body's last step, which finished: nothing of the body after the hooks.
    let last_end = position(&marks, "end").expect("a step ended");
    assert!(last_end < first_hook, "{marks:?}");
    assert!(
        position(&marks, "begin").is_some_and(|begin| begin < last_end),
        "{marks:?}"
    );
    // The stop signal's own handler first, then the hooks.
    if let Some(own) = own_handler {
        assert_eq!(fx.count(own), 1, "{marks:?}");
        assert!(position(&marks, own) < Some(first_hook), "{marks:?}");
    }
}

#[test]
fn on_stop_runs_once_after_the_body_at_sigterm() {
    stopped_by(Signal::SIGTERM, Some("term"));
}

#[test]
fn on_stop_runs_once_after_the_body_at_sigint() {
    stopped_by(Signal::SIGINT, Some("int"));
}

#[test]
fn on_stop_runs_once_after_the_body_at_sigquit() {
    stopped_by(Signal::SIGQUIT, None);
}

#[test]
fn on_stop_runs_once_after_ctl_stop() {
    let fx = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_BODY", "self-stop");
    let pid = fx.start();
    assert_eq!(fx.exit_code(pid), 0, "{}", fx.stderr_log());
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
    assert_hooks_ran_once_in(&fx, pid.as_raw() as u32);
    let marks = fx.marks();
    assert!(
        position(&marks, "last") < position(&marks, &format!("on-stop 1 {pid}")),
        "{marks:?}"
    );
    // No stop signal came: no stop signal's handler ran.
    assert_eq!((fx.count("term"), fx.count("int")), (0, 0), "{marks:?}");
}

#[test]
fn on_stop_runs_once_when_stop_signals_arrive_together() {
    let fx = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_BODY", "slow-step");
    let pid = fx.start();
    assert!(
        wait_until(DEADLINE, || fx.count("begin") >= 1),
        "a step began"
    );
    // Signals that both have handlers (the fixture's SIGQUIT has none): whichever the daemon
    // takes first is the one whose handlers run.
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGINT,
    ] {
        kill(pid, signal).expect("signal the daemon");
    }
    assert_eq!(fx.exit_code(pid), 0, "{}", fx.stderr_log());
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
    assert_hooks_ran_once_in(&fx, pid.as_raw() as u32);
    // The first stop signal's handlers, once; the others' not at all.
    assert_eq!(fx.count("term") + fx.count("int"), 1, "{:?}", fx.marks());
}

#[test]
fn on_stop_also_runs_when_the_body_returns_by_itself_or_fails() {
    let returned = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_BODY", "return");
    let pid = returned.start();
    assert_eq!(returned.exit_code(pid), 0, "{}", returned.stderr_log());
    assert_hooks_ran_once_in(&returned, pid.as_raw() as u32);
    assert!(!returned.pidfile().exists(), "the pidfile is removed");

    let failed = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_BODY", "run-error");
    let pid = failed.start();
    assert_eq!(failed.exit_code(pid), 1, "{}", failed.stderr_log());
    assert_hooks_ran_once_in(&failed, pid.as_raw() as u32);
    // The failure stays visible, hooks or not.
    let status = failed.run("status");
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(status.stdout.contains("lost the connection"), "{status:?}");
}

#[test]
fn a_panicking_stop_hook_is_logged_the_next_runs_and_the_exit_is_1() {
    let fx = Fixture::new().with("FIXTURE_ON_STOP", "panic");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    kill(pid, Signal::SIGTERM).expect("kill -TERM");
    assert_eq!(fx.exit_code(pid), 1, "{}", fx.stderr_log());
    assert_hooks_ran_once_in(&fx, pid.as_raw() as u32);
    assert!(
        fx.stderr_log()
            .contains("a stop hook panicked: the first stop hook panics on purpose"),
        "{}",
        fx.stderr_log()
    );
    assert!(!fx.pidfile().exists(), "a stop leaves no pidfile");
}

#[test]
fn a_failed_start_runs_no_stop_hook() {
    let fx = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_SETUP", "fail");
    fx.run("api start").assert_error("Setup");
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "nothing is left running"
    );
    assert_eq!(hooks(&fx), Vec::<String>::new());
}

#[test]
fn under_supervision_on_stop_runs_in_the_child_that_ran_the_body() {
    let fx = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_RESTART", "on-failure");
    let supervisor = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    fx.stop_gracefully(supervisor);
    let hooks = hooks(&fx);
    assert_eq!(hooks.len(), 2, "{:?}", fx.marks());
    let child = hooks[0].rsplit(' ').next().expect("a pid").to_owned();
    assert_ne!(child, supervisor.to_string(), "not in the supervisor");
    assert_eq!(
        hooks,
        [format!("on-stop 1 {child}"), format!("on-stop 2 {child}")]
    );
}

/// `run` in the foreground with a body that takes far longer than [`DEADLINE`] to return after a
/// stop; `first` starts the stop, `second` forces the end.
fn forced_in_the_foreground(first: Signal, second: Signal) {
    let fx = Fixture::new()
        .with("FIXTURE_ON_STOP", "1")
        .with("FIXTURE_BODY", "slow-to-stop")
        .with("FIXTURE_STOP_TIMEOUT_MS", "600000")
        .with("FIXTURE_GRACE_MS", "300000");
    let mut fg = fx.foreground(&mut fx.command("run"));
    let pid = fg.pid();
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 1),
        "the body runs"
    );
    fg.signal(first);
    assert!(
        wait_until(DEADLINE, || fx.count("stopping") == 1),
        "the first signal starts the stop"
    );
    assert!(fx.pidfile().exists(), "the stop waits for the body");
    assert_eq!(hooks(&fx), Vec::<String>::new(), "nothing ran yet");
    fg.signal(second);
    // Within the deadline, where the grace would have taken minutes.
    let status = fg.wait();
    let err = std::fs::read_to_string(fx.path("run.err")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(128 + second as i32),
        "{status:?}; {err}"
    );
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
    // The stop signal's own handlers (the first's) and the hooks, once each.
    assert_hooks_ran_once_in(&fx, pid.as_raw() as u32);
    assert_eq!(
        (fx.count("int"), fx.count("term")),
        (
            usize::from(first == Signal::SIGINT),
            usize::from(first == Signal::SIGTERM)
        ),
        "{:?}",
        fx.marks()
    );
    assert!(
        err.contains(&format!(
            "a second stop signal ({second}) came during the stop"
        )),
        "{err}"
    );
}

#[test]
fn a_second_ctrl_c_in_the_foreground_forces_the_end_with_130() {
    forced_in_the_foreground(Signal::SIGINT, Signal::SIGINT);
}

#[test]
fn a_second_stop_signal_in_the_foreground_forces_the_end_with_its_code() {
    forced_in_the_foreground(Signal::SIGINT, Signal::SIGTERM);
}
