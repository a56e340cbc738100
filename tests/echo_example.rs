//! The echo example, as an operator runs it: on TCP and on a Unix socket, and stopped while a
//! keep-alive client sits idle, which must not hold the stop up to its timeout.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command;

use common::{DEADLINE, Fixture, example_binary};

/// `echo COMMAND` with its pidfile and log in the fixture's directory, serving `address`.
fn echo(fx: &Fixture, address: &str, command: &str) -> Command {
    let mut c = Command::new(example_binary("echo"));
    c.arg(command)
        .env_clear()
        .env("DAEMONS_ECHO_ADDR", address)
        .env("DAEMONS_ECHO_PIDFILE", fx.path("echo.pid"))
        .env("DAEMONS_ECHO_LOG", fx.path("echo.log"));
    c
}

/// Send `line` and read it back on a connected client.
fn round_trip<S: std::io::Read + Write>(stream: &mut S, line: &str) -> String {
    stream.write_all(line.as_bytes()).expect("send");
    let mut reader = BufReader::new(stream);
    let mut back = String::new();
    reader.read_line(&mut back).expect("read the echo");
    back
}

/// Start the example on `address`, let `client` connect and be served once, then stop it with
/// the client connected and idle: the stop ends the daemon gracefully (exit 0, not killed).
fn stopped_with_an_idle_client(
    fx: &Fixture,
    address: &str,
    client: impl FnOnce() -> Box<dyn std::any::Any>,
) {
    let started = fx.execute(&mut echo(fx, address, "start"));
    assert_eq!(started.code(), Some(0), "{started:?}");
    let daemon = started.pid();
    // Kept open, idle, until the stop is over.
    let _idle = client();
    let stopped = fx.execute(&mut echo(fx, address, "stop"));
    assert_eq!(stopped.code(), Some(0), "{stopped:?}");
    assert!(
        stopped.stdout.contains("stopped (pid") && !stopped.stdout.contains("killed"),
        "a graceful stop despite the idle client: {stopped:?}"
    );
    assert!(
        stopped.elapsed < DEADLINE,
        "the stop did not wait for the idle client: {stopped:?}"
    );
    assert_eq!(fx.exit_code(daemon), 0, "the body returned by itself");
    assert!(!fx.path("echo.pid").exists());
}

#[test]
fn a_stop_with_an_idle_tcp_client_is_graceful() {
    let fx = Fixture::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    stopped_with_an_idle_client(&fx, &address, || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        assert_eq!(round_trip(&mut stream, "hello\n"), "hello\n");
        Box::new(stream)
    });
}

#[test]
fn the_address_picks_a_unix_socket_and_a_stop_with_an_idle_client_is_graceful() {
    let fx = Fixture::new();
    let path = fx.path("echo.sock");
    let address = path.to_str().expect("a UTF-8 path").to_owned();
    stopped_with_an_idle_client(&fx, &address, || {
        let mut stream = UnixStream::connect(&path).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        assert_eq!(round_trip(&mut stream, "over unix\n"), "over unix\n");
        Box::new(stream)
    });
}
