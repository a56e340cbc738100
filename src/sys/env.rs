//! The environment, changed only where that is safe.

/// Remove `names` from the environment, if this process runs a single thread: with more,
/// another thread could be reading the environment meanwhile. Where none of them is set there is
/// nothing to do, and the threads are not counted: a daemon's first look into `/proc/self`
/// costs it tens of microseconds at start.
pub(crate) fn remove_env_if_alone(names: &[&str]) {
    if names.iter().all(|name| std::env::var_os(name).is_none()) {
        return;
    }
    if super::thread_count() != Some(1) {
        return;
    }
    for name in names {
        // SAFETY: the process runs a single thread (checked above), so nothing reads the
        // environment while it changes.
        unsafe { std::env::remove_var(name) };
    }
}

/// Whether this process looks like a Rust test harness: libtest runs each test on a thread
/// named after it (the main thread is `main`), takes `--test-threads` or `RUST_TEST_THREADS`,
/// and Cargo builds test binaries into a `deps` directory. A guess, used only for the words of
/// an error.
pub(crate) fn in_test_harness() -> bool {
    let named_test = std::thread::current()
        .name()
        .is_some_and(|name| name != "main" && name.contains("::"));
    let told = std::env::var_os("RUST_TEST_THREADS").is_some()
        || std::env::args_os().skip(1).any(|arg| {
            let arg = arg.to_string_lossy();
            arg.starts_with("--test-threads") || arg == "--nocapture" || arg == "--exact"
        });
    let in_deps = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.ends_with("deps")))
        .unwrap_or(false);
    named_test || told || in_deps
}
