//! Commands of the program's own on the command line (`.command(name, help, f)`): listed in the
//! usage, with `--pidfile` and the exit codes of the built-in commands.

mod common;

use common::{DEADLINE, Fixture, wait_until};

#[test]
fn a_command_of_ones_own_signals_the_daemon_named_by_pidfile() {
    let fx = Fixture::new();
    // Another pidfile than the program's own, given on the command line as an operator would.
    let other = fx.path("other.pid");
    let pidfile = format!("--pidfile {}", other.display());
    let started = fx.run(&format!("{pidfile} start"));
    assert_eq!(started.code(), Some(0), "{started:?}");
    let pid = started.pid();
    assert!(
        !fx.pidfile().exists(),
        "the program's own pidfile is not used"
    );

    let stats = fx.run(&format!("{pidfile} stats"));
    assert_eq!(stats.code(), Some(0), "{stats:?}");
    assert_eq!(stats.stdout, format!("asked pid {pid} for its counters\n"));
    assert!(
        wait_until(DEADLINE, || fx.count("usr1") == 1),
        "the daemon got SIGUSR1: {:?}",
        fx.marks()
    );
    let place = fx.run(&format!("{pidfile} where"));
    assert_eq!(
        (place.code(), place.stdout.as_str()),
        (Some(0), format!("{}\n", other.display()).as_str()),
        "{place:?}"
    );
    // The program's own pidfile names no daemon: the command fails, says why, exits 1.
    let alone = fx.run("stats");
    assert_eq!(alone.code(), Some(1), "{alone:?}");
    assert!(
        alone.stderr.starts_with("daemons-fixture: stats: ")
            && alone.stderr.contains(&fx.pidfile().display().to_string()),
        "{alone:?}"
    );
    let stopped = fx.run(&format!("{pidfile} stop"));
    assert_eq!(stopped.code(), Some(0), "{stopped:?}");
    assert!(!other.exists());
}

#[test]
fn the_usage_lists_the_commands_of_ones_own_with_their_help() {
    let fx = Fixture::new();
    let help = fx.run("help");
    assert_eq!(help.code(), Some(0), "{help:?}");
    assert!(
        help.stdout
            .starts_with("usage: daemons-fixture [--pidfile PATH] start|stop|restart|status|health|reload|run|help|stats|where\n"),
        "{help:?}"
    );
    assert!(
        help.stdout
            .contains("\n  stats    print the counters (SIGUSR1)\n")
            && help
                .stdout
                .ends_with("\n  where    print the pidfile's path\n"),
        "{help:?}"
    );
}

#[test]
fn arguments_after_a_command_of_ones_own_are_a_usage_error() {
    let fx = Fixture::new();
    let pid = fx.start();
    let extra = fx.run("stats now");
    assert_eq!(extra.code(), Some(2), "{extra:?}");
    assert!(
        extra.stderr.contains("unexpected argument \"now\"") && extra.stderr.contains("stats"),
        "{extra:?}"
    );
    assert_eq!(fx.count("usr1"), 0, "nothing was sent");
    fx.stop_gracefully(pid);
}

#[test]
fn build_refuses_a_command_that_the_command_line_could_not_tell_apart() {
    for (name, says) in [
        ("stop", "is a built-in command"),
        ("help", "is a built-in command"),
        ("--stats", "starts with '-'"),
        ("two words", "has whitespace in it"),
        ("where", "is given twice"),
    ] {
        let mut fx = Fixture::new();
        fx.set("FIXTURE_COMMAND", name);
        let mut command = fx.command("status");
        // `command` splits its arguments at spaces; the name goes through the environment.
        let out = fx.execute(&mut command);
        assert_eq!(out.code(), Some(1), "{name}: {out:?}");
        assert!(
            out.stderr.contains("command") && out.stderr.contains(says),
            "{name}: {out:?}"
        );
    }
}
