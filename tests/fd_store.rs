//! The service manager's descriptor store: under systemd with `FileDescriptorStoreMax=`
//! (`$FDSTORE`), a daemon gives the manager the sockets it bound (`FDSTORE=1`, `FDNAME=`, the
//! descriptors by `SCM_RIGHTS`) once it is ready, so they outlive it: clients that connect
//! while no instance runs wait in the queue, and the next instance, which gets them back in
//! `LISTEN_FDS`, serves them. The manager's side is a notify socket that the test binds.

mod common;

use std::io::{IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{DEADLINE, Fixture, Foreground};
use nix::sys::signal::Signal;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The manager's end of `NOTIFY_SOCKET`, which receives descriptors too.
struct Manager {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl Manager {
    fn new(fx: &Fixture) -> Manager {
        let path = fx.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Manager { socket, path }
    }

    /// Every datagram, with its descriptors (close-on-exec), up to the first that says `line`.
    fn until(&self, line: &str) -> Vec<(String, Vec<OwnedFd>)> {
        let end = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while Instant::now() < end {
            let mut buf = [0u8; 4096];
            let mut space = nix::cmsg_space!([RawFd; 8]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let received = recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let Ok(message) = received else { continue };
            let mut fds = Vec::new();
            for cmsg in message.cmsgs().expect("control messages") {
                if let ControlMessageOwned::ScmRights(raw) = cmsg {
                    // SAFETY: the kernel just gave this process these descriptors.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let n = message.bytes;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = text.lines().any(|l| l == line);
            seen.push((text, fds));
            if found {
                return seen;
            }
        }
        panic!("no {line} within {DEADLINE:?}; received {seen:?}");
    }
}

/// The fixture's `listen-echo` on `address` in the foreground, under `manager`.
fn serve(fx: &Fixture, manager: &Manager, env: &[(&str, &str)]) -> Foreground {
    let mut command = fx.command("run");
    command.env("NOTIFY_SOCKET", &manager.path);
    command.envs(env.iter().copied());
    fx.foreground(&mut command)
}

fn echo(stream: &mut TcpStream, text: &str) -> String {
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(text.as_bytes()).expect("write");
    let mut buf = vec![0u8; text.len()];
    stream.read_exact(&mut buf).expect("read the echo");
    String::from_utf8(buf).expect("text")
}

#[test]
fn the_bound_sockets_go_to_the_store_and_the_next_instance_serves_them() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", &address);
    let manager = Manager::new(&fx);
    let mut first = serve(&fx, &manager, &[("FDSTORE", "4")]);
    let heard = manager.until("READY=1");
    let stored: Vec<&(String, Vec<OwnedFd>)> = heard
        .iter()
        .filter(|(text, _)| text.lines().any(|l| l == "FDSTORE=1"))
        .collect();
    assert_eq!(stored.len(), 1, "{heard:?}");
    let (text, fds) = stored[0];
    assert!(text.lines().any(|l| l == "FDNAME=listen"), "{text}");
    assert_eq!(fds.len(), 1, "{text}");
    let kept = TcpListener::from(fds[0].try_clone().expect("dup"));
    assert_eq!(
        kept.local_addr().expect("its address"),
        address.parse::<SocketAddr>().expect("an address")
    );

    // The first instance ends; the socket lives on in the store: a client connects and waits.
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait().code(), Some(0));
    let mut waiting = TcpStream::connect(&address).expect("connect while no instance runs");

    // The next instance gets it back as systemd passes it: descriptor 3, LISTEN_FDS=1.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=listen exec \"$0\" run",
            fd = kept.as_raw_fd()
        ))
        .arg(common::fixture_binary())
        .env_clear()
        .envs(fx.command("run").get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("NOTIFY_SOCKET", &manager.path)
        .env("FDSTORE", "4");
    // The stored socket is handed to the shell alone: close-on-exec goes off for this spawn.
    nix::fcntl::fcntl(
        &kept,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("clear close-on-exec");
    let mut second = fx.foreground(&mut command);
    nix::fcntl::fcntl(
        &kept,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .expect("set close-on-exec");
    let heard = manager.until("READY=1");
    assert!(
        heard
            .iter()
            .all(|(text, fds)| !text.contains("FDSTORE") && fds.is_empty()),
        "a socket passed by the manager is its already: {heard:?}"
    );
    assert_eq!(echo(&mut waiting, "queued\n"), "queued\n");
    let mut fresh = TcpStream::connect(&address).expect("connect");
    assert_eq!(echo(&mut fresh, "fresh\n"), "fresh\n");
    drop((waiting, fresh));
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait().code(), Some(0));
}

#[test]
fn nothing_is_stored_unless_the_manager_keeps_a_store() {
    let address = format!("127.0.0.1:{}", free_port());
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", &address);
    let manager = Manager::new(&fx);
    let mut daemon = serve(&fx, &manager, &[("FDSTORE", "0")]);
    let heard = manager.until("READY=1");
    assert!(
        heard
            .iter()
            .all(|(text, fds)| !text.contains("FDSTORE") && fds.is_empty()),
        "{heard:?}"
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0));
}
