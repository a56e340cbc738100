//! The `health` command and `Daemon::health`: 0 only while the body's loop shows life within
//! the health period, so that a container's health check sees a wedged body, not only a dead
//! one; the same liveness as the systemd watchdog.

mod common;

use common::{DEADLINE, Fixture, wait_until};

fn health(fx: &Fixture) -> Option<i32> {
    fx.run("health").code()
}

fn wedges_and_is_caught(fx: Fixture) {
    assert_eq!(health(&fx), Some(3), "not running yet");
    fx.run("start");
    assert_eq!(health(&fx), Some(0), "{:?}", fx.run("health"));
    assert!(
        wait_until(DEADLINE, || fx.count_prefix("wedged ") == 1),
        "the body wedges: {:?}",
        fx.marks()
    );
    assert!(
        wait_until(DEADLINE, || health(&fx) == Some(1)),
        "a wedged body is unhealthy: {:?}",
        fx.run("health")
    );
    let said = fx.run("health");
    assert!(said.line().contains("wedged"), "{said:?}");
    // The daemon itself still runs: status cannot tell.
    assert_eq!(fx.run("status").code(), Some(0));
}

#[test]
fn health_fails_once_the_body_wedges() {
    wedges_and_is_caught(
        Fixture::new()
            .with("FIXTURE_BODY", "wedge")
            .with("FIXTURE_WEDGE_AFTER_MS", "600")
            .with("FIXTURE_HEALTH_MS", "300")
            .with("FIXTURE_STOP_TIMEOUT_MS", "500"),
    );
}

#[test]
fn health_fails_once_a_supervised_body_wedges() {
    wedges_and_is_caught(
        Fixture::new()
            .with("FIXTURE_RESTART", "on-failure")
            .with("FIXTURE_BODY", "wedge")
            .with("FIXTURE_WEDGE_AFTER_MS", "600")
            .with("FIXTURE_HEALTH_MS", "300")
            .with("FIXTURE_STOP_TIMEOUT_MS", "500"),
    );
}

#[test]
fn a_body_that_lives_stays_healthy() {
    let fx = Fixture::new()
        .with("FIXTURE_BODY", "step")
        .with("FIXTURE_INTERVAL_MS", "10")
        .with("FIXTURE_HEALTH_MS", "300");
    fx.run("start");
    // Longer than the period: its steps keep it healthy.
    assert!(wait_until(DEADLINE, || fx.count("step") >= 60));
    assert_eq!(health(&fx), Some(0), "{:?}", fx.run("health"));
    assert_eq!(fx.run("stop").code(), Some(0));
    assert_eq!(health(&fx), Some(3));
}
