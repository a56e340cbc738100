//! The pidfile is a lock, not a guess: one daemon per pidfile, and a pid written in a file that
//! nobody holds is never signalled.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::{Bystander, DEADLINE, Fixture, NOBODY, Reply, require_root, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::WaitStatus;

#[test]
fn the_daemon_holds_a_flock_on_its_pidfile_of_mode_0644() {
    let fx = Fixture::new();
    let pid = fx.start();
    let mode = fs::metadata(fx.pidfile())
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let fd = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the daemon's descriptors")
        .flatten()
        .find(|e| fs::read_link(e.path()).ok().as_deref() == Some(fx.pidfile().as_path()))
        .expect("the daemon keeps its pidfile open")
        .file_name();
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()))
        .expect("read fdinfo");
    let lock = info
        .lines()
        .find(|l| l.starts_with("lock:"))
        .unwrap_or_else(|| panic!("no lock on the pidfile descriptor: {info}"));
    let fields: Vec<&str> = lock.split_whitespace().collect();
    assert_eq!(
        &fields[2..6],
        ["FLOCK", "ADVISORY", "WRITE", &pid.to_string()],
        "{lock}"
    );
}

#[test]
fn twelve_concurrent_starts_make_exactly_one_daemon() {
    let fx = Fixture::new();
    let mut starts: Vec<_> = (0..12).map(|_| fx.command("api start")).collect();
    let replies = fx.run_all(&mut starts);
    let (started, refused): (Vec<&Reply>, Vec<&Reply>) =
        replies.iter().partition(|r| r.word(0) == "started");
    assert_eq!(started.len(), 1, "{replies:#?}");
    let pid = started[0].pid();
    for reply in refused {
        reply.assert_error("AlreadyRunning");
        assert_eq!(reply.pid(), pid, "{reply:?}");
    }
    assert!(
        wait_until(DEADLINE, || fx.processes() == vec![pid]),
        "processes of this pidfile: {:?}",
        fx.processes()
    );
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
}

#[test]
fn after_kill_9_status_says_dead_and_start_recovers() {
    let fx = Fixture::new();
    let first = fx.start();
    kill(first, Signal::SIGKILL).expect("kill -9");
    assert_eq!(
        fx.reap(first),
        WaitStatus::Signaled(first, Signal::SIGKILL, false)
    );
    assert_eq!(fx.run("api status").line(), format!("dead {first}"));
    let second = fx.start();
    assert_ne!(second, first);
    assert_eq!(fx.pidfile_content(), Some(format!("{second}\n")));
}

#[test]
fn stop_removes_the_pidfile_that_a_killed_daemon_left() {
    let fx = Fixture::new();
    let pid = fx.start();
    kill(pid, Signal::SIGKILL).expect("kill -9");
    fx.reap(pid);
    assert!(fx.pidfile().exists());
    let stop = fx.run("api stop");
    assert_eq!((stop.line(), stop.code()), ("not-running", Some(0)));
    assert!(!fx.pidfile().exists());
}

#[test]
fn a_stale_pidfile_naming_a_live_process_never_gets_it_signalled() {
    let fx = Fixture::new();
    let mut innocent = Bystander::sleep();
    let other = innocent.pid();
    fs::write(fx.pidfile(), format!("{other}\n")).expect("write the pidfile");

    assert_eq!(fx.run("api status").line(), format!("dead {other}"));
    assert_eq!(fx.run("api pid").line(), "pid -");
    fx.run("api send SIGTERM").assert_error("NotRunning");
    let stop = fx.run("api stop");
    assert_eq!((stop.line(), stop.code()), ("not-running", Some(0)));
    assert!(!fx.pidfile().exists(), "stop removed the stale pidfile");
    assert!(innocent.alive() && !innocent.signalled());

    fs::write(fx.pidfile(), format!("{other}\n")).expect("write the pidfile");
    let pid = fx.start();
    assert_eq!(fx.pidfile_content(), Some(format!("{pid}\n")));
    assert!(innocent.alive() && !innocent.signalled());
}

#[test]
fn garbage_in_the_pidfile_is_stale() {
    let fx = Fixture::new();
    fs::write(fx.pidfile(), "not a pid\n").expect("write the pidfile");
    assert_eq!(fx.run("api status").line(), "dead -");
    let pid = fx.start();
    assert_eq!(fx.pidfile_content(), Some(format!("{pid}\n")));
}

/// Probe a pidfile that names no process, and check what each command says.
fn probe_every_way(run: impl Fn(&str) -> Reply) {
    assert_eq!(run("api status").line(), "dead -");
    assert_eq!(run("api pid").line(), "pid -");
    run("api send SIGTERM").assert_error("NotRunning");
    let stop = run("api stop");
    assert_eq!((stop.line(), stop.code()), ("not-running", Some(0)));
}

#[test]
fn a_pidfile_naming_0_signals_no_process_group() {
    let fx = Fixture::new();
    // The fixture runs in the bystander's process group: kill(0, ...) would hit it.
    let group = Bystander::group_leader();
    fs::write(fx.pidfile(), "0\n").expect("write the pidfile");
    probe_every_way(|args| fx.execute(fx.command(args).process_group(group.pid().as_raw())));
    assert!(!group.signalled());
    fs::write(fx.pidfile(), "0\n").expect("write the pidfile");
    let pid = fx.start();
    assert_eq!(fx.pidfile_content(), Some(format!("{pid}\n")));
}

#[test]
fn a_pidfile_naming_minus_1_signals_nobody() {
    // kill(-1, ...) reaches every process of the user: only a throwaway user may try it.
    if !require_root(&format!("to probe as the unprivileged user {NOBODY}")) {
        return;
    }
    let fx = Fixture::new();
    // kill(-1, ...) from a process of `nobody` would reach every process of `nobody`.
    let innocent = Bystander::nobody();
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o777)).expect("chmod");
    fs::write(fx.pidfile(), "-1\n").expect("write the pidfile");
    probe_every_way(|args| fx.execute(fx.command(args).uid(NOBODY).gid(NOBODY)));
    assert!(!innocent.signalled());
    // Root takes no pidfile in a directory that every user may write.
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(fx.pidfile(), "-1\n").expect("write the pidfile");
    let pid = fx.start();
    assert_eq!(fx.pidfile_content(), Some(format!("{pid}\n")));
}
