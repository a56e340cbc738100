//! The path gate: a daemon started as root writes, appends to and gives away no file that
//! another user could have pointed elsewhere, takes no pidfile where another user could move it
//! away, never runs on where `status` cannot see it, and makes temporary names that nobody can
//! take first.
//!
//! These tests run as root, with real users made by `useradd` (see `common::test_user`): the
//! daemon's own user, and another. Those that need the kernel's own protections out of the way
//! (`/proc/sys/fs/protected_symlinks`, `protected_hardlinks`, which not every system has) turn
//! them off for their duration only, one test at a time, and put them back even when they fail.
//!
//! The race runs a short form by default; `DAEMONS_TEST_LONG=1` runs it for long.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::{
    DEADLINE, Fixture, fixture_binary, require, require_pid_namespace, require_root, test_user,
    tool_path, wait_until,
};
use nix::sys::wait::WaitStatus;

/// The daemon's own user.
const USER: &str = "daemons-gate-user";
/// Another user: the attacker.
const OTHER: &str = "daemons-gate-other";

/// What a file of root's that no user may read holds, as `/etc/shadow` would.
const SECRET: &str = "root's secret\n";

/// A fixture whose directory any user may enter (mode 0755, root's), as `/run` is.
fn fixture() -> Fixture {
    let fx = Fixture::new();
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    fx
}

/// A directory `name` in the fixture's, of `owner` (uid, gid), with `mode`.
fn directory(fx: &Fixture, name: &str, owner: (u32, u32), mode: u32) -> PathBuf {
    let dir = fx.path(name);
    fs::create_dir_all(&dir).expect("mkdir");
    std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1)).expect("chown");
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
    dir
}

/// A file of root's, mode 0640, holding [`SECRET`].
fn secret(fx: &Fixture) -> PathBuf {
    let secret = fx.path("secret");
    fs::write(&secret, SECRET).expect("write the secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).expect("chmod 0640");
    secret
}

/// Assert that the secret is still root's, mode 0640, with nothing written to it.
#[track_caller]
fn assert_untouched(secret: &Path) {
    let meta = fs::metadata(secret).expect("stat the secret");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o640),
        "the secret changed hands or mode"
    );
    assert_eq!(
        fs::read_to_string(secret).expect("read the secret"),
        SECRET,
        "something was written to the secret"
    );
}

/// Run `script` with `sh -c` as `user` (uid, gid), in `dir`, its arguments as `$1`, `$2`...
#[track_caller]
fn as_user(user: (u32, u32), dir: &Path, script: &str, args: &[&Path]) {
    let out = Command::new(tool_path("sh"))
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .uid(user.0)
        .gid(user.1)
        .stdin(Stdio::null())
        .output()
        .expect("run sh as the user");
    assert!(
        out.status.success(),
        "as uid {}: {script}: {}",
        user.0,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assert that nothing of a refused start is left: no process, no pidfile, no temporary file.
#[track_caller]
fn assert_nothing_started(fx: &Fixture) {
    assert_eq!(fx.processes(), vec![], "no daemon runs");
    let pidfile = fx.pidfile();
    assert!(!pidfile.exists(), "no pidfile");
    let dir = pidfile.parent().expect("the pidfile's directory");
    let temporaries: Vec<_> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        temporaries
            .iter()
            .all(|name| !name.to_string_lossy().ends_with(".new")),
        "no temporary pidfile is left: {temporaries:?}"
    );
}

/// The kernel's own protections (`/proc/sys/fs/protected_*`) turned off while this lives, as on
/// a system that lacks them, and put back as they were when it is dropped, a panic included.
/// One at a time: a mutex for the tests of this file, and a lock file for other test programs.
struct Unprotected {
    saved: Vec<(PathBuf, String)>,
    _lock: File,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Unprotected {
    /// `None` (skipped, or a panic under `DAEMONS_TEST_STRICT=1`) when they cannot be changed.
    #[track_caller]
    fn off(names: &[&str]) -> Option<Unprotected> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = File::create("/tmp/daemons-test-kernel-protections.lock").expect("lock file");
        lock.lock().expect("lock the kernel's protections");
        let mut unprotected = Unprotected {
            saved: Vec::new(),
            _lock: lock,
            _one_at_a_time: guard,
        };
        for name in names {
            let path = PathBuf::from(format!("/proc/sys/fs/{name}"));
            let Ok(value) = fs::read_to_string(&path) else {
                require(false, name, "this kernel does not have it");
                return None;
            };
            if let Err(e) = fs::write(&path, "0") {
                require(false, name, &format!("it cannot be turned off here: {e}"));
                return None;
            }
            unprotected.saved.push((path, value));
        }
        Some(unprotected)
    }
}

impl Drop for Unprotected {
    fn drop(&mut self) {
        for (path, value) in self.saved.drain(..).rev() {
            let _ = fs::write(&path, value.trim());
        }
    }
}

#[test]
fn item_1_a_log_that_the_daemons_user_replaced_with_a_symlink_is_not_followed_nor_given_away() {
    if !require_root("only root can drop privileges") {
        return;
    }
    let user = test_user(USER);
    let mut fx = fixture().with("FIXTURE_USER", USER);
    // The log in a directory of the daemon's user, as the guide's logrotate recipe has it.
    let logs = directory(&fx, "logs", user, 0o755);
    let secret = secret(&fx);
    let log = logs.join("out.log");
    as_user(user, &logs, r#"ln -s "$1" "$2""#, &[&secret, &log]);
    fx.set("FIXTURE_STDOUT", &log);

    let reply = fx.run("api start");
    reply.assert_error("Symlink");
    assert!(
        reply.line().contains(&log.display().to_string()),
        "{reply:?}"
    );
    assert_untouched(&secret);
    assert_nothing_started(&fx);

    // Once the link is gone, the log is made and given to the daemon's user.
    fs::remove_file(&log).expect("remove the link");
    let pid = fx.start();
    let meta = fs::metadata(&log).expect("the log");
    assert_eq!((meta.uid(), meta.gid()), user, "the log is the user's");
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
    assert_untouched(&secret);
}

#[test]
fn item_1_a_log_that_the_daemons_user_replaced_with_a_hard_link_is_not_written_nor_given_away() {
    if !require_root("only root can drop privileges") {
        return;
    }
    let Some(_unprotected) = Unprotected::off(&["protected_hardlinks"]) else {
        return;
    };
    let user = test_user(USER);
    let mut fx = fixture().with("FIXTURE_USER", USER);
    let logs = directory(&fx, "logs", user, 0o755);
    let secret = secret(&fx);
    let log = logs.join("out.log");
    // Without protected_hardlinks, any user may link any file of the same file system.
    as_user(user, &logs, r#"ln "$1" "$2""#, &[&secret, &log]);
    fx.set("FIXTURE_STDOUT", &log);

    let reply = fx.run("api start");
    reply.assert_error("UnsafeFile");
    assert!(reply.line().contains("2 hard links"), "{reply:?}");
    assert!(
        reply.line().contains(&log.display().to_string()),
        "{reply:?}"
    );
    assert_untouched(&secret);
    assert_nothing_started(&fx);
}

#[test]
fn item_1_a_root_daemon_does_not_append_through_a_symlink_planted_in_a_sticky_directory() {
    if !require_root("to start a daemon as root") {
        return;
    }
    let Some(_unprotected) = Unprotected::off(&["protected_symlinks"]) else {
        return;
    };
    let other = test_user(OTHER);
    let mut fx = fixture();
    // A directory like /tmp: anyone may create files there, and remove only their own.
    let shared = directory(&fx, "shared", (0, 0), 0o1777);
    let secret = secret(&fx);
    let log = shared.join("app.log");
    as_user(other, &shared, r#"ln -s "$1" "$2""#, &[&secret, &log]);
    fx.set("FIXTURE_STDOUT", &log);

    let reply = fx.run("api start");
    reply.assert_error("Symlink");
    assert_untouched(&secret);
    assert_nothing_started(&fx);

    // A file of the other user's own, there first: root appends nothing to it either.
    as_user(other, &shared, r#"rm -f "$1" && : > "$1""#, &[&log]);
    let reply = fx.run("api start");
    reply.assert_error("UnsafeFile");
    assert!(
        reply.line().contains(&format!("uid {}", other.0)),
        "{reply:?}"
    );
    assert_eq!(
        fs::read_to_string(&log).expect("read"),
        "",
        "nothing appended"
    );
    assert_nothing_started(&fx);

    // Gone, the log is root's own.
    fs::remove_file(&log).expect("remove the other user's file");
    let pid = fx.start();
    assert_eq!(fs::metadata(&log).expect("the log").uid(), 0);
    fx.stop_gracefully(pid);
    assert_untouched(&secret);
}

/// Rotate the log of a root daemon in a sticky directory, let the other user plant a symlink
/// at its name, then reload: the reopen must refuse the link and keep the old file.
fn a_reload_does_not_follow_a_symlink_planted_after_a_rotation(supervised: bool) {
    let other = test_user(OTHER);
    let mut fx = fixture().with("FIXTURE_BODY", "log");
    if supervised {
        fx.set("FIXTURE_RESTART", "always");
    }
    let shared = directory(&fx, "shared", (0, 0), 0o1777);
    let secret = secret(&fx);
    let (log, rotated) = (shared.join("app.log"), shared.join("app.log.1"));
    fx.set("FIXTURE_STDOUT", &log);
    let pid = fx.start();
    let lines = |path: &Path| fs::read_to_string(path).unwrap_or_default().lines().count();
    assert!(
        wait_until(DEADLINE, || lines(&log) >= 3),
        "lines arrive; stderr log: {}",
        fx.stderr_log()
    );

    fs::rename(&log, &rotated).expect("rotate");
    as_user(other, &shared, r#"ln -s "$1" "$2""#, &[&secret, &log]);
    let reply = fx.run("reload");
    assert_eq!(reply.code(), Some(0), "{reply:?}");
    // The daemon, and a supervisor as well, each say that they keep the old file.
    let reopens = if supervised { 2 } else { 1 };
    assert!(
        wait_until(DEADLINE, || {
            fx.stderr_log().matches("keeping the old log files").count() >= reopens
        }),
        "the reopen was refused; stderr log: {}",
        fx.stderr_log()
    );
    assert!(
        fx.stderr_log().contains("symbolic link"),
        "{}",
        fx.stderr_log()
    );
    let kept = lines(&rotated);
    assert!(
        wait_until(DEADLINE, || lines(&rotated) > kept + 2),
        "the old log goes on growing"
    );
    assert_untouched(&secret);
    fx.stop_gracefully(pid);
    assert_untouched(&secret);
}

#[test]
fn item_1_a_reload_does_not_follow_a_symlink_planted_after_a_rotation() {
    if !require_root("to start a daemon as root") {
        return;
    }
    let Some(_unprotected) = Unprotected::off(&["protected_symlinks"]) else {
        return;
    };
    a_reload_does_not_follow_a_symlink_planted_after_a_rotation(false);
}

#[test]
fn item_1_a_supervisors_reload_does_not_follow_a_symlink_planted_after_a_rotation() {
    if !require_root("to start a daemon as root") {
        return;
    }
    let Some(_unprotected) = Unprotected::off(&["protected_symlinks"]) else {
        return;
    };
    a_reload_does_not_follow_a_symlink_planted_after_a_rotation(true);
}

/// A process of the daemon's user that swaps a symlink to the secret and a regular file at the
/// log's path, until it is dropped.
struct Swapper(std::process::Child);

impl Swapper {
    fn start(user: (u32, u32), log: &Path, secret: &Path) -> Swapper {
        let child = Command::new(fixture_binary())
            .arg("swap-symlink")
            .arg(log)
            .arg(secret)
            .env_clear()
            .uid(user.0)
            .gid(user.1)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the swapper");
        let swapper = Swapper(child);
        let mut swapping = log.as_os_str().to_owned();
        swapping.push(".swapping");
        assert!(
            wait_until(DEADLINE, || Path::new(&swapping).exists()),
            "the swaps began"
        );
        swapper
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn item_1_race_a_log_swapped_with_a_symlink_during_start_stop_cycles_never_reaches_its_target() {
    if !require_root("only root can drop privileges") {
        return;
    }
    let long = std::env::var_os("DAEMONS_TEST_LONG").is_some_and(|v| v == "1");
    let (cycles, within) = if long {
        (5000, Duration::from_secs(600))
    } else {
        (200, Duration::from_secs(30))
    };
    let user = test_user(USER);
    let mut fx = fixture().with("FIXTURE_USER", USER);
    let logs = directory(&fx, "logs", user, 0o755);
    let secret = secret(&fx);
    let log = logs.join("out.log");
    fx.set("FIXTURE_STDOUT", &log);
    let swapper = Swapper::start(user, &log, &secret);

    let since = Instant::now();
    let (mut started, mut refused) = (0, 0);
    while started + refused < cycles && since.elapsed() < within {
        let reply = fx.run("api start");
        if reply.word(0) == "started" {
            let pid = reply.pid();
            let stopped = fx.run("api stop");
            assert_eq!(stopped.word(0), "stopped", "{stopped:?}");
            assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
            started += 1;
        } else {
            reply.assert_error("Symlink");
            refused += 1;
        }
        assert_untouched(&secret);
    }
    drop(swapper);
    eprintln!(
        "{started} starts, {refused} refused, in {:?}",
        since.elapsed()
    );
    assert!(
        started + refused >= 10,
        "enough cycles ran: {started} starts, {refused} refused"
    );
    assert_untouched(&secret);
}

#[test]
fn item_7_a_daemon_that_dropped_root_and_cannot_take_its_pidfile_back_stops_rather_than_run_unseen()
{
    if !require_root("only root can drop privileges") {
        return;
    }
    let user = test_user(USER);
    let mut fx = fixture().with("FIXTURE_USER", USER);

    // In a directory of root's, the daemon's user cannot create the pidfile again.
    let first = fx.start();
    fs::remove_file(fx.pidfile()).expect("remove the pidfile, as a careless rm would");
    assert_eq!(fx.exit_code(first), 0, "the daemon stopped by itself");
    let log = fx.stderr_log();
    assert!(
        log.contains("cannot be taken again") && log.contains("stopping"),
        "it says why: {log}"
    );
    let status = fx.run("status");
    assert_eq!(status.code(), Some(3), "{status:?}");
    let second = fx.start();
    assert_eq!(fx.processes(), vec![second], "one daemon, not twins");
    fx.stop_gracefully(second);
    assert_eq!(fx.reap(second), WaitStatus::Exited(second, 0));

    // In a directory of its own user's, the daemon takes its pidfile back and runs on.
    let run = directory(&fx, "run", user, 0o755);
    fx.set("FIXTURE_PIDFILE", run.join("daemon.pid"));
    let pid = fx.start();
    fs::remove_file(fx.pidfile()).expect("remove the pidfile");
    assert!(
        wait_until(DEADLINE, || fx.pidfile_content()
            == Some(format!("{pid}\n"))),
        "the pidfile is taken back; stderr log: {}",
        fx.stderr_log()
    );
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
}

#[test]
fn item_13_as_root_a_pidfile_whose_directory_another_user_could_change_is_refused_naming_it() {
    if !require_root("to start a daemon as root") {
        return;
    }
    let user = test_user(USER);
    let other = test_user(OTHER);
    let mut fx = fixture();

    let open = directory(&fx, "open", (0, 0), 0o777);
    let theirs = directory(&fx, "theirs", other, 0o755);
    let grouped = directory(&fx, "grouped", (0, other.1), 0o775);
    let below_open = directory(&fx, "open/sub", (0, 0), 0o755);
    let real = directory(&fx, "real", (0, 0), 0o755);
    let their_link = fx.path("their-link");
    std::os::unix::fs::symlink(&real, &their_link).expect("symlink");
    std::os::unix::fs::lchown(&their_link, Some(other.0), Some(other.1)).expect("lchown");
    for (pidfile, untrusted, why) in [
        (open.join("daemon.pid"), &open, "every user"),
        (theirs.join("daemon.pid"), &theirs, "belongs to uid"),
        (grouped.join("daemon.pid"), &grouped, "group"),
        (below_open.join("daemon.pid"), &open, "every user"),
        (their_link.join("daemon.pid"), &their_link, "symbolic link"),
    ] {
        fx.set("FIXTURE_PIDFILE", &pidfile);
        let reply = fx.run("api start");
        reply.assert_error("UnsafeDirectory");
        let line = reply.line();
        assert!(
            line.contains(&format!("{}: ", untrusted.display()))
                || line.contains(&format!("{} ", untrusted.display())),
            "the directory is named: {reply:?}"
        );
        assert!(line.contains(why), "{reply:?}");
        assert!(
            line.contains("chmod") || line.contains("chown") || line.contains("real path"),
            "it says what to do: {reply:?}"
        );
        assert_nothing_started(&fx);
        // The command line says the same.
        let cli = fx.run("start");
        assert_eq!(cli.code(), Some(1), "{cli:?}");
        assert!(
            cli.stderr.contains(&untrusted.display().to_string()),
            "{cli:?}"
        );
        assert_nothing_started(&fx);
    }

    // Trusted: a sticky directory, as /tmp; a directory of the daemon's own user; a link of
    // root's in a directory of root's.
    let sticky = directory(&fx, "sticky", (0, 0), 0o1777);
    let mine = directory(&fx, "mine", user, 0o755);
    let root_link = fx.path("root-link");
    std::os::unix::fs::symlink(&real, &root_link).expect("symlink");
    // The daemon's user last: its logs are given to it.
    for (pidfile, as_user) in [
        (sticky.join("daemon.pid"), None),
        (root_link.join("daemon.pid"), None),
        (mine.join("daemon.pid"), Some(USER)),
    ] {
        fx.set("FIXTURE_PIDFILE", &pidfile);
        match as_user {
            Some(user) => fx.set("FIXTURE_USER", user),
            None => fx.unset("FIXTURE_USER"),
        };
        let pid = fx.start();
        assert_eq!(fx.run("api status").line(), format!("running {pid}"));
        fx.stop_gracefully(pid);
        assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
    }
}

#[test]
fn low_temporary_pidfile_names_cannot_be_foreseen_so_squatting_them_stops_no_start() {
    if !require_root("to start a daemon as root, and make a pid namespace")
        || !require_pid_namespace()
    {
        return;
    }
    let other = test_user(OTHER);
    let mut fx = fixture();
    let shared = directory(&fx, "shared", (0, 0), 0o1777);
    fx.set("FIXTURE_PIDFILE", shared.join("daemon.pid"));
    // In a pid namespace of its own the caller of `start()` is pid 1 and the daemon pid 3: the
    // other user takes every name that a pid and a counter would make, and many more.
    as_user(
        other,
        &shared,
        r#"for p in $(seq 1 32); do for c in 0 1 2 3; do : > ".daemon.pid.$p.$c.new"; done; done"#,
        &[],
    );
    let squatted = fs::read_dir(&shared).expect("list").count();
    assert_eq!(squatted, 128);

    let fixture = fx.command("api start");
    let out = Command::new(tool_path("unshare"))
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(fixture_binary())
        .args(fixture.get_args())
        .env_clear()
        .envs(
            fixture
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run the fixture in a pid namespace");
    // The namespace ended with its pid 1, the caller, and took its daemon along: it was reaped
    // there.
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        line.starts_with("started "),
        "names that another user took first must not stop a start: {line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = fs::read_dir(&shared)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        squatted + 1,
        "the pidfile, and nothing else: {names:?}"
    );
    assert!(names.contains(&"daemon.pid".to_string()), "{names:?}");
}

#[test]
fn a_root_daemon_keeps_its_pidfiles_directory_above_the_pidfile() {
    if !require_root("to start a daemon as root, which keeps its pidfile's directory open") {
        return;
    }
    // The directory kept open for the unlink moves out of the way of the low descriptors, so
    // that the pidfile takes the lowest free one: 3 in a daemon that opened nothing before, where
    // `stop` and `status` read the holder's lock first. (The fixture opens its marks file first.)
    let fx = fixture();
    let pid = fx.start();
    let descriptors: Vec<(i32, PathBuf)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's descriptors")
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            Some((fd, fs::read_link(entry.path()).ok()?))
        })
        .collect();
    let fd_of = |path: &Path| {
        descriptors
            .iter()
            .find(|(_, p)| p == path)
            .map(|(fd, _)| *fd)
    };
    let pidfile = fd_of(&fx.pidfile()).expect("the pidfile is open");
    let directory = fd_of(fx.dir()).expect("its directory is open");
    assert!(
        pidfile < directory && directory >= 10,
        "pidfile at {pidfile}, its directory at {directory}: {descriptors:?}"
    );
    fx.stop_gracefully(pid);
}
