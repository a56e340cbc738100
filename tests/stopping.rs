//! How a daemon comes to a stop, and what it must never be caught doing while it starts: the
//! pidfile guard, a start that fails late, stops that meet a stopped daemon, a stuck handler or
//! children, and the settings that `build()` refuses.

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DEADLINE, Fixture, NOBODY, Reply, alive, all_pids, fd_targets, proc_status, require_root, stat,
    wait_until, zombie_children,
};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

/// Poll `cond` without sleeping until it holds or `deadline` has passed: for a window of
/// microseconds that a 5 ms poll would step over.
fn spin_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::yield_now();
    }
    cond()
}

/// The pid that `marks` names after `prefix` (`child 42`).
fn marked_pid(fx: &Fixture, prefix: &str) -> Pid {
    assert!(
        wait_until(DEADLINE, || fx.count_prefix(prefix) == 1),
        "no {prefix:?} mark: {:?}",
        fx.marks()
    );
    let marks = fx.marks();
    let line = marks
        .iter()
        .find(|m| m.starts_with(prefix))
        .expect("marked");
    Pid::from_raw(line[prefix.len()..].trim().parse().expect("a pid"))
}

/// Whether the daemon's stderr log has a line that contains every one of `parts`.
fn logged(fx: &Fixture, parts: &[&str]) -> bool {
    fx.stderr_log()
        .lines()
        .any(|line| parts.iter().all(|p| line.contains(p)))
}

/// Whether the daemon `pid` holds an unlinked pidfile still: one whose path was removed or
/// replaced, and that it should have let go of.
fn holds_a_deleted_pidfile(pid: Pid, pidfile: &Path) -> bool {
    let deleted = format!("{} (deleted)", pidfile.display());
    fd_targets(pid)
        .iter()
        .any(|t| t.as_os_str() == deleted.as_str())
}

/// Reap a child of this process (their subreaper) that is not a daemon the harness knows of: a
/// child the daemon left behind, reparented here when the daemon exited.
fn reap_orphan(pid: Pid) -> WaitStatus {
    let mut status = None;
    let ended = wait_until(DEADLINE, || {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => false,
            Ok(s) => {
                status = Some(s);
                true
            }
            Err(e) => panic!("waitpid({pid}): {e}: it is not a child of the test process"),
        }
    });
    assert!(ended, "{pid} did not end within {DEADLINE:?}");
    status.expect("a status")
}

/// The daemon of a start that failed inside the daemon: it reports, then exits 1, a child of
/// this process that no `started PID` line named. It is found among the zombies that were not
/// there `before` (no other test of this file has a daemon that exits 1), peeked at without
/// reaping, and only then reaped.
fn reap_failed_daemon(before: &[Pid]) -> Pid {
    let exited_1 = |pid: &Pid| {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "daemons-fixture")
            && matches!(
                waitid(
                    Id::Pid(*pid),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
                ),
                Ok(WaitStatus::Exited(_, 1))
            )
    };
    let mut found = None;
    let seen = wait_until(DEADLINE, || {
        found = zombie_children()
            .into_iter()
            .filter(|pid| !before.contains(pid))
            .find(exited_1);
        found.is_some()
    });
    assert!(seen, "no daemon of this start exited 1");
    let pid = found.expect("found");
    assert_eq!(reap_orphan(pid), WaitStatus::Exited(pid, 1));
    pid
}

/// No pidfile, and no live process of the fixture.
fn assert_nothing_left(fx: &Fixture) {
    assert!(
        fs::symlink_metadata(fx.pidfile()).is_err(),
        "the pidfile was left behind"
    );
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "processes left: {:?}",
        fx.processes()
    );
}

fn assert_no_panic(reply: &Reply) {
    assert!(!reply.stderr.contains("panicked"), "{reply:?}");
}

// The pidfile guard: once a second, the daemon checks that its pidfile's path still names the
// file it locked.

#[test]
fn a_removed_pidfile_is_created_again_with_the_daemons_pid() {
    let fx = Fixture::new();
    let pid = fx.start();
    let pidfile = fx.pidfile();
    fs::remove_file(&pidfile).expect("rm the pidfile");
    assert!(
        wait_until(DEADLINE, || fx.pidfile_content()
            == Some(format!("{pid}\n"))),
        "the pidfile was not written again: {:?}\nstderr log: {}",
        fx.pidfile_content(),
        fx.stderr_log()
    );
    assert!(
        wait_until(DEADLINE, || logged(&fx, &["taken again"])),
        "{}",
        fx.stderr_log()
    );
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    assert!(
        !holds_a_deleted_pidfile(pid, &pidfile),
        "the removed file's lock was let go of: {:?}",
        fd_targets(pid)
    );
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn a_pidfile_replaced_by_a_file_nobody_locks_is_taken_over() {
    let fx = Fixture::new();
    let pid = fx.start();
    let pidfile = fx.pidfile();
    // Root's and 0644, so that root trusts it; put in place in one rename.
    let replacement = fx.path("replacement");
    fs::write(&replacement, "junk, not a pid\n").expect("write the replacement");
    fs::set_permissions(&replacement, fs::Permissions::from_mode(0o644)).expect("chmod");
    let inode = fs::metadata(&replacement).expect("stat").ino();
    fs::rename(&replacement, &pidfile).expect("replace the pidfile");
    assert!(
        wait_until(DEADLINE, || fx.pidfile_content()
            == Some(format!("{pid}\n"))),
        "the replacement was not taken: {:?}\nstderr log: {}",
        fx.pidfile_content(),
        fx.stderr_log()
    );
    assert_eq!(
        fs::metadata(&pidfile).expect("stat").ino(),
        inode,
        "the daemon took the file that is there instead of making another"
    );
    assert!(
        wait_until(DEADLINE, || logged(&fx, &["taken again"])),
        "{}",
        fx.stderr_log()
    );
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    assert!(
        !holds_a_deleted_pidfile(pid, &pidfile),
        "{:?}",
        fd_targets(pid)
    );
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

// Ready is reported only once the daemon has everything it needs to serve.

/// A stack no thread can have: every thread spawn of the process fails.
const NO_THREADS: &str = "1000000000000";

#[test]
fn a_start_that_cannot_spawn_the_control_thread_fails_and_leaves_nothing() {
    // The fixture's SIGHUP handlers need a signal thread.
    let fx = Fixture::new().with("RUST_MIN_STACK", NO_THREADS);
    let before = zombie_children();
    let reply = fx.run("api start");
    reply.assert_error("Sys");
    assert!(
        reply.line().contains("spawn the signal thread"),
        "{reply:?}"
    );
    assert_no_panic(&reply);
    assert_nothing_left(&fx);
    assert_eq!(fx.count("body"), 0, "the body never ran");
    reap_failed_daemon(&before);
}

#[test]
fn without_a_keeper_thread_no_daemon_starts_in_the_foreground_or_detached() {
    // No handlers and no log files to reopen at a SIGHUP: no signal thread. The keeper (the
    // pidfile's watch, the grace of a body that ignores a stop, the only way to stop a wrapped
    // function) is spawned before ready: without it the daemon does not start, and says why.
    let mut fx = Fixture::new()
        .with("RUST_MIN_STACK", NO_THREADS)
        .with("FIXTURE_NO_HANDLERS", "1");
    fx.unset("FIXTURE_STDERR");
    let reply = fx.run("api run");
    reply.assert_error("Sys");
    assert!(
        reply.line().contains("spawn the keeper thread"),
        "{reply:?}"
    );
    assert_no_panic(&reply);
    assert_eq!(fx.count("body"), 0, "the body never ran");
    assert!(!fx.pidfile().exists());

    for body in ["idle", "wrapped"] {
        let mut fx = Fixture::new()
            .with("RUST_MIN_STACK", NO_THREADS)
            .with("FIXTURE_NO_HANDLERS", "1")
            .with("FIXTURE_BODY", body);
        fx.unset("FIXTURE_STDERR");
        let before = zombie_children();
        let reply = fx.run("api start");
        reply.assert_error("Sys");
        assert!(
            reply.line().contains("spawn the keeper thread"),
            "{body}: {reply:?}"
        );
        assert_no_panic(&reply);
        assert_eq!(fx.count("body"), 0, "{body}: the body never ran");
        reap_failed_daemon(&before);
        assert_nothing_left(&fx);
    }
}

/// How many tasks (threads included) the user `uid` runs: what `RLIMIT_NPROC` counts.
fn tasks_of(uid: u32) -> u64 {
    all_pids()
        .into_iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter(|status| {
            let real = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok());
            real == Some(uid)
        })
        .map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// `api ARGS` as nobody, limited to the tasks that nobody runs now plus `room`.
fn as_nobody_with_room_for(fx: &Fixture, args: &str, room: u64) -> Reply {
    let limit = tasks_of(NOBODY) + room;
    let mut command = fx.command(args);
    command.uid(NOBODY).gid(NOBODY);
    // SAFETY: setrlimit is async-signal-safe, and the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &rlimit) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    fx.execute(&mut command)
}

#[test]
fn a_second_fork_that_fails_reaches_start_as_the_fork_error() {
    if !require_root("only root can run the caller as nobody under a process limit") {
        return;
    }
    // No signal thread, which the limit would refuse in the calibration below.
    let mut fx = Fixture::new().with("FIXTURE_NO_HANDLERS", "1");
    fx.unset("FIXTURE_STDERR");
    // nobody creates the marks file, and the pidfile of the calibration.
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o777)).expect("chmod");
    // Room for the caller and the intermediate process, not for the daemon. No other test of
    // this file runs processes as nobody.
    let reply = as_nobody_with_room_for(&fx, "api start", 2);
    reply.assert_error("Fork");
    assert!(reply.line().contains("fork failed"), "{reply:?}");
    assert!(
        reply.line().contains(&format!("os error {}", libc::EAGAIN)),
        "{reply:?}"
    );
    assert_no_panic(&reply);
    assert_nothing_left(&fx);

    // The calibration: with room for two more (the daemon, and its keeper thread) the daemon
    // starts, so the count was right and the first fork had room; what failed was the second.
    let started = as_nobody_with_room_for(&fx, "api start", 4);
    assert_eq!(started.word(0), "started", "{started:?}");
    let pid = started.pid();
    let stopped = fx.execute(fx.command("api stop").uid(NOBODY).gid(NOBODY));
    assert_eq!(
        stopped
            .line()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>(),
        ["stopped", &pid.to_string(), "exited"],
        "{stopped:?}"
    );
    assert_eq!(fx.exit_code(pid), 0);
}

// The pid is written only once the stop signals are caught, into a pidfile that appeared locked.

#[test]
fn a_pid_in_the_pidfile_always_names_a_daemon_that_catches_sigterm() {
    const ROUNDS: usize = 30;
    let fx = Fixture::new();
    let pidfile = fx.pidfile();
    for round in 0..ROUNDS {
        assert!(!pidfile.exists(), "round {round}: a pidfile is left");
        let caller = fx
            .command("api start")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn api start");
        let mut named = None;
        let appeared = spin_until(DEADLINE, || {
            let Ok(file) = File::open(&pidfile) else {
                return false;
            };
            // Only the daemon's start runs now: whoever sees the file sees it locked.
            assert!(
                matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock)),
                "round {round}: the pidfile was seen unlocked"
            );
            let content = fs::read_to_string(&pidfile).unwrap_or_default();
            named = content
                .strip_suffix('\n')
                .and_then(|pid| pid.parse().ok())
                .map(Pid::from_raw);
            named.is_some()
        });
        assert!(appeared, "round {round}: no pid in the pidfile");
        let pid = named.expect("a pid");
        kill(pid, Signal::SIGTERM).expect("kill -TERM");
        // A SIGTERM that met the default action would kill it (no exit code): this panics then.
        assert_eq!(
            fx.exit_code(pid),
            0,
            "round {round}\nstderr log: {}",
            fx.stderr_log()
        );
        let output = caller.wait_with_output().expect("wait for api start");
        let line = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            (line.trim_end(), output.status.code()),
            (format!("started {pid}").as_str(), Some(0)),
            "round {round}: {output:?}"
        );
    }
    assert_eq!(fx.count("term"), ROUNDS, "{:?}", fx.marks());
}

/// Where a `start()`/`stop()` round is, for a poller: `4k+1` while round k starts, `4k+2` while
/// it runs, `4k+3` while it stops, `4k+4` between rounds.
struct Phase(AtomicUsize);

impl Phase {
    fn next(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Ends the phases on drop, so that a poller that waits for the end stops even if the test
/// panics.
struct Finish<'a>(&'a AtomicBool);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One `api status` answer of a poller, and the phases it began and ended in.
struct Answer {
    line: String,
    code: Option<i32>,
    phases: std::ops::RangeInclusive<usize>,
}

impl Answer {
    /// `running PID`, `starting` or `not-running`, and exit code 0.
    fn is_right(&self) -> bool {
        let line = self.line.as_str();
        let known = line.starts_with("running ") || line == "starting" || line == "not-running";
        known && self.code == Some(0)
    }

    /// Whether the daemon was stopping at some moment of this answer.
    fn met_a_stop(&self) -> bool {
        self.phases.clone().any(|p| p % 4 == 3)
    }

    fn began_in_a_start(&self) -> bool {
        self.phases.start() % 4 == 1
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} (exit {:?}, phases {:?})",
            self.line, self.code, self.phases
        )
    }
}

/// `rounds` starts and graceful stops, while another thread runs `api status` again and again:
/// its answers.
fn status_during_rounds(rounds: usize) -> Vec<Answer> {
    let fx = Fixture::new();
    let phase = Phase(AtomicUsize::new(0));
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::Acquire) {
                let before = phase.0.load(Ordering::Acquire);
                let reply = fx.run("api status");
                seen.push(Answer {
                    line: reply.line().to_owned(),
                    code: reply.code(),
                    phases: before..=phase.0.load(Ordering::Acquire),
                });
            }
            seen
        });
        let finish = Finish(&done);
        for _ in 0..rounds {
            phase.next();
            let pid = fx.start();
            phase.next();
            wait_until(DEADLINE, || fx.count("body") > 0);
            phase.next();
            fx.stop_gracefully(pid);
            phase.next();
            assert_eq!(fx.exit_code(pid), 0);
        }
        drop(finish);
        poller.join().expect("the poller")
    })
}

#[test]
fn status_never_says_dead_while_a_daemon_starts() {
    let seen = status_during_rounds(20);
    let starting = seen.iter().filter(|a| a.began_in_a_start()).count();
    assert!(starting > 0, "no answer began within a start: {seen:?}");
    let wrong: Vec<&Answer> = seen
        .iter()
        .filter(|a| !a.met_a_stop() && !a.is_right())
        .collect();
    assert!(wrong.is_empty(), "{wrong:?} among {} answers", seen.len());
}

#[test]
fn status_never_says_dead_while_a_daemon_stops() {
    // A probe that opened the pidfile before the daemon unlinked it, and tries its lock after the
    // daemon released it, finds a file that nobody holds: it must see that the path no longer
    // names that file, and look again. Racy: one stop in fifty to a hundred is caught.
    let seen = status_during_rounds(200);
    let wrong: Vec<&Answer> = seen.iter().filter(|a| !a.is_right()).collect();
    assert!(wrong.is_empty(), "{wrong:?} among {} answers", seen.len());
}

// Settings at the edges.

#[test]
fn the_longest_timeouts_start_and_stop_without_panicking() {
    let fx = Fixture::new()
        .with("FIXTURE_STOP_TIMEOUT_MAX", "1")
        .with("FIXTURE_READY_TIMEOUT_MAX", "1");
    let started = fx.run("api start");
    assert_no_panic(&started);
    let pid = started.pid();
    assert_eq!(started.line(), format!("started {pid}"), "{started:?}");
    let restarted = fx.run("api restart");
    assert_no_panic(&restarted);
    assert_eq!(restarted.word(0), "started", "{restarted:?}");
    assert_eq!(fx.exit_code(pid), 0);
    let pid = restarted.pid();
    assert_no_panic(&fx.stop_gracefully(pid));
    assert_eq!(fx.exit_code(pid), 0);
    assert_eq!(fx.count("term"), 2);

    // The longest in milliseconds: far from Duration::MAX, still past any Instant.
    let fx = Fixture::new()
        .with("FIXTURE_STOP_TIMEOUT_MS", u64::MAX.to_string())
        .with("FIXTURE_READY_TIMEOUT_MS", u64::MAX.to_string());
    let started = fx.run("api start");
    assert_no_panic(&started);
    let pid = started.pid();
    assert_no_panic(&fx.stop_gracefully(pid));
    assert_eq!(fx.exit_code(pid), 0);

    // Half of the longest stop timeout is how long the children have after SIGTERM.
    let fx = Fixture::new()
        .with("FIXTURE_STOP_TIMEOUT_MAX", "1")
        .with("FIXTURE_STOP_CHILDREN", "1")
        .with("FIXTURE_BODY", "spawn-child");
    let pid = fx.start();
    let child = marked_pid(&fx, "child ");
    assert_no_panic(&fx.stop_gracefully(pid));
    assert_eq!(fx.exit_code(pid), 0);
    assert_eq!(
        reap_orphan(child),
        WaitStatus::Signaled(child, Signal::SIGTERM, false)
    );
    assert!(!fx.stderr_log().contains("panicked"), "{}", fx.stderr_log());
}

#[test]
fn build_refuses_settings_that_cannot_work_and_nothing_starts() {
    for (settings, method) in [
        (&[("FIXTURE_STOP_TIMEOUT_MS", "0")][..], ".stop_timeout()"),
        (&[("FIXTURE_UMASK", "777")][..], ".umask()"),
        (
            &[
                ("FIXTURE_BODY", "messages"),
                ("FIXTURE_POOL", "18446744073709551615"),
            ][..],
            ".pool_size()",
        ),
    ] {
        let mut fx = Fixture::new();
        for (key, value) in settings {
            fx.set(key, value);
        }
        for command in ["api status", "api start"] {
            let reply = fx.run(command);
            reply.assert_error("InvalidSetting");
            assert!(reply.line().contains(method), "{settings:?}: {reply:?}");
            assert_no_panic(&reply);
        }
        assert_nothing_left(&fx);
        assert_eq!(fx.marks(), Vec::<String>::new(), "{settings:?}");
    }
}

// Stops that meet something unusual.

#[test]
fn a_daemon_stopped_with_sigstop_is_continued_and_stops_gracefully() {
    let fx = Fixture::new();
    let pid = fx.start();
    kill(pid, Signal::SIGSTOP).expect("kill -STOP");
    assert!(
        wait_until(DEADLINE, || stat(pid).is_some_and(|s| s.state == 'T')),
        "{:?}",
        stat(pid)
    );
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
    assert_eq!(
        fx.count("term"),
        1,
        "the term handler ran: {:?}",
        fx.marks()
    );
}

#[test]
fn a_stop_held_up_by_a_sighup_handler_kills_at_the_timeout_and_says_why() {
    let fx = Fixture::new()
        .with("FIXTURE_HUP_BLOCKS", "1")
        .with("FIXTURE_STOP_TIMEOUT_MS", "2500");
    let pid = fx.start();
    assert_eq!(fx.run("api send SIGHUP").line(), format!("sent {pid}"));
    assert!(
        wait_until(DEADLINE, || fx.count("blocking") == 1),
        "{:?}",
        fx.marks()
    );
    let reply = fx.run("api stop");
    assert_eq!(
        (reply.word(0), reply.pid(), reply.word(2), reply.code()),
        ("stopped", pid, "killed", Some(0)),
        "{reply:?}\nstderr log: {}",
        fx.stderr_log()
    );
    let after: u64 = reply.word(3).parse().expect("milliseconds");
    assert!(
        after >= 2500,
        "killed at the timeout, not before: {reply:?}"
    );
    assert_eq!(
        fx.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    assert!(
        logged(
            &fx,
            &[
                "stopping: a SIGHUP handler has been running for",
                "the stop handlers wait for it to return"
            ]
        ),
        "{}",
        fx.stderr_log()
    );
    assert_eq!(fx.count("term"), 0, "{:?}", fx.marks());
    assert!(!fx.pidfile().exists(), "the stop removed the pidfile");
}

// Children of the daemon.

#[test]
fn stop_children_ends_the_daemons_children_with_it() {
    let fx = Fixture::new()
        .with("FIXTURE_STOP_CHILDREN", "1")
        .with("FIXTURE_BODY", "spawn-child");
    let pid = fx.start();
    let child = marked_pid(&fx, "child ");
    assert!(alive(child));
    assert_eq!(
        stat(child).expect("stat").pgrp,
        stat(pid).expect("stat").pgrp
    );
    fx.stop_gracefully(pid);
    // By the time the daemon has exited its child has too, and was left unreaped to the
    // daemon's reaper: this process.
    assert!(!alive(child), "{:?}", stat(child));
    assert_eq!(fx.exit_code(pid), 0);
    assert_eq!(
        reap_orphan(child),
        WaitStatus::Signaled(child, Signal::SIGTERM, false)
    );
    assert!(stat(child).is_none(), "reaped");
    assert_eq!(fx.count("term"), 1);
}

#[test]
fn without_stop_children_a_child_outlives_the_stop() {
    let fx = Fixture::new().with("FIXTURE_BODY", "spawn-child");
    let pid = fx.start();
    let child = marked_pid(&fx, "child ");
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
    assert!(alive(child), "{:?}", stat(child));
    assert_eq!(
        stat(child).expect("stat").ppid,
        std::process::id() as i32,
        "the orphan went to the daemon's reaper"
    );
    kill(child, Signal::SIGKILL).expect("kill the child");
    assert_eq!(
        reap_orphan(child),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_half_the_stop_timeout() {
    let fx = Fixture::new()
        .with("FIXTURE_STOP_CHILDREN", "1")
        .with("FIXTURE_BODY", "spawn-stubborn-child")
        .with("FIXTURE_STOP_TIMEOUT_MS", "3000");
    let pid = fx.start();
    let child = marked_pid(&fx, "child ");
    // The shell has set the trap and become `sleep`.
    let term = 1u64 << (Signal::SIGTERM as u32 - 1);
    assert!(
        wait_until(DEADLINE, || {
            let comm = fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            let ignored = u64::from_str_radix(&proc_status(child, "SigIgn"), 16).unwrap_or(0);
            comm.trim() == "sleep" && ignored & term != 0
        }),
        "{child} does not ignore SIGTERM yet"
    );
    let reply = fx.stop_gracefully(pid);
    let after: u64 = reply.word(3).parse().expect("milliseconds");
    assert!(
        (1500..3000).contains(&after),
        "SIGKILL after half the stop timeout, and the daemon exits before the timeout: {reply:?}"
    );
    assert_eq!(fx.exit_code(pid), 0);
    assert_eq!(
        reap_orphan(child),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
    assert!(
        logged(
            &fx,
            &[
                "stopping the daemon's children",
                &format!("pid {child} outlived SIGTERM by 1.5s, sending SIGKILL")
            ]
        ),
        "{}",
        fx.stderr_log()
    );
    assert_eq!(fx.count("term"), 1);
}
