//! How long a client waits while a daemon with a listening socket restarts: `restart()`, which
//! hands the socket to the new instance, beside a plain `stop()` then `start()` of the same
//! daemon, in the same run.
//!
//! `cargo bench --bench sockets`. An echo daemon on 127.0.0.1 (`.listen()`, a thread per
//! connection, its clients finished at stop) and a client process that connects in a tight loop,
//! sends a line and reads it back. The bench alternates the two kinds of restart, 20 of each,
//! with a quiet pause after each, and reports the medians over the restarts of:
//!
//! - with the handover: the longest connect-to-echo time of any connection made during the
//!   restart, beside the longest in a window of the same length right after it (no restart);
//!   and how many connections were refused or reset (none should be);
//! - stop then start: how long the port refused connections (from the first refused attempt to
//!   the first one that got through), and how many were refused or reset.
//!
//! The bench process never runs a thread: `start()` and `restart()` fork it, and refuse to fork
//! a process that runs several. The client is a forked process of its own, and times every
//! attempt on CLOCK_MONOTONIC, the clock the bench reads around each restart. Under `cargo test
//! --benches` (no `--bench` argument) it does two restarts of each kind, as a smoke test.

// The benchmarks play the operator: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use daemons::{Ctl, Daemon};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2};

/// Restarts of each kind, when benchmarking.
const ROUNDS: usize = 20;
/// Restarts of each kind before those measured.
const WARM_UP: usize = 2;
/// How long the client may run, at most, and how many attempts it may record.
const CLIENT_LIMIT: Duration = Duration::from_secs(600);
const MOST_ATTEMPTS: usize = 5_000_000;
/// The line each connection sends.
const LINE: &[u8] = b"ping\n";

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
fn now() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the time into the timespec it is given, nothing else.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    assert_eq!(r, 0, "clock_gettime");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// A port on 127.0.0.1 that nobody listens on.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------------
// The daemon.

/// The echo daemon, as examples/echo.rs writes it.
fn echo_daemon(pidfile: &Path, port: u16) -> Daemon {
    Daemon::builder()
        .name("bench-echo")
        .pidfile(pidfile)
        .listen(format!("127.0.0.1:{port}"))
        .run(serve)
        .build()
        .expect("a valid daemon")
}

fn serve(ctl: &Ctl) -> io::Result<()> {
    let listener = ctl.tcp_listener(0)?;
    // Another instance on the same socket (during a restart) may take a client first.
    listener.set_nonblocking(true)?;
    let mut clients = Vec::new();
    while ctl.running() {
        if ctl.readable(&listener, Duration::from_secs(3600)) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    clients.push(thread::spawn(move || echo(stream)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        clients.retain(|client| !client.is_finished());
    }
    // Accept no more; finish the connections accepted.
    for client in clients {
        let _ = client.join();
    }
    Ok(())
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 512];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// Stops the daemon when dropped, so that a bench that panics leaves nothing running.
struct Running<'a>(&'a Daemon);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Echoed = 0,
    Refused = 1,
    Reset = 2,
    Failed = 3,
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    start: u64,
    end: u64,
    outcome: Outcome,
}

const RECORD: usize = 17;

/// One connection: connect, send the line, read it back.
fn attempt(addr: SocketAddr) -> Outcome {
    let mut stream = match TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(_) => return Outcome::Failed,
    };
    let _ = stream.set_nodelay(true);
    if stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .is_err()
    {
        return Outcome::Failed;
    }
    let reset = |e: io::Error| match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Outcome::Reset,
        _ => Outcome::Failed,
    };
    if let Err(e) = stream.write_all(LINE) {
        return reset(e);
    }
    let mut echoed = [0u8; LINE.len()];
    match stream.read_exact(&mut echoed) {
        Ok(()) if echoed == LINE => Outcome::Echoed,
        Ok(()) => Outcome::Failed,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Outcome::Reset,
        Err(e) => reset(e),
    }
}

/// The client process: connects in a tight loop until a byte arrives on `stop` (or its limits),
/// then writes every attempt to `out`.
struct Client {
    pid: Pid,
    stop: OwnedFd,
    out: PathBuf,
}

impl Client {
    fn spawn(port: u16, out: PathBuf) -> Client {
        assert_eq!(thread_count(), 1, "the bench process must run one thread");
        let (stop_read, stop_write) = pipe2(OFlag::O_CLOEXEC).expect("a pipe to stop the client");
        // SAFETY: this process runs a single thread (checked above), so the child is a
        // complete copy; it leaves with `_exit`.
        match unsafe { fork() }.expect("fork the client") {
            ForkResult::Child => {
                drop(stop_write);
                let code = match run_client(port, &stop_read, &out) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("the client failed: {e}");
                        1
                    }
                };
                // SAFETY: `_exit` ends this process at once and never returns.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => Client {
                pid: child,
                stop: stop_write,
                out,
            },
        }
    }

    /// Stop it, wait for it, and read what it saw.
    fn finish(self) -> Vec<Attempt> {
        nix::unistd::write(&self.stop, b"s").expect("stop the client");
        let status = waitpid(self.pid, None).expect("wait for the client");
        assert!(
            matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "the client ended with {status:?}"
        );
        let bytes = fs::read(&self.out).expect("the client's attempts");
        let attempts = bytes
            .chunks_exact(RECORD)
            .map(|r| Attempt {
                start: u64::from_le_bytes(r[0..8].try_into().expect("8 bytes")),
                end: u64::from_le_bytes(r[8..16].try_into().expect("8 bytes")),
                outcome: match r[16] {
                    0 => Outcome::Echoed,
                    1 => Outcome::Refused,
                    2 => Outcome::Reset,
                    _ => Outcome::Failed,
                },
            })
            .collect();
        std::mem::forget(self);
        attempts
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

fn run_client(port: u16, stop: &OwnedFd, out: &Path) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let begun = now();
    let limit = CLIENT_LIMIT.as_nanos() as u64;
    let mut attempts = Vec::with_capacity(1 << 16);
    while attempts.len() < MOST_ATTEMPTS && now() - begun < limit {
        let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).map_err(io::Error::from)? > 0 {
            break;
        }
        let start = now();
        let outcome = attempt(addr);
        attempts.push(Attempt {
            start,
            end: now(),
            outcome,
        });
    }
    let mut file = BufWriter::new(fs::File::create(out)?);
    for a in &attempts {
        file.write_all(&a.start.to_le_bytes())?;
        file.write_all(&a.end.to_le_bytes())?;
        file.write_all(&[a.outcome as u8])?;
    }
    file.flush()
}

// ---------------------------------------------------------------------------------------------
// The figures.

/// The attempts that overlap `[from, to]`.
fn during(attempts: &[Attempt], from: u64, to: u64) -> impl Iterator<Item = &Attempt> {
    attempts
        .iter()
        .filter(move |a| a.start <= to && a.end >= from)
}

fn count(attempts: &[Attempt], from: u64, to: u64, outcome: Outcome) -> usize {
    during(attempts, from, to)
        .filter(|a| a.outcome == outcome)
        .count()
}

/// The longest connect-to-echo time among the connections that overlap `[from, to]`.
fn longest(attempts: &[Attempt], from: u64, to: u64) -> Option<u64> {
    during(attempts, from, to)
        .filter(|a| a.outcome == Outcome::Echoed)
        .map(|a| a.end - a.start)
        .max()
}

/// From the first refused attempt in `[from, to]` to the start of the first attempt after it
/// that got through: how long the port refused connections.
fn refused_for(attempts: &[Attempt], from: u64, to: u64) -> Option<u64> {
    let first = during(attempts, from, to)
        .filter(|a| a.outcome == Outcome::Refused)
        .map(|a| a.start)
        .min()?;
    let back = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Echoed && a.start > first)
        .map(|a| a.start)
        .min()?;
    Some(back - first)
}

fn median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2),
    }
}

fn human(nanos: Option<u64>) -> String {
    match nanos {
        None => "-".into(),
        Some(n) if n >= 1_000_000 => format!("{:.2} ms", n as f64 / 1e6),
        Some(n) => format!("{:.0} µs", n as f64 / 1e3),
    }
}

/// A restart, as the bench process timed it.
struct Window {
    from: u64,
    to: u64,
}

/// Restart the way `restart` does; time it; then pause, quietly, for a little more than it took,
/// so that the window right after it has no restart in it.
fn timed(restart: impl FnOnce()) -> Window {
    let from = now();
    restart();
    let to = now();
    thread::sleep(Duration::from_millis(15) + Duration::from_nanos(to - from));
    Window { from, to }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds = if benching { ROUNDS } else { 2 };
    let dir = tempfile::Builder::new()
        .prefix("daemons-bench-sockets-")
        .tempdir()
        .expect("a temporary directory");
    let port = free_port();
    let daemon = echo_daemon(&dir.path().join("echo.pid"), port);
    let client = Client::spawn(port, dir.path().join("attempts"));
    daemon.start().expect("start the echo daemon");
    let running = Running(&daemon);
    thread::sleep(Duration::from_millis(100));

    let handover = || {
        daemon.restart().expect("restart");
    };
    let plain = || {
        daemon.stop().expect("stop");
        daemon.start().expect("start");
    };
    for _ in 0..WARM_UP {
        timed(handover);
        timed(plain);
    }
    let mut handovers = Vec::new();
    let mut plains = Vec::new();
    for _ in 0..rounds {
        handovers.push(timed(handover));
        plains.push(timed(plain));
    }
    let attempts = client.finish();
    drop(running);
    assert_eq!(thread_count(), 1, "the bench process ran no thread");

    let settle = 5_000_000;
    let quiet = |w: &Window| (w.to + settle, w.to + settle + (w.to - w.from));
    let of = |windows: &[Window], f: &dyn Fn(&Window) -> Option<u64>| {
        median(windows.iter().filter_map(f).collect())
    };
    let total = |windows: &[Window], outcome| -> usize {
        windows
            .iter()
            .map(|w| count(&attempts, w.from, w.to, outcome))
            .sum()
    };
    let took = |windows: &[Window]| of(windows, &|w| Some(w.to - w.from));
    let echoed = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Echoed)
        .count();
    let span = attempts.last().map_or(0, |a| a.end) - attempts.first().map_or(0, |a| a.start);

    println!(
        "sockets: {rounds} restarts of each kind, alternating; {echoed} connections echoed in {:.1} s ({:.0}/s)",
        span as f64 / 1e9,
        echoed as f64 / (span as f64 / 1e9).max(1e-9)
    );
    println!(
        "  restart(), sockets handed over: longest connect-to-echo {} median (worst {}), beside {} in as long a window without a restart; refused {}, reset {}, failed {}; restart() took {} median",
        human(of(&handovers, &|w| longest(&attempts, w.from, w.to))),
        human(
            handovers
                .iter()
                .filter_map(|w| longest(&attempts, w.from, w.to))
                .max()
        ),
        human(of(&handovers, &|w| {
            let (from, to) = quiet(w);
            longest(&attempts, from, to)
        })),
        total(&handovers, Outcome::Refused),
        total(&handovers, Outcome::Reset),
        total(&handovers, Outcome::Failed),
        human(took(&handovers)),
    );
    let refusing = plains
        .iter()
        .filter(|w| count(&attempts, w.from, w.to, Outcome::Refused) > 0)
        .count();
    println!(
        "  stop() then start(): the port refused connections for {} median (worst {}; in {refusing} of {rounds} restarts); refused {}, reset {}, failed {}; stop and start took {} median",
        human(of(&plains, &|w| refused_for(&attempts, w.from, w.to))),
        human(
            plains
                .iter()
                .filter_map(|w| refused_for(&attempts, w.from, w.to))
                .max()
        ),
        total(&plains, Outcome::Refused),
        total(&plains, Outcome::Reset),
        total(&plains, Outcome::Failed),
        human(took(&plains)),
    );
    assert_eq!(
        total(&handovers, Outcome::Refused) + total(&handovers, Outcome::Reset),
        0,
        "a restart with the handover refused or reset a connection"
    );
}
