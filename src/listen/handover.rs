//! The handover: the one door through which listening sockets leave a daemon for its successor
//! at a restart, and come into the successor, both ends verified.
//!
//! The protocol, between the instance that runs (the predecessor) and the new instance that
//! `restart()` started (the successor):
//!
//! 1. The first instance binds the offer socket, `PIDFILE.handover`, once, before it drops its
//!    privileges (so the file is the starting user's, mode 0600 where the umask may be set), and
//!    hands it on to each successor: no successor binds it again, and nothing is changed
//!    through its path.
//! 2. The successor connects without blocking, within a step's timeout ([`step`]), and asks
//!    nothing of a socket that its own user, root, or the pidfile's owner did not make
//!    (`SO_PEERCRED` of a listening socket names whoever called `listen()`: its user is all that
//!    is trusted of it).
//! 3. The predecessor answers only a connector whose credentials (`SO_PEERCRED` of the accepted
//!    connection, which the kernel takes at `connect()`) are root's or those of the user that
//!    started it, not the account it dropped to; during a handover, and while its own
//!    predecessor has not exited, it answers `busy`. Otherwise it writes the successor's pid
//!    into the pidfile after its own (`handover: PID`), and sends its pidfile's locked
//!    descriptor, the offer socket and the listening sockets in one message (`SCM_RIGHTS`).
//! 4. The successor takes the pidfile's descriptor only if it is the file at the pidfile's path
//!    and its open file holds the exclusive lock, which only the lock's holder can send: on
//!    Linux the descriptor's own `lock:` line in `/proc/self/fdinfo` says so; elsewhere a shared
//!    lock on a fresh open of the path is refused while an exclusive one on the descriptor is
//!    granted. It takes only the sockets whose addresses match its own `listen` addresses
//!    ([`Listeners::take_handed`](crate::listen::Listeners::take_handed)).
//! 5. The connection stays open: the lifeline. Once the successor is set up it asks `take`;
//!    the predecessor, the one arbiter, answers `stopping` and stops itself as SIGTERM would
//!    stop it (its stop handlers run), or the successor gives up (`give-up`, or its end of the
//!    connection closes), and the predecessor takes its pidfile back and serves on. Only after
//!    `stopping` does the successor write its pid into the pidfile (the same inode all along: no
//!    temporary file, no rename), with `handover: PID` naming its predecessor until that one has
//!    exited, and report ready. The restart's caller only waits: killing it changes nothing.
//!
//! Every step has a timeout shorter than the ready timeout, and every failure is an
//! [`Error::Handover`] of a [`HandoverKind`], for which `restart()` falls back to a stop, then a
//! start (but for `Busy`).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Pid;
use nix::unistd::geteuid;

use crate::error::{Action, Error, HandoverKind};
use crate::listen::Listeners;
use crate::pidfile::{Pidfile, PidfileLock};
use crate::sync::Deadline;
use crate::sys;

/// The longest any one step of a handover may take; less when the ready timeout is short.
const STEP: Duration = Duration::from_secs(2);

/// The protocol's name and version, which opens the predecessor's answer.
const PROTOCOL: &str = "daemons-handover 1";

/// The successor's words on the lifeline, and the predecessor's replies.
const TAKE: &str = "take";
const GIVE_UP: &str = "give-up";
const STOPPING: &str = "stopping";
const SERVING: &str = "serving";

/// The longest line either side sends.
const LINE_MAX: usize = 256;

/// How long each step of a handover may take, for a daemon whose ready timeout is
/// `ready_timeout`: a quarter of it, at most [`STEP`], so that a new instance that gives up
/// still reports before its caller's ready timeout.
pub(crate) fn step(ready_timeout: Duration) -> Duration {
    (ready_timeout / 4).clamp(Duration::from_millis(10), STEP)
}

fn failure(pidfile: &Path, kind: HandoverKind, reason: impl Into<String>) -> Error {
    Error::Handover {
        pidfile: pidfile.to_path_buf(),
        kind,
        reason: reason.into(),
    }
}

/// The offer socket: where a daemon with listening sockets waits for a successor.
#[derive(Debug)]
pub(crate) struct Offer {
    listener: UnixListener,
    path: PathBuf,
    /// The pidfile, whose directory the socket file is in, reached through the path gate.
    pidfile: Pidfile,
    /// What the path named once the socket was bound, so that only it is removed at the end.
    meta: fs::Metadata,
    /// Who may ask for the sockets besides root: the user that started this instance.
    starter: u32,
    /// Whether this instance removes the socket file at its end: not while a successor may take
    /// the offer over, nor once one has.
    owned: AtomicBool,
    step: Duration,
}

impl Offer {
    /// Bind the offer socket of `pidfile`, in the first instance, before it drops privileges,
    /// through the path gate. A socket file of this user's where nobody listens (left by an
    /// instance that was killed: this one holds the pidfile) is replaced; anything else at the
    /// path is left alone, and restarts then stop, then start.
    pub(crate) fn bind(pidfile: &Pidfile, step: Duration) -> Result<Offer, Error> {
        const ACTION: Action = Action::OfferSockets;
        let path = pidfile.offer_path();
        let dir = pidfile.dir(ACTION)?;
        if let Ok(meta) = fs::symlink_metadata(&path)
            && meta.file_type().is_socket()
            && meta.uid() == geteuid().as_raw()
            && sys::nobody_listens(&path)
        {
            let _ = dir.remove(&path);
        }
        let (listener, meta) = dir.bind_private_socket(&path).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput => {
                failure(pidfile.path(), HandoverKind::PathTooLong, e.to_string())
            }
            _ => Error::io(ACTION, &path, e),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(ACTION, &path, e))?;
        Ok(Offer {
            listener,
            path,
            pidfile: pidfile.clone(),
            meta,
            starter: geteuid().as_raw(),
            owned: AtomicBool::new(true),
            step,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Answer one successor, if one is waiting: refuse it, tell it that another handover is
    /// under way (`busy`, with the pid of the instance it waits for), or share `pidfile` with it
    /// and send it everything. Runs under the caller's hold of the pidfile, so that the end of
    /// the daemon does not unlink it meanwhile.
    pub(crate) fn answer(
        &self,
        pidfile: &mut PidfileLock,
        listeners: &Listeners,
        busy: Option<Pid>,
    ) -> Answer {
        let stream = match self.listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Answer::Nobody,
            Err(e) => return Answer::Failed(e),
        };
        let prepared = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_write_timeout(Some(self.step)))
            .and_then(|()| sys::peer(&stream));
        let peer = match prepared {
            Ok(peer) => peer,
            Err(e) => return Answer::Failed(e),
        };
        if peer.uid != 0 && peer.uid != self.starter {
            let _ = (&stream).write_all(format!("{PROTOCOL} refused\n").as_bytes());
            return Answer::Refused {
                uid: peer.uid,
                pid: peer.pid,
            };
        }
        if let Some(other) = busy {
            let _ = (&stream).write_all(format!("{PROTOCOL} busy {other}\n").as_bytes());
            return Answer::Busy { pid: peer.pid };
        }
        if let Err(e) = pidfile.offer_to(peer.pid) {
            return Answer::Failed(io::Error::other(e.to_string()));
        }
        self.owned.store(false, Ordering::Release);
        let Some(locked) = pidfile.descriptor() else {
            self.take_back(pidfile);
            return Answer::Failed(io::Error::other("the pidfile is no longer held"));
        };
        let mut fds = vec![locked, self.listener.as_fd()];
        fds.extend(listeners.fds());
        let message = format!("{PROTOCOL} offer {}\n", Pid::this());
        if let Err(e) = sys::send_with_fds(&stream, message.as_bytes(), &fds) {
            self.take_back(pidfile);
            return Answer::Failed(e);
        }
        // SAFETY: the lifeline uses and closes its stream only in this process (`owner`); a
        // child forked without exec forgets it (`Lifeline::drop`).
        unsafe { sys::close_in_forked_children(stream.as_raw_fd()) };
        Answer::Sent(Lifeline {
            stream: ManuallyDrop::new(stream),
            owner: Pid::this(),
            successor: peer.pid,
            since: Instant::now(),
            heard: Vec::new(),
        })
    }

    /// The successor went without taking over: the pidfile and the offer are this instance's
    /// alone again.
    pub(crate) fn take_back(&self, pidfile: &mut PidfileLock) {
        let _ = pidfile.take_back();
        self.owned.store(true, Ordering::Release);
    }

    /// Remove the socket file at the daemon's end, if this instance owns it and it is still
    /// the one it bound: a successor may hold it, or another socket may be there by now.
    pub(crate) fn withdraw(&self) {
        if !self.owned.load(Ordering::Acquire) {
            return;
        }
        if let Ok(dir) = self.pidfile.dir(Action::RemoveOffer) {
            let _ = dir.remove_if_names(&self.path, &self.meta);
        }
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// How [`Offer::answer`] went.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Nobody was waiting after all.
    Nobody,
    /// A connector of another user was refused.
    Refused { uid: u32, pid: Option<Pid> },
    /// A connector came during a handover, or before the predecessor exited: told so.
    Busy { pid: Option<Pid> },
    /// Everything went to the successor: the connection stays open until it takes over or goes.
    Sent(Lifeline),
    /// Sending failed; the pidfile is this instance's alone again.
    Failed(io::Error),
}

/// The predecessor's end of the connection to a successor that got everything and has not
/// taken over yet.
#[derive(Debug)]
pub(crate) struct Lifeline {
    /// Closed in children forked without exec (see [`Lifeline::drop`]).
    stream: ManuallyDrop<UnixStream>,
    /// The process that answered: a child forked from it neither keeps nor closes the stream.
    owner: Pid,
    successor: Option<Pid>,
    since: Instant,
    heard: Vec<u8>,
}

/// What a successor said on its lifeline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    /// Nothing whole yet.
    Nothing,
    /// It asks to take over.
    Take,
    /// It gives up.
    GiveUp,
    /// Its end closed (it died), or it said something else.
    Gone,
}

impl Lifeline {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    pub(crate) fn successor(&self) -> Option<Pid> {
        self.successor
    }

    /// How long ago everything was sent.
    pub(crate) fn age(&self) -> Duration {
        self.since.elapsed()
    }

    /// Read what the successor said, once the connection is readable.
    pub(crate) fn hear(&mut self) -> Heard {
        let _ = self.stream.set_nonblocking(true);
        let mut buf = [0u8; LINE_MAX];
        loop {
            match (&*self.stream).read(&mut buf) {
                Ok(0) => return Heard::Gone,
                Ok(n) => self.heard.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Heard::Gone,
            }
            if self.heard.len() > LINE_MAX {
                return Heard::Gone;
            }
        }
        let Some(end) = self.heard.iter().position(|&b| b == b'\n') else {
            return Heard::Nothing;
        };
        match std::str::from_utf8(&self.heard[..end]) {
            Ok(TAKE) => Heard::Take,
            Ok(GIVE_UP) => Heard::GiveUp,
            _ => Heard::Gone,
        }
    }

    /// Answer the successor (`stopping` or `serving`), then close the connection.
    fn reply(self, word: &str) {
        let _ = self.stream.set_nonblocking(false);
        let _ = (&*self.stream).write_all(format!("{word}\n").as_bytes());
    }

    /// A lifeline on `stream`, as [`Offer::answer`] makes one, for tests that play the successor
    /// on the other end.
    #[cfg(test)]
    pub(crate) fn on(stream: UnixStream, successor: Option<Pid>) -> Lifeline {
        Lifeline {
            stream: ManuallyDrop::new(stream),
            owner: Pid::this(),
            successor,
            since: Instant::now(),
            heard: Vec::new(),
        }
    }

    /// The successor took over: tell it that this instance stops.
    pub(crate) fn confirm(self) {
        self.reply(STOPPING);
    }

    /// The successor gave up: tell it that this instance serves on.
    pub(crate) fn acknowledge(self) {
        self.reply(SERVING);
    }

    /// Close the connection without a word (the successor went, or took too long).
    pub(crate) fn close(self) {}
}

impl Drop for Lifeline {
    /// A child forked from now on has no copy to close: the number may name another file soon.
    /// In a child forked without exec, whose copy was closed at the fork, the number is not
    /// closed again: it may name another file of that child's by now.
    fn drop(&mut self) {
        if Pid::this() != self.owner {
            return;
        }
        sys::forget_in_forked_children(self.stream.as_raw_fd());
        // SAFETY: dropped once, here, and never used after.
        unsafe { ManuallyDrop::drop(&mut self.stream) };
    }
}

/// What a successor received from the instance that runs.
#[derive(Debug)]
pub(crate) struct Received {
    /// The pidfile's lock, shared with the predecessor until the successor takes over.
    pub(crate) lock: PidfileLock,
    /// The listening sockets, to be matched against the successor's addresses.
    pub(crate) sockets: Vec<OwnedFd>,
    /// The lifeline, the offer socket and the predecessor, for [`Takeover::take_over`].
    pub(crate) takeover: Takeover,
}

/// A successor's part of the handover once everything has arrived: it takes over once set up,
/// or gives up (when dropped).
#[derive(Debug)]
pub(crate) struct Takeover {
    pidfile: PathBuf,
    lifeline: Option<UnixStream>,
    /// The process that received it: a child forked from it neither keeps nor closes the
    /// lifeline.
    owner: Pid,
    offer: Option<Offer>,
    predecessor: Option<Predecessor>,
    step: Duration,
}

/// The instance that handed its sockets over, pinned so that its exit is seen whatever becomes
/// of its pid. Only watched, never signalled from here.
#[derive(Debug)]
pub(crate) struct Predecessor {
    pid: Pid,
    watch: sys::ExitWatch,
}

impl Predecessor {
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether it has exited, waiting at most `timeout`.
    pub(crate) fn exited(&self, timeout: Duration) -> bool {
        self.watch.exited(timeout).unwrap_or(false)
    }
}

/// In a new instance started by `restart()`: connect to the offer of the daemon of `pidfile`,
/// receive its pidfile's lock, its offer socket and its listening sockets, and verify that they
/// come from the lock's holder.
pub(crate) fn receive(pidfile: &Pidfile, step: Duration) -> Result<Received, Error> {
    let path = pidfile.offer_path();
    let fail = |kind, reason: String| failure(pidfile.path(), kind, reason);
    let stream = connect(&path, pidfile.path())?;
    let io_failed =
        |e: io::Error| fail(HandoverKind::Withdrawn, format!("{}: {e}", path.display()));
    stream
        .set_read_timeout(Some(step))
        .and_then(|()| stream.set_write_timeout(Some(step)))
        .map_err(io_failed)?;
    // Who made the socket: a listening socket's credentials are those of whoever called
    // `listen()`, and only its user is worth anything.
    let maker = sys::peer(&stream).map_err(io_failed)?;
    if !trusted_maker(pidfile, maker.uid) {
        return Err(fail(
            HandoverKind::Foreign,
            format!(
                "the socket at {} was made by uid {}, neither root, nor this user, nor the pidfile's owner",
                path.display(),
                maker.uid
            ),
        ));
    }
    let (line, mut fds) = read_line(&stream, step).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => fail(
            HandoverKind::Unresponsive,
            format!(
                "the running instance did not answer at {} within {step:?} (stopped, or stuck)",
                path.display()
            ),
        ),
        _ => fail(
            HandoverKind::Withdrawn,
            format!("the running instance went away: {e}"),
        ),
    })?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let predecessor = match words.as_slice() {
        ["daemons-handover", "1", "offer", pid] => pid.parse().ok().filter(|&p: &i32| p > 0),
        ["daemons-handover", "1", "busy", pid] => {
            return Err(fail(
                HandoverKind::Busy,
                format!("another restart is under way (the running instance waits for pid {pid})"),
            ));
        }
        ["daemons-handover", "1", "refused"] => {
            return Err(fail(
                HandoverKind::Refused,
                format!(
                    "the running instance hands its sockets only to root and to the user that started it, not to uid {}",
                    geteuid()
                ),
            ));
        }
        _ => {
            return Err(fail(
                HandoverKind::Unproven,
                format!("an answer that is not the handover's: {line:?}"),
            ));
        }
    };
    let Some(predecessor) = predecessor.map(Pid::from_raw) else {
        return Err(fail(
            HandoverKind::Unproven,
            format!("an offer that names no pid: {line:?}"),
        ));
    };
    if fds.len() < 2 {
        return Err(fail(
            HandoverKind::Unproven,
            format!(
                "an offer with {} descriptors, not the pidfile's and the offer's",
                fds.len()
            ),
        ));
    }
    let sockets = fds.split_off(2);
    let mut fds = fds.into_iter();
    let (Some(locked), Some(offer)) = (fds.next(), fds.next()) else {
        return Err(fail(
            HandoverKind::Unproven,
            "an offer without its descriptors".into(),
        ));
    };
    let (file, meta) = verify_lock(pidfile, File::from(locked))?;
    if !sys::is_listening_unix_stream(offer.as_fd()) {
        return Err(fail(
            HandoverKind::Unproven,
            "the offer socket that came is not a listening Unix stream socket".into(),
        ));
    }
    let offer_meta = fs::symlink_metadata(&path).map_err(io_failed)?;
    let offer = Offer {
        listener: UnixListener::from(offer),
        path: path.clone(),
        pidfile: pidfile.clone(),
        meta: offer_meta,
        starter: geteuid().as_raw(),
        owned: AtomicBool::new(false),
        step,
    };
    let predecessor = pin(predecessor, &file, &meta);
    let lock = PidfileLock::received(file, pidfile.path().to_path_buf(), meta);
    // SAFETY: the takeover uses and closes the lifeline only in this process (`owner`); a child
    // forked without exec forgets it (`Takeover::drop`).
    unsafe { sys::close_in_forked_children(stream.as_raw_fd()) };
    Ok(Received {
        lock,
        sockets,
        takeover: Takeover {
            pidfile: pidfile.path().to_path_buf(),
            lifeline: Some(stream),
            owner: Pid::this(),
            offer: Some(offer),
            predecessor,
            step,
        },
    })
}

/// Connect to the offer at `path` without blocking: a full queue of connections is an
/// instance that does not answer.
fn connect(path: &Path, pidfile: &Path) -> Result<UnixStream, Error> {
    let fail = |kind, reason: String| failure(pidfile, kind, reason);
    let (address, _dir) =
        sys::socket_path(path).map_err(|e| fail(HandoverKind::PathTooLong, e.to_string()))?;
    let connected = sys::connect_without_blocking(&address);
    connected.map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM)
            if fs::symlink_metadata(path)
                .is_ok_and(|meta| !trusted_maker(&Pidfile::new(pidfile), meta.uid())) =>
        {
            fail(
                HandoverKind::Foreign,
                format!(
                    "the socket at {} is another user's, and refuses this one",
                    path.display()
                ),
            )
        }
        Some(libc::EAGAIN) => fail(
            HandoverKind::Unresponsive,
            format!(
                "the running instance does not take connections at {} (its queue is full)",
                path.display()
            ),
        ),
        Some(libc::EACCES | libc::EPERM) => {
            fail(HandoverKind::Refused, format!("{}: {e}", path.display()))
        }
        _ => fail(
            HandoverKind::Absent,
            format!(
                "nothing offers the sockets at {}: {}",
                path.display(),
                what_is_at(path)
            ),
        ),
    })
}

/// Whether a socket made by `uid` may be the daemon's offer: root's, this user's, or that of
/// the pidfile's owner (the user that started the first instance).
fn trusted_maker(pidfile: &Pidfile, uid: u32) -> bool {
    uid == 0
        || uid == geteuid().as_raw()
        || pidfile
            .open()
            .ok()
            .flatten()
            .and_then(|file| file.metadata().ok())
            .is_some_and(|meta| meta.uid() == uid)
}

/// What is at `path`, for messages: why nothing answers there.
fn what_is_at(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => "there is no socket".into(),
        Err(e) => e.to_string(),
        Ok(meta) => {
            let kind = meta.file_type();
            if kind.is_socket() {
                "a socket where nobody listens".into()
            } else if kind.is_dir() {
                "a directory is there".into()
            } else if kind.is_fifo() {
                "a FIFO is there".into()
            } else if kind.is_symlink() {
                "a symbolic link is there".into()
            } else {
                "a file that is not a socket is there".into()
            }
        }
    }
}

/// Read one line of at most [`LINE_MAX`] bytes within `step`, and the descriptors that came
/// with it (the predecessor's answer brings them; its later words, none).
fn read_line(stream: &UnixStream, step: Duration) -> io::Result<(String, Vec<OwnedFd>)> {
    stream.set_read_timeout(Some(step))?;
    let deadline = Deadline::after(step);
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut buf = [0u8; LINE_MAX];
    loop {
        let (n, arrived) = match sys::receive_with_fds(stream, &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        fds.extend(arrived);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it closed the connection without an answer",
            ));
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            return Ok((String::from_utf8_lossy(&line).into_owned(), fds));
        }
        if line.len() > LINE_MAX || deadline.passed() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no whole answer in time",
            ));
        }
    }
}

/// The pidfile's descriptor that came is the file at the pidfile's path, open for writing, and
/// its open file holds the exclusive lock: only the lock's holder can send that.
fn verify_lock(pidfile: &Pidfile, file: File) -> Result<(File, fs::Metadata), Error> {
    let unproven = |reason: &str| failure(pidfile.path(), HandoverKind::Unproven, reason);
    let meta = pidfile
        .check(&file)
        .map_err(|e| unproven(&format!("the pidfile that came: {e}")))?;
    if !pidfile.names(&meta) {
        return Err(unproven(
            "the file that came is not the one at the pidfile's path",
        ));
    }
    let writable = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
        .is_ok_and(|flags| flags & libc::O_ACCMODE == libc::O_RDWR);
    if !writable {
        return Err(unproven(
            "the pidfile that came is not open for writing, as its holder's is",
        ));
    }
    if !holds_lock(pidfile, &file)? {
        return Err(unproven(
            "the pidfile that came does not hold its lock: it was not sent by the daemon",
        ));
    }
    Ok((file, meta))
}

/// Whether `file` shares the open file that holds the pidfile's exclusive lock.
fn holds_lock(pidfile: &Pidfile, file: &File) -> Result<bool, Error> {
    if let Some(held) = sys::holds_exclusive_flock(file) {
        return Ok(held);
    }
    // Where the kernel does not say: somebody holds the lock exclusively (a shared lock on a
    // fresh open is refused), and it is this open file (an exclusive lock on it is granted: it
    // holds it already; held through another, it would be refused). Never unlocked after: the
    // lock is the daemon's.
    let Some(fresh) = pidfile.open()? else {
        return Ok(false);
    };
    if !pidfile.is_locked_exclusively(&fresh)? {
        return Ok(false);
    }
    Ok(file.try_lock().is_ok())
}

/// Pin the predecessor that the answer names, then check that it holds the lock (shares the
/// open file): `None` when it cannot be seen, and its exit is then not waited for.
fn pin(pid: Pid, file: &File, meta: &fs::Metadata) -> Option<Predecessor> {
    let watch = sys::ExitWatch::new(pid).ok()??;
    let holds = if sys::LOCK_LINES {
        sys::holds_flock(pid, meta) == Some(true)
    } else {
        sys::has_open(pid, file, meta) == Some(true)
    };
    holds.then_some(Predecessor { pid, watch })
}

impl Takeover {
    /// The pid of the instance that handed its sockets over, if it is known.
    pub(crate) fn predecessor_pid(&self) -> Option<Pid> {
        self.predecessor.as_ref().map(Predecessor::pid)
    }

    /// Take over, once set up: ask the predecessor, which answers `stopping` and stops, or has
    /// exited already; then write this process's pid into the pidfile (with its predecessor's
    /// after it while that one runs). Returns the offer socket, this instance's from now on, and
    /// the predecessor to watch.
    pub(crate) fn take_over(
        mut self,
        lock: &mut PidfileLock,
    ) -> Result<(Offer, Option<Predecessor>), Error> {
        let fail = |kind, reason: String| failure(&self.pidfile, kind, reason);
        let lifeline = self.lifeline.take();
        let offer = self.offer.take();
        let predecessor = self.predecessor.take();
        if let Some(lifeline) = lifeline {
            sys::forget_in_forked_children(lifeline.as_raw_fd());
            let answer = (&lifeline)
                .write_all(format!("{TAKE}\n").as_bytes())
                .and_then(|()| read_line(&lifeline, self.step))
                .map(|(word, _)| word);
            match answer {
                Ok(word) if word == STOPPING => {}
                Ok(word) => {
                    return Err(fail(
                        HandoverKind::Unproven,
                        format!("the running instance answered {word:?} to take"),
                    ));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(fail(
                        HandoverKind::Unresponsive,
                        format!(
                            "the running instance did not let go within {:?} (stopped, or stuck)",
                            self.step
                        ),
                    ));
                }
                // Its end closed: it died, or gave the handover up. Only if it has exited is
                // the pidfile this instance's now.
                Err(_) => {
                    if !predecessor.as_ref().is_some_and(|p| p.exited(self.step)) {
                        return Err(fail(
                            HandoverKind::Withdrawn,
                            "the running instance gave the handover up".into(),
                        ));
                    }
                }
            }
        }
        let predecessor = predecessor.filter(|p| !p.exited(Duration::ZERO));
        lock.take_over(predecessor.as_ref().map(Predecessor::pid))?;
        let Some(offer) = offer else {
            return Err(fail(HandoverKind::Unproven, "no offer socket came".into()));
        };
        offer.owned.store(true, Ordering::Release);
        Ok((offer, predecessor))
    }
}

impl Drop for Takeover {
    /// Give up, if it did not take over: the predecessor takes its pidfile back, and answers
    /// once it has (within a step), so that the caller that hears of this instance's failure
    /// finds the predecessor as it was.
    fn drop(&mut self) {
        let Some(lifeline) = self.lifeline.take() else {
            return;
        };
        if Pid::this() != self.owner {
            // Closed at the fork: the number may name another file of this child's by now.
            std::mem::forget(lifeline);
            return;
        }
        sys::forget_in_forked_children(lifeline.as_raw_fd());
        if (&lifeline)
            .write_all(format!("{GIVE_UP}\n").as_bytes())
            .is_ok()
        {
            let _ = read_line(&lifeline, self.step);
        }
    }
}
