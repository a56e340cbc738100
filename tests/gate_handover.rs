//! The handover gate: at a restart, the listening sockets leave a daemon only for the new
//! instance, verified by the pidfile's lock that travels with them, and come in only if they
//! match the configured addresses; every failure falls back to a stop, then a start, or fails
//! (busy), and says which; and whatever process is killed at whatever moment of a restart (the
//! caller, the old instance, the new one), `status` tells the truth afterwards and one `stop`
//! ends everything that serves.
//!
//! One test per item of the findings, through real processes: the fixture's `listen-echo` daemon,
//! its `api restart` and `restart` commands, real users (`useradd`) where the item is about
//! another user, and a pid namespace where a pid must be reused. The races run a few cycles by
//! default and many with `DAEMONS_TEST_LONG=1`, each bounded in time.

mod common;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DEADLINE, Fixture, Reply, alive, fd_targets, fixture_binary, require_pid_namespace,
    require_root, require_tool, test_user, tool_path, wait_until,
};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// Whether the races run their long form.
fn long() -> bool {
    std::env::var_os("DAEMONS_TEST_LONG").is_some_and(|v| v == "1")
}

/// How many cycles a race runs, and for how long at most: a few by default, many in the long
/// form.
fn cycles(short: usize, long_form: usize) -> (usize, Duration) {
    if long() {
        (long_form, Duration::from_secs(600))
    } else {
        (short, Duration::from_secs(60))
    }
}

/// A port on 127.0.0.1 that nobody listens on: bound to port 0, read, let go of.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A fixture whose daemon serves `listen-echo` on 127.0.0.1:`port`, marking `term PID` when its
/// SIGTERM handlers run.
fn listen_echo(port: u16) -> Fixture {
    Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", format!("127.0.0.1:{port}"))
        .with("FIXTURE_HANDLER_PIDS", "1")
}

/// Connect to `port`, send a line, and read it back.
fn echo(port: u16, line: &str) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr(port), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(line.as_bytes())?;
    let mut echoed = String::new();
    BufReader::new(stream).read_line(&mut echoed)?;
    if echoed != line {
        return Err(io::Error::other(format!("sent {line:?}, got {echoed:?}")));
    }
    Ok(())
}

/// The inodes of the TCP sockets that listen on 127.0.0.1:`port` (`/proc/net/tcp`, state 0A).
fn listening_inodes(port: u16) -> Vec<u64> {
    listening_inodes_at("0100007F", port)
}

/// The same for another address of the loopback (`0200007F`: 127.0.0.2, as `/proc` writes it).
fn listening_inodes_at(host: &str, port: u16) -> Vec<u64> {
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("{host}:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Whether `pid` holds a descriptor of the socket with inode `inode`.
fn holds_socket(pid: Pid, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    fd_targets(pid)
        .iter()
        .any(|t| t.as_os_str() == wanted.as_str())
}

/// The pids that the marks name after `prefix` (`term 42`), in order.
fn marked(fx: &Fixture, prefix: &str) -> Vec<Pid> {
    fx.marks()
        .iter()
        .filter_map(|m| m.strip_prefix(prefix)?.trim().parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// A FIFO that holds a daemon at a gate (`FIXTURE_SETUP_GATE`, `FIXTURE_TERM_GATE`) until the
/// test lets it through.
struct Gate(PathBuf);

impl Gate {
    fn new(fx: &Fixture, name: &str) -> Gate {
        let path = fx.path(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666))
            .expect("mkfifo");
        Gate(path)
    }

    /// Let the daemon waiting at the gate through: open for writing, which succeeds once it
    /// reads, and close.
    fn release(&self) {
        let opened = wait_until(DEADLINE, || {
            fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.0)
                .is_ok()
        });
        assert!(opened, "nobody waits at the gate {}", self.0.display());
    }
}

/// A fixture command launched in the background, its output captured.
fn launch(command: &mut Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the fixture")
}

/// Wait for a command launched with [`launch`] to end (at most 30 s), and return its output.
fn finish(child: Child) -> Reply {
    let caller = Pid::from_raw(child.id() as i32);
    let since = Instant::now();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    let output = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            let _ = kill(caller, Signal::SIGKILL);
            panic!("fixture {caller} did not finish in 30 s");
        })
        .expect("wait for the fixture");
    Reply {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        status: output.status,
        caller,
        elapsed: since.elapsed(),
    }
}

/// Kill a command launched with [`launch`] (SIGKILL, as `timeout -s KILL` or a lost session
/// would) and reap it.
fn kill_caller(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The files of the daemon's directory besides the test's own (marks, logs, gates).
fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read the directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !matches!(name.as_str(), "marks" | "stderr.log") && !name.ends_with(".gate"))
        .collect();
    names.sort();
    names
}

/// After whatever happened: exactly one daemon process is left, `status` names it (exit 0),
/// and it serves the port. Returns it.
fn one_daemon_serves(fx: &Fixture, port: u16) -> Pid {
    let mut pid = None;
    let settled = wait_until(DEADLINE, || {
        let processes = fx.processes();
        let status = fx.run("api status");
        let named = status
            .line()
            .strip_prefix("running ")
            .and_then(|p| p.parse().ok())
            .map(Pid::from_raw);
        pid = named;
        processes.len() == 1 && named == Some(processes[0])
    });
    assert!(
        settled,
        "not exactly one daemon named by status: processes {:?}, status {:?}\n{}",
        fx.processes(),
        fx.run("api status").line(),
        fx.stderr_log()
    );
    let pid = pid.expect("a pid");
    let cli = fx.run("status");
    assert_eq!(cli.code(), Some(0), "{cli:?}");
    assert!(cli.stdout.contains(&format!("pid {pid}")), "{cli:?}");
    echo(port, "still served\n").unwrap_or_else(|e| panic!("pid {pid} serves: {e}"));
    pid
}

/// After a restart in which a process was killed: either one daemon serves and `status` names
/// it (see [`one_daemon_serves`]), or none runs and `status` says so (the new instance was
/// killed after it took over). Returns the one that serves.
fn one_daemon_or_none(fx: &Fixture, port: u16) -> Option<Pid> {
    let mut none = false;
    wait_until(DEADLINE, || {
        let status = fx.run("api status");
        let processes = fx.processes();
        none = processes.is_empty()
            && (status.line() == "not-running" || status.line().starts_with("dead "));
        none || processes.len() == 1
    });
    if none {
        assert_ne!(fx.run("status").code(), Some(0));
        assert!(
            listening_inodes(port).is_empty(),
            "nobody runs, yet the port is held"
        );
        return None;
    }
    Some(one_daemon_serves(fx, port))
}

/// One `stop`, and nothing is left: no process, no listener, no pidfile, no handover socket, no
/// temporary file.
fn one_stop_ends_everything(fx: &Fixture, port: u16) {
    let reply = fx.run("api stop");
    assert_eq!(reply.word(0), "stopped", "{reply:?}");
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "one stop left {:?}\n{}",
        fx.processes(),
        fx.stderr_log()
    );
    assert!(
        wait_until(DEADLINE, || listening_inodes(port).is_empty()),
        "nobody listens any more"
    );
    let dir = fx
        .pidfile()
        .parent()
        .expect("the pidfile's directory")
        .to_path_buf();
    assert_eq!(leftovers(&dir), Vec::<String>::new(), "nothing is left");
}

/// `api restart`'s words: `started PID handed-over`, or `started PID stopped-then-started KIND`.
fn restarted(reply: &Reply) -> (Pid, String, String) {
    assert_eq!(
        (reply.word(0), reply.code()),
        ("started", Some(0)),
        "{reply:?}"
    );
    (
        reply.pid(),
        reply.word(2).to_owned(),
        reply.word(3).to_owned(),
    )
}

/// A small pseudo-random sequence, for the moments at which the races kill.
struct Moments(u64);

impl Moments {
    fn new() -> Moments {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        eprintln!("moments seeded with {seed}");
        Moments(seed | 1)
    }

    /// A duration below `max`.
    fn below(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % (max.as_micros() as u64).max(1))
    }
}

// Item 4: SO_PEERCRED's pid of a listening socket is that of whoever called `listen()`. Another
// user plants a socket at PIDFILE.handover in a shared sticky directory, from a process that then
// exits; the daemon gets that very pid (steered here in a pid namespace). The restart must not
// take the planted socket's offer (a decoy listener), and the configured port must be served.
#[test]
fn a_socket_planted_at_the_handover_path_by_another_user_is_never_taken() {
    if !require_root("the test makes users and a pid namespace")
        || !require_pid_namespace()
        || !require_tool("setpriv")
    {
        return;
    }
    let (owner, _) = test_user("daemons-ho-owner");
    let (intruder, _) = test_user("daemons-ho-intruder");
    let port = free_port();
    let mut fx = listen_echo(port);
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let shared = fx.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    for (key, name) in [
        ("FIXTURE_PIDFILE", "daemon.pid"),
        ("FIXTURE_MARKS", "marks"),
        ("FIXTURE_STDERR", "stderr.log"),
    ] {
        fx.set(key, shared.join(name));
    }
    let gate = Gate::new(&fx, "ns.gate");
    let portfile = fx.path("decoy.port");
    fs::write(&portfile, "").expect("create the decoy's port file");
    fs::set_permissions(&portfile, fs::Permissions::from_mode(0o666)).expect("chmod");
    // In a pid namespace of its own: the intruder's listener is pid 600 and exits; the
    // daemon, started by its owner as pid 598 (its fork makes 599, then the daemon, 600), gets
    // its pid; then the owner restarts it.
    let script = r#"
        set -e
        echo 599 > /proc/sys/kernel/ns_last_pid
        setpriv --reuid="$INTRUDER" --regid="$INTRUDER" --clear-groups "$FIXTURE" plant-socket "$HANDOVER" "$PORTFILE" &
        echo "planted $!"
        wait $!
        echo 597 > /proc/sys/kernel/ns_last_pid
        echo "start $(setpriv --reuid="$OWNER" --regid="$OWNER" --clear-groups "$FIXTURE" api start)"
        echo "restart $(setpriv --reuid="$OWNER" --regid="$OWNER" --clear-groups "$FIXTURE" api restart)"
        echo waiting
        cat "$GATE" > /dev/null
        echo "stop $(setpriv --reuid="$OWNER" --regid="$OWNER" --clear-groups "$FIXTURE" api stop)"
    "#;
    let template = fx.command("status");
    let mut command = Command::new(tool_path("unshare"));
    command
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", script])
        .env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FIXTURE", fixture_binary())
        .env("HANDOVER", shared.join("daemon.pid.handover"))
        .env("PORTFILE", &portfile)
        .env("GATE", &gate.0)
        .env("OWNER", owner.to_string())
        .env("INTRUDER", intruder.to_string())
        .stdin(Stdio::null());
    let mut namespace = launch(&mut command);
    let (tx, lines) = mpsc::channel();
    let stdout = namespace.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    while said.last().is_none_or(|l: &String| l != "waiting") {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => said.push(line),
            Err(_) => {
                let _ = namespace.kill();
                let mut err = String::new();
                let _ = namespace
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut err));
                panic!("the namespace said {said:?}, then nothing: {err}");
            }
        }
    }
    let line = |word: &str| {
        said.iter()
            .find_map(|l| l.strip_prefix(word))
            .unwrap_or_else(|| panic!("no {word:?} in {said:?}"))
            .trim()
            .to_owned()
    };
    // The scenario holds: the daemon got the pid of the process that called `listen()`.
    assert_eq!(line("planted "), "600", "{said:?}");
    assert_eq!(line("start "), "started 600", "{said:?}");
    // The configured port is served, by the new instance, and the decoy is nobody's but the
    // intruder's.
    echo(port, "served\n").expect("the configured port is served after the restart");
    let decoy: u16 = fs::read_to_string(&portfile)
        .expect("the decoy's port")
        .trim()
        .parse()
        .expect("a port");
    let decoys = listening_inodes_at("0200007F", decoy);
    assert_eq!(decoys.len(), 1, "the decoy listens on 127.0.0.2:{decoy}");
    let daemons: Vec<Pid> = fx
        .processes()
        .into_iter()
        .filter(|&p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| !c.windows(13).any(|w| w == b"serve-planted"))
        })
        .collect();
    for &pid in &daemons {
        assert!(
            !decoys.iter().any(|&inode| holds_socket(pid, inode)),
            "pid {pid} took the decoy"
        );
    }
    let restart = line("restart ");
    assert!(
        restart.starts_with("started ") && restart.ends_with("stopped-then-started foreign"),
        "the planted socket is another user's: the restart stops, then starts: {said:?}"
    );
    gate.release();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        said.push(line);
    }
    let ended = finish(namespace);
    assert!(ended.status.success(), "{ended:?}");
    assert!(
        said.iter().any(|l| l.starts_with("stop stopped ")),
        "one stop in the namespace: {said:?}"
    );
    assert!(
        wait_until(DEADLINE, || listening_inodes(port).is_empty()),
        "nobody listens any more"
    );
}

// Item 5: the offer socket is bound before the privilege drop, as root, mode 0600, and nothing
// is ever changed through its path: a user who owns the pidfile's directory and renames symbolic
// links over PIDFILE.handover while the daemon starts and stops never gets a file chmodded.
#[test]
fn the_offer_socket_is_roots_bound_before_the_drop_and_nothing_is_chmodded_through_its_path() {
    if !require_root("the daemon drops from root to a user") {
        return;
    }
    let (uid, gid) = test_user("daemons-ho-svc");
    let port = free_port();
    let mut fx = listen_echo(port).with("FIXTURE_USER", "daemons-ho-svc");
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = fx.path("run");
    fs::create_dir(&run).expect("mkdir");
    nix::unistd::chown(&run, Some(uid.into()), Some(gid.into())).expect("chown");
    fx.set("FIXTURE_PIDFILE", run.join("daemon.pid"));
    let handover = run.join("daemon.pid.handover");

    let pid = fx.start();
    let meta = fs::symlink_metadata(&handover).expect("the offer socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (0, 0o600),
        "the offer socket is root's, mode 0600: bound before the drop to uid {uid}"
    );
    assert!(
        !fx.stderr_log().contains("cannot offer"),
        "{}",
        fx.stderr_log()
    );
    fx.stop_gracefully(pid);

    // The user renames links to a root file over the socket's path, again and again.
    let target = fx.path("root-file");
    fs::write(&target, "root's\n").expect("write");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut racer = Command::new(fixture_binary())
        .args(["race-symlinks"])
        .arg(&handover)
        .arg(&target)
        .env_clear()
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the racer");
    let (count, limit) = cycles(30, 600);
    let since = Instant::now();
    let mut done = 0;
    while done < count && since.elapsed() < limit {
        let pid = fx.start();
        fx.stop_gracefully(pid);
        done += 1;
    }
    let _ = racer.kill();
    let _ = racer.wait();
    let meta = fs::metadata(&target).expect("the root file");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o644),
        "after {done} start/stop cycles the root file was changed through the offer's path"
    );
}

// Item 6: after the drop to a service account, a process of that account gets no socket: the
// offer is root's (bound before the drop) and the running daemon answers only root and the user
// that started it, whatever the socket file's mode.
#[test]
fn a_process_of_the_account_the_daemon_dropped_to_gets_no_socket() {
    if !require_root("the daemon drops from root to a user") {
        return;
    }
    let (uid, gid) = test_user("daemons-ho-www");
    let port = free_port();
    let mut fx = listen_echo(port).with("FIXTURE_USER", "daemons-ho-www");
    // The pidfile in a directory of the service account's, as /run/NAME/ usually is.
    fs::set_permissions(fx.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = fx.path("run");
    fs::create_dir(&run).expect("mkdir");
    nix::unistd::chown(&run, Some(uid.into()), Some(gid.into())).expect("chown");
    fx.set("FIXTURE_PIDFILE", run.join("daemon.pid"));
    let old = fx.start();
    let handover = run.join("daemon.pid.handover");
    let probe = |as_user: bool| {
        let mut command = Command::new(fixture_binary());
        command
            .arg("handover-probe")
            .arg(&handover)
            .env_clear()
            .stdin(Stdio::null());
        if as_user {
            command.uid(uid).gid(gid);
        }
        fx.execute(&mut command)
    };
    // The socket file is root's, 0600: the service account cannot even connect.
    let denied = probe(true);
    assert!(
        denied.line().starts_with("refused"),
        "the service account connected: {denied:?}"
    );
    // Even where it could connect (a socket file that others may write), it is refused.
    fs::set_permissions(&handover, fs::Permissions::from_mode(0o666)).expect("chmod");
    let refused = probe(true);
    assert_eq!(
        refused.line(),
        "answer daemons-handover 1 refused fds 0",
        "{refused:?}"
    );
    assert!(
        wait_until(DEADLINE, || fx
            .stderr_log()
            .contains(&format!("refused the listening sockets to uid {uid}"))),
        "{}",
        fx.stderr_log()
    );
    // Root, who started it, gets the offer; a connection that then goes leaves the daemon as
    // it was.
    let offered = probe(false);
    assert!(
        offered
            .line()
            .starts_with(&format!("answer daemons-handover 1 offer {old} fds ")),
        "{offered:?}"
    );
    assert!(
        wait_until(DEADLINE, || fx.pidfile_content()
            == Some(format!("{old}\n"))),
        "the daemon takes its pidfile back: {:?}",
        fx.pidfile_content()
    );
    echo(port, "served\n").expect("the daemon serves on");
    // And a restart by root hands over.
    let (new, how, _) = restarted(&fx.run("api restart"));
    assert_eq!(how, "handed-over", "{}", fx.stderr_log());
    assert_eq!(fx.reap(old), WaitStatus::Exited(old, 0));
    assert_eq!(marked(&fx, "term "), vec![old], "it stopped gracefully");
    assert_eq!(one_daemon_serves(&fx, port), new);
    one_stop_ends_everything(&fx, port);
}

// Item 8: whatever is at PIDFILE.handover instead of the daemon's offer (a file, a directory, a
// FIFO), the restart stops, then starts, says why, and never claims "on the same sockets".
#[test]
fn a_file_directory_or_fifo_at_the_handover_path_makes_restart_stop_then_start_and_say_so() {
    for kind in ["file", "directory", "fifo"] {
        let port = free_port();
        let fx = listen_echo(port);
        let first = fx.start();
        let handover = fx.path("daemon.pid.handover");
        let plant = || {
            let _ = fs::remove_file(&handover);
            match kind {
                "file" => fs::write(&handover, "not a socket\n").expect("write"),
                "directory" => fs::create_dir(&handover).expect("mkdir"),
                _ => {
                    nix::unistd::mkfifo(&handover, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .expect("mkfifo")
                }
            }
        };
        plant();
        let (second, how, why) = restarted(&fx.run("api restart"));
        assert_eq!(
            (how.as_str(), why.as_str()),
            ("stopped-then-started", "absent"),
            "{kind}"
        );
        assert_eq!(fx.reap(first), WaitStatus::Exited(first, 0), "{kind}");
        echo(port, "served\n").expect("the new instance serves");
        // The command line says what it did: stopped, then started, and why.
        let reply = fx.run("restart");
        assert_eq!(reply.code(), Some(0), "{kind}: {reply:?}");
        assert!(
            !reply.stdout.contains("same sockets"),
            "{kind}: it says the sockets were handed over: {reply:?}"
        );
        assert!(
            reply.stdout.contains(&format!("stopped (pid {second}"))
                && reply.stdout.contains(": started (pid "),
            "{kind}: {reply:?}"
        );
        assert!(
            reply.stderr.contains("cannot hand the listening sockets")
                && reply.stderr.contains("stopping, then starting instead"),
            "{kind}: {reply:?}"
        );
        let third = reply.pids().last().copied().expect("the new pid");
        assert_eq!(fx.reap(second), WaitStatus::Exited(second, 0), "{kind}");
        assert_eq!(one_daemon_serves(&fx, port), third);
        fx.run("api stop");
        assert!(wait_until(DEADLINE, || fx.processes().is_empty()), "{kind}");
        if kind == "directory" {
            fs::remove_dir(&handover).expect("rmdir");
        } else {
            fs::remove_file(&handover).expect("rm");
        }
        assert_eq!(leftovers(fx.dir()), Vec::<String>::new(), "{kind}");
    }
}

// Item 8: a socket at PIDFILE.handover that never answers (the test's own, which it never
// accepts on) costs one step's timeout, not the ready timeout: the restart stops, then starts.
#[test]
fn a_handover_socket_that_never_answers_makes_restart_stop_then_start_within_a_step() {
    let port = free_port();
    let fx = listen_echo(port);
    let first = fx.start();
    let handover = fx.path("daemon.pid.handover");
    fs::remove_file(&handover).expect("rm");
    let _silent = UnixListener::bind(&handover).expect("bind the silent socket");
    let reply = fx.run("api restart");
    let (second, how, why) = restarted(&reply);
    assert_eq!(
        (how.as_str(), why.as_str()),
        ("stopped-then-started", "unresponsive")
    );
    assert!(
        reply.elapsed < Duration::from_secs(15),
        "the ready timeout is 30 s, a step 2 s: {reply:?}"
    );
    assert_eq!(fx.reap(first), WaitStatus::Exited(first, 0));
    assert_eq!(one_daemon_serves(&fx, port), second);

    // A socket whose queue of connections is full, where a connection would wait for room.
    fs::remove_file(&handover).expect("rm");
    let _full = UnixListener::bind(&handover).expect("bind the full socket");
    let mut waiting = Vec::new();
    loop {
        let stream = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .expect("socket");
        let address = nix::sys::socket::UnixAddr::new(&handover).expect("address");
        match nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&stream), &address) {
            Ok(()) => waiting.push(stream),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("connect: {e}"),
        }
        assert!(waiting.len() < 100_000, "the queue never fills");
    }
    let reply = fx.run("api restart");
    let (third, how, why) = restarted(&reply);
    assert_eq!(
        (how.as_str(), why.as_str()),
        ("stopped-then-started", "unresponsive")
    );
    assert!(reply.elapsed < Duration::from_secs(15), "{reply:?}");
    assert_eq!(fx.reap(second), WaitStatus::Exited(second, 0));
    assert_eq!(one_daemon_serves(&fx, port), third);
    fx.run("api stop");
    assert!(wait_until(DEADLINE, || fx.processes().is_empty()));
}

// Item 8: a pidfile path of 99 bytes or more, whose PIDFILE.handover does not fit in a Unix
// socket address, still hands over (through the directory's descriptor); a name too long even
// for that stops, then starts, and says so.
#[test]
fn a_long_pidfile_path_hands_the_sockets_over() {
    let port = free_port();
    let mut fx = listen_echo(port);
    let mut dir = fx.dir().to_path_buf();
    while dir.as_os_str().len() < 120 {
        dir = dir.join("a-rather-long-directory-name");
    }
    fs::create_dir_all(&dir).expect("mkdir -p");
    fx.set("FIXTURE_PIDFILE", dir.join("daemon.pid"));
    let first = fx.start();
    assert!(
        dir.join("daemon.pid.handover").as_os_str().len() > 108,
        "longer than sun_path"
    );
    let (second, how, _) = restarted(&fx.run("api restart"));
    assert_eq!(how, "handed-over", "{}", fx.stderr_log());
    assert_eq!(fx.reap(first), WaitStatus::Exited(first, 0));
    let reply = fx.run("restart");
    assert!(
        reply.stdout.contains("on the same sockets"),
        "{reply:?}\n{}",
        fx.stderr_log()
    );
    assert_eq!(fx.reap(second), WaitStatus::Exited(second, 0));
    let third = one_daemon_serves(&fx, port);
    fx.run("api stop");
    assert!(wait_until(DEADLINE, || fx.processes().is_empty()));
    assert!(!alive(third));

    // A name that does not fit even after /proc/self/fd/N/.
    let name = format!("{}.pid", "n".repeat(200));
    fx.set("FIXTURE_PIDFILE", fx.path(&name));
    let first = fx.start();
    let (_, how, why) = restarted(&fx.run("api restart"));
    assert_eq!(
        (how.as_str(), why.as_str()),
        ("stopped-then-started", "path-too-long")
    );
    assert_eq!(fx.reap(first), WaitStatus::Exited(first, 0));
    one_daemon_serves(&fx, port);
    fx.run("api stop");
    assert!(wait_until(DEADLINE, || fx.processes().is_empty()));
}

// Item 9: one restart at a time. A second restart that comes while a new instance is being
// handed the sockets fails, saying that another is under way, and changes nothing; the first
// completes, and one daemon serves.
#[test]
fn a_second_restart_during_a_handover_fails_busy_and_one_daemon_serves() {
    let port = free_port();
    let fx = listen_echo(port);
    let old = fx.start();
    let gate = Gate::new(&fx, "setup.gate");
    let first = launch(fx.command("api restart").env("FIXTURE_SETUP_GATE", &gate.0));
    assert!(
        wait_until(DEADLINE, || !marked(&fx, "setup ").is_empty()),
        "the new instance is being set up"
    );
    let new = marked(&fx, "setup ")[0];
    let second = fx.run("api restart");
    second.assert_error("Handover");
    assert!(
        second.line().contains("another restart is under way"),
        "{second:?}"
    );
    let cli = fx.run("restart");
    assert_eq!(cli.code(), Some(1), "{cli:?}");
    assert!(
        cli.stderr.contains("another restart is under way"),
        "{cli:?}"
    );
    assert_eq!(
        marked(&fx, "setup ").len(),
        1,
        "no other instance was set up"
    );
    gate.release();
    let (pid, how, _) = restarted(&finish(first));
    assert_eq!((pid, how.as_str()), (new, "handed-over"));
    assert_eq!(fx.reap(old), WaitStatus::Exited(old, 0));
    assert_eq!(one_daemon_serves(&fx, port), new);
    one_stop_ends_everything(&fx, port);
}

// Item 9, as a race: two restarts at once, again and again. Each either hands over or fails
// busy; afterwards one daemon serves, `status` names it, and a restart that said it succeeded
// named it or a daemon that a later restart replaced.
#[test]
fn two_restarts_at_once_leave_one_daemon_named_by_status() {
    let port = free_port();
    let fx = listen_echo(port);
    let mut serving = fx.start();
    let (count, limit) = cycles(8, 200);
    let since = Instant::now();
    let mut done = 0;
    while done < count && since.elapsed() < limit {
        let replies = fx.run_all(&mut [fx.command("api restart"), fx.command("api restart")]);
        let mut succeeded = Vec::new();
        for reply in &replies {
            match reply.word(0) {
                "started" => {
                    let (pid, how, _) = restarted(reply);
                    assert_eq!(how, "handed-over", "{reply:?}\n{}", fx.stderr_log());
                    succeeded.push(pid);
                }
                _ => {
                    reply.assert_error("Handover");
                    assert!(reply.line().contains("another restart"), "{reply:?}");
                }
            }
        }
        assert!(!succeeded.is_empty(), "one of them hands over: {replies:?}");
        let now = one_daemon_serves(&fx, port);
        assert!(
            succeeded.contains(&now),
            "cycle {done}: {now} serves, the restarts said {succeeded:?}"
        );
        assert!(!alive(serving), "cycle {done}: {serving} still runs");
        serving = now;
        done += 1;
    }
    one_stop_ends_everything(&fx, port);
}

// Item 10: killing the restart's caller (Ctrl-C, `timeout`) at any step changes nothing: the new
// instance takes over and the old one stops by itself, its stop handlers run as for SIGTERM.
#[test]
fn killing_the_restarts_caller_at_any_step_changes_nothing() {
    // While the new instance is set up, after it received everything.
    let port = free_port();
    let fx = listen_echo(port);
    let old = fx.start();
    let gate = Gate::new(&fx, "setup.gate");
    let caller = launch(fx.command("api restart").env("FIXTURE_SETUP_GATE", &gate.0));
    assert!(wait_until(DEADLINE, || !marked(&fx, "setup ").is_empty()));
    let new = marked(&fx, "setup ")[0];
    kill_caller(caller);
    gate.release();
    assert_eq!(
        fx.reap(old),
        WaitStatus::Exited(old, 0),
        "{}",
        fx.stderr_log()
    );
    assert_eq!(marked(&fx, "term "), vec![old], "its stop handlers ran");
    assert_eq!(one_daemon_serves(&fx, port), new);
    one_stop_ends_everything(&fx, port);

    // After the new instance took over, while the old one runs its stop handlers.
    let port = free_port();
    let fx = listen_echo(port);
    let gate = Gate::new(&fx, "term.gate");
    let old = {
        let reply = fx.execute(fx.command("api start").env("FIXTURE_TERM_GATE", &gate.0));
        assert_eq!(reply.word(0), "started", "{reply:?}");
        reply.pid()
    };
    let caller = launch(&mut fx.command("api restart"));
    assert!(
        wait_until(DEADLINE, || marked(&fx, "term-gate ") == vec![old]),
        "the old instance stops: {:?}",
        fx.marks()
    );
    kill_caller(caller);
    gate.release();
    assert_eq!(fx.reap(old), WaitStatus::Exited(old, 0));
    one_daemon_serves(&fx, port);
    one_stop_ends_everything(&fx, port);
}

// Item 10 and 11, as a race: restarts whose caller, old instance or new instance is killed at a
// random moment. After each, one daemon serves and `status` names it; at the end one stop ends
// everything and no temporary file is left.
#[test]
fn any_process_of_a_restart_killed_at_a_random_moment_leaves_one_daemon_named_by_status() {
    let port = free_port();
    let fx = listen_echo(port);
    let first = fx.start();
    // How long a whole restart takes here, the caller's start included: the kills come at
    // moments within it.
    let calibration = fx.run("api restart");
    let (mut serving, _, _) = restarted(&calibration);
    assert_eq!(fx.reap(first), WaitStatus::Exited(first, 0));
    let span = calibration.elapsed.mul_f64(1.2);
    let mut moments = Moments::new();
    let (count, limit) = cycles(12, 300);
    let since = Instant::now();
    let mut done = 0;
    while done < count && since.elapsed() < limit {
        let caller = launch(&mut fx.command("api restart"));
        // A random moment within the few milliseconds that a restart takes here.
        thread::sleep(moments.below(span));
        match done % 3 {
            0 => kill_caller(caller),
            1 => {
                let _ = kill(serving, Signal::SIGKILL);
                let _ = finish(caller);
            }
            _ => {
                let others: Vec<Pid> = fx
                    .processes()
                    .into_iter()
                    .filter(|&p| p != serving && p.as_raw() != caller.id() as i32)
                    .collect();
                for pid in others {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                let _ = finish(caller);
            }
        }
        let now = one_daemon_or_none(&fx, port);
        assert!(
            leftovers(fx.dir())
                .iter()
                .all(|name| name == "daemon.pid" || name == "daemon.pid.handover"),
            "cycle {done}: {:?}",
            leftovers(fx.dir())
        );
        // Nothing serves when the new instance was killed right after it took over: start again.
        serving = now.unwrap_or_else(|| fx.start());
        done += 1;
    }
    one_stop_ends_everything(&fx, port);
}

// Item 11: the old instance killed while the new one is set up. Meanwhile `status` names the
// new one (it holds the pidfile's lock), `stop` stops it, and, left alone, it serves.
#[test]
fn the_old_instance_killed_mid_handover_leaves_the_new_one_named_and_stoppable() {
    for stop_it in [false, true] {
        let port = free_port();
        let fx = listen_echo(port).with("FIXTURE_STOP_TIMEOUT_MS", "1000");
        let old = fx.start();
        let gate = Gate::new(&fx, "setup.gate");
        let caller = launch(fx.command("api restart").env("FIXTURE_SETUP_GATE", &gate.0));
        assert!(wait_until(DEADLINE, || !marked(&fx, "setup ").is_empty()));
        let new = marked(&fx, "setup ")[0];
        kill(old, Signal::SIGKILL).expect("kill -9 the old instance");
        assert_eq!(
            fx.reap(old),
            WaitStatus::Signaled(old, Signal::SIGKILL, false)
        );
        assert_eq!(
            fx.run("api status").line(),
            format!("running {new}"),
            "while the new instance is set up, status names it"
        );
        assert_eq!(fx.run("status").code(), Some(0));
        if stop_it {
            // Held at its set-up, it does not stop within the stop timeout: it is killed.
            let reply = fx.run("api stop");
            assert_eq!((reply.word(0), reply.pid()), ("stopped", new), "{reply:?}");
            let _ = finish(caller);
            assert!(wait_until(DEADLINE, || fx.processes().is_empty()));
            assert_eq!(fx.run("api status").line(), "not-running");
            // The stop removed the stale pidfile, and the offer socket with it.
            assert_eq!(leftovers(fx.dir()), Vec::<String>::new());
        } else {
            gate.release();
            let reply = finish(caller);
            let (pid, how, _) = restarted(&reply);
            assert_eq!((pid, how.as_str()), (new, "handed-over"), "{reply:?}");
            assert_eq!(one_daemon_serves(&fx, port), new);
            one_stop_ends_everything(&fx, port);
        }
    }
}

// Items 10 and 11: a `stop` that comes during a restart stops both instances, the one that runs
// and the new one that holds the pidfile's lock with it, and nothing serves afterwards.
#[test]
fn a_stop_during_a_restart_stops_both_instances() {
    let port = free_port();
    let fx = listen_echo(port).with("FIXTURE_STOP_TIMEOUT_MS", "1000");
    let old = fx.start();
    let gate = Gate::new(&fx, "setup.gate");
    let caller = launch(fx.command("api restart").env("FIXTURE_SETUP_GATE", &gate.0));
    assert!(wait_until(DEADLINE, || !marked(&fx, "setup ").is_empty()));
    let new = marked(&fx, "setup ")[0];
    let reply = fx.run("api stop");
    assert_eq!((reply.word(0), reply.pid()), ("stopped", old), "{reply:?}");
    assert_eq!(
        fx.reap(old),
        WaitStatus::Exited(old, 0),
        "the old one stopped gracefully"
    );
    assert!(
        !alive(new),
        "the new one, held at its set-up, was stopped too"
    );
    let restart = finish(caller);
    assert_eq!(restart.code(), Some(1), "the restart failed: {restart:?}");
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "{:?}",
        fx.processes()
    );
    assert_eq!(fx.run("api status").line(), "not-running");
    assert!(listening_inodes(port).is_empty(), "nobody listens");
    assert_eq!(leftovers(fx.dir()), Vec::<String>::new());
}

// Item 11 and the temporary file: the new instance killed while it is set up. The restart fails,
// saying so; the old instance serves on with its pidfile as it was; nothing is left behind; and
// the next restart hands over.
#[test]
fn the_new_instance_killed_mid_handover_leaves_the_old_one_serving_and_nothing_behind() {
    let port = free_port();
    let fx = listen_echo(port);
    let old = fx.start();
    let gate = Gate::new(&fx, "setup.gate");
    let caller = launch(fx.command("api restart").env("FIXTURE_SETUP_GATE", &gate.0));
    assert!(wait_until(DEADLINE, || !marked(&fx, "setup ").is_empty()));
    let new = marked(&fx, "setup ")[0];
    assert_eq!(
        fx.pidfile_content(),
        Some(format!("{old}\nhandover: {new}\n")),
        "while it is handed the sockets, the pidfile names the new instance too"
    );
    kill(new, Signal::SIGKILL).expect("kill -9 the new instance");
    let reply = finish(caller);
    reply.assert_error("DaemonVanished");
    assert!(
        wait_until(DEADLINE, || fx.pidfile_content()
            == Some(format!("{old}\n"))),
        "the old instance takes its pidfile back: {:?}",
        fx.pidfile_content()
    );
    assert_eq!(one_daemon_serves(&fx, port), old);
    assert_eq!(
        leftovers(fx.dir()),
        vec!["daemon.pid".to_string(), "daemon.pid.handover".to_string()],
        "no temporary file is left"
    );
    let (next, how, _) = restarted(&fx.run("api restart"));
    assert_eq!(how, "handed-over");
    assert_eq!(fx.reap(old), WaitStatus::Exited(old, 0));
    assert_eq!(one_daemon_serves(&fx, port), next);
    one_stop_ends_everything(&fx, port);
}

// Item 12: a restart of an old instance stopped with SIGSTOP does not wait for the ready timeout
// and does not leave it: it gets no answer within a step, stops the old instance (SIGTERM, then
// SIGCONT: it stops gracefully), and starts a new one.
#[test]
fn a_restart_of_a_stopped_instance_stops_it_and_starts_a_new_one() {
    for cli in [false, true] {
        let port = free_port();
        let fx = listen_echo(port);
        let old = fx.start();
        kill(old, Signal::SIGSTOP).expect("SIGSTOP");
        let reply = fx.run(if cli { "restart" } else { "api restart" });
        assert!(reply.elapsed < Duration::from_secs(10), "{reply:?}");
        if cli {
            assert_eq!(reply.code(), Some(0), "{reply:?}");
            assert!(!reply.stdout.contains("same sockets"), "{reply:?}");
            assert!(reply.stderr.contains("did not answer"), "{reply:?}");
        } else {
            let (_, how, why) = restarted(&reply);
            assert_eq!(
                (how.as_str(), why.as_str()),
                ("stopped-then-started", "unresponsive")
            );
        }
        assert_eq!(
            fx.reap(old),
            WaitStatus::Exited(old, 0),
            "it stopped gracefully"
        );
        assert_eq!(marked(&fx, "term "), vec![old]);
        one_daemon_serves(&fx, port);
        one_stop_ends_everything(&fx, port);
    }
}

// The command line takes one command: anything after it is a usage error, and nothing is done.
#[test]
fn arguments_after_the_command_are_a_usage_error() {
    let port = free_port();
    let fx = listen_echo(port);
    let pid = fx.start();
    for args in [
        "status now",
        "restart please",
        "stop --force",
        "reload twice",
    ] {
        let reply = fx.run(args);
        assert_eq!(reply.code(), Some(2), "{args}: {reply:?}");
        assert!(
            reply.stderr.contains("unexpected argument") && reply.stderr.contains("usage: "),
            "{args}: {reply:?}"
        );
        assert!(reply.stdout.is_empty(), "{args}: {reply:?}");
    }
    assert_eq!(fx.run("api status").line(), format!("running {pid}"));
    assert!(
        fx.marks()
            .iter()
            .all(|m| !m.starts_with("term") && !m.starts_with("hup"))
    );
    fx.stop_gracefully(pid);
}
