//! Listening sockets: bound by the daemon before it reports ready, or passed in by the service
//! manager (socket activation, sd_listen_fds(3)), and handed to the body through
//! [`Ctl::tcp_listener`](crate::Ctl::tcp_listener),
//! [`Ctl::unix_listener`](crate::Ctl::unix_listener) and
//! [`Ctl::udp_socket`](crate::Ctl::udp_socket). Every descriptor that comes from elsewhere is
//! checked (`kind.rs`) against what was asked for before it is taken.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

pub(crate) mod handover;
mod kind;

pub(crate) use kind::Kind;

use crate::error::{Action, Error};
use crate::gate::path::{Dir, Trusted};
use crate::settings::{Address, Listen};

/// A descriptor that a service manager passed, with the name it gave it (`LISTEN_FDNAMES`).
pub(crate) type Passed = (OwnedFd, Option<String>);

/// A socket the daemon owns.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
    Udp(UdpSocket),
}

impl Socket {
    /// A socket of `kind` (checked by [`kind::kind_of`]).
    fn of_kind(kind: Kind, fd: OwnedFd) -> Socket {
        match kind {
            Kind::Tcp => Socket::Tcp(fd.into()),
            Kind::Udp => Socket::Udp(fd.into()),
            Kind::Unix => Socket::Unix(fd.into()),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Socket::Tcp(_) => Kind::Tcp,
            Socket::Udp(_) => Kind::Udp,
            Socket::Unix(_) => Kind::Unix,
        }
    }

    /// Whether this is the socket that `address` asks for. With `any_port`, port 0 asks for
    /// any port of its host: at a restart, the one that the first instance was given.
    fn is(&self, address: &Address, any_port: bool) -> bool {
        let inet = |local: io::Result<SocketAddr>, addr: &str| {
            let Ok(local) = local else {
                return false;
            };
            addr.to_socket_addrs().is_ok_and(|mut wanted| {
                wanted.any(|w: SocketAddr| {
                    w == local || (any_port && w.port() == 0 && w.ip() == local.ip())
                })
            })
        };
        match (self, address) {
            (Socket::Tcp(listener), Address::Tcp(addr)) => inet(listener.local_addr(), addr),
            (Socket::Udp(socket), Address::Udp(addr)) => inet(socket.local_addr(), addr),
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
            Address::Udp(addr) => UdpSocket::bind(addr.as_str())
                .map(Socket::Udp)
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
            Socket::Udp(socket) => Socket::Udp(socket.try_clone()?),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(listener) => listener.as_fd(),
            Socket::Unix(listener) => listener.as_fd(),
            Socket::Udp(socket) => socket.as_fd(),
        }
    }
}

impl Address {
    /// The kind of socket it asks for.
    fn socket_kind(&self) -> Kind {
        match self {
            Address::Tcp(_) => Kind::Tcp,
            Address::Udp(_) => Kind::Udp,
            Address::Unix(_) => Kind::Unix,
        }
    }
}

/// A socket and its name: the `NAME=` of its `listen` address, or the one the service manager
/// gave it.
#[derive(Debug)]
struct Named {
    socket: Socket,
    name: Option<String>,
}

/// A passed socket not taken yet, with its descriptor's number for messages.
struct Pending {
    socket: Socket,
    name: Option<String>,
    number: i32,
}

impl Pending {
    /// The passed descriptor in words: `descriptor 3 ("web")`.
    fn describe(&self) -> String {
        describe_passed(self.number, self.name.as_deref())
    }

    /// Take it for `wanted`, if it is the kind of socket that `wanted` asks for.
    fn take_for(self, wanted: &Listen) -> Result<Named, Error> {
        let kind = wanted.address.socket_kind();
        if self.socket.kind() != kind {
            return Err(Error::Listen {
                address: format!(
                    "{}: {} passed by the service manager is {}, not {}",
                    wanted.address.describe(),
                    self.describe(),
                    self.socket.kind().describe(),
                    kind.describe()
                ),
                source: kind::mismatch("the passed descriptor is not the socket asked for".into()),
            });
        }
        Ok(Named {
            socket: self.socket,
            name: wanted.name.clone().or(self.name),
        })
    }
}

fn describe_passed(number: i32, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("descriptor {number} (named {name:?})"),
        None => format!("descriptor {number}"),
    }
}

/// The daemon's sockets, in the order `listen` was called; sockets the service manager passed
/// beyond those follow, in its order.
#[derive(Debug, Default)]
pub(crate) struct Listeners(Vec<Named>);

impl Listeners {
    /// Take what the service manager passed, each descriptor checked: a `NAME=` address takes
    /// the socket of that name, then each address the one bound to it, then the addresses left
    /// without a name take those left, in order; what is still missing is bound. A passed
    /// descriptor that is no socket the daemon serves, or not the kind its address asks for,
    /// fails with [`Error::Listen`] naming it.
    pub(crate) fn open(
        wanted: &[Listen],
        passed: Vec<Passed>,
        trusted: Trusted,
    ) -> Result<Listeners, Error> {
        let mut pending: Vec<Option<Pending>> = Vec::with_capacity(passed.len());
        for (fd, name) in passed {
            let number = fd.as_raw_fd();
            let kind = kind::kind_of(fd.as_fd()).map_err(|what| Error::Listen {
                address: format!(
                    "{} passed by the service manager: it is {what}",
                    describe_passed(number, name.as_deref())
                ),
                source: kind::mismatch("the passed descriptor is not a socket to serve".into()),
            })?;
            pending.push(Some(Pending {
                socket: Socket::of_kind(kind, fd),
                name,
                number,
            }));
        }
        let mut chosen: Vec<Option<Named>> = Vec::new();
        chosen.resize_with(wanted.len(), || None);
        // By name: the one of that name bound to the address, else the first of that name (a
        // socket unit gives every socket it passes the same name).
        for (want, slot) in wanted.iter().zip(chosen.iter_mut()) {
            let Some(name) = &want.name else { continue };
            let named = |p: &Pending| p.name.as_deref() == Some(name.as_str());
            let at = pending
                .iter()
                .position(|p| {
                    p.as_ref()
                        .is_some_and(|p| named(p) && p.socket.is(&want.address, false))
                })
                .or_else(|| pending.iter().position(|p| p.as_ref().is_some_and(named)));
            if let Some(taken) = at.and_then(|at| pending[at].take()) {
                *slot = Some(taken.take_for(want)?);
            }
        }
        // By address.
        for (want, slot) in wanted.iter().zip(chosen.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let at = pending.iter().position(|p| {
                p.as_ref()
                    .is_some_and(|p| p.socket.is(&want.address, false))
            });
            if let Some(taken) = at.and_then(|at| pending[at].take()) {
                *slot = Some(taken.take_for(want)?);
            }
        }
        // In order, for the addresses without a name.
        for (want, slot) in wanted.iter().zip(chosen.iter_mut()) {
            if slot.is_some() || want.name.is_some() {
                continue;
            }
            if let Some(taken) = pending.iter_mut().find_map(Option::take) {
                *slot = Some(taken.take_for(want)?);
            }
        }
        let mut sockets = bind_missing(wanted, chosen, trusted)?;
        sockets.extend(pending.into_iter().flatten().map(|p| Named {
            socket: p.socket,
            name: p.name,
        }));
        Ok(Listeners(sockets))
    }

    /// Take the sockets that a predecessor handed over at a restart: each address takes the one
    /// socket that matches it (port 0 matches any port of its host), and what is still missing
    /// is bound. A socket that matches no address, or one taken already, or that is not a
    /// socket the daemon serves, is closed: whatever was sent, only what was configured is
    /// served.
    pub(crate) fn take_handed(
        wanted: &[Listen],
        handed: Vec<OwnedFd>,
        trusted: Trusted,
    ) -> Result<Listeners, Error> {
        let mut handed: Vec<Option<Socket>> = handed
            .into_iter()
            .filter_map(|fd| {
                let kind = kind::kind_of(fd.as_fd()).ok()?;
                Some(Some(Socket::of_kind(kind, fd)))
            })
            .collect();
        // Each address takes the socket bound to it exactly, then one with port 0 takes one of
        // its host's that is left, then what is still missing is bound.
        let mut chosen: Vec<Option<Named>> = Vec::new();
        chosen.resize_with(wanted.len(), || None);
        for any_port in [false, true] {
            for (want, slot) in wanted.iter().zip(chosen.iter_mut()) {
                if slot.is_none() {
                    *slot = handed
                        .iter()
                        .position(|s| s.as_ref().is_some_and(|s| s.is(&want.address, any_port)))
                        .and_then(|at| handed[at].take())
                        .map(|socket| Named {
                            socket,
                            name: want.name.clone(),
                        });
                }
            }
        }
        bind_missing(wanted, chosen, trusted).map(Listeners)
    }

    /// Other handles on every socket: a supervised child's own.
    pub(crate) fn duplicate(&self) -> io::Result<Listeners> {
        self.0
            .iter()
            .map(|named| {
                Ok(Named {
                    socket: named.socket.duplicate()?,
                    name: named.name.clone(),
                })
            })
            .collect::<io::Result<_>>()
            .map(Listeners)
    }

    /// The sockets' descriptors, to hand them to a successor.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.0.iter().map(|named| named.socket.fd()).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The index of the socket named `name`.
    pub(crate) fn index_of(&self, name: &str) -> io::Result<usize> {
        self.0
            .iter()
            .position(|named| named.name.as_deref() == Some(name))
            .ok_or_else(|| {
                let names: Vec<&str> = self.0.iter().filter_map(|n| n.name.as_deref()).collect();
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no socket is named {name:?}; the names are {names:?} (give the builder .listen(\"{name}=ADDRESS\"), or the socket unit FileDescriptorName={name})"
                    ),
                )
            })
    }

    /// The socket at `index`, duplicated for the body.
    pub(crate) fn get(&self, index: usize) -> io::Result<Socket> {
        match self.0.get(index) {
            Some(named) => named.socket.duplicate(),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "there is no socket #{index}: the daemon has {} (give the builder .listen(address))",
                    self.0.len()
                ),
            )),
        }
    }
}

/// The socket of each address: the one chosen for it, else one bound now.
fn bind_missing(
    wanted: &[Listen],
    chosen: Vec<Option<Named>>,
    trusted: Trusted,
) -> Result<Vec<Named>, Error> {
    wanted
        .iter()
        .zip(chosen)
        .map(|(want, slot)| match slot {
            Some(named) => Ok(named),
            None => Socket::bind(&want.address, trusted).map(|socket| Named {
                socket,
                name: want.name.clone(),
            }),
        })
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(address: impl Into<String>) -> Listen {
        Listen {
            name: None,
            address: Address::Tcp(address.into()),
        }
    }

    #[test]
    fn a_passed_socket_is_taken_for_its_address_and_the_rest_are_bound() {
        let passed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = passed.local_addr().expect("addr").port();
        let wanted = [tcp("127.0.0.1:0"), tcp(format!("127.0.0.1:{port}"))];
        let listeners = Listeners::open(
            &wanted,
            vec![(OwnedFd::from(passed), None)],
            Trusted::default(),
        )
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
            tcp(format!("127.0.0.1:{free_port}")),
            tcp(format!("127.0.0.1:{port}")),
        ];
        // The stranger comes first: in order, it would have been taken for the first address.
        let handed = vec![OwnedFd::from(stranger), OwnedFd::from(mine)];
        let listeners = Listeners::take_handed(&wanted, handed, Trusted::default()).expect("take");
        assert_eq!(listeners.len(), 2);
        let local = |i| match listeners.get(i).expect("a socket") {
            Socket::Tcp(l) => l.local_addr().expect("addr").port(),
            _ => panic!("a TCP socket"),
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
            &[tcp("127.0.0.1:0")],
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
        let err =
            Listeners::open(&[tcp(addr.clone())], Vec::new(), Trusted::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Listen { address, .. } if *address == addr),
            "{err:?}"
        );
    }
}
