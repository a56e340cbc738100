//! Listening sockets: `.listen(address)` binds before the daemon is ready or takes the socket
//! that a service manager passed (`LISTEN_FDS`), and `restart()` hands the sockets to the new
//! instance, so that no client is refused and no accepted connection is reset. Checked from
//! outside with the fixture's `listen-echo` body, with clients on 127.0.0.1 or on a Unix socket
//! in the test's directory.

// The tests play the operator and the attacker: they signal and fork as they like.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DEADLINE, Fixture, Reply, alive, fd_target, fixture_binary, require_tool, tool_path, wait_until,
};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// A port on 127.0.0.1 that nobody listens on: bound to port 0, read, let go of.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A fixture whose daemon serves `listen-echo` on `addresses` (comma-separated).
fn listen_echo(addresses: &str) -> Fixture {
    Fixture::new()
        .with("FIXTURE_BODY", "listen-echo")
        .with("FIXTURE_LISTEN", addresses)
}

/// One line through a stream: sent, and read back whole, or the error that came instead.
fn round_trip(stream: &mut (impl io::Read + Write), line: &str) -> io::Result<()> {
    stream.write_all(line.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut echoed = String::new();
    reader.read_line(&mut echoed)?;
    if echoed != line {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("sent {line:?}, got back {echoed:?}"),
        ));
    }
    Ok(())
}

/// Connect to `addr`, send `line`, and read it back.
fn echo_tcp(addr: SocketAddr, line: &str) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    round_trip(&mut stream, line)
}

/// The same over the Unix socket at `path`.
fn echo_unix(path: &Path, line: &str) -> io::Result<()> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    round_trip(&mut stream, line)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// How many descriptors `pid` has open.
fn fd_count(pid: Pid) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// The inode of a `socket:[INODE]` link.
fn socket_inode(target: &Path) -> Option<u64> {
    let text = target.to_str()?;
    text.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of the TCP sockets that listen on 127.0.0.1:`port` (`/proc/net/tcp`, state 0A).
fn listening_inodes(port: u16) -> Vec<u64> {
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
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

/// The `flags:` of descriptor `fd` of `pid` (octal, as `/proc/PID/fdinfo` shows them).
fn fd_flags(pid: Pid, fd: i32) -> u32 {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("read fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("a flags line");
    u32::from_str_radix(flags.trim(), 8).expect("octal flags")
}

/// The pid of a restart: `started PID` from `api restart`, `restarted (pid PID, ...)` from the
/// command line.
fn restarted_pid(reply: &Reply) -> Pid {
    assert_eq!(reply.code(), Some(0), "{reply:?}");
    reply.pid()
}

/// `api restart` for even `i`, the command line's `restart` for odd: both hand over.
fn restart(fx: &Fixture, i: usize) -> Pid {
    if i.is_multiple_of(2) {
        let reply = fx.run("api restart");
        assert_eq!(reply.word(0), "started", "{reply:?}\n{}", fx.stderr_log());
        restarted_pid(&reply)
    } else {
        let reply = fx.run("restart");
        assert!(
            reply.stdout.contains(": restarted (pid ") && reply.stdout.contains("same sockets"),
            "{reply:?}\n{}",
            fx.stderr_log()
        );
        restarted_pid(&reply)
    }
}

/// Reap the instance `pid` that a restart stopped: it must have exited 0 after its SIGTERM.
fn assert_exited_cleanly(fx: &Fixture, pid: Pid) {
    assert_eq!(
        fx.reap(pid),
        WaitStatus::Exited(pid, 0),
        "{}",
        fx.stderr_log()
    );
}

/// The files left in the fixture's directory, besides its marks and its stderr log.
fn leftovers(fx: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fx.dir())
        .expect("read the directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !matches!(name.as_str(), "marks" | "stderr.log"))
        .collect();
    names.sort();
    names
}

/// How many `term` marks come before the mark `setup PID` of `pid`: the instances that had been
/// asked to stop when `pid` was set up. Read as text: two instances that mark at once may write
/// into each other's line (a mark is written in pieces), but never reorder a mark's pieces.
fn terms_before_setup(fx: &Fixture, pid: Pid) -> usize {
    let marks = fs::read_to_string(fx.path("marks")).unwrap_or_default();
    let setup = format!("setup {pid}");
    let at = marks
        .match_indices(&setup)
        .find(|(at, _)| !marks[at + setup.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|(at, _)| at)
        .unwrap_or_else(|| panic!("no mark {setup:?} in {marks:?}"));
    marks[..at].matches("term").count()
}

/// Sets the flag when dropped: a thread that waits on it ends even if the test panics.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What a client that connects in a tight loop saw.
#[derive(Debug, Default)]
struct Seen {
    echoed: u64,
    failures: Vec<String>,
}

/// Connect, send a line, read it back, again and again until `done` (at most two minutes, a
/// million connections, or twenty failures, which are enough to tell what went wrong).
fn tight_client(addr: SocketAddr, done: &AtomicBool, echoed: &AtomicU64) -> Seen {
    let mut seen = Seen::default();
    let end = Instant::now() + Duration::from_secs(120);
    for n in 0..1_000_000u64 {
        if done.load(Ordering::Acquire) || Instant::now() >= end || seen.failures.len() >= 20 {
            break;
        }
        match echo_tcp(addr, &format!("line {n}\n")) {
            Ok(()) => {
                seen.echoed += 1;
                echoed.fetch_add(1, Ordering::Release);
            }
            Err(e) => seen
                .failures
                .push(format!("connection {n}: {:?}: {e}", e.kind())),
        }
    }
    seen
}

#[test]
fn socket_activation_serves_the_passed_socket_at_fd_3() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut fx = listen_echo(&address);
    let child_env = fx.path("child.env");
    fx.set("FIXTURE_CHILD_ENV", &child_env);
    // systemd-socket-activate gives the program only TERM, PATH, USER, HOME, the LISTEN_*
    // variables and those named with -E: the fixture's are passed by name.
    let template = fx.command("run");
    let mut command = Command::new(tool_path("systemd-socket-activate"));
    command.env_clear().arg("-l").arg(&address);
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
            command.arg("-E").arg(key);
        }
    }
    command.arg(fixture_binary()).arg("run");
    let mut foreground = fx.foreground(&mut command);
    let pid = foreground.pid();

    // It listens, and execs the program when the first client comes: that client waits in the
    // queue of the socket that the daemon then takes.
    assert!(
        wait_until(DEADLINE, || listening_inodes(port).len() == 1),
        "systemd-socket-activate listens on {address}: {}",
        fs::read_to_string(fx.path("run.err")).unwrap_or_default()
    );
    echo_tcp(addr(port), "first\n").expect("the first client is served");
    echo_tcp(addr(port), "second\n").expect("the second client is served");
    assert!(
        wait_until(DEADLINE, || fx.count("accepted 2") == 1),
        "the daemon accepted both: {:?}",
        fx.marks()
    );
    assert_eq!(fx.pidfile_content(), Some(format!("{pid}\n")));

    // The only socket listening there is the one passed at descriptor 3, now close-on-exec.
    let inode = socket_inode(&fd_target(pid, 3)).expect("descriptor 3 is a socket");
    assert_eq!(listening_inodes(port), vec![inode]);
    assert_ne!(
        fd_flags(pid, 3) & libc::O_CLOEXEC as u32,
        0,
        "fd 3 is close-on-exec"
    );
    let environ = fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ: Vec<String> = environ
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        environ.contains(&format!("LISTEN_PID={pid}")) && environ.contains(&"LISTEN_FDS=1".into()),
        "it was activated through the environment: {environ:?}"
    );
    // /proc/PID/environ shows the environment the program started with; a child of the body
    // shows what the daemon's environment is now.
    assert!(
        wait_until(DEADLINE, || fs::read_to_string(&child_env)
            .is_ok_and(|e| e.contains("FIXTURE_BODY="))),
        "the body's child wrote its environment"
    );
    let seen_by_child = fs::read_to_string(&child_env).expect("child.env");
    assert!(
        !seen_by_child.contains("LISTEN_"),
        "the body's children do not see the LISTEN_* variables:\n{seen_by_child}"
    );

    foreground.signal(Signal::SIGTERM);
    let status = foreground.wait();
    assert!(
        status.success(),
        "{status:?}: {}",
        fs::read_to_string(fx.path("run.err")).unwrap_or_default()
    );
    assert_eq!(fx.count("term"), 1);
    assert!(!fx.pidfile().exists(), "the pidfile is removed");
    assert!(
        wait_until(DEADLINE, || listening_inodes(port).is_empty()),
        "nobody listens once it is gone"
    );
}

#[test]
fn a_taken_address_fails_start_with_error_listen() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("local address").port();
    let free = free_port();
    // The second address is the taken one: the first, bound already, must not stay bound.
    let fx = listen_echo(&format!("127.0.0.1:{free},127.0.0.1:{port}"));
    let reply = fx.run("api start");
    reply.assert_error("Listen");
    assert!(
        reply.line().contains(&format!("127.0.0.1:{port}")),
        "the error names the address: {reply:?}"
    );
    assert!(!fx.pidfile().exists(), "no pidfile is left");
    assert!(
        !fx.path("daemon.pid.handover").exists(),
        "no handover socket is left"
    );
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "no process is left: {:?}",
        fx.processes()
    );
    assert_eq!(leftovers(&fx), Vec::<String>::new());
    assert!(
        listening_inodes(free).is_empty(),
        "the address bound before the failure is let go of"
    );
    // The test's own socket is untouched.
    let client = TcpStream::connect(addr(port)).expect("connect to the test's listener");
    let (accepted, _) = taken.accept().expect("the test's listener still accepts");
    drop((client, accepted));
}

#[test]
fn a_unix_socket_in_use_is_not_replaced() {
    let mut fx = Fixture::new();
    let path = fx.path("echo.sock");
    let owner = UnixListener::bind(&path).expect("bind the test's socket");
    fx.set("FIXTURE_BODY", "listen-echo")
        .set("FIXTURE_LISTEN", &path);
    let reply = fx.run("api start");
    reply.assert_error("Listen");
    assert!(!fx.pidfile().exists(), "no pidfile is left");
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "no process is left"
    );
    let client = UnixStream::connect(&path).expect("the test's socket file is still there");
    let (accepted, _) = owner.accept().expect("and still the test's");
    drop((client, accepted));
}

#[test]
fn a_unix_socket_path_is_served_and_a_stale_one_replaced() {
    let mut fx = Fixture::new();
    let path = fx.path("echo.sock");
    fx.set("FIXTURE_BODY", "listen-echo")
        .set("FIXTURE_LISTEN", &path);
    let first = fx.start();
    assert!(
        fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()),
        "start() returns once the socket file exists"
    );
    echo_unix(&path, "hello\n").expect("served on the Unix socket");
    assert!(wait_until(DEADLINE, || fx.count("accepted 1") == 1));

    // Killed, it leaves its socket file behind, where nobody listens, and its handover socket.
    nix::sys::signal::kill(first, Signal::SIGKILL).expect("kill -9");
    assert_eq!(
        fx.reap(first),
        WaitStatus::Signaled(first, Signal::SIGKILL, false)
    );
    for stale in [&path, &fx.path("daemon.pid.handover")] {
        assert_eq!(
            UnixStream::connect(stale).map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::ConnectionRefused),
            "{} is left, and nobody listens there",
            stale.display()
        );
    }

    let second = fx.start();
    echo_unix(&path, "again\n").expect("the stale file is replaced: the new instance serves");
    assert!(wait_until(DEADLINE, || fx.count("accepted 1") == 2));

    // A restart hands the very socket over: its file stays (an inode still held by the old
    // instance could not be given to a new file), and the new instance serves on it.
    let inode = fs::symlink_metadata(&path).expect("the socket file").ino();
    let third = restart(&fx, 0);
    assert_exited_cleanly(&fx, second);
    assert_eq!(
        fs::symlink_metadata(&path).expect("the socket file").ino(),
        inode,
        "the same socket file"
    );
    echo_unix(&path, "third\n").expect("served after the restart");
    assert!(wait_until(DEADLINE, || fx.count("accepted 1") == 3));
    fx.stop_gracefully(third);
    assert_exited_cleanly(&fx, third);
    assert!(
        !fx.path("daemon.pid.handover").exists(),
        "the handover socket goes at the stop"
    );
}

#[test]
fn twenty_restarts_refuse_no_client_and_reset_no_connection() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}")).with("FIXTURE_SETUP", "ok");
    let mut pids = vec![fx.start()];
    // One restart before the client comes: an instance started by a restart, at rest, whose
    // descriptors the last one must not outgrow.
    pids.push(restart(&fx, 0));
    assert_exited_cleanly(&fx, pids[0]);
    echo_tcp(addr(port), "warm\n").expect("served");
    let fds_at_rest = fd_count(pids[1]);

    let done = AtomicBool::new(false);
    let echoed = AtomicU64::new(0);
    let mut overlapped = 0;
    let seen = thread::scope(|scope| {
        let client = scope.spawn(|| tight_client(addr(port), &done, &echoed));
        let _stop_client = RaiseOnDrop(&done);
        for i in 0..20 {
            let old = *pids.last().expect("a pid");
            let before = echoed.load(Ordering::Acquire);
            let new = restart(&fx, i);
            if echoed.load(Ordering::Acquire) > before {
                overlapped += 1;
            }
            assert_ne!(new, old, "restart {i} gives a new instance");
            assert!(
                !alive(old),
                "restart {i} returns once the old instance is gone"
            );
            assert_exited_cleanly(&fx, old);
            // The new instance was set up before the old one was asked to stop: it saw as
            // many stops as there were instances before the old one.
            assert_eq!(
                terms_before_setup(&fx, new),
                pids.len() - 1,
                "restart {i}: {:?}",
                fx.marks()
            );
            pids.push(new);
        }
        done.store(true, Ordering::Release);
        client.join().expect("the client thread")
    });
    assert!(
        seen.failures.is_empty(),
        "{} of {} connections failed: {:#?}",
        seen.failures.len(),
        seen.echoed + seen.failures.len() as u64,
        seen.failures
    );
    assert!(
        overlapped >= 10,
        "the client was served during {overlapped} of the 20 restarts only: {seen:?}"
    );
    let distinct: HashSet<Pid> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 22, "22 distinct pids: {pids:?}");
    let handed = fx
        .stderr_log()
        .matches("handed the listening sockets")
        .count();
    assert_eq!(
        handed,
        21,
        "every restart handed the sockets over:\n{}",
        fx.stderr_log()
    );

    let last = *pids.last().expect("a pid");
    echo_tcp(addr(port), "last\n").expect("the last instance serves");
    // Its client threads are done once their clients have closed.
    assert!(
        wait_until(DEADLINE, || fd_count(last) <= fds_at_rest),
        "the last instance has {} descriptors, the first started by a restart had {fds_at_rest}",
        fd_count(last)
    );
    fx.stop_gracefully(last);
    assert_exited_cleanly(&fx, last);
    assert!(
        wait_until(DEADLINE, || fx.processes().is_empty()),
        "no process is left: {:?}",
        fx.processes()
    );
    assert_eq!(
        leftovers(&fx),
        Vec::<String>::new(),
        "no pidfile, handover socket or temporary pidfile is left"
    );
    assert!(listening_inodes(port).is_empty(), "nobody listens any more");
}

#[test]
fn an_instance_started_by_a_restart_keeps_no_descriptor_of_the_restart() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}"));
    let first = fx.start();
    let new = restart(&fx, 0);
    assert_exited_cleanly(&fx, first);
    // The new instance watches its predecessor (a pidfd of its own, not the restart's) until
    // that one has exited, and lets go of it then.
    let pidfd = |t: &std::path::PathBuf| t.as_os_str() == "anon_inode:[pidfd]";
    assert!(
        wait_until(DEADLINE, || !common::fd_targets(new).iter().any(pidfd)),
        "the new instance holds a pidfd: {:?}",
        common::fd_targets(new)
    );
    fx.stop_gracefully(new);
    assert_exited_cleanly(&fx, new);
}

#[test]
fn a_restart_without_listeners_stops_then_starts() {
    let fx = Fixture::new().with("FIXTURE_SETUP", "ok");
    let old = fx.start();
    let reply = fx.run("api restart");
    assert_eq!(reply.word(0), "started", "{reply:?}");
    let new = reply.pid();
    assert_ne!(new, old);
    assert_exited_cleanly(&fx, old);
    assert_eq!(
        terms_before_setup(&fx, new),
        1,
        "the old instance was stopped before the new one was set up: {:?}",
        fx.marks()
    );
    assert!(
        !fx.stderr_log().contains("handed the listening sockets"),
        "{}",
        fx.stderr_log()
    );
    assert!(!fx.path("daemon.pid.handover").exists());
    fx.stop_gracefully(new);
    assert_exited_cleanly(&fx, new);
    assert_eq!(leftovers(&fx), Vec::<String>::new());
}

#[test]
fn a_restart_whose_new_instance_fails_leaves_the_old_one_serving() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}")).with("FIXTURE_SETUP", "ok");
    let old = fx.start();
    echo_tcp(addr(port), "before\n").expect("served");
    let content = fx.pidfile_content();
    let inode = fs::metadata(fx.pidfile()).expect("the pidfile").ino();

    // The fixture reads its settings where `restart()` is called: the new instance, forked from
    // this command, fails its set-up.
    let reply = fx.execute(fx.command("api restart").env("FIXTURE_SETUP", "fail"));
    reply.assert_error("Setup");
    assert!(reply.line().contains("no database"), "{reply:?}");
    let failed: Vec<Pid> = fx
        .marks()
        .iter()
        .filter_map(|m| m.strip_prefix("setup ")?.parse().ok())
        .map(Pid::from_raw)
        .filter(|&pid| pid != old)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one new instance was set up: {:?}",
        fx.marks()
    );
    assert!(
        wait_until(DEADLINE, || !alive(failed[0])),
        "the failed instance is gone"
    );

    assert!(alive(old), "the old instance runs on");
    assert_eq!(fx.count("term"), 0, "it was never asked to stop");
    assert_eq!(fx.pidfile_content(), content, "its pidfile is unchanged");
    assert_eq!(
        fs::metadata(fx.pidfile()).expect("the pidfile").ino(),
        inode
    );
    assert_eq!(fx.run("api status").line(), format!("running {old}"));
    echo_tcp(addr(port), "after\n").expect("the old instance still serves");
    assert_eq!(
        leftovers(&fx),
        vec!["daemon.pid".to_string(), "daemon.pid.handover".to_string()],
        "no temporary pidfile is left"
    );
    fx.stop_gracefully(old);
    assert_exited_cleanly(&fx, old);
}

#[test]
fn status_names_a_running_instance_throughout_restarts() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}"));
    let first = fx.start();
    let pidfile = daemons::Pidfile::new(fx.pidfile());
    let done = AtomicBool::new(false);
    let lines = Mutex::new(Vec::new());
    let mut probed = Vec::new();
    let unanswered = AtomicU64::new(0);
    let mut pids = vec![first];
    thread::scope(|scope| {
        // `api status` from other processes, and the same probe in this one, far more often.
        let pollers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        if done.load(Ordering::Acquire) {
                            break;
                        }
                        let reply = fx.run("api status");
                        // A command killed by SIGKILL before it printed anything gave no
                        // answer. Seen on a loaded machine when another test of this file ended
                        // meanwhile: its fixture kills every process that names its directory,
                        // and a command being spawned holds copies of all the descriptors of
                        // this process (a file of that directory among them) until its exec.
                        if reply.status.signal() == Some(libc::SIGKILL) && reply.stdout.is_empty() {
                            unanswered.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let line = match reply.code() {
                            Some(0) => reply.line().to_owned(),
                            _ => format!("{reply:?}"),
                        };
                        lines.lock().expect("lines").push(line);
                    }
                })
            })
            .collect();
        let prober = scope.spawn(|| {
            let mut seen = Vec::new();
            for _ in 0..1_000_000 {
                if done.load(Ordering::Acquire) {
                    break;
                }
                seen.push(pidfile.probe().map_err(|e| e.to_string()));
            }
            seen
        });
        let _stop = RaiseOnDrop(&done);
        for i in 0..10 {
            // Give the pollers time to look before the first restart.
            if i == 0 {
                wait_until(DEADLINE, || lines.lock().expect("lines").len() >= 2);
            }
            let new = restart(&fx, i);
            pids.push(new);
        }
        done.store(true, Ordering::Release);
        for poller in pollers {
            poller.join().expect("a poller");
        }
        probed = prober.join().expect("the prober");
    });
    let lines = lines.into_inner().expect("lines");
    let names = |line: &str| pids.iter().any(|pid| line == format!("running {pid}"));
    let wrong: Vec<&String> = lines.iter().filter(|l| !names(l)).collect();
    assert!(
        wrong.is_empty(),
        "`api status` said {wrong:?} (pids {pids:?})"
    );
    let wrong: Vec<_> = probed
        .iter()
        .filter(|s| !matches!(s, Ok(daemons::Status::Running(pid)) if pids.iter().any(|p| p.as_raw() == pid.as_raw())))
        .collect();
    assert!(wrong.is_empty(), "the probe said {wrong:?} (pids {pids:?})");
    assert!(
        lines.len() >= 2 && probed.len() >= 10,
        "{} answers ({} commands killed before they answered), {} probes",
        lines.len(),
        unanswered.load(Ordering::Relaxed),
        probed.len()
    );
    let last = *pids.last().expect("a pid");
    fx.stop_gracefully(last);
    for pid in pids {
        fx.reap(pid);
    }
}

/// Restart the daemon of `fx` once with a new instance whose set-up fails; returns that
/// instance's pid, once it is gone.
fn fail_a_restart(fx: &Fixture, old: Pid) -> Pid {
    let reply = fx.execute(fx.command("api restart").env("FIXTURE_SETUP", "fail"));
    reply.assert_error("Setup");
    let failed: Vec<Pid> = fx
        .marks()
        .iter()
        .filter_map(|m| m.strip_prefix("setup ")?.parse().ok())
        .map(Pid::from_raw)
        .filter(|&pid| pid != old)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one new instance was set up: {:?}",
        fx.marks()
    );
    assert!(
        wait_until(DEADLINE, || !alive(failed[0])),
        "the failed instance is gone"
    );
    failed[0]
}

#[test]
fn after_a_failed_restart_the_old_instance_still_offers_its_sockets() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}")).with("FIXTURE_SETUP", "ok");
    let old = fx.start();
    fail_a_restart(&fx, old);
    // The old instance must still answer at its handover socket...
    let handover = fx.path("daemon.pid.handover");
    assert!(
        UnixStream::connect(&handover).is_ok(),
        "nobody answers at {} after the failed restart",
        handover.display()
    );
    // ...so that the next restart hands the sockets over instead of stopping it first.
    let reply = fx.run("api restart");
    assert_eq!(reply.word(0), "started", "{reply:?}\n{}", fx.stderr_log());
    let new = reply.pid();
    assert_exited_cleanly(&fx, old);
    assert_eq!(
        terms_before_setup(&fx, new),
        0,
        "the old instance was stopped before the new one was set up: {:?}",
        fx.marks()
    );
    echo_tcp(addr(port), "after\n").expect("the new instance serves");
    fx.stop_gracefully(new);
    assert_exited_cleanly(&fx, new);
}

#[test]
fn after_a_failed_restart_the_old_instance_still_guards_its_pidfile() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}")).with("FIXTURE_SETUP", "ok");
    let old = fx.start();
    fail_a_restart(&fx, old);
    // The pidfile is guarded: removed, it is taken again within a second or two.
    fs::remove_file(fx.pidfile()).expect("remove the pidfile");
    assert!(
        wait_until(DEADLINE, || fx.pidfile_content()
            == Some(format!("{old}\n"))),
        "the old instance did not take its removed pidfile again: {}",
        fx.stderr_log()
    );
    assert_eq!(fx.run("api status").line(), format!("running {old}"));
    fx.stop_gracefully(old);
    assert_exited_cleanly(&fx, old);
}

#[test]
fn a_restart_falls_back_to_stop_then_start_when_no_socket_is_offered() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}")).with("FIXTURE_SETUP", "ok");
    let old = fx.start();
    // As an instance of an older build would: nothing answers at the handover path.
    fs::remove_file(fx.path("daemon.pid.handover")).expect("remove the handover socket");
    let reply = fx.run("api restart");
    assert_eq!(reply.word(0), "started", "{reply:?}\n{}", fx.stderr_log());
    let new = reply.pid();
    assert_exited_cleanly(&fx, old);
    assert_eq!(
        terms_before_setup(&fx, new),
        1,
        "the old instance was stopped first: {:?}",
        fx.marks()
    );
    echo_tcp(addr(port), "after\n").expect("the new instance serves");
    fx.stop_gracefully(new);
    assert_exited_cleanly(&fx, new);
    assert_eq!(
        leftovers(&fx),
        Vec::<String>::new(),
        "the new instance that found nothing to take left no temporary pidfile"
    );
}

#[test]
fn a_restart_with_nothing_running_starts_the_daemon() {
    let port = free_port();
    let fx = listen_echo(&format!("127.0.0.1:{port}"));
    let reply = fx.run("api restart");
    assert_eq!(reply.word(0), "started", "{reply:?}\n{}", fx.stderr_log());
    let pid = reply.pid();
    echo_tcp(addr(port), "hello\n").expect("served");
    fx.stop_gracefully(pid);
    assert_exited_cleanly(&fx, pid);
}

/// Whether `line` is one whole line of the crate's log: `TIMESTAMP NAME[PID]: MESSAGE`.
fn whole_log_line(line: &str) -> bool {
    line.len() > 24
        && line.as_bytes()[23] == b'Z'
        && line[24..].starts_with(" daemons-fixture[")
        && line.matches("daemons-fixture[").count() == 1
        && line.matches("Z ").count() == 1
}

#[test]
fn two_instances_that_share_a_log_never_mix_their_lines() {
    // During a restart the old and the new instance write to the same log, as any two daemons
    // given one log file do: here two that log a line a millisecond each (a step that fails,
    // with keep_going).
    let logging = |fx: Fixture| {
        fx.with("FIXTURE_BODY", "step-error")
            .with("FIXTURE_KEEP_GOING", "1")
            .with("FIXTURE_INTERVAL_MS", "1")
    };
    let a = logging(Fixture::new());
    let log = a.path("stderr.log");
    let b = logging(Fixture::new()).with("FIXTURE_STDERR", &log);
    let (pa, pb) = (a.start(), b.start());
    let lines = || fs::read_to_string(&log).unwrap_or_default().lines().count();
    assert!(
        wait_until(DEADLINE, || lines() >= 2000),
        "{} lines",
        lines()
    );
    a.stop_gracefully(pa);
    b.stop_gracefully(pb);
    let text = fs::read_to_string(&log).expect("the log");
    let broken: Vec<&str> = text.lines().filter(|l| !whole_log_line(l)).collect();
    assert!(
        broken.is_empty(),
        "{} of {} lines are not whole: {:#?}",
        broken.len(),
        text.lines().count(),
        &broken[..broken.len().min(6)]
    );
}
