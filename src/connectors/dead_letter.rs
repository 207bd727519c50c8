//! The dead-letter output: every record that was not accepted, with where it came from and why.
//!
//! Records arrive from parsers (malformed, bad values) and workers (late) in any order; the
//! collector sorts them by (source, position) at the end so `dead_letters.jsonl` is identical for
//! any number of workers. They are kept in memory until the end of the run.

use super::parsed::DeadRecord;
use crate::record::write_json_string;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// One dead-lettered record with its source.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Source name.
    pub source: String,
    /// The record.
    pub record: DeadRecord,
}

/// Collects dead letters from every thread.
#[derive(Default)]
pub struct DeadLetters {
    records: Mutex<Vec<DeadLetter>>,
}

impl DeadLetters {
    /// Adds records from `source`.
    pub fn extend(&self, source: &str, records: impl IntoIterator<Item = DeadRecord>) {
        let mut all = self
            .records
            .lock()
            .expect("dead-letter lock is never poisoned");
        all.extend(records.into_iter().map(|record| DeadLetter {
            source: source.to_string(),
            record,
        }));
    }

    /// Adds dead letters collected elsewhere (another process of a cluster).
    pub fn extend_letters(&self, letters: impl IntoIterator<Item = DeadLetter>) {
        self.records
            .lock()
            .expect("dead-letter lock is never poisoned")
            .extend(letters);
    }

    /// A copy of every dead letter so far, in arrival order.
    pub fn snapshot(&self) -> Vec<DeadLetter> {
        self.records
            .lock()
            .expect("dead-letter lock is never poisoned")
            .clone()
    }

    /// Counts by (source, reason).
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        let all = self
            .records
            .lock()
            .expect("dead-letter lock is never poisoned");
        let mut counts = BTreeMap::new();
        for d in all.iter() {
            *counts
                .entry((d.source.clone(), d.record.reason.as_str().to_string()))
                .or_insert(0) += 1;
        }
        counts
    }

    /// Writes `dead_letters.jsonl`, sorted by (source, position, line); returns how many.
    pub fn write(&self, path: &Path) -> std::io::Result<u64> {
        let mut all = self
            .records
            .lock()
            .expect("dead-letter lock is never poisoned");
        all.sort_by(|a, b| {
            (&a.source, a.record.position, a.record.line).cmp(&(
                &b.source,
                b.record.position,
                b.record.line,
            ))
        });
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut line = String::new();
        for d in all.iter() {
            line.clear();
            line.push_str("{\"source\":");
            write_json_string(&d.source, &mut line);
            line.push_str(",\"line\":");
            line.push_str(itoa::Buffer::new().format(d.record.line));
            line.push_str(",\"position\":");
            line.push_str(itoa::Buffer::new().format(d.record.position));
            line.push_str(",\"reason\":");
            write_json_string(d.record.reason.as_str(), &mut line);
            line.push_str(",\"detail\":");
            write_json_string(&d.record.detail, &mut line);
            line.push_str(",\"raw\":");
            write_json_string(&d.record.raw, &mut line);
            line.push_str("}\n");
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
        Ok(all.len() as u64)
    }
}
