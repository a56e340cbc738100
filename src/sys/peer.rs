//! Who is at the other end of a connected Unix socket, as the kernel saw it at `connect()` (or,
//! for a listening socket, at `listen()`).
//!
//! | Linux | macOS | FreeBSD | NetBSD |
//! | --- | --- | --- | --- |
//! | `SO_PEERCRED` | `getpeereid`, `LOCAL_PEERPID` | `LOCAL_PEERCRED` (the pid since FreeBSD 13) | `LOCAL_PEEREID` |

use std::io;
use std::os::unix::net::UnixStream;

use crate::Pid;

/// The peer of a Unix socket: its effective user, and its pid where the system tells.
pub(crate) struct Peer {
    pub(crate) uid: u32,
    pub(crate) pid: Option<Pid>,
}

/// A pid as the kernel gives it: none when it says 0 (or less).
fn pid(raw: libc::pid_t) -> Option<Pid> {
    (raw > 0).then(|| Pid::from_raw(raw))
}

/// The [`Peer`] of `socket`.
#[cfg(target_os = "linux")]
pub(crate) fn peer(socket: &UnixStream) -> io::Result<Peer> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(socket, PeerCredentials)?;
    Ok(Peer {
        uid: cred.uid(),
        pid: pid(cred.pid()),
    })
}

/// The [`Peer`] of `socket`.
#[cfg(target_os = "macos")]
pub(crate) fn peer(socket: &UnixStream) -> io::Result<Peer> {
    use nix::sys::socket::{getsockopt, sockopt::LocalPeerPid};
    use std::os::fd::AsRawFd;
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: getpeereid writes the two ids through pointers to locals that outlive the call.
    if unsafe { libc::getpeereid(socket.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        uid,
        pid: pid(getsockopt(socket, LocalPeerPid)?),
    })
}

/// The [`Peer`] of `socket`.
#[cfg(target_os = "freebsd")]
pub(crate) fn peer(socket: &UnixStream) -> io::Result<Peer> {
    // SAFETY: LOCAL_PEERCRED fills an xucred, a plain C struct.
    let cred: libc::xucred = unsafe { local_option(socket, libc::LOCAL_PEERCRED) }?;
    Ok(Peer {
        uid: cred.cr_uid,
        // SAFETY: the union holds the peer's pid since FreeBSD 13, and zero before it; any
        // value of a pid_t is valid.
        pid: pid(unsafe { cred.cr_pid__c_anonymous_union.cr_pid }),
    })
}

/// The [`Peer`] of `socket`.
#[cfg(target_os = "netbsd")]
pub(crate) fn peer(socket: &UnixStream) -> io::Result<Peer> {
    // SAFETY: LOCAL_PEEREID fills an unpcbid, a plain C struct.
    let id: libc::unpcbid = unsafe { local_option(socket, libc::LOCAL_PEEREID) }?;
    Ok(Peer {
        uid: id.unp_euid,
        pid: pid(id.unp_pid),
    })
}

/// The socket option `name` of level 0 (`SOL_LOCAL`) of `socket`.
///
/// # Safety
///
/// `T` is the plain C struct that the option fills, for which all zeroes is a valid value.
#[cfg(any(target_os = "freebsd", target_os = "netbsd"))]
unsafe fn local_option<T>(socket: &UnixStream, name: libc::c_int) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    // SAFETY: all zeroes is a valid `T` (the caller's contract).
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, and the new length to `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            0,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_of_a_pair_is_this_process() {
        let (one, _other) = UnixStream::pair().expect("pair");
        let me = peer(&one).expect("peer");
        assert_eq!(me.uid, nix::unistd::geteuid().as_raw());
        assert!(me.pid.is_none_or(|pid| pid == Pid::this()));
    }
}
