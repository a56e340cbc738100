//! Bad input and hostile pidfiles: each is a clear error, and nothing is left behind.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Bystander, DEADLINE, Fixture, NOBODY, Reply, fd_targets, require_root, wait_until};

/// No pidfile at `pidfile` and no process of this fixture alive.
fn assert_nothing_left(fx: &Fixture, pidfile: &Path) {
    assert!(
        fs::symlink_metadata(pidfile).is_err(),
        "{} was left behind",
        pidfile.display()
    );
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "processes left: {:?}",
        fx.processes()
    );
}

fn assert_names(reply: &Reply, path: &Path) {
    let path = path.to_str().expect("utf-8");
    assert!(reply.line().contains(path), "{reply:?} names {path}");
}

#[test]
fn a_pidfile_in_a_missing_directory_is_refused() {
    let mut fx = Fixture::new();
    let pidfile = fx.path("missing/daemon.pid");
    fx.set("FIXTURE_PIDFILE", &pidfile);
    let reply = fx.run("api start");
    reply.assert_error("MissingDirectory");
    assert_names(&reply, &pidfile);
    assert!(!fx.path("missing").exists());
    assert_nothing_left(&fx, &pidfile);
}

#[test]
fn a_pidfile_that_is_a_symlink_is_refused_and_its_target_not_created() {
    let fx = Fixture::new();
    let target = fx.path("target");
    std::os::unix::fs::symlink(&target, fx.pidfile()).expect("symlink");
    let reply = fx.run("api start");
    reply.assert_error("Symlink");
    assert_names(&reply, &fx.pidfile());
    assert!(!target.exists(), "nothing was created through the link");
    assert!(fs::symlink_metadata(fx.pidfile()).is_ok_and(|m| m.is_symlink()));
    assert_nothing_left(&fx, &target);
}

#[test]
fn a_pidfile_that_is_a_directory_is_refused() {
    let fx = Fixture::new();
    fs::create_dir(fx.pidfile()).expect("mkdir");
    let reply = fx.run("api start");
    reply.assert_error("NotAFile");
    assert_names(&reply, &fx.pidfile());
    assert_eq!(fs::read_dir(fx.pidfile()).expect("read_dir").count(), 0);
    assert_nothing_left(&fx, &fx.path("nothing"));
}

#[test]
fn a_log_in_a_missing_directory_is_refused_and_leaves_no_pidfile() {
    for key in ["FIXTURE_STDOUT", "FIXTURE_STDERR"] {
        let mut fx = Fixture::new();
        let log = fx.path("missing/daemon.log");
        fx.set(key, &log);
        let reply = fx.run("api start");
        reply.assert_error("MissingDirectory");
        assert_names(&reply, &log);
        assert_nothing_left(&fx, &fx.pidfile());
    }
}

#[test]
fn a_pidfile_where_no_file_can_be_created_is_refused() {
    for place in ["/proc/daemons-test.pid", "/sys/daemons-test.pid"] {
        let fx = Fixture::new().with("FIXTURE_PIDFILE", place);
        let pidfile = Path::new(place);
        let reply = fx.run("api start");
        reply.assert_error("Io");
        assert_names(&reply, pidfile);
        assert_nothing_left(&fx, pidfile);
    }
}

#[test]
fn start_refuses_to_fork_a_process_that_runs_threads() {
    let fx = Fixture::new().with("FIXTURE_THREAD", "1");
    let reply = fx.run("api start");
    reply.assert_error("Threads");
    assert_nothing_left(&fx, &fx.pidfile());
}

#[test]
fn inherited_descriptors_are_closed_and_captured_files_kept() {
    let mut fx = Fixture::new();
    let (leaked, kept) = (fx.path("leaked"), fx.path("kept"));
    fs::write(&kept, "").expect("create the kept file");
    fx.set("FIXTURE_LEAK_FD", &leaked)
        .set("FIXTURE_KEEP_FILE", &kept);
    let pid = fx.start();
    let open = fd_targets(pid);
    assert!(!open.contains(&leaked), "{open:?}");
    assert!(open.contains(&kept), "{open:?}");
}

#[test]
fn an_inherited_descriptor_named_in_keep_fds_stays_open() {
    let mut fx = Fixture::new();
    let (passed, leaked) = (fx.path("passed"), fx.path("leaked"));
    fx.set("FIXTURE_PASS_FD", &passed)
        .set("FIXTURE_LEAK_FD", &leaked);
    let pid = fx.start();
    let open = fd_targets(pid);
    assert!(open.contains(&passed), "kept: {open:?}");
    assert!(!open.contains(&leaked), "closed: {open:?}");
}

/// As root, once `spoil` has changed a pidfile that names an innocent bystander, every command
/// refuses that pidfile as untrusted.
fn assert_untrusted(spoil: impl FnOnce(&Path)) {
    let fx = Fixture::new();
    let mut innocent = Bystander::sleep();
    fs::write(fx.pidfile(), format!("{}\n", innocent.pid())).expect("write the pidfile");
    spoil(&fx.pidfile());
    for command in ["status", "pid", "stop", "send SIGTERM", "start"] {
        let reply = fx.run(&format!("api {command}"));
        reply.assert_error("Untrusted");
        assert_names(&reply, &fx.pidfile());
    }
    assert!(innocent.alive() && !innocent.signalled());
    assert_eq!(
        fx.pidfile_content(),
        Some(format!("{}\n", innocent.pid())),
        "the pidfile was left alone"
    );
}

#[test]
fn as_root_a_pidfile_owned_by_another_user_is_untrusted() {
    if !require_root("only root refuses a pidfile that another user owns") {
        return;
    }
    assert_untrusted(|pidfile| {
        std::os::unix::fs::chown(pidfile, Some(NOBODY), Some(NOBODY)).expect("chown");
    });
}

#[test]
fn as_root_a_world_writable_pidfile_is_untrusted() {
    if !require_root("only root refuses a world-writable pidfile") {
        return;
    }
    assert_untrusted(|pidfile| {
        fs::set_permissions(pidfile, fs::Permissions::from_mode(0o666)).expect("chmod");
    });
}
