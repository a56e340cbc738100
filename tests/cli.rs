//! The command line of a service that ends in `.cli()`: every command and the LSB exit code of
//! each outcome (the table in `src/cli.rs`), the daemon's name, and `run` in the foreground.

mod common;

use std::fs;

use common::{DEADLINE, Service, alive, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::WaitStatus;

const NAME: &str = "daemons-service";

#[test]
fn start_status_reload_restart_stop_walk_the_table() {
    let svc = Service::new();

    let out = svc.run(&["start"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let first = out.pid();
    assert_eq!(out.stdout, format!("{NAME}: started (pid {first})\n"));
    assert_eq!(
        fs::read_to_string(svc.pidfile()).expect("the pidfile"),
        format!("{first}\n")
    );
    assert!(alive(first));
    assert!(
        wait_until(DEADLINE, || svc.count("body") == 1),
        "the body runs"
    );

    let out = svc.run(&["start"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{NAME}: already running (pid {first})\n")
    );
    assert_eq!(svc.count("body"), 1, "no second daemon");

    let out = svc.run(&["status"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: running (pid {first})\n"));

    let out = svc.run(&["reload"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: reloading (pid {first})\n"));
    assert!(
        wait_until(DEADLINE, || svc.count("hup") == 1),
        "the SIGHUP handler ran: {:?}",
        svc.marks()
    );
    assert!(alive(first), "a reload does not stop the daemon");

    let out = svc.run(&["restart"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].starts_with(&format!("{NAME}: stopped (pid {first}, after ")),
        "{out:?}"
    );
    let second = common::Out::pids_in(lines[1])[0];
    assert_eq!(lines[1], format!("{NAME}: started (pid {second})"));
    assert_ne!(second, first, "a new daemon");
    assert_eq!(svc.reap(first), WaitStatus::Exited(first, 0));
    assert_eq!(svc.count("term"), 1, "the old daemon's SIGTERM handler ran");
    assert_eq!(
        fs::read_to_string(svc.pidfile()).expect("the pidfile"),
        format!("{second}\n")
    );

    let out = svc.run(&["stop"]);
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
    assert!(!svc.pidfile().exists());
    assert_eq!(svc.reap(second), WaitStatus::Exited(second, 0));

    let out = svc.run(&["stop"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: not running\n"));

    let out = svc.run(&["status"]);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: not running\n"));
}

#[test]
fn reload_of_a_daemon_that_is_not_running_fails() {
    let svc = Service::new();
    let out = svc.run(&["reload"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.starts_with(&format!("{NAME}: not running")),
        "{out:?}"
    );
}

#[test]
fn status_after_kill_9_says_dead_with_a_pidfile_left() {
    let svc = Service::new();
    let pid = svc.start();
    kill(pid, Signal::SIGKILL).expect("kill -9");
    assert_eq!(
        svc.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    let out = svc.run(&["status"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let pidfile = svc.pidfile();
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
    let svc = Service::new();
    let pidfile = svc.pidfile();
    fs::create_dir(&pidfile).expect("a directory where the pidfile should be");
    let out = svc.run(&["status"]);
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
    let svc = Service::new();
    for args in [&[][..], &["frobnicate"][..], &["START"][..]] {
        let out = svc.run(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            out.stderr.starts_with(&format!(
                "usage: {NAME} start|stop|restart|status|reload|run"
            )),
            "{args:?}: {out:?}"
        );
        assert!(
            out.stderr.contains(&svc.pidfile().display().to_string()),
            "the usage names the pidfile: {out:?}"
        );
    }
    assert!(!svc.pidfile().exists(), "nothing was started");
}

#[test]
fn help_prints_usage_to_stdout_and_exits_0() {
    let svc = Service::new();
    for arg in ["help", "--help", "-h"] {
        let out = svc.run(&[arg]);
        assert_eq!(out.code(), Some(0), "{arg}: {out:?}");
        assert!(out.stderr.is_empty(), "{arg}: {out:?}");
        assert!(
            out.stdout.starts_with(&format!("usage: {NAME} start|")),
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
    let mut svc = Service::new();
    let pidfile = svc.path("missing/service.pid");
    svc.set("SERVICE_PIDFILE", &pidfile);
    let out = svc.run(&["start"]);
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
    assert!(!svc.path("missing").exists());
    assert_eq!(svc.processes(), vec![], "no daemon is left");
    assert!(svc.marks().is_empty(), "no body ran");
}

#[test]
fn stop_kills_a_daemon_that_ignores_sigterm_after_the_stop_timeout() {
    let svc = Service::new()
        .with("SERVICE_BODY", "stubborn")
        .with("SERVICE_STOP_TIMEOUT_MS", "500");
    let pid = svc.start();
    assert!(wait_until(DEADLINE, || svc.count("body") == 1));
    let out = svc.run(&["stop"]);
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
        svc.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    assert!(!svc.pidfile().exists(), "stop removes the pidfile left");
    assert_eq!(svc.count("term"), 0, "a killed daemon runs no stop handler");
    let out = svc.run(&["status"]);
    assert_eq!(out.code(), Some(3), "{out:?}");
}

#[test]
fn the_name_is_the_executable_name_unless_set() {
    let svc = Service::new();
    let pid = svc.start();
    let out = svc.run(&["status"]);
    assert_eq!(
        out.stdout,
        format!("daemons-service: running (pid {pid})\n")
    );

    let named = Service::new().with("SERVICE_NAME", "counter");
    let out = named.run(&["start"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let other = out.pid();
    assert_eq!(out.stdout, format!("counter: started (pid {other})\n"));
    let out = named.run(&["stop"]);
    assert!(
        out.stdout
            .starts_with(&format!("counter: stopped (pid {other}, after ")),
        "{out:?}"
    );
    let out = named.run(&["frobnicate"]);
    assert!(out.stderr.starts_with("usage: counter "), "{out:?}");
    svc.stop_gracefully(pid);
}

fn run_in_the_foreground_until(signal: Signal) {
    let svc = Service::new();
    let mut fg = svc.foreground(&["run"], &[]);
    let pid = fg.pid();
    assert!(
        wait_until(DEADLINE, || svc.count("body") == 1),
        "the body runs in the foreground"
    );
    assert_eq!(
        fs::read_to_string(svc.pidfile()).expect("the pidfile"),
        format!("{pid}\n"),
        "the foreground process holds the pidfile"
    );
    let out = svc.run(&["status"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{NAME}: running (pid {pid})\n"));
    fg.signal(signal);
    let status = fg.wait();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; stderr: {}",
        fs::read_to_string(svc.path("run.err")).unwrap_or_default()
    );
    assert!(!svc.pidfile().exists(), "the pidfile is removed");
    // The fixture has a SIGTERM handler and none for SIGINT: only the stop signal's own run.
    let term_runs = usize::from(signal == Signal::SIGTERM);
    assert_eq!(svc.count("term"), term_runs, "{:?}", svc.marks());
}

#[test]
fn run_in_the_foreground_stops_on_ctrl_c() {
    run_in_the_foreground_until(Signal::SIGINT);
}

#[test]
fn run_in_the_foreground_stops_on_sigterm() {
    run_in_the_foreground_until(Signal::SIGTERM);
}
