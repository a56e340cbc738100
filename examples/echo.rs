//! A TCP echo daemon on a socket that the daemon binds before it is ready (or that systemd
//! passes, with socket activation), so that `start && connect` never races, and that restarts
//! without refusing a connection.
//!
//! ```text
//! cargo run --example echo -- start && echo hello | nc -q1 127.0.0.1 7878
//! cargo run --example echo -- restart     # a new instance takes the socket over: no client refused
//! cargo run --example echo -- stop
//! systemd-socket-activate -l 127.0.0.1:7878 target/debug/examples/echo run
//! ```
//!
//! `.listen(address)` binds the port before `start()` returns (a taken port fails `start` with
//! the reason), or takes the socket that the service manager passed (`LISTEN_FDS`). At a stop
//! the body stops accepting and finishes the connections it has; at a `restart` the new
//! instance is serving on the same socket before the old one is asked to stop.
//! `DAEMONS_ECHO_ADDR` changes the address (default `127.0.0.1:7878`); the pidfile and the log
//! are `/tmp/daemons-echo.pid` and `/tmp/daemons-echo.log`.
//!
//! Like every `.cli()` tool, it takes `--pidfile PATH` before the command to name another pidfile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use daemons::Daemon;

fn main() -> ExitCode {
    let address = std::env::var("DAEMONS_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:7878".into());
    let tmp = std::env::temp_dir();
    Daemon::builder()
        .name("echo")
        .pidfile(tmp.join("daemons-echo.pid"))
        .stdout(tmp.join("daemons-echo.log"))
        .stderr(tmp.join("daemons-echo.log"))
        .listen(address)
        .run(|ctl| -> std::io::Result<()> {
            let listener = ctl.tcp_listener(0)?;
            println!("serving on {}", listener.local_addr()?);
            // Threads belong inside the body: it runs after the fork.
            let mut clients = Vec::new();
            while ctl.running() {
                if ctl.readable(&listener, Duration::from_secs(3600)) {
                    // Another instance on the same socket may have taken this client first.
                    listener.set_nonblocking(true)?;
                    if let Ok((stream, _)) = listener.accept() {
                        stream.set_nonblocking(false)?;
                        clients.push(thread::spawn(move || echo(stream)));
                    }
                }
                clients.retain(|client| !client.is_finished());
            }
            // Stopping: accept no more, finish the connections already accepted.
            for client in clients {
                let _ = client.join();
            }
            Ok(())
        })
        .cli()
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}
