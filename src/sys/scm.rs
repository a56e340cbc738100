//! Descriptors sent over a Unix socket with data (`SCM_RIGHTS`): the handover's message.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The most descriptors that one message brings in.
const MOST: usize = 64;

/// Send `data` and `fds` over a connected Unix socket in one message (`SCM_RIGHTS`).
pub(crate) fn send_with_fds(
    socket: &UnixStream,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let control: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[io::IoSlice::new(data)],
        control,
        MsgFlags::empty(),
        None,
    )?;
    if sent < data.len() {
        // The descriptors went with the first part; the rest is plain data.
        io::Write::write_all(&mut &*socket, &data[sent..])?;
    }
    Ok(())
}

/// Send `data` and `fds` in one datagram (`SCM_RIGHTS`) on a connected Unix datagram socket.
pub(crate) fn send_datagram_with_fds(
    socket: &std::os::unix::net::UnixDatagram,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let control: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[io::IoSlice::new(data)],
        control,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receive what [`send_with_fds`] sent: at most `buf.len()` bytes of data (how many, returned)
/// and the descriptors that came with them (at most 64), close-on-exec. Zero bytes and no
/// descriptor is the end of the stream.
///
/// # Platform-specific behavior
///
/// macOS has no `MSG_CMSG_CLOEXEC`: the descriptors are made close-on-exec right after they
/// arrive, and a fork and exec in another thread in between would let them leak into it.
pub(crate) fn receive_with_fds(
    socket: &UnixStream,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; MOST]);
    let mut iov = [io::IoSliceMut::new(buf)];
    #[cfg(not(target_os = "macos"))]
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    #[cfg(target_os = "macos")]
    let flags = MsgFlags::empty();
    let message = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
    let received = message.bytes;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(arrived) = cmsg {
            #[cfg(target_os = "macos")]
            for &fd in &arrived {
                super::fds::set_cloexec(fd);
            }
            // SAFETY: the kernel just installed these descriptors in this process for it to
            // own (SCM_RIGHTS); nothing else holds them.
            fds.extend(
                arrived
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((received, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_travel_with_their_message() {
        let (one, other) = UnixStream::pair().expect("pair");
        let (read, _write) = super::super::pipe(false).expect("pipe");
        send_with_fds(&one, b"hello", &[read.as_fd()]).expect("send");
        let mut buf = [0u8; 16];
        let (n, fds) = receive_with_fds(&other, &mut buf).expect("receive");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        assert!(super::super::fds::is_cloexec(fds[0].as_raw_fd()));
    }
}
