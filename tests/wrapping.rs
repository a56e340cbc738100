//! Wrapping existing code: `.wrap(f)` and the one-line `daemons::wrap` and `daemons::step`, the
//! grace after which a `run` body that ignores a stop is abandoned, `.setup(f)`, failures that
//! stay visible in the pidfile, the guard that takes a removed pidfile again, `run()` as PID 1
//! of a pid namespace, `--pidfile` before the command, and the time and pid on the crate's log
//! lines.

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{DEADLINE, Fixture, Reply, all_pids, stat, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const NAME: &str = "daemons-fixture";

/// How long an `api stop` took, from its `stopped PID exited|killed MS` line.
fn stop_time(reply: &Reply) -> Duration {
    let ms = reply
        .word(3)
        .parse()
        .unwrap_or_else(|_| panic!("{reply:?}"));
    Duration::from_millis(ms)
}

/// Seconds since the epoch of a log line's `2026-12-02T01:23:45.678Z` (Howard Hinnant's
/// `days_from_civil`, the inverse of the crate's date formatting).
fn unix_seconds(stamp: &str) -> i64 {
    let n = |at: std::ops::Range<usize>| -> i64 { stamp[at].parse().expect("digits") };
    let (month, day) = (n(5..7), n(8..10));
    let year = n(0..4) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Assert that `line` is one of the crate's log lines, `2026-12-02T01:23:45.678Z NAME[PID]: ...`,
/// written by the process `pid` within the last few minutes.
fn assert_log_line(line: &str, pid: Pid) {
    let (stamp, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("no time: {line:?}"));
    let rfc3339 = stamp.len() == 24
        && stamp.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(rfc3339, "an RFC 3339 time in UTC first: {line:?}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let age = now - unix_seconds(stamp);
    assert!(
        (-60..300).contains(&age),
        "the time is now ({age} s ago): {line:?}"
    );
    assert!(
        rest.starts_with(&format!("{NAME}[{pid}]: ")),
        "the name and pid next: {line:?}"
    );
}

/// The one line of the stderr log that contains `text`, once it is there.
fn log_line(fx: &Fixture, text: &str) -> String {
    let find = || {
        let log = fx.stderr_log();
        log.lines().find(|l| l.contains(text)).map(str::to_owned)
    };
    assert!(
        wait_until(DEADLINE, || find().is_some()),
        "no line with {text:?} in the log: {}",
        fx.stderr_log()
    );
    find().expect("the line")
}

#[test]
fn a_wrapped_function_is_abandoned_at_once_on_stop_and_its_term_handler_runs_once() {
    // The reference: a step body, which looks at the stop after each step.
    let stepping = Fixture::new()
        .with("FIXTURE_BODY", "step")
        .with("FIXTURE_INTERVAL_MS", "10");
    let step_pid = stepping.start();
    assert!(wait_until(DEADLINE, || stepping.count("step") >= 1));
    let step_stop = stop_time(&stepping.stop_gracefully(step_pid));
    assert_eq!(stepping.exit_code(step_pid), 0);

    // A function that sleeps a second at a time and never looks at a `Ctl`, with the default
    // stop timeout of 10 s (a `run` body would get 5 s to return, then be abandoned).
    let fx = Fixture::new().with("FIXTURE_BODY", "wrapped");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    let reply = fx.stop_gracefully(pid);
    let wrapped_stop = stop_time(&reply);
    assert_eq!(
        fx.exit_code(pid),
        0,
        "abandoning a wrapped function is no failure"
    );
    assert_eq!(
        fx.marks(),
        ["body", "term"],
        "the handler ran once, after the body began"
    );
    assert!(
        wrapped_stop < Duration::from_secs(2) && step_stop < Duration::from_secs(2),
        "stopped as a step body is, far within the 10 s stop timeout: wrapped {wrapped_stop:?}, step {step_stop:?}"
    );
    assert_eq!(fx.run("api status").line(), "not-running");
}

#[test]
fn the_one_line_wrap_and_step_make_daemons_that_stop_gracefully() {
    let wrapped = Fixture::new().with("FIXTURE_BODY", "wrap-fn");
    let out = wrapped.run("start");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let pid = out.pid();
    assert_eq!(out.stdout, format!("{NAME}: started (pid {pid})\n"));
    assert!(wait_until(DEADLINE, || wrapped.count("body") == 1));
    let status = wrapped.run("status");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let stop = wrapped.stop_gracefully(pid);
    assert!(stop_time(&stop) < Duration::from_secs(2), "{stop:?}");
    assert_eq!(wrapped.exit_code(pid), 0);

    let stepping = Fixture::new().with("FIXTURE_BODY", "step-fn");
    let pid = stepping.start();
    assert!(wait_until(DEADLINE, || stepping.count("step") >= 3));
    stepping.stop_gracefully(pid);
    assert_eq!(stepping.exit_code(pid), 0);
    let steps = stepping.count("step");
    assert_eq!(
        stepping.marks().len(),
        steps,
        "only steps: {:?}",
        stepping.marks()
    );
}

#[test]
fn a_run_body_that_ignores_the_stop_is_abandoned_after_half_the_stop_timeout() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "stubborn")
        .with("FIXTURE_STOP_TIMEOUT_MS", "2000");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    // Exited (not killed, which would come at 2 s), after the grace of 1 s.
    let reply = fx.stop_gracefully(pid);
    let took = stop_time(&reply);
    assert!(
        took >= Duration::from_secs(1),
        "abandoned after the grace: {reply:?}"
    );
    assert_eq!(
        fx.exit_code(pid),
        1,
        "a body that did not return is a failure"
    );
    assert_eq!(fx.count("term"), 1, "{:?}", fx.marks());
    let line = log_line(&fx, "the body did not return within");
    assert!(line.contains("within 1s of the stop request"), "{line}");
    // Logged by the thread that abandoned the body: the time and the daemon's pid all the same.
    assert_log_line(&line, pid);
    assert_eq!(
        fx.run("api status").line(),
        "not-running",
        "a failure after a stop request leaves no pidfile"
    );
}

#[test]
fn stop_grace_sets_when_the_body_is_abandoned() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "stubborn")
        .with("FIXTURE_GRACE_MS", "300");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    let reply = fx.stop_gracefully(pid);
    let took = stop_time(&reply);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "after the 300 ms grace, well before the default of half the 10 s stop timeout: {reply:?}"
    );
    assert_eq!(fx.exit_code(pid), 1);
    assert_eq!(fx.count("term"), 1, "{:?}", fx.marks());
    assert!(
        log_line(&fx, "the body did not return within").contains("within 300ms"),
        "{}",
        fx.stderr_log()
    );
}

#[test]
fn a_stop_grace_not_shorter_than_the_stop_timeout_is_refused() {
    for grace in ["2000", "3000"] {
        let fx = Fixture::new()
            .with("FIXTURE_STOP_TIMEOUT_MS", "2000")
            .with("FIXTURE_GRACE_MS", grace);
        let reply = fx.run("api start");
        reply.assert_error("InvalidSetting");
        assert!(reply.line().contains("stop_grace"), "{reply:?}");
        let out = fx.run("start");
        assert_eq!(out.code(), Some(1), "{out:?}");
        assert!(out.stderr.contains("stop_grace"), "{out:?}");
        assert_eq!(fx.marks(), Vec::<String>::new(), "nothing ran");
        assert_eq!(fx.processes(), vec![]);
        assert!(!fx.pidfile().exists());
    }
}

#[test]
fn setup_runs_in_the_daemon_before_the_body() {
    let fx = Fixture::new().with("FIXTURE_SETUP", "ok");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    assert_eq!(fx.marks(), [format!("setup {pid}"), "body".into()]);
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn a_setup_that_fails_or_panics_fails_start_and_leaves_nothing() {
    for (mode, why) in [
        ("fail", "the daemon's set-up failed: no database"),
        (
            "panic",
            "the daemon's set-up failed: panicked: the fixture's set-up panics on purpose",
        ),
    ] {
        let fx = Fixture::new().with("FIXTURE_SETUP", mode);
        let reply = fx.run("api start");
        reply.assert_error("Setup");
        assert!(reply.line().ends_with(why), "{mode}: {reply:?}");
        let out = fx.run("start");
        assert_eq!(out.code(), Some(1), "{mode}: {out:?}");
        assert_eq!(out.stderr, format!("{NAME}: {why}\n"), "{mode}");

        // Each set-up ran in a daemon of its own, which then exited 1 without running the body
        // or a stop handler.
        let pids: Vec<Pid> = fx
            .marks()
            .iter()
            .map(|m| match m.strip_prefix("setup ") {
                Some(pid) => Pid::from_raw(pid.parse().expect("a pid")),
                None => panic!("{mode}: only set-ups ran: {:?}", fx.marks()),
            })
            .collect();
        assert_eq!(pids.len(), 2, "{mode}: {:?}", fx.marks());
        for pid in pids {
            assert_ne!(pid, reply.caller, "{mode}: the set-up runs in the daemon");
            assert_eq!(fx.exit_code(pid), 1, "{mode}");
        }
        assert_eq!(fx.processes(), vec![], "{mode}: no process is left");
        assert!(!fx.pidfile().exists(), "{mode}: no pidfile is left");
        assert_eq!(fx.run("status").code(), Some(3), "{mode}: not running");
    }
}

#[test]
fn a_setup_error_reaches_the_caller_of_start_with_its_sources() {
    let fx = Fixture::new().with("FIXTURE_SETUP", "fail-chain");
    let enoent = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
    // Through `source()`, one error after the other, as the daemon had them.
    let reply = fx.run("api start-sources");
    assert_eq!(
        reply.line(),
        format!("sources cannot open the database | {enoent}"),
        "{reply:?}"
    );
    // `{:#}` says the same chain after the message, and the command line says it so.
    let why = format!("the daemon's set-up failed: cannot open the database: {enoent}");
    let reply = fx.run("api start");
    reply.assert_error("Setup");
    assert!(reply.line().ends_with(&why), "{reply:?}");
    let out = fx.run("start");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(out.stderr, format!("{NAME}: {why}\n"));
    assert_eq!(fx.processes(), vec![], "no process is left");
    assert!(!fx.pidfile().exists(), "no pidfile is left");
}

#[test]
fn a_body_error_with_sources_is_logged_and_kept_whole() {
    let fx = Fixture::new().with("FIXTURE_BODY", "run-error-chain");
    let pid = fx.start();
    assert_eq!(fx.exit_code(pid), 1);
    let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC).to_string();
    let why = format!("cannot save the counter: {enospc}");
    assert_failed(&fx, pid, &why);
    let line = log_line(&fx, "stopping: ");
    assert!(line.ends_with(&format!("stopping: {why}")), "{line:?}");
    assert_log_line(&line, pid);
}

/// A body that failed by itself: `status` exits 1 and says why, `api status` too, and the
/// pidfile keeps the reason on its second line.
fn assert_failed(fx: &Fixture, pid: Pid, why: &str) {
    let out = fx.run("status");
    assert_eq!(
        out.code(),
        Some(1),
        "LSB: dead with a pidfile left: {out:?}"
    );
    assert!(
        out.stdout.starts_with(&format!(
            "{NAME}: failed (pid {pid}): the daemon's body failed: {why}"
        )),
        "{out:?}"
    );
    let reply = fx.run("api status");
    assert_eq!(
        reply.line(),
        format!("dead {pid} failed: the daemon's body failed: {why}")
    );
    let content = fx.pidfile_content().expect("the pidfile is kept");
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines[0], pid.to_string(), "{content:?}");
    assert!(
        lines[1].starts_with("failed: ") && lines[1].contains(why),
        "{content:?}"
    );
}

#[test]
fn a_run_body_that_fails_after_start_stays_visible_with_stderr_on_dev_null() {
    let mut fx = Fixture::new().with("FIXTURE_BODY", "run-error");
    // Nothing the daemon logs can be read: only the pidfile can tell.
    fx.unset("FIXTURE_STDERR");
    let out = fx.run("start");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let pid = out.pid();
    assert_eq!(out.stdout, format!("{NAME}: started (pid {pid})\n"));
    assert_eq!(fx.exit_code(pid), 1);
    assert_failed(&fx, pid, "lost the connection");
    assert_failed(&fx, pid, "lost the connection");

    // The next start clears it, and a graceful stop leaves nothing.
    fx.set("FIXTURE_BODY", "idle");
    let next = fx.start();
    assert_eq!(fx.pidfile_content(), Some(format!("{next}\n")));
    assert_eq!(fx.run("api status").line(), format!("running {next}"));
    fx.stop_gracefully(next);
    assert_eq!(fx.exit_code(next), 0);
    assert_eq!(fx.run("api status").line(), "not-running");
    assert_eq!(fx.run("status").code(), Some(3));
}

#[test]
fn a_wrapped_function_that_fails_by_itself_stays_visible() {
    let fx = Fixture::new().with("FIXTURE_BODY", "wrapped-error");
    let pid = fx.start();
    assert_eq!(fx.exit_code(pid), 1);
    assert_failed(&fx, pid, "the input is gone");
    assert_eq!(fx.count("term"), 0, "no stop was asked: {:?}", fx.marks());
}

/// The processes whose parent is `parent`.
fn children(parent: Pid) -> Vec<Pid> {
    let of = |pid: &Pid| stat(*pid).is_some_and(|s| s.ppid == parent.as_raw());
    all_pids().into_iter().filter(of).collect()
}

fn comm(pid: Pid) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

#[test]
fn as_pid_1_run_reaps_orphans_leaves_the_body_its_children_and_forwards_sigterm() {
    if !common::require_root("a pid namespace needs root") || !common::require_pid_namespace() {
        return;
    }
    let spawned = 30;
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "orphans")
        .with("FIXTURE_COUNT", spawned.to_string());
    let run = fx.command("run");
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(run.get_program())
        .args(run.get_args())
        .env_clear()
        .envs(run.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let mut fg = fx.foreground(&mut unshare);

    // unshare forks the namespace's PID 1, the fixture; `run()` there forks the daemon.
    let mut init = None;
    assert!(
        wait_until(DEADLINE, || {
            init = children(fg.pid()).first().copied();
            init.is_some()
        }),
        "unshare forks PID 1"
    );
    let init = init.expect("PID 1");
    let daemon = || {
        let mut found = children(init);
        found.retain(|&pid| comm(pid) == NAME);
        found
    };
    assert!(
        wait_until(DEADLINE, || daemon().len() == 1),
        "PID 1 runs the daemon as its child: {:?}",
        children(init)
    );

    // Each `sh` exits at once: its `sleep` is left to PID 1.
    assert!(
        wait_until(DEADLINE, || children(init)
            .iter()
            .any(|&p| comm(p) == "sleep")),
        "orphans reach PID 1"
    );
    assert!(
        wait_until(DEADLINE, || fx.count_prefix("wait") >= spawned),
        "the body spawned every sh: {:?}",
        fx.marks()
    );
    assert_eq!(
        fx.count("waited ok"),
        spawned,
        "the body waited for each sh it spawned, and got its exit status: {:?}",
        fx.marks()
    );
    // Every orphan ended and was reaped: no zombie, no sleep, only the daemon is left.
    let zombies = || {
        let zombie = |pid: &Pid| stat(*pid).is_some_and(|s| s.state == 'Z');
        children(init).iter().filter(|pid| zombie(pid)).count()
    };
    assert!(
        wait_until(DEADLINE, || zombies() == 0 && children(init) == daemon()),
        "{} zombies of PID 1 left, children {:?}",
        zombies(),
        children(init)
    );

    // SIGTERM to PID 1 is passed on to the daemon, which stops gracefully; PID 1 exits with its
    // code, and unshare with PID 1's.
    kill(init, Signal::SIGTERM).expect("SIGTERM to the namespace's PID 1");
    let status = fg.wait();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}: {}",
        fs::read_to_string(fx.path("run.err")).unwrap_or_default()
    );
    assert_eq!(fx.count("term"), 1, "{:?}", fx.marks());
    assert!(!fx.pidfile().exists());
    assert_eq!(fx.processes(), vec![], "nothing of the namespace is left");
}

#[test]
fn the_pidfile_option_before_the_command_names_another_pidfile() {
    let fx = Fixture::new();
    let other = fx.path("other.pid");
    let with = |command: &str| fx.run(&format!("--pidfile {} {command}", other.display()));

    let out = with("start");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let pid = out.pid();
    assert_eq!(
        fs::read_to_string(&other).ok(),
        Some(format!("{pid}\n")),
        "the daemon took the pidfile of the option"
    );
    assert!(!fx.pidfile().exists(), "and not the program's own");
    assert_eq!(
        fx.run("status").code(),
        Some(3),
        "the program's own pidfile: not running"
    );
    let out = with("status");
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (Some(0), format!("{NAME}: running (pid {pid})\n").as_str())
    );
    let out = fx.run(&format!("--pidfile={} status", other.display()));
    assert_eq!(out.code(), Some(0), "--pidfile=PATH too: {out:?}");
    assert_eq!(
        fx.run("stop").stdout,
        format!(
            "{NAME}: not running (no daemon holds pidfile {})\n",
            fx.pidfile().display()
        )
    );

    let out = with("stop");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("{NAME}: stopped (pid {pid}, after ")),
        "{out:?}"
    );
    assert_eq!(fx.exit_code(pid), 0);
    assert!(!other.exists());
    assert_eq!(fx.count("term"), 1);

    let out = fx.run("--pidfile");
    assert_eq!(out.code(), Some(2), "a usage error: {out:?}");
}

#[test]
fn a_pool_workers_log_line_carries_the_time_and_the_pid() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "messages")
        .with("FIXTURE_COUNT", "2")
        .with("FIXTURE_PANIC_EVERY", "2");
    let pid = fx.start();
    let line = log_line(&fx, "message #2: the handler panicked");
    assert_log_line(&line, pid);
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn a_daemon_that_dropped_root_leaves_its_reason_too() {
    if !common::require_root("only root can drop privileges") {
        return;
    }
    let fx = Fixture::new()
        .with("FIXTURE_USER", "nobody")
        .with("FIXTURE_BODY", "run-error");
    // Root's 0755 directory, as /run is: nobody can neither create nor remove a file in it, but
    // writes the reason through the pidfile it holds open.
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    let pid = fx.start();
    assert_eq!(fx.exit_code(pid), 1);
    assert_failed(&fx, pid, "lost the connection");
}

#[test]
fn when_another_instance_took_the_pidfile_the_older_one_stops() {
    let fx = Fixture::new();
    let first = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    // Frozen, the first cannot take its pidfile again before the second instance has it.
    kill(first, Signal::SIGSTOP).expect("SIGSTOP");
    fs::remove_file(fx.pidfile()).expect("rm the pidfile");
    let second = fx.start();
    assert_ne!(first, second);
    kill(first, Signal::SIGCONT).expect("SIGCONT");

    assert_eq!(fx.exit_code(first), 0, "the older instance stops by itself");
    let line = log_line(&fx, "was taken by another process");
    assert_log_line(&line, first);
    assert_eq!(fx.count("term"), 0, "no stop signal came: {:?}", fx.marks());
    assert_eq!(
        fx.pidfile_content(),
        Some(format!("{second}\n")),
        "not removed"
    );
    assert_eq!(fx.run("api status").line(), format!("running {second}"));
    fx.stop_gracefully(second);
    assert_eq!(fx.exit_code(second), 0);
}

#[test]
fn a_body_that_fails_before_it_is_ready_fails_start_and_leaves_nothing() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "run-error")
        .with("FIXTURE_MANUAL_READY", "1");
    let reply = fx.run("api start");
    reply.assert_error("Body");
    assert!(reply.line().contains("lost the connection"), "{reply:?}");
    let line = log_line(&fx, "stopping: lost the connection");
    let pid = line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(pid, _)| pid.parse().ok())
        .map(Pid::from_raw)
        .unwrap_or_else(|| panic!("a pid in {line:?}"));
    assert_log_line(&line, pid);
    assert_eq!(fx.exit_code(pid), 1);
    // The caller has the reason already: as after any failed start, no pidfile is left.
    assert_eq!(fx.pidfile_content(), None, "no pidfile is left");
    assert_eq!(fx.run("api status").line(), "not-running");
    assert_eq!(fx.processes(), vec![]);
}
