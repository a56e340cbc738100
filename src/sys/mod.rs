//! The system underneath: raw system calls that nix lacks, `/proc` and its equivalents, raw
//! descriptors, and the process's exit. Nearly all of the crate's `unsafe` is here, each block
//! with the reason it holds, and so is everything that differs from one system to another: the
//! rest of the crate asks the functions re-exported here and never names a system.
//!
//! This file is only the dispatch: which file answers which question. One file per mechanism
//! that every system has (`pipe`, `poll`, `fds`, `scm`, `socket`, `peer`, `exit`, `atfork`,
//! `groups`, `random`, `env`, `signals`, `sleep`, `thread`), and one per system or family of
//! systems for what differs (`linux`, `pidfd`, `portable`, `kqueue`, `macos`, `freebsd`,
//! `netbsd`). A new platform is a new OS file and a column below; a new question is a row, and a
//! function in each OS file.
//!
//! Each question has one answer per mechanism:
//!
//! | question | Linux | Linux, `--cfg daemons_portable` | macOS | FreeBSD | NetBSD |
//! | --- | --- | --- | --- | --- | --- |
//! | who holds the pidfile's lock | the `lock:` line in `/proc/PID/fdinfo/FD` ([`LOCK_LINES`]) | the file is locked (a `LOCK_SH \| LOCK_NB` is refused) and the pid has it open: `/proc/PID/fd` | locked, and open: `proc_pidinfo(PROC_PIDLISTFDS)`, `proc_pidfdinfo` | locked, and a descriptor of the pid that holds a lock on it: `kern.proc.filedesc` (`KF_FLAG_HASLOCK`) | locked, and a descriptor of the pid that holds a lock on it: `kern.file2`, where kernel addresses are shown (else `/proc/PID/fd`) |
//! | the holder when the pid named is not it | `/proc/locks` | unknown | unknown | unknown | unknown |
//! | waiting for a daemon to exit | pidfd ([`ExitWatch`]) | the pidfile's lock, looked at every 50 µs for 2 ms (with a timer slack of 1 µs, [`FineSleeps`]), then a child process blocked on it (`LockWaiter`) | kqueue `EVFILT_PROC` ([`ExitWatch`]) | kqueue | kqueue |
//! | pinning a process before it is checked ([`ExitWatch`]; the signal itself is sent by `gate::process`) | a pidfd, which `pidfd_send_signal` goes through | its start time in `/proc/PID/stat`; a `kill` after the check again | a kqueue; a `kill` once it says the process has not exited, after the check again | as macOS | as macOS |
//! | descriptors inherited through exec | `/proc/self/fd` | `/dev/fd` | `/dev/fd` | `kern.proc.filedesc` | `kern.file2` |
//! | threads before a fork | `/proc/self/task` | `/proc/self/task` | `PROC_PIDTASKINFO` | `ki_numthreads` | `p_nlwps` |
//! | the daemon's process group | `/proc/*/stat` | `/proc/*/stat` | `proc_listpgrppids` | `kern.proc.pgrp` | `kern.proc2` |
//! | create the pidfile locked ([`rename_unless_exists`], in the directory that the path gate opened) | `renameat2(RENAME_NOREPLACE)` | as Linux | `renameatx_np(RENAME_EXCL)` | `linkat`, then `unlinkat` | as FreeBSD |
//! | temporary names nobody can foresee ([`random()`]) | `getrandom` | as Linux | `arc4random_buf` | `arc4random_buf` | `arc4random_buf` |
//! | the parent of a process ([`parent_of`]) | `/proc/PID/stat` | `/proc/PID/stat` | `PROC_PIDTBSDINFO` | `ki_ppid` | `p_ppid` |
//! | a supervised child dies with its parent ([`die_with_parent`]) | `PR_SET_PDEATHSIG` | as Linux | nothing | `PROC_PDEATHSIG_CTL` | nothing |
//! | the peer of a Unix socket ([`peer()`]) | `SO_PEERCRED` | as Linux | `getpeereid`, `LOCAL_PEERPID` | `LOCAL_PEERCRED` | `LOCAL_PEEREID` |
//! | a handed descriptor shares the pidfile's lock ([`holds_exclusive_flock`]) | its own `lock:` line in `/proc/self/fdinfo` | unknown: the handover takes the lock through it while a fresh open is refused | unknown | unknown | unknown |
//! | a Unix socket path longer than `sun_path` ([`socket_path`]) | `/proc/self/fd/DIR/NAME` | as Linux | refused | refused | refused |
//! | passed descriptors close-on-exec ([`receive_with_fds`]) | `MSG_CMSG_CLOEXEC` | as Linux | set after they arrive | `MSG_CMSG_CLOEXEC` | `MSG_CMSG_CLOEXEC` |

#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
compile_error!("daemons supports Linux, macOS, FreeBSD and NetBSD");

// The mechanisms that every system has, one file each.
mod atfork;
mod env;
mod exit;
mod fds;
mod groups;
mod ids;
mod peer;
mod pipe;
mod poll;
mod random;
mod scm;
mod signals;
mod sleep;
mod socket;
mod thread;

// The wait on a pidfile's lock, which needs only flock.

// What every build of Linux reads in /proc.
#[cfg(target_os = "linux")]
mod linux;

// The mechanisms that only Linux has: pidfds, fdinfo lock lines, /proc/locks.
#[cfg(all(target_os = "linux", not(daemons_portable)))]
mod pidfd;

// The mechanisms that work without those, and what each other system offers.
#[cfg(any(not(target_os = "linux"), daemons_portable))]
mod portable;

#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "netbsd"))]
mod kqueue;

#[cfg(target_os = "macos")]
mod macos;

#[cfg(target_os = "freebsd")]
mod freebsd;

#[cfg(target_os = "netbsd")]
mod netbsd;

#[cfg(target_os = "freebsd")]
use freebsd as os;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
use macos as os;
#[cfg(target_os = "netbsd")]
use netbsd as os;

pub(crate) use atfork::{close_in_forked_children, forget_in_forked_children};
pub(crate) use env::{in_test_harness, remove_env_if_alone};
pub(crate) use exit::{die_with_parent, exit, exit_unflushed, flush_stdio};
pub(crate) use fds::{adopt_passed_fds, close_copy, close_unowned, is_cloexec};
pub(crate) use groups::{init_groups, set_groups};
pub(crate) use ids::{own_process_group, process_group, process_group_of, session_of};
pub(crate) use peer::peer;
pub(crate) use pipe::pipe;
// `wait_any_readable` is a thin call of `poll_readable`, kept for the upper floors until they
// call it.
pub(crate) use poll::{Readable, poll_readable, wait_any_readable};
// One descriptor and a timeout: the lock waiter's and a test's shorthand of `poll_readable`.
pub(crate) use poll::wait_readable;
pub(crate) use random::random;
pub(crate) use scm::{receive_with_fds, send_datagram_with_fds, send_with_fds};
pub(crate) use signals::{SignalSet, reset_dispositions, unblock_all};
pub(crate) use sleep::FineSleeps;
pub(crate) use socket::{
    connect_without_blocking, is_listening_unix_stream, nobody_listens, socket_path,
};
pub(crate) use thread::{PlainThread, spawn as spawn_plain_thread};
// Only Linux reaches a socket through its directory's descriptor (`gate::path`).
#[cfg(target_os = "linux")]
pub(crate) use socket::socket_path_max;

pub(crate) use os::{
    command, executable, has_open, kernel_file_system, parent_of, process_group_members,
    rename_unless_exists, thread_count,
};

#[cfg(target_os = "linux")]
pub(crate) use linux::{check_proc, ns_pids, started_before};
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::{check_proc, ns_pids, started_before};

#[cfg(all(target_os = "linux", not(daemons_portable)))]
pub(crate) use pidfd::{
    ExitWatch, OPEN_FDS_DIR, flock_holders, holds_exclusive_flock, holds_flock, open_fds,
    wait_all_exited,
};
#[cfg(any(not(target_os = "linux"), daemons_portable))]
pub(crate) use portable::{flock_holders, holds_exclusive_flock, holds_flock, wait_all_exited};

#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "netbsd"))]
pub(crate) use kqueue::ExitWatch;
#[cfg(all(target_os = "linux", daemons_portable))]
pub(crate) use portable::ExitWatch;

#[cfg(any(target_os = "freebsd", target_os = "netbsd"))]
pub(crate) use os::{OPEN_FDS_DIR, open_fds};
#[cfg(any(target_os = "macos", all(target_os = "linux", daemons_portable)))]
pub(crate) use portable::{OPEN_FDS_DIR, open_fds};

/// Whether [`holds_flock`] reads the lock's holder from the kernel (Linux's fdinfo lock lines).
/// Where it does not, the holder check is [`has_open`] on a file that the caller found locked.
pub(crate) const LOCK_LINES: bool = cfg!(all(target_os = "linux", not(daemons_portable)));

/// Whether an [`ExitWatch`] wakes the moment its process exits (a pidfd, a kqueue). Where it
/// does not (Linux built with `daemons_portable`, which has neither), it looks again at growing
/// intervals, and a stop waits on the pidfile's lock instead (`LockWaiter`).
pub(crate) const EXIT_EVENTS: bool = !cfg!(all(target_os = "linux", daemons_portable));

/// Whether an [`ExitWatch`] is a handle that a signal can go through and that reaches the very
/// process that was watched, whatever happened to its pid since (a pidfd). Elsewhere a signal is
/// a `kill` of the pid, which the signal gate (`gate::process`) sends once the watch says the
/// process has not exited, and once its check holds again.
pub(crate) const SIGNALS_PINNED: bool = cfg!(all(target_os = "linux", not(daemons_portable)));

#[cfg(test)]
mod tests;

/// A link's target without the ` (deleted)` that Linux adds once the file is replaced or
/// removed: an executable upgraded in place is still the same program.
#[cfg(target_os = "linux")]
fn without_deleted(link: std::path::PathBuf) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = link.as_os_str().as_bytes();
    match bytes.strip_suffix(b" (deleted)") {
        Some(kept) => std::ffi::OsStr::from_bytes(kept).into(),
        None => link,
    }
}
