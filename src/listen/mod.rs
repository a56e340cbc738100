//! Listening sockets: bound by the daemon before it reports ready, or passed in by the service
//! manager (socket activation, sd_listen_fds(3)), and handed to the body through
//! [`Ctl::tcp_listener`](crate::Ctl::tcp_listener) and
//! [`Ctl::unix_listener`](crate::Ctl::unix_listener).

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

pub(crate) mod handover;

use crate::error::{Action, Error};
use crate::gate::path::{Dir, Trusted};
use crate::settings::Address;

/// A listening socket the daemon owns.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Socket {
    /// A socket passed by the service manager, by the family its address has.
    fn adopt(fd: OwnedFd) -> io::Result<Socket> {
        use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
        use std::os::fd::AsRawFd;
        let local: SockaddrStorage =
            getsockname(fd.as_raw_fd()).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        match local.family() {
            Some(AddressFamily::Inet | AddressFamily::Inet6) => Ok(Socket::Tcp(fd.into())),
            Some(AddressFamily::Unix) => Ok(Socket::Unix(fd.into())),
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "a passed socket of family {other:?}: only TCP and Unix stream sockets are taken"
                ),
            )),
        }
    }

    /// Whether this is the socket that `address` asks for. With `any_port`, port 0 asks for
    /// any port of its host: at a restart, the one that the first instance was given.
    fn is(&self, address: &Address, any_port: bool) -> bool {
        match (self, address) {
            (Socket::Tcp(listener), Address::Tcp(addr)) => {
                let Ok(local) = listener.local_addr() else {
                    return false;
                };
                addr.to_socket_addrs().is_ok_and(|mut wanted| {
                    wanted.any(|w: SocketAddr| {
                        w == local || (any_port && w.port() == 0 && w.ip() == local.ip())
                    })
                })
            }
            (Socket::Unix(listener), Address::Unix(path)) => listener
                .local_addr()
                .ok()
                .and_then(|local| local.as_pathname().map(Path::to_path_buf))
                .is_some_and(|local| local == *path),
            _ => false,
        }
    }

    /// Bind `address`; a Unix socket's file is made through the path gate, in a directory
    /// that, as root, no other user than `trusted` can change.
    fn bind(address: &Address, trusted: Trusted) -> Result<Socket, Error> {
        let failed = |source: io::Error| Error::Listen {
            address: address.describe(),
            source,
        };
        match address {
            Address::Tcp(addr) => TcpListener::bind(addr.as_str())
                .map(Socket::Tcp)
                .map_err(failed),
            Address::Unix(path) => {
                let dir = Dir::of(path, Action::Listen, trusted)?;
                // A socket file left by an instance that is gone (this one holds the pidfile):
                // nobody listens there any more.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    && crate::sys::nobody_listens(path)
                {
                    let _ = dir.remove(path);
                }
                dir.bind_socket(path).map(Socket::Unix).map_err(failed)
            }
        }
    }

    /// Another handle on the socket, for the body.
    fn duplicate(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(listener) => Socket::Tcp(listener.try_clone()?),
            Socket::Unix(listener) => Socket::Unix(listener.try_clone()?),
        })
    }
}

/// The daemon's listening sockets, in the order `listen` was called; sockets the service manager
/// passed beyond those follow, in its order.
#[derive(Debug, Default)]
pub(crate) struct Listeners(Vec<Socket>);

impl Listeners {
    /// Take what the service manager passed where it matches (by address, else in order), and
    /// bind the rest.
    pub(crate) fn open(
        wanted: &[Address],
        passed: Vec<OwnedFd>,
        trusted: Trusted,
    ) -> Result<Listeners, Error> {
        let mut passed = adopt_all(passed);
        // First each address takes the passed socket bound to it, then the others take the
        // passed ones left in order, and what is still missing is bound here.
        let mut chosen: Vec<Option<Socket>> = wanted
            .iter()
            .map(|address| {
                let at = passed
                    .iter()
                    .position(|s| s.as_ref().is_some_and(|s| s.is(address, false)))?;
                passed[at].take()
            })
            .collect();
        for slot in chosen.iter_mut().filter(|slot| slot.is_none()) {
            *slot = passed.iter_mut().find_map(Option::take);
        }
        let mut sockets = bind_missing(wanted, chosen, trusted)?;
        sockets.extend(passed.into_iter().flatten());
        Ok(Listeners(sockets))
    }

    /// Take the sockets that a predecessor handed over at a restart: each address takes the one
    /// socket that matches it (port 0 matches any port of its host), and what is still missing
    /// is bound. A socket that matches no address, or one taken already, or that is not a
    /// listening stream socket, is closed: whatever was sent, only what was configured is
    /// served.
    pub(crate) fn take_handed(
        wanted: &[Address],
        handed: Vec<OwnedFd>,
        trusted: Trusted,
    ) -> Result<Listeners, Error> {
        use std::os::fd::AsFd;
        let listening = handed
            .into_iter()
            .filter(|fd| crate::sys::is_listening_stream(fd.as_fd()));
        let mut handed = adopt_all(listening.collect());
        // Each address takes the socket bound to it exactly, then one with port 0 takes one of
        // its host's that is left, then what is still missing is bound.
        let mut chosen: Vec<Option<Socket>> = Vec::new();
        for any_port in [false, true] {
            chosen.resize_with(wanted.len(), || None);
            for (address, slot) in wanted.iter().zip(chosen.iter_mut()) {
                if slot.is_none() {
                    *slot = handed
                        .iter()
                        .position(|s| s.as_ref().is_some_and(|s| s.is(address, any_port)))
                        .and_then(|at| handed[at].take());
                }
            }
        }
        bind_missing(wanted, chosen, trusted).map(Listeners)
    }

    /// Other handles on every socket: a supervised child's own.
    pub(crate) fn duplicate(&self) -> io::Result<Listeners> {
        self.0
            .iter()
            .map(Socket::duplicate)
            .collect::<io::Result<_>>()
            .map(Listeners)
    }

    /// The sockets' descriptors, to hand them to a successor.
    pub(crate) fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.0
            .iter()
            .map(|socket| match socket {
                Socket::Tcp(listener) => listener.as_fd(),
                Socket::Unix(listener) => listener.as_fd(),
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The socket at `index`, duplicated for the body.
    pub(crate) fn get(&self, index: usize) -> io::Result<Socket> {
        match self.0.get(index) {
            Some(socket) => socket.duplicate(),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "there is no listening socket #{index}: the daemon has {} (give the builder .listen(address))",
                    self.0.len()
                ),
            )),
        }
    }
}

/// The sockets of `fds` that can be taken (TCP and Unix stream sockets); `None` for the others,
/// which are closed.
fn adopt_all(fds: Vec<OwnedFd>) -> Vec<Option<Socket>> {
    fds.into_iter().map(|fd| Socket::adopt(fd).ok()).collect()
}

/// The socket of each address: the one chosen for it, else one bound now.
fn bind_missing(
    wanted: &[Address],
    chosen: Vec<Option<Socket>>,
    trusted: Trusted,
) -> Result<Vec<Socket>, Error> {
    wanted
        .iter()
        .zip(chosen)
        .map(|(address, slot)| match slot {
            Some(socket) => Ok(socket),
            None => Socket::bind(address, trusted),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_socket_is_taken_for_its_address_and_the_rest_are_bound() {
        let passed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = passed.local_addr().expect("addr").port();
        let wanted = [
            Address::Tcp("127.0.0.1:0".into()),
            Address::Tcp(format!("127.0.0.1:{port}")),
        ];
        let listeners = Listeners::open(&wanted, vec![OwnedFd::from(passed)], Trusted::default())
            .expect("open");
        assert_eq!(listeners.len(), 2);
        let Socket::Tcp(second) = listeners.get(1).expect("second") else {
            panic!("a TCP socket");
        };
        assert_eq!(
            second.local_addr().expect("addr").port(),
            port,
            "matched by address"
        );
        assert!(listeners.get(2).is_err());
    }

    #[test]
    fn handed_sockets_are_taken_only_for_their_addresses() {
        let mine = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = mine.local_addr().expect("addr").port();
        let stranger = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stranger_port = stranger.local_addr().expect("addr").port();
        let free = TcpListener::bind("127.0.0.1:0").expect("bind");
        let free_port = free.local_addr().expect("addr").port();
        drop(free);
        let wanted = [
            Address::Tcp(format!("127.0.0.1:{free_port}")),
            Address::Tcp(format!("127.0.0.1:{port}")),
        ];
        // The stranger comes first: in order, it would have been taken for the first address.
        let handed = vec![OwnedFd::from(stranger), OwnedFd::from(mine)];
        let listeners = Listeners::take_handed(&wanted, handed, Trusted::default()).expect("take");
        assert_eq!(listeners.len(), 2);
        let local = |i| match listeners.get(i).expect("a socket") {
            Socket::Tcp(l) => l.local_addr().expect("addr").port(),
            Socket::Unix(_) => panic!("a TCP socket"),
        };
        assert_eq!(local(0), free_port, "bound afresh");
        assert_eq!(local(1), port, "the handed socket of its address");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", stranger_port)).is_err(),
            "the stranger was closed"
        );
        // Port 0 takes the port that the first instance was given.
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let given = first.local_addr().expect("addr").port();
        let listeners = Listeners::take_handed(
            &[Address::Tcp("127.0.0.1:0".into())],
            vec![OwnedFd::from(first)],
            Trusted::default(),
        )
        .expect("take");
        let Socket::Tcp(kept) = listeners.get(0).expect("a socket") else {
            panic!("a TCP socket");
        };
        assert_eq!(kept.local_addr().expect("addr").port(), given);
    }

    #[test]
    fn a_taken_address_is_a_typed_error() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let err = Listeners::open(
            &[Address::Tcp(addr.clone())],
            Vec::new(),
            Trusted::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Listen { address, .. } if *address == addr),
            "{err:?}"
        );
    }
}
