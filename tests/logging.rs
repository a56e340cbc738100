//! Logging that fits the ecosystem: the logging example installs `env_logger` or
//! `tracing-subscriber` inside its daemon with `.logger()`, and, with the `log` feature, the
//! crate's own lines go through it. Checked in the log file, byte for byte: no ANSI code, one
//! format for the program's lines and the crate's, and `RUST_LOG` filtering the crate's lines.
//!
//! The example needs the `log` feature (`cargo test --features log`, as CI runs it); without it
//! these tests are listed as ignored.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::{DEADLINE, Fixture, example_binary, wait_until};

/// `logging COMMAND` with its pidfile and log in the fixture's directory, and `env`.
fn logging(fx: &Fixture, command: &str, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(example_binary("logging"))
        .arg(command)
        .env_clear()
        .env("DAEMONS_LOGGING_PIDFILE", fx.path("logging.pid"))
        .env("DAEMONS_LOGGING_LOG", fx.path("logging.log"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the logging example")
}

/// Start the example, wait until its log holds `lines` lines (a crate line among the first
/// three ticks' worth), stop it, and return the log.
fn run_until(fx: &Fixture, env: &[(&str, &str)], ready: impl Fn(&str) -> bool) -> String {
    let started = logging(fx, "start", env);
    assert!(started.status.success(), "{started:?}");
    let log = || fs::read_to_string(fx.path("logging.log")).unwrap_or_default();
    let seen = wait_until(DEADLINE, || ready(&log()));
    let stopped = logging(fx, "stop", env);
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(seen, "the log never got there: {:?}", log());
    log()
}

fn assert_no_ansi(log: &str) {
    assert!(
        !log.contains('\u{1b}'),
        "an ANSI escape in the log file: {log:?}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "log"),
    ignore = "needs the log feature: cargo test --features log"
)]
fn env_logger_installed_in_the_daemon_writes_the_crates_lines_in_its_format_without_colour() {
    let fx = Fixture::new();
    let log = run_until(&fx, &[], |log| {
        log.contains("[WARN  daemons] a step failed")
    });
    assert_no_ansi(&log);
    assert!(log.contains("[INFO  logging] tick 1\n"), "{log}");
    assert!(
        log.contains("[WARN  daemons] a step failed: tick 3 was a third one (going on)\n"),
        "the crate's line, through env_logger, at its level and target: {log}"
    );
    assert!(
        !log.contains("logging["),
        "no line in the crate's own format: {log}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "log"),
    ignore = "needs the log feature: cargo test --features log"
)]
fn rust_log_filters_the_crates_lines() {
    let fx = Fixture::new();
    let log = run_until(&fx, &[("RUST_LOG", "info,daemons=off")], |log| {
        log.contains("tick 7\n")
    });
    assert_no_ansi(&log);
    assert!(
        !log.contains("daemons"),
        "RUST_LOG=daemons=off leaves none of the crate's lines: {log}"
    );
    let fx = Fixture::new();
    let log = run_until(&fx, &[("RUST_LOG", "warn")], |log| log.contains("tick 6 "));
    assert!(
        !log.contains("tick 1"),
        "RUST_LOG=warn leaves no information: {log}"
    );
    assert!(log.contains("[WARN  daemons] a step failed"), "{log}");
}

#[test]
#[cfg_attr(
    not(feature = "log"),
    ignore = "needs the log feature: cargo test --features log"
)]
fn tracing_subscriber_installed_in_the_daemon_writes_no_colour_into_the_file() {
    let fx = Fixture::new();
    let log = run_until(&fx, &[("DAEMONS_LOGGING_WITH", "tracing")], |log| {
        log.contains("WARN daemons: a step failed")
    });
    // tracing-subscriber colours by default, terminal or not: `.logger()` sets NO_COLOR while
    // it is installed, since the daemon's stderr is a file.
    assert_no_ansi(&log);
    assert!(log.contains(" INFO logging: tick 1\n"), "{log}");
    assert!(
        log.contains(" WARN daemons: a step failed: tick 3 was a third one (going on)\n"),
        "the crate's line, through tracing's log bridge: {log}"
    );
}

#[test]
fn without_a_logger_the_crates_lines_keep_their_own_format() {
    // The fixture installs no logger: the crate's lines are its own, stamped and named.
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "step-error")
        .with("FIXTURE_KEEP_GOING", "1");
    let pid = fx.start();
    assert!(
        wait_until(DEADLINE, || fx.stderr_log().contains("a step failed")),
        "{}",
        fx.stderr_log()
    );
    fx.stop_gracefully(pid);
    let log = fx.stderr_log();
    let line = log
        .lines()
        .find(|l| l.contains("a step failed"))
        .expect("a step's failure");
    assert!(
        line.starts_with("20") && line.contains("Z daemons-fixture["),
        "{line}"
    );
}
