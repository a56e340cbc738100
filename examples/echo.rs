//! An echo daemon on a socket that the daemon binds before it is ready (or that systemd passes,
//! with socket activation), so that `start && connect` never races, and that restarts without
//! refusing a connection. The address picks the kind: `host:port` for TCP, a path for a Unix
//! stream socket.
//!
//! ```text
//! cargo run --example echo -- start && echo hello | nc -q1 127.0.0.1 7878
//! cargo run --example echo -- restart     # a new instance takes the socket over: no client refused
//! cargo run --example echo -- stop
//! DAEMONS_ECHO_ADDR=/tmp/echo.sock cargo run --example echo -- start && echo hi | nc -q1 -U /tmp/echo.sock
//! systemd-socket-activate -l 127.0.0.1:7878 target/debug/examples/echo run
//! ```
//!
//! `.listen(address)` binds the socket before `start()` returns (a taken port fails `start` with
//! the reason), or takes the socket that the service manager passed (`LISTEN_FDS`). At a stop the
//! body stops accepting, and each connection ends as soon as it has been idle for a moment
//! (`IDLE_AT_STOP`): what a client sent is echoed, and a keep-alive client that sends nothing
//! does not hold the stop up to its timeout. At a `restart` the new instance is serving on the
//! same socket before the old one is asked to stop.
//! `DAEMONS_ECHO_ADDR` changes the address (default `127.0.0.1:7878`); `DAEMONS_ECHO_PIDFILE` and
//! `DAEMONS_ECHO_LOG` move the pidfile and the log (`/tmp/daemons-echo.pid` and
//! `/tmp/daemons-echo.log` by default).
//!
//! Like every `.cli()` tool, it takes `--pidfile PATH` before the command to name another pidfile.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use daemons::{Ctl, Daemon};

/// How long a connection may stay silent once a stop is asked before it is closed: long enough
/// for a client that has just connected to send its line, short enough that a stop is quick.
const IDLE_AT_STOP: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let address = std::env::var("DAEMONS_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:7878".into());
    let unix = address.starts_with('/') || address.starts_with('.');
    Daemon::builder()
        .name("echo")
        .pidfile(path_from_env("DAEMONS_ECHO_PIDFILE", "daemons-echo.pid"))
        .stdout(path_from_env("DAEMONS_ECHO_LOG", "daemons-echo.log"))
        .stderr(path_from_env("DAEMONS_ECHO_LOG", "daemons-echo.log"))
        .listen(address)
        .run(move |ctl| -> io::Result<()> {
            // Threads belong inside the body: it runs after the fork.
            let clients = if unix {
                let listener = ctl.unix_listener(0)?;
                println!("serving on {:?}", listener.local_addr()?);
                // Another instance on the same socket may take a client first: the accept then
                // fails at once instead of blocking, and the loop waits again.
                listener.set_nonblocking(true)?;
                serve(
                    ctl,
                    &listener,
                    || listener.accept().map(|(s, _)| s),
                    |s, t| {
                        s.set_nonblocking(false)?;
                        s.set_read_timeout(t)
                    },
                )
            } else {
                let listener = ctl.tcp_listener(0)?;
                println!("serving on {}", listener.local_addr()?);
                listener.set_nonblocking(true)?;
                serve(
                    ctl,
                    &listener,
                    || listener.accept().map(|(s, _)| s),
                    |s, t| {
                        s.set_nonblocking(false)?;
                        s.set_read_timeout(t)
                    },
                )
            };
            // Stopping: accept no more; each connection ends once it is idle.
            for client in clients {
                let _ = client.join();
            }
            Ok(())
        })
        .cli()
}

/// Accept clients until a stop, each echoed on a thread of its own; the threads still running.
fn serve<S>(
    ctl: &Ctl,
    listener: &impl AsFd,
    accept: impl Fn() -> io::Result<S>,
    timeout: fn(&S, Option<Duration>) -> io::Result<()>,
) -> Vec<thread::JoinHandle<()>>
where
    S: Read + Write + AsFd + Send + 'static,
{
    let mut clients = Vec::new();
    while ctl.running() {
        if !ctl.readable(listener, Duration::from_secs(3600)) {
            continue;
        }
        match accept() {
            Ok(stream) => {
                let ctl = ctl.clone();
                clients.push(thread::spawn(move || echo(&ctl, stream, timeout)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => eprintln!("accept: {e}"),
        }
        clients.retain(|client: &thread::JoinHandle<()>| !client.is_finished());
    }
    clients
}

/// Echo what the client sends until it hangs up; once a stop is asked, until it has been idle
/// for [`IDLE_AT_STOP`].
fn echo<S: Read + Write + AsFd>(
    ctl: &Ctl,
    mut stream: S,
    timeout: fn(&S, Option<Duration>) -> io::Result<()>,
) {
    let mut buf = [0u8; 4096];
    loop {
        if ctl.running() {
            // Wait for data or the stop, whichever comes first.
            if !ctl.readable(&stream, Duration::from_secs(3600)) {
                continue;
            }
        } else if timeout(&stream, Some(IDLE_AT_STOP)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// `$VAR` if set, else `name` in the temporary directory.
fn path_from_env(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| std::env::temp_dir().join(name), PathBuf::from)
}
