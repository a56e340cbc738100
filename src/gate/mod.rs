//! The gates: one checked door for each dangerous act (DESIGN.md, "Gates"). Each door holds its
//! check inside, and no other code of the crate does the act itself: `clippy.toml` forbids the
//! calls everywhere else, and only the gate's own file allows them.

/// Every file that the crate creates, opens for writing, gives to another user or changes the
/// mode of, as a process that may be root: no symbolic link followed, `fstat` after the open,
/// changes through the descriptor, directories checked from `/` as root, temporary names that
/// nobody can foresee.
pub(crate) mod path;

// The handover, sockets in and out of a daemon at a restart, both ends verified, is the door of
// `crate::handover` (with `crate::listen`, which takes only the sockets that match the configured
// addresses): the pidfile's locked descriptor travels with the sockets and proves the sender;
// the running instance answers only the credentials that started it; its socket file is made
// through `path` above.
