//! The pidfile's content: the pid on the first line, and on the second, what the holder says
//! besides (a [`Note`]). This file knows the lines; who writes which one is for its writer.
//!
//! ```text
//! 4242                      the daemon, or its supervisor
//! failed: REASON            left by a daemon that failed, until the next start
//! supervising: CHILD N [AT [LAST]]
//!                           a supervisor: the child that runs the body (`-` during a backoff
//!                           wait), how many times it was started again, when the next child
//!                           starts (milliseconds since the epoch, `-` when none waits) and how
//!                           the last one ended
//! handover: PID             the other instance of a restart under way
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Pid;

/// What a pidfile says after its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Note {
    /// Why the daemon failed: `failed: REASON`.
    Failed(String),
    /// Which child runs the body, how many times it was started again, when the next one
    /// starts during a backoff wait, and how the last one ended:
    /// `supervising: CHILD RESTARTS [AT [LAST]]`.
    Supervising {
        child: Option<Pid>,
        restarts: u32,
        next: Option<SystemTime>,
        last: Option<String>,
    },
    /// The other instance of a restart under way: its successor before that one takes over,
    /// its predecessor after. `handover: PID`.
    Handover(Pid),
}

const FAILED: &str = "failed: ";
const SUPERVISING: &str = "supervising: ";
const HANDOVER: &str = "handover: ";

/// The longest reason a failure line keeps.
const REASON_MAX: usize = 1000;

/// What a pidfile says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Content {
    /// The pid on the first line, if it is one.
    pub(crate) pid: Option<Pid>,
    /// The second line, if it is one of the notes.
    pub(crate) note: Option<Note>,
}

impl Content {
    /// Read the pidfile's content from its start, whoever read the descriptor before. A file
    /// larger than a few kilobytes is not a pidfile anyway.
    pub(crate) fn read(file: &File) -> Content {
        let mut bytes = vec![0u8; 4096];
        let n = file.read_at(&mut bytes, 0).unwrap_or(0);
        bytes.truncate(n);
        Content::parse(&String::from_utf8_lossy(&bytes))
    }

    /// What `text` says. A pidfile is data that someone else may have written: anything that is
    /// not one positive number on the first line names no pid (`0` or `-1` would name a process
    /// group to `kill`), and a second line that is not a note is no note.
    pub(crate) fn parse(text: &str) -> Content {
        let mut lines = text.lines();
        Content {
            pid: lines.next().and_then(parse_pid),
            note: lines.next().and_then(parse_note),
        }
    }

    /// The reason of a failure note.
    pub(crate) fn failure(&self) -> Option<String> {
        match &self.note {
            Some(Note::Failed(reason)) => Some(reason.clone()),
            _ => None,
        }
    }

    /// The other instance of a handover note.
    pub(crate) fn handover(&self) -> Option<Pid> {
        match self.note {
            Some(Note::Handover(pid)) => Some(pid),
            _ => None,
        }
    }
}

/// The content of a pidfile that names `pid`, with `note` after it. A failure's reason is kept
/// on its line: control characters become spaces, and it is cut at [`REASON_MAX`] characters.
pub(crate) fn render(pid: Pid, note: Option<&Note>) -> String {
    match note {
        None => pid.line(),
        Some(Note::Failed(reason)) => format!("{pid}\n{FAILED}{}\n", one_line(reason)),
        Some(Note::Supervising {
            child,
            restarts,
            next,
            last,
        }) => {
            let child = child.map_or("-".to_string(), |pid| pid.to_string());
            let next = next
                .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                .map_or("-".to_string(), |since| since.as_millis().to_string());
            let last = last
                .as_deref()
                .map_or(String::new(), |last| format!(" {}", one_line(last)));
            format!("{pid}\n{SUPERVISING}{child} {restarts} {next}{last}\n")
        }
        Some(Note::Handover(other)) => format!("{pid}\n{HANDOVER}{other}\n"),
    }
}

/// `text` on one line: control characters become spaces, and it is cut at [`REASON_MAX`]
/// characters.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REASON_MAX)
        .collect()
}

fn parse_pid(line: &str) -> Option<Pid> {
    let raw: i32 = line.trim().parse().ok()?;
    (raw > 0).then(|| Pid::from_raw(raw))
}

fn parse_note(line: &str) -> Option<Note> {
    if let Some(reason) = line.strip_prefix(FAILED) {
        return Some(Note::Failed(reason.trim().to_owned())).filter(|_| !reason.trim().is_empty());
    }
    if let Some(other) = line.strip_prefix(HANDOVER) {
        return parse_pid(other).map(Note::Handover);
    }
    // The last ending is the rest of the line, spaces and all.
    let mut fields = line.strip_prefix(SUPERVISING)?.trim().splitn(4, ' ');
    let child = fields.next()?;
    let restarts = fields.next()?.parse().ok()?;
    let next = fields
        .next()
        .and_then(|ms| ms.parse().ok())
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
    let last = fields
        .next()
        .map(str::trim)
        .filter(|last| !last.is_empty())
        .map(str::to_owned);
    Some(Note::Supervising {
        child: parse_pid(child),
        restarts,
        next,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_read_from_the_second_line() {
        let failed = Content::parse("42\nfailed: boom\n");
        assert_eq!(failed.pid, Some(Pid::from_raw(42)));
        assert_eq!(failed.failure().as_deref(), Some("boom"));
        assert_eq!(Content::parse("42\n").failure(), None);
        assert_eq!(Content::parse("42\nsomething else\n").failure(), None);
        assert_eq!(Content::parse("42\nfailed:  \n").note, None);
    }

    #[test]
    fn pids_are_positive_numbers_only() {
        let pid = |text: &str| Content::parse(text).pid;
        assert_eq!(pid("123\n"), Some(Pid::from_raw(123)));
        assert_eq!(pid("  77  "), Some(Pid::from_raw(77)));
        assert_eq!(pid("0"), None);
        assert_eq!(pid("-1"), None);
        assert_eq!(pid(""), None);
        assert_eq!(pid("12abc"), None);
        assert_eq!(pid("99999999999999"), None);
    }

    #[test]
    fn every_note_is_read_as_it_is_written() {
        let me = Pid::from_raw(7);
        for note in [
            Note::Failed("the disk is full".into()),
            Note::Supervising {
                child: Some(Pid::from_raw(8)),
                restarts: 3,
                next: None,
                last: Some("exit code 1".into()),
            },
            Note::Supervising {
                child: None,
                restarts: 0,
                next: None,
                last: None,
            },
            Note::Supervising {
                child: None,
                restarts: 2,
                next: Some(UNIX_EPOCH + Duration::from_millis(1_796_174_625_678)),
                last: Some("killed by SIGSEGV (core dumped)".into()),
            },
            Note::Handover(Pid::from_raw(9)),
        ] {
            let content = Content::parse(&render(me, Some(&note)));
            assert_eq!(content.pid, Some(me));
            assert_eq!(content.note, Some(note));
        }
        let odd = render(me, Some(&Note::Failed("two\nlines".into())));
        assert_eq!(odd, "7\nfailed: two lines\n");
        // What an earlier version wrote is read still.
        let old = Content::parse("7\nsupervising: 8 3\n");
        assert_eq!(
            old.note,
            Some(Note::Supervising {
                child: Some(Pid::from_raw(8)),
                restarts: 3,
                next: None,
                last: None
            })
        );
    }
}
