//! Handing the listening sockets to a successor, for a restart that refuses no connection.
//!
//! A daemon with listening sockets also listens on a Unix socket beside its pidfile
//! (`PIDFILE.handover`, mode 0600). A new instance started by `restart()` connects there, checks
//! that the process answering is the pidfile's holder, and receives the very sockets (with
//! `SCM_RIGHTS`): the kernel's queue of waiting connections is the same for both, so a client
//! is never refused, and none that was accepted is reset. The new instance then takes the
//! pidfile's path and reports ready; only then is the old one stopped, and it finishes what it
//! has accepted.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Pid, geteuid};

use crate::error::Error;
use crate::listen::Listeners;
use crate::sys;

/// Where the daemon of `pidfile` hands its sockets over.
pub(crate) fn path_for(pidfile: &Path) -> PathBuf {
    let mut path = pidfile.as_os_str().to_owned();
    path.push(".handover");
    PathBuf::from(path)
}

/// The listening end, in the daemon that has sockets to give.
#[derive(Debug)]
pub(crate) struct Offer {
    listener: UnixListener,
    path: PathBuf,
    ino: u64,
}

impl Offer {
    /// Listen at the handover path of `pidfile`; a socket file left by an instance that is gone
    /// (this one holds the pidfile) is replaced.
    pub(crate) fn open(pidfile: &Path) -> io::Result<Offer> {
        let path = path_for(pidfile);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let ino = std::fs::symlink_metadata(&path)?.ino();
        Ok(Offer {
            listener,
            path,
            ino,
        })
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Answer one successor, if one is waiting: send it the sockets. Returns whether they went.
    /// Only this daemon's own user, or root, gets them.
    pub(crate) fn answer(&self, listeners: &Listeners) -> io::Result<bool> {
        let (stream, _) = match self.listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let peer = sys::peer(&stream)?;
        if peer.uid != geteuid().as_raw() && peer.uid != 0 {
            return Ok(false);
        }
        sys::send_fds(&stream, &listeners.fds())?;
        Ok(true)
    }
}

impl Offer {
    /// Remove the socket file, if it still is this daemon's: a successor may have made its own
    /// since. At the daemon's end, which may never drop the offer (it leaves with `_exit`).
    pub(crate) fn withdraw(&self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// In a new instance: receive the sockets of `holder`, the daemon that holds `pidfile`.
pub(crate) fn receive(pidfile: &Path, holder: Pid) -> Result<Vec<OwnedFd>, Error> {
    let path = path_for(pidfile);
    let failed = |source: io::Error| Error::Io {
        action: "take the listening sockets over from",
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(&path).map_err(failed)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(failed)?;
    // The process that answers must be the pidfile's holder, not whoever made a socket there.
    let peer = sys::peer(&stream).map_err(failed)?;
    if peer.pid != Some(holder) {
        let answerer = peer.pid.map_or(
            "a process whose pid this system does not tell".to_string(),
            |pid| format!("pid {pid}"),
        );
        return Err(failed(io::Error::other(format!(
            "the socket is answered by {answerer}, not by pid {holder}, which holds the pidfile"
        ))));
    }
    let fds = sys::receive_fds(&stream).map_err(failed)?;
    if fds.is_empty() {
        return Err(failed(io::Error::other(
            "the old instance sent no socket (it refused this user)",
        )));
    }
    Ok(fds)
}
