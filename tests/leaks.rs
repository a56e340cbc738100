//! Hundreds of start/stop cycles leave nothing behind. This file holds a single test, so that
//! no other test's processes or descriptors disturb the counts of the test process.

mod common;

use common::{Fixture, open_fd_count, zombie_children};

#[test]
fn two_hundred_start_stop_cycles_leak_nothing() {
    let fx = Fixture::new();
    let cycle = || {
        let pid = fx.start();
        fx.stop_gracefully(pid);
        assert_eq!(fx.exit_code(pid), 0);
    };
    // The first cycle sets up what the harness keeps for good.
    cycle();
    let fds = open_fd_count();
    for _ in 0..200 {
        cycle();
    }
    assert_eq!(open_fd_count(), fds, "descriptors of the test process");
    assert_eq!(fx.processes(), vec![], "daemons left running");
    assert_eq!(
        zombie_children(),
        vec![],
        "zombies left to the test process"
    );
    assert!(!fx.pidfile().exists());
}
