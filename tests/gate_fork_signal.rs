//! The fork gate and the signal gate: every fork of the crate is refused unless the process is
//! known to run a single thread, and every signal to another process goes to a process that was
//! pinned first and verified after, never to a pid read earlier.
//!
//! Each test drives the fixture from outside. The attacks that need a pid reused are steered
//! inside a pid namespace of their own (`unshare --pid --fork --mount-proc`, with the fixture's
//! `reap` as its PID 1): once the process that the daemon should signal is gone,
//! `/proc/sys/kernel/ns_last_pid` hands its pid to an innocent `sleep` that blocks every signal,
//! so that a signal sent to it stays pending where `/proc` shows it.
//!
//! `DAEMONS_TEST_LONG=1` runs the steered attacks for more rounds.

// The tests play the operator and the attacker: they signal whom they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use common::{
    Bystander, DEADLINE, Fixture, Foreground, Reply, alive, all_pids, fixture_binary, proc_status,
    require_pid_namespace, require_root, require_tool, stat, test_user, tool_path, wait_until,
    zombie_children,
};

/// A `RUST_MIN_STACK` that no thread can have: every `thread::spawn` of the fixture fails.
const NO_THREADS: &str = "1000000000000";

/// How many rounds a steered attack runs: one, or `long` with `DAEMONS_TEST_LONG=1`.
fn rounds(long: usize) -> usize {
    if std::env::var_os("DAEMONS_TEST_LONG").is_some_and(|v| v == "1") {
        long
    } else {
        1
    }
}

/// A pid namespace with its own `/proc`, whose PID 1 is the fixture's `reap`, running
/// `program args...` with the fixture's environment; torn down (every process in it killed by
/// the kernel) when it is dropped.
struct Namespace {
    /// `unshare`, outside; killed on drop, which kills PID 1 (`--kill-child`).
    unshare: Foreground,
    /// PID 1 of the namespace, as this process sees it.
    init: Pid,
    /// The namespace itself (`/proc/PID/ns/pid`).
    id: PathBuf,
}

impl Namespace {
    fn start(fx: &Fixture, program: &Path, args: &[&str]) -> Namespace {
        let mut unshare = Command::new(tool_path("unshare"));
        unshare
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(fixture_binary())
            .arg("reap")
            .arg(program)
            .args(args);
        with_environment(fx, &mut unshare);
        let unshare = fx.foreground(&mut unshare);
        let mut init = None;
        assert!(
            wait_until(DEADLINE, || {
                init = children(unshare.pid()).first().copied();
                init.is_some()
            }),
            "unshare forks the namespace's PID 1"
        );
        let init = init.expect("PID 1");
        let id = fs::read_link(format!("/proc/{init}/ns/pid")).expect("the namespace of PID 1");
        Namespace { unshare, init, id }
    }

    /// The process that is pid `pid` in the namespace, as this process sees it.
    fn host_pid(&self, pid: i32) -> Option<Pid> {
        all_pids().into_iter().find(|&host| {
            fs::read_link(format!("/proc/{host}/ns/pid")).is_ok_and(|ns| ns == self.id)
                && ns_pid(host) == Some(pid)
        })
    }

    /// Steer pid `pid` of the namespace, which must be free, to a new `sleep` that blocks every
    /// signal; as this process sees it.
    fn spawn_at(&self, fx: &Fixture, pid: i32) -> Pid {
        let mut nsenter = Command::new(tool_path("nsenter"));
        nsenter
            .arg("--target")
            .arg(self.init.to_string())
            .args(["--pid", "--mount", "--"])
            .arg(fixture_binary())
            .args(["spawn-at", &pid.to_string()]);
        with_environment(fx, &mut nsenter);
        let reply = fx.execute(&mut nsenter);
        assert_eq!(reply.line(), format!("spawned {pid}"), "{reply:?}");
        self.host_pid(pid)
            .unwrap_or_else(|| panic!("no process is pid {pid} of the namespace"))
    }

    /// What `program args...` printed on its stdout so far.
    fn output(&self, fx: &Fixture) -> String {
        let _ = &self.unshare;
        fs::read_to_string(fx.path("run.out")).unwrap_or_default()
    }
}

/// The fixture's environment (which marks every process of the test for its clean-up), and a
/// `PATH` for the tools.
fn with_environment(fx: &Fixture, command: &mut Command) {
    let fixture = fx.command("");
    command
        .env_clear()
        .envs(fixture.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
}

/// The last pid of `NSpid:`: the pid of `host` in its own namespace.
fn ns_pid(host: Pid) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{host}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The children of `pid`.
fn children(pid: Pid) -> Vec<Pid> {
    let me = pid.as_raw();
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == me))
        .collect()
}

/// The number after `word ` in the marks.
fn marked(fx: &Fixture, word: &str) -> Option<i32> {
    fx.marks()
        .iter()
        .find_map(|m| m.strip_prefix(word)?.strip_prefix(' ')?.parse().ok())
}

/// Whether a thread of `pid` is in the system call `number` (or stopped on its way in).
fn in_syscall(pid: Pid, number: &str) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        fs::read_to_string(task.path().join("syscall"))
            .is_ok_and(|s| s.split_whitespace().next() == Some(number))
    })
}

/// Whether `pid` has a signal pending: one sent to a process that blocks them all.
fn signalled(pid: Pid) -> bool {
    let pending = |set| u64::from_str_radix(&proc_status(pid, set), 16) != Ok(0);
    pending("ShdPnd") || pending("SigPnd")
}

/// Whether `pid` is gone, reaped as well.
fn gone(pid: Pid) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The resource limits that the tests lower.
#[derive(Clone, Copy)]
enum Limit {
    /// `RLIMIT_NPROC`, `ulimit -u`.
    Processes,
    /// `RLIMIT_NOFILE`, `ulimit -n`.
    Files,
}

/// `command` with `limit` set to `value` in the child, before it runs.
fn limited(mut command: Command, limit: Limit, value: u64) -> Command {
    // SAFETY: setrlimit is async-signal-safe, and the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            let rc = match limit {
                Limit::Processes => libc::setrlimit(libc::RLIMIT_NPROC, &rlimit),
                Limit::Files => libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit),
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    command
}

/// Reap the daemons of a failed start, children of this subreaper: the zombies that were not
/// there `before`, in a session of their own (a fixture that ran in the foreground is in this
/// process's), that ran as `uid` and exited 1.
fn reap_failed(before: &[Pid], uid: u32) {
    let session = stat(Pid::this()).expect("this process").session;
    let failed = |pid: &Pid| {
        if stat(*pid).is_none_or(|s| s.session == session) {
            return false;
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok());
        real == Some(uid)
            && matches!(
                waitid(
                    Id::Pid(*pid),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
                ),
                Ok(WaitStatus::Exited(_, 1))
            )
    };
    let mut found = Vec::new();
    wait_until(DEADLINE, || {
        found = zombie_children()
            .into_iter()
            .filter(|pid| !before.contains(pid))
            .filter(failed)
            .collect();
        !found.is_empty()
    });
    for pid in found {
        let _ = waitpid(pid, None);
    }
}

fn assert_error(reply: &Reply, variant: &str, words: &[&str]) {
    reply.assert_error(variant);
    for word in words {
        assert!(reply.line().contains(word), "{word:?} in {reply:?}");
    }
    assert!(!reply.stderr.contains("panicked"), "{reply:?}");
}

// Item 2: the ready timeout kills the daemon it pinned when the pid line came, not whatever
// holds that pid by then.

#[test]
fn a_ready_timeout_never_kills_the_process_that_took_a_dead_daemons_pid() {
    if !require_root("only root can steer pids in a pid namespace")
        || !require_pid_namespace()
        || !require_tool("nsenter")
    {
        return;
    }
    for round in 0..rounds(10) {
        // The daemon never gets ready; its set-up leaves a child that keeps the report pipe
        // open, so that the caller of `start()` waits out the ready timeout after the daemon
        // died.
        let fx = Fixture::new()
            .with("FIXTURE_BODY", "never-ready")
            .with("FIXTURE_SETUP", "fork-hold")
            .with("FIXTURE_READY_TIMEOUT_MS", "4000");
        let ns = Namespace::start(&fx, fixture_binary(), &["api", "start"]);
        assert!(
            wait_until(DEADLINE, || marked(&fx, "held").is_some()),
            "round {round}: the set-up forked its child: {:?}",
            fx.marks()
        );
        let daemon = marked(&fx, "setup").expect("the daemon's pid");
        let host = ns.host_pid(daemon).expect("the daemon runs");
        // It dies (the OOM killer, a `kill -9`), its pid goes to another process.
        kill(host, Signal::SIGKILL).expect("SIGKILL the daemon");
        assert!(
            wait_until(DEADLINE, || gone(host)),
            "PID 1 reaps the daemon"
        );
        let bystander = ns.spawn_at(&fx, daemon);
        assert!(
            ns.output(&fx).is_empty(),
            "round {round}: the steering took longer than the ready timeout, nothing was shown"
        );

        assert!(
            wait_until(DEADLINE, || ns.output(&fx).ends_with('\n')),
            "round {round}: start() answers after the ready timeout"
        );
        let answer = ns.output(&fx);
        assert!(
            answer.starts_with("error StartTimeout"),
            "round {round}: {answer}"
        );
        assert!(
            alive(bystander) && !signalled(bystander),
            "round {round}: the process that took the daemon's pid {daemon} was signalled: {answer}"
        );
        assert!(
            !answer.contains("and was killed"),
            "round {round}: the answer claims a kill: {answer}"
        );
    }
}

// Item 3: `stop_children` pins each member, then checks that it is still in the group.

/// strace, attached to a process of a namespace: killed and reaped on drop.
struct Tracer(std::process::Child);

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether every thread of `pid` is traced.
fn traced(pid: Pid) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        fs::read_to_string(task.path().join("status")).is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .is_some_and(|tracer| tracer.trim() != "0")
        })
    })
}

/// Wait until a thread of `pid` has been in the system call `number` for `streak` without a
/// break: one that strace holds on its way in, not one of the many that pass in microseconds.
fn held_in(pid: Pid, number: &str, streak: Duration) -> bool {
    let mut since: Option<Instant> = None;
    wait_until(DEADLINE, || {
        if !in_syscall(pid, number) {
            since = None;
            return false;
        }
        since.get_or_insert_with(Instant::now).elapsed() >= streak
    })
}

#[test]
fn stop_children_never_signals_the_process_that_took_a_members_pid() {
    if !require_root("only root can steer pids in a pid namespace")
        || !require_pid_namespace()
        || !require_tool("nsenter")
        || !require_tool("strace")
    {
        return;
    }
    for round in 0..rounds(5) {
        let fx = Fixture::new()
            .with("FIXTURE_BODY", "spawn-orphan")
            .with("FIXTURE_STOP_CHILDREN", "1")
            .with("FIXTURE_STOP_TIMEOUT_MS", "2000");
        let ns = Namespace::start(&fx, fixture_binary(), &["api", "start"]);
        assert!(
            wait_until(DEADLINE, || marked(&fx, "body").is_some()),
            "round {round}: the body runs: {:?} {}",
            fx.marks(),
            fx.stderr_log()
        );
        let member = marked(&fx, "child").expect("the member's pid");
        let daemon_pid = marked(&fx, "body").expect("the daemon's pid");
        let daemon = ns.host_pid(daemon_pid).expect("the daemon runs");
        let member_host = ns.host_pid(member).expect("the member runs");

        // strace holds the daemon for 3 s on its way into the call that pins the member (a
        // pidfd; in the portable build, the second read of its `/proc/PID/stat`, after the one
        // that listed the group): the moment between reading the group's members and pinning
        // them, which the scheduler may make as long on a loaded machine, made long enough to
        // steer a pid in.
        let stat = format!("/proc/{member}/stat");
        let (pin, filter): (libc::c_long, Vec<&str>) = if cfg!(daemons_portable) {
            (
                libc::SYS_openat,
                vec![
                    "-P",
                    &stat,
                    "-e",
                    "trace=openat",
                    "-e",
                    "inject=openat:delay_enter=3000000:when=2",
                ],
            )
        } else {
            (
                libc::SYS_pidfd_open,
                vec![
                    "-e",
                    "trace=pidfd_open",
                    "-e",
                    "inject=pidfd_open:delay_enter=3000000",
                ],
            )
        };
        let mut strace = Command::new(tool_path("nsenter"));
        strace
            .arg("--target")
            .arg(ns.init.to_string())
            .args(["--pid", "--mount", "--"])
            .arg(tool_path("strace"))
            .args(["-f", "-qq", "-o", "/dev/null"])
            .args(&filter)
            .args(["-p", &daemon_pid.to_string()]);
        with_environment(&fx, &mut strace);
        let _tracer = Tracer(
            strace
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn strace"),
        );
        assert!(
            wait_until(DEADLINE, || traced(daemon)),
            "round {round}: strace attaches"
        );

        kill(daemon, Signal::SIGTERM).expect("SIGTERM the daemon");
        assert!(
            held_in(daemon, &pin.to_string(), Duration::from_millis(200)),
            "round {round}: the daemon pins its group's members"
        );
        let held = Instant::now();
        // The member ends by itself meanwhile; an innocent process gets its pid.
        kill(member_host, Signal::SIGKILL).expect("SIGKILL the member");
        assert!(wait_until(DEADLINE, || gone(member_host)), "PID 1 reaps it");
        let bystander = ns.spawn_at(&fx, member);
        assert!(
            held.elapsed() < Duration::from_millis(2500),
            "round {round}: the steering took longer than the daemon was held"
        );

        assert!(
            wait_until(DEADLINE, || gone(daemon)),
            "round {round}: the daemon stops"
        );
        assert!(
            alive(bystander) && !signalled(bystander),
            "round {round}: the process that took the member's pid {member} was signalled: {}",
            fx.stderr_log()
        );
    }
}

// Item 14: no fork where the threads are more than one, or cannot be counted.

#[test]
fn a_supervised_run_refuses_to_fork_a_process_that_runs_threads() {
    let fx = Fixture::new()
        .with("FIXTURE_THREAD", "1")
        .with("FIXTURE_RESTART", "on-failure");
    let mut run = fx.foreground(&mut fx.command("api run"));
    let status = run.wait();
    let out = fs::read_to_string(fx.path("run.out")).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.starts_with("error Threads"), "{out}");
    assert!(out.contains("2 threads"), "{out}");
    assert_eq!(fx.count("body"), 0, "no body ran");
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
}

/// `unshare ARGS... sh -c 'mount -t tmpfs none /proc && exec FIXTURE COMMAND...'`: the fixture
/// where `/proc` shows nothing, with the fixture's environment.
fn without_proc(fx: &Fixture, unshare: &[&str], command: &str) -> Command {
    let mut shell = Command::new(tool_path("unshare"));
    shell
        .args(unshare)
        .arg(tool_path("sh"))
        .arg("-c")
        .arg(format!(
            "{} -t tmpfs none /proc && exec \"$0\" {command}",
            tool_path("mount").display()
        ))
        .arg(fixture_binary());
    with_environment(fx, &mut shell);
    shell
}

#[test]
fn start_refuses_to_fork_when_the_threads_cannot_be_counted() {
    if !require_root("only root can mount over /proc") || !require_tool("unshare") {
        return;
    }
    let fx = Fixture::new();
    let reply = fx.execute(&mut without_proc(&fx, &["--mount"], "api start"));
    assert_error(
        &reply,
        "Threads",
        &["cannot tell how many threads", "/proc"],
    );
    assert_eq!(fx.count("body"), 0, "no body ran");
    assert!(!fx.pidfile().exists(), "no daemon took the pidfile");
}

#[test]
fn pid_1_that_cannot_count_its_threads_runs_the_daemon_itself() {
    if !require_root("only root can make a pid namespace") || !require_pid_namespace() {
        return;
    }
    let fx = Fixture::new();
    let mut unshare = fx.foreground(&mut without_proc(
        &fx,
        &["--pid", "--fork", "--mount", "--kill-child"],
        "run",
    ));
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 1),
        "the daemon runs: {}",
        fs::read_to_string(fx.path("run.err")).unwrap_or_default()
    );
    let init = *children(unshare.pid()).first().expect("PID 1");
    assert_eq!(
        children(init),
        [],
        "PID 1 forked although it cannot tell that it runs one thread"
    );
    kill(init, Signal::SIGTERM).expect("SIGTERM PID 1");
    assert_eq!(
        unshare.wait().code(),
        Some(0),
        "the daemon stops gracefully"
    );
    assert_eq!(fx.count("term"), 1);
}

// Low items.

#[test]
fn a_supervisor_whose_first_fork_fails_reports_the_fork_error() {
    if !require_root("only root can run a daemon as another user under a process limit") {
        return;
    }
    // The supervisor switches to an account that runs nothing else, whose limit of one process
    // is the supervisor itself: it cannot fork its body. Root's caller and intermediate process
    // are not counted.
    let (uid, _) = test_user("daemons-gate-nproc");
    let fx = Fixture::new()
        .with("FIXTURE_USER", "daemons-gate-nproc")
        .with("FIXTURE_RESTART", "on-failure");
    let before = zombie_children();
    let reply = fx.execute(&mut limited(fx.command("api start"), Limit::Processes, 1));
    assert_error(
        &reply,
        "Fork",
        &[
            "fork failed",
            &format!("os error {}", libc::EAGAIN),
            "ulimit -u",
        ],
    );
    assert_eq!(fx.count("body"), 0, "no body ran");
    reap_failed(&before, uid);
    // The supervisor, no longer root, may not have been allowed to remove root's pidfile; what
    // is left is not held.
    let status = fx.run("api status");
    assert!(
        matches!(status.word(0), "not-running" | "dead"),
        "{status:?}"
    );
}

#[test]
fn a_daemon_without_its_keeper_does_not_start() {
    // No handlers: no signal thread; the keeper is the only thread the daemon needs before the
    // body, and none can be spawned.
    let mut fx = Fixture::new()
        .with("RUST_MIN_STACK", NO_THREADS)
        .with("FIXTURE_NO_HANDLERS", "1");
    fx.unset("FIXTURE_STDERR");
    let before = zombie_children();
    let reply = fx.run("api start");
    assert_error(&reply, "Sys", &["spawn the keeper thread"]);
    assert_eq!(fx.count("body"), 0, "no body ran");
    reap_failed(&before, 0);
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
}

#[test]
fn a_descriptor_limit_is_named_as_such() {
    let fx = Fixture::new();
    let pid = fx.start();
    let mut refused = 0;
    let mut sent = 0;
    // The fixture opens its marks file first; the limits at which `send` runs out of
    // descriptors somewhere between opening the pidfile and pinning the daemon.
    for limit in 4..=8 {
        let reply = fx.execute(&mut limited(
            fx.command("api send SIGUSR1"),
            Limit::Files,
            limit,
        ));
        if reply.word(0) == "sent" {
            // Signals coalesce: the next one goes only once the handler has seen this one.
            sent += 1;
            assert!(
                wait_until(DEADLINE, || fx.count("usr1") == sent),
                "{sent} sent: {:?}",
                fx.marks()
            );
            continue;
        }
        refused += 1;
        assert!(
            !reply.line().contains("/proc that is mounted") && reply.word(1) != "ForeignProc",
            "limit {limit}: blamed on /proc: {reply:?}"
        );
        assert!(
            reply.line().contains("ulimit -n"),
            "limit {limit}: {reply:?}"
        );
    }
    assert!(refused > 0, "no limit was low enough");
    assert_eq!(sent + refused, 8 - 4 + 1);
    fx.stop_gracefully(pid);
    assert_eq!(fx.exit_code(pid), 0);
}

#[test]
fn status_shows_no_body_process_that_is_not_the_supervisors_child() {
    let fx = Fixture::new().with("FIXTURE_RESTART", "on-failure");
    let supervisor = fx.start();
    let mut line = String::new();
    assert!(
        wait_until(DEADLINE, || {
            line = fx.run("api status").line().to_owned();
            line.split_whitespace().nth(2).is_some_and(|c| c != "-")
        }),
        "{line}"
    );
    let child: i32 = line
        .split_whitespace()
        .nth(2)
        .and_then(|c| c.parse().ok())
        .expect("a pid");
    assert_eq!(
        stat(Pid::from_raw(child)).map(|s| s.ppid),
        Some(supervisor.as_raw()),
        "the body's process is the supervisor's child"
    );

    // A second line that names another process, as whoever can write the pidfile may forge.
    let bystander = Bystander::sleep();
    fs::write(
        fx.pidfile(),
        format!("{supervisor}\nsupervising: {} 0\n", bystander.pid()),
    )
    .expect("rewrite the pidfile");
    assert_eq!(
        fx.run("api status").line(),
        format!("supervised {supervisor} - 0")
    );
    let cli = fx.run("status");
    assert!(
        !cli.stdout.contains(&bystander.pid().to_string()),
        "{cli:?}"
    );
    assert_eq!(cli.code(), Some(0), "{cli:?}");

    let stopped = fx.run("api stop");
    assert_eq!(
        (stopped.word(0), stopped.pid()),
        ("stopped", supervisor),
        "{stopped:?}"
    );
    fx.reap(supervisor);
}
