//! A plain thread: `pthread_create` and nothing more, for the one thread that every daemon
//! starts before it is ready (the keeper).
//!
//! `std::thread::spawn` does more than a daemon needs there, and a daemon pays for it in memory
//! and time, because its first spawn comes right after the fork, in a process that has done
//! none of it yet: std looks up `__pthread_get_minstack` with `dlsym` (the dynamic loader's symbol
//! lookup, through the symbol tables of the program and of every library: about 400 KiB of
//! pages that the daemon would otherwise never map), registers a thread-local destructor on the
//! spawning thread (another lazy symbol resolution in libc), gives the thread an alternate signal
//! stack, and frees the spawn's closure on the new thread, which makes glibc create a malloc
//! arena for it. A plain thread does none of that: the closure's slot is freed by whoever joins
//! the thread, and a thread never joined leaves it (a few words, once per daemon).
//!
//! Its stack is std's default: `RUST_MIN_STACK` bytes where that is set, as std reads it, and
//! 2 MiB otherwise. So a process that cannot have a thread of std's (the limit set too high to
//! map) cannot have this one either, and says so the same way.

use std::ffi::c_void;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// std's default stack for a new thread (`std::thread::Builder` without `stack_size`).
const DEFAULT_STACK: usize = 2 * 1024 * 1024;

/// The least stack given, above every system's `PTHREAD_STACK_MIN` (which `libc` does not name
/// for NetBSD): a smaller `RUST_MIN_STACK` would make `pthread_create` refuse the size.
const LEAST_STACK: usize = 64 * 1024;

/// A thread started by [`spawn`].
pub(crate) struct PlainThread {
    id: libc::pthread_t,
    /// The closure's slot, and how to free it once the thread is joined.
    slot: *mut c_void,
    free: unsafe fn(*mut c_void),
}

// SAFETY: the handle is a thread id and a pointer to a slot that only the thread reads until
// it is joined; nothing of it is tied to the thread that holds it.
unsafe impl Send for PlainThread {}

/// Run `f` on a new thread named `name` (at most 15 bytes, as Linux keeps them), with std's
/// default stack.
pub(crate) fn spawn<F>(name: &'static [u8], f: F) -> io::Result<PlainThread>
where
    F: FnOnce() + Send + 'static,
{
    // The closure itself, not a boxed one: calling a `Box<dyn FnOnce>` frees the box on the new
    // thread. The thread moves it out of the slot, which stays allocated.
    let slot: *mut Option<(&'static [u8], F)> = Box::into_raw(Box::new(Some((name, f))));
    let mut id: libc::pthread_t = 0;
    // SAFETY: `attr` is initialised by pthread_attr_init before use and destroyed after; `start`
    // has the signature pthread_create expects, and `slot` stays valid until the thread is joined
    // (or for ever, when it is not).
    let created = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut e = libc::pthread_attr_init(&mut attr);
        if e == 0 {
            e = libc::pthread_attr_setstacksize(&mut attr, stack_size());
            if e == 0 {
                e = libc::pthread_create(&mut id, &attr, start::<F>, slot.cast());
            }
            libc::pthread_attr_destroy(&mut attr);
        }
        e
    };
    if created != 0 {
        // SAFETY: no thread was created, so nothing else holds the slot.
        drop(unsafe { Box::from_raw(slot) });
        return Err(io::Error::from_raw_os_error(created));
    }
    Ok(PlainThread {
        id,
        slot: slot.cast(),
        free: free::<F>,
    })
}

impl PlainThread {
    /// Wait for the thread to end, then free what it was given.
    pub(crate) fn join(self) {
        let (id, slot, free) = (self.id, self.slot, self.free);
        std::mem::forget(self);
        // SAFETY: `id` names a thread that was created joinable and is joined only here, once.
        if unsafe { libc::pthread_join(id, std::ptr::null_mut()) } == 0 {
            // SAFETY: the thread has ended: nothing reads the slot any more, and `free` is the
            // one made for its type.
            unsafe { free(slot) };
        }
    }
}

impl Drop for PlainThread {
    /// A thread not joined is detached: it ends on its own (or with the process), and its slot,
    /// which it may not have read yet, is left.
    fn drop(&mut self) {
        // SAFETY: `id` names a joinable thread that is neither joined nor detached yet.
        unsafe { libc::pthread_detach(self.id) };
    }
}

extern "C" fn start<F: FnOnce() + Send>(slot: *mut c_void) -> *mut c_void {
    // SAFETY: `slot` is the `Option<(name, F)>` that `spawn` gave pthread_create, valid until the
    // thread is joined; this thread is the only one that touches it meanwhile.
    let taken = unsafe { (*slot.cast::<Option<(&'static [u8], F)>>()).take() };
    if let Some((name, f)) = taken {
        name_this_thread(name);
        // A panic must not unwind into C: the thread ends, as std's would, its panic reported
        // by the panic hook.
        let _ = catch_unwind(AssertUnwindSafe(f));
    }
    std::ptr::null_mut()
}

/// Free a slot that [`spawn`] made for an `F`.
///
/// # Safety
/// `slot` must come from `spawn::<F>`, and its thread must have ended.
unsafe fn free<F>(slot: *mut c_void) {
    // SAFETY: as the caller promises, the slot is a `Box<Option<(name, F)>>` nobody uses.
    drop(unsafe { Box::from_raw(slot.cast::<Option<(&'static [u8], F)>>()) });
}

/// std's default stack size: `RUST_MIN_STACK` if it is a number (at least [`LEAST_STACK`]), else
/// 2 MiB.
fn stack_size() -> usize {
    let asked = std::env::var_os("RUST_MIN_STACK")
        .and_then(|v| v.to_str()?.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_STACK);
    asked.max(LEAST_STACK)
}

/// Name the calling thread, where the system lets a thread name itself cheaply.
fn name_this_thread(name: &[u8]) {
    #[cfg(target_os = "linux")]
    {
        let mut buf = [0u8; 16];
        let n = name.len().min(15);
        buf[..n].copy_from_slice(&name[..n]);
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which `buf` is.
        unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr()) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}
