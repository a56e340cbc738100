//! What a descriptor that came from elsewhere (a service manager, a predecessor) is: a socket of
//! which family and type, listening or connected, and whether the daemon can serve it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};

/// The kinds of socket a daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A listening TCP socket (IPv4 or IPv6).
    Tcp,
    /// A UDP socket (IPv4 or IPv6).
    Udp,
    /// A listening Unix stream socket.
    Unix,
}

/// What `fd` is: a kind the daemon serves, or, as `Err`, what it is instead, in words for a
/// message (`a connected TCP socket (...)`).
pub(crate) fn kind_of(fd: BorrowedFd<'_>) -> Result<Kind, String> {
    let family = match getsockname::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(local) => local.family(),
        Err(nix::errno::Errno::ENOTSOCK) => return Err("not a socket".into()),
        Err(e) => {
            return Err(format!(
                "a descriptor whose address cannot be read ({})",
                io::Error::from(e)
            ));
        }
    };
    let kind = getsockopt(&fd, sockopt::SockType).map_err(|e| {
        format!(
            "a socket whose type cannot be read ({})",
            io::Error::from(e)
        )
    })?;
    let listening = getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false);
    let inet = matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6));
    let unix = family == Some(AddressFamily::Unix);
    match (kind, listening) {
        (SockType::Stream, true) if inet => Ok(Kind::Tcp),
        (SockType::Stream, true) if unix => Ok(Kind::Unix),
        (SockType::Datagram, _) if inet => Ok(Kind::Udp),
        (SockType::Stream, false) if inet || unix => Err(format!(
            "a {} stream socket that does not listen: a connection (a socket unit with Accept=yes passes one connection to each instance; give it Accept=no)",
            if inet { "TCP" } else { "Unix" }
        )),
        (SockType::Datagram, _) if unix => Err(
            "a Unix datagram socket, which the daemon does not serve (listen on a Unix stream socket, a TCP or a UDP address)"
                .into(),
        ),
        (kind, _) => Err(format!(
            "a socket of family {} and type {kind:?}, which the daemon does not serve",
            family.map_or_else(|| "unknown".to_string(), |f| format!("{f:?}"))
        )),
    }
}

impl Kind {
    /// The kind in words.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Tcp => "a listening TCP socket",
            Kind::Udp => "a UDP socket",
            Kind::Unix => "a listening Unix stream socket",
        }
    }
}

/// The error of a passed descriptor that is not what was asked for.
pub(crate) fn mismatch(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}
