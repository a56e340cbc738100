//! Readiness under s6: the daemon writes a newline on the descriptor that the service
//! directory's `notification-fd` names, once it is ready, and closes it, so `s6-svwait -U`
//! (up and ready) returns then, not when the process is merely up. Driven with the real
//! s6-supervise in a temporary service directory; the descriptor may also be named by the
//! builder or by `$DAEMONS_NOTIFY_FD`, and one that is not a pipe fails the start.

mod common;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{DEADLINE, Fixture, require_tool, tool_path, wait_until};

/// A FIFO that holds the daemon's set-up (`FIXTURE_SETUP_GATE`) until the test lets it through.
struct Gate(PathBuf);

impl Gate {
    fn new(fx: &Fixture) -> Gate {
        let path = fx.path("gate");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        Gate(path)
    }

    /// Open for writing, which succeeds once the set-up reads, and close.
    fn release(&self) {
        let opened = wait_until(DEADLINE, || {
            fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.0)
                .is_ok()
        });
        assert!(opened, "nobody waits at the gate {}", self.0.display());
    }
}

/// s6-supervise on a service directory of the fixture's: `run` runs `prelude`, then execs the
/// fixture's `run` with its environment; `notification-fd` names the readiness descriptor.
/// Brought down and ended on drop.
struct Supervised {
    dir: PathBuf,
    supervise: Child,
}

impl Supervised {
    fn start(
        fx: &Fixture,
        extra: &[(&str, &str)],
        prelude: &str,
        notification_fd: Option<&str>,
    ) -> Supervised {
        let dir = fx.path("service");
        fs::create_dir(&dir).expect("the service directory");
        let template = fx.command("run");
        let mut script = String::from("#!/bin/sh\n");
        let quote = |v: &str| format!("'{}'", v.replace('\'', r"'\''"));
        for (key, value) in template.get_envs() {
            if let Some(value) = value {
                let value = value.to_str().expect("text");
                script += &format!("export {}={}\n", key.to_str().expect("text"), quote(value));
            }
        }
        for (key, value) in extra {
            script += &format!("export {key}={}\n", quote(value));
        }
        script += prelude;
        script += &format!(
            "exec {} run 2>>{}\n",
            quote(template.get_program().to_str().expect("text")),
            quote(fx.path("run.err").to_str().expect("text"))
        );
        fs::write(dir.join("run"), script).expect("write run");
        fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o755)).expect("chmod");
        if let Some(fd) = notification_fd {
            fs::write(dir.join("notification-fd"), format!("{fd}\n")).expect("notification-fd");
        }
        let supervise = Command::new(tool_path("s6-supervise"))
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn s6-supervise");
        Supervised { dir, supervise }
    }

    /// `s6-svstat`'s line for the service.
    fn status(&self) -> String {
        let out = Command::new(tool_path("s6-svstat"))
            .arg(&self.dir)
            .output()
            .expect("s6-svstat");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `s6-svwait -U` with a deadline: whether the service came up and ready.
    fn wait_ready(&self) -> bool {
        Command::new(tool_path("s6-svwait"))
            .args(["-U", "-t", &DEADLINE.as_millis().to_string()])
            .arg(&self.dir)
            .status()
            .expect("s6-svwait")
            .success()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Down, and s6-supervise exits once the daemon has.
        let _ = Command::new(tool_path("s6-svc"))
            .arg("-dx")
            .arg(&self.dir)
            .status();
        let ended = wait_until(DEADLINE, || {
            matches!(self.supervise.try_wait(), Ok(Some(_)))
        });
        if !ended {
            let _ = self.supervise.kill();
            let _ = self.supervise.wait();
        }
    }
}

fn have_s6() -> bool {
    ["s6-supervise", "s6-svwait", "s6-svstat", "s6-svc"]
        .iter()
        .all(|tool| require_tool(tool))
}

fn run_err(fx: &Fixture) -> String {
    fs::read_to_string(fx.path("run.err")).unwrap_or_default()
}

/// The daemon is up but held in its set-up: s6 does not count it ready; once through, it does.
fn ready_only_once_ready(fx: &Fixture, service: &Supervised, gate: &Gate) {
    assert!(
        wait_until(DEADLINE, || fx.count_prefix("setup ") == 1),
        "the daemon reached its set-up: {}",
        run_err(fx)
    );
    let held = service.status();
    assert!(
        held.starts_with("up") && !held.contains("ready"),
        "up, not ready: {held}"
    );
    gate.release();
    assert!(
        service.wait_ready(),
        "{}: {}",
        service.status(),
        run_err(fx)
    );
    let status = service.status();
    assert!(status.contains("ready"), "{status}");
    let pid = fs::read_to_string(fx.pidfile()).unwrap_or_default();
    assert!(
        status.contains(&format!("(pid {})", pid.lines().next().unwrap_or("?"))),
        "{status} against the pidfile {pid:?}"
    );
}

#[test]
fn s6_hears_readiness_on_its_notification_fd() {
    if !have_s6() {
        return;
    }
    let fx = Fixture::new();
    let gate = Gate::new(&fx);
    let gate_path = gate.0.to_str().expect("text").to_owned();
    let service = Supervised::start(&fx, &[("FIXTURE_SETUP_GATE", &gate_path)], "", Some("3"));
    ready_only_once_ready(&fx, &service, &gate);
    assert!(!run_err(&fx).contains("notify_fd"), "{}", run_err(&fx));
}

#[test]
fn a_supervised_daemon_is_ready_under_s6_once_its_first_child_is() {
    if !have_s6() {
        return;
    }
    let fx = Fixture::new().with("FIXTURE_RESTART", "on-failure");
    let gate = Gate::new(&fx);
    let gate_path = gate.0.to_str().expect("text").to_owned();
    let service = Supervised::start(&fx, &[("FIXTURE_SETUP_GATE", &gate_path)], "", Some("3"));
    ready_only_once_ready(&fx, &service, &gate);
}

#[test]
fn the_environment_names_the_readiness_descriptor() {
    if !have_s6() {
        return;
    }
    // The run script moves the pipe to 5 and names it: the working directory's file names 3.
    let fx = Fixture::new().with("DAEMONS_NOTIFY_FD", "5");
    let gate = Gate::new(&fx);
    let gate_path = gate.0.to_str().expect("text").to_owned();
    let service = Supervised::start(
        &fx,
        &[("FIXTURE_SETUP_GATE", &gate_path)],
        "exec 5>&3 3>&-\n",
        Some("3"),
    );
    ready_only_once_ready(&fx, &service, &gate);
}

#[test]
fn a_readiness_descriptor_that_is_not_a_pipe_fails_the_start() {
    let fx = Fixture::new().with("FIXTURE_NOTIFY_FD", "9");
    let reply = fx.run("run");
    assert_eq!(reply.code(), Some(1), "{reply:?}");
    assert!(
        reply
            .stderr
            .contains(".notify_fd(): descriptor 9 (named by notify_fd) is not open"),
        "{}",
        reply.stderr
    );
    assert!(!fx.pidfile().exists(), "no pidfile is left");
    let fx = Fixture::new().with("DAEMONS_NOTIFY_FD", "0");
    let reply = fx.run("start");
    assert_ne!(reply.code(), Some(0), "{reply:?}");
    assert!(
        reply
            .stderr
            .contains("descriptor 0 (named by DAEMONS_NOTIFY_FD) is not a pipe"),
        "{}",
        reply.stderr
    );
    assert!(!fx.pidfile().exists(), "no pidfile is left");
}
