//! The harness of the integration tests: a [`Fixture`] is the `daemons-fixture` daemon in a
//! temporary directory of its own, configured by `FIXTURE_*` environment variables (see
//! `tests/fixture/daemon.rs`) and driven from outside, the way an init script drives a service.
//! Whatever happens to the test, every process it started is killed and reaped on drop.
//!
//! The test process never calls `start()` itself: it runs many threads, and `start()` forks.
//! It does make itself a child subreaper, so that every detached daemon (whose parent exits
//! during the double fork) is reparented to it: the test can then `waitpid` a daemon and read
//! its real exit status, and no daemon pid can be reused before the test has reaped it.
//!
//! [`nspawn::BootedSystemd`] is the other manager that the tests drive daemons under: a real
//! systemd, booted in a container, with the examples' units installed as an operator would.

// Each test file uses its own part of the harness.
#![allow(dead_code)]
// The harness plays the operator: it signals and cleans up whom it likes.
#![allow(clippy::disallowed_methods)]

pub mod nspawn;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long any condition may take to come true. Generous: a loaded 2-core machine can be slow,
/// and a condition that holds returns at once.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long one fixture command may take before the test calls it hung.
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// The unprivileged user of the tests that need one (they run only as root).
pub const NOBODY: u32 = 65534;

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

/// Whether the test may go on as root; if not, it should return at once. It prints
/// `skipped: TEST: WHY`, or panics when `DAEMONS_TEST_STRICT=1` forbids skipping.
#[track_caller]
pub fn require_root(why: &str) -> bool {
    nix::unistd::geteuid().is_root() || skip("root is required here", why)
}

/// Whether the program `tool` is on the `PATH`; if not, as [`require_root`].
#[track_caller]
pub fn require_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
        || skip(
            &format!("tool {tool} is required here"),
            "it is not on the PATH",
        )
}

/// Whether something that the test needs is `available` (a mount that is permitted, a namespace
/// that can be made); if not, as [`require_root`], with `required` saying what it is.
#[track_caller]
pub fn require(available: bool, required: &str, why: &str) -> bool {
    available || skip(required, why)
}

/// Where the program `tool` is on the `PATH` (for a command whose environment is cleared).
pub fn tool_path(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not on the PATH"))
}

#[track_caller]
fn skip(required: &str, why: &str) -> bool {
    let test = thread::current().name().unwrap_or("?").to_owned();
    if std::env::var_os("DAEMONS_TEST_STRICT").is_some_and(|v| v == "1") {
        panic!("{test}: {required} ({why}), and DAEMONS_TEST_STRICT=1 forbids skipping");
    }
    eprintln!("skipped: {test}: {why}");
    false
}

/// The fixture binary: `<target>/<profile>/examples/daemons-fixture`, beside the `deps/` that
/// holds the test binaries. Panics if it is missing or older than its sources.
pub fn fixture_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| built_example("daemons-fixture", "tests/fixture"))
}

/// The example `name` (`examples/NAME.rs`), as `cargo test` builds it beside the fixture.
/// Panics if it is missing or older than its sources.
pub fn example_binary(name: &str) -> PathBuf {
    built_example(name, &format!("examples/{name}.rs"))
}

/// `<target>/<profile>/examples/NAME`, checked against `src/` and `sources` (a file or a
/// directory of the package).
fn built_example(name: &str, sources: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/deps");
    let binary = profile.join("examples").join(name);
    let rebuild = "run `cargo test` (which builds the examples) or `cargo build --examples`";
    let Ok(built) = fs::metadata(&binary).and_then(|m| m.modified()) else {
        panic!("{} is missing: {rebuild}", binary.display());
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("src"), root.join(sources)];
    while let Some(path) = sources.pop() {
        match fs::read_dir(&path) {
            Ok(dir) => sources.extend(dir.flatten().map(|e| e.path())),
            Err(_) => {
                let changed = fs::metadata(&path).and_then(|m| m.modified());
                if changed.unwrap_or(SystemTime::UNIX_EPOCH) > built {
                    panic!(
                        "{} is older than {}: {rebuild}",
                        binary.display(),
                        path.display()
                    );
                }
            }
        }
    }
    binary
}

static SUBREAPER: Once = Once::new();

/// One test's daemon: a temporary directory with its pidfile (`daemon.pid`), marks file
/// (`marks`) and stderr log (`stderr.log`), the environment that configures it, and the
/// daemons it saw started and not yet reaped. On drop it kills those, and every live process
/// that names the directory, then reaps them.
pub struct Fixture {
    dir: TempDir,
    env: Vec<(String, OsString)>,
    unreaped: Mutex<Vec<Pid>>,
}

impl Fixture {
    pub fn new() -> Fixture {
        SUBREAPER.call_once(|| {
            nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
        });
        let dir = tempfile::Builder::new()
            .prefix("daemons-test-")
            .tempdir()
            .expect("create a temporary directory");
        let mut fx = Fixture {
            dir,
            env: Vec::new(),
            unreaped: Mutex::new(Vec::new()),
        };
        for (key, name) in [
            ("FIXTURE_PIDFILE", "daemon.pid"),
            ("FIXTURE_MARKS", "marks"),
            ("FIXTURE_STDERR", "stderr.log"),
        ] {
            fx.set(key, fx.path(name));
        }
        fx
    }

    /// Set an environment variable of every later command.
    pub fn set(&mut self, key: &str, value: impl AsRef<OsStr>) -> &mut Fixture {
        self.unset(key);
        self.env.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// [`set`](Fixture::set), by value.
    pub fn with(mut self, key: &str, value: impl AsRef<OsStr>) -> Fixture {
        self.set(key, value);
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Fixture {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `FIXTURE_PIDFILE`.
    pub fn pidfile(&self) -> PathBuf {
        let pidfile = self.env.iter().find(|(k, _)| k == "FIXTURE_PIDFILE");
        PathBuf::from(&pidfile.expect("FIXTURE_PIDFILE is set").1)
    }

    /// The pidfile's content, if it exists.
    pub fn pidfile_content(&self) -> Option<String> {
        fs::read_to_string(self.pidfile()).ok()
    }

    /// The daemon's stderr log (the default `FIXTURE_STDERR`).
    pub fn stderr_log(&self) -> String {
        fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    /// The lines that the daemon's handlers and body appended to the marks file.
    pub fn marks(&self) -> Vec<String> {
        let marks = fs::read_to_string(self.path("marks")).unwrap_or_default();
        marks.lines().map(str::to_owned).collect()
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

    /// `daemons-fixture ARGS...` (split at spaces), with this fixture's environment and nothing
    /// else: `status` for the command line, `api status` for the handle's method.
    pub fn command(&self, args: &str) -> Command {
        let mut command = Command::new(fixture_binary());
        command
            .args(args.split_whitespace())
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Run a command to its end, its output captured as `start | cat` would capture it.
    pub fn run(&self, args: &str) -> Reply {
        self.execute(&mut self.command(args))
    }

    /// Run a prepared command to its end.
    pub fn execute(&self, command: &mut Command) -> Reply {
        self.run_all(std::slice::from_mut(command))
            .pop()
            .expect("a reply")
    }

    /// Launch every command at once, then wait for each.
    pub fn run_all(&self, commands: &mut [Command]) -> Vec<Reply> {
        let launched: Vec<_> = commands.iter_mut().map(Launched::spawn).collect();
        let replies: Vec<Reply> = launched.into_iter().map(Launched::finish).collect();
        // The daemons that they started (`started 42`, `name: started (pid 42)`), and one killed
        // at a start timeout: children of this subreaper, to be reaped.
        let mut unreaped = self.unreaped.lock().expect("unreaped");
        for reply in &replies {
            for line in reply.stdout.lines().chain(reply.stderr.lines()) {
                if let Some(pid) = line.strip_prefix("started ") {
                    unreaped.extend(pid.parse().map(Pid::from_raw));
                } else if line.contains(": started (pid ") || line.contains("was killed (pid ") {
                    unreaped.extend(pids_in(line));
                }
            }
        }
        drop(unreaped);
        replies
    }

    /// `api start`, asserting that it started a daemon, whose pid it returns.
    pub fn start(&self) -> Pid {
        let reply = self.run("api start");
        assert_eq!(
            (reply.word(0), reply.code()),
            ("started", Some(0)),
            "{reply:?}\nstderr log: {}",
            self.stderr_log()
        );
        reply.pid()
    }

    /// `api stop`, asserting that the daemon `pid` exited after SIGTERM (was not killed) and
    /// left no pidfile.
    pub fn stop_gracefully(&self, pid: Pid) -> Reply {
        let reply = self.run("api stop");
        assert_eq!(
            (reply.word(0), reply.pid(), reply.word(2), reply.code()),
            ("stopped", pid, "exited", Some(0)),
            "{reply:?}\nstderr log: {}",
            self.stderr_log()
        );
        assert!(!self.pidfile().exists(), "the pidfile is removed");
        reply
    }

    /// Spawn a command in the foreground (for `run`), its stdout and stderr in `run.out` and
    /// `run.err` of the temporary directory; killed and reaped on drop.
    pub fn foreground(&self, command: &mut Command) -> Foreground {
        command
            .stdout(fs::File::create(self.path("run.out")).expect("create run.out"))
            .stderr(fs::File::create(self.path("run.err")).expect("create run.err"));
        Foreground(
            command
                .spawn()
                .expect("spawn the fixture in the foreground"),
        )
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
                // Still the intermediate process's child: it becomes ours when that one has
                // exited, moments later.
                Err(nix::errno::Errno::ECHILD) => false,
                Err(e) => panic!("waitpid({pid}): {e}"),
            }
        });
        assert!(
            ended,
            "daemon {pid} did not end, or was not reparented to this subreaper, within {DEADLINE:?}"
        );
        self.unreaped
            .lock()
            .expect("unreaped")
            .retain(|&p| p != pid);
        status.expect("a status")
    }

    /// The exit code of the daemon `pid`, which must exit (not be killed) within the deadline.
    pub fn exit_code(&self, pid: Pid) -> i32 {
        match self.reap(pid) {
            WaitStatus::Exited(_, code) => code,
            other => panic!("daemon {pid} did not exit normally: {other:?}"),
        }
    }

    /// Live processes of this fixture: their environment (which every command and daemon
    /// inherits), command line or one of their descriptors names the temporary directory.
    ///
    /// Not a copy of this test process between its fork and its exec (a command that another
    /// test is spawning): it holds every descriptor of this process, those of other fixtures'
    /// directories among them, until its exec closes them. Killed here, that other test's
    /// command would end by SIGKILL before it printed anything.
    pub fn processes(&self) -> Vec<Pid> {
        let dir = self.dir.path().as_os_str().as_bytes();
        let names = |text: &[u8]| text.windows(dir.len()).any(|w| w == dir);
        let me = std::process::id() as i32;
        let harness = fs::read_link("/proc/self/exe").ok();
        let not_yet_exec = |pid: Pid| {
            harness.is_some() && fs::read_link(format!("/proc/{pid}/exe")).ok() == harness
        };
        all_pids()
            .into_iter()
            .filter(|&pid| pid.as_raw() != me && alive(pid) && !not_yet_exec(pid))
            .filter(|&pid| {
                ["environ", "cmdline"]
                    .iter()
                    .any(|f| names(&fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default()))
                    || fd_targets(pid)
                        .iter()
                        .any(|t| names(t.as_os_str().as_bytes()))
            })
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let mut doomed = self.unreaped.lock().map(|u| u.clone()).unwrap_or_default();
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

/// A command running with its stdout and stderr captured.
struct Launched {
    pid: Pid,
    since: Instant,
    output: mpsc::Receiver<std::io::Result<std::process::Output>>,
}

impl Launched {
    fn spawn(command: &mut Command) -> Launched {
        let since = Instant::now();
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e:?}", command.get_program()));
        let pid = Pid::from_raw(child.id() as i32);
        let (tx, output) = mpsc::channel();
        // A reader that blocks (because a daemon kept the pipe open) must not block the test:
        // it waits on a thread of its own and the test gives up after a deadline.
        thread::spawn(move || tx.send(child.wait_with_output()));
        Launched { pid, since, output }
    }

    /// Wait at most [`COMMAND_DEADLINE`] for the command to end, or kill it and fail.
    fn finish(self) -> Reply {
        let Ok(output) = self.output.recv_timeout(COMMAND_DEADLINE) else {
            let _ = kill(self.pid, Signal::SIGKILL);
            panic!(
                "fixture {} did not finish in {COMMAND_DEADLINE:?}",
                self.pid
            );
        };
        let output = output.unwrap_or_else(|e| panic!("wait for the fixture: {e:?}"));
        Reply {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status,
            caller: self.pid,
            elapsed: self.since.elapsed(),
        }
    }
}

/// What a fixture command printed, and how it exited.
#[derive(Debug)]
pub struct Reply {
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
    /// The fixture process itself (the caller of `start()`, not the daemon).
    pub caller: Pid,
    /// From spawn to the end of its output and exit.
    pub elapsed: Duration,
}

impl Reply {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The line of an `api` command, without the newline.
    pub fn line(&self) -> &str {
        self.stdout.trim_end()
    }

    /// The `n`th word of the line (`started 42` → word 0 is `started`).
    pub fn word(&self, n: usize) -> &str {
        self.line().split_whitespace().nth(n).unwrap_or("")
    }

    /// The pid that the reply names: in an `api` line, the word after `error VARIANT` or after
    /// the first; in the crate's own lines, the first `pid N`.
    pub fn pid(&self) -> Pid {
        let api = match self.word(0) {
            "error" => self.word(2).parse().ok(),
            _ => self.word(1).parse().ok(),
        };
        api.map(Pid::from_raw)
            .or_else(|| self.pids().first().copied())
            .unwrap_or_else(|| panic!("no pid in {self:?}"))
    }

    /// Every pid that the output names as `pid N`, stdout first.
    pub fn pids(&self) -> Vec<Pid> {
        pids_in(&format!("{}\n{}", self.stdout, self.stderr))
    }

    /// Assert that the `api` command failed with exit code 1 and the error `variant`.
    pub fn assert_error(&self, variant: &str) {
        assert_eq!((self.word(0), self.word(1)), ("error", variant), "{self:?}");
        assert_eq!(self.code(), Some(1), "{self:?}");
    }
}

fn pids_in(text: &str) -> Vec<Pid> {
    let after = text.split("pid ").skip(1);
    let digits = after.filter_map(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
    digits.map(Pid::from_raw).collect()
}

/// A fixture running in the foreground (`run`), a child of the test; killed and reaped on drop.
pub struct Foreground(Child);

impl Foreground {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the foreground fixture");
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
            "the foreground fixture did not exit within {DEADLINE:?}"
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

    /// A bystander that runs as `nobody` and is not dumpable (`prctl(PR_SET_DUMPABLE, 0)`): its
    /// `/proc/PID/fd` belongs to root, so `nobody` cannot see which files it holds, though it
    /// can signal it. Only root can spawn it.
    pub fn undumpable_nobody() -> Bystander {
        let mut command = Command::new(fixture_binary());
        let bystander = Bystander::spawn(
            command
                .arg("undumpable-sleep")
                .env_clear()
                .uid(NOBODY)
                .gid(NOBODY),
        );
        // A process of `nobody` whose /proc/PID/fd is root's has made itself non-dumpable.
        let undumpable = wait_until(DEADLINE, || {
            fs::metadata(format!("/proc/{}/fd", bystander.pid())).is_ok_and(|m| m.uid() == 0)
        });
        assert!(undumpable, "the bystander did not become non-dumpable");
        bystander
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
        let pending = |set| u64::from_str_radix(&proc_status(self.pid(), set), 16) != Ok(0);
        pending("ShdPnd") || pending("SigPnd")
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `flock [-s] PATH sleep 1000` (util-linux), in a process group of its own: a process that
/// holds a lock on a pidfile without being its daemon, as an administrator's script may. `sleep`
/// inherits the locked descriptor, so the lock lasts until both are gone: on drop, the group is
/// killed and both are reaped (`sleep`, orphaned, is reparented to this subreaper).
pub struct Locker(Child);

impl Locker {
    /// `flock -s PATH sleep 1000`: a shared lock, as a reader takes.
    pub fn shared(path: &Path) -> Locker {
        Locker::spawn(path, true)
    }

    /// `flock PATH sleep 1000`: an exclusive lock, as a daemon takes.
    pub fn exclusive(path: &Path) -> Locker {
        Locker::spawn(path, false)
    }

    fn spawn(path: &Path, shared: bool) -> Locker {
        let mut command = Command::new("flock");
        if shared {
            command.arg("--shared");
        }
        command
            .arg(path)
            .args(["sleep", "1000"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let locker = Locker(command.spawn().expect("spawn flock"));
        let mode = if shared { "READ" } else { "WRITE" };
        assert!(
            wait_until(DEADLINE, || locker.holds(mode)),
            "flock did not lock {}",
            path.display()
        );
        locker
    }

    /// The `flock` process: the one that took the lock, as `/proc/locks` names it.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }

    /// Whether it still runs (a stop signal would have ended it).
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Whether a descriptor of `flock` shows the lock it took, in `mode` (`READ` or `WRITE`).
    fn holds(&self, mode: &str) -> bool {
        let pid = self.pid().to_string();
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            return false;
        };
        dir.flatten().any(|entry| {
            let info = fs::read_to_string(entry.path()).unwrap_or_default();
            info.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                matches!(fields.as_slice(), ["lock:", _, "FLOCK", _, m, p, ..] if *m == mode && *p == pid)
            })
        })
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let group = self.pid();
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        let _ = self.0.wait();
        // Its `sleep`, now a child of this process: every child left in the group.
        // ECHILD once none is left.
        wait_until(Duration::from_secs(2), || {
            waitpid(Pid::from_raw(-group.as_raw()), Some(WaitPidFlag::WNOHANG)).is_err()
        });
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
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .collect()
}

/// Where descriptor `fd` of `pid` points.
pub fn fd_target(pid: Pid, fd: i32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap_or_else(|e| panic!("descriptor {fd} of pid {pid}: {e}"))
}

/// Processes that have `path` open, even if it was unlinked since.
pub fn holders(path: &Path) -> Vec<Pid> {
    let mut deleted = path.as_os_str().to_owned();
    deleted.push(" (deleted)");
    let holds = |pid: &Pid| fd_targets(*pid).iter().any(|t| t == path || *t == deleted);
    all_pids().into_iter().filter(holds).collect()
}

/// The `NAME:` line of `/proc/PID/status`, e.g. `0022` for `Umask`.
pub fn proc_status(pid: Pid, name: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read the status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'));
    line.unwrap_or_else(|| panic!("no {name} line"))
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
    let zombie = |pid: &Pid| stat(*pid).is_some_and(|s| s.state == 'Z' && s.ppid == me);
    all_pids().into_iter().filter(zombie).collect()
}

/// How many descriptors this test process has open.
pub fn open_fd_count() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Whether this process may make a pid namespace with a `/proc` of its own (`unshare --pid
/// --fork --mount-proc`, which needs root or a user namespace, and a kernel and container that
/// allow it); if not, as [`require_root`].
#[track_caller]
pub fn require_pid_namespace() -> bool {
    if !require_tool("unshare") {
        return false;
    }
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => skip(
            "a new pid namespace is required here",
            &format!(
                "`unshare --pid --fork --mount-proc true` is not permitted: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
        Err(e) => skip(
            "a new pid namespace is required here",
            &format!("unshare cannot run: {e}"),
        ),
    }
}

/// A real account of this system, for the tests that need users other than root and `nobody`
/// (as root only): a system user without a home, with a group of its own, made with `useradd`
/// the first time it is asked for, and kept (the next run finds it). Returns its uid and gid.
pub fn test_user(name: &str) -> (u32, u32) {
    static USERADD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = USERADD.lock().unwrap_or_else(|e| e.into_inner());
    let lookup = || {
        nix::unistd::User::from_name(name)
            .expect("read the user database")
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
    };
    if let Some(ids) = lookup() {
        return ids;
    }
    let out = Command::new(tool_path("useradd"))
        .args(["--system", "--no-create-home", "--user-group", "--shell"])
        .args(["/usr/sbin/nologin", name])
        .stdin(Stdio::null())
        .output()
        .expect("run useradd");
    assert!(
        out.status.success() || lookup().is_some(),
        "useradd {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lookup().unwrap_or_else(|| panic!("useradd made no user {name}"))
}
