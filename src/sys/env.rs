//! The environment, changed only where that is safe.

/// Remove `names` from the environment, if this process runs a single thread: with more,
/// another thread could be reading the environment meanwhile.
pub(crate) fn remove_env_if_alone(names: &[&str]) {
    if super::thread_count() != Some(1) {
        return;
    }
    for name in names {
        // SAFETY: the process runs a single thread (checked above), so nothing reads the
        // environment while it changes.
        unsafe { std::env::remove_var(name) };
    }
}
