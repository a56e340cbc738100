//! Unix stream sockets: their paths (longer than a socket address holds, on Linux), a connection
//! that never waits on a full queue, and what a descriptor received is.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage, UnixAddr, connect,
    getsockname, getsockopt, socket, sockopt,
};

/// Connect to the Unix stream socket at `path` without blocking: a listener whose queue of
/// connections is full answers `EAGAIN` at once. The stream returned blocks, close-on-exec.
///
/// # Platform-specific behavior
///
/// macOS has no `SOCK_CLOEXEC` or `SOCK_NONBLOCK`: the flags are set right after `socket`
/// (`fds::set_flags_late`), and a fork and exec in another thread in between would let
/// its child inherit the socket.
pub(crate) fn connect_without_blocking(path: &Path) -> io::Result<UnixStream> {
    let address = UnixAddr::new(path)?;
    #[cfg(not(target_os = "macos"))]
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    #[cfg(target_os = "macos")]
    let flags = SockFlag::empty();
    let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
    #[cfg(target_os = "macos")]
    super::fds::set_flags_late(&fd, true)?;
    connect(fd.as_raw_fd(), &address)?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether the socket file at `path` is one where nobody listens any more: a connection, tried
/// without blocking (a full queue is somebody's), is refused. A path too long for a socket
/// address is reached as [`socket_path`] reaches it.
pub(crate) fn nobody_listens(path: &Path) -> bool {
    socket_path(path).is_ok_and(|(address, _dir)| {
        connect_without_blocking(&address)
            .is_err_and(|e| e.raw_os_error() == Some(libc::ECONNREFUSED))
    })
}

/// Whether `fd` is a Unix stream socket that listens (`listen(2)` was called on it).
pub(crate) fn is_listening_unix_stream(fd: BorrowedFd<'_>) -> bool {
    let unix = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .is_ok_and(|local| local.family() == Some(AddressFamily::Unix));
    unix && is_listening_stream(fd)
}

/// Whether `fd` is a stream socket that listens, of any family.
fn is_listening_stream(fd: BorrowedFd<'_>) -> bool {
    getsockopt(&fd, sockopt::SockType).is_ok_and(|kind| kind == SockType::Stream)
        && getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false)
}

/// The longest path a Unix socket address holds here (`sun_path`, less its terminating NUL).
pub(crate) fn socket_path_max() -> usize {
    // SAFETY: a zeroed sockaddr_un is a valid value of the plain C struct; only its field's
    // size is read.
    let address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_path.len() - 1
}

/// A path that names the same place as `path` and fits in a Unix socket address, for `bind`
/// and `connect`, with the descriptor that it goes through (kept open while the path is used).
///
/// # Platform-specific behavior
///
/// On Linux a path too long for `sun_path` is reached through a descriptor of its directory,
/// as `/proc/self/fd/N/NAME`. Elsewhere such a path is an error of kind `InvalidInput`.
pub(crate) fn socket_path(path: &Path) -> io::Result<(PathBuf, Option<OwnedFd>)> {
    if path.as_os_str().as_bytes().len() <= socket_path_max() {
        return Ok((path.to_path_buf(), None));
    }
    let too_long = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is longer than the {} bytes a Unix socket address holds",
                path.display(),
                socket_path_max()
            ),
        )
    };
    #[cfg(target_os = "linux")]
    {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(too_long());
        };
        let dir = std::fs::File::open(dir)?;
        let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        if short.as_os_str().as_bytes().len() > socket_path_max() {
            return Err(too_long());
        }
        Ok((short, Some(OwnedFd::from(dir))))
    }
    #[cfg(not(target_os = "linux"))]
    Err(too_long())
}
