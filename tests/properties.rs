//! Properties over arbitrary input: whatever bytes an unlocked pidfile holds, probing it never
//! panics and never takes it for a running daemon, and `stop` removes it without signalling
//! anything; whatever arguments the command line gets that are not a command, it prints the usage
//! and exits 2.
//!
//! These run in the test process itself: nothing here forks (`cli_from` is never given `start`,
//! `restart` or `run`).

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;
use std::time::Duration;

use daemons::control::{self, Stopped};
use daemons::{Daemon, Error, Pid, Pidfile, Signal, Status};
use proptest::prelude::*;

/// The words that `cli_from` acts on.
const COMMANDS: [&str; 9] = [
    "start", "stop", "restart", "status", "reload", "run", "help", "--help", "-h",
];

/// What an unlocked pidfile with `content` names: one positive number, spaces around it aside.
fn expected_pid(content: &[u8]) -> Option<Pid> {
    let text = String::from_utf8_lossy(content);
    let raw: i32 = text.lines().next()?.trim().parse().ok()?;
    (raw > 0).then(|| Pid::from_raw(raw))
}

/// The reason a failed daemon left on the second line, `failed: REASON`, if any.
fn expected_failure(content: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(content);
    let reason = text
        .lines()
        .nth(1)?
        .strip_prefix("failed: ")?
        .trim()
        .to_owned();
    Some(reason).filter(|r| !r.is_empty())
}

/// Pidfile contents: arbitrary bytes, and text that is nearly a pid (around the numbers that
/// `kill` treats specially, this process's own pid, numbers past `i32`), with white space.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    let me = std::process::id().to_string();
    let number = prop_oneof![
        Just(me),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("+7".to_owned()),
        Just("2147483647".to_owned()),
        Just("2147483648".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,12}",
    ];
    let space = "[ \t\n\r\u{b}\u{c}\u{a0}\u{2003}]{0,3}";
    let near = (
        space,
        number,
        space,
        prop_oneof![Just(String::new()), ".{0,3}".boxed()],
    )
        .prop_map(|(before, n, after, junk)| format!("{before}{n}{after}{junk}").into_bytes());
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..64), near]
}

/// Command lines that are not a command: arbitrary bytes, and words close to the commands.
fn not_commands() -> impl Strategy<Value = Vec<OsString>> {
    let near = prop_oneof![
        Just("Start"),
        Just("STOP"),
        Just(" status"),
        Just("status "),
        Just("re load"),
        Just("--start"),
        Just("-H"),
        Just("--h"),
        Just("helpme"),
        Just(""),
        Just("-"),
        Just("--"),
    ]
    .prop_map(OsString::from);
    let bytes = proptest::collection::vec(any::<u8>(), 0..16).prop_map(OsString::from_vec);
    let word = prop_oneof![near, bytes, any::<String>().prop_map(OsString::from)];
    proptest::collection::vec(word, 0..4).prop_filter("no command word", |args| {
        args.iter()
            .all(|a| !COMMANDS.contains(&a.to_string_lossy().as_ref()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_content_of_an_unlocked_pidfile_is_dead_and_stop_removes_it(content in contents()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("any.pid");
        fs::write(&path, &content).expect("write the pidfile");
        // Mode 0644 whatever the umask: as root, a pidfile that others can write is refused.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let pidfile = Pidfile::new(&path);
        let named = expected_pid(&content);
        let failure = expected_failure(&content);

        prop_assert_eq!(pidfile.probe().expect("probe"), Status::Dead { pid: named, failure });
        prop_assert_eq!(pidfile.read().expect("read"), named);
        let sent = control::send(&pidfile, Signal::SIGTERM);
        prop_assert!(matches!(sent, Err(Error::NotRunning { .. })), "{:?}", sent);
        let stopped = control::stop(&pidfile, Duration::from_secs(1)).expect("stop");
        prop_assert_eq!(stopped, Stopped::NotRunning);
        prop_assert!(!path.exists(), "stop removed the stale pidfile");
        prop_assert_eq!(pidfile.probe().expect("probe"), Status::NotRunning);
    }

    #[test]
    fn any_command_line_that_is_not_a_command_exits_2(args in not_commands()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon = Daemon::builder()
            .pidfile(dir.path().join("cli.pid"))
            .step(|| {})
            .build()
            .expect("build");
        prop_assert_eq!(daemon.cli_from(&args), ExitCode::from(2));
        prop_assert!(!dir.path().join("cli.pid").exists(), "nothing was started");
    }
}

/// A file longer than any pid whose first 64 bytes are one: it is not one number, so it names
/// no pid.
#[test]
fn a_pidfile_longer_than_a_pid_that_starts_with_one_names_no_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.pid");
    let content = format!("{}{}garbage\n", std::process::id(), " ".repeat(64));
    fs::write(&path, &content).expect("write the pidfile");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(expected_pid(content.as_bytes()), None);
    let pidfile = Pidfile::new(&path);
    assert_eq!(pidfile.read().expect("read"), None);
    assert_eq!(
        pidfile.probe().expect("probe"),
        Status::Dead {
            pid: None,
            failure: None
        }
    );
}
