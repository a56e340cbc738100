//! Leaving the process: [`exit`], the one way out of a process that must not run its exit
//! handlers (a copy of the caller made by `fork`), and [`die_with_parent`] for a child that must
//! not outlive its parent.

/// Leave this process with `code` at once: Rust's stdout and stderr and C's stdio streams are
/// flushed, then `_exit` ends it without running exit handlers or destructors.
///
/// For copies of the caller made by `fork` (the daemon, the middle process of the double fork,
/// a supervised child): their exit handlers are the caller's, and running them (libc's and the
/// loader's among them) would copy a page at each write and flush the caller's buffers twice.
/// What the buffers hold is this process's own: the caller's were flushed before the fork.
pub(crate) fn exit(code: i32) -> ! {
    flush_stdio();
    exit_now(code)
}

/// Leave this process with `code` at once, flushing nothing: for a copy of the caller that has
/// written nothing to stdio since the fork (the middle process of the double fork), whose
/// buffers, flushed before that fork, are empty. Flushing them would only fault in the code of
/// Rust's and C's stdio for nothing.
pub(crate) fn exit_unflushed(code: i32) -> ! {
    exit_now(code)
}

/// Flush Rust's stdout and stderr and every C stdio stream, so that what this process buffered
/// is written once: before a fork copies the buffers, or `_exit` drops them.
pub(crate) fn flush_stdio() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    flush_c_stdio();
}

/// Flush every C stdio stream.
fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes every C stdio stream and touches no Rust object.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// End this process at once with `code`: no exit handlers, no destructors, no buffers flushed.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process; it touches no memory of this process and never returns.
    unsafe { libc::_exit(code) }
}

/// Have the kernel SIGKILL this process when its parent dies, as a supervised body must not
/// outlive its supervisor (killed at a stop timeout, say); exit at once if the parent is gone
/// already.
///
/// # Platform-specific behavior
///
/// `prctl(PR_SET_PDEATHSIG)` on Linux, `procctl(PROC_PDEATHSIG_CTL)` on FreeBSD. macOS and NetBSD
/// have no such request: there the child only exits at once if its parent is gone already, and
/// a supervisor killed with SIGKILL leaves its child running.
pub(crate) fn die_with_parent() {
    let parent = nix::unistd::getppid();
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL));
    #[cfg(target_os = "freebsd")]
    {
        let mut signal: libc::c_int = libc::SIGKILL;
        // SAFETY: PROC_PDEATHSIG_CTL on this process reads one int, `signal`, which lives through
        // the call.
        let _ = unsafe {
            libc::procctl(
                libc::P_PID,
                0,
                libc::PROC_PDEATHSIG_CTL,
                (&mut signal as *mut libc::c_int).cast(),
            )
        };
    }
    if nix::unistd::getppid() != parent {
        exit(1);
    }
}
