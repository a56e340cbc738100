//! The examples under a real systemd (252 here), booted in a container: the units of
//! `examples/systemd` installed as an operator installs them, with the examples' binaries in
//! `/usr/local/bin`, and each service checked from outside, as an operator would check it:
//! `systemctl show` (ActiveState, SubState, MainPID, Result), the journal, the pidfile.
//!
//! One container serves every test of this file (about a second to boot here); each test has
//! units of its own, and has the container to itself while it runs ([`shared`]). See
//! `tests/common/nspawn.rs` for what the container is and what it sees.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::nspawn::{BootedSystemd, UnitState};
use common::{alive, wait_until};

/// The unit file `name` of `examples/systemd`.
fn unit_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/systemd")
        .join(name)
}

/// The shared container, for one test at a time: a test that installs a binary or a unit (with a
/// `systemctl daemon-reload`) while another one reloads or restarts its service would change the
/// manager under it (a daemon-reload in the middle of a handover's reload left that unit
/// stopping, once in three runs of the file). `None` where it cannot boot (the test is skipped).
fn shared() -> Option<Shared> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    Some(Shared {
        systemd: BootedSystemd::shared()?,
        _turn: turn,
    })
}

/// The shared container, held by one test.
struct Shared {
    systemd: Arc<BootedSystemd>,
    _turn: MutexGuard<'static, ()>,
}

impl Deref for Shared {
    type Target = Arc<BootedSystemd>;

    fn deref(&self) -> &Arc<BootedSystemd> {
        &self.systemd
    }
}

/// The shared container with the example `binary` and the units `units` of `examples/systemd`
/// installed; `None` where it cannot boot (the test is skipped).
fn with_units(binary: &str, units: &[&str]) -> Option<Shared> {
    let systemd = shared()?;
    systemd.install_example(binary);
    for unit in units {
        systemd.install_unit_file(&unit_file(unit));
    }
    Some(systemd)
}

/// `systemctl start UNIT`, once it has started: its state, which must be active, running and
/// successful.
fn start(systemd: &BootedSystemd, unit: &str) -> UnitState {
    systemd.systemctl(&format!("start {unit}")).assert_success();
    running(systemd, unit)
}

/// The state of `unit`, which must be active, running and successful.
fn running(systemd: &BootedSystemd, unit: &str) -> UnitState {
    in_state(systemd, unit, ("active", "running", "success"))
}

/// `systemctl stop UNIT`, once it has stopped: its state, which must be inactive, dead and
/// successful.
fn stop(systemd: &BootedSystemd, unit: &str) -> UnitState {
    systemd.systemctl(&format!("stop {unit}")).assert_success();
    in_state(systemd, unit, ("inactive", "dead", "success"))
}

/// The state of `unit`, which must be `expected` (active state, sub-state, result).
fn in_state(systemd: &BootedSystemd, unit: &str, expected: (&str, &str, &str)) -> UnitState {
    let state = systemd.state(unit);
    assert_eq!(state.summary(), expected, "{unit}: {state:?}");
    state
}

/// The pid in the container's pidfile `path`, if there is one.
fn pidfile_pid(systemd: &BootedSystemd, path: &str) -> Option<u32> {
    systemd.read(path)?.lines().next()?.trim().parse().ok()
}

#[test]
fn systemd_analyze_verify_accepts_every_unit_of_the_examples() {
    let Some(systemd) = shared() else {
        return;
    };
    let dir = unit_file("");
    let mut units: Vec<String> = fs::read_dir(&dir)
        .expect("read examples/systemd")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    units.sort();
    assert!(units.len() >= 4, "examples/systemd has {units:?}");
    for unit in &units {
        let text = fs::read_to_string(dir.join(unit)).expect("read the unit");
        // verify checks that each command exists: install the examples that the unit runs.
        for word in text.split_whitespace() {
            if let Some(example) = word.strip_prefix("/usr/local/bin/") {
                systemd.install_example(example);
            }
        }
        systemd.install_unit_file(&dir.join(unit));
    }
    let mut argv = vec!["systemd-analyze".to_owned(), "verify".to_owned()];
    argv.extend(units.iter().map(|u| format!("/etc/systemd/system/{u}")));
    let verified = systemd.exec(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    verified.assert_success();
    // A unit that verify accepts may still have drawn a warning (an unknown key, say).
    let warnings: Vec<&str> = verified
        .stderr
        .lines()
        .filter(|line| units.iter().any(|u| line.contains(u.as_str())))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[test]
fn the_counter_as_a_notify_service_starts_reloads_and_stops() {
    let unit = "counter-notify";
    let pidfile = "/run/counter-notify.pid";
    let Some(systemd) = with_units("counter", &["counter-notify.service"]) else {
        return;
    };

    // systemctl start returns once the daemon has said READY=1.
    let started = start(&systemd, unit);
    assert_ne!(started.main_pid, 0);
    assert_eq!(pidfile_pid(&systemd, pidfile), Some(started.main_pid));
    systemd.wait_for_journal(unit, "tick 1 at unix time");
    let notify = systemd.show(unit, "NotifyAccess,WatchdogUSec,StatusErrno");
    assert_eq!(notify["NotifyAccess"], "main", "{notify:?}");
    assert_eq!(notify["WatchdogUSec"], "10s", "{notify:?}");

    // ExecReload sends SIGHUP. systemctl returns once `kill` has exited, which may be before
    // the handler ran: the journal tells when it did.
    systemd
        .systemctl(&format!("reload {unit}"))
        .assert_success();
    systemd.wait_for_journal(unit, "reload");
    let reloaded = running(&systemd, unit);
    assert_eq!(
        reloaded.main_pid, started.main_pid,
        "a reload keeps the process"
    );

    // SIGTERM: the handler's last line, exit 0, the pidfile gone.
    let stopped = stop(&systemd, unit);
    assert_eq!(stopped.main_pid, 0);
    assert_eq!(systemd.read(pidfile), None, "the pidfile is removed");
    let journal = systemd.wait_for_journal(unit, "stopping at tick");
    assert!(
        !journal.contains("failed") && !journal.contains("watchdog"),
        "{journal}"
    );
}

#[test]
fn the_counter_as_a_forking_service_is_followed_through_its_pidfile() {
    let unit = "counter-forking";
    let pidfile = "/run/counter-forking.pid";
    let log = "/var/log/counter-forking.log";
    let Some(systemd) = with_units("counter", &["counter-forking.service"]) else {
        return;
    };

    // `counter start` returns once the daemon is up, its pid in the pidfile that PIDFile= names.
    let started = start(&systemd, unit);
    assert_ne!(started.main_pid, 0);
    assert_eq!(pidfile_pid(&systemd, pidfile), Some(started.main_pid));
    systemd.wait_for_journal(
        unit,
        &format!("counter: started (pid {})", started.main_pid),
    );
    assert!(
        wait_until(Duration::from_secs(5), || systemd
            .read(log)
            .is_some_and(|l| l.contains("tick 1 at unix time"))),
        "{log}: {:?}",
        systemd.read(log)
    );

    // ExecReload is `counter reload`: SIGHUP through the pidfile's lock.
    systemd
        .systemctl(&format!("reload {unit}"))
        .assert_success();
    systemd.wait_for_journal(
        unit,
        &format!("counter: reloading (pid {})", started.main_pid),
    );
    assert!(
        wait_until(Duration::from_secs(5), || systemd
            .read(log)
            .is_some_and(|l| l.lines().any(|line| line == "reload"))),
        "{log}: {:?}",
        systemd.read(log)
    );
    let reloaded = running(&systemd, unit);
    assert_eq!(reloaded.main_pid, started.main_pid);

    // ExecStop is `counter stop`: it waits for the exit, so nothing is left for systemd to kill.
    stop(&systemd, unit);
    assert_eq!(systemd.read(pidfile), None, "the pidfile is removed");
    systemd.wait_for_journal(unit, &format!("counter: stopped (pid {}", started.main_pid));
    let written = systemd.read(log).unwrap_or_default();
    assert!(
        written
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("stopping at tick")),
        "{log}:\n{written}"
    );
}

#[test]
fn the_echo_behind_a_socket_unit_is_started_by_its_first_client() {
    let Some(systemd) = with_units("echo", &["echo.service", "echo.socket"]) else {
        return;
    };

    systemd.systemctl("start echo.socket").assert_success();
    let listening = systemd.state("echo.socket");
    assert_eq!(
        listening.summary(),
        ("active", "listening", "success"),
        "{listening:?}"
    );
    let idle = systemd.state("echo.service");
    assert_eq!(
        (idle.active.as_str(), idle.main_pid),
        ("inactive", 0),
        "{idle:?}"
    );

    // The client connects to systemd's socket; the daemon, started by then, answers it.
    let answer = systemd.in_network(|| {
        let mut client = TcpStream::connect("127.0.0.1:7878").expect("connect to echo.socket");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        client.write_all(b"hello\n").expect("send");
        let mut line = String::new();
        BufReader::new(&client)
            .read_line(&mut line)
            .expect("read the echo");
        line
    });
    assert_eq!(answer, "hello\n");
    let serving = systemd.wait_for_state("echo.service", "active", "running");
    assert_ne!(serving.main_pid, 0);
    assert_eq!(
        pidfile_pid(&systemd, "/tmp/daemons-echo.pid"),
        Some(serving.main_pid)
    );
    systemd.wait_for_journal("echo.service", "serving on 127.0.0.1:7878");

    // The client has gone: the stop is quick and clean.
    systemd
        .systemctl("stop echo.socket echo.service")
        .assert_success();
    let stopped = systemd.state("echo.service");
    assert_eq!(
        stopped.summary(),
        ("inactive", "dead", "success"),
        "{stopped:?}"
    );
    let closed = systemd.state("echo.socket");
    assert_eq!(
        closed.summary(),
        ("inactive", "dead", "success"),
        "{closed:?}"
    );
    assert_eq!(
        systemd.read("/tmp/daemons-echo.pid"),
        None,
        "the pidfile is removed"
    );
    let refused = systemd.in_network(|| TcpStream::connect("127.0.0.1:7878").is_err());
    assert!(refused, "nothing listens once the socket is stopped");
}

#[test]
fn a_container_is_powered_off_and_reaped_on_drop_even_after_a_panic() {
    let Some(systemd) = BootedSystemd::boot() else {
        return;
    };
    let (nspawn, leader) = (systemd.nspawn_pid(), systemd.leader());
    let cgroups = systemd.cgroups().to_vec();
    assert!(alive(nspawn) && alive(leader));
    assert!(cgroups.iter().all(|c| c.is_dir()), "{cgroups:?}");
    systemd.install_example("counter");
    systemd.install_unit_file(&unit_file("counter-notify.service"));
    systemd.systemctl("start counter-notify").assert_success();

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _held = systemd;
        panic!("a test that fails with its container running");
    }));
    assert!(panicked.is_err());

    // The container's PID 1 and nspawn itself are gone (nspawn reaped: not even a zombie),
    // and so is every process that ran in the container, with their cgroups.
    assert!(!alive(leader) && common::stat(nspawn).is_none());
    assert!(cgroups.iter().all(|c| !c.exists()), "{cgroups:?}");
}

/// Clients that connect and ask for an echo in a loop, inside the container's network, while
/// `act` runs in the container: how many were served, and what went wrong (a refused or reset
/// connection, a lost echo).
fn clients_during(
    systemd: &Arc<BootedSystemd>,
    address: &'static str,
    act: impl FnOnce(&BootedSystemd) + Send + 'static,
) -> (usize, Vec<String>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = Arc::new(AtomicBool::new(false));
    let acting = {
        let (systemd, done) = (systemd.clone(), done.clone());
        std::thread::spawn(move || {
            act(&systemd);
            done.store(true, Ordering::SeqCst);
        })
    };
    // An act that never ends (a reload that systemd holds for its stop timeout) fails the test
    // after this, rather than holding it, and the failures it collects, for many minutes.
    let limit = Instant::now() + Duration::from_secs(60);
    let outcome = systemd.in_network(|| {
        let (mut served, mut failures) = (0, Vec::new());
        // A few rounds after the act too: the new instance serves.
        let mut after = 0;
        while after < 20 {
            if done.load(Ordering::SeqCst) {
                after += 1;
            } else if Instant::now() > limit {
                // What systemd holds, and what it and the units said: the failure's only trace
                // once the container is gone.
                let jobs = systemd.systemctl("list-jobs").stdout.clone();
                let journal = systemd
                    .journalctl("--lines=80 --output=short-monotonic")
                    .stdout
                    .clone();
                failures.push(format!(
                    "the act did not end within 60 s; jobs:\n{jobs}\njournal:\n{journal}"
                ));
                break;
            }
            let asked = (|| -> std::io::Result<String> {
                let mut client = TcpStream::connect(address)?;
                client.set_read_timeout(Some(Duration::from_secs(10)))?;
                client.write_all(b"ping\n")?;
                let mut line = String::new();
                BufReader::new(&client).read_line(&mut line)?;
                Ok(line)
            })();
            // The first few failures say what went wrong; more would only fill the memory.
            let failure = match asked {
                Ok(line) if line == "ping\n" => None,
                Ok(line) => Some(format!("echo {line:?}")),
                Err(e) => Some(e.to_string()),
            };
            match failure {
                None => served += 1,
                Some(f) if failures.len() < 20 => failures.push(f),
                Some(_) => {}
            }
        }
        (served, failures)
    });
    if done.load(Ordering::SeqCst) {
        acting.join().expect("the act");
    }
    outcome
}

#[test]
fn a_notify_service_reloaded_with_the_handover_stays_active_and_refuses_nobody() {
    let unit = "echo-notify";
    let Some(systemd) = with_units("echo", &["echo-notify.service"]) else {
        return;
    };
    let first = start(&systemd, unit);
    let (served, failures) = clients_during(&systemd, "127.0.0.1:7880", move |systemd| {
        for _ in 0..3 {
            systemd
                .systemctl(&format!("reload {unit}"))
                .assert_success();
        }
    });
    assert!(failures.is_empty(), "{failures:?} ({served} served)");
    assert!(served > 0);
    let now = systemd.wait_for_state(unit, "active", "running");
    assert_ne!(
        now.main_pid, first.main_pid,
        "MAINPID follows the new instance"
    );
    assert_eq!(
        pidfile_pid(&systemd, "/run/echo-notify.pid"),
        Some(now.main_pid)
    );
    assert_eq!(now.result, "success", "{now:?}");
    stop(&systemd, unit);
}

#[test]
fn a_plain_restart_with_the_descriptor_store_refuses_nobody() {
    let unit = "echo-fdstore";
    let Some(systemd) = with_units("echo", &["echo-fdstore.service"]) else {
        return;
    };
    let first = start(&systemd, unit);
    assert!(
        wait_until(Duration::from_secs(10), || systemd
            .show(unit, "NFileDescriptorStore")
            .get("NFileDescriptorStore")
            .is_some_and(|n| n == "1")),
        "{:?}",
        systemd.show(unit, "NFileDescriptorStore")
    );
    let (served, failures) = clients_during(&systemd, "127.0.0.1:7879", move |systemd| {
        for _ in 0..3 {
            systemd
                .systemctl(&format!("restart {unit}"))
                .assert_success();
        }
    });
    assert!(failures.is_empty(), "{failures:?} ({served} served)");
    let now = systemd.wait_for_state(unit, "active", "running");
    assert_ne!(now.main_pid, first.main_pid);
    let journal = systemd.journal(unit);
    assert!(!journal.contains("Address already in use"), "{journal}");
    stop(&systemd, unit);
}

/// A supervised fixture as a `Type=notify` service with a watchdog: `body` and `extra`
/// environment lines.
fn supervised_unit(name: &str, body: &str, extra: &str) -> String {
    format!(
        "[Unit]\nDescription=a supervised daemon with a watchdog\n\n[Service]\nType=notify\nWatchdogSec=1s\nRestart=on-failure\nEnvironment=FIXTURE_PIDFILE=/run/{name}.pid FIXTURE_MARKS=/run/{name}.marks FIXTURE_BODY={body} FIXTURE_RESTART=on-failure {extra}\nExecStart=/usr/local/bin/daemons-fixture run\n"
    )
}

#[test]
fn a_supervised_notify_service_with_a_watchdog_lives_while_healthy_and_is_restarted_wedged() {
    let Some(systemd) = shared() else {
        return;
    };
    systemd.install_example("daemons-fixture");

    // Healthy: the child's steps ping through the supervisor, for many watchdog periods.
    let healthy = "sup-healthy";
    systemd.install_unit(
        &format!("{healthy}.service"),
        &supervised_unit(healthy, "step", "FIXTURE_INTERVAL_MS=10"),
    );
    let started = start(&systemd, healthy);
    let steps = |name: &str| {
        systemd
            .read(&format!("/run/{name}.marks"))
            .map_or(0, |m| m.lines().filter(|l| l.starts_with("step")).count())
    };
    // 400 steps of at least 10 ms: four periods of the watchdog, at the least.
    assert!(
        wait_until(Duration::from_secs(30), || steps(healthy) >= 400),
        "{} steps",
        steps(healthy)
    );
    let still = running(&systemd, healthy);
    assert_eq!(still.main_pid, started.main_pid, "never restarted");
    assert_eq!(systemd.show(healthy, "NRestarts")["NRestarts"], "0");
    stop(&systemd, healthy);

    // Wedged: the child blocks without a look at ctl, the pings stop, systemd restarts it.
    let wedged = "sup-wedged";
    systemd.install_unit(
        &format!("{wedged}.service"),
        &supervised_unit(wedged, "wedge", "FIXTURE_WEDGE_AFTER_MS=300"),
    );
    systemd
        .systemctl(&format!("start {wedged}"))
        .assert_success();
    let first = systemd.state(wedged);
    assert_eq!(first.summary().0, "active", "{first:?}");
    assert!(
        wait_until(Duration::from_secs(30), || systemd
            .show(wedged, "NRestarts")
            .get("NRestarts")
            .is_some_and(|n| n != "0")),
        "{:?}",
        systemd.show(wedged, "NRestarts,ActiveState,MainPID")
    );
    systemd.wait_for_journal(wedged, "Watchdog timeout");
    systemd
        .systemctl(&format!("stop {wedged}"))
        .assert_success();
}
