//! The gates: each dangerous act of the crate has one door, with the check inside, and no other
//! code does the act itself. A feature that needs the act goes through the door, so it cannot
//! forget the check; `clippy.toml` lists the calls that do the act (`disallowed-methods`), and
//! only the door's file may make them.
//!
//! | door | the act | the check inside |
//! | --- | --- | --- |
//! | [`fork`] | `fork()` | the process is known to run exactly one thread (unknown is refused): a fork copies only the calling thread, and a lock that another thread holds stays locked for ever in the child |
//! | [`process`] | a signal to another process | the process is pinned first (a pidfd; a kqueue or its start time elsewhere), verified after (it holds the pidfile's lock, it is in the daemon's process group, it is in the session that the start made), confirmed alive, and signalled through the pin; a child of this process is signalled only until it is reaped |
//! | [`path`] | a file created, opened for writing, given to another user or changed in mode, by a process that may be root | no symbolic link followed, `fstat` after the open, changes through the descriptor, directories checked from `/` as root (no other user may write them unless sticky), temporary names that nobody can foresee |
//!
//! Why doors rather than helpers: each of these acts was once done its own way in the place that
//! needed it, and each such place got the check wrong in its own way (a ready timeout that killed
//! a pid read seconds earlier; group members signalled after a pid was reused; a fork in a
//! process whose threads could not be counted; a log chowned through a path that a user had
//! pointed at a file of root's).

pub(crate) mod fork;
pub(crate) mod path;
pub(crate) mod process;

// The handover, sockets in and out of a daemon at a restart, both ends verified, is the door of
// `crate::handover` (with `crate::listen`, which takes only the sockets that match the configured
// addresses): the pidfile's locked descriptor travels with the sockets and proves the sender;
// the running instance answers only the credentials that started it; its socket file is made
// through `path` above.
