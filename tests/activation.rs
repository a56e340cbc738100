//! Socket activation with the real `systemd-socket-activate`: every passed descriptor is checked
//! against what the daemon asked for (a connection of `--accept`, a datagram socket where a
//! listener was asked for), datagram sockets (`--datagram`) are served, and sockets are found by
//! the names the manager gave them (`--fdname`).

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{DEADLINE, Fixture, Foreground, fixture_binary, require_tool, tool_path, wait_until};
use nix::sys::signal::Signal;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.local_addr().expect("local address").port()
}

/// `systemd-socket-activate ARGS... daemons-fixture run`, with the fixture's settings passed by
/// name (the tool gives its child only the variables named with `-E`).
fn activate(fx: &Fixture, args: &[&str]) -> Foreground {
    let template = fx.command("run");
    let mut command = Command::new(tool_path("systemd-socket-activate"));
    command.env_clear().args(args);
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
            command.arg("-E").arg(key);
        }
    }
    command.arg(fixture_binary()).arg("run");
    fx.foreground(&mut command)
}

fn run_err(fx: &Fixture) -> String {
    fs::read_to_string(fx.path("run.err")).unwrap_or_default()
}

/// Whether something listens on the TCP port: a connection is accepted.
fn connects(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_connection_passed_by_accept_yes_fails_with_its_descriptor_named() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", &address);
    let manager = activate(&fx, &["--accept", "-l", &address]);
    assert!(wait_until(DEADLINE, || connects(port)), "the tool listens");
    // That connection started an instance with the connection as descriptor 3.
    assert!(
        wait_until(DEADLINE, || run_err(&fx).contains("descriptor 3")),
        "the instance says what it was given: {}",
        run_err(&fx)
    );
    let said = run_err(&fx);
    assert!(
        said.contains("does not listen") && said.contains("Accept=no"),
        "{said}"
    );
    // It exited at once instead of spinning on accept: only the tool is left.
    assert!(
        wait_until(DEADLINE, || fx.processes() == vec![manager.pid()]),
        "no instance runs on: {:?}",
        fx.processes()
    );
    assert!(!fx.pidfile().exists(), "no pidfile is left");
}

#[test]
fn a_datagram_socket_passed_for_a_tcp_address_fails_start() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = free_udp_port();
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", format!("127.0.0.1:{port}"));
    let mut manager = activate(&fx, &["--datagram", "-l", &format!("127.0.0.1:{port}")]);
    // The tool starts the program on the first datagram that comes once it is bound.
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    assert!(
        wait_until(DEADLINE, || {
            let _ = client.send_to(b"wake", ("127.0.0.1", port));
            run_err(&fx).contains("descriptor 3")
        }),
        "the program was started: {}",
        run_err(&fx)
    );
    let status = manager.wait();
    assert_eq!(status.code(), Some(1), "{status:?}: {}", run_err(&fx));
    let said = run_err(&fx);
    assert!(
        said.contains("descriptor 3")
            && said.contains("is a UDP socket, not a listening TCP socket"),
        "{said}"
    );
    assert!(!fx.pidfile().exists(), "no pidfile is left");
}

#[test]
fn a_datagram_socket_is_served_where_udp_is_asked_for() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = free_udp_port();
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", format!("udp:127.0.0.1:{port}"));
    let mut manager = activate(&fx, &["--datagram", "-l", &format!("127.0.0.1:{port}")]);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    // The first datagram wakes the tool, which passes the socket with it queued.
    let mut echoed = None;
    assert!(
        wait_until(DEADLINE, || {
            let _ = client.send_to(b"ping", ("127.0.0.1", port));
            echoed = client.recv(&mut buf).ok();
            echoed.is_some()
        }),
        "a datagram comes back: {}",
        run_err(&fx)
    );
    assert_eq!(&buf[..echoed.unwrap_or(0)], b"ping");
    let pid = manager.pid();
    assert!(
        fx.count(&format!("datagram {pid}")) >= 1,
        "{:?}",
        fx.marks()
    );
    manager.signal(Signal::SIGTERM);
    assert_eq!(manager.wait().code(), Some(0), "{}", run_err(&fx));
}

#[test]
fn sockets_are_found_by_the_names_the_manager_gave() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let (web, admin) = (free_port(), free_port());
    // The addresses say nothing (port 0): the names pick the sockets, whatever their order.
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", "admin=127.0.0.1:0,web=127.0.0.1:0")
        .with("FIXTURE_NAMES", "web,admin");
    let mut manager = activate(
        &fx,
        &[
            "-l",
            &format!("127.0.0.1:{web}"),
            "-l",
            &format!("127.0.0.1:{admin}"),
            "--fdname=web:admin",
        ],
    );
    assert!(wait_until(DEADLINE, || connects(web)), "the tool listens");
    assert!(
        wait_until(DEADLINE, || fx.count("named web 1") == 1
            && fx.count("named admin 0") == 1),
        "each name finds its socket: {:?} {}",
        fx.marks(),
        run_err(&fx)
    );
    let pid = manager.pid();
    // Socket 0 is the one passed as "admin": the daemon listens on the manager's sockets only.
    let local = fs::read_link(format!("/proc/{pid}/fd/3")).expect("fd 3");
    assert!(local.to_string_lossy().starts_with("socket:"), "{local:?}");
    manager.signal(Signal::SIGTERM);
    assert_eq!(manager.wait().code(), Some(0), "{}", run_err(&fx));
}

/// One datagram to `port` and its echo, within a second.
fn udp_echo(client: &UdpSocket, port: u16, text: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    client.send_to(text, ("127.0.0.1", port)).is_ok()
        && client.recv(&mut buf).is_ok_and(|n| &buf[..n] == text)
}

#[test]
fn a_udp_socket_is_bound_before_ready_and_handed_over_at_a_restart() {
    let port = free_udp_port();
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", format!("udp:127.0.0.1:{port}"));
    let started = fx.run("api start");
    assert_eq!(started.word(0), "started", "{started:?}");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // Bound before ready: the first datagram after `start` is answered.
    assert!(udp_echo(&client, port, b"first"), "{:?}", fx.marks());
    let first = started.pid();
    let restarted = fx.run("api restart");
    assert_eq!(
        (restarted.word(0), restarted.word(2)),
        ("started", "handed-over"),
        "{restarted:?}"
    );
    let second = restarted.pid();
    assert_ne!(first, second);
    assert!(udp_echo(&client, port, b"second"));
    assert!(
        fx.count(&format!("datagram {second}")) >= 1,
        "the new instance answers: {:?}",
        fx.marks()
    );
    assert_eq!(fx.run("api stop").word(0), "stopped");
}
