//! An echo daemon, line by line, on a TCP port or a Unix socket path, which the daemon binds
//! before it is ready (or that systemd passes, with socket activation), so that
//! `start && connect` never races, that restarts without refusing a connection, and that stops
//! quickly, whatever its clients do.
//!
//! ```text
//! cargo run --example echo -- start && echo hello | nc -q1 127.0.0.1 7878
//! cargo run --example echo -- restart     # a new instance takes the socket over: no client refused
//! cargo run --example echo -- stop
//! systemd-socket-activate -l 127.0.0.1:7878 target/debug/examples/echo run
//! DAEMONS_ECHO_ADDR=/tmp/echo.sock cargo run --example echo -- run   # a Unix socket
//! ```
//!
//! `.listen(address)` binds the address before `start()` returns (a taken port fails `start`
//! with the reason), or takes the socket that the service manager passed (`LISTEN_FDS`). The
//! address picks the kind: `host:port` is TCP, a path (or `unix:PATH`) a Unix stream socket.
//! `DAEMONS_ECHO_ADDR` changes it (default `127.0.0.1:7878`); `DAEMONS_ECHO_PIDFILE` and
//! `DAEMONS_ECHO_LOG` move the pidfile and the log (`daemons-echo.pid` and `daemons-echo.log`
//! in the temporary directory, `$TMPDIR` or `/tmp`, by default).
//!
//! At a stop (or when a `restart`'s new instance has taken over) the daemon does what a server
//! must do so that no request is lost and the stop is quick: it accepts no more, a connection
//! that is idle between lines is closed at once (an HTTP server closes its idle keep-alive
//! connections the same way), and one in the middle of a line, or accepted and not yet heard
//! from, gets that line's echo, then is closed. A client that never ends its line is given
//! [`LINE_GRACE`]. The daemon then exits 0,
//! well within its stop timeout, even with clients that stay connected and say nothing.
//!
//! Like every `.cli()` tool, it takes `--pidfile PATH` before the command to name another pidfile.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use daemons::{Ctl, Daemon};

/// How long a client in the middle of a line at a stop has to end it.
const LINE_GRACE: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let address = std::env::var("DAEMONS_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:7878".into());
    let unix = address.starts_with('/') || address.starts_with('.') || address.starts_with("unix:");
    Daemon::builder()
        .name("echo")
        .pidfile(path_from_env("DAEMONS_ECHO_PIDFILE", "daemons-echo.pid"))
        .stdout(path_from_env("DAEMONS_ECHO_LOG", "daemons-echo.log"))
        .stderr(path_from_env("DAEMONS_ECHO_LOG", "daemons-echo.log"))
        .listen(address)
        .run(move |ctl| -> io::Result<()> {
            let listener = match unix {
                true => Listener::Unix(ctl.unix_listener(0)?),
                false => Listener::Tcp(ctl.tcp_listener(0)?),
            };
            println!("serving on {}", listener.describe()?);
            listener.serve(ctl)
        })
        .cli()
}

/// A connection of either kind.
trait Connection: Read + Write + AsFd + Send + 'static {
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Connection for TcpStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl Connection for UnixStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    fn describe(&self) -> io::Result<String> {
        Ok(match self {
            Listener::Tcp(l) => l.local_addr()?.to_string(),
            Listener::Unix(l) => match l.local_addr()?.as_pathname() {
                Some(path) => path.display().to_string(),
                None => "an unnamed Unix socket".into(),
            },
        })
    }

    /// The next client, if there is one now: another instance on the same socket (during a
    /// restart) may have taken the one that woke this one, so the listener does not block.
    fn accept(&self) -> io::Result<Option<Box<dyn Connection>>> {
        let accepted: io::Result<Box<dyn Connection>> = match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Box::new(s) as Box<dyn Connection>),
            Listener::Unix(l) => l.accept().map(|(s, _)| Box::new(s) as Box<dyn Connection>),
        };
        match accepted {
            Ok(stream) => stream.set_nonblocking(false).map(|()| Some(stream)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn serve(self, ctl: &Ctl) -> io::Result<()> {
        match &self {
            Listener::Tcp(l) => l.set_nonblocking(true)?,
            Listener::Unix(l) => l.set_nonblocking(true)?,
        }
        let fd = match &self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        };
        // Threads belong inside the body: it runs after the fork.
        let mut clients = Vec::new();
        while ctl.running() {
            if ctl.readable(fd, Duration::from_secs(3600))
                && let Some(stream) = self.accept()?
            {
                let ctl = ctl.clone();
                clients.push(thread::spawn(move || echo(&ctl, stream)));
            }
            clients.retain(|client| !client.is_finished());
        }
        // Stopping: accept no more; each connection ends as soon as it is between two lines.
        drop(self);
        for client in clients {
            let _ = client.join();
        }
        Ok(())
    }
}

/// Echo each line that `stream` sends, until it closes or, at a stop, until it is between
/// two lines.
fn echo(ctl: &Ctl, mut stream: Box<dyn Connection>) -> io::Result<()> {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    // A connection that has sent nothing yet is not idle: its client is sending its first
    // line, and closing it would lose that line.
    let mut fresh = true;
    loop {
        if ctl.running() {
            // Returns at once at a stop, and the loop looks again.
            if !ctl.readable(stream.as_fd(), Duration::from_secs(3600)) {
                continue;
            }
        } else if line.is_empty() && !fresh {
            // Idle at a stop: what the client already sent is still read (it is a request in
            // flight), otherwise the connection is closed now.
            stream.set_nonblocking(true)?;
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    stream.set_nonblocking(false)?;
                    line.extend_from_slice(&buf[..n]);
                    answer(&mut stream, &mut line)?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        } else {
            // In the middle of a line (or before the first) at a stop: its end is waited for,
            // not for ever.
            stream.set_read_timeout(Some(LINE_GRACE))?;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        fresh = false;
        line.extend_from_slice(&buf[..n]);
        answer(&mut stream, &mut line)?;
    }
}

/// Echo the complete lines in `line`, and keep the rest.
fn answer(stream: &mut Box<dyn Connection>, line: &mut Vec<u8>) -> io::Result<()> {
    if let Some(end) = line.iter().rposition(|&b| b == b'\n') {
        stream.write_all(&line[..=end])?;
        line.drain(..=end);
    }
    Ok(())
}

/// `$VAR` if set, else `name` in the temporary directory.
fn path_from_env(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| std::env::temp_dir().join(name), PathBuf::from)
}
