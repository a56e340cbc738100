//! The command line of a daemon that ends in `.cli()`: every command and the LSB exit code of
//! each outcome (the table in `src/cli.rs`), the daemon's name, and `run` in the foreground.

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;

use common::{DEADLINE, Fixture, alive, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::WaitStatus;

const NAME: &str = "daemons-fixture";

#[test]
fn start_status_reload_restart_stop_walk_the_table() {
    let fx = Fixture::new();

    let out = fx.run("start");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let first = out.pid();
    assert_eq!(out.stdout, format!("{NAME}: started (pid {first})\n"));
    assert_eq!(
        fs::read_to_string(fx.pidfile()).expect("the pidfile"),
        format!("{first}\n")
    );
    assert!(alive(first));
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 1),
        "the body runs"
    );

    let out = fx.run("start");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{NAME}: already running (pid {first})\n")
    );
    assert_eq!(fx.count("body"), 1, "no second daemon");

    let out = fx.run("status");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: running (pid {first})\n"));

    let out = fx.run("reload");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: reloading (pid {first})\n"));
    assert!(
        wait_until(DEADLINE, || fx.count("hup") == 1),
        "the SIGHUP handler ran: {:?}",
        fx.marks()
    );
    assert!(alive(first), "a reload does not stop the daemon");

    let out = fx.run("restart");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].starts_with(&format!("{NAME}: stopped (pid {first}, after ")),
        "{out:?}"
    );
    let second = out.pids()[1];
    assert_eq!(lines[1], format!("{NAME}: started (pid {second})"));
    assert_ne!(second, first, "a new daemon");
    assert_eq!(fx.reap(first), WaitStatus::Exited(first, 0));
    assert_eq!(fx.count("term"), 1, "the old daemon's SIGTERM handler ran");
    assert_eq!(
        fs::read_to_string(fx.pidfile()).expect("the pidfile"),
        format!("{second}\n")
    );

    let out = fx.run("stop");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let line = out.stdout.trim_end();
    let after = line
        .strip_prefix(&format!("{NAME}: stopped (pid {second}, after "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        after.ends_with(" ms") || after.ends_with(" s"),
        "a human duration: {after:?}"
    );
    assert!(!fx.pidfile().exists());
    assert_eq!(fx.reap(second), WaitStatus::Exited(second, 0));

    let not_running = format!(
        "{NAME}: not running (no daemon holds pidfile {})\n",
        fx.pidfile().display()
    );
    let out = fx.run("stop");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, not_running);

    let out = fx.run("status");
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout, not_running);
}

#[test]
fn reload_of_a_daemon_that_is_not_running_fails() {
    let fx = Fixture::new();
    let out = fx.run("reload");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.starts_with(&format!("{NAME}: not running")),
        "{out:?}"
    );
}

#[test]
fn status_after_kill_9_says_dead_with_a_pidfile_left() {
    let fx = Fixture::new();
    let pid = fx.start();
    kill(pid, Signal::SIGKILL).expect("kill -9");
    assert_eq!(
        fx.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    let out = fx.run("status");
    assert_eq!(out.code(), Some(1), "{out:?}");
    let pidfile = fx.pidfile();
    assert_eq!(
        out.stdout,
        format!(
            "{NAME}: not running, but pidfile {} is left, it names pid {pid}\n",
            pidfile.display()
        )
    );
    assert!(pidfile.exists(), "status does not remove the pidfile");
}

#[test]
fn status_of_a_pidfile_that_cannot_be_trusted_is_unknown() {
    let fx = Fixture::new();
    let pidfile = fx.pidfile();
    fs::create_dir(&pidfile).expect("a directory where the pidfile should be");
    let out = fx.run("status");
    assert_eq!(out.code(), Some(4), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.starts_with(&format!(
            "{NAME}: status unknown: cannot open the pidfile {}",
            pidfile.display()
        )),
        "{out:?}"
    );
}

#[test]
fn no_command_or_an_unknown_one_prints_usage_to_stderr_and_exits_2() {
    let fx = Fixture::new();
    for args in ["", "frobnicate", "START"] {
        let out = fx.run(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            out.stderr.starts_with(&format!(
                "usage: {NAME} [--pidfile PATH] start|stop|restart|status|health|reload|run"
            )),
            "{args:?}: {out:?}"
        );
        assert!(
            out.stderr.contains(&fx.pidfile().display().to_string()),
            "the usage names the pidfile: {out:?}"
        );
    }
    assert!(!fx.pidfile().exists(), "nothing was started");
}

#[test]
fn help_prints_usage_to_stdout_and_exits_0() {
    let fx = Fixture::new();
    for arg in ["help", "--help", "-h"] {
        let out = fx.run(arg);
        assert_eq!(out.code(), Some(0), "{arg}: {out:?}");
        assert!(out.stderr.is_empty(), "{arg}: {out:?}");
        assert!(
            out.stdout
                .starts_with(&format!("usage: {NAME} [--pidfile PATH] start|")),
            "{arg}: {out:?}"
        );
        for command in ["start", "stop", "restart", "status", "reload", "run"] {
            assert!(
                out.stdout.contains(&format!("\n  {command} ")),
                "{arg}: the usage explains {command}: {out:?}"
            );
        }
    }
}

#[test]
fn a_start_that_fails_exits_1_and_names_the_path() {
    let mut fx = Fixture::new();
    let pidfile = fx.path("missing/daemon.pid");
    fx.set("FIXTURE_PIDFILE", &pidfile);
    let out = fx.run("start");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.starts_with(&format!("{NAME}: ")),
        "the error names the daemon: {out:?}"
    );
    assert!(
        out.stderr.contains(&pidfile.display().to_string())
            && out.stderr.contains("does not exist"),
        "the error names the path: {out:?}"
    );
    assert!(!fx.path("missing").exists());
    assert_eq!(fx.processes(), vec![], "no daemon is left");
    assert!(fx.marks().is_empty(), "no body ran");
}

#[test]
fn a_failing_command_says_the_reason_the_system_gave() {
    // The pidfile's directory is a regular file: the kernel's reason (ENOTDIR) is the one thing
    // that tells the operator what is wrong, so it follows the message, as `{:#}` prints it.
    let mut fx = Fixture::new();
    fs::write(fx.path("plain"), "").expect("a regular file");
    let pidfile = fx.path("plain/daemon.pid");
    fx.set("FIXTURE_PIDFILE", &pidfile);
    for command in ["start", "status", "stop"] {
        let out = fx.run(command);
        assert_ne!(out.code(), Some(0), "{command}: {out:?}");
        assert!(
            out.stderr.contains(&pidfile.display().to_string()),
            "{command}: the error names the path: {out:?}"
        );
        assert!(
            out.stderr.contains("Not a directory (os error 20)"),
            "{command}: the error says the system's reason: {out:?}"
        );
    }
    assert_eq!(fx.processes(), vec![], "no daemon is left");
}

#[test]
fn stop_kills_a_daemon_that_ignores_sigterm_after_the_stop_timeout() {
    // The body ignores the stop and is abandoned after the grace period, but a stop handler
    // never returns: only SIGKILL ends it.
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "stubborn")
        .with("FIXTURE_TERM_BLOCKS", "1")
        .with("FIXTURE_STOP_TIMEOUT_MS", "500");
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));
    let out = fx.run("stop");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("{NAME}: stopped (pid {pid}, killed after ")),
        "{out:?}"
    );
    assert!(
        out.elapsed.as_millis() >= 500,
        "waited the stop timeout: {out:?}"
    );
    assert_eq!(
        fx.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    assert!(!fx.pidfile().exists(), "stop removes the pidfile left");
    assert_eq!(fx.count("term"), 1, "the stop handlers began");
    let out = fx.run("status");
    assert_eq!(out.code(), Some(3), "{out:?}");
}

#[test]
fn the_name_is_the_executable_name_unless_set() {
    let fx = Fixture::new();
    let pid = fx.start();
    let out = fx.run("status");
    assert_eq!(
        out.stdout,
        format!("daemons-fixture: running (pid {pid})\n")
    );

    let named = Fixture::new().with("FIXTURE_NAME", "counter");
    let out = named.run("start");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let other = out.pid();
    assert_eq!(out.stdout, format!("counter: started (pid {other})\n"));
    let out = named.run("stop");
    assert!(
        out.stdout
            .starts_with(&format!("counter: stopped (pid {other}, after ")),
        "{out:?}"
    );
    let out = named.run("frobnicate");
    assert!(out.stderr.starts_with("usage: counter "), "{out:?}");
    fx.stop_gracefully(pid);
}

#[test]
fn the_default_name_is_the_one_the_program_was_started_by() {
    // `argv[0]`'s file name, as syslog names a program: a program started through a link, or
    // by a supervisor that sets `argv[0]`, is called what it was called.
    use std::os::unix::process::CommandExt;
    let fx = Fixture::new();
    let mut status = fx.command("status");
    status.arg0("/usr/sbin/counterd");
    let out = fx.execute(&mut status);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(out.stdout.starts_with("counterd: not running"), "{out:?}");

    let mut start = fx.command("start");
    start.arg0("counterd");
    let out = fx.execute(&mut start);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let pid = out.pid();
    assert_eq!(out.stdout, format!("counterd: started (pid {pid})\n"));
    fx.stop_gracefully(pid);
}

fn run_in_the_foreground_until(signal: Signal) {
    let fx = Fixture::new();
    let mut fg = fx.foreground(&mut fx.command("run"));
    let pid = fg.pid();
    assert!(
        wait_until(DEADLINE, || fx.count("body") == 1),
        "the body runs in the foreground"
    );
    assert_eq!(
        fs::read_to_string(fx.pidfile()).expect("the pidfile"),
        format!("{pid}\n"),
        "the foreground process holds the pidfile"
    );
    let out = fx.run("status");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: running (pid {pid})\n"));
    fg.signal(signal);
    let status = fg.wait();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; stderr: {}",
        fs::read_to_string(fx.path("run.err")).unwrap_or_default()
    );
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
    // Of the handlers of SIGTERM and SIGINT, only the stop signal's own runs.
    let runs = |of: Signal| usize::from(signal == of);
    assert_eq!(
        (fx.count("term"), fx.count("int")),
        (runs(Signal::SIGTERM), runs(Signal::SIGINT)),
        "{:?}",
        fx.marks()
    );
}

#[test]
fn run_in_the_foreground_stops_on_ctrl_c() {
    run_in_the_foreground_until(Signal::SIGINT);
}

#[test]
fn run_in_the_foreground_stops_on_sigterm() {
    run_in_the_foreground_until(Signal::SIGTERM);
}
