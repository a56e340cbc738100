//! Async bodies (the `tokio` feature), driven from outside: the async echo example served and
//! stopped with its clients drained, a `messages_async` daemon stopped in a burst, the watchdog
//! pinged from the runtime (and not while it is wedged), and `start()` refused inside a runtime.
//!
//! `cargo test --features tokio-net --test asynchronous`; without the feature its tests are
//! listed as ignored, with that command.

#[cfg(feature = "tokio")]
mod common;

/// The helpers of the tests below, built with the feature only.
#[cfg(feature = "tokio")]
mod support {
    pub(crate) use super::common;
    pub(crate) use common::{DEADLINE, Fixture, fixture_binary, wait_until};
    pub(crate) use nix::sys::signal::Signal;
    pub(crate) use nix::sys::wait::WaitStatus;
    pub(crate) use std::collections::BTreeSet;
    pub(crate) use std::io::{BufRead, BufReader, Write};
    pub(crate) use std::net::TcpStream;
    pub(crate) use std::os::unix::net::UnixDatagram;
    pub(crate) use std::path::PathBuf;
    pub(crate) use std::process::Command;
    pub(crate) use std::thread;
    pub(crate) use std::time::{Duration, Instant};

    /// The `async_echo` example, built beside the fixture by `cargo test --features tokio-net`.
    pub(crate) fn async_echo_binary() -> PathBuf {
        let binary = fixture_binary().with_file_name("async_echo");
        assert!(
            binary.exists(),
            "{} is missing: run `cargo test --features tokio-net`",
            binary.display()
        );
        binary
    }

    /// `async_echo --pidfile PIDFILE COMMAND`, listening on a port of its choice and logging in the
    /// fixture's directory.
    pub(crate) fn async_echo(fx: &Fixture, command: &str) -> Command {
        let mut c = Command::new(async_echo_binary());
        c.arg("--pidfile")
            .arg(fx.pidfile())
            .arg(command)
            .env_clear()
            .env("DAEMONS_ASYNC_ECHO_ADDR", "127.0.0.1:0")
            .env("DAEMONS_ASYNC_ECHO_LOG", fx.path("echo.log"));
        c
    }

    pub(crate) fn echo_log(fx: &Fixture) -> String {
        std::fs::read_to_string(fx.path("echo.log")).unwrap_or_default()
    }

    /// A client of the echo daemon, line by line.
    pub(crate) struct Client {
        writer: TcpStream,
        reader: BufReader<TcpStream>,
    }

    impl Client {
        pub(crate) fn connect(port: u16) -> Client {
            let writer = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            writer.set_read_timeout(Some(DEADLINE)).expect("timeout");
            let reader = BufReader::new(writer.try_clone().expect("clone"));
            Client { writer, reader }
        }

        pub(crate) fn echo(&mut self, line: &str) -> String {
            writeln!(self.writer, "{line}").expect("write");
            let mut back = String::new();
            self.reader.read_line(&mut back).expect("read the echo");
            back.trim_end().to_owned()
        }
    }

    /// The numbers of the `PREFIX N` marks.
    pub(crate) fn numbered(fx: &Fixture, prefix: &str) -> Vec<u64> {
        fx.marks()
            .iter()
            .filter_map(|m| m.strip_prefix(prefix)?.parse().ok())
            .collect()
    }

    /// The arrival times of the `WATCHDOG=1` datagrams on `socket` until `until` has passed.
    pub(crate) fn pings(socket: &UnixDatagram, until: Instant) -> Vec<Instant> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = socket.recv(&mut buf)
                && &buf[..n] == b"WATCHDOG=1"
            {
                seen.push(Instant::now());
            }
        }
        seen
    }
}

#[cfg(feature = "tokio")]
use support::*;

/// Each test, with the `tokio` feature; without it, the same name, ignored, with the command that
/// runs it, so that `cargo test` lists what it did not run instead of running nothing silently.
macro_rules! with_tokio {
    ($($(#[doc = $doc:literal])* fn $name:ident() $body:block)*) => {$(
        $(#[doc = $doc])*
        #[cfg(feature = "tokio")]
        #[test]
        fn $name() $body

        $(#[doc = $doc])*
        #[cfg(not(feature = "tokio"))]
        #[test]
        #[ignore = "needs the tokio feature: cargo test --features tokio-net --test asynchronous"]
        fn $name() {}
    )*};
}

with_tokio! {
    fn the_async_echo_daemon_serves_and_lets_its_clients_finish_at_a_stop() {
        let fx = Fixture::new();
        let started = fx.execute(&mut async_echo(&fx, "start"));
        assert_eq!(started.code(), Some(0), "{started:?}\n{}", echo_log(&fx));
        let pid = started.pid();
        // Ready means listening: the port is in the log already.
        let port: u16 = echo_log(&fx)
            .lines()
            .find_map(|l| l.strip_prefix("listening on 127.0.0.1:")?.parse().ok())
            .unwrap_or_else(|| panic!("no port in the log: {}", echo_log(&fx)));

        let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.echo(&format!("hello {i}")), format!("hello {i}"));
        }

        // The stop waits for the clients: run it beside them.
        let stop = {
            let mut command = async_echo(&fx, "stop");
            thread::spawn(move || command.output().expect("run stop"))
        };
        assert!(
            wait_until(DEADLINE, || echo_log(&fx).contains("draining 3")),
            "the daemon stops accepting and drains its 3 clients: {}",
            echo_log(&fx)
        );
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "no new client once the stop is asked"
        );
        // Those connected are still served, then leave one after the other.
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(
                client.echo(&format!("still there {i}")),
                format!("still there {i}")
            );
        }
        while let Some(client) = clients.pop() {
            drop(client);
            thread::sleep(Duration::from_millis(50));
            assert!(
                !stop.is_finished() || clients.is_empty(),
                "the daemon waited for every client"
            );
        }
        let stopped = stop.join().expect("the stop command");
        assert_eq!(
            stopped.status.code(),
            Some(0),
            "{stopped:?}\n{}",
            echo_log(&fx)
        );
        assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
        assert_eq!(
            echo_log(&fx).matches(" left").count(),
            3,
            "{}",
            echo_log(&fx)
        );
        assert!(!echo_log(&fx).contains("closing"), "nobody was cut off");
        assert!(!fx.pidfile().exists());
    }

    fn a_stop_in_a_burst_of_async_messages_handles_every_message_fetched() {
        let fx = Fixture::new()
            .with("FIXTURE_BODY", "async-messages")
            .with("FIXTURE_HANDLE_MS", "50")
            .with("FIXTURE_POOL", "200");
        let pid = fx.start();
        // The stop comes in a burst: 400 handled, and the pool full (200 fetched and not yet
        // handled), both read from one look at the marks. On a busy machine the fetcher may
        // lag behind the handlers for a moment; the stop waits for a full pool, not for luck.
        let in_flight_and_done = || {
            let marks = fx.marks();
            let count = |prefix: &str| marks.iter().filter(|m| m.starts_with(prefix)).count();
            let (got, done) = (count("got "), count("done "));
            (got.saturating_sub(done), done)
        };
        assert!(
            wait_until(DEADLINE, || {
                let (in_flight, done) = in_flight_and_done();
                done >= 400 && in_flight >= 200
            }),
            "messages are handled, the pool full: (in flight, done) {:?}",
            in_flight_and_done()
        );
        fx.stop_gracefully(pid);
        assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));

        let got = numbered(&fx, "got ");
        let done = numbered(&fx, "done ");
        let last = *got.last().expect("messages were fetched");
        assert_eq!(got, (1..=last).collect::<Vec<_>>(), "fetched once each");
        let handled: BTreeSet<u64> = done.iter().copied().collect();
        assert_eq!(handled.len(), done.len(), "none handled twice");
        assert_eq!(
            handled,
            got.iter().copied().collect::<BTreeSet<u64>>(),
            "fetched == handled"
        );
        // The stop came with the pool full: at least 400 handled and 200 in flight.
        assert!(last >= 600, "{last} fetched");
    }

    fn async_handler_panics_lose_only_their_message() {
        let fx = Fixture::new()
            .with("FIXTURE_BODY", "async-messages")
            .with("FIXTURE_PANIC_EVERY", "4")
            .with("FIXTURE_COUNT", "20");
        let pid = fx.start();
        let logged = |n: u64| {
            fx.stderr_log()
                .lines()
                .filter(|l| l.contains(&format!("message #{n}: the handler panicked")))
                .count()
        };
        assert!(
            wait_until(DEADLINE, || fx.count_prefix("done ") == 15
                && [4, 8, 12, 16, 20].iter().all(|&n| logged(n) == 1)),
            "15 done and 5 panics logged: {:?}\n{}",
            fx.marks(),
            fx.stderr_log()
        );
        fx.stop_gracefully(pid);
        assert_eq!(fx.reap(pid), WaitStatus::Exited(pid, 0));
    }

    fn the_watchdog_is_pinged_from_the_runtime_and_stops_while_it_is_wedged() {
        let fx = Fixture::new()
            .with("FIXTURE_BODY", "async-wedge")
            .with("FIXTURE_WEDGE_AFTER_MS", "700")
            .with("FIXTURE_WEDGE_MS", "1200");
        let path = fx.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut command = fx.command("run");
        // Every 100 ms: half the period.
        command
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000");
        let mut fg = fx.foreground(&mut command);
        assert!(wait_until(DEADLINE, || fx.count("body") == 1));
        let seen = pings(&socket, Instant::now() + Duration::from_millis(2600));
        assert!(
            fx.count("wedged") == 1 && fx.count_prefix("unwedged ") == 1,
            "{:?}",
            fx.marks()
        );
        fg.signal(Signal::SIGTERM);
        assert_eq!(fg.wait().code(), Some(0));

        let gaps: Vec<u128> = seen.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        let longest = gaps.iter().copied().max().unwrap_or_default();
        let wedged = gaps.iter().position(|&g| g == longest).unwrap_or_default();
        assert!(
            (1000..2000).contains(&longest),
            "no ping while the runtime was blocked for 1.2 s: gaps {gaps:?} ms"
        );
        assert!(
            wedged >= 3,
            "pings came every 100 ms before the wedge: {gaps:?} ms"
        );
        assert!(
            gaps.len() - wedged >= 3,
            "and again once the runtime ran: {gaps:?} ms"
        );
        assert!(
            gaps.iter().all(|&g| g >= 50),
            "no more than one ping per half period: {gaps:?} ms"
        );
    }

    fn start_inside_a_runtime_is_refused_and_says_why() {
        let fx = Fixture::new().with("FIXTURE_IN_RUNTIME", "1");
        let reply = fx.run("api start");
        reply.assert_error("InsideRuntime");
        assert!(
            reply.line().contains("before building the runtime"),
            "{reply:?}"
        );
        assert!(!fx.pidfile().exists(), "nothing was started");
        // Outside a runtime the same daemon starts.
        let fx = fx.with("FIXTURE_IN_RUNTIME", "");
        let pid = fx.start();
        fx.stop_gracefully(pid);
    }
}
