//! The writing side of a sink: one writer thread that merges the workers' sorted parts tick by
//! tick and encodes them.
//!
//! Each worker sends the consolidated, sorted updates of every tick its frontier has passed
//! ([`SinkMsg::Part`]) and reports how far its frontier got ([`SinkMsg::Frontier`]). A tick is
//! written once every worker's frontier is past it, so rows land in (time, row, diff) order and
//! the file is byte-identical for any number of workers. Updates of one row that several workers
//! produced at one tick are summed during the merge.

use super::{SinkConfig, SinkFormat, SinkMode, SinkTarget};
use crate::record::time::TimeDomain;
use crate::record::{write_json_string, Diff, Row, Schema, Tick};
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::thread::JoinHandle;

/// A message from a worker's sink operator to the sink's writer.
pub enum SinkMsg {
    /// Consolidated updates of one tick from one worker, sorted by (row, diff).
    Part {
        /// The tick.
        tick: Tick,
        /// Its updates.
        rows: Vec<(Row, Diff)>,
    },
    /// Worker `worker`'s frontier: every tick before `bound` is complete (`None`: all are).
    Frontier {
        /// Local worker index.
        worker: usize,
        /// The worker's frontier.
        bound: Option<Tick>,
    },
}

/// What a sink wrote.
#[derive(Clone, Debug, Default)]
pub struct SinkStats {
    /// Rows written (not counting the header).
    pub rows: u64,
    /// Snapshot rows whose multiplicity ended negative (more retractions than inserts); not written.
    pub negative: u64,
}

/// A running sink writer.
pub struct SinkWriter {
    /// Where workers send their parts; clone one per worker.
    pub sender: Sender<SinkMsg>,
    thread: JoinHandle<std::io::Result<SinkStats>>,
}

impl SinkWriter {
    /// Creates the output file (writing the header) and starts the writer thread for `workers`
    /// local workers.
    pub fn start(
        cfg: &SinkConfig,
        schema: &Schema,
        time: TimeDomain,
        out_dir: &Path,
        workers: usize,
        interrupt: std::sync::Arc<super::Interrupt>,
    ) -> std::io::Result<SinkWriter> {
        let out: Box<dyn Write + Send> = match &cfg.target {
            SinkTarget::File(rel) => {
                let path = out_dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                Box::new(std::io::BufWriter::with_capacity(
                    1 << 20,
                    std::fs::File::create(&path)?,
                ))
            }
            SinkTarget::Stdout => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        let mut encoder = Encoder::new(cfg, schema, time, out)?;
        let (sender, receiver) = unbounded();
        let mode = cfg.mode;
        let thread = std::thread::Builder::new()
            .name(format!("sink:{}", cfg.name))
            .spawn(move || {
                merge_loop(receiver, workers, mode, &interrupt, &mut encoder)
                    .and_then(|_| encoder.finish())
            })?;
        Ok(SinkWriter { sender, thread })
    }

    /// Waits for the writer after every worker dropped its sender.
    pub fn finish(self) -> std::io::Result<SinkStats> {
        drop(self.sender);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("sink writer panicked")))
    }
}

fn merge_loop(
    rx: Receiver<SinkMsg>,
    workers: usize,
    mode: SinkMode,
    interrupt: &super::Interrupt,
    enc: &mut Encoder,
) -> std::io::Result<()> {
    let mut pending: BTreeMap<Tick, Vec<(Row, Diff)>> = BTreeMap::new();
    let mut bounds: Vec<Option<Tick>> = vec![Some(0); workers];
    let mut snapshot: Vec<(Row, Diff)> = Vec::new();
    for msg in rx {
        match msg {
            SinkMsg::Part { tick, rows } => pending.entry(tick).or_default().extend(rows),
            SinkMsg::Frontier { worker, bound } => bounds[worker] = bound,
        }
        let global = bounds.iter().copied().min_by(|a, b| match (a, b) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, _) => std::cmp::Ordering::Greater,
            (_, None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => x.cmp(y),
        });
        let global = global.expect("at least one worker");
        while let Some(entry) = pending.first_entry() {
            if global.is_some_and(|g| *entry.key() >= g) {
                break;
            }
            let (tick, mut rows) = entry.remove_entry();
            if !interrupt.keeps(tick) {
                continue; // the run was interrupted: this tick is not final
            }
            consolidate(&mut rows);
            match mode {
                SinkMode::Updates => enc.write_updates(tick, &rows)?,
                SinkMode::Snapshot => snapshot.extend(rows),
            }
        }
    }
    if mode == SinkMode::Snapshot {
        // Ticks may contribute to the same row; fold them all into one multiset.
        consolidate(&mut snapshot);
        enc.write_snapshot(&snapshot)?;
    }
    // Any tick left (a worker disconnected without reporting its end) is still written, in order.
    for (tick, mut rows) in std::mem::take(&mut pending) {
        consolidate(&mut rows);
        if mode == SinkMode::Updates && interrupt.keeps(tick) {
            enc.write_updates(tick, &rows)?;
        }
    }
    Ok(())
}

/// Sorts by row and sums the diffs of equal rows, dropping zeros.
pub fn consolidate(rows: &mut Vec<(Row, Diff)>) {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = 0;
    for i in 0..rows.len() {
        if out > 0 && rows[out - 1].0 == rows[i].0 {
            rows[out - 1].1 += rows[i].1;
        } else {
            rows.swap(out, i);
            out += 1;
        }
    }
    rows.truncate(out);
    rows.retain(|r| r.1 != 0);
    // Sorting by (row, diff): after consolidation each row appears once, so row order suffices.
}

/// The encoded destination: CSV through the csv crate's writer (quoting, buffering), or JSON
/// Lines written directly.
enum Output {
    Csv(Box<csv::Writer<Box<dyn Write + Send>>>),
    Jsonl(Box<dyn Write + Send>),
}

struct Encoder {
    mode: SinkMode,
    names: Vec<String>,
    time: TimeDomain,
    out: Output,
    text: String,
    stats: SinkStats,
}

impl Encoder {
    fn new(
        cfg: &SinkConfig,
        schema: &Schema,
        time: TimeDomain,
        out: Box<dyn Write + Send>,
    ) -> std::io::Result<Encoder> {
        let mut names: Vec<String> = schema.names().map(String::from).collect();
        if cfg.mode == SinkMode::Updates {
            names.push("time".into());
            names.push("diff".into());
        }
        let out = match cfg.format {
            SinkFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .buffer_capacity(1 << 16)
                    .from_writer(out);
                w.write_record(&names)?;
                Output::Csv(Box::new(w))
            }
            SinkFormat::Jsonl => Output::Jsonl(out),
        };
        Ok(Encoder {
            mode: cfg.mode,
            names,
            time,
            out,
            text: String::new(),
            stats: SinkStats::default(),
        })
    }

    fn write_row(&mut self, row: &Row, extra: Option<(Tick, Diff)>) -> std::io::Result<()> {
        self.stats.rows += 1;
        let text = &mut self.text;
        match &mut self.out {
            Output::Csv(w) => {
                for v in row {
                    text.clear();
                    v.write_text(text);
                    w.write_field(text.as_bytes())?;
                }
                if let Some((tick, diff)) = extra {
                    text.clear();
                    self.time.write_tick(tick, text);
                    w.write_field(text.as_bytes())?;
                    w.write_field(itoa::Buffer::new().format(diff).as_bytes())?;
                }
                w.write_record(std::iter::empty::<&[u8]>())?;
            }
            Output::Jsonl(w) => {
                text.clear();
                text.push('{');
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    write_json_string(&self.names[i], text);
                    text.push(':');
                    v.write_json(text);
                }
                if let Some((tick, diff)) = extra {
                    text.push_str(",\"time\":");
                    let quoted = matches!(self.time, TimeDomain::Event { .. });
                    if quoted {
                        text.push('"');
                    }
                    self.time.write_tick(tick, text);
                    if quoted {
                        text.push('"');
                    }
                    text.push_str(",\"diff\":");
                    text.push_str(itoa::Buffer::new().format(diff));
                }
                text.push_str("}\n");
                w.write_all(text.as_bytes())?;
            }
        }
        Ok(())
    }

    fn write_updates(&mut self, tick: Tick, rows: &[(Row, Diff)]) -> std::io::Result<()> {
        debug_assert_eq!(self.mode, SinkMode::Updates);
        for (row, diff) in rows {
            self.write_row(row, Some((tick, *diff)))?;
        }
        Ok(())
    }

    fn write_snapshot(&mut self, rows: &[(Row, Diff)]) -> std::io::Result<()> {
        for (row, diff) in rows {
            if *diff < 0 {
                self.stats.negative += 1;
                continue;
            }
            for _ in 0..*diff {
                self.write_row(row, None)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<SinkStats> {
        match &mut self.out {
            Output::Csv(w) => w.flush()?,
            Output::Jsonl(w) => w.flush()?,
        }
        Ok(self.stats.clone())
    }
}

/// Creates a channel pair for tests that drive a writer by hand.
pub fn channel() -> (Sender<SinkMsg>, Receiver<SinkMsg>) {
    unbounded()
}
