//! The command line of an init-script service, in one call: `start`, `stop`, `restart`, `status`,
//! `reload`, `run` and `help`.
//!
//! ```no_run
//! use daemons::Daemon;
//! use std::process::ExitCode;
//!
//! fn main() -> ExitCode {
//!     Daemon::builder()
//!         .pidfile("/tmp/counter.pid")
//!         .step(|| println!("tick"))
//!         .interval(std::time::Duration::from_secs(1))
//!         .cli()
//! }
//! ```
//!
//! Each command prints one line that names the daemon and its pid (`counter: started (pid
//! 4242)`) and exits with the code that the LSB init-script conventions give:
//!
//! | command | outcome | exit code |
//! | --- | --- | --- |
//! | `start` | started, or already running (says so) | 0 |
//! | `stop` | stopped (after SIGTERM, or killed after the stop timeout), or was not running | 0 |
//! | `restart` | stopped if it ran, then started; with listening sockets, handed to the new instance (`restarted (pid N, on the same sockets)`), or, when they cannot be, stopped, then started, with the reason on stderr | 0 |
//! | `reload` | SIGHUP sent | 0 |
//! | `run` | ran in the foreground ([`Daemon::run`](crate::Daemon::run), not the body kind `.run(\|ctl\| ..)`) and stopped cleanly | 0 |
//! | `run` | a second stop signal during the stop forced the end (a second Ctrl-C) | 128 + the signal's number: 130 for SIGINT |
//! | `status` | running | 0 |
//! | `status` | not running, but a stale pidfile is left (with the reason, when it failed) | 1 |
//! | `status` | not running (the line names the pidfile it looked at) | 3 |
//! | `status` | unknown (the pidfile cannot be read or trusted, its lock is held by a process that is not the daemon, or the daemon is another program's) | 4 |
//! | any | failed: the error goes to stderr (another program's pidfile, another user's daemon: nothing is signalled) | 1 |
//! | none, unknown, or followed by more arguments | usage printed to stderr | 2 |
//! | `help`, `--help`, `-h` | usage printed to stdout | 0 |
//! | a command of the program's own ([`DaemonBuilder::command`](crate::DaemonBuilder::command)) | its function returned `Ok` | 0 |
//! | a command of the program's own | its function returned `Err`: `NAME: COMMAND: ERROR` on stderr | 1 |
//!
//! Built from the builder ([`DaemonBuilder::cli`](crate::DaemonBuilder::cli)), the command line
//! also takes `--pidfile PATH` before the command, which overrides the pidfile the program
//! gives: a logrotate `postrotate` script or a second instance can name its pidfile without the
//! service's environment (`counter --pidfile /run/counter.pid reload`). The program's own
//! commands, given with [`DaemonBuilder::command`](crate::DaemonBuilder::command), are listed
//! in the usage with their help, take `--pidfile` too, and exit 0 or 1.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Pid, Signal};

use crate::control::Stopped;
use crate::error::Error;
use crate::handle::builder::DaemonBuilder;
use crate::handle::daemon::Daemon;
use crate::handle::restart::Restarted;
use crate::pidfile::Status;

/// The commands that every command line has (`--help` and `-h` are options of `help`).
pub(super) const BUILT_IN_COMMANDS: [&str; 8] = [
    "start", "stop", "restart", "status", "health", "reload", "run", "help",
];

impl Daemon {
    /// Run the command named by the program's first argument (see [the table](crate::cli)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::process::ExitCode;
    ///
    /// fn main() -> ExitCode {
    ///     match daemons::Daemon::builder().pidfile("/tmp/x.pid").step(|| {}).build() {
    ///         Ok(daemon) => daemon.cli(),
    ///         Err(e) => {
    ///             eprintln!("{e:#}");
    ///             ExitCode::FAILURE
    ///         }
    ///     }
    /// }
    /// ```
    pub fn cli(&self) -> ExitCode {
        self.cli_from(std::env::args_os().skip(1))
    }

    /// Run the command named by the first of `args` (the program's name left out), for programs
    /// that parse their own arguments, and for tests.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::process::ExitCode;
    ///
    /// let daemon = daemons::Daemon::builder().pidfile("/tmp/doc-cli.pid").step(|| {}).build()?;
    /// assert_eq!(daemon.cli_from(["status"]), ExitCode::from(3));   // not running
    /// assert_eq!(daemon.cli_from(["stop"]), ExitCode::SUCCESS);      // nothing to stop is fine
    /// assert_eq!(daemon.cli_from(["frobnicate"]), ExitCode::from(2));
    /// assert_eq!(daemon.cli_from(["stop", "now"]), ExitCode::from(2));   // one command, no more
    /// # Ok::<(), daemons::Error>(())
    /// ```
    pub fn cli_from<I, S>(&self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = args.into_iter();
        let command = args
            .next()
            .map(|a| a.as_ref().to_string_lossy().into_owned());
        if let Some(extra) = args.next() {
            eprintln!(
                "{}: unexpected argument {:?} after the command\n{}",
                self.name(),
                extra.as_ref(),
                self.usage()
            );
            return ExitCode::from(2);
        }
        let code = match command.as_deref() {
            Some("start") => self.cli_start(),
            Some("stop") => self.cli_stop(),
            Some("restart") => self.cli_restart(),
            Some("status") => self.cli_status(),
            Some("health") => self.cli_health(),
            Some("reload") => self.cli_reload(),
            Some("run") => self.cli_run(),
            Some("help" | "--help" | "-h") => {
                println!("{}", self.usage());
                0
            }
            Some(name) if let Some(command) = self.commands().iter().find(|c| c.name == name) => {
                match (command.run)(self) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!(
                            "{}{}: {name}: {}",
                            journal_priority(),
                            self.name(),
                            crate::error::chain_text(&*e)
                        );
                        1
                    }
                }
            }
            _ => {
                eprintln!("{}", self.usage());
                2
            }
        };
        ExitCode::from(code)
    }

    fn usage(&self) -> String {
        let mut commands = BUILT_IN_COMMANDS.join("|");
        let mut own = String::new();
        for command in self.commands() {
            commands.push('|');
            commands.push_str(&command.name);
            own.push_str(&format!("\n  {:<8} {}", command.name, command.help));
        }
        format!(
            "usage: {} [--pidfile PATH] {commands}\n\
             \x20 start    start in the background (pidfile {})\n\
             \x20 stop     stop gracefully (SIGTERM; SIGKILL after the stop timeout)\n\
             \x20 restart  stop if running, then start (listening sockets: handed to the new instance)\n\
             \x20 status   exit 0 running, 1 dead with a pidfile left, 3 not running, 4 unknown\n\
             \x20 health   exit 0 only while running and its body showed life lately\n\
             \x20 reload   send SIGHUP\n\
             \x20 run      run in the foreground (Ctrl-C stops; a second Ctrl-C forces the end){own}",
            self.name(),
            self.pidfile().display()
        )
    }

    /// Say an error with its sources (`{:#}`): the system's own reason (`Not a directory`,
    /// `Read-only file system`) is often what tells the operator what to do.
    fn fail(&self, e: &Error) -> u8 {
        eprintln!("{}{}: {e:#}", journal_priority(), self.name());
        1
    }

    fn cli_start(&self) -> u8 {
        self.say_started(self.start())
    }

    /// What a start said: started, or already running (not a failure), or why it failed.
    fn say_started(&self, started: Result<Pid, Error>) -> u8 {
        match started {
            Ok(pid) => {
                println!("{}: started (pid {pid})", self.name());
                0
            }
            Err(Error::AlreadyRunning { pid: Some(pid), .. }) => {
                println!("{}: already running (pid {pid})", self.name());
                0
            }
            Err(Error::AlreadyRunning { pid: None, .. }) => {
                println!("{}: already running (starting)", self.name());
                0
            }
            Err(e) => self.fail(&e),
        }
    }

    fn cli_stop(&self) -> u8 {
        match self.stop() {
            Ok(stopped) => {
                self.say_stopped(stopped);
                0
            }
            Err(e) => self.fail(&e),
        }
    }

    fn say_stopped(&self, stopped: Stopped) {
        println!("{}: {}", self.name(), stopped.with_pidfile(self.pidfile()));
    }

    /// A restart: the listening sockets handed over, or a stop (said at once, with the reason
    /// the sockets could not be handed over), then a start, said as `start` says it.
    fn cli_restart(&self) -> u8 {
        let name = self.name();
        let mut stopped = false;
        let restarted = self.restart_saying(|how, fallback| {
            if let Some(why) = fallback {
                eprintln!("{name}: {why:#}; stopping, then starting instead");
            }
            self.say_stopped(*how);
            stopped = true;
        });
        match restarted {
            Ok(restarted @ Restarted::HandedOver { .. }) => {
                println!("{name}: {restarted}");
                0
            }
            Ok(Restarted::StoppedThenStarted { pid, .. }) => self.say_started(Ok(pid)),
            Err(e) if stopped => self.say_started(Err(e)),
            Err(e) => self.fail(&e),
        }
    }

    /// `health`: 0 while the body shows life, 1 wedged, 3 not running, 4 unknown.
    fn cli_health(&self) -> u8 {
        let name = self.name();
        match self.health() {
            Ok(health) => {
                println!("{name}: {health}");
                match health {
                    crate::Health::Healthy { .. } => 0,
                    crate::Health::Wedged { .. } => 1,
                    crate::Health::NotRunning => 3,
                }
            }
            Err(e) => {
                eprintln!("{name}: health unknown: {e}");
                4
            }
        }
    }

    fn cli_status(&self) -> u8 {
        let name = self.name();
        match self.status() {
            Ok(status) => {
                println!("{name}: {}", status.with_pidfile(self.pidfile()));
                exit_code(&status)
            }
            Err(e) => {
                eprintln!("{name}: status unknown: {e:#}");
                4
            }
        }
    }

    fn cli_reload(&self) -> u8 {
        match self.send(Signal::SIGHUP) {
            Ok(pid) => {
                println!("{}: reloading (pid {pid})", self.name());
                0
            }
            Err(e) => self.fail(&e),
        }
    }

    fn cli_run(&self) -> u8 {
        match self.run() {
            Ok(()) => 0,
            Err(e) => self.fail(&e),
        }
    }
}

impl DaemonBuilder {
    /// Build the daemon and run the command named by the program's first argument: the whole
    /// `main` of a small tool. A build error is printed and exits 1.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn main() -> std::process::ExitCode {
    ///     daemons::Daemon::builder()
    ///         .pidfile("/tmp/beat.pid")
    ///         .step(|| println!("beat"))
    ///         .interval(std::time::Duration::from_secs(1))
    ///         .cli()
    /// }
    /// ```
    #[must_use]
    pub fn cli(self) -> ExitCode {
        self.cli_from(std::env::args_os().skip(1))
    }

    /// [`cli`](DaemonBuilder::cli) with the arguments given (the program's name left out).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::process::ExitCode;
    ///
    /// // A build error is reported, not a panic.
    /// let code = daemons::Daemon::builder().pidfile("/tmp/doc-x.pid").cli_from(["status"]);
    /// assert_eq!(code, ExitCode::FAILURE);
    /// ```
    pub fn cli_from<I, S>(mut self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        // `--pidfile PATH` (or `--pidfile=PATH`) before the command: a logrotate `postrotate`
        // or a second instance names its pidfile without the environment of the service.
        match take_pidfile_option(&mut args) {
            Ok(Some(path)) => self = self.pidfile(path),
            Ok(None) => {}
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
        }
        match self.build() {
            Ok(daemon) => daemon.cli_from(args),
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Under systemd, a failure said on stderr is an error in the journal (`journalctl -p err`).
fn journal_priority() -> &'static str {
    if crate::engine::stderr_is_journal() {
        "<3>"
    } else {
        ""
    }
}

/// The LSB exit code of `status`: 0 running, 1 dead with a pidfile left, 3 not running.
fn exit_code(status: &Status) -> u8 {
    match status {
        Status::Running(_) | Status::Supervised { .. } | Status::Starting => 0,
        Status::Dead { .. } => 1,
        Status::NotRunning => 3,
    }
}

/// Remove a leading `--pidfile PATH` or `--pidfile=PATH` from `args`, and return the path.
fn take_pidfile_option(args: &mut Vec<std::ffi::OsString>) -> Result<Option<PathBuf>, String> {
    let Some(first) = args.first().and_then(|a| a.to_str()) else {
        return Ok(None);
    };
    if let Some(path) = first.strip_prefix("--pidfile=") {
        let path = PathBuf::from(path);
        args.remove(0);
        return Ok(Some(path));
    }
    if first != "--pidfile" {
        return Ok(None);
    }
    if args.len() < 2 {
        return Err("--pidfile needs a path: --pidfile /run/NAME.pid COMMAND".to_string());
    }
    let path = PathBuf::from(args.remove(1));
    args.remove(0);
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pidfile_option_comes_before_the_command() {
        let mut args: Vec<std::ffi::OsString> =
            vec!["--pidfile".into(), "/run/x.pid".into(), "reload".into()];
        assert_eq!(
            take_pidfile_option(&mut args),
            Ok(Some(PathBuf::from("/run/x.pid")))
        );
        assert_eq!(args, ["reload"]);
        let mut args: Vec<std::ffi::OsString> =
            vec!["--pidfile=/run/y.pid".into(), "status".into()];
        assert_eq!(
            take_pidfile_option(&mut args),
            Ok(Some(PathBuf::from("/run/y.pid")))
        );
        assert_eq!(args, ["status"]);
        let mut args: Vec<std::ffi::OsString> = vec!["status".into(), "--pidfile".into()];
        assert_eq!(take_pidfile_option(&mut args), Ok(None));
        let mut args: Vec<std::ffi::OsString> = vec!["--pidfile".into()];
        assert!(take_pidfile_option(&mut args).is_err());
    }
}
