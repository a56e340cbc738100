//! The path gate: every file that the crate creates, opens for writing, gives to another user or
//! changes the mode of goes through here, the one place that knows how a process that may be
//! root does it safely. The pidfile (its temporary name, its rename, its removal), the log files
//! (opened at start, reopened on SIGHUP by the daemon and by its supervisor), the logs given
//! to the daemon's user, and the socket files (the offer of a restart's handover, the Unix
//! sockets of `listen`) all come here.
//!
//! - A file is opened without following a symbolic link (`O_NOFOLLOW`), without blocking (a
//!   FIFO at the path hangs nobody) and close-on-exec, then checked with `fstat`: what is checked
//!   is what was opened.
//! - It is changed through its descriptor (`fchown`), never through its path, which someone
//!   may point elsewhere between the check and the change.
//! - As root, the file's directory is reached one directory at a time from `/`, each opened and
//!   checked: it must belong to root (or to the daemon's own user, for its pidfile and its logs),
//!   and no other user may write it unless it is sticky, as `/tmp` is. A symbolic link on the way
//!   is followed only where nobody else could have put it, and once a link of the daemon's user
//!   leads somewhere, only that user's directories may follow. The file is then opened, created,
//!   renamed and removed relative to the descriptor of that directory, not by its path again.
//!   A directory that fails is [`Error::UnsafeDirectory`], which names it, as OpenSSH's
//!   `StrictModes` and `start-stop-daemon` refuse such paths.
//! - As root, a file with other hard links is not written (another of its names may be
//!   `/etc/shadow`), and a file of another user is neither written nor given away
//!   ([`Error::UnsafeFile`]).
//! - Temporary names cannot be foreseen (64 bits from the kernel), so no other user can take
//!   them first; a name that exists all the same is tried again with another.
//!
//! A process that is not root does none of the directory checks: it reaches only what its user
//! may, and its start makes no more system calls than a bare `open`.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, FcntlArg, OFlag, fcntl, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, geteuid, unlinkat};

use crate::error::{Action, Error};
use crate::sys;

/// Who, besides root, may own the directories on the way to a file and the file itself, and
/// write those directories: a daemon's own user and group, for its pidfile and its logs (the
/// logrotate recipe of the guide puts the logs in a directory of the daemon's user).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Trusted {
    /// The daemon's user.
    pub(crate) user: Option<u32>,
    /// The daemon's group.
    pub(crate) group: Option<u32>,
}

impl Trusted {
    fn owner(&self, uid: u32) -> bool {
        uid == 0 || self.user == Some(uid)
    }

    fn group(&self, gid: u32) -> bool {
        gid == 0 || self.group == Some(gid)
    }

    /// Who the owners other than root are, for messages.
    fn owners(&self) -> String {
        match self.user {
            Some(user) if user != 0 => format!("neither root nor the daemon's user (uid {user})"),
            _ => "not root".to_string(),
        }
    }
}

/// How many symbolic links a path may lead through, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// Flags of every open of this gate: no symbolic link followed, no wait on a FIFO, no terminal
/// taken as the controlling one, nothing inherited by programs the process executes.
fn flags(access: OFlag) -> OFlag {
    access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

/// How the walk opens a directory: only to name what is in it. `O_PATH` on Linux, which needs no
/// right to read the directory; elsewhere, root may read any.
fn directory_flags() -> OFlag {
    #[cfg(target_os = "linux")]
    let access = OFlag::O_PATH;
    #[cfg(not(target_os = "linux"))]
    let access = OFlag::O_RDONLY;
    access | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The mode of new files, less the umask.
fn new_file_mode() -> Mode {
    Mode::from_bits_truncate(0o644)
}

/// The directory of a file. As root it was opened and checked from `/` (see the module's
/// documentation), and the file is reached through its descriptor only; otherwise it is the path
/// as the system resolves it, with no system call of its own.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: Option<OwnedFd>,
}

/// The descriptors that [`Dir::above_low_descriptors`] keeps free below it.
const LOW_DESCRIPTORS: std::os::fd::RawFd = 10;

impl Dir {
    /// The directory of `file`, checked as root before `action` (see the module's
    /// documentation); as another user, nothing is done.
    ///
    /// # Errors
    ///
    /// As root: [`Error::UnsafeDirectory`] naming the directory or the symbolic link that is not
    /// trusted; [`Error::MissingDirectory`] when a directory on the way does not exist.
    pub(crate) fn of(file: &Path, action: Action, trusted: Trusted) -> Result<Dir, Error> {
        if !geteuid().is_root() {
            return Ok(Dir { fd: None });
        }
        walk(file, action, trusted).map(|fd| Dir { fd: Some(fd) })
    }

    /// The same directory under a descriptor above the low numbers, so that a file opened next
    /// takes the lowest free one: a daemon's pidfile is then its descriptor 3, where `stop` and
    /// `status` look first for the holder's lock (see `sys::holds_flock`). Left as it is where
    /// the descriptor cannot be copied.
    pub(crate) fn above_low_descriptors(self) -> Dir {
        let Some(fd) = &self.fd else {
            return self;
        };
        match fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(LOW_DESCRIPTORS)) {
            Ok(copy) => {
                // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns; the
                // old one is closed when `self` drops.
                let copy = unsafe { OwnedFd::from_raw_fd(copy) };
                Dir { fd: Some(copy) }
            }
            Err(_) => self,
        }
    }

    /// The directory's descriptor, where there is one (as root).
    pub(crate) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.fd.as_ref().map(std::os::fd::AsRawFd::as_raw_fd)
    }

    fn at(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().map_or(AT_FDCWD, |fd| fd.as_fd())
    }

    /// `file` as named from [`at`](Dir::at): its last component in a directory opened by the
    /// walk, the whole path otherwise.
    fn name<'a>(&self, file: &'a Path) -> &'a Path {
        match (&self.fd, file.file_name()) {
            (Some(_), Some(name)) => Path::new(name),
            _ => file,
        }
    }

    fn open(&self, file: &Path, access: OFlag) -> io::Result<File> {
        match openat(self.at(), self.name(file), flags(access), new_file_mode()) {
            Ok(fd) => Ok(File::from(fd)),
            // A symbolic link of another user in a sticky directory is refused with EACCES when
            // the open may create: it is a link all the same, and said so.
            Err(Errno::EACCES | Errno::EPERM) if self.is_symlink(file) => Err(Errno::ELOOP.into()),
            Err(e) => Err(e.into()),
        }
    }

    fn is_symlink(&self, file: &Path) -> bool {
        fstatat(self.at(), self.name(file), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|entry| {
            SFlag::from_bits_truncate(entry.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
        })
    }

    /// The file that is at `file`, open for reading and writing; `None` when there is none.
    pub(crate) fn open_existing(&self, file: &Path) -> io::Result<Option<File>> {
        match self.open(file, OFlag::O_RDWR) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A new file at `file`, mode 0644 less the umask, open for reading and writing;
    /// `ErrorKind::AlreadyExists` when something has that name.
    pub(crate) fn create_new(&self, file: &Path) -> io::Result<File> {
        self.open(file, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL)
    }

    /// A new file beside `file`, as [`create_new`](Dir::create_new), under a name that nobody
    /// can foresee (`.NAME.RANDOM.new`), and that name.
    pub(crate) fn create_temporary(&self, file: &Path) -> io::Result<(File, PathBuf)> {
        let name = file.file_name().unwrap_or_default();
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        // 64 random bits: a name that is taken was not foreseen, and another one will do.
        for _ in 0..8 {
            // `.NAME.RANDOM.new`, built without `core::fmt` (see `Pid::line`).
            let mut temporary = OsString::with_capacity(name.len() + 22);
            temporary.push(".");
            temporary.push(name);
            temporary.push(".");
            temporary.push(hex(sys::random()));
            temporary.push(".new");
            let temporary = file.with_file_name(temporary);
            match self.create_new(&temporary) {
                Ok(created) => return Ok((created, temporary)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Give the file at `from` the name `to` unless something has it: `Ok(false)` then. Both
    /// are in this directory. `ErrorKind::Unsupported` where the file system cannot do it
    /// without replacing.
    pub(crate) fn rename_unless_exists(&self, from: &Path, to: &Path) -> io::Result<bool> {
        sys::rename_unless_exists(self.at(), self.name(from), self.name(to))
    }

    /// Remove the name `file`, which must not be a directory.
    pub(crate) fn remove(&self, file: &Path) -> io::Result<()> {
        Ok(unlinkat(
            self.at(),
            self.name(file),
            UnlinkatFlags::NoRemoveDir,
        )?)
    }

    /// Remove the name `file` if it still names the file of `meta`; a name that is gone is not
    /// an error.
    pub(crate) fn remove_if_names(&self, file: &Path, meta: &Metadata) -> io::Result<()> {
        if !self.names(file, meta) {
            return Ok(());
        }
        match self.remove(file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// As root, refuse to write the file of `meta`, open at `file`, if another user owns it or
    /// it has other names ([`Error::UnsafeFile`]).
    pub(crate) fn check_written(
        &self,
        meta: &Metadata,
        file: &Path,
        action: Action,
        trusted: Trusted,
    ) -> Result<(), Error> {
        check_written(self, meta, file, action, trusted)
    }

    /// A Unix stream socket listening at `file` in this directory, its file mode 0600, and what
    /// `file` names once it is bound: the offer of a daemon's listening sockets to its
    /// successor. Bound through the directory's descriptor where there is one (as root, on
    /// Linux: `/proc/self/fd/N/NAME`), in the very directory that was checked, which also
    /// reaches a path too long for a socket address; elsewhere by its path, which must fit.
    /// The mode comes from a umask set for the moment, where that is safe (the umask is the
    /// process's: a single thread); otherwise the umask applies, and the mode is not changed
    /// afterwards through the path.
    pub(crate) fn bind_private_socket(&self, file: &Path) -> io::Result<(UnixListener, Metadata)> {
        let (address, _dir) = self.socket_address(file)?;
        let listener = {
            use nix::sys::stat::umask;
            let single = sys::thread_count() == Some(1);
            let before = single.then(|| umask(Mode::from_bits_truncate(0o177)));
            let bound = UnixListener::bind(&address);
            if let Some(before) = before {
                umask(before);
            }
            bound?
        };
        let meta = std::fs::symlink_metadata(&address)?;
        Ok((listener, meta))
    }

    /// A Unix stream socket listening at `file`, bound by that path (its address, which the body
    /// and a successor compare, is the path as given), once the directory was checked: as root,
    /// no other user can change the directories on the way. Its mode is what the umask gives.
    pub(crate) fn bind_socket(&self, file: &Path) -> io::Result<UnixListener> {
        UnixListener::bind(file)
    }

    /// Where to bind or connect to the socket `file`: through the directory's descriptor, where
    /// there is one, on Linux; else its path, or, on Linux, through a descriptor of its
    /// directory opened now when the path is too long for a socket address.
    fn socket_address(&self, file: &Path) -> io::Result<(PathBuf, Option<OwnedFd>)> {
        #[cfg(target_os = "linux")]
        if let (Some(fd), Some(name)) = (&self.fd, file.file_name()) {
            use std::os::fd::AsRawFd;
            use std::os::unix::ffi::OsStrExt;
            let address = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
            if address.as_os_str().as_bytes().len() > sys::socket_path_max() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is longer than the {} bytes a Unix socket address holds, even through its directory",
                        file.display(),
                        sys::socket_path_max()
                    ),
                ));
            }
            return Ok((address, None));
        }
        sys::socket_path(file)
    }

    /// Whether `file` names the file of `meta` (a symbolic link is never followed).
    pub(crate) fn names(&self, file: &Path, meta: &Metadata) -> bool {
        fstatat(self.at(), self.name(file), AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|now| same_file(&now, meta))
    }
}

/// Whether `stat` and `meta` are one file.
// The types of the two fields differ between systems (`dev_t` is `i32` on macOS).
#[allow(clippy::unnecessary_cast)]
fn same_file(stat: &FileStat, meta: &Metadata) -> bool {
    stat.st_dev as u64 == meta.dev() && stat.st_ino as u64 == meta.ino()
}

/// As root, the directories from `/` to the one of `file`, each opened and checked; the last,
/// open. See the module's documentation.
fn walk(file: &Path, action: Action, trusted: Trusted) -> Result<OwnedFd, Error> {
    let absolute = std::path::absolute(file).map_err(|e| Error::io(action, file, e))?;
    let Some(parent) = absolute.parent().filter(|_| absolute.file_name().is_some()) else {
        return Err(Error::not_a_file(action, file, "a directory"));
    };
    let refuse = |directory: &Path, reason: String| Error::UnsafeDirectory {
        path: file.to_path_buf(),
        directory: directory.to_path_buf(),
        action,
        reason,
    };
    let failed = |e: Errno| Error::open(action, file, e.into());
    let mut todo = VecDeque::new();
    prepend(&mut todo, parent);
    let mut at = PathBuf::from("/");
    let (mut dir, mut meta) = open_root().map_err(failed)?;
    check_dir(&meta, &at, trusted, None).map_err(|reason| refuse(&at, reason))?;
    // The link of the daemon's user that the walk went through, if it did: from there on, that
    // user chooses where the path leads.
    let mut steered: Option<PathBuf> = None;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        let next = openat(&dir, name.as_os_str(), directory_flags(), Mode::empty());
        let refused = match next {
            Ok(next) => {
                let next = File::from(next);
                meta = next.metadata().map_err(|e| Error::io(action, file, e))?;
                dir = next;
                if name == ".." {
                    at.pop();
                } else {
                    at.push(&name);
                }
                check_dir(&meta, &at, trusted, steered.as_deref())
                    .map_err(|reason| (at.clone(), reason))
            }
            Err(e) => {
                let entry = match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(entry) => entry,
                    Err(_) => return Err(failed(e)),
                };
                let kind = SFlag::from_bits_truncate(entry.st_mode) & SFlag::S_IFMT;
                if kind != SFlag::S_IFLNK {
                    return Err(failed(if kind == SFlag::S_IFDIR {
                        e
                    } else {
                        Errno::ENOTDIR
                    }));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(failed(Errno::ELOOP));
                }
                let link = at.join(&name);
                match check_link(entry.st_uid, &meta, &link, trusted, &mut steered) {
                    Ok(()) => {
                        let target =
                            PathBuf::from(readlinkat(&dir, name.as_os_str()).map_err(failed)?);
                        prepend(&mut todo, &target);
                        if target.has_root() {
                            (dir, meta) = open_root().map_err(failed)?;
                            at = PathBuf::from("/");
                            check_dir(&meta, &at, trusted, steered.as_deref())
                                .map_err(|reason| (at.clone(), reason))
                        } else {
                            Ok(())
                        }
                    }
                    Err(reason) => Err((link, reason)),
                }
            }
        };
        refused.map_err(|(directory, reason)| refuse(&directory, reason))?;
    }
    Ok(dir.into())
}

fn open_root() -> Result<(File, Metadata), Errno> {
    let root = File::from(openat(AT_FDCWD, "/", directory_flags(), Mode::empty())?);
    let meta = root
        .metadata()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok((root, meta))
}

/// Put the components of `path` in front of those to walk (a leading `/` is the caller's).
fn prepend(todo: &mut VecDeque<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    for name in names.into_iter().rev() {
        todo.push_front(name);
    }
}

/// Whether others than the trusted may write the directory of `meta`.
fn written_by_others(meta: &Metadata, trusted: Trusted) -> Option<String> {
    let mode = meta.mode();
    if mode & 0o002 != 0 {
        return Some("every user".to_string());
    }
    if mode & 0o020 != 0 && !trusted.group(meta.gid()) {
        let gid = meta.gid();
        let name = nix::unistd::Group::from_gid(Gid::from_raw(gid))
            .ok()
            .flatten()
            .map_or(String::new(), |g| format!("{} ", g.name));
        return Some(format!("group {name}(gid {gid})"));
    }
    None
}

/// Why the directory `at` (of `meta`) is not trusted, if it is not.
fn check_dir(
    meta: &Metadata,
    at: &Path,
    trusted: Trusted,
    steered: Option<&Path>,
) -> Result<(), String> {
    let owner = meta.uid();
    let shown = at.display();
    match (steered, trusted.user) {
        (Some(link), Some(user)) if owner != user => {
            return Err(format!(
                "is reached through the symbolic link {}, which uid {user} controls, and does not belong to uid {user}: that user could point the link at any directory (give the real path instead of the link)",
                link.display()
            ));
        }
        _ if !trusted.owner(owner) => {
            return Err(format!(
                "belongs to uid {owner}, who is {}: that user could replace what it holds (`chown root {shown}`, or choose a path under directories of root's, such as /run)",
                trusted.owners()
            ));
        }
        _ => {}
    }
    let sticky = meta.mode() & 0o1000 != 0;
    match written_by_others(meta, trusted) {
        Some(writers) if !sticky => Err(format!(
            "can be written by {writers} and is not sticky: another user could replace what it holds (`chmod go-w {shown}`, or `chmod +t {shown}` as /tmp is, or choose a path under directories that only root writes, such as /run)"
        )),
        _ => Ok(()),
    }
}

/// Whether the symbolic link `link`, of `owner`, in the directory of `dir`, may be followed; it
/// may make the rest of the walk the daemon's user's (`steered`).
fn check_link(
    owner: u32,
    dir: &Metadata,
    link: &Path,
    trusted: Trusted,
    steered: &mut Option<PathBuf>,
) -> Result<(), String> {
    let give_the_real_path = "give the real path instead of the link";
    if let Some(by) = steered.as_deref() {
        return match trusted.user {
            Some(user) if owner == user => Ok(()),
            _ => Err(format!(
                "is a symbolic link of uid {owner}, reached through the symbolic link {}: {give_the_real_path}",
                by.display()
            )),
        };
    }
    if !trusted.owner(owner) {
        return Err(format!(
            "is a symbolic link of uid {owner}, who is {}: that user chooses where it leads ({give_the_real_path})",
            trusted.owners()
        ));
    }
    if let Some(writers) = written_by_others(dir, trusted) {
        return Err(format!(
            "is a symbolic link in a directory that {writers} can write: any of them may have put it there ({give_the_real_path})"
        ));
    }
    let roots = owner == 0 && dir.uid() == 0 && (dir.mode() & 0o020 == 0 || dir.gid() == 0);
    if !roots {
        if trusted.user.is_none_or(|user| user == 0) {
            return Err(format!(
                "is a symbolic link in a directory that group {} can write: any of its members may have put it there ({give_the_real_path})",
                dir.gid()
            ));
        }
        *steered = Some(link.to_path_buf());
    }
    Ok(())
}

/// As root (for a [`Dir`] that the walk opened), refuse to write a file that another user owns
/// (a regular file or a FIFO: they could read or swap what is written) or that has other names.
/// A process that is not root writes only where its user may.
fn check_written(
    dir: &Dir,
    meta: &Metadata,
    file: &Path,
    action: Action,
    trusted: Trusted,
) -> Result<(), Error> {
    if dir.fd.is_none() {
        return Ok(());
    }
    let unsafe_file = |reason: String| Error::UnsafeFile {
        path: file.to_path_buf(),
        action,
        reason,
    };
    let kind = meta.file_type();
    if (kind.is_file() || kind.is_fifo()) && !trusted.owner(meta.uid()) {
        return Err(unsafe_file(format!(
            "it belongs to uid {}, who is {}: that user could read or swap what is written (remove it, or choose another path)",
            meta.uid(),
            trusted.owners()
        )));
    }
    if kind.is_file() && meta.nlink() > 1 {
        return Err(unsafe_file(format!(
            "it has {} hard links: another of its names may be a file elsewhere that must not be written (remove the other links, or choose another path)",
            meta.nlink()
        )));
    }
    Ok(())
}

/// Open `path` for appending, as a daemon's stdout or stderr: created with mode 0644 (less the
/// umask) if it is missing, never through a symbolic link; as root, in a directory that the walk
/// checked, and only a file that root or the daemon's user owns and that has no other name.
/// A FIFO without a reader is an error (`ENXIO`), not a wait.
///
/// # Errors
///
/// [`Error::Symlink`], [`Error::NotAFile`] (a directory, a block device),
/// [`Error::MissingDirectory`] or [`Error::Io`]; as root, [`Error::UnsafeDirectory`] and
/// [`Error::UnsafeFile`].
pub(crate) fn open_log(path: &Path, trusted: Trusted) -> Result<File, Error> {
    const ACTION: Action = Action::OpenLog;
    let dir = Dir::of(path, ACTION, trusted)?;
    let file = dir
        .open(path, OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT)
        .map_err(|e| Error::open(ACTION, path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(ACTION, path, e))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(Error::not_a_file(ACTION, path, "a directory"));
    }
    if kind.is_block_device() {
        return Err(Error::not_a_file(ACTION, path, "a block device"));
    }
    check_written(&dir, &meta, path, ACTION, trusted)?;
    if !kind.is_file() {
        // Only the open was not to wait: writes to a full FIFO or terminal wait as they always
        // do. A regular file never waits.
        fcntl(&file, FcntlArg::F_SETFL(OFlag::O_APPEND))
            .map_err(|e| Error::io(ACTION, path, e.into()))?;
    }
    Ok(file)
}

/// `/dev/null`, open for reading and writing: stdin, and where stdout and stderr go when no log
/// file is set.
pub(crate) fn open_null() -> Result<File, Error> {
    let null = Path::new("/dev/null");
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(null)
        .map_err(|e| Error::io(Action::Open, null, e))
}

/// Give `file`, open at `path`, to `uid` and `gid` through its descriptor (`fchown`): a regular
/// file with no other name, that root owns, or `uid` already. A FIFO or a device is left as it
/// is (another user's terminal is not given away). `whom` names the account, for messages.
///
/// # Errors
///
/// [`Error::UnsafeFile`] for a file that is not given; [`Error::Privileges`] when `fchown`
/// fails.
pub(crate) fn give(
    file: &File,
    path: &Path,
    uid: Option<Uid>,
    gid: Option<Gid>,
    whom: &str,
) -> Result<(), Error> {
    const ACTION: Action = Action::GiveLog;
    let meta = file.metadata().map_err(|e| Error::io(ACTION, path, e))?;
    if !meta.is_file() {
        return Ok(());
    }
    let unsafe_file = |reason: String| Error::UnsafeFile {
        path: path.to_path_buf(),
        action: ACTION,
        reason,
    };
    if meta.nlink() > 1 {
        return Err(unsafe_file(format!(
            "it has {} hard links: another of its names may be a file elsewhere that must not change hands (remove the other links, or choose another path)",
            meta.nlink()
        )));
    }
    let target = uid.map_or(0, Uid::as_raw);
    if meta.uid() != 0 && meta.uid() != target {
        return Err(unsafe_file(format!(
            "it belongs to uid {}: only a file of root's, or of {whom} already, is given to {whom} (remove it, or choose another path)",
            meta.uid()
        )));
    }
    fchown(file, uid, gid).map_err(|e| Error::Privileges {
        reason: format!(
            "cannot give {} to {whom}: {}",
            path.display(),
            io::Error::from(e)
        ),
    })
}

/// `n` in 16 hexadecimal digits.
fn hex(n: u64) -> String {
    (0..16)
        .rev()
        .map(|i| char::from(b"0123456789abcdef"[((n >> (i * 4)) & 0xf) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_name_has_sixteen_hexadecimal_digits() {
        assert_eq!(hex(0x1f), "000000000000001f");
        assert_eq!(hex(u64::MAX), "ffffffffffffffff");
    }

    #[test]
    fn temporary_names_differ_and_are_not_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.pid");
        let here = Dir { fd: None };
        let (_, first) = here.create_temporary(&file).expect("create");
        let (_, second) = here.create_temporary(&file).expect("create");
        assert_ne!(first, second);
        let name = first
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(".x.pid.") && name.ends_with(".new"),
            "{name}"
        );
        assert!(!name.contains(&std::process::id().to_string()), "{name}");
    }

    #[test]
    fn components_are_walked_in_order() {
        let mut todo = VecDeque::from([OsString::from("z")]);
        prepend(&mut todo, Path::new("/a/./b/../c"));
        assert_eq!(todo, ["a", "b", "..", "c", "z"].map(OsString::from));
    }

    #[test]
    fn a_directory_others_may_write_is_trusted_only_when_sticky() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let me = Trusted {
            user: Some(geteuid().as_raw()),
            group: Some(nix::unistd::getegid().as_raw()),
        };
        let at = dir.path();
        let mode = |mode: u32| {
            std::fs::set_permissions(at, std::fs::Permissions::from_mode(mode)).expect("chmod");
            std::fs::metadata(at).expect("stat")
        };
        assert_eq!(check_dir(&mode(0o755), at, me, None), Ok(()));
        assert_eq!(check_dir(&mode(0o1777), at, me, None), Ok(()));
        let refused = check_dir(&mode(0o777), at, me, None).expect_err("refused");
        assert!(
            refused.contains("every user") && refused.contains("chmod"),
            "{refused}"
        );
        // Reached through a link of the daemon's user, only that user's directories may follow.
        let link = Path::new("/srv/link");
        let owner = mode(0o755).uid();
        let steered = Trusted {
            user: Some(owner.wrapping_add(1)),
            group: None,
        };
        let refused = check_dir(&mode(0o755), at, steered, Some(link)).expect_err("refused");
        assert!(refused.contains("/srv/link"), "{refused}");
    }

    #[test]
    fn a_log_is_never_opened_through_a_symbolic_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        let link = dir.path().join("out.log");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = open_log(&link, Trusted::default()).expect_err("refused");
        assert!(matches!(err, Error::Symlink { .. }), "{err}");
        assert!(!target.exists(), "nothing was created through the link");
    }
}
