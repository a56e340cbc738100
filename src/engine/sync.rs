//! Locking through poison, the one way the engine locks.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, poisoned or not. What the engine's mutexes guard stays whole across a panic:
/// flags, handles, files, lists of wakers, and the user's closures, whose panics are caught
/// where they are called and logged there.
pub(in crate::engine) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
