//! Trust under hostile conditions: a pidfile locked by a process that is not its daemon, a
//! caller that cannot inspect the holder, a child that outlives its daemon, a FIFO or a sysctl
//! at the pidfile's path, overlayfs, and pid namespaces. In each, either the daemon is verified
//! or its state is unknown, and no process is signalled on the strength of a pid in a file.

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{
    Bystander, DEADLINE, Fixture, Locker, NOBODY, Reply, alive, all_pids, fd_targets,
    fixture_binary, proc_status, require, require_root, require_tool, stat, tool_path, wait_until,
};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Whether the lock's holder is named: `/proc/locks` does it, which the build with
/// `--cfg daemons_portable` (the mechanisms of macOS and the BSDs) does not read. There the state
/// is unknown all the same, and nothing is signalled.
const NAMES_HOLDER: bool = !cfg!(daemons_portable);

/// Assert that an `api` command failed with `Unverified` and named `holder` as the lock's.
fn assert_unverified(reply: &Reply, holder: Pid) {
    reply.assert_error("Unverified");
    if NAMES_HOLDER {
        assert_eq!(reply.pid(), holder, "{reply:?}");
    }
    assert!(
        reply.line().contains("nothing was signalled"),
        "{reply:?} says that nothing was signalled"
    );
}

/// Assert that the command line's `status` says "unknown" (exit 4) and names `holder`.
fn assert_status_unknown(reply: &Reply, holder: Pid) {
    assert_eq!(reply.code(), Some(4), "{reply:?}");
    assert!(reply.stderr.contains("status unknown"), "{reply:?}");
    assert!(
        !NAMES_HOLDER
            || reply
                .stderr
                .contains(&format!("locked by pid {holder} (flock)")),
        "{reply:?} names the holder, pid {holder}, and its command"
    );
}

/// Every way of acting on the daemon, while `holder` (not the daemon) holds the pidfile's lock:
/// the state is unknown, and stopping, reloading and signalling all fail. The commands run at
/// once (`command` makes each): none of them may change anything.
fn assert_nothing_done(fx: &Fixture, command: impl Fn(&str) -> Command, holder: Pid) {
    let api = ["api status", "api pid", "api stop", "api send SIGTERM"];
    let cli = ["stop", "reload"];
    let mut commands: Vec<Command> = ["status"]
        .iter()
        .chain(&api)
        .chain(&cli)
        .map(|args| command(args))
        .collect();
    let replies = fx.run_all(&mut commands);
    assert_status_unknown(&replies[0], holder);
    for reply in &replies[1..=api.len()] {
        assert_unverified(reply, holder);
    }
    for (command, reply) in cli.iter().zip(&replies[1 + api.len()..]) {
        assert_eq!(reply.code(), Some(1), "{command}: {reply:?}");
        assert!(
            reply.stderr.contains(&format!("locked by pid {holder}"))
                || (!NAMES_HOLDER && reply.stderr.contains("is locked")),
            "{command}: {reply:?}"
        );
    }
}

/// Assert that no process of the fixture runs but `flock` and its `sleep` (in the group `locker`).
fn assert_no_daemon(fx: &Fixture, locker: Pid) {
    let others: Vec<Pid> = fx
        .processes()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.pgrp != locker.as_raw()))
        .collect();
    assert!(others.is_empty(), "no daemon was started: {others:?}");
}

/// Write `content` into the pidfile (mode 0644, as root requires of it).
fn write_pidfile(fx: &Fixture, content: &str) {
    fs::write(fx.pidfile(), content).expect("write the pidfile");
    fs::set_permissions(fx.pidfile(), fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// A daemon killed with `kill -9` left its pidfile; then `flock` locked it. While it holds the
/// lock, the state is unknown whatever pid the file names, and nothing is signalled; once it is
/// gone, `start` takes the stale file over.
fn a_flock_on_a_stale_pidfile(lock: fn(&Path) -> Locker) {
    if !require_tool("flock") {
        return;
    }
    // Should the start go ahead by mistake, it fails in seconds, not in the default 30.
    let fx = Fixture::new().with("FIXTURE_READY_TIMEOUT_MS", "3000");
    let dead = fx.start();
    kill(dead, Signal::SIGKILL).expect("kill -9");
    fx.reap(dead);
    assert_eq!(fx.run("api status").line(), format!("dead {dead}"));

    let mut locker = lock(&fx.pidfile());
    let holder = locker.pid();
    assert_nothing_done(&fx, |args| fx.command(args), holder);
    assert_unverified(&fx.run("api start"), holder);
    assert_eq!(fx.run("start").code(), Some(1));
    assert_eq!(
        fx.pidfile_content(),
        Some(format!("{dead}\n")),
        "left alone"
    );

    // The stale file now names a live process: it is not signalled either.
    let mut innocent = Bystander::sleep();
    write_pidfile(&fx, &format!("{}\n", innocent.pid()));
    assert_nothing_done(&fx, |args| fx.command(args), holder);
    assert_unverified(&fx.run("api start"), holder);
    assert!(innocent.alive() && !innocent.signalled(), "never signalled");
    assert!(locker.alive(), "the lock's holder was not signalled either");
    assert_no_daemon(&fx, holder);

    // Once `flock` (and the `sleep` that shares its descriptor) is gone, the file is taken over.
    drop(locker);
    let pid = fx.start();
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    assert_eq!(fx.pidfile_content(), Some(format!("{pid}\n")));
    fx.stop_gracefully(pid);
    assert!(innocent.alive() && !innocent.signalled());
}

#[test]
fn an_exclusive_flock_on_a_stale_pidfile_makes_the_state_unknown_and_signals_nobody() {
    a_flock_on_a_stale_pidfile(Locker::exclusive);
}

#[test]
fn a_shared_flock_reader_on_a_stale_pidfile_makes_the_state_unknown_and_signals_nobody() {
    a_flock_on_a_stale_pidfile(Locker::shared);
}

#[test]
fn an_exclusive_flock_on_a_pidfile_naming_a_live_process_signals_nobody() {
    if !require_tool("flock") {
        return;
    }
    let fx = Fixture::new();
    let mut innocent = Bystander::sleep();
    let named = format!("{}\n", innocent.pid());
    write_pidfile(&fx, &named);
    let mut locker = Locker::exclusive(&fx.pidfile());
    let holder = locker.pid();

    assert_nothing_done(&fx, |args| fx.command(args), holder);
    let status = fx.run("status");
    assert!(
        status
            .stderr
            .contains(&format!("names pid {}", innocent.pid())),
        "{status:?}"
    );
    assert_unverified(&fx.run("api start"), holder);
    assert_eq!(fx.run("start").code(), Some(1));

    assert!(innocent.alive() && !innocent.signalled(), "never signalled");
    assert!(locker.alive(), "the lock's holder was not signalled either");
    assert_eq!(fx.pidfile_content(), Some(named), "left alone");
    assert_no_daemon(&fx, holder);
}

#[test]
fn a_locked_pidfile_that_names_no_pid_is_starting_only_while_fresh() {
    if !require_tool("flock") {
        return;
    }
    let fx = Fixture::new();
    write_pidfile(&fx, "");
    let locker = Locker::exclusive(&fx.pidfile());
    assert_eq!(fx.run("api status").line(), "starting");
    let status = fx.run("status");
    assert_eq!(status.code(), Some(0), "{status:?}");

    // A lock held for minutes by a process that never wrote its pid is not a daemon's.
    let file = fs::File::options()
        .write(true)
        .open(fx.pidfile())
        .expect("open the pidfile");
    let long_ago = SystemTime::now() - Duration::from_secs(600);
    file.set_modified(long_ago).expect("set the mtime");
    assert_unverified(&fx.run("api status"), locker.pid());
    assert_status_unknown(&fx.run("status"), locker.pid());
    assert_unverified(&fx.run("api start"), locker.pid());
}

/// A fixture in a root-owned 0755 directory, as `/run` is: `nobody` can read the pidfile but not
/// create or remove files beside it.
fn unwritable_fixture() -> Fixture {
    let fx = Fixture::new();
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    fx
}

/// A fixture command that runs as `nobody`, without the marks file that it could not open.
fn nobody_command(fx: &Fixture, args: &str) -> Command {
    let mut command = fx.command(args);
    command.env_remove("FIXTURE_MARKS").uid(NOBODY).gid(NOBODY);
    command
}

/// Run a fixture command as `nobody`.
fn as_nobody(fx: &Fixture, args: &str) -> Reply {
    fx.execute(&mut nobody_command(fx, args))
}

#[test]
fn as_nobody_a_lock_held_by_a_process_it_cannot_inspect_signals_nobody() {
    if !require_root(&format!("to probe as the unprivileged user {NOBODY}"))
        || !require_tool("flock")
    {
        return;
    }
    // Pidfiles naming a process of root's, then one of nobody's own that is not dumpable: nobody
    // can read the descriptors of neither, and it could signal the second.
    for mut innocent in [Bystander::sleep(), Bystander::undumpable_nobody()] {
        let fx = unwritable_fixture();
        write_pidfile(&fx, &format!("{}\n", innocent.pid()));
        let mut locker = Locker::exclusive(&fx.pidfile());
        let holder = locker.pid();
        assert_nothing_done(&fx, |args| nobody_command(&fx, args), holder);
        assert!(innocent.alive() && !innocent.signalled(), "never signalled");
        assert!(locker.alive());
        assert!(fx.pidfile().exists(), "left alone");
    }
}

#[test]
#[cfg_attr(
    daemons_portable,
    ignore = "the holder that cannot be inspected is named by /proc/locks, which the portable build does not read"
)]
fn as_nobody_a_holder_it_cannot_inspect_is_the_daemon_only_if_it_started_before_the_file_was_written()
 {
    if !require_root(&format!("to probe as the unprivileged user {NOBODY}"))
        || !require_tool("flock")
    {
        return;
    }
    let fx = unwritable_fixture();
    write_pidfile(&fx, "");
    let locker = Locker::exclusive(&fx.pidfile());
    let holder = locker.pid();
    // The holder wrote its own pid, as a daemon does: nobody cannot read its descriptors, but
    // /proc/locks names it, and it started before the file was written.
    write_pidfile(&fx, &format!("{holder}\n"));
    assert_eq!(
        as_nobody(&fx, "api status").line(),
        format!("running {holder}")
    );
    // The same pid in a file written before that process started: a pid reused since.
    let file = fs::File::options()
        .write(true)
        .open(fx.pidfile())
        .expect("open the pidfile");
    file.set_modified(SystemTime::now() - Duration::from_secs(600))
        .expect("set the mtime");
    assert_unverified(&as_nobody(&fx, "api status"), holder);
    assert_status_unknown(&as_nobody(&fx, "status"), holder);
}

/// A process started by the test that is not a `Child` of it: killed and reaped on drop.
struct Orphan(Pid);

impl Drop for Orphan {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        wait_until(Duration::from_secs(2), || {
            !matches!(
                waitpid(self.0, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::StillAlive)
            )
        });
    }
}

#[test]
fn a_child_forked_without_exec_does_not_keep_the_lock_after_kill_9() {
    let fx = Fixture::new().with("FIXTURE_BODY", "fork-child");
    let first = fx.start();
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 1),
        "the body forked"
    );
    let child: Pid = fx
        .marks()
        .iter()
        .find_map(|m| m.strip_prefix("child ")?.parse().ok())
        .map(Pid::from_raw)
        .expect("the child's pid is marked");
    let child = Orphan(child);
    assert!(alive(child.0), "the child runs");
    // It closes its copy of the descriptor as soon as it runs, before the fork returns in it.
    assert!(
        wait_until(DEADLINE, || !fd_targets(child.0).contains(&fx.pidfile())),
        "the child closed the pidfile: {:?}",
        fd_targets(child.0)
    );
    assert!(
        fd_targets(first).contains(&fx.pidfile()),
        "the daemon keeps it"
    );
    assert_eq!(fx.run("api status").line(), format!("running {first}"));

    kill(first, Signal::SIGKILL).expect("kill -9");
    fx.reap(first);
    assert!(alive(child.0), "the child outlives its daemon");
    assert_eq!(fx.run("api status").line(), format!("dead {first}"));
    let second = fx.start();
    assert_ne!(second, first);
    assert_eq!(fx.run("api status").line(), format!("running {second}"));
    assert_eq!(fx.pidfile_content(), Some(format!("{second}\n")));
    assert_eq!(fx.run("status").code(), Some(0));
    fx.stop_gracefully(second);
}

#[test]
fn a_fifo_at_the_pidfile_path_is_refused_at_once() {
    let fx = Fixture::new();
    nix::unistd::mkfifo(
        &fx.pidfile(),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    for args in [
        "api status",
        "api pid",
        "api stop",
        "api send SIGHUP",
        "api start",
    ] {
        let reply = fx.run(args);
        reply.assert_error("NotAFile");
        assert!(reply.line().contains("a FIFO"), "{reply:?}");
        assert!(reply.elapsed < DEADLINE, "{args} took {:?}", reply.elapsed);
    }
    let status = fx.run("status");
    assert_eq!(status.code(), Some(4), "{status:?}");
    for command in ["start", "stop", "reload"] {
        let reply = fx.run(command);
        assert_eq!(reply.code(), Some(1), "{command}: {reply:?}");
    }
    let kind = fs::symlink_metadata(fx.pidfile())
        .expect("stat")
        .file_type();
    assert!(kind.is_fifo(), "the FIFO is left alone");
    assert!(fx.processes().is_empty(), "no daemon: {:?}", fx.processes());
}

/// Puts a kernel setting back as it was, whatever the test did.
struct Restore {
    path: PathBuf,
    content: Vec<u8>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if fs::read(&self.path).ok().as_ref() != Some(&self.content) {
            let _ = fs::write(&self.path, &self.content);
        }
    }
}

#[test]
fn as_root_a_pidfile_on_procfs_or_sysfs_is_refused_and_nothing_written() {
    if !require_root("only root could write a pid into a sysctl") {
        return;
    }
    let domainname = Path::new("/proc/sys/kernel/domainname");
    let before = fs::read(domainname).expect("read the domain name");
    let _restore = Restore {
        path: domainname.to_owned(),
        content: before.clone(),
    };
    let static_sysfs = Path::new("/sys/kernel/address_bits");
    for (path, kind) in [(domainname, "procfs"), (static_sysfs, "sysfs")] {
        if kind == "sysfs" && !require(path.exists(), "sysfs", "/sys is not mounted") {
            continue;
        }
        let fx = Fixture::new().with("FIXTURE_PIDFILE", path);
        for args in ["api start", "api status", "api stop", "api send SIGHUP"] {
            let reply = fx.run(args);
            reply.assert_error("NotAFile");
            assert!(reply.line().contains(kind), "{reply:?}");
        }
        assert_eq!(fx.run("start").code(), Some(1));
        assert_eq!(fx.run("status").code(), Some(4));
    }
    assert_eq!(fs::read(domainname).expect("read"), before, "unchanged");
    let dir = fs::read_dir("/proc/sys/kernel").expect("read /proc/sys/kernel");
    let temporary: Vec<_> = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("domainname."))
        .collect();
    assert!(temporary.is_empty(), "{temporary:?}");
}

/// Mounts under a fixture's directory, unmounted on drop (lazily if something still uses them).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    /// `mount ARGS... TARGET`; whether it worked.
    fn mount(&mut self, args: &[&str], target: &Path) -> bool {
        fs::create_dir_all(target).expect("create a mount point");
        let done = Command::new("mount")
            .args(args)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if done {
            self.0.push(target.to_owned());
        }
        done
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for target in self.0.iter().rev() {
            let umount = |lazy: bool| {
                let mut command = Command::new("umount");
                if lazy {
                    command.arg("--lazy");
                }
                command
                    .arg(target)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !umount(false) {
                umount(true);
            }
        }
    }
}

#[test]
fn a_pidfile_on_overlayfs_with_layers_on_two_file_systems_is_verified() {
    if !require_root("only root can mount") || !require_tool("mount") {
        return;
    }
    let mut fx = Fixture::new();
    let mut mounts = Mounts(Vec::new());
    let (lower, upper, merged) = (fx.path("lower"), fx.path("upper"), fx.path("merged"));
    let tmpfs = ["-t", "tmpfs", "-o", "mode=0755", "tmpfs"];
    if !require(
        mounts.mount(&tmpfs, &lower),
        "mounting",
        "mounting a tmpfs is not permitted here",
    ) {
        return;
    }
    // A pidfile left in the image by a daemon that ran when it was made: in the lower layer.
    let dead = "4194305\n";
    fs::write(lower.join("daemon.pid"), dead).expect("write the lower pidfile");
    assert!(mounts.mount(&tmpfs, &upper), "mount the upper tmpfs");
    fs::create_dir(upper.join("data")).expect("mkdir");
    fs::create_dir(upper.join("work")).expect("mkdir");
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.join("data").display(),
        upper.join("work").display()
    );
    let overlay = ["-t", "overlay", "overlay", "-o", &options];
    if !require(
        mounts.mount(&overlay, &merged),
        "overlayfs",
        "mounting an overlay is not permitted here",
    ) {
        return;
    }
    let device = |path: &Path| fs::metadata(path).expect("stat").dev();
    assert_ne!(device(&lower), device(&upper), "layers on two file systems");
    // With its layers on two file systems, overlayfs gives a file the device and inode of the
    // layer it lies in (the lower one's for a file copied up), while /proc/locks names the
    // overlay's own device: the holder is found by a stat through /proc/PID/fd instead.
    let pidfile = merged.join("daemon.pid");
    fx.set("FIXTURE_PIDFILE", &pidfile);

    assert_eq!(fx.run("api status").line(), "dead 4194305");
    // Taking the stale file copies it up; then a new one is created in the upper layer.
    for round in ["copied up", "created"] {
        let pid = fx.start();
        assert_eq!(
            fx.run("api status").line(),
            format!("running {pid}"),
            "{round}"
        );
        assert_eq!(fx.run("api pid").line(), format!("pid {pid}"));
        assert_eq!(
            fs::read_to_string(&pidfile).ok(),
            Some(format!("{pid}\n")),
            "{round}"
        );
        assert_eq!(fx.run("status").code(), Some(0), "{round}");
        fx.stop_gracefully(pid);
        assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0), "{round}");
    }
    assert_eq!(fx.count("term"), 2, "both stopped gracefully");
    drop(mounts);
}

/// `unshare ARGS... daemons-fixture COMMAND...` with the fixture's environment.
fn unshared(fx: &Fixture, unshare: &[&str], args: &str) -> Command {
    let fixture = fx.command(args);
    let mut command = Command::new(tool_path("unshare"));
    command
        .args(unshare)
        .arg(fixture_binary())
        .args(fixture.get_args())
        .env_clear()
        .envs(
            fixture
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        )
        .stdin(Stdio::null());
    command
}

/// Whether `unshare ARGS... true` works here.
fn unshare_works(args: &[&str]) -> bool {
    Command::new(tool_path("unshare"))
        .args(args)
        .arg("true")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn in_a_pid_namespace_whose_proc_is_not_mounted_nothing_is_signalled() {
    if !require_root("only root can make a pid namespace") || !require_tool("unshare") {
        return;
    }
    let pid_ns = ["--pid", "--fork"];
    if !require(
        unshare_works(&pid_ns),
        "pid namespaces",
        "unshare --pid is not permitted here",
    ) {
        return;
    }
    let fx = Fixture::new();
    let pid = fx.start();
    // The host's /proc: every pid read there names another process than in this namespace.
    for args in ["api status", "api pid", "api stop", "api send SIGTERM"] {
        let reply = fx.execute(&mut unshared(&fx, &pid_ns, args));
        reply.assert_error("ForeignProc");
        assert!(
            reply.line().contains("nothing was signalled"),
            "{args}: {reply:?}"
        );
    }
    for (command, code) in [("status", 4), ("stop", 1), ("reload", 1)] {
        let reply = fx.execute(&mut unshared(&fx, &pid_ns, command));
        assert_eq!(reply.code(), Some(code), "{command}: {reply:?}");
    }
    assert!(alive(pid), "the daemon still runs");
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    assert!(
        fx.marks()
            .iter()
            .all(|m| !["term", "hup"].contains(&m.as_str())),
        "the daemon got no signal: {:?}",
        fx.marks()
    );
    fx.stop_gracefully(pid);
}

#[test]
#[cfg_attr(
    daemons_portable,
    ignore = "a daemon in a pid namespace of its own is recognized through /proc/locks and NSpid, which the portable build does not read"
)]
fn a_daemon_that_is_pid_1_of_its_own_pid_namespace_is_seen_and_stopped_from_outside() {
    if !require_root("only root can make a pid namespace") || !require_tool("unshare") {
        return;
    }
    let pid_ns = ["--pid", "--fork", "--mount-proc"];
    if !require(
        unshare_works(&pid_ns),
        "pid namespaces",
        "unshare --pid --mount-proc is not permitted here",
    ) {
        return;
    }
    let fx = Fixture::new();
    let mut unshare = fx.foreground(&mut unshared(&fx, &pid_ns, "run"));
    // As PID 1, `run()` stays a small init and runs the daemon as its child: pid 2 there.
    assert!(
        wait_until(DEADLINE, || fx.pidfile_content().as_deref() == Some("2\n")),
        "the daemon wrote its pid in its namespace, 2: {:?}\n{}",
        fx.pidfile_content(),
        fs::read_to_string(fx.path("run.err")).unwrap_or_default()
    );
    // `unshare --fork` waits for its child, the namespace's init, whose child is the daemon.
    let child_of = |parent: Pid| {
        all_pids()
            .into_iter()
            .find(|&p| stat(p).is_some_and(|s| s.ppid == parent.as_raw()))
    };
    let init = child_of(unshare.pid()).expect("the init is the child of unshare");
    let host_pid = child_of(init).expect("the daemon is the child of the init");
    let nspid = proc_status(host_pid, "NSpid");
    assert_eq!(
        nspid.split_whitespace().collect::<Vec<_>>(),
        [host_pid.to_string().as_str(), "2"],
        "NSpid: {nspid}"
    );
    assert!(wait_until(DEADLINE, || fx.count("body") == 1), "it runs");

    assert_eq!(fx.run("api status").line(), format!("running {host_pid}"));
    assert_eq!(fx.run("api pid").line(), format!("pid {host_pid}"));
    let status = fx.run("status");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        status.stdout.contains(&format!("pid {host_pid}")),
        "{status:?}"
    );
    assert_eq!(fx.run("api send SIGHUP").line(), format!("sent {host_pid}"));
    assert!(wait_until(DEADLINE, || fx.count("hup") == 1), "SIGHUP came");

    // From yet another pid namespace, without a /proc of its own: nothing is signalled.
    for args in ["api stop", "api send SIGTERM"] {
        let reply = fx.execute(&mut unshared(&fx, &["--pid", "--fork"], args));
        reply.assert_error("ForeignProc");
        assert!(reply.line().contains("/proc"), "{args}: {reply:?}");
    }
    assert_eq!(fx.run("api status").line(), format!("running {host_pid}"));
    assert_eq!(fx.count("term"), 0, "nothing was signalled");

    fx.stop_gracefully(host_pid);
    assert_eq!(fx.count("term"), 1, "the term handler ran");
    assert!(unshare.wait().success(), "the daemon exited 0");
}
