//! Descriptors that children forked without exec must not keep: the locked pidfile (a child
//! that outlived the daemon would keep the lock, and no `start()` could take the pidfile again)
//! and a handover's lifeline. Closed by a `pthread_atfork` child handler.

use std::os::fd::RawFd;
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};

/// The descriptors to close in forked children. A few slots: a process may hold several
/// pidfiles, and a lifeline besides.
static LOCKED: [AtomicI32; 4] = [const { AtomicI32::new(-1) }; 4];
static AT_FORK: Once = Once::new();

/// Close `fd` in every child that this process forks from now on, before the child runs any
/// code of its own.
///
/// # Safety
///
/// The value that owns `fd` never uses or closes it in a forked child (it knows the process it
/// was made in, as a `PidfileLock` does), until [`forget_in_forked_children`] is called.
pub(crate) unsafe fn close_in_forked_children(fd: RawFd) {
    AT_FORK.call_once(|| {
        // SAFETY: the handler is an `extern "C"` function that only does atomic operations and
        // close(2), both async-signal-safe, as a child handler of a multi-threaded fork must be.
        unsafe { libc::pthread_atfork(None, None, Some(close_locked_in_child)) };
    });
    for slot in &LOCKED {
        if slot
            .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
}

/// Stop closing `fd` in forked children: the lock is released, and the number may be reused.
pub(crate) fn forget_in_forked_children(fd: RawFd) {
    for slot in &LOCKED {
        let _ = slot.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Acquire);
    }
}

extern "C" fn close_locked_in_child() {
    for slot in &LOCKED {
        let fd = slot.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: in the child of a fork, `fd` is a copy of the parent's locked pidfile; the
            // child's `PidfileLock` knows it is not the owner and never uses or closes it.
            unsafe { libc::close(fd) };
        }
    }
}
