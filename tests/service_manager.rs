//! Working with a service manager: `sd_notify` datagrams (READY, RELOADING, STOPPING) on a path
//! or abstract socket, watchdog pings, manual readiness, the ready timeout, and log files
//! reopened on SIGHUP after a rotation.
//!
//! The test plays the service manager: it binds the datagram socket that `NOTIFY_SOCKET` names
//! and runs `daemons-fixture run` in the foreground, as systemd runs a `Type=notify` service.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{DEADLINE, Fixture, Foreground, holders, wait_until};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::time::{ClockId, clock_gettime};

/// The service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    /// The value of `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
    address: std::ffi::OsString,
}

impl Manager {
    fn at_path(fx: &Fixture) -> Manager {
        let path = fx.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Manager::ready(socket, path.into_os_string())
    }

    /// An abstract socket with a name that no other test, run or process uses.
    fn abstract_socket() -> Manager {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos();
        let name = format!(
            "daemons-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
        let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract socket");
        Manager::ready(socket, format!("@{name}").into())
    }

    fn ready(socket: UnixDatagram, address: std::ffi::OsString) -> Manager {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a read timeout");
        // As systemd does on its notify socket, from the start: every datagram, the first ones
        // too, carries its sender's pid (see `until_with_senders`).
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)
            .expect("SO_PASSCRED");
        Manager { socket, address }
    }

    /// The next datagram, if one arrives within `deadline`.
    fn next(&self, deadline: Duration) -> Option<String> {
        let end = Instant::now() + deadline;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            match self.socket.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
        None
    }

    /// Every datagram up to and including the first that has the line `line`.
    fn until(&self, line: &str) -> Vec<String> {
        let end = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Some(datagram) = self.next(end.saturating_duration_since(Instant::now())) {
            let found = datagram.lines().any(|l| l == line);
            seen.push(datagram);
            if found {
                return seen;
            }
        }
        panic!("no {line} within {DEADLINE:?}; received {seen:?}");
    }

    /// Run the fixture in the foreground under this manager, with `env` besides.
    fn run(&self, fx: &Fixture, env: &[(&str, &OsStr)]) -> Foreground {
        let mut command = fx.command("run");
        command.env("NOTIFY_SOCKET", &self.address);
        fx.foreground(command.envs(env.iter().copied()))
    }
}

/// The value of `KEY=` in a datagram.
fn field<'a>(datagram: &'a str, key: &str) -> Option<&'a str> {
    datagram
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn monotonic_usec() -> u128 {
    Duration::from(clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime")).as_micros()
}

/// READY=1 with MAINPID, RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 at SIGTERM.
fn ready_reload_stop(fx: &Fixture, manager: &Manager) {
    let mut fg = manager.run(fx, &[]);
    let pid = fg.pid();

    let first = manager.until("READY=1");
    assert_eq!(first.len(), 1, "READY=1 comes first: {first:?}");
    assert_eq!(
        field(&first[0], "MAINPID"),
        Some(pid.to_string().as_str()),
        "{first:?}"
    );
    assert!(wait_until(DEADLINE, || fx.count("body") == 1));

    let before = monotonic_usec();
    fg.signal(Signal::SIGHUP);
    let reload = manager.until("READY=1");
    let after = monotonic_usec();
    assert_eq!(reload.len(), 2, "RELOADING=1, then READY=1: {reload:?}");
    assert_eq!(field(&reload[0], "RELOADING"), Some("1"), "{reload:?}");
    let stamp: u128 = field(&reload[0], "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a MONOTONIC_USEC stamp: {reload:?}"));
    assert!(
        (before..=after).contains(&stamp),
        "the stamp {stamp} is the monotonic time of the reload, between {before} and {after}"
    );
    assert_eq!(fx.count("hup"), 1, "the SIGHUP handler ran before READY=1");

    fg.signal(Signal::SIGTERM);
    let stop = manager.until("STOPPING=1");
    assert_eq!(stop.len(), 1, "{stop:?}");
    let status = fg.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!fx.pidfile().exists());
    assert_eq!(fx.count("term"), 1);
    assert_eq!(
        manager.next(Duration::from_millis(100)),
        None,
        "nothing more"
    );
}

#[test]
fn notify_over_a_socket_path() {
    let fx = Fixture::new();
    let manager = Manager::at_path(&fx);
    ready_reload_stop(&fx, &manager);
}

#[test]
fn notify_over_an_abstract_socket() {
    let fx = Fixture::new();
    let manager = Manager::abstract_socket();
    ready_reload_stop(&fx, &manager);
}

/// Run the service with `env` until its body has been running a while (50 steps of the step
/// body, or 500 ms of the idle body), then stop it; return the datagrams and how long it ran.
fn watchdog_run(fx: &Fixture, env: &[(&str, &OsStr)], steps: bool) -> (Vec<String>, Duration) {
    let manager = Manager::at_path(fx);
    let since = Instant::now();
    let mut fg = manager.run(fx, env);
    let mut seen = manager.until("READY=1");
    if steps {
        assert!(
            wait_until(DEADLINE, || fx.count("step") >= 50),
            "the step body runs"
        );
    } else {
        // The idle body does nothing that can be counted: its pings are what shows it alive.
        assert!(wait_until(DEADLINE, || fx.count("body") == 1));
        for _ in 0..3 {
            seen.extend(manager.until("WATCHDOG=1"));
        }
    }
    fg.signal(Signal::SIGTERM);
    seen.extend(manager.until("STOPPING=1"));
    assert_eq!(fg.wait().code(), Some(0));
    (seen, since.elapsed())
}

fn pings(datagrams: &[String]) -> usize {
    datagrams.iter().filter(|d| *d == "WATCHDOG=1").count()
}

fn assert_pings(fx: Fixture, steps: bool) {
    let (seen, ran) = watchdog_run(&fx, &[("WATCHDOG_USEC", OsStr::new("200000"))], steps);
    let count = pings(&seen);
    // At half the period: one ping every 100 ms at most.
    let most = ran.as_millis() as usize / 100 + 2;
    assert!(
        (3..=most).contains(&count),
        "{count} pings in {ran:?}, expected 3..={most}: {seen:?}"
    );
}

#[test]
fn the_watchdog_is_pinged_from_a_step_body() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "step")
        .with("FIXTURE_INTERVAL_MS", "10");
    assert_pings(fx, true);
}

#[test]
fn the_watchdog_is_pinged_from_an_idle_body() {
    assert_pings(Fixture::new(), false);
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "step")
        .with("FIXTURE_INTERVAL_MS", "10");
    let (seen, _) = watchdog_run(&fx, &[], true);
    assert_eq!(pings(&seen), 0, "{seen:?}");
}

#[test]
fn no_watchdog_pings_when_watchdog_pid_names_another_process() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "step")
        .with("FIXTURE_INTERVAL_MS", "10");
    let me = std::process::id().to_string();
    let env = [
        ("WATCHDOG_USEC", OsStr::new("200000")),
        ("WATCHDOG_PID", OsStr::new(&me)),
    ];
    let (seen, _) = watchdog_run(&fx, &env, true);
    assert_eq!(pings(&seen), 0, "{seen:?}");
}

/// The `port P` line of the marks file, if it is there.
fn port(fx: &Fixture) -> Option<u16> {
    fx.marks()
        .iter()
        .find_map(|m| m.strip_prefix("port ")?.parse().ok())
}

fn echo(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect at once, no retry");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(b"hello daemon").expect("write");
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).expect("read the echo");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn start_returns_only_once_the_body_says_ready() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "echo")
        .with("FIXTURE_READY_DELAY_MS", "300");
    let out = fx.run("start");
    let marks = fx.marks();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let pid = out.pid();
    let port = port(&fx).unwrap_or_else(|| panic!("the port is bound already: {marks:?}"));
    assert_eq!(echo(port), "hello daemon");
    assert!(
        out.elapsed >= Duration::from_millis(300),
        "start waited for the body: {out:?}"
    );
    fx.stop_gracefully(pid);
    assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
}

#[test]
fn ready_is_notified_only_once_the_body_says_so() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "echo")
        .with("FIXTURE_READY_DELAY_MS", "300");
    let manager = Manager::at_path(&fx);
    let since = Instant::now();
    let mut fg = manager.run(&fx, &[]);
    let ready = manager.until("READY=1");
    let marks = fx.marks();
    let waited = since.elapsed();
    assert_eq!(ready.len(), 1, "{ready:?}");
    let port = port(&fx).unwrap_or_else(|| panic!("the port is bound before READY=1: {marks:?}"));
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert_eq!(echo(port), "hello daemon");
    fg.signal(Signal::SIGTERM);
    manager.until("STOPPING=1");
    assert_eq!(fg.wait().code(), Some(0));
}

#[test]
fn a_daemon_that_never_says_ready_is_killed_at_the_ready_timeout() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "never-ready")
        .with("FIXTURE_READY_TIMEOUT_MS", "500");
    let out = fx.run("start");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("did not report ready") && out.stderr.contains("was killed (pid "),
        "{out:?}"
    );
    let pid = out.pid();
    assert_eq!(fx.count("body"), 1, "the body ran, but never said ready");
    assert_eq!(
        fx.reap(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    let pidfile = fx.pidfile();
    assert!(!pidfile.exists(), "no pidfile is left");
    assert_eq!(holders(&pidfile), vec![], "nobody holds the pidfile");
    assert_eq!(fx.processes(), vec![], "no process is left");
    let status = fx.run("status");
    assert_eq!(status.code(), Some(3), "{status:?}");
}

fn lines(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn reload_reopens_a_rotated_log() {
    let mut fx = Fixture::new().with("FIXTURE_BODY", "log");
    let log = fx.path("a.log");
    let rotated = fx.path("a.log.1");
    fx.set("FIXTURE_STDOUT", &log);
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || lines(&log).len() >= 5));

    fs::rename(&log, &rotated).expect("rotate the log");
    let at_rotation = lines(&rotated).len();
    assert!(
        wait_until(DEADLINE, || lines(&rotated).len() >= at_rotation + 3),
        "before the reload, the daemon writes to the rotated file"
    );
    let out = fx.run("reload");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        wait_until(DEADLINE, || lines(&log).len() >= 5),
        "a new log is opened and written"
    );
    let old = fs::metadata(&rotated).expect("the rotated log").len();
    let now = lines(&log).len();
    assert!(
        wait_until(DEADLINE, || lines(&log).len() >= now + 10),
        "the new log keeps growing"
    );
    assert_eq!(
        fs::metadata(&rotated).expect("the rotated log").len(),
        old,
        "the rotated log no longer grows"
    );
    fx.stop_gracefully(pid);

    // No line was lost or doubled across the rotation.
    let all: Vec<String> = lines(&rotated).into_iter().chain(lines(&log)).collect();
    let expected: Vec<String> = (1..=all.len()).map(|n| format!("line {n}")).collect();
    assert_eq!(all, expected);
}

/// The logrotate stanza of the guide's "Logs and logrotate", as documented.
fn guide_stanza() -> String {
    let guide = include_str!("../src/guide.md");
    let section = guide
        .split_once("\n# Logs and logrotate\n")
        .expect("the guide has a section \"Logs and logrotate\"")
        .1;
    let block = section
        .split_once("```text\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .expect("a ```text block in \"Logs and logrotate\"")
        .0;
    for needed in ["/var/log/counter.log {", "/usr/local/bin/counter reload"] {
        assert!(
            block.contains(needed),
            "the guide's stanza has {needed:?}: {block}"
        );
    }
    format!("{block}\n")
}

#[test]
fn logrotate_with_the_guides_stanza_loses_no_line() {
    if !common::require_root("the guide's stanza creates the new log as root:root")
        || !common::require_tool("logrotate")
    {
        return;
    }
    let mut fx = Fixture::new().with("FIXTURE_BODY", "log");
    let log = fx.path("a.log");
    let rotated = fx.path("a.log.1");
    fx.set("FIXTURE_STDOUT", &log);
    let pid = fx.start();
    assert!(wait_until(DEADLINE, || lines(&log).len() >= 5));

    // The guide's text, with this test's log and the fixture for the counter: its postrotate
    // script runs `daemons-fixture reload` with the fixture's environment.
    let reload = fx.command("reload");
    let config = fx.path("logrotate.conf");
    let stanza = guide_stanza()
        .replace("/var/log/counter.log", &log.display().to_string())
        .replace(
            "/usr/local/bin/counter",
            &reload.get_program().display().to_string(),
        );
    fs::write(&config, stanza).expect("write the logrotate configuration");
    let mut logrotate = std::process::Command::new("logrotate");
    logrotate
        .arg("--force")
        .arg("--state")
        .arg(fx.path("logrotate.state"))
        .arg(&config)
        .env_clear()
        .envs(reload.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let out = fx.execute(&mut logrotate);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        rotated.exists(),
        "rotated to a.log.1, not compressed yet: {out:?}"
    );
    // The postrotate script's output goes to /dev/null: the new log growing is what shows the
    // reload.
    assert!(
        wait_until(DEADLINE, || lines(&log).len() >= 5),
        "the daemon writes to the new log after the reload"
    );
    let old = fs::metadata(&rotated).expect("the rotated log").len();
    let now = lines(&log).len();
    assert!(
        wait_until(DEADLINE, || lines(&log).len() >= now + 10),
        "the new log keeps growing"
    );
    assert_eq!(
        fs::metadata(&rotated).expect("the rotated log").len(),
        old,
        "the rotated log no longer grows"
    );
    fx.stop_gracefully(pid);

    let all: Vec<String> = lines(&rotated).into_iter().chain(lines(&log)).collect();
    let expected: Vec<String> = (1..=all.len()).map(|n| format!("line {n}")).collect();
    assert_eq!(
        all, expected,
        "no line was lost or doubled across the rotation"
    );
}

#[test]
fn a_supervised_daemon_tells_ready_reloads_and_stop_as_the_main_process() {
    // READY=1 with MAINPID the supervisor (the process that the manager started) once the
    // child is ready, RELOADING=1 and READY=1 around the child's SIGHUP handlers, STOPPING=1.
    let fx = Fixture::new().with("FIXTURE_RESTART", "on-failure");
    let manager = Manager::at_path(&fx);
    ready_reload_stop(&fx, &manager);
}

#[test]
fn a_supervised_body_pings_the_watchdog_through_its_supervisor_until_it_wedges() {
    let fx = Fixture::new()
        .with("FIXTURE_RESTART", "on-failure")
        .with("FIXTURE_BODY", "wedge")
        .with("FIXTURE_WEDGE_AFTER_MS", "1000");
    let manager = Manager::at_path(&fx);
    let _fg = manager.run(&fx, &[("WATCHDOG_USEC", OsStr::new("200000"))]);
    manager.until("READY=1");
    // Healthy: pings at half the period, sent by the supervisor for its child.
    for _ in 0..3 {
        manager.until("WATCHDOG=1");
    }
    assert!(
        wait_until(DEADLINE, || fx.count_prefix("wedged ") == 1),
        "the body wedges: {:?}",
        fx.marks()
    );
    // A ping sent just before the wedge may still be on its way; then none comes.
    while manager.next(Duration::from_millis(150)).is_some() {}
    let mut after = Vec::new();
    let quiet = Instant::now() + Duration::from_millis(600);
    while let Some(datagram) = manager.next(quiet.saturating_duration_since(Instant::now())) {
        after.push(datagram);
    }
    assert_eq!(pings(&after), 0, "no ping for a wedged body: {after:?}");
}

/// Every datagram with the pid of the process that sent it (`SO_PASSCRED`), until one has the
/// line `line`.
fn until_with_senders(manager: &Manager, line: &str) -> Vec<(String, i32)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let end = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while Instant::now() < end {
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let received = recvmsg::<()>(
            manager.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        );
        let Ok(message) = received else { continue };
        let sender = message
            .cmsgs()
            .expect("control messages")
            .find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(creds) => Some(creds.pid()),
                _ => None,
            })
            .expect("the sender's credentials");
        let n = message.bytes;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let found = text.lines().any(|l| l == line);
        seen.push((text, sender));
        if found {
            return seen;
        }
    }
    panic!("no {line} within {DEADLINE:?}; received {seen:?}");
}

#[test]
fn a_restart_under_type_notify_names_the_new_main_process_and_never_says_stopping() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", format!("127.0.0.1:{port}"));
    let manager = Manager::at_path(&fx);
    let mut fg = manager.run(&fx, &[]);
    let old = fg.pid().as_raw();
    let first = until_with_senders(&manager, "READY=1");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, old);

    // `ExecReload=... restart`: the command runs with the service's NOTIFY_SOCKET.
    let mut restart = fx.command("restart");
    restart.env("NOTIFY_SOCKET", &manager.address);
    let reply = fx.execute(&mut restart);
    assert_eq!(reply.code(), Some(0), "{reply:?}");
    let heard = until_with_senders(&manager, "READY=1");
    let new = heard[0].1;
    assert_ne!(new, old, "{heard:?}");
    assert_eq!(
        heard[0].0,
        format!("MAINPID={new}"),
        "the new instance names itself first: {heard:?}"
    );
    assert!(
        heard.iter().all(|(_, sender)| *sender == new),
        "only the new instance spoke: {heard:?}"
    );
    assert_eq!(
        fg.wait().code(),
        Some(0),
        "the old instance stopped cleanly"
    );
    assert!(
        heard.iter().all(|(text, _)| !text.contains("STOPPING=1")),
        "{heard:?}"
    );
    assert_eq!(
        manager.next(Duration::from_millis(200)),
        None,
        "the outgoing instance says nothing, STOPPING=1 least of all"
    );
    assert_eq!(echo(port), "hello daemon", "the new instance serves");
    assert_eq!(fx.run("stop").code(), Some(0));
}

/// The `STATUS=` and `ERRNO=` that a daemon failing before ready sends before it exits 1.
fn failure_heard(fx: &Fixture) -> (String, String) {
    let manager = Manager::at_path(fx);
    let mut fg = manager.run(fx, &[]);
    let status = fg.wait();
    assert_eq!(status.code(), Some(1), "{status:?}");
    let mut heard = Vec::new();
    while let Some(datagram) = manager.next(Duration::from_millis(100)) {
        heard.push(datagram);
    }
    let failure = heard
        .iter()
        .find(|d| field(d, "ERRNO").is_some())
        .unwrap_or_else(|| panic!("an ERRNO= before the exit: {heard:?}"));
    assert!(
        heard.iter().all(|d| field(d, "READY").is_none()),
        "{heard:?}"
    );
    (
        field(failure, "STATUS").unwrap_or_default().to_string(),
        field(failure, "ERRNO").unwrap_or_default().to_string(),
    )
}

#[test]
fn a_taken_address_reaches_the_manager_with_its_errno() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", &address);
    let (status, errno) = failure_heard(&fx);
    assert!(
        status.contains(&format!("cannot listen on {address}")),
        "{status}"
    );
    assert_eq!(errno, libc::EADDRINUSE.to_string());
}

#[test]
fn a_failed_setup_reaches_the_manager_with_a_generic_errno() {
    let fx = Fixture::new().with("FIXTURE_SETUP", "fail");
    let (status, errno) = failure_heard(&fx);
    assert!(status.contains("no database"), "{status}");
    assert_eq!(errno, libc::EIO.to_string());
}

#[test]
fn a_supervised_first_child_that_fails_reaches_the_manager() {
    let fx = Fixture::new()
        .with("FIXTURE_RESTART", "on-failure")
        .with("FIXTURE_BODY", "fail-before-ready");
    let (status, errno) = failure_heard(&fx);
    assert!(status.contains("no database"), "{status}");
    assert_eq!(errno, libc::EIO.to_string());
}

#[test]
fn a_ready_timeout_longer_than_the_managers_asks_for_more_time() {
    let fx = Fixture::new().with("FIXTURE_READY_TIMEOUT_MS", "150000");
    let manager = Manager::at_path(&fx);
    let mut fg = manager.run(&fx, &[]);
    let heard = manager.until("READY=1");
    assert_eq!(
        field(&heard[0], "EXTEND_TIMEOUT_USEC"),
        Some("150000000"),
        "{heard:?}"
    );
    fg.signal(Signal::SIGTERM);
    assert_eq!(fg.wait().code(), Some(0));
}

#[test]
fn start_stop_daemon_notify_await_hears_a_failed_start_at_once() {
    if !common::require_tool("start-stop-daemon") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", &address);
    let mut command = std::process::Command::new(common::tool_path("start-stop-daemon"));
    command
        .args(["--start", "--background", "--notify-await"])
        // Without ERRNO= it would wait this long, then say it timed out.
        .args(["--notify-timeout", "300"])
        // Matched by its pidfile only: other tests run the same binary.
        .arg("--pidfile")
        .arg(fx.pidfile())
        .arg("--startas")
        .arg(common::fixture_binary())
        .args(["--", "run"])
        .env_clear()
        .envs(
            fx.command("run")
                .get_envs()
                .filter_map(|(k, v)| Some((k, v?))),
        );
    let reply = fx.execute(&mut command);
    assert_ne!(reply.code(), Some(0), "{reply:?}");
    assert!(
        reply
            .stderr
            .contains("program failed to initialize (Address already in use)"),
        "{reply:?}"
    );
}
