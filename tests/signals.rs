//! Signals sent to a running daemon: handlers run on its signal thread, the daemon lives on.

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{DEADLINE, Fixture, alive, wait_until};
use nix::sys::signal::{Signal, kill};

#[test]
fn sighup_and_sigusr1_run_their_handlers() {
    let fx = Fixture::new();
    let pid = fx.start();
    let sent = fx.run("api send SIGHUP");
    assert_eq!(sent.line(), format!("sent {pid}"));
    assert!(
        wait_until(DEADLINE, || fx.count("hup") == 1),
        "{:?}",
        fx.marks()
    );
    assert_eq!(fx.run("api send SIGUSR1").line(), format!("sent {pid}"));
    assert!(
        wait_until(DEADLINE, || fx.count("usr1") == 1),
        "{:?}",
        fx.marks()
    );
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
}

#[test]
fn sighup_does_not_kill_a_daemon_that_has_no_handler_for_it() {
    let fx = Fixture::new().with("FIXTURE_NO_HANDLERS", "1");
    let pid = fx.start();
    kill(pid, Signal::SIGHUP).expect("kill -HUP");
    // SIGHUP is delivered before the stop's SIGTERM: had its default action (terminate) been in
    // force, the daemon would die of it instead of exiting 0.
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn a_burst_of_sighups_leaves_the_daemon_alive_and_stoppable() {
    let fx = Fixture::new();
    let pid = fx.start();
    for _ in 0..5000 {
        kill(pid, Signal::SIGHUP).expect("kill -HUP");
    }
    assert!(wait_until(DEADLINE, || fx.count("hup") >= 1));
    assert!(alive(pid));
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn sigint_stops_gracefully_and_runs_only_its_own_handler() {
    let fx = Fixture::new();
    let pid = fx.start();
    kill(pid, Signal::SIGINT).expect("kill -INT");
    assert_eq!(fx.exit_code(pid), 0);
    assert!(!fx.pidfile().exists());
    assert_eq!(
        (fx.count("int"), fx.count("term")),
        (1, 0),
        "{:?}",
        fx.marks()
    );
}

#[test]
fn send_to_a_daemon_that_is_not_running_fails() {
    let fx = Fixture::new();
    fx.run("api send SIGHUP").assert_error("NotRunning");
}
