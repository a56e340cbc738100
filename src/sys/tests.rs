//! The answers of the dispatch, asked of this very process.

use super::*;
use std::fs::{self, File};
use std::time::Duration;

#[test]
fn this_process_is_seen_holding_its_own_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("open.pid");
    let file = File::create(&path).expect("create");
    // Locked, as a pidfile is: where the kernel tells, the descriptor must hold the lock.
    file.try_lock().expect("lock");
    let meta = fs::metadata(&path).expect("stat");
    assert_eq!(has_open(crate::Pid::this(), &file, &meta), Some(true));
    // The test harness that started this process has no descriptor of the file; where its
    // descriptors cannot be read (another user's), nothing is claimed.
    assert_ne!(has_open(crate::Pid::parent(), &file, &meta), Some(true));
}

#[test]
fn threads_and_descriptors_are_listed() {
    use std::os::fd::AsRawFd;
    assert_eq!(thread_count().map(|n| n >= 1), Some(true));
    let file = File::open("/dev/null").expect("open");
    assert!(open_fds().expect("list").contains(&file.as_raw_fd()));
}

#[test]
fn more_descriptors_than_one_read_holds_are_all_listed() {
    use std::os::fd::AsRawFd;
    // 24 bytes a record: 200 descriptors take several reads of the lister's buffer.
    let files: Vec<File> = (0..200)
        .map(|_| File::open("/dev/null").expect("open"))
        .collect();
    let listed = open_fds().expect("list");
    for file in &files {
        assert!(
            listed.contains(&file.as_raw_fd()),
            "{} listed",
            file.as_raw_fd()
        );
    }
    // No record is read twice.
    let mut unique = listed.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "{listed:?}");
}

#[test]
fn an_exit_watch_sees_a_live_process() {
    let me = ExitWatch::new(crate::Pid::this())
        .expect("watch")
        .expect("this process is alive");
    assert!(!me.exited(Duration::from_millis(1)).expect("wait"));
}

#[test]
fn an_exit_watch_sees_a_child_exit() {
    let mut child = std::process::Command::new("sleep")
        .arg("0.05")
        .spawn()
        .expect("sleep");
    let pid = crate::Pid::from_raw(child.id() as i32);
    let watch = ExitWatch::new(pid).expect("watch").expect("alive");
    assert!(watch.exited(Duration::from_secs(5)).expect("wait"));
    let _ = child.wait();
    let watches = [&watch];
    assert!(wait_all_exited(&watches, Duration::from_millis(1)).is_empty());
}

#[test]
fn the_pidfile_is_placed_unless_something_is_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (from, to) = (dir.path().join("new"), dir.path().join("x.pid"));
    fs::write(&from, "1").expect("write");
    let here = nix::fcntl::AT_FDCWD;
    assert!(rename_unless_exists(here, &from, &to).expect("rename"));
    assert!(!from.exists() && to.exists());
    fs::write(&from, "2").expect("write");
    assert!(!rename_unless_exists(here, &from, &to).expect("rename"));
    assert_eq!(fs::read_to_string(&to).expect("read"), "1");
}

#[test]
fn a_plain_thread_runs_its_closure_under_its_name_and_is_joined() {
    use std::sync::mpsc;
    let (tx, rx) = mpsc::channel();
    let thread = spawn_plain_thread(b"daemons-test-th", move || {
        // Where a thread's name can be read: it names itself before the closure runs.
        let name = fs::read_to_string("/proc/thread-self/comm").ok();
        let _ = tx.send(name);
    })
    .expect("spawn");
    let name = rx.recv_timeout(Duration::from_secs(10)).expect("it ran");
    if cfg!(target_os = "linux") {
        assert_eq!(name.as_deref().map(str::trim), Some("daemons-test-th"));
    }
    thread.join();
}

#[test]
fn a_plain_thread_that_panics_ends_alone() {
    let thread = spawn_plain_thread(b"daemons-panics", || panic!("on purpose")).expect("spawn");
    // The panic stays in the thread: joining it returns, and this process goes on.
    thread.join();
}
