//! An async TCP echo daemon on tokio: ready once it listens, and at a stop it lets its clients
//! finish instead of cutting them off.
//!
//! ```text
//! cargo run --features tokio-net --example async_echo -- start
//! echo hello | nc -q1 127.0.0.1 7879
//! cargo run --features tokio-net --example async_echo -- stop
//! ```
//!
//! The runtime is built by `run_async` inside the daemon, after the fork: `main` has no
//! `#[tokio::main]`, and must not (`start()` refuses to fork inside a runtime). At a stop the
//! daemon stops accepting, then waits for the clients that are connected to close, at most
//! [`DRAIN`]; those still there then are closed. Each connection is a task on the one thread of
//! a current-thread runtime.
//!
//! `DAEMONS_ASYNC_ECHO_ADDR` changes the address (default `127.0.0.1:7879`; with port 0 the
//! log says which port it got), `DAEMONS_ASYNC_ECHO_LOG` the log (default
//! `/tmp/daemons-async-echo.log`); the pidfile is `/tmp/daemons-async-echo.pid`, or the
//! `--pidfile PATH` given before the command.

use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use daemons::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long a stop waits for connected clients to leave.
const DRAIN: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let address =
        std::env::var("DAEMONS_ASYNC_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:7879".into());
    let log = std::env::var_os("DAEMONS_ASYNC_ECHO_LOG").map_or_else(
        || std::env::temp_dir().join("daemons-async-echo.log"),
        Into::into,
    );
    Daemon::builder()
        .name("async_echo")
        .pidfile(std::env::temp_dir().join("daemons-async-echo.pid"))
        .stdout(&log)
        .stderr(&log)
        .manual_ready(true)
        .ready_timeout(Duration::from_secs(5))
        .run_async(move |ctl| {
            let address = address.clone();
            async move {
                let listener = TcpListener::bind(&address).await?;
                println!("listening on {}", listener.local_addr()?);
                ctl.ready();
                let mut clients = JoinSet::new();
                let mut stopped = pin!(ctl.stopped());
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let (stream, peer) = accepted?;
                            clients.spawn(echo(stream, peer.to_string()));
                        }
                        // Finished connections are reaped as they go.
                        Some(_) = clients.join_next(), if !clients.is_empty() => {}
                        () = &mut stopped => break,
                    }
                }
                drop(listener);
                println!("stopping: no new clients, draining {}", clients.len());
                let drained = tokio::time::timeout(DRAIN, async {
                    while clients.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    println!(
                        "stopping: closing {} clients after {DRAIN:?}",
                        clients.len()
                    );
                }
                Ok::<(), std::io::Error>(())
            }
        })
        .cli()
}

/// Echo what the client sends until it closes its side.
async fn echo(mut stream: TcpStream, peer: String) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    println!("client {peer} left");
}
