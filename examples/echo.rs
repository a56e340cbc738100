//! A TCP echo daemon that reports ready only once it listens, so that `start && connect` never
//! races: `start` returns after the port is bound, not before.
//!
//! ```text
//! cargo run --example echo -- start && echo hello | nc -q1 127.0.0.1 7878
//! cargo run --example echo -- stop
//! ```
//!
//! `.manual_ready(true)` makes `start()` (and `READY=1` under systemd) wait for `ctl.ready()`,
//! at most the ready timeout; a daemon that cannot bind its port fails `start` with the reason.
//! `DAEMONS_ECHO_ADDR` changes the address (default `127.0.0.1:7878`); the pidfile and the log
//! are `/tmp/daemons-echo.pid` and `/tmp/daemons-echo.log`.
//!
//! Like every `.cli()` tool, it takes `--pidfile PATH` before the command to name another pidfile.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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
        .manual_ready(true)
        .ready_timeout(Duration::from_secs(5))
        .run(move |ctl| -> std::io::Result<()> {
            let listener = TcpListener::bind(&address)?;
            println!("listening on {address}");
            ctl.ready();
            // Threads belong inside the body: it runs after the fork.
            thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    thread::spawn(move || echo(stream));
                }
            });
            while ctl.sleep(Duration::from_secs(3600)) {}
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
