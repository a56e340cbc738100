//! Every systemd unit that the guide shows, and every unit in `examples/systemd`, passes
//! `systemd-analyze verify`; a unit the guide shows that is one of `examples/systemd`'s (by its
//! name, or without a name of its own) is an excerpt of that file, every line it shows being
//! one of the file's, so that the two never drift apart.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{example_binary, require_tool, tool_path};

/// The `ini` blocks of the guide, as (name, text): a block that names its units with a
/// `# NAME.service` (or `.socket`) line gives one unit per name; one that names none is `None`.
fn guide_units() -> Vec<(Option<String>, String)> {
    let guide = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/guide.md"))
        .expect("read the guide");
    let mut units = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in guide.lines() {
        match (&mut block, line) {
            (None, "```ini") => block = Some(Vec::new()),
            (Some(lines), "```") => {
                units.extend(split_named(lines));
                block = None;
            }
            (Some(lines), line) => lines.push(line),
            (None, _) => {}
        }
    }
    units
}

/// One block's units: split at its `# NAME.service` lines, or the whole block unnamed.
fn split_named(lines: &[&str]) -> Vec<(Option<String>, String)> {
    let is_name = |line: &str| {
        line.strip_prefix("# ")
            .filter(|n| n.ends_with(".service") || n.ends_with(".socket"))
            .map(str::to_owned)
    };
    if !lines.iter().any(|l| is_name(l).is_some()) {
        return vec![(None, format!("{}\n", lines.join("\n")))];
    }
    let mut units: Vec<(Option<String>, String)> = Vec::new();
    for line in lines {
        match is_name(line) {
            Some(name) => units.push((Some(name), String::new())),
            None => {
                if let Some((_, text)) = units.last_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    units
}

/// Whether every line that `shown` has, comments and blank lines aside, is a line of `file`.
fn excerpt_of(shown: &str, file: &str) -> bool {
    let lines: Vec<&str> = file.lines().map(str::trim).collect();
    shown
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .all(|l| lines.contains(&l))
}

fn example_units() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("examples/systemd")
        .map(|e| e.expect("an entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_unit_of_the_guide_and_the_examples_passes_systemd_analyze_verify() {
    if !require_tool("systemd-analyze") {
        return;
    }
    let examples = example_units();
    let example_texts: Vec<String> = examples
        .iter()
        .map(|f| fs::read_to_string(f).expect("a unit file"))
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The units run /usr/local/bin/NAME, which verify checks is executable: the examples,
    // built beside the fixture, stand in for the installed programs.
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("bin");
    for program in ["echo", "counter"] {
        fs::copy(example_binary(program), bin.join(program)).expect("copy an example");
    }
    let local = |text: &str| text.replace("/usr/local/bin/", &format!("{}/", bin.display()));

    let mut written = Vec::new();
    for (file, text) in examples.iter().zip(&example_texts) {
        let name = file.file_name().expect("a file name");
        let path = dir.path().join(name);
        fs::write(&path, local(text)).expect("write a unit");
        written.push(path);
    }
    let units = guide_units();
    assert!(units.len() >= 4, "the guide's units: {units:?}");
    for (name, text) in &units {
        match name {
            Some(name) => {
                // A socket and its service keep their names, so that they pair up.
                let path = dir.path().join(name);
                if written.contains(&path) {
                    let file = fs::read_to_string(&path).expect("the example's unit");
                    assert!(
                        excerpt_of(&local(text), &file),
                        "the guide's {name} is not an excerpt of examples/systemd/{name}:\n{text}"
                    );
                    continue;
                }
                fs::write(&path, local(text)).expect("write a unit");
                written.push(path);
            }
            None => assert!(
                example_texts.iter().any(|file| excerpt_of(text, file)),
                "a unit of the guide without a name is not an excerpt of one of examples/systemd's files:\n{text}"
            ),
        }
    }
    let out = Command::new(tool_path("systemd-analyze"))
        .arg("verify")
        .args(&written)
        .output()
        .expect("run systemd-analyze");
    assert!(
        out.status.success(),
        "systemd-analyze verify {written:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
