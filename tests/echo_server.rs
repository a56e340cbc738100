//! `examples/echo` as a server should be: it serves the kind of socket its address names (TCP
//! for `host:port`, Unix for a path), and a stop with clients still connected is quick and
//! clean: idle connections are closed at once, a client in the middle of a line gets its echo,
//! and the daemon exits 0 (what systemd counts as a clean stop), not after the grace.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use common::{DEADLINE, Fixture, example_binary, require_tool, tool_path, wait_until};

/// A client of either kind.
trait Client: Read + Write {
    fn limit_reads(&self);
}

impl Client for TcpStream {
    fn limit_reads(&self) {
        self.set_read_timeout(Some(DEADLINE)).expect("timeout");
    }
}

impl Client for UnixStream {
    fn limit_reads(&self) {
        self.set_read_timeout(Some(DEADLINE)).expect("timeout");
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The echo example's command line in the fixture's directory: its pidfile and log there.
fn echo(fx: &Fixture, address: &str, args: &[&str]) -> Command {
    let mut command = Command::new(example_binary("echo"));
    command
        .env("TMPDIR", fx.dir())
        .env("DAEMONS_ECHO_ADDR", address)
        .arg("--pidfile")
        .arg(fx.path("echo.pid"))
        .args(args);
    command
}

fn log(fx: &Fixture) -> String {
    let mut text = fs::read_to_string(fx.path("run.out")).unwrap_or_default();
    text += &fs::read_to_string(fx.path("run.err")).unwrap_or_default();
    text
}

/// Send `line` and read its echo.
fn ask(client: &mut dyn Client, line: &str) -> String {
    client.write_all(line.as_bytes()).expect("send");
    let mut answer = vec![0u8; line.len()];
    client.read_exact(&mut answer).expect("read the echo");
    String::from_utf8(answer).expect("text")
}

/// With one client idle between lines and one in the middle of a line, `stop`: the idle one is
/// closed while the daemon still waits for the other's line, which is echoed; the daemon exits 0.
fn a_stop_with_clients(address: &str, connect: &dyn Fn() -> Box<dyn Client>) {
    let fx = Fixture::new();
    let mut daemon = fx.foreground(&mut echo(&fx, address, &["run"]));
    assert!(
        wait_until(DEADLINE, || log(&fx).contains("serving on")),
        "{}",
        log(&fx)
    );
    let mut idle = connect();
    let mut busy = connect();
    idle.limit_reads();
    busy.limit_reads();
    assert_eq!(ask(&mut *idle, "hello\n"), "hello\n");
    assert_eq!(ask(&mut *busy, "first\n"), "first\n");
    busy.write_all(b"half a").expect("send half a line");

    let stop: Child = echo(&fx, address, &["stop"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stop");
    // The idle client is let go of at once, while the daemon still runs for the busy one.
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)),
        "the idle client is closed: {closed:?} {rest:?}"
    );
    assert!(
        common::alive(daemon.pid()),
        "the daemon waits for the line in progress: {}",
        log(&fx)
    );
    busy.write_all(b" line\n").expect("end the line");
    let mut reader = BufReader::new(busy);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the echo");
    assert_eq!(line, "half a line\n");
    line.clear();
    assert_eq!(
        reader.read_line(&mut line).ok(),
        Some(0),
        "then it is closed"
    );

    let status = daemon.wait();
    assert_eq!(status.code(), Some(0), "{status:?}: {}", log(&fx));
    let stopped = stop.wait_with_output().expect("stop");
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(!log(&fx).contains("abandon"), "{}", log(&fx));
    assert!(!fx.path("echo.pid").exists(), "the pidfile is removed");
}

#[test]
fn a_tcp_echo_stops_at_once_with_an_idle_client_and_finishes_a_line() {
    let address = format!("127.0.0.1:{}", free_port());
    let connect =
        || -> Box<dyn Client> { Box::new(TcpStream::connect(address.as_str()).expect("connect")) };
    a_stop_with_clients(&address, &connect);
}

#[test]
fn a_unix_echo_stops_at_once_with_an_idle_client_and_finishes_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("echo.sock");
    let address = path.display().to_string();
    let connect = || -> Box<dyn Client> { Box::new(UnixStream::connect(&path).expect("connect")) };
    a_stop_with_clients(&address, &connect);
}

#[test]
fn a_unix_socket_passed_by_the_service_manager_is_served() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let fx = Fixture::new();
    let path = fx.path("activated.sock");
    let address = path.display().to_string();
    let template = echo(&fx, &address, &["run"]);
    let mut command = Command::new(tool_path("systemd-socket-activate"));
    command.env_clear().args(["-l", &address]);
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(key, value).arg("-E").arg(key);
        }
    }
    command
        .arg(template.get_program())
        .args(template.get_args());
    let mut manager = fx.foreground(&mut command);
    assert!(
        wait_until(DEADLINE, || UnixStream::connect(&path).is_ok()),
        "the tool listens"
    );
    let mut client = UnixStream::connect(&path).expect("connect");
    client.limit_reads();
    assert_eq!(ask(&mut client, "activated\n"), "activated\n");
    assert!(
        wait_until(DEADLINE, || log(&fx)
            .contains(&format!("serving on {address}"))),
        "{}",
        log(&fx)
    );
    // The client stays, idle: the stop is still clean.
    manager.signal(nix::sys::signal::Signal::SIGTERM);
    let status = manager.wait();
    assert_eq!(status.code(), Some(0), "{status:?}: {}", log(&fx));
}
