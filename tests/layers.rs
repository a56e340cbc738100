//! The house's rules, read off the sources (`src/`): the layers are folders, no file imports
//! another that imports it back, the parts usable on their own never reach into the engine or
//! the caller's side, what is underneath reaches no layer above it, and no file grows past about
//! 600 lines of code (documentation and tests aside).
//!
//! An import is any `crate::...` path in a file's code (its `use` lines and its paths written
//! out), resolved to the file that the path names: the deepest `src/a/b.rs` or `src/a/b/mod.rs`
//! of `crate::a::b::...`. Comments and a trailing `#[cfg(test)] mod tests` are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, from the bottom up: a file of a layer may import files of its own layer and of
/// the layers listed as below it.
const LAYERS: &[(&str, &[&str])] = &[
    // Underneath: nothing of the crate but each other. The names of processes and signals
    // (`Pid`, `Signal`) import nothing; every layer names them through the crate's root.
    ("pid", &[]),
    ("signal", &[]),
    ("sync", &[]),
    ("sys", &["sync"]),
    ("error", &["sys", "sync"]),
    ("gate", &["error", "sys", "sync"]),
    // The settings that both the handle and the engine read.
    ("settings", &["error", "gate", "sys", "sync"]),
    // The parts, usable on their own: they may use each other where one is made of another,
    // never the engine or the handle.
    (
        "pidfile",
        &["error", "gate", "sys", "sync", "settings", "listen"],
    ),
    ("detach", &["error", "gate", "sys", "sync"]),
    ("control", &["error", "gate", "sys", "sync", "pidfile"]),
    ("systemd", &["error", "gate", "sys", "sync"]),
    ("privileges", &["error", "gate", "sys", "sync", "settings"]),
    (
        "listen",
        &["error", "gate", "sys", "sync", "settings", "pidfile"],
    ),
    // Inside the daemon.
    (
        "engine",
        &[
            "error",
            "gate",
            "sys",
            "sync",
            "settings",
            "pidfile",
            "detach",
            "control",
            "systemd",
            "privileges",
            "listen",
        ],
    ),
    // The caller's side.
    (
        "handle",
        &[
            "error",
            "gate",
            "sys",
            "sync",
            "settings",
            "pidfile",
            "detach",
            "control",
            "systemd",
            "privileges",
            "listen",
            "engine",
        ],
    ),
];

/// Lines of code a file may have, documentation, comments, blank lines and its tests aside.
const MOST_LINES: usize = 650;

fn sources() -> BTreeMap<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).expect("under src/").to_path_buf();
                files.insert(relative, fs::read_to_string(&path).expect("read a source"));
            }
        }
    }
    files
}

/// The code of a source: no comments, no trailing unit tests.
fn code(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    let source = strip_visibilities(source);
    source
        .lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string (a URL) is rare in this crate's code; a line that starts a
            // comment is all comment.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `source` without `pub(in crate::...)`: a visibility, not an import.
fn strip_visibilities(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("pub(in crate::") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(')').map_or(rest.len(), |e| e + 1);
        out.push_str("pub(crate)");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The file that `crate::` followed by `parts` names.
fn file_of(parts: &[&str], files: &BTreeMap<PathBuf, String>) -> PathBuf {
    for n in (1..=parts.len()).rev() {
        let stem: PathBuf = parts[..n].iter().collect();
        for candidate in [stem.with_extension("rs"), stem.join("mod.rs")] {
            if files.contains_key(&candidate) {
                return candidate;
            }
        }
    }
    PathBuf::from("lib.rs")
}

/// What each file imports, by file.
fn imports(files: &BTreeMap<PathBuf, String>) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut edges = BTreeMap::new();
    for (file, source) in files {
        let code = code(source);
        let mut targets = BTreeSet::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            // `pub(in crate::engine)` is a visibility, not an import.
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            let braces = rest[path.len()..].strip_prefix('{').map(|after| {
                after[..after.find('}').unwrap_or(after.len())]
                    .split(',')
                    .map(|item| item.split_whitespace().next().unwrap_or("").to_owned())
                    .filter(|item| !item.is_empty())
                    .collect::<Vec<_>>()
            });
            match braces {
                Some(items) => {
                    for item in items {
                        let mut full = parts.clone();
                        if item != "self" {
                            full.extend(item.split("::"));
                        }
                        targets.insert(file_of(&full, files));
                    }
                }
                None => {
                    parts.retain(|p| *p != "self");
                    targets.insert(file_of(&parts, files));
                }
            }
        }
        targets.remove(file);
        edges.insert(file.clone(), targets);
    }
    edges
}

/// The layer of a file: its first folder or its file name, without `.rs`.
fn layer(file: &Path) -> String {
    let first = file.components().next().expect("a file");
    let first = first.as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let files = sources();
    let edges = imports(&files);
    // Every circle, found by a depth-first walk.
    fn walk(
        at: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        path: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
        circles: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|p| p == at) {
            let circle: Vec<String> = path[start..]
                .iter()
                .chain([at])
                .map(|p| p.display().to_string())
                .collect();
            circles.push(circle.join(" -> "));
            return;
        }
        if !done.insert(at.clone()) {
            return;
        }
        path.push(at.clone());
        for next in edges.get(at).into_iter().flatten() {
            walk(next, edges, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for file in edges.keys() {
        walk(file, &edges, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn every_layer_imports_only_what_is_below_it() {
    let files = sources();
    let edges = imports(&files);
    let mut wrong = Vec::new();
    for (file, targets) in &edges {
        let from = layer(file);
        if matches!(from.as_str(), "lib" | "guide") {
            continue;
        }
        let Some((_, below)) = LAYERS.iter().find(|(name, _)| *name == from) else {
            wrong.push(format!(
                "{} is in no layer: add `{from}` to LAYERS in tests/layers.rs, where it belongs",
                file.display()
            ));
            continue;
        };
        for target in targets {
            let to = layer(target);
            if to != from && to != "lib" && !below.contains(&to.as_str()) {
                wrong.push(format!(
                    "{} ({from}) imports {} ({to})",
                    file.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports across layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_file_is_over_about_six_hundred_lines_of_code() {
    let long: Vec<String> = sources()
        .iter()
        .map(|(file, source)| {
            let lines = code(source)
                .lines()
                .filter(|line| !line.trim().is_empty())
                .count();
            (file, lines)
        })
        .filter(|(_, lines)| *lines > MOST_LINES)
        .map(|(file, lines)| format!("{}: {lines} lines of code", file.display()))
        .collect();
    assert!(long.is_empty(), "files to split:\n{}", long.join("\n"));
}
