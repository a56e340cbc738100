//! The body's view of the daemon ([`Ctl`]): whether to go on, interruptible waits, readiness,
//! a way to stop, the stop as a future or a descriptor, and the listening sockets.

use std::fmt;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::lifecycle::Lifecycle;
use crate::engine::readiness::Readiness;
use crate::engine::stop_future::StopFuture;
use crate::listen::{Listeners, Socket};
use crate::sync::Deadline;

/// The body's view of the daemon: whether to go on, an interruptible sleep, and a way to stop.
///
/// A `Ctl` is cheap to clone and may be moved into threads that the body spawns.
///
/// # Examples
///
/// ```
/// use daemons::Daemon;
/// use std::time::Duration;
///
/// let daemon = Daemon::builder()
///     .pidfile("/tmp/doc-ctl.pid")
///     .run(|ctl| {
///         while ctl.running() {
///             // do some work, then rest; a stop wakes the sleep at once
///             ctl.sleep(Duration::from_secs(60));
///         }
///     })
///     .build()?;
/// # Ok::<(), daemons::Error>(())
/// ```
#[derive(Clone)]
pub struct Ctl {
    lifecycle: Arc<Lifecycle>,
    readiness: Arc<Readiness>,
    listeners: Arc<Listeners>,
}

impl fmt::Debug for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctl")
            .field("running", &self.running())
            .finish()
    }
}

impl Ctl {
    /// The body's view of a daemon whose life is `lifecycle`, which says that it is ready to
    /// `readiness`, and that listens on `listeners`.
    pub(in crate::engine) fn new(
        lifecycle: Arc<Lifecycle>,
        readiness: Arc<Readiness>,
        listeners: Arc<Listeners>,
    ) -> Ctl {
        Ctl {
            lifecycle,
            readiness,
            listeners,
        }
    }

    /// A `Ctl` of its own, for the tests of what runs a body.
    #[cfg(test)]
    pub(in crate::engine) fn for_tests() -> Ctl {
        Ctl::new(
            Lifecycle::new(None, None).expect("a pipe"),
            Arc::new(Readiness::new(None)),
            Arc::default(),
        )
    }

    pub(in crate::engine) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// The `index`th listening socket, as a TCP listener: the sockets given to
    /// [`listen`](crate::DaemonBuilder::listen), in order, bound before the daemon was ready or
    /// passed by the service manager (socket activation), then any other socket it passed. Each
    /// call gives another handle on the same socket.
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such socket, `InvalidInput` when it is a Unix socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::io::Write;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-listen.pid")
    ///     .listen("127.0.0.1:7000")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = ctl.tcp_listener(0)?;
    ///         listener.set_nonblocking(true)?;
    ///         while ctl.running() {
    ///             match listener.accept() {
    ///                 Ok((mut client, _)) => client.write_all(b"hello\n")?,
    ///                 Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
    ///                     ctl.sleep(std::time::Duration::from_millis(10));
    ///                 }
    ///                 Err(e) => return Err(e),
    ///             }
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn tcp_listener(&self, index: usize) -> io::Result<TcpListener> {
        match self.listeners.get(index)? {
            Socket::Tcp(listener) => Ok(listener),
            other => Err(not_the_kind(index, &other, "a TCP")),
        }
    }

    /// The `index`th listening socket, as a Unix listener (see
    /// [`tcp_listener`](Ctl::tcp_listener)).
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such socket, `InvalidInput` when it is of another kind.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-listen-unix.pid")
    ///     .listen("/tmp/doc-listen.sock")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = ctl.unix_listener(0)?;
    ///         drop(listener);
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn unix_listener(&self, index: usize) -> io::Result<UnixListener> {
        match self.listeners.get(index)? {
            Socket::Unix(listener) => Ok(listener),
            other => Err(not_the_kind(index, &other, "a Unix")),
        }
    }

    /// The `index`th socket, as a UDP socket: one given to
    /// [`listen("udp:HOST:PORT")`](crate::DaemonBuilder::listen), bound before the daemon was
    /// ready, passed by the service manager (`ListenDatagram=`) or handed over at a restart (see
    /// [`tcp_listener`](Ctl::tcp_listener)).
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such socket, `InvalidInput` when it is of another kind.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-listen-udp.pid")
    ///     .listen("udp:127.0.0.1:5353")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let socket = ctl.udp_socket(0)?;
    ///         let mut buf = [0u8; 512];
    ///         while ctl.running() {
    ///             if ctl.readable(&socket, std::time::Duration::from_secs(60)) {
    ///                 let (n, from) = socket.recv_from(&mut buf)?;
    ///                 socket.send_to(&buf[..n], from)?;
    ///             }
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn udp_socket(&self, index: usize) -> io::Result<UdpSocket> {
        match self.listeners.get(index)? {
            Socket::Udp(socket) => Ok(socket),
            other => Err(not_the_kind(index, &other, "a UDP")),
        }
    }

    /// The index of the socket named `name`: given to the builder as
    /// [`listen("NAME=ADDRESS")`](crate::DaemonBuilder::listen), or passed by the service
    /// manager under that name (systemd's `FileDescriptorName=`, `$LISTEN_FDNAMES`).
    ///
    /// # Errors
    ///
    /// `NotFound`, listing the names there are, when no socket has that name.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-listen-named.pid")
    ///     .listen("web=127.0.0.1:8080")
    ///     .listen("admin=127.0.0.1:8081")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let admin = ctl.tcp_listener(ctl.listener_index("admin")?)?;
    ///         drop(admin);
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn listener_index(&self, name: &str) -> io::Result<usize> {
        self.listeners.index_of(name)
    }

    /// How many listening sockets the daemon has.
    ///
    /// # Examples
    ///
    /// ```
    /// let daemon = daemons::Daemon::builder()
    ///     .pidfile("/tmp/doc-listeners.pid")
    ///     .run(|ctl| assert_eq!(ctl.listener_count(), 0))
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use]
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// Whether the daemon should go on: false once a stop was asked.
    ///
    /// # Examples
    ///
    /// See [`Ctl`].
    #[inline]
    #[must_use]
    pub fn running(&self) -> bool {
        if let Some(watchdog) = self.lifecycle.watchdog() {
            watchdog.ping_if_flagged();
        }
        !self.lifecycle.stop_requested()
    }

    /// Sleep for `duration`, or until a stop is asked, whichever comes first. Returns `true` if
    /// the whole duration passed and the daemon is still running, `false` if a stop cut it short.
    ///
    /// # Examples
    ///
    /// ```
    /// # use daemons::Daemon;
    /// # use std::time::Duration;
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-sleep.pid")
    ///     .run(|ctl| {
    ///         while ctl.sleep(Duration::from_secs(5)) {
    ///             println!("still here");
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    // `ctl.sleep(d);` is the usual call, in a body that looks at `running()` next: the result
    // is a convenience, not something a caller must use.
    #[allow(clippy::must_use_candidate)]
    pub fn sleep(&self, duration: Duration) -> bool {
        self.wait(None, duration) == Woken::TimedOut
    }

    /// Wait until `fd` is readable (a listener has a client, a socket has data), a stop is
    /// asked, or `timeout` passes, whichever comes first. Returns whether `fd` is readable; after
    /// a stop it returns `false` at once. For a body that serves a socket without a thread of its
    /// own blocked in `accept`, and without a polling sleep.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::time::Duration;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-readable.pid")
    ///     .listen("127.0.0.1:7001")
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = ctl.tcp_listener(0)?;
    ///         while ctl.running() {
    ///             if ctl.readable(&listener, Duration::from_secs(60)) {
    ///                 let (client, _) = listener.accept()?;
    ///                 drop(client);
    ///             }
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn readable(&self, fd: impl AsFd, timeout: Duration) -> bool {
        self.wait(Some(fd.as_fd()), timeout) == Woken::Readable
    }

    /// Wait for `fd` (if any) to be readable, a stop, or `duration`, pinging the watchdog on
    /// the way.
    fn wait(&self, fd: Option<BorrowedFd<'_>>, duration: Duration) -> Woken {
        let deadline = Deadline::after(duration);
        loop {
            // A wait pings by the clock: it wakes when the ping is due, before the keeper may
            // have raised the flag that `running()` reads.
            if let Some(watchdog) = self.lifecycle.watchdog() {
                watchdog.ping_if_due();
            }
            if !self.running() {
                self.lifecycle.tell_stopping();
                return Woken::Stopped;
            }
            let mut left = deadline.left();
            if left.is_zero() {
                return Woken::TimedOut;
            }
            if let Some(watchdog) = self.lifecycle.watchdog() {
                left = left.min(watchdog.until_ping());
            }
            // A stop makes the pipe readable for good; a signal or a watchdog ping ends the wait
            // early; either way the loop looks again.
            if self.lifecycle.wait(fd.as_slice(), left).readable(0) {
                return Woken::Readable;
            }
        }
    }

    /// Report that the daemon is ready, when the builder was told that readiness is manual
    /// ([`manual_ready`](crate::DaemonBuilder::manual_ready)): until then `start()` waits (at
    /// most the ready timeout) and the service manager hears no `READY=1`. Call it once the
    /// daemon can serve, after binding its socket, say. Later calls, and calls when readiness is
    /// automatic, do nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use std::net::{TcpListener, UdpSocket};
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-ready.pid")
    ///     .manual_ready(true)
    ///     .run(|ctl| -> std::io::Result<()> {
    ///         let listener = TcpListener::bind("127.0.0.1:0")?;
    ///         ctl.ready();                 // start() returns only now
    ///         listener.set_nonblocking(true)?;
    ///         while ctl.running() {
    ///             // accept and serve...
    ///             ctl.sleep(std::time::Duration::from_millis(50));
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn ready(&self) {
        self.readiness.report();
    }

    /// Ask the daemon to stop, as a stop signal would, but without running any signal's
    /// handlers. Useful from a thread that the body spawned and that found a fatal condition.
    ///
    /// # Examples
    ///
    /// ```
    /// # use daemons::Daemon;
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-stop.pid")
    ///     .run(|ctl| {
    ///         let ctl2 = ctl.clone();
    ///         std::thread::spawn(move || ctl2.stop());
    ///         while ctl.running() {
    ///             ctl.sleep(std::time::Duration::from_millis(10));
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn stop(&self) {
        self.lifecycle.request_stop(None);
        self.lifecycle.tell_stopping();
    }

    /// A future that resolves once a stop is asked (a stop signal, [`Ctl::stop`], the end of
    /// the daemon), for async code on any executor: it needs no runtime and no cargo feature.
    /// Race it against the work (`select!`), or hand it to a server's graceful shutdown.
    ///
    /// Its waker is called from a small thread that waits on the stop pipe, started by the first
    /// future that has to wait: a stop signal's handler cannot call a waker itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-stopped.pid")
    ///     .run(|ctl| {
    ///         // A `Future<Output = ()>`: await it on the executor of your choice, e.g.
    ///         // `runtime.block_on(server.with_graceful_shutdown(ctl.stopped()))`.
    ///         let stopped = ctl.stopped();
    ///         # drop(stopped);
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn stopped(&self) -> StopFuture {
        StopFuture::new(self.lifecycle.clone())
    }

    /// The stop as a descriptor, for code that polls descriptors (`poll(2)`, mio, tokio's
    /// `AsyncFd`, an event loop of its own): it becomes readable when a stop is asked and stays
    /// readable from then on. It is non-blocking and close-on-exec.
    ///
    /// Only poll it: never read from it, close it or make it blocking; it is the pipe that wakes
    /// every [`sleep`](Ctl::sleep) of the daemon.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::Daemon;
    /// use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    ///
    /// let daemon = Daemon::builder()
    ///     .pidfile("/tmp/doc-stop-fd.pid")
    ///     .run(|ctl| {
    ///         // Wait for the stop and for other descriptors in one poll(2).
    ///         let mut fds = [PollFd::new(ctl.stop_fd(), PollFlags::POLLIN)];
    ///         let _ = poll(&mut fds, PollTimeout::NONE);
    ///     })
    ///     .build()?;
    /// # Ok::<(), daemons::Error>(())
    /// ```
    #[must_use]
    pub fn stop_fd(&self) -> BorrowedFd<'_> {
        self.lifecycle.wake_fd()
    }
}

/// What ended a [`Ctl`] wait.
#[derive(Debug, PartialEq, Eq)]
enum Woken {
    Readable,
    Stopped,
    TimedOut,
}

/// The error of a socket asked for as `wanted` (`a TCP`) that is of another kind.
fn not_the_kind(index: usize, found: &Socket, wanted: &str) -> io::Error {
    let use_instead = match found {
        Socket::Tcp(_) => "ctl.tcp_listener",
        Socket::Unix(_) => "ctl.unix_listener",
        Socket::Udp(_) => "ctl.udp_socket",
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "socket #{index} is {}, not {wanted} socket: use {use_instead}({index})",
            found.kind().describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signal;
    use std::thread;

    #[test]
    fn sleep_wakes_on_stop() {
        let ctl = Ctl::for_tests();
        let other = ctl.clone();
        let waker = thread::spawn(move || other.stop());
        let slept = ctl.sleep(Duration::from_secs(600));
        waker.join().expect("join");
        assert!(!slept);
        assert!(!ctl.running());
    }

    #[test]
    fn sleep_runs_its_course_when_not_stopped() {
        let ctl = Ctl::for_tests();
        assert!(ctl.sleep(Duration::from_millis(1)));
        assert!(ctl.running());
    }

    #[test]
    fn a_sleep_of_any_length_is_cut_short_by_a_stop() {
        let ctl = Ctl::for_tests();
        ctl.stop();
        assert!(!ctl.sleep(Duration::MAX));
    }

    #[test]
    fn the_first_stop_signal_is_kept() {
        let ctl = Ctl::for_tests();
        ctl.lifecycle().request_stop(Some(Signal::SIGINT));
        ctl.lifecycle().request_stop(Some(Signal::SIGTERM));
        assert_eq!(ctl.lifecycle().stop_signal(), Some(Signal::SIGINT));
    }
}
