//! A real systemd for the tests: the host's own `/usr` booted as a container,
//!
//! ```text
//! systemd-nspawn --volatile=yes -D / --register=no --keep-unit --private-network \
//!     --tmpfs=/usr/local/bin --boot -- systemd.firstboot=off ...
//! ```
//!
//! and driven from outside the way an operator drives a server: units installed under
//! `/etc/systemd/system`, binaries under `/usr/local/bin` (as `examples/systemd` says to install
//! them), `systemctl` and `journalctl` run in the container with `nsenter`.
//!
//! What the container sees: a tmpfs as its root, the host's `/usr` read-only on it, so the
//! host's systemd, libraries and tools but none of the host's other files (no `/work`, no
//! `target/`). Whatever is written under `/etc`, `/run`, `/var` or `/tmp` stays in the
//! container and goes with it. `/usr/local/bin` is a tmpfs of its own there, the one writable
//! place in `/usr`, where [`BootedSystemd::install_example`] copies an example built on the host.
//! The host writes into the container through `/proc/LEADER/root` (LEADER: the container's
//! PID 1 as the host sees it). Its network is its own (`--private-network`: a loopback only),
//! so a unit may listen on a fixed port that the host or another test also uses;
//! [`BootedSystemd::in_network`] runs a client there.
//!
//! One container serves every test of a binary that overlaps another ([`BootedSystemd::shared`]):
//! the last test to let go of it powers it off. It runs in a cgroup of its own (nspawn's
//! `payload/` and `supervisor/` go below it, so that two containers never share one), which
//! drop removes once every process in it has gone. If the test binary itself dies, nspawn,
//! whose parent-death signal is SIGTERM, powers the container off on its own; the next boot
//! removes what such a test left: its cgroup, whatever still runs there (a container whose PID 1
//! was still starting drops the poweroff signal and boots on), its console's directory.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{
    DEADLINE, alive, all_pids, example_binary, require, require_root, require_tool, stat,
    tool_path, wait_until,
};

/// How long the container may take to boot, until `systemctl is-system-running` answers
/// `running` or `degraded`. It takes about a second here; a loaded machine may take much more.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);

/// How long an orderly poweroff may take before everything in the container's cgroup is killed.
const POWEROFF_DEADLINE: Duration = Duration::from_secs(30);

/// How long one command in the container may take: more than systemd's default start timeout
/// (90 s), so that a `systemctl start` that fails by timing out ends by itself.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// The `PATH` of the commands run in the container, without `/usr/local/bin`, where the examples
/// (among them an `echo`) are installed.
const CONTAINER_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// What names this harness's containers and their cgroups: `daemons-nspawn-PID-N`, PID being
/// the test process's.
const PREFIX: &str = "daemons-nspawn-";

/// The container that the overlapping tests of this binary share.
static SHARED: Mutex<Weak<BootedSystemd>> = Mutex::new(Weak::new());

/// Held while a container powers off, so that the next boot waits for the previous poweroff.
static POWER: Mutex<()> = Mutex::new(());

/// Numbers the containers of this process.
static MACHINES: AtomicUsize = AtomicUsize::new(0);

/// Numbers the temporary files that [`BootedSystemd::install`] renames into place.
static PLACED: AtomicUsize = AtomicUsize::new(0);

/// A systemd booted in a container of its own: see the module's docs. Dropping the last handle
/// powers it off (killing what is left after [`POWEROFF_DEADLINE`]), reaps `systemd-nspawn` and
/// removes its cgroup, also when the test panicked.
pub struct BootedSystemd {
    machine: String,
    nspawn: Mutex<Child>,
    /// The container's PID 1, as the host numbers it.
    leader: Pid,
    cgroup: Cgroup,
    /// nspawn's output: the container's console, for the messages of a failed boot.
    console: TempDir,
    booted_in: Duration,
    /// Ended once nspawn has been reaped.
    keeper: Option<Keeper>,
}

impl std::fmt::Debug for BootedSystemd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootedSystemd")
            .field("machine", &self.machine)
            .field("leader", &self.leader)
            .field("booted_in", &self.booted_in)
            .finish_non_exhaustive()
    }
}

impl BootedSystemd {
    /// The container that this binary's tests share, booted by the first of them and powered
    /// off when the last that holds it lets go (a test that starts after that boots another).
    /// `None` (after `skipped: ...`) where this machine cannot boot one: not root, no
    /// `systemd-nspawn` or `nsenter`, no cgroup of its own, nspawn refused to run.
    #[track_caller]
    pub fn shared() -> Option<Arc<BootedSystemd>> {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(booted) = shared.upgrade() {
            return Some(booted);
        }
        let booted = Arc::new(BootedSystemd::boot()?);
        *shared = Arc::downgrade(&booted);
        Some(booted)
    }

    /// A container of the caller's own (for a test that reboots it, or breaks it), as
    /// [`shared`](BootedSystemd::shared).
    #[track_caller]
    pub fn boot() -> Option<BootedSystemd> {
        let why = "a real systemd is booted with systemd-nspawn";
        if !(require_root(why) && require_tool("systemd-nspawn") && require_tool("nsenter")) {
            return None;
        }
        if !require(
            Path::new("/usr/lib/systemd/systemd").is_file(),
            "systemd installed in /usr",
            "the container boots the host's /usr, which has no /usr/lib/systemd/systemd",
        ) {
            return None;
        }
        // Wait for a poweroff under way: two containers at once would do, but slow both.
        drop(POWER.lock().unwrap_or_else(PoisonError::into_inner));
        let machine = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            MACHINES.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = match Cgroup::create(&machine) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                require(false, "a cgroup of its own for the container", &e);
                return None;
            }
        };
        remove_stale_consoles();
        let console = tempfile::Builder::new()
            .prefix(&format!("{machine}-"))
            .tempdir()
            .expect("create a temporary directory");
        let output = File::create(console.path().join("console.log")).expect("create the log");
        let mut command = Command::new(tool_path("systemd-nspawn"));
        command
            .args([
                "--volatile=yes",
                "--directory=/",
                "--register=no",
                "--keep-unit",
            ])
            .args([
                "--private-network",
                "--tmpfs=/usr/local/bin",
                "--link-journal=no",
            ])
            .args(["--console=read-only", "--machine", &machine, "--boot", "--"])
            // No questions at the first boot; no two-minute wait for a network that the
            // private one never configures.
            .args([
                "systemd.firstboot=off",
                "systemd.mask=systemd-networkd-wait-online.service",
            ])
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone the log's descriptor"))
            .stderr(output);
        let since = Instant::now();
        let (nspawn, keeper) = match spawn_kept(command, &cgroup) {
            Ok(spawned) => spawned,
            Err(e) => {
                cgroup.remove();
                panic!("spawn systemd-nspawn: {e}");
            }
        };
        let mut booted = BootedSystemd {
            machine,
            nspawn: Mutex::new(nspawn),
            leader: Pid::from_raw(0),
            cgroup,
            console,
            booted_in: Duration::ZERO,
            keeper: Some(keeper),
        };
        let Some(leader) = booted.find_leader() else {
            let status = booted.exit_status();
            let tail = booted.console_tail(20);
            require(
                false,
                "a container booted by systemd-nspawn",
                &format!("systemd-nspawn cannot boot one here ({status:?}):\n{tail}"),
            );
            return None;
        };
        booted.leader = leader;
        booted.wait_until_up();
        booted.booted_in = since.elapsed();
        eprintln!(
            "{}: systemd booted in {:.1?}",
            booted.machine, booted.booted_in
        );
        Some(booted)
    }

    /// The container's name (its hostname, and the `--machine` of its nspawn).
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// The container's PID 1, as the host numbers it.
    pub fn leader(&self) -> Pid {
        self.leader
    }

    /// `systemd-nspawn` itself.
    pub fn nspawn_pid(&self) -> Pid {
        let nspawn = self.nspawn.lock().unwrap_or_else(PoisonError::into_inner);
        Pid::from_raw(nspawn.id() as i32)
    }

    /// The cgroup directories that the container runs in, one per hierarchy.
    pub fn cgroups(&self) -> &[PathBuf] {
        &self.cgroup.dirs
    }

    /// From spawning nspawn to `is-system-running` answering `running` or `degraded`.
    pub fn booted_in(&self) -> Duration {
        self.booted_in
    }

    /// What the container printed on its console (and nspawn on its stdout and stderr).
    pub fn console(&self) -> String {
        fs::read_to_string(self.console.path().join("console.log")).unwrap_or_default()
    }

    fn console_tail(&self, lines: usize) -> String {
        let console = self.console();
        let all: Vec<&str> = console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        let mut nspawn = self.nspawn.lock().unwrap_or_else(PoisonError::into_inner);
        nspawn.try_wait().ok().flatten()
    }

    /// The container's PID 1 once it runs systemd: the child of nspawn that is pid 1 in its own
    /// namespace. `None` if nspawn exits first.
    fn find_leader(&self) -> Option<Pid> {
        let nspawn = self.nspawn_pid();
        let mut leader = None;
        wait_until(BOOT_DEADLINE, || {
            leader = all_pids().into_iter().find(|&pid| {
                stat(pid).is_some_and(|s| s.ppid == nspawn.as_raw())
                    && fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c == "systemd\n")
                    && fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("NSpid:"))
                            .is_some_and(|ids| ids.split_whitespace().last() == Some("1"))
                    })
            });
            leader.is_some() || self.exit_status().is_some()
        });
        if leader.is_none() && self.exit_status().is_none() {
            panic!(
                "{}: no systemd ran in the container within {BOOT_DEADLINE:?}:\n{}",
                self.machine,
                self.console_tail(20)
            );
        }
        leader
    }

    /// Wait for `systemctl is-system-running` to say `running` or `degraded` (some unit of the
    /// host's failed: not this harness's business). Panics past [`BOOT_DEADLINE`].
    fn wait_until_up(&self) {
        let mut state = String::new();
        let up = wait_until(BOOT_DEADLINE, || {
            if self.exit_status().is_some() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
            state = self.exec(&["systemctl", "is-system-running"]).stdout;
            matches!(state.trim(), "running" | "degraded")
        });
        if let Some(status) = self.exit_status() {
            panic!(
                "{}: systemd-nspawn ended during the boot ({status}):\n{}",
                self.machine,
                self.console_tail(30)
            );
        }
        if !up {
            let jobs = self.systemctl("list-jobs").stdout;
            panic!(
                "{}: the system is still {:?} after {BOOT_DEADLINE:?}; its jobs:\n{jobs}\n{}",
                self.machine,
                state.trim(),
                self.console_tail(20)
            );
        }
    }

    /// Run `argv` in the container (every namespace of its PID 1, a clean environment), to its
    /// end, its output captured. Panics if it cannot run or takes more than two minutes.
    pub fn exec(&self, argv: &[&str]) -> Outcome {
        let mut command = Command::new(tool_path("nsenter"));
        command
            .arg(format!("--target={}", self.leader))
            .args(["--all", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{}: spawn nsenter: {e}", self.machine));
        let pid = Pid::from_raw(child.id() as i32);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(child.wait_with_output()));
        let Ok(output) = rx.recv_timeout(COMMAND_DEADLINE) else {
            let _ = kill(pid, Signal::SIGKILL);
            panic!(
                "{}: `{}` took more than {COMMAND_DEADLINE:?}",
                self.machine,
                argv.join(" ")
            );
        };
        let output = output.unwrap_or_else(|e| panic!("{}: wait for nsenter: {e}", self.machine));
        Outcome {
            command: argv.join(" "),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status,
        }
    }

    /// `systemctl ARGS...` (split at spaces) in the container.
    pub fn systemctl(&self, args: &str) -> Outcome {
        let mut argv = vec!["systemctl", "--no-pager"];
        argv.extend(args.split_whitespace());
        self.exec(&argv)
    }

    /// `journalctl ARGS...` (split at spaces) in the container.
    pub fn journalctl(&self, args: &str) -> Outcome {
        let mut argv = vec!["journalctl", "--no-pager"];
        argv.extend(args.split_whitespace());
        self.exec(&argv)
    }

    /// The messages that the journal holds for `unit` (those of its processes and systemd's
    /// about it), one a line, without timestamps or names.
    pub fn journal(&self, unit: &str) -> String {
        self.journalctl(&format!("--unit={unit} --output=cat"))
            .assert_success()
            .stdout
            .clone()
    }

    /// Wait until a line of `unit`'s journal contains `text`, and return the journal. The
    /// journal lags behind the state that `systemctl` reports: what a service printed may come
    /// after systemd's own "Stopped".
    #[track_caller]
    pub fn wait_for_journal(&self, unit: &str, text: &str) -> String {
        let mut journal = String::new();
        let shown = wait_until(DEADLINE, || {
            journal = self.journal(unit);
            journal.lines().any(|l| l.contains(text))
        });
        assert!(
            shown,
            "no line of {unit}'s journal contains {text:?} after {DEADLINE:?}:\n{journal}"
        );
        journal
    }

    /// `systemctl show --property=PROPERTIES UNIT`, e.g. `"ActiveState,NRestarts"`, as a map.
    pub fn show(&self, unit: &str, properties: &str) -> BTreeMap<String, String> {
        let shown = self.systemctl(&format!("show --property={properties} {unit}"));
        shown.assert_success();
        shown
            .stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// `unit`'s ActiveState, SubState, MainPID and Result.
    pub fn state(&self, unit: &str) -> UnitState {
        let mut shown = self.show(unit, "ActiveState,SubState,MainPID,Result");
        let mut take = |key: &str| shown.remove(key).unwrap_or_default();
        UnitState {
            active: take("ActiveState"),
            sub: take("SubState"),
            main_pid: take("MainPID").parse().unwrap_or(0),
            result: take("Result"),
        }
    }

    /// Wait until `unit` is in `active`/`sub` (e.g. `active`/`running`) and return its state.
    #[track_caller]
    pub fn wait_for_state(&self, unit: &str, active: &str, sub: &str) -> UnitState {
        let mut state = self.state(unit);
        let reached = wait_until(DEADLINE, || {
            state = self.state(unit);
            (state.active.as_str(), state.sub.as_str()) == (active, sub)
        });
        assert!(
            reached,
            "{unit} is not {active}/{sub} after {DEADLINE:?}: {state:?}\n{}",
            self.journal(unit)
        );
        state
    }

    /// Where the container's `path` (absolute) is, seen from the host.
    pub fn host_path(&self, path: &str) -> PathBuf {
        assert!(path.starts_with('/'), "{path} is not absolute");
        PathBuf::from(format!("/proc/{}/root{path}", self.leader))
    }

    /// The content of the container's file `path`, if it exists.
    pub fn read(&self, path: &str) -> Option<String> {
        fs::read_to_string(self.host_path(path)).ok()
    }

    /// Copy the host's file `from` to the container's `to` with permissions `mode`, creating
    /// its directory; a file already there is replaced at once (by a rename), even if it runs.
    pub fn install(&self, from: &Path, to: &str, mode: u32) {
        self.place(to, mode, |temporary| fs::copy(from, temporary).map(drop));
    }

    /// Write `contents` to the container's file `to`, as [`install`](BootedSystemd::install).
    pub fn write(&self, to: &str, contents: &str, mode: u32) {
        self.place(to, mode, |temporary| fs::write(temporary, contents));
    }

    /// Fill a temporary file beside the container's `to`, then rename it there.
    fn place(&self, to: &str, mode: u32, fill: impl FnOnce(&Path) -> io::Result<()>) {
        let target = self.host_path(to);
        let dir = target.parent().expect("an absolute path has a parent");
        let temporary = dir.join(format!(
            ".{}.{}.{}",
            target.file_name().expect("a file name").to_string_lossy(),
            std::process::id(),
            PLACED.fetch_add(1, Ordering::Relaxed)
        ));
        let placed = fs::create_dir_all(dir)
            .and_then(|()| fill(&temporary))
            .and_then(|()| fs::set_permissions(&temporary, fs::Permissions::from_mode(mode)))
            .and_then(|()| fs::rename(&temporary, &target));
        if let Err(e) = placed {
            let _ = fs::remove_file(&temporary);
            panic!("{}: cannot place {to}: {e}", self.machine);
        }
    }

    /// Install the example `name`, as built on the host, as `/usr/local/bin/NAME` (where the
    /// units of `examples/systemd` expect it); returns that path.
    pub fn install_example(&self, name: &str) -> String {
        let path = format!("/usr/local/bin/{name}");
        self.install(&example_binary(name), &path, 0o755);
        path
    }

    /// Write the unit `name` (e.g. `x.service`) to `/etc/systemd/system` and reload systemd.
    pub fn install_unit(&self, name: &str, text: &str) {
        self.write(&format!("/etc/systemd/system/{name}"), text, 0o644);
        self.systemctl("daemon-reload").assert_success();
    }

    /// [`install_unit`](BootedSystemd::install_unit) of the host's unit file `path`, under its
    /// own name.
    pub fn install_unit_file(&self, path: &Path) {
        let name = path
            .file_name()
            .expect("a unit file's name")
            .to_string_lossy();
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read the unit file {}: {e}", path.display()));
        self.install_unit(&name, &text);
    }

    /// Run `f` on a thread of its own in the container's network namespace, so that the sockets
    /// it makes are the container's (a client of `127.0.0.1:PORT` there, say).
    pub fn in_network<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let namespace = File::open(format!("/proc/{}/ns/net", self.leader))
            .unwrap_or_else(|e| panic!("{}: open its network namespace: {e}", self.machine));
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on an open namespace descriptor changes the network
                    // namespace of this thread alone, which ends once `f` returns.
                    let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(
                        entered,
                        0,
                        "setns into the container's network: {}",
                        io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for BootedSystemd {
    fn drop(&mut self) {
        let _one_at_a_time = POWER.lock().unwrap_or_else(PoisonError::into_inner);
        let machine = &self.machine;
        let nspawn = self
            .nspawn
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let ended = |nspawn: &mut Child| !matches!(nspawn.try_wait(), Ok(None));
        if !ended(nspawn) {
            // nspawn, still our unreaped child, asks PID 1 for a poweroff (SIGRTMIN+3).
            let _ = kill(Pid::from_raw(nspawn.id() as i32), Signal::SIGTERM);
            if !wait_until(POWEROFF_DEADLINE, || ended(nspawn)) {
                eprintln!("{machine}: no poweroff within {POWEROFF_DEADLINE:?}: killing it");
                self.cgroup.kill();
                let _ = nspawn.kill();
                let _ = nspawn.wait();
            }
        }
        if !self.cgroup.remove() {
            eprintln!("{machine}: processes left in its cgroup: killing them");
            self.cgroup.kill();
            if !self.cgroup.remove() {
                eprintln!("{machine}: cannot remove its cgroup {:?}", self.cgroup.dirs);
            }
        }
        if let Some(keeper) = self.keeper.take() {
            keeper.end();
        }
    }
}

/// The thread that spawned nspawn, alive until [`Keeper::end`]: nspawn's parent-death signal
/// (SIGTERM) comes when the thread that forked it ends, so it comes only when the test process
/// dies without dropping the container.
struct Keeper {
    release: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Keeper {
    /// Let the thread end: call it once nspawn has been reaped.
    fn end(self) {
        drop(self.release);
        let _ = self.thread.join();
    }
}

/// Spawn `command` in `cgroup` from a [`Keeper`], with SIGTERM as its parent-death signal.
fn spawn_kept(mut command: Command, cgroup: &Cgroup) -> io::Result<(Child, Keeper)> {
    let procs = cgroup.procs()?;
    let (spawned_tx, spawned) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let thread = thread::Builder::new()
        .name("nspawn-keeper".into())
        .spawn(move || {
            let descriptors: Vec<RawFd> = procs.iter().map(AsRawFd::as_raw_fd).collect();
            // SAFETY: between fork and exec the child only calls write and prctl, which are
            // async-signal-safe, on descriptors that the parent keeps open until the spawn ends
            // (close-on-exec: nspawn does not inherit them).
            unsafe {
                command.pre_exec(move || {
                    for &fd in &descriptors {
                        // `0`: the writer itself moves into the cgroup.
                        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command.spawn();
            drop(procs);
            let spawned_ok = child.is_ok();
            let _ = spawned_tx.send(child);
            if spawned_ok {
                let _ = released.recv();
            }
        })?;
    match spawned.recv() {
        Ok(Ok(child)) => Ok((child, Keeper { release, thread })),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other(
                "the thread that spawns systemd-nspawn died",
            ))
        }
    }
}

/// The container's cgroup: a directory below the test process's own cgroup in each hierarchy
/// that systemd uses (the unified one; and `name=systemd` on a hybrid or legacy host, as here).
struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Make the directories `name`, after removing those that a dead test process left.
    fn create(name: &str) -> Result<Cgroup, String> {
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mut parents = Vec::new();
        for line in own.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let mount = match controllers {
                "" if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => "/sys/fs/cgroup",
                "" if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() => {
                    "/sys/fs/cgroup/unified"
                }
                "name=systemd" if Path::new("/sys/fs/cgroup/systemd/tasks").exists() => {
                    "/sys/fs/cgroup/systemd"
                }
                _ => continue,
            };
            parents.push(Path::new(mount).join(path.trim_start_matches('/')));
        }
        if parents.is_empty() {
            return Err("no cgroup hierarchy of systemd's is mounted under /sys/fs/cgroup".into());
        }
        let mut cgroup = Cgroup { dirs: Vec::new() };
        for parent in parents {
            remove_stale(&parent);
            let dir = parent.join(name);
            if let Err(e) = fs::create_dir(&dir) {
                cgroup.remove();
                return Err(format!("cannot make the cgroup {}: {e}", dir.display()));
            }
            cgroup.dirs.push(dir);
        }
        Ok(cgroup)
    }

    /// Each directory's `cgroup.procs`, open for writing.
    fn procs(&self) -> io::Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|dir| {
                OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
            })
            .collect()
    }

    /// SIGKILL every process in the cgroup: at once with `cgroup.kill` where the kernel has
    /// it, else one by one.
    fn kill(&self) {
        for dir in &self.dirs {
            let kill_file = OpenOptions::new().write(true).open(dir.join("cgroup.kill"));
            if kill_file.and_then(|mut file| file.write_all(b"1")).is_ok() {
                return;
            }
        }
        for dir in &self.dirs {
            for pid in processes_below(dir) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Remove the directories, those below first, once their processes are gone; says whether
    /// they all went within [`DEADLINE`].
    fn remove(&self) -> bool {
        wait_until(DEADLINE, || {
            self.dirs
                .iter()
                .all(|dir| remove_tree(dir).is_ok() || !dir.exists())
        })
    }
}

/// Whether `name` is one of this harness's (`daemons-nspawn-PID-...`) and its test process PID
/// is gone: it died without dropping its container.
fn left_by_a_dead_test(name: &str) -> bool {
    let owner = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse().ok())
        .map(Pid::from_raw);
    owner.is_some_and(|pid| !alive(pid))
}

/// Kill what runs in the cgroups below `parent` that a dead test process left (a container
/// whose nspawn got its parent-death signal while PID 1 could not yet take a poweroff signal
/// boots on), and remove them.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if left_by_a_dead_test(&entry.file_name().to_string_lossy()) {
            let stale = Cgroup {
                dirs: vec![entry.path()],
            };
            stale.kill();
            stale.remove();
        }
    }
}

/// Remove the consoles' temporary directories that a dead test process left.
fn remove_stale_consoles() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if left_by_a_dead_test(&entry.file_name().to_string_lossy()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// `rmdir` a cgroup and every cgroup below it, deepest first.
fn remove_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

/// The processes in the cgroup `dir` and every cgroup below it.
fn processes_below(dir: &Path) -> Vec<Pid> {
    let mut pids = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut procs = String::new();
        if File::open(dir.join("cgroup.procs"))
            .and_then(|mut f| f.read_to_string(&mut procs))
            .is_ok()
        {
            pids.extend(
                procs
                    .lines()
                    .filter_map(|l| l.parse().ok())
                    .map(Pid::from_raw),
            );
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// What a command run in the container printed, and how it exited.
#[derive(Debug)]
pub struct Outcome {
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Assert that the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Outcome {
        assert!(
            self.status.success(),
            "`{}` failed: {self:#?}",
            self.command
        );
        self
    }
}

/// A unit's state as `systemctl show` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `ActiveState`: `active`, `inactive`, `failed`, `activating`, ...
    pub active: String,
    /// `SubState`: `running`, `dead`, `listening`, `exited`, ...
    pub sub: String,
    /// `MainPID`, in the container's pid namespace (as its pidfiles say it); 0 for none.
    pub main_pid: u32,
    /// `Result`: `success`, `exit-code`, `timeout`, `watchdog`, ...
    pub result: String,
}

impl UnitState {
    /// `(active, sub, result)`, to compare in one assertion.
    pub fn summary(&self) -> (&str, &str, &str) {
        (&self.active, &self.sub, &self.result)
    }
}
