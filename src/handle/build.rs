//! [`DaemonBuilder::build`]: every setting checked at once, against the others and the body,
//! and the paths made absolute.

use std::path::{Path, PathBuf};

use crate::engine::{Body, Engine, Handlers, is_forbidden};
use crate::error::Error;
use crate::handle::builder::DaemonBuilder;
use crate::handle::cli::BUILT_IN_COMMANDS;
use crate::handle::daemon::{Command, Daemon};
use crate::privileges::Credentials;
use crate::settings::{Address, BodySettings, Listen, Settings};

impl DaemonBuilder {
    /// Check every setting and build the [`Daemon`]. Relative paths become absolute here, against
    /// the current directory, so that the daemon (which changes to its working directory) and a
    /// later `stop()` agree on where the pidfile is.
    ///
    /// # Errors
    ///
    /// [`Error::NoBody`], [`Error::SeveralBodies`], [`Error::ForbiddenSignal`], and
    /// [`Error::InvalidSetting`] for a missing or empty pidfile, an `interval` without a `step`,
    /// a `pool_size` of 0, above 4096 (100,000 for `messages_async`) or without `messages`, a
    /// umask above `0o777` or one that takes reading or writing from the daemon's own user, a
    /// zero ready or stop timeout, a `worker_threads` of 0 or without an async body, or an
    /// unknown user or group.
    ///
    /// # Examples
    ///
    /// ```
    /// use daemons::{Daemon, Error, Signal::SIGKILL};
    ///
    /// let err = Daemon::builder().pidfile("x.pid").on(SIGKILL, || {}).step(|| {}).build();
    /// assert!(matches!(err, Err(Error::ForbiddenSignal { signal: SIGKILL })));
    ///
    /// let daemon = Daemon::builder().pidfile("x.pid").step(|| {}).build()?;
    /// assert!(daemon.pidfile().is_absolute());
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn build(self) -> Result<Daemon, Error> {
        let DaemonBuilder {
            settings,
            handlers: given,
            on_stop,
            commands,
            mut bodies,
            setup,
            logger,
            listen,
            #[cfg(feature = "tokio")]
            runtime,
            #[cfg(feature = "tokio")]
            asynchronous,
        } = self;
        validate_commands(&commands)?;
        let body = match bodies.len() {
            0 => return Err(Error::NoBody),
            1 => bodies.remove(0),
            _ => return Err(Error::SeveralBodies),
        };
        if let Some((signal, _)) = given.iter().find(|(s, _)| is_forbidden(*s)) {
            return Err(Error::ForbiddenSignal { signal: *signal });
        }
        let given_for_body = settings.body_settings();
        let mut settings = settings.build().map_err(|e| {
            Error::setting(
                e.field_name(),
                format!("is required: call .{}(...) on the builder", e.field_name()),
            )
        })?;
        #[cfg(feature = "tokio")]
        let most_workers = validate_runtime(&runtime, asynchronous)?;
        #[cfg(not(feature = "tokio"))]
        let most_workers = MAX_POOL_SIZE;
        validate(&settings, given_for_body, &body, most_workers)?;
        settings.pidfile = absolute(&settings.pidfile, "pidfile")?;
        settings.workdir = absolute(&settings.workdir, "workdir")?;
        for (setting, path) in [
            ("stdout", &mut settings.stdout),
            ("stderr", &mut settings.stderr),
        ] {
            if let Some(path) = path {
                *path = absolute(path, setting)?;
            }
        }
        for given in &listen {
            let mut listen = Listen::parse(given).map_err(|e| Error::setting("listen", e))?;
            if let Address::Unix(path) = &listen.address {
                listen.address = Address::Unix(absolute(path, "listen")?);
            }
            settings.listen.push(listen);
        }
        let credentials = Credentials::resolve(settings.user.as_ref(), settings.group.as_ref())?;
        let mut handlers = Handlers::default();
        for (signal, handler) in given {
            handlers.add(signal, handler);
        }
        for hook in on_stop {
            handlers.add_on_stop(hook);
        }
        Ok(Daemon::new(
            Engine::new(settings, credentials, body, setup, logger, handlers),
            commands,
        ))
    }
}

/// A command's name must be one word that the command line can tell from the built-in
/// commands, from an option, and from the other commands.
fn validate_commands(commands: &[Command]) -> Result<(), Error> {
    for (i, command) in commands.iter().enumerate() {
        let name = command.name.as_str();
        let refused = if name.is_empty() {
            "a command needs a name".to_string()
        } else if name.starts_with('-') {
            format!(
                "{name:?} starts with '-', which the command line reads as an option: name it without"
            )
        } else if name.chars().any(char::is_whitespace) {
            format!(
                "{name:?} has whitespace in it, which no shell passes as one word: use '-' or '_'"
            )
        } else if BUILT_IN_COMMANDS.contains(&name) {
            format!("{name:?} is a built-in command of the command line: choose another name")
        } else if commands[..i].iter().any(|c| c.name == name) {
            format!("{name:?} is given twice: give each command once")
        } else {
            continue;
        };
        return Err(Error::setting("command", refused));
    }
    Ok(())
}

/// The most worker threads a `messages` pool may have: each is an OS thread with its own stack.
const MAX_POOL_SIZE: usize = 4096;

/// An async body's runtime: `worker_threads` needs an async body, and at least one worker.
/// Returns the largest pool the body may have: an async pool's handlers are tasks, not threads.
#[cfg(feature = "tokio")]
fn validate_runtime(
    runtime: &crate::engine::asynchronous::RuntimeChoice,
    asynchronous: bool,
) -> Result<usize, Error> {
    match runtime.workers() {
        Some(_) if !asynchronous => Err(Error::setting(
            "worker_threads",
            "only an async body has a runtime: use .run_async(...) or .messages_async(...)",
        )),
        Some(0) => Err(Error::setting(
            "worker_threads",
            "0 worker threads could run no task: give at least 1, or leave the setting out for a current-thread runtime",
        )),
        _ if asynchronous => Ok(crate::engine::asynchronous::MAX_ASYNC_POOL_SIZE),
        _ => Ok(MAX_POOL_SIZE),
    }
}

/// The checks of the settings against each other and against the body.
fn validate(
    s: &Settings,
    given: BodySettings,
    body: &Body,
    most_workers: usize,
) -> Result<(), Error> {
    if given.step && !matches!(body, Body::Step(_)) {
        return Err(Error::setting(
            "interval",
            "only a step body has an interval: use .step(...), or sleep with ctl.sleep() in a run body",
        ));
    }
    if s.pool_size == 0 {
        return Err(Error::setting(
            "pool_size",
            "0 workers could handle no message: give at least 1",
        ));
    }
    if let Some(setting) = given.messages
        && !matches!(body, Body::Messages(_))
    {
        return Err(Error::setting(
            setting,
            "only a messages body has a worker pool: use .messages(get, handle)",
        ));
    }
    if s.pidfile.as_os_str().is_empty() {
        return Err(Error::setting(
            "pidfile",
            "the path is empty: give a file name",
        ));
    }
    if s.workdir.as_os_str().is_empty() {
        return Err(Error::setting(
            "workdir",
            "the path is empty: give a directory, or leave the default /",
        ));
    }
    if s.umask > 0o777 {
        return Err(Error::setting(
            "umask",
            format!(
                "{:#o} is not a file mode mask: give a value from 0o000 to 0o777",
                s.umask
            ),
        ));
    }
    if s.umask & 0o600 != 0 {
        return Err(Error::setting(
            "umask",
            format!(
                "{:#o} takes reading or writing from the daemon's own user: it could not read its pidfile or write its logs; keep 0o600 out of the mask, as 0o022 or 0o077 do",
                s.umask
            ),
        ));
    }
    if s.stop_timeout.is_zero() {
        return Err(Error::setting(
            "stop_timeout",
            "zero leaves the daemon no time to stop gracefully (SIGKILL at once): give a few seconds at least",
        ));
    }
    if let Some(grace) = s.grace
        && grace >= s.stop_timeout
    {
        return Err(Error::setting(
            "stop_grace",
            format!(
                "{grace:?} is not shorter than the stop timeout ({:?}): stop() would kill the daemon before its stop handlers could run; give less",
                s.stop_timeout
            ),
        ));
    }
    if s.pool_size > most_workers {
        let what = if most_workers == MAX_POOL_SIZE {
            "worker threads is more than the most a threaded pool may have"
        } else {
            "handlers is more than the most an async pool may have"
        };
        return Err(Error::setting(
            "pool_size",
            format!("{} {what}, {most_workers}: give fewer", s.pool_size),
        ));
    }
    if s.ready_timeout.is_zero() {
        return Err(Error::setting(
            "ready_timeout",
            "zero leaves the daemon no time to start: give a few seconds at least",
        ));
    }
    for (setting, path) in [("stdout", &s.stdout), ("stderr", &s.stderr)] {
        if let Some(path) = path
            && path.as_os_str().is_empty()
        {
            return Err(Error::setting(
                setting,
                "the path is empty: give a file name, or leave the default /dev/null",
            ));
        }
    }
    Ok(())
}

/// `path` made absolute against the current directory, `~/` standing for the home directory.
fn absolute(path: &Path, setting: &'static str) -> Result<PathBuf, Error> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    };
    let path = match path.strip_prefix("~") {
        Ok(rest) => match home() {
            Some(home) => home.join(rest),
            None => {
                return Err(Error::setting(
                    setting,
                    format!(
                        "{} starts with ~ but $HOME is not set: give an absolute path",
                        path.display()
                    ),
                ));
            }
        },
        Err(_) => path.to_path_buf(),
    };
    std::path::absolute(&path).map_err(|e| {
        Error::setting(
            setting,
            format!(
                "{} cannot be made absolute ({e}): give an absolute path",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signal;
    use std::time::Duration;

    #[test]
    fn a_body_is_required_and_only_one() {
        let none = Daemon::builder().pidfile("x.pid").build();
        assert!(matches!(none, Err(Error::NoBody)));
        let two = Daemon::builder()
            .pidfile("x.pid")
            .step(|| {})
            .run(|_| {})
            .build();
        assert!(matches!(two, Err(Error::SeveralBodies)));
    }

    #[test]
    fn the_pidfile_is_required_and_not_empty() {
        let missing = Daemon::builder().step(|| {}).build();
        assert!(matches!(
            missing,
            Err(Error::InvalidSetting {
                setting: "pidfile",
                ..
            })
        ));
        let empty = Daemon::builder().pidfile("").step(|| {}).build();
        assert!(matches!(
            empty,
            Err(Error::InvalidSetting {
                setting: "pidfile",
                ..
            })
        ));
    }

    #[test]
    fn uncatchable_signals_are_refused() {
        for signal in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV] {
            let result = Daemon::builder()
                .pidfile("x.pid")
                .on(signal, || {})
                .step(|| {})
                .build();
            assert!(matches!(result, Err(Error::ForbiddenSignal { signal: s }) if s == signal));
        }
    }

    #[test]
    fn odd_settings_are_refused() {
        let umask = Daemon::builder()
            .pidfile("x")
            .umask(0o1000)
            .step(|| {})
            .build();
        assert!(matches!(
            umask,
            Err(Error::InvalidSetting {
                setting: "umask",
                ..
            })
        ));
        let interval = Daemon::builder()
            .pidfile("x")
            .run(|_| {})
            .interval(Duration::from_secs(1))
            .build();
        assert!(matches!(
            interval,
            Err(Error::InvalidSetting {
                setting: "interval",
                ..
            })
        ));
        let timeout = Daemon::builder()
            .pidfile("x")
            .step(|| {})
            .ready_timeout(Duration::ZERO)
            .build();
        assert!(matches!(
            timeout,
            Err(Error::InvalidSetting {
                setting: "ready_timeout",
                ..
            })
        ));
        let log = Daemon::builder()
            .pidfile("x")
            .stdout("")
            .step(|| {})
            .build();
        assert!(matches!(
            log,
            Err(Error::InvalidSetting {
                setting: "stdout",
                ..
            })
        ));
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let refused = |b: DaemonBuilder, setting: &str| match b.build() {
            Err(Error::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{setting}: {other:?}"),
        };
        let b = || Daemon::builder().pidfile("x").step(|| {});
        refused(b().stop_timeout(Duration::ZERO), "stop_timeout");
        refused(b().umask(0o777), "umask");
        refused(b().umask(0o200), "umask");
        let pool = || {
            Daemon::builder()
                .pidfile("x")
                .messages(|| None::<u8>, |_m| {})
        };
        refused(pool().pool_size(usize::MAX), "pool_size");
        assert!(pool().pool_size(MAX_POOL_SIZE).build().is_ok());
        // Durations too long to add to an instant are accepted: waits saturate.
        assert!(
            b().ready_timeout(Duration::MAX)
                .stop_timeout(Duration::MAX)
                .build()
                .is_ok()
        );
        assert!(b().umask(0o077).build().is_ok());
    }

    #[test]
    fn pool_settings_need_a_messages_body() {
        let zero = Daemon::builder()
            .pidfile("x")
            .messages(|| None::<u8>, |_m| {})
            .pool_size(0)
            .build();
        assert!(matches!(
            zero,
            Err(Error::InvalidSetting {
                setting: "pool_size",
                ..
            })
        ));
        let stray = Daemon::builder()
            .pidfile("x")
            .step(|| {})
            .pool_size(4)
            .build();
        assert!(matches!(
            stray,
            Err(Error::InvalidSetting {
                setting: "pool_size",
                ..
            })
        ));
        let two = Daemon::builder()
            .pidfile("x")
            .messages(|| None::<u8>, |_m| {})
            .step(|| {})
            .build();
        assert!(matches!(two, Err(Error::SeveralBodies)));
        let fine = Daemon::builder()
            .pidfile("x")
            .messages(|| None::<u8>, |_m| {})
            .pool_size(16)
            .build();
        assert!(fine.is_ok());
    }

    #[test]
    fn unknown_users_are_build_errors() {
        let user = Daemon::builder()
            .pidfile("x")
            .user("no-such-user-anywhere")
            .step(|| {})
            .build();
        assert!(matches!(
            user,
            Err(Error::InvalidSetting {
                setting: "user",
                ..
            })
        ));
        let group = Daemon::builder()
            .pidfile("x")
            .group("no-such-group-anywhere")
            .step(|| {})
            .build();
        assert!(matches!(
            group,
            Err(Error::InvalidSetting {
                setting: "group",
                ..
            })
        ));
    }

    #[test]
    fn relative_paths_become_absolute_at_build() {
        let daemon = Daemon::builder()
            .pidfile("run/x.pid")
            .stdout("x.log")
            .workdir(".")
            .step(|| {})
            .build()
            .expect("valid");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(daemon.pidfile(), cwd.join("run/x.pid"));
        assert!(
            daemon
                .engine()
                .settings()
                .stdout
                .as_deref()
                .is_some_and(Path::is_absolute)
        );
        assert!(daemon.engine().settings().workdir.is_absolute());
    }

    #[test]
    fn a_tilde_is_the_home_directory() {
        let daemon = Daemon::builder()
            .pidfile("~/x.pid")
            .step(|| {})
            .build()
            .expect("valid");
        let home = std::env::var_os("HOME").expect("HOME is set for the tests");
        assert_eq!(daemon.pidfile(), Path::new(&home).join("x.pid"));
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_bodies_have_their_own_limits_and_runtime_settings() {
        let refused = |b: DaemonBuilder, setting: &str| match b.build() {
            Err(Error::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{setting}: {other:?}"),
        };
        let pool = || {
            Daemon::builder()
                .pidfile("x")
                .messages_async(|| async { None::<u8> }, |_m| async {})
        };
        assert!(pool().pool_size(100_000).build().is_ok());
        refused(pool().pool_size(100_001), "pool_size");
        assert!(pool().worker_threads(2).build().is_ok());
        refused(pool().worker_threads(0), "worker_threads");
        // Told before the body, as well as after.
        let early = Daemon::builder()
            .pidfile("x")
            .worker_threads(3)
            .run_async(|ctl| async move { ctl.stopped().await });
        assert!(early.build().is_ok());
        refused(
            Daemon::builder().pidfile("x").step(|| {}).worker_threads(2),
            "worker_threads",
        );
        refused(
            Daemon::builder()
                .pidfile("x")
                .run_async(|_ctl| async {})
                .pool_size(8),
            "pool_size",
        );
        assert!(matches!(
            Daemon::builder()
                .pidfile("x")
                .run_async(|_ctl| async {})
                .step(|| {})
                .build(),
            Err(Error::SeveralBodies)
        ));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let daemon = Daemon::builder()
            .pidfile("/x.pid")
            .step(|| {})
            .build()
            .expect("valid");
        let s = daemon.engine().settings();
        assert_eq!(s.workdir, Path::new("/"));
        assert_eq!(s.umask, 0o022);
        assert_eq!(s.stop_timeout, Duration::from_secs(10));
        assert!(s.stdout.is_none() && s.stderr.is_none());
    }
}
