//! Never a silent wrong answer: "not running" says which pidfile it looked at; a pidfile held by
//! another program is named as such by `status`, `start` and `stop`, which neither count it as
//! their daemon nor signal it; a stop that the system refuses says who started the daemon and
//! what to run.

// The tests play the operator: they signal as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{Fixture, alive, example_binary, require_root, test_user};

const NAME: &str = "daemons-fixture";

#[test]
fn not_running_names_the_pidfile_it_looked_at() {
    let fx = Fixture::new();
    let pidfile = fx.pidfile();
    let said = format!(
        "not running (no daemon holds pidfile {})",
        pidfile.display()
    );

    let status = fx.run("status");
    assert_eq!(status.code(), Some(3), "{status:?}");
    assert_eq!(status.stdout, format!("{NAME}: {said}\n"));

    let stop = fx.run("stop");
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert_eq!(stop.stdout, format!("{NAME}: {said}\n"));
}

/// A relative pidfile is made absolute in the directory the command runs in: run from another
/// directory, `status` looks elsewhere, and says where.
#[test]
fn a_relative_pidfile_run_from_elsewhere_shows_where_it_looked() {
    let fx = Fixture::new().with("FIXTURE_PIDFILE", "daemon.pid");
    let here = fx.path("here");
    let elsewhere = fx.path("elsewhere");
    fs::create_dir(&here).expect("a directory");
    fs::create_dir(&elsewhere).expect("another directory");

    let started = fx.execute(fx.command("start").current_dir(&here));
    assert_eq!(started.code(), Some(0), "{started:?}");
    let daemon = started.pid();

    let status = fx.execute(fx.command("status").current_dir(&elsewhere));
    assert_eq!(status.code(), Some(3), "{status:?}");
    let looked = elsewhere.join("daemon.pid");
    assert!(
        status
            .stdout
            .contains(&format!("no daemon holds pidfile {}", looked.display())),
        "the path it looked at: {status:?}"
    );

    let stopped = fx.execute(fx.command("stop").current_dir(&here));
    assert_eq!(stopped.code(), Some(0), "{stopped:?}");
    assert!(
        stopped.stdout.contains(&format!("stopped (pid {daemon}")),
        "{stopped:?}"
    );
}

/// The counter example, on the fixture's pidfile: another program.
fn counter(fx: &Fixture, command: &str) -> std::process::Output {
    Command::new(example_binary("counter"))
        .arg("--pidfile")
        .arg(fx.pidfile())
        .arg(command)
        .env_clear()
        .env("DAEMONS_COUNTER_LOG", fx.path("counter.log"))
        .stdin(Stdio::null())
        .output()
        .expect("run the counter example")
}

#[test]
fn a_pidfile_held_by_another_program_is_named_as_such_and_never_signalled() {
    let fx = Fixture::new();
    let daemon = fx.start();
    let fixture = common::fixture_binary();

    let status = counter(&fx, "status");
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(4), "unknown: {stderr}");
    assert!(
        stderr.contains(&format!(
            "is held by pid {daemon}, which runs {}, another program than this one",
            fixture.display()
        )),
        "{stderr}"
    );

    let start = counter(&fx, "start");
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert_eq!(start.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another program"), "{stderr}");

    for command in ["stop", "reload"] {
        let out = counter(&fx, command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("nothing was signalled"),
            "{command}: {stderr}"
        );
    }
    assert!(alive(daemon), "the other program's daemon runs on");
    assert_eq!(fx.count("hup"), 0, "and got no SIGHUP");

    // Its own program stops it.
    let stopped = fx.run("stop");
    assert_eq!(stopped.code(), Some(0), "{stopped:?}");
}

#[test]
fn a_stop_that_the_system_refuses_names_the_user_who_started_the_daemon() {
    if !require_root("start a daemon as one user and stop it as another") {
        return;
    }
    let (owner, owner_group) = test_user("daemons-gate-user");
    let (other, other_group) = test_user("daemons-gate-other");
    let fx = Fixture::new();
    // The owner writes its pidfile, marks and log here; the other user may read them.
    nix::unistd::chown(fx.dir(), Some(owner.into()), Some(owner_group.into())).expect("chown");
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");

    let started = fx.execute(fx.command("start").uid(owner).gid(owner_group));
    assert_eq!(started.code(), Some(0), "{started:?}");
    let daemon = started.pid();

    // The other user's command writes no marks into the owner's file.
    let mut stop = fx.command("stop");
    stop.env("FIXTURE_MARKS", "/dev/null")
        .uid(other)
        .gid(other_group);
    let refused = fx.execute(&mut stop);
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    // The portable mechanisms cannot tell another user's holder from a stranger (no
    // `/proc/locks`): the state is unknown there, and nothing is signalled either.
    let expected = if cfg!(daemons_portable) {
        "its state is unknown and nothing was signalled".to_owned()
    } else {
        format!(
            "not permitted to signal pid {daemon} (pidfile {}), which user daemons-gate-user started: run this as daemons-gate-user",
            fx.pidfile().display()
        )
    };
    assert!(refused.stderr.contains(&expected), "{refused:?}");
    assert!(alive(daemon));

    // As root, a pidfile that another user owns is not trusted: its owner stops it.
    let stopped = fx.execute(fx.command("stop").uid(owner).gid(owner_group));
    assert_eq!(stopped.code(), Some(0), "its owner stops it: {stopped:?}");
}
