//! The harness of the integration tests: a fixture daemon in a temporary directory, started,
//! stopped and probed from outside through the `daemons-fixture` binary ([`Fixture`]) or the
//! `daemons-service` binary ([`Service`]), the way a user's init script would, and killed on drop
//! whatever happened to the test. What the two harnesses share (the directory, the daemons seen
//! started and reaped, the cleanup) is a [`Tracker`].
//!
//! The test process never calls `start()` itself: it runs many threads, and `start()` forks.
//! It does make itself a child subreaper, so that every detached daemon (whose parent exits
//! during the double fork) is reparented to it: the test can then `waitpid` a daemon and read
//! its real exit status, and no daemon pid can be reused before the test has reaped it.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

use std::fs;
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tempfile::TempDir;

/// The fixture binary that cargo built for these tests.
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_daemons-fixture");

/// How long any condition may take to come true. Generous: a loaded 2-core machine can be slow,
/// and a condition that holds returns at once.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The unprivileged user of the tests that need one (they run only as root).
pub const NOBODY: u32 = 65534;

/// How long one fixture command may take before the test calls it hung.
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// Poll `cond` every few milliseconds until it holds or `deadline` has passed; says which.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

static SUBREAPER: Once = Once::new();

/// The part of a harness that does not depend on its binary: a temporary directory, the marks
/// file in it, every daemon seen started and every one reaped. On drop it kills every daemon
/// that was started and not reaped, and every live process that names the directory, then reaps
/// them. [`Fixture`] and [`Service`] dereference to it.
pub struct Tracker {
    dir: TempDir,
    /// The files of `/proc/PID` (besides its descriptors) that name the directory when the
    /// process belongs to this harness.
    proc_files: &'static [&'static str],
    started: Mutex<Vec<Pid>>,
    reaped: Mutex<Vec<Pid>>,
}

impl Tracker {
    /// A fresh temporary directory named `prefix...`; makes this process the child subreaper.
    fn new(prefix: &str, proc_files: &'static [&'static str]) -> Tracker {
        SUBREAPER.call_once(|| {
            nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
        });
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create a temporary directory");
        Tracker {
            dir,
            proc_files,
            started: Mutex::new(Vec::new()),
            reaped: Mutex::new(Vec::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The lines that the daemon's handlers and body appended to the marks file.
    pub fn marks(&self) -> Vec<String> {
        fs::read_to_string(self.path("marks"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many lines of the marks file are exactly `mark`.
    pub fn count(&self, mark: &str) -> usize {
        self.marks().iter().filter(|m| *m == mark).count()
    }

    /// How many lines of the marks file start with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.marks()
            .iter()
            .filter(|m| m.starts_with(prefix))
            .count()
    }

    /// Remember daemons that a command started, to kill them on drop unless they are reaped.
    fn track(&self, pids: impl IntoIterator<Item = Pid>) {
        self.started.lock().expect("started").extend(pids);
    }

    /// Wait for the daemon `pid` (a child of this process, which is their subreaper) to end,
    /// reap it and return how it ended.
    pub fn reap(&self, pid: Pid) -> WaitStatus {
        let mut status = None;
        let ended = wait_until(DEADLINE, || {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => false,
                Ok(s) => {
                    status = Some(s);
                    true
                }
                Err(e) => panic!("waitpid({pid}): {e} (is the test process not its subreaper?)"),
            }
        });
        assert!(ended, "daemon {pid} did not end within {DEADLINE:?}");
        self.reaped.lock().expect("reaped").push(pid);
        status.expect("a status")
    }

    /// The exit code of the daemon `pid`, which must exit (not be killed) within the deadline.
    pub fn exit_code(&self, pid: Pid) -> i32 {
        match self.reap(pid) {
            WaitStatus::Exited(_, code) => code,
            other => panic!("daemon {pid} did not exit normally: {other:?}"),
        }
    }

    /// Live processes that belong to this harness: one of their `proc_files` (the command
    /// line, and for a service the environment) or one of their descriptors names the
    /// temporary directory.
    pub fn processes(&self) -> Vec<Pid> {
        let dir = self.dir.path().as_os_str().as_bytes();
        let me = std::process::id() as i32;
        all_pids()
            .into_iter()
            .filter(|&pid| pid.as_raw() != me && alive(pid))
            .filter(|&pid| {
                self.proc_files.iter().any(|f| {
                    contains(
                        &fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default(),
                        dir,
                    )
                }) || fd_targets(pid)
                    .iter()
                    .any(|t| contains(t.as_os_str().as_bytes(), dir))
            })
            .collect()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let reaped = self.reaped.lock().map(|r| r.clone()).unwrap_or_default();
        let mut doomed: Vec<Pid> = self
            .started
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|pid| !reaped.contains(pid))
            .collect();
        doomed.extend(self.processes());
        for &pid in &doomed {
            let _ = kill(pid, Signal::SIGKILL);
        }
        for pid in doomed {
            // Reap what became our child; a process that is not ours answers ECHILD at once.
            wait_until(Duration::from_secs(2), || {
                !matches!(
                    waitpid(pid, Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive)
                )
            });
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A command that runs in the background with its stdout and stderr captured, as `start | cat`
/// would capture them; [`Running::finish`] collects it.
pub struct Running {
    /// What it runs, for messages: `fixture` or `service`.
    what: &'static str,
    pid: Pid,
    since: Instant,
    output: mpsc::Receiver<std::io::Result<Output>>,
}

impl Running {
    /// Launch `command` and return at once.
    fn spawn(what: &'static str, mut command: Command) -> Running {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let since = Instant::now();
        let child: Child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {what}: {e:?}"));
        let pid = Pid::from_raw(child.id() as i32);
        let (tx, output) = mpsc::channel();
        // A reader that blocks (because a daemon kept the pipe open) must not block the test:
        // it waits on a thread of its own and the test gives up after a deadline.
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        Running {
            what,
            pid,
            since,
            output,
        }
    }

    /// Wait at most [`COMMAND_DEADLINE`] for the command to end (or kill it and fail), and
    /// return its output and how long it ran.
    fn finish(self) -> (Output, Duration) {
        let what = self.what;
        let output = match self.output.recv_timeout(COMMAND_DEADLINE) {
            Ok(output) => output.unwrap_or_else(|e| panic!("wait for the {what}: {e:?}")),
            Err(_) => {
                let _ = kill(self.pid, Signal::SIGKILL);
                panic!(
                    "{what} pid {} did not finish within {COMMAND_DEADLINE:?}",
                    self.pid
                );
            }
        };
        (output, self.since.elapsed())
    }
}

/// What a fixture command printed, and how it exited.
#[derive(Debug)]
pub struct Reply {
    /// The one line it printed on stdout, without the newline.
    pub line: String,
    /// Its stderr, for failure messages.
    pub stderr: String,
    pub status: ExitStatus,
    /// The fixture process itself (the caller of `start()`, not the daemon).
    pub fixture: Pid,
    /// From spawn to the end of its output and exit.
    pub elapsed: Duration,
}

impl Reply {
    /// The `n`th word of the line (`started 42` → word 0 is `started`).
    pub fn word(&self, n: usize) -> &str {
        self.line.split_whitespace().nth(n).unwrap_or("")
    }

    /// The pid that the line names as its second word (`started PID`, `error VARIANT PID ...`).
    pub fn pid(&self) -> Pid {
        let word = if self.word(0) == "error" {
            self.word(2)
        } else {
            self.word(1)
        };
        let raw = word
            .parse()
            .unwrap_or_else(|_| panic!("no pid in {:?} (stderr: {})", self.line, self.stderr));
        Pid::from_raw(raw)
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Assert that the command failed with exit code 1 and the error `variant`.
    pub fn assert_error(&self, variant: &str) {
        assert_eq!(
            (self.word(0), self.word(1)),
            ("error", variant),
            "line {:?}, stderr {}",
            self.line,
            self.stderr
        );
        assert_eq!(self.code(), Some(1), "{:?}", self.line);
    }
}

/// One test's daemon: a temporary directory, the pidfile in it, and every daemon seen started.
pub struct Fixture {
    tracker: Tracker,
    pidfile: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        // A daemon is a fork of the fixture, so its command line names its pidfile.
        let tracker = Tracker::new("daemons-test-", &["cmdline"]);
        let pidfile = tracker.path("daemon.pid");
        Fixture { tracker, pidfile }
    }

    pub fn pidfile(&self) -> &Path {
        &self.pidfile
    }

    /// The pidfile's content, if it exists.
    pub fn pidfile_content(&self) -> Option<String> {
        fs::read_to_string(&self.pidfile).ok()
    }

    /// A command line of the fixture: `COMMAND PIDFILE REST... --marks DIR/marks`.
    pub fn command_at(&self, pidfile: &Path, args: &[&str]) -> Command {
        let (first, rest) = args.split_first().expect("a fixture command");
        let mut command = Command::new(FIXTURE);
        command.arg(first).arg(pidfile);
        // `send` takes its signal right after the pidfile.
        command.args(rest).arg("--marks").arg(self.path("marks"));
        command
    }

    /// Run `fixture COMMAND PIDFILE ARGS...` on this fixture's pidfile.
    pub fn run(&self, args: &[&str]) -> Reply {
        self.run_at(&self.pidfile.clone(), args)
    }

    /// Run a fixture command on another pidfile.
    pub fn run_at(&self, pidfile: &Path, args: &[&str]) -> Reply {
        self.execute(self.command_at(pidfile, args))
    }

    /// Run a prepared fixture command to its end.
    pub fn execute(&self, command: Command) -> Reply {
        let running = self.spawn(command);
        self.finish(running)
    }

    /// Launch a fixture command and return at once; its stdout and stderr are captured, as
    /// `start | cat` would.
    pub fn spawn(&self, command: Command) -> Running {
        Running::spawn("fixture", command)
    }

    /// Wait for a launched fixture command, at most [`COMMAND_DEADLINE`].
    pub fn finish(&self, running: Running) -> Reply {
        let fixture = running.pid;
        let (output, elapsed) = running.finish();
        let reply = Reply {
            line: String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status,
            fixture,
            elapsed,
        };
        if reply.word(0) == "started" {
            self.tracker.track([reply.pid()]);
        }
        reply
    }

    /// Start a daemon on this fixture's pidfile with `options`, and return its pid.
    pub fn start(&self, options: &[&str]) -> Pid {
        let mut args = vec!["start"];
        args.extend_from_slice(options);
        let reply = self.run(&args);
        assert_eq!(
            (reply.word(0), reply.code()),
            ("started", Some(0)),
            "start {options:?}: {:?}, stderr {}",
            reply.line,
            reply.stderr
        );
        reply.pid()
    }

    /// `stop`, asserting that it stopped the daemon `pid` gracefully.
    pub fn stop_gracefully(&self, pid: Pid) -> Reply {
        let reply = self.run(&["stop"]);
        assert_eq!(
            (reply.word(0), reply.pid(), reply.word(2), reply.code()),
            ("stopped", pid, "exited", Some(0)),
            "{:?}",
            reply.line
        );
        reply
    }
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture::new()
    }
}

/// The directory, the marks, [`reap`](Tracker::reap) and [`processes`](Tracker::processes).
impl Deref for Fixture {
    type Target = Tracker;

    fn deref(&self) -> &Tracker {
        &self.tracker
    }
}

/// An unrelated process, `sleep 1000`, killed and reaped on drop.
///
/// It blocks every signal, so a signal sent to it stays pending where `/proc` shows it: the tests
/// can tell, without a race, that nobody signalled it.
pub struct Bystander(Child);

impl Bystander {
    pub fn sleep() -> Bystander {
        Bystander::spawn(&mut Command::new("sleep"))
    }

    /// A bystander that leads a process group of its own.
    pub fn group_leader() -> Bystander {
        Bystander::spawn(Command::new("sleep").process_group(0))
    }

    /// A bystander that runs as `nobody` (uid and gid 65534); only root can spawn it.
    pub fn nobody() -> Bystander {
        Bystander::spawn(Command::new("sleep").uid(NOBODY).gid(NOBODY))
    }

    fn spawn(command: &mut Command) -> Bystander {
        command
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: sigprocmask is async-signal-safe, and the mask survives exec.
        unsafe {
            command.pre_exec(|| {
                sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None)
                    .map_err(std::io::Error::from)
            });
        }
        Bystander(command.spawn().expect("spawn a bystander"))
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Whether a signal was sent to it: blocked, it is still pending.
    pub fn signalled(&self) -> bool {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the bystander's status");
        status
            .lines()
            .filter_map(|l| l.strip_prefix("ShdPnd:").or(l.strip_prefix("SigPnd:")))
            .any(|mask| u64::from_str_radix(mask.trim(), 16) != Ok(0))
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fields of `/proc/PID/stat` that the tests look at.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
}

pub fn stat(pid: Pid) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse().ok());
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: number(1)?,
        pgrp: number(2)?,
        session: number(3)?,
        tty_nr: number(4)?,
    })
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: Pid) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// Where each open descriptor of `pid` points.
pub fn fd_targets(pid: Pid) -> Vec<PathBuf> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Where descriptor `fd` of `pid` points.
pub fn fd_target(pid: Pid, fd: i32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap_or_else(|e| panic!("descriptor {fd} of pid {pid}: {e}"))
}

/// The `Umask:` line of `/proc/PID/status`, e.g. `0022`.
pub fn umask(pid: Pid) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("an Umask line")
        .trim()
        .to_owned()
}

pub fn cwd(pid: Pid) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/cwd")).expect("read the cwd link")
}

/// Every process id in /proc.
pub fn all_pids() -> Vec<Pid> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// The zombies whose parent is this test process.
pub fn zombie_children() -> Vec<Pid> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.state == 'Z' && s.ppid == me))
        .collect()
}

/// How many descriptors this test process has open.
pub fn open_fd_count() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// The service fixture: `daemons-service`, a daemon written as a user writes one (ending in
// `.cli()`) and configured through `SERVICE_*` environment variables.

/// The service binary that cargo built for these tests.
pub const SERVICE: &str = env!("CARGO_BIN_EXE_daemons-service");

/// What one `daemons-service` command printed, and how it exited.
#[derive(Debug)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
    /// From spawn to the end of its output and exit.
    pub elapsed: Duration,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Every pid that the output names as `(pid N` or `pid N)`, stdout first.
    pub fn pids(&self) -> Vec<Pid> {
        Out::pids_in(&format!("{}\n{}", self.stdout, self.stderr))
    }

    /// The first pid that the output names.
    pub fn pid(&self) -> Pid {
        *self
            .pids()
            .first()
            .unwrap_or_else(|| panic!("no pid in the output: {self:?}"))
    }
}

/// One test's service: a temporary directory with its pidfile, marks file and stderr log, the
/// environment that configures it, and every daemon that it saw started, killed on drop.
pub struct Service {
    tracker: Tracker,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Service {
    /// A service whose pidfile, marks file (`SERVICE_MARKS`) and stderr log (`SERVICE_STDERR`)
    /// are in a fresh temporary directory; nothing else is set.
    pub fn new() -> Service {
        // A daemon inherits the environment, which names the directory, of the command that
        // started it.
        let mut service = Service {
            tracker: Tracker::new("daemons-service-", &["environ", "cmdline"]),
            env: Vec::new(),
        };
        for (key, name) in [
            ("SERVICE_PIDFILE", "service.pid"),
            ("SERVICE_MARKS", "marks"),
            ("SERVICE_STDERR", "stderr.log"),
        ] {
            let path = service.path(name);
            service.set(key, path);
        }
        service
    }

    /// Set an environment variable of every later command.
    pub fn set(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Service {
        self.unset(key);
        self.env.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// [`set`](Service::set), by value.
    pub fn with(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Service {
        self.set(key, value);
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Service {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn pidfile(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "SERVICE_PIDFILE")
            .map(|(_, v)| PathBuf::from(v))
            .expect("SERVICE_PIDFILE is set")
    }

    /// The daemon's stderr log (the default `SERVICE_STDERR`).
    pub fn stderr_log(&self) -> String {
        fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    /// `daemons-service ARGS...` with this service's environment and nothing else.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SERVICE);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Run a command to its end (at most [`COMMAND_DEADLINE`]), its output captured as
    /// `start | cat` would.
    pub fn run(&self, args: &[&str]) -> Out {
        self.execute(self.command(args))
    }

    /// Run a prepared command to its end.
    pub fn execute(&self, command: Command) -> Out {
        let (output, elapsed) = Running::spawn("service", command).finish();
        let out = Out {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status,
            elapsed,
        };
        self.tracker.track(
            out.stdout
                .lines()
                .filter(|l| l.contains(": started (pid "))
                .filter_map(|line| Out::pids_in(line).first().copied()),
        );
        // A daemon that was killed at a start timeout is a child of this subreaper too.
        if out.stderr.contains("was killed (pid ") {
            self.tracker.track(Out::pids_in(&out.stderr));
        }
        out
    }

    /// `start`, asserting that it started a daemon, whose pid it returns.
    pub fn start(&self) -> Pid {
        let out = self.run(&["start"]);
        assert!(
            out.code() == Some(0) && out.stdout.contains(": started (pid "),
            "start: {out:?}\nstderr log: {}",
            self.stderr_log()
        );
        out.pid()
    }

    /// `stop`, asserting that the daemon `pid` exited after SIGTERM (was not killed) and left
    /// no pidfile.
    pub fn stop_gracefully(&self, pid: Pid) -> Out {
        let out = self.run(&["stop"]);
        assert_eq!(out.code(), Some(0), "{out:?}");
        assert!(
            out.stdout.contains(&format!("stopped (pid {pid}, after ")),
            "stopped gracefully, not killed: {out:?}\nstderr log: {}",
            self.stderr_log()
        );
        assert!(!self.pidfile().exists(), "the pidfile is removed");
        out
    }

    /// Spawn `daemons-service ARGS...` in the foreground (for `run`), its stdout and stderr in
    /// `run.out` and `run.err` of the temporary directory; killed on drop.
    pub fn foreground(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Foreground {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        command
            .stdout(fs::File::create(self.path("run.out")).expect("create run.out"))
            .stderr(fs::File::create(self.path("run.err")).expect("create run.err"));
        Foreground(
            command
                .spawn()
                .expect("spawn the service in the foreground"),
        )
    }

    /// Processes that have `path` open, even if it was unlinked since.
    pub fn holders(path: &Path) -> Vec<Pid> {
        let mut deleted = path.as_os_str().to_owned();
        deleted.push(" (deleted)");
        all_pids()
            .into_iter()
            .filter(|&pid| {
                fd_targets(pid)
                    .iter()
                    .any(|t| t == path || t.as_os_str() == deleted)
            })
            .collect()
    }
}

impl Out {
    /// Every pid that `text` names as `pid N`.
    pub fn pids_in(text: &str) -> Vec<Pid> {
        text.match_indices("pid ")
            .filter_map(|(at, _)| {
                let digits: String = text[at + 4..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok().map(Pid::from_raw)
            })
            .collect()
    }
}

impl Default for Service {
    fn default() -> Service {
        Service::new()
    }
}

/// The directory, the marks, [`reap`](Tracker::reap) and [`processes`](Tracker::processes).
impl Deref for Service {
    type Target = Tracker;

    fn deref(&self) -> &Tracker {
        &self.tracker
    }
}

/// A service running in the foreground (`run`), a child of the test; killed and reaped on drop.
pub struct Foreground(Child);

impl Foreground {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the foreground service");
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Wait at most [`DEADLINE`] for it to exit, and return how it ended.
    pub fn wait(&mut self) -> ExitStatus {
        let mut status = None;
        let ended = wait_until(DEADLINE, || {
            status = self.0.try_wait().expect("try_wait");
            status.is_some()
        });
        assert!(
            ended,
            "the foreground service did not exit within {DEADLINE:?}"
        );
        status.expect("a status")
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
