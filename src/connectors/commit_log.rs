//! The commit log of a run (`.eventflow/commits.log`): which prefix of each output file is
//! durable, so that a crashed run can be resumed without losing or repeating rows.
//!
//! One JSON object per line, appended and fsynced:
//! - `{"sink":"NAME","bound":T,"bytes":N,"rows":R}`: every row of sink NAME at a tick before `T`
//!   is in the first `N` bytes of its file (header included), which hold `R` rows; `bound` is
//!   `null` once the sink is complete;
//! - `{"complete":true}`: the run finished and wrote all its outputs.
//!
//! A line is written with one `write` call after the output file was synced, so a crash can only
//! leave a torn last line (no newline), which readers ignore.

use crate::record::Tick;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// The folder, inside a run's output folder, that holds its manifest and commit log; sinks may
/// not write there.
pub const RECOVERY_DIR: &str = ".eventflow";

/// One sink's durable prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Every tick before this one is written; `None`: every tick is (the sink is complete).
    pub bound: Option<Tick>,
    /// Length of the file's durable prefix, header included.
    pub bytes: u64,
    /// Rows in that prefix (header not counted).
    pub rows: u64,
}

impl Commit {
    /// Whether rows at `tick` are already in the committed prefix.
    pub fn covers(&self, tick: Tick) -> bool {
        self.bound.is_none_or(|b| tick < b)
    }
}

/// One line of the log.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Commit {
        sink: String,
        bound: Option<Tick>,
        bytes: u64,
        rows: u64,
    },
    Complete {
        complete: bool,
    },
}

/// What a commit log says about a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The last commit of each sink, by sink name.
    pub sinks: BTreeMap<String, Commit>,
    /// Whether the run finished.
    pub complete: bool,
    /// Length of the log without a torn last line: where the next line must go.
    pub valid_len: u64,
}

impl LogState {
    /// Parses a log's bytes. A last line without a newline is torn by a crash and ignored; any
    /// other line that does not parse is corruption, reported with its 1-based number.
    pub fn parse(bytes: &[u8]) -> Result<LogState, String> {
        let mut state = LogState::default();
        let mut at = 0;
        let mut number = 0;
        while let Some(len) = memchr::memchr(b'\n', &bytes[at..]) {
            number += 1;
            let text = &bytes[at..at + len];
            at += len + 1;
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Line>(text) {
                Ok(Line::Commit {
                    sink,
                    bound,
                    bytes,
                    rows,
                }) => {
                    state.sinks.insert(sink, Commit { bound, bytes, rows });
                }
                Ok(Line::Complete { complete }) => state.complete |= complete,
                Err(_) => {
                    return Err(format!(
                        "line {number} is not a commit record: `{}`",
                        String::from_utf8_lossy(text)
                    ))
                }
            }
        }
        state.valid_len = at as u64;
        Ok(state)
    }

    /// Reads and parses the log at `path`; a missing log is an empty one.
    pub fn read(path: &Path) -> std::io::Result<Result<LogState, String>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(LogState::parse(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ok(LogState::default())),
            Err(e) => Err(e),
        }
    }
}

/// The log, open for appending; shared by every sink writer of a run.
#[derive(Debug)]
pub struct CommitLog {
    file: Mutex<File>,
    /// The last commit of each sink in this run, for live sources deciding what to acknowledge.
    latest: Mutex<BTreeMap<String, Commit>>,
}

impl CommitLog {
    /// Opens the log at `path` for appending, first cutting it to `valid_len` bytes (dropping a
    /// torn last line, which the next line would otherwise be glued to). Creates it if missing.
    pub fn open(path: &Path, valid_len: u64) -> std::io::Result<CommitLog> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        if file.metadata()?.len() != valid_len {
            file.set_len(valid_len)?;
        }
        file.sync_all()?;
        Ok(CommitLog {
            file: Mutex::new(file),
            latest: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records that `sink`'s file holds `commit`. The caller has synced that file already.
    pub fn commit(&self, sink: &str, commit: &Commit) -> std::io::Result<()> {
        self.append(&Line::Commit {
            sink: sink.to_string(),
            bound: commit.bound,
            bytes: commit.bytes,
            rows: commit.rows,
        })?;
        self.latest
            .lock()
            .expect("commit log lock is never poisoned")
            .insert(sink.to_string(), *commit);
        Ok(())
    }

    /// `sink`'s last durable commit in this run, if it made one.
    pub fn latest(&self, sink: &str) -> Option<Commit> {
        self.latest
            .lock()
            .expect("commit log lock is never poisoned")
            .get(sink)
            .copied()
    }

    /// Records that the run finished.
    pub fn complete(&self) -> std::io::Result<()> {
        self.append(&Line::Complete { complete: true })
    }

    fn append(&self, line: &Line) -> std::io::Result<()> {
        let mut text = serde_json::to_vec(line).expect("commit lines always serialize");
        text.push(b'\n');
        let mut file = self.file.lock().expect("commit log lock is never poisoned");
        // One write per line: a crash tears at most the last line.
        file.write_all(&text)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_commits_replace_earlier_ones_and_complete_is_seen() {
        let log = b"{\"sink\":\"a\",\"bound\":60000,\"bytes\":100,\"rows\":3}\n\
                    {\"sink\":\"b\",\"bound\":null,\"bytes\":7,\"rows\":1}\n\
                    {\"sink\":\"a\",\"bound\":120000,\"bytes\":250,\"rows\":9}\n";
        let state = LogState::parse(log).unwrap();
        assert_eq!(
            state.sinks["a"],
            Commit {
                bound: Some(120_000),
                bytes: 250,
                rows: 9
            }
        );
        assert_eq!(state.sinks["b"].bound, None);
        assert!(!state.complete);
        assert_eq!(state.valid_len, log.len() as u64);
        let done = [&log[..], b"{\"complete\":true}\n"].concat();
        assert!(LogState::parse(&done).unwrap().complete);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let whole = b"{\"sink\":\"a\",\"bound\":5,\"bytes\":10,\"rows\":1}\n";
        for cut in [
            "{\"sink\":\"a\",\"bound\":9,\"by",
            "{\"complete\":true}",
            "{",
        ] {
            let log = [&whole[..], cut.as_bytes()].concat();
            let state = LogState::parse(&log).unwrap();
            assert_eq!(state.sinks["a"].bound, Some(5), "{cut}");
            assert!(!state.complete, "{cut}");
            assert_eq!(state.valid_len, whole.len() as u64, "{cut}");
        }
        assert_eq!(LogState::parse(b"").unwrap(), LogState::default());
    }

    #[test]
    fn a_bad_complete_line_is_corruption() {
        let log = b"{\"sink\":\"a\",\"bound\":5,\"bytes\":10,\"rows\":1}\nnot json\n";
        let err = LogState::parse(log).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = LogState::parse(b"{\"sink\":\"a\",\"bytes\":1}\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn appending_after_a_torn_line_starts_a_fresh_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commits.log");
        std::fs::write(
            &path,
            "{\"sink\":\"a\",\"bound\":5,\"bytes\":10,\"rows\":1}\n{\"sink\":\"a\",\"bo",
        )
        .unwrap();
        let state = LogState::read(&path).unwrap().unwrap();
        let log = CommitLog::open(&path, state.valid_len).unwrap();
        let next = Commit {
            bound: Some(9),
            bytes: 20,
            rows: 2,
        };
        log.commit("a", &next).unwrap();
        log.complete().unwrap();
        let state = LogState::read(&path).unwrap().unwrap();
        assert_eq!(state.sinks["a"], next);
        assert!(state.complete);
    }

    #[test]
    fn a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let state = LogState::read(&dir.path().join("nope")).unwrap().unwrap();
        assert_eq!(state, LogState::default());
    }
}
