//! Dropping root: a daemon started by root with `.user()` / `.group()` runs with exactly the
//! credentials asked for, while its pidfile and logs, opened before the switch, stay root's.
//!
//! These tests need root: run as another user, they print why and pass (see `require_root`).

mod common;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{DEADLINE, Fixture, NOBODY, proc_status, require_root, wait_until};
use nix::sys::wait::WaitStatus;
use nix::unistd::{Gid, Group, Pid, getgrouplist};

/// A fixture in a root-owned 0755 directory, as `/run` is: the dropped daemon can read it but
/// not create or remove files in it.
fn fixture() -> Fixture {
    let fx = Fixture::new();
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    fx
}

/// A line of `/proc/PID/status` (`Uid`, `Gid`, `Groups`), as numbers.
fn ids(pid: Pid, key: &str) -> Vec<u32> {
    let line = proc_status(pid, key);
    line.split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect()
}

/// The groups that `initgroups("nobody", 65534)` gives.
fn nobody_groups() -> BTreeSet<u32> {
    let name = CString::new("nobody").expect("a C string");
    getgrouplist(&name, Gid::from_raw(NOBODY))
        .expect("nobody's groups")
        .into_iter()
        .map(|g| g.as_raw())
        .collect()
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::metadata(path).expect("stat");
    (meta.uid(), meta.gid())
}

#[test]
fn a_daemon_started_as_root_runs_as_nobody_with_nobodys_groups_only() {
    if !require_root("only root can drop privileges") {
        return;
    }
    let fx = fixture().with("FIXTURE_USER", "nobody");
    let pid = fx.start();
    // real, effective, saved, filesystem
    assert_eq!(ids(pid, "Uid"), vec![NOBODY; 4]);
    assert_eq!(ids(pid, "Gid"), vec![NOBODY; 4]);
    let groups: BTreeSet<u32> = ids(pid, "Groups").into_iter().collect();
    assert_eq!(groups, nobody_groups(), "nobody's supplementary groups");
    assert!(!groups.contains(&0), "none of root's groups: {groups:?}");
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 1),
        "the body runs"
    );

    let pidfile = fx.pidfile();
    assert_eq!(owner(&pidfile), (0, 0), "the pidfile stays root's");
    assert_eq!(fs::metadata(&pidfile).expect("stat").mode() & 0o777, 0o644);
    assert_eq!(
        fs::read_to_string(&pidfile).expect("read"),
        format!("{pid}\n")
    );
    let out = fx.run("status");
    assert_eq!(out.code(), Some(0), "{out:?}");

    // The daemon cannot unlink the pidfile in a root-owned directory: stop removes it.
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
    assert_eq!(fx.count("term"), 1, "the stop handler ran as nobody");
    assert_eq!(fx.stderr_log(), "", "nothing went wrong");
    let out = fx.run("status");
    assert_eq!(out.code(), Some(3), "{out:?}");
}

#[test]
fn a_group_alone_changes_the_group_and_drops_roots_groups() {
    if !require_root("only root can drop privileges") {
        return;
    }
    let group = Group::from_gid(Gid::from_raw(NOBODY))
        .expect("look up gid 65534")
        .expect("gid 65534 has a name here");
    let fx = fixture().with("FIXTURE_GROUP", &group.name);
    let pid = fx.start();
    assert_eq!(ids(pid, "Uid"), vec![0; 4], "the user is unchanged");
    assert_eq!(ids(pid, "Gid"), vec![NOBODY; 4]);
    assert_eq!(ids(pid, "Groups"), vec![NOBODY], "only the group asked for");
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
}

#[test]
fn an_unknown_user_is_refused_before_anything_starts() {
    if !require_root("only root can drop privileges") {
        return;
    }
    let fx = fixture().with("FIXTURE_USER", "no-such-user");
    let out = fx.run("start");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("\"no-such-user\""), "{out:?}");
    assert!(!fx.pidfile().exists(), "no pidfile");
    assert_eq!(fx.processes(), vec![], "no daemon");
    assert!(fx.marks().is_empty(), "no body ran");
}

#[test]
fn logs_are_given_to_the_user_and_reopen_after_a_rotation() {
    if !require_root("only root can drop privileges") {
        return;
    }
    let mut fx = fixture()
        .with("FIXTURE_USER", "nobody")
        .with("FIXTURE_BODY", "log");
    let log = fx.path("out.log");
    let rotated = fx.path("out.log.1");
    fx.set("FIXTURE_STDOUT", &log);
    let pid = fx.start();
    assert_eq!(ids(pid, "Uid"), vec![NOBODY; 4]);
    let lines = |path: &Path| fs::read_to_string(path).unwrap_or_default().lines().count();
    assert!(
        wait_until(DEADLINE, || lines(&log) >= 5),
        "stdout lines arrive; stderr log: {}",
        fx.stderr_log()
    );
    let meta = fs::metadata(&log).expect("the log");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (NOBODY, NOBODY),
        "the daemon's log is its user's"
    );

    // What logrotate does with `create 0640 nobody nogroup`, then `postrotate ... reload`.
    fs::rename(&log, &rotated).expect("rotate");
    fs::write(&log, "").expect("create the new log");
    nix::unistd::chown(&log, Some(NOBODY.into()), Some(NOBODY.into())).expect("chown");
    let out = fx.run("reload");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        wait_until(DEADLINE, || lines(&log) >= 5),
        "new lines go to the new log; stderr log: {}",
        fx.stderr_log()
    );
    let settled = lines(&rotated);
    assert!(
        wait_until(DEADLINE, || lines(&log) >= 10),
        "the new log keeps growing"
    );
    assert_eq!(lines(&rotated), settled, "the rotated log was let go of");
    assert!(fx.stderr_log().is_empty(), "{}", fx.stderr_log());
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
}
