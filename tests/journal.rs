//! The journal: when `JOURNAL_STREAM` names the daemon's stderr, the crate's own lines carry
//! sd-daemon(3) priority prefixes and no time or `name[pid]` of their own (journald adds them);
//! with any other stderr they stay as they are.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{DEADLINE, Fixture, wait_until};

/// Run a supervised body that fails every time until the supervisor gives up (after 3), its stderr in
/// `run.err`; with `journal`, `JOURNAL_STREAM` names that file (else another file).
fn failing_run(journal: bool) -> String {
    let fx = Fixture::new()
        .with("FIXTURE_RESTART", "on-failure")
        .with("FIXTURE_BODY", "step-error")
        .with("FIXTURE_BACKOFF_MS", "1")
        .with("FIXTURE_LIMIT", "3")
        .with("FIXTURE_LIMIT_MS", "60000");
    let stderr = fs::File::create(fx.path("run.err")).expect("run.err");
    let named = match journal {
        true => stderr.metadata().expect("fstat"),
        false => fs::File::create(fx.path("other"))
            .expect("other")
            .metadata()
            .expect("fstat"),
    };
    let mut command = fx.command("run");
    command
        .env("JOURNAL_STREAM", format!("{}:{}", named.dev(), named.ino()))
        .stderr(stderr);
    let mut run = command.spawn().expect("run the fixture");
    let mut status = None;
    let ended = wait_until(DEADLINE, || {
        status = run.try_wait().expect("wait for the fixture");
        status.is_some()
    });
    if !ended {
        let _ = run.kill();
        let _ = run.wait();
    }
    assert!(ended, "the supervisor gave up and run() returned");
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    fs::read_to_string(fx.path("run.err")).expect("run.err")
}

#[test]
fn lines_to_the_journal_carry_priorities_and_no_stamp() {
    let said = failing_run(true);
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>the body's process (pid ")),
        "a restart is a warning: {said}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<3>gave up after ")),
        "giving up is an error: {said}"
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("<3>")),
        "run's failure is an error: {said}"
    );
    // Each of the crate's lines starts with its priority, and none with a time stamp.
    for line in lines.iter().filter(|l| !l.starts_with("thread ")) {
        assert!(line.starts_with('<'), "{line:?} in {said}");
        assert!(!line.contains("Z daemons-fixture["), "{line:?}");
    }
}

#[test]
fn lines_elsewhere_keep_their_stamp() {
    let said = failing_run(false);
    assert!(!said.contains("<4>") && !said.contains("<3>"), "{said}");
    let restart = said
        .lines()
        .find(|l| l.contains("the body's process (pid "))
        .unwrap_or_else(|| panic!("a restart line: {said}"));
    assert!(
        restart.starts_with("20") && restart.contains("Z daemons-fixture["),
        "{restart}"
    );
}
