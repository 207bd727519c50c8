//! Run counters and the run summary (`summary.json`).

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one source, shared by its workers.
#[derive(Default, Debug)]
pub struct SourceMetrics {
    /// Records read (good and dead).
    pub read: AtomicU64,
    /// Records that left the source's fused chain into the dataflow.
    pub emitted: AtomicU64,
    /// Records dropped by filters fused into the source.
    pub filtered: AtomicU64,
    /// Records dead-lettered (malformed, bad value, late).
    pub dead: AtomicU64,
    /// Malformed records dropped under `on_error = "skip"`.
    pub skipped: AtomicU64,
    /// Bytes of input handled by workers.
    pub bytes: AtomicU64,
}

impl SourceMetrics {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Per-source lines of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct SourceSummary {
    /// Source name.
    pub name: String,
    /// Input file.
    pub path: String,
    /// Records read.
    pub read: u64,
    /// Records passed on into the pipeline.
    pub emitted: u64,
    /// Records dropped by filters directly downstream of the source.
    pub filtered: u64,
    /// Records dead-lettered, by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Malformed records dropped under `on_error = "skip"`.
    pub skipped: u64,
    /// A live source's messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessageCounts>,
}

/// What a live source did with its messages.
#[derive(Clone, Debug, Serialize)]
pub struct MessageCounts {
    /// Received from the broker (redelivered duplicates included).
    pub consumed: u64,
    /// Acknowledged to the broker.
    pub acknowledged: u64,
    /// Received and not acknowledged when the run ended (the broker redelivers them).
    pub in_flight: u64,
    /// Redelivered messages the run had already read, acknowledged and dropped.
    pub duplicates: u64,
    /// Messages replayed from the journal of the interrupted run being resumed.
    pub replayed: u64,
}

/// Per-sink lines of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct SinkSummary {
    /// Sink name.
    pub name: String,
    /// Output file, relative to the output folder, or `-` for stdout.
    pub path: String,
    /// `updates` or `snapshot`.
    pub mode: String,
    /// Rows written.
    pub rows_written: u64,
}

/// What a run did, written as `summary.json` and printed at the end.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes (1 unless the run was a cluster run).
    pub processes: usize,
    /// Records read over all sources.
    pub records_read: u64,
    /// Records passed into the pipeline.
    pub records_emitted: u64,
    /// Records dropped by filters fused into sources.
    pub records_filtered: u64,
    /// Records dead-lettered.
    pub records_dead_lettered: u64,
    /// Malformed records skipped (`on_error = "skip"`).
    pub records_skipped: u64,
    /// Dead letters by reason, over all sources.
    pub dead_letters_by_reason: BTreeMap<String, u64>,
    /// Per source.
    pub sources: Vec<SourceSummary>,
    /// Per sink.
    pub sinks: Vec<SinkSummary>,
    /// Wall-clock seconds from start to all outputs written (less `pregenerate_seconds`).
    pub wall_seconds: f64,
    /// Seconds spent generating input before the dataflow started (`pregenerate = true`
    /// Nexmark sources); not part of `wall_seconds`.
    pub pregenerate_seconds: f64,
    /// For pipelines with `nexmark` sources: the events (of all kinds) in the Nexmark sequence
    /// they read, the usual unit of Nexmark throughput.
    pub nexmark_events: Option<u64>,
    /// CPU seconds (user + system, all threads) the run used in `wall_seconds`: on a shared
    /// machine, a steadier measure of cost than wall time.
    pub cpu_seconds: f64,
    /// Records read per wall-clock second.
    pub events_per_second: f64,
    /// The signal that stopped the run early (`SIGINT`, `SIGTERM`), if one did.
    pub interrupted: Option<String>,
    /// After an interrupt: every output row before this time is final and written; later rows
    /// are not written. `None` when the run read all its input.
    pub outputs_final_before: Option<String>,
    /// Peak resident memory of the process (bytes, from `/proc/self/status` VmHWM; 0 where
    /// unavailable). Includes file pages of inputs that were mapped and not yet released.
    pub peak_memory_bytes: u64,
    /// Where the dead letters are.
    pub dead_letters_file: String,
}

impl RunSummary {
    /// Whether every record is accounted for: read = emitted + filtered + dead-lettered + skipped.
    pub fn balanced(&self) -> bool {
        self.sources.iter().all(|s| {
            s.read == s.emitted + s.filtered + s.dead_lettered.values().sum::<u64>() + s.skipped
        })
    }

    /// A short human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pipeline `{}`: {} records read in {:.2} s ({:.0} events/s, {}, peak memory {} MB)",
            self.pipeline,
            self.records_read,
            self.wall_seconds,
            self.events_per_second,
            if self.processes > 1 {
                format!("{} processes × {} workers", self.processes, self.workers)
            } else {
                format!("{} workers", self.workers)
            },
            self.peak_memory_bytes / (1 << 20)
        );
        for s in &self.sources {
            let dead: Vec<String> = s
                .dead_lettered
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            let _ = writeln!(
                out,
                "  source {}: read {}, emitted {}, filtered {}, dead-lettered {}{}{}",
                s.name,
                s.read,
                s.emitted,
                s.filtered,
                s.dead_lettered.values().sum::<u64>(),
                if dead.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", dead.join(", "))
                },
                if s.skipped > 0 {
                    format!(", skipped {}", s.skipped)
                } else {
                    String::new()
                }
            );
            if let Some(m) = &s.messages {
                let _ = writeln!(
                    out,
                    "    messages: {} consumed, {} acknowledged, {} in flight, {} redelivered duplicates dropped, {} replayed from the journal",
                    m.consumed, m.acknowledged, m.in_flight, m.duplicates, m.replayed
                );
            }
        }
        for s in &self.sinks {
            let _ = writeln!(
                out,
                "  sink {}: {} rows ({}) → {}",
                s.name, s.rows_written, s.mode, s.path
            );
        }
        out
    }
}

/// CPU seconds (user + system) this process has used so far, over all its threads.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The process's peak resident set size in bytes (Linux `VmHWM`), or 0 if unknown.
pub fn peak_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}
