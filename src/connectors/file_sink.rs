//! The writing side of a sink: one writer thread that merges the workers' sorted parts tick by
//! tick and encodes them.
//!
//! Each worker sends the consolidated, sorted updates of every tick its frontier has passed
//! ([`SinkMsg::Part`]) and reports how far its frontier got ([`SinkMsg::Frontier`]). A tick is
//! written once every worker's frontier is past it, so rows land in (time, row, diff) order and
//! the file is byte-identical for any number of workers. Updates of one row that several workers
//! produced at one tick are summed during the merge.
//!
//! For crash recovery, a file sink commits: at most once per commit interval and at the end, it
//! syncs its file and appends to the run's [`CommitLog`] how far the file is complete (every
//! tick before a bound) and how long it is. A resumed run cuts the file back to that length and
//! merges the replayed ticks as usual, but writes only those the commit does not cover. Since
//! every tick's bytes are deterministic, the result is the uninterrupted run's file.

use super::commit_log::{Commit, CommitLog};
use super::{SinkConfig, SinkFormat, SinkMode, SinkTarget};
use crate::record::time::TimeDomain;
use crate::record::{write_json_string, write_order_key, Diff, Row, Schema, Tick, Value};
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A message from a worker's sink operator to the sink's writer.
pub enum SinkMsg {
    /// Consolidated updates of one tick from one worker, sorted by (row, diff).
    Part {
        /// The tick.
        tick: Tick,
        /// Its updates (may be empty when `lines` holds them and this is the only worker).
        rows: Vec<(Row, Diff)>,
        /// The same updates, already encoded by the worker (updates sinks), so that encoding
        /// runs on the workers in parallel instead of on the one writer thread.
        lines: Option<Lines>,
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

/// How a file sink's writer takes part in crash recovery.
pub struct Recovery {
    /// The run's commit log.
    pub log: Arc<CommitLog>,
    /// Commit at most this often (and always at the end).
    pub interval: Duration,
    /// The sink's last commit in the interrupted run being resumed (updates sinks only): the
    /// file is cut to its length, and the ticks it covers are merged but not written again.
    pub resume: Option<Commit>,
    /// Set when the run fails. A failing run stops its sources early, which makes later ticks
    /// look complete when they are not, so nothing is committed from then on.
    pub failing: Arc<AtomicBool>,
}

/// Encoded output lines, one per update of a [`SinkMsg::Part`], in the same order, with each
/// row's order key ([`write_order_key`]) so that the writer merges parts without the rows.
///
/// The keys stay where [`LineFormat::push`] wrote them, in the rows' arrival order, and
/// each line points at its key: sorting moves 32-byte entries, never the keys themselves. The
/// writer hands the buffers back ([`SinkChannel::spare`]) so that a later tick reuses them
/// rather than faulting in fresh pages.
#[derive(Clone, Debug, Default)]
pub struct Lines {
    /// The lines, each ending with a newline.
    pub text: String,
    /// Where each line ends in `text`.
    pub ends: Vec<usize>,
    /// Per line: its key's first 16 bytes (zero padded) as a number, which decides most
    /// comparisons alone, and the key's index in `key_ends`.
    order: Vec<(u128, usize)>,
    /// The order keys of the tick's rows (also of rows consolidated away), one after the other.
    keys: Vec<u8>,
    /// Where each key ends in `keys`.
    key_ends: Vec<usize>,
}

impl Lines {
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Empties the buffers, keeping their memory.
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.order.clear();
        self.keys.clear();
        self.key_ends.clear();
    }

    /// Key number `k` (in the rows' order).
    fn key_at(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.key_ends[k - 1] };
        &self.keys[start..self.key_ends[k]]
    }

    fn line(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// Lines `from..to`, which are contiguous in `text`.
    fn span(&self, from: usize, to: usize) -> &str {
        let start = if from == 0 { 0 } else { self.ends[from - 1] };
        &self.text[start..self.ends[to - 1]]
    }

    /// Line `i`'s place in the order: its key's prefix, then (compared only when prefixes tie)
    /// the whole key. The key starts with the prefix's bytes, so this orders as the key does.
    fn order_of(&self, i: usize) -> (u128, &[u8]) {
        let (prefix, k) = self.order[i];
        (prefix, self.key_at(k))
    }
}

/// One tick's updates, encoded as they arrive at a worker's sink ([`LineFormat::push`]), not
/// yet sorted or consolidated ([`LineFormat::finish_tick`]).
#[derive(Clone, Debug, Default)]
pub struct TickLines {
    /// The tick as it is written in every line.
    time: String,
    /// Each update's diff, in arrival order.
    diffs: Vec<Diff>,
    /// The updates' lines and order keys in arrival order; `order` holds each update's key
    /// prefix and its own index, and is sorted only when the tick finishes.
    lines: Lines,
}

/// The size of a tick's updates: how many, and their lines' and keys' bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct TickSize {
    updates: usize,
    text: usize,
    keys: usize,
}

impl TickLines {
    /// Updates pushed since the tick started.
    pub fn len(&self) -> usize {
        self.diffs.len()
    }

    /// Whether no update was pushed.
    pub fn is_empty(&self) -> bool {
        self.diffs.is_empty()
    }

    /// Makes room for a tick like `like` (the last one finished), so that a tick of a million
    /// updates does not grow its buffers by doubling, copying them into freshly faulted pages
    /// each time. A buffer too small is replaced, not grown.
    pub fn expect(&mut self, like: &TickSize) {
        let room = |n: usize| n + n / 8;
        let n = room(like.updates);
        let lines = &mut self.lines;
        if lines.text.capacity() < room(like.text) {
            lines.text = String::with_capacity(room(like.text));
        }
        for_rows(&mut lines.keys, room(like.keys));
        for_rows(&mut lines.ends, n);
        for_rows(&mut self.diffs, n);
        for_rows(&mut lines.order, n);
        for_rows(&mut lines.key_ends, n);
    }

    /// How much this tick holds, for [`TickLines::expect`].
    pub fn size(&self) -> TickSize {
        TickSize {
            updates: self.len(),
            text: self.lines.text.len(),
            keys: self.lines.keys.len(),
        }
    }

    /// Empties the buffers, keeping their memory.
    fn clear(&mut self) {
        self.time.clear();
        self.diffs.clear();
        self.lines.clear();
    }
}

/// How a sink turns a row into one line of its file. Workers get a copy, so that they encode
/// their own updates; the writer only merges and copies bytes.
#[derive(Clone, Debug)]
pub struct LineFormat {
    format: SinkFormat,
    names: Vec<String>,
    time: TimeDomain,
}

impl LineFormat {
    /// The line format of `cfg` over rows of `schema` (plus `time` and `diff` for updates).
    pub fn new(cfg: &SinkConfig, schema: &Schema, time: TimeDomain) -> LineFormat {
        let mut names: Vec<String> = schema.names().map(String::from).collect();
        if cfg.mode == SinkMode::Updates {
            names.push("time".into());
            names.push("diff".into());
        }
        LineFormat {
            format: cfg.format,
            names,
            time,
        }
    }

    /// Appends `row` (with the update's `time` and `diff` when given) as one line.
    ///
    /// CSV follows the `csv` crate's "necessary" quoting: a field is quoted when it holds a
    /// comma, a double quote, a carriage return or a newline (quotes doubled inside), and a
    /// record made of one empty field is written as `""`.
    pub fn encode(&self, row: &[Value], extra: Option<(Tick, Diff)>, out: &mut String) {
        match extra {
            Some((tick, diff)) => {
                let mut time = String::new();
                self.time.write_tick(tick, &mut time);
                self.encode_line(row, Some((&time, diff)), out);
            }
            None => self.encode_line(row, None, out),
        }
    }

    /// [`LineFormat::encode`] with the update's tick already written as text (`time`), so that
    /// a tick's lines format their shared time once.
    fn encode_line(&self, row: &[Value], extra: Option<(&str, Diff)>, out: &mut String) {
        match self.format {
            SinkFormat::Csv => {
                let empty = |v: &Value| match v {
                    Value::Null => true,
                    Value::Str(s) => s.is_empty(),
                    _ => false,
                };
                if row.len() == 1 && extra.is_none() && empty(&row[0]) {
                    out.push_str("\"\"\n");
                    return;
                }
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match v {
                        Value::Str(s) => push_csv_field(s, out),
                        // Numbers, booleans and timestamps never need quotes.
                        _ => v.write_text(out),
                    }
                }
                if let Some((time, diff)) = extra {
                    out.push(',');
                    out.push_str(time);
                    out.push(',');
                    out.push_str(itoa::Buffer::new().format(diff));
                }
                out.push('\n');
            }
            SinkFormat::Jsonl => {
                out.push('{');
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(&self.names[i], out);
                    out.push(':');
                    v.write_json(out);
                }
                if let Some((time, diff)) = extra {
                    out.push_str(",\"time\":");
                    let quoted = matches!(self.time, TimeDomain::Event { .. });
                    if quoted {
                        out.push('"');
                    }
                    out.push_str(time);
                    if quoted {
                        out.push('"');
                    }
                    out.push_str(",\"diff\":");
                    out.push_str(itoa::Buffer::new().format(diff));
                }
                out.push_str("}\n");
            }
        }
    }

    /// Starts collecting tick `tick`'s updates in `pending` (emptied first; a buffer a finished
    /// tick left behind).
    pub fn start_tick(&self, tick: Tick, pending: &mut TickLines) {
        pending.clear();
        self.time.write_tick(tick, &mut pending.time);
    }

    /// Encodes one update of `pending`'s tick as it arrives: its order key and its line, each
    /// appended in arrival order. Done on arrival, the row is read while it is still in cache
    /// and can be freed at once; encoding after the tick completes, in sorted order, read every
    /// row back from memory at random.
    pub fn push(&self, pending: &mut TickLines, row: &[Value], diff: Diff) {
        let arrived = &mut pending.lines;
        let start = arrived.keys.len();
        write_order_key(row, &mut arrived.keys);
        arrived.key_ends.push(arrived.keys.len());
        let mut prefix = [0u8; 16];
        let head = &arrived.keys[start..arrived.keys.len().min(start + 16)];
        prefix[..head.len()].copy_from_slice(head);
        arrived
            .order
            .push((u128::from_be_bytes(prefix), pending.diffs.len()));
        pending.diffs.push(diff);
        self.encode_line(row, Some((&pending.time, diff)), &mut arrived.text);
        arrived.ends.push(arrived.text.len());
    }

    /// Sorts and consolidates a complete tick's updates into `lines` (emptied first; a buffer
    /// the writer handed back): one line per distinct row with a nonzero sum of diffs, in order
    /// key ([`write_order_key`]) order. Sorting moves 32-byte entries with each key's first 16
    /// bytes inline, so that most comparisons touch neither keys nor lines. The lines keep
    /// their keys (moved, not copied), for a writer that merges several workers' parts;
    /// `pending` is left empty, with `lines`' old buffers to reuse.
    pub fn finish_tick(pending: &mut TickLines, lines: &mut Lines) {
        lines.clear();
        let TickLines {
            diffs,
            lines: arrived,
            ..
        } = &mut *pending;
        // Sorted apart from the keys it is sorted by; it goes out with them.
        let mut order = std::mem::take(&mut arrived.order);
        // A zero-padded prefix orders like its key wherever it differs (a shorter key's padding
        // is below the longer key's byte), so the full key only breaks prefix ties.
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| arrived.key_at(a.1).cmp(arrived.key_at(b.1)))
        });
        // Consolidated diffs may be wider than the ones they replace; allow a little more. Too
        // small a buffer is replaced, not grown (growing copies it into freshly faulted pages).
        let needed = arrived.text.len() + arrived.text.len() / 64 + 64;
        if lines.text.capacity() < needed {
            lines.text = String::with_capacity(needed);
        }
        for_rows(&mut lines.ends, order.len());
        // Consolidate in place: `order` keeps one entry per line written.
        let mut kept = 0;
        let mut i = 0;
        while i < order.len() {
            let (prefix, first) = order[i];
            let mut diff = diffs[first];
            let mut next = i + 1;
            while next < order.len()
                && order[next].0 == prefix
                && arrived.key_at(order[next].1) == arrived.key_at(first)
            {
                diff += diffs[order[next].1];
                next += 1;
            }
            if diff != 0 {
                if diff == diffs[first] {
                    lines.text.push_str(arrived.line(first));
                } else {
                    Self::with_diff(arrived.line(first), diff, &mut lines.text);
                }
                lines.ends.push(lines.text.len());
                order[kept] = (prefix, first);
                kept += 1;
            }
            i = next;
        }
        order.truncate(kept);
        // The sorted entries and the keys they point into go out; `lines`' old buffers stay.
        arrived.order = std::mem::replace(&mut lines.order, order);
        std::mem::swap(&mut arrived.keys, &mut lines.keys);
        std::mem::swap(&mut arrived.key_ends, &mut lines.key_ends);
        pending.clear();
    }

    /// Encodes a whole tick at once: [`LineFormat::start_tick`], [`LineFormat::push`] for every
    /// update, [`LineFormat::finish_tick`].
    #[cfg(test)]
    fn encode_tick(&self, tick: Tick, rows: &[(Row, Diff)], lines: &mut Lines) {
        let mut pending = TickLines::default();
        self.start_tick(tick, &mut pending);
        for (row, diff) in rows {
            self.push(&mut pending, row, *diff);
        }
        Self::finish_tick(&mut pending, lines);
    }

    /// The diff of an encoded update line (the number its line ends with).
    fn diff_of(line: &str) -> Diff {
        let body = line.trim_end_matches(['\n', '}']);
        let start = body.rfind([',', ':']).map_or(0, |i| i + 1);
        body[start..]
            .parse()
            .expect("update lines end with their diff")
    }

    /// Appends `line` (an encoded update) with its diff replaced by `diff`.
    fn with_diff(line: &str, diff: Diff, out: &mut String) {
        let body = line.trim_end_matches(['\n', '}']);
        let start = body.rfind([',', ':']).map_or(0, |i| i + 1);
        out.push_str(&body[..start]);
        out.push_str(itoa::Buffer::new().format(diff));
        out.push_str(&line[body.len()..]);
    }

    /// The CSV header line.
    fn header(&self, out: &mut String) {
        for (i, n) in self.names.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_csv_field(n, out);
        }
        out.push('\n');
    }
}

/// Makes room for `n` items in an empty buffer. One too small is replaced, not grown: growing
/// would copy its whole old capacity and double it, faulting in pages never used.
fn for_rows<T>(buffer: &mut Vec<T>, n: usize) {
    if buffer.capacity() < n {
        *buffer = Vec::with_capacity(n);
    }
}

/// Appends a CSV field, quoted when it must be.
fn push_csv_field(s: &str, out: &mut String) {
    // A fold without early exit vectorises; fields are short, and rarely need quotes.
    let special = |b: u8| matches!(b, b',' | b'"' | b'\r' | b'\n');
    if s.bytes().fold(false, |found, b| found | special(b)) {
        out.push('"');
        for (i, part) in s.split('"').enumerate() {
            if i > 0 {
                out.push_str("\"\"");
            }
            out.push_str(part);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// A running sink writer.
pub struct SinkWriter {
    /// Where workers send their parts; clone one per worker.
    pub sender: Sender<SinkMsg>,
    /// For updates sinks: the line format workers encode their parts with.
    pub lines: Option<LineFormat>,
    thread: JoinHandle<std::io::Result<SinkStats>>,
}

impl SinkWriter {
    /// Creates the output file (writing the header) and starts the writer thread for `workers`
    /// local workers, which send on `channel` (from [`channel`]; workers may start sending before
    /// the writer starts). With `recovery`, a file sink commits what it wrote; resuming, it
    /// appends to the committed prefix of its file instead.
    /// With `refresh` (a pipeline with a live source), a snapshot file sink rewrites its file (a
    /// new file renamed over it) with the result so far at most this often, as ticks complete,
    /// so a run that never ends still shows its snapshot.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        cfg: &SinkConfig,
        schema: &Schema,
        time: TimeDomain,
        out_dir: &Path,
        workers: usize,
        interrupt: Arc<super::Interrupt>,
        recovery: Option<Recovery>,
        channel: SinkChannel,
        refresh: Option<Duration>,
    ) -> std::io::Result<SinkWriter> {
        let refresh: Option<Refresh> = match (&cfg.target, cfg.mode, refresh) {
            (SinkTarget::File(rel), SinkMode::Snapshot, Some(every)) => {
                let (path, cfg, schema) = (out_dir.join(rel), cfg.clone(), schema.clone());
                let rewrite = move |rows: &[(Row, Diff)]| -> std::io::Result<SinkStats> {
                    let mut tmp = path.clone().into_os_string();
                    tmp.push(".tmp");
                    let tmp = std::path::PathBuf::from(tmp);
                    let file = std::fs::File::create(&tmp)?;
                    let mut enc = Encoder::new(&cfg, &schema, time, Dest::file(file), true)?;
                    enc.write_snapshot(rows)?;
                    enc.sync()?;
                    std::fs::rename(&tmp, &path)?;
                    Ok(enc.stats.clone())
                };
                Some((every, Box::new(rewrite)))
            }
            _ => None,
        };
        // Only files commit; a snapshot is rewritten whole by every run.
        let recovery = recovery.filter(|_| !matches!(cfg.target, SinkTarget::Stdout));
        let resume = recovery
            .as_ref()
            .and_then(|r| r.resume)
            .filter(|_| cfg.mode == SinkMode::Updates);
        let dest = match &cfg.target {
            SinkTarget::File(rel) => {
                let path = out_dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                match resume {
                    Some(c) => Dest::reopen(&path, c.bytes)?,
                    None => Dest::file(std::fs::File::create(&path)?),
                }
            }
            SinkTarget::Stdout => Dest::stdout(),
            SinkTarget::Amqp {
                url,
                queue,
                pipeline,
            } => {
                let publisher = super::amqp_sink::Publisher::connect(
                    url.as_deref(),
                    queue,
                    &format!("{pipeline}:{}", cfg.name),
                    &cfg.name,
                )
                .map_err(std::io::Error::other)?;
                Dest::at(
                    DestKind::Amqp(Box::new(publisher)),
                    resume.map_or(0, |c| c.bytes),
                )
            }
            #[cfg(feature = "kafka")]
            SinkTarget::Kafka {
                brokers,
                topic,
                pipeline,
            } => {
                let publisher = super::kafka_sink::Publisher::connect(
                    brokers.as_deref(),
                    topic,
                    &format!("{pipeline}:{}", cfg.name),
                    &cfg.name,
                )
                .map_err(std::io::Error::other)?;
                Dest::at(
                    DestKind::Kafka(Box::new(publisher)),
                    resume.map_or(0, |c| c.bytes),
                )
            }
            #[cfg(not(feature = "kafka"))]
            SinkTarget::Kafka { .. } => return Err(std::io::Error::other(super::NO_KAFKA)),
        };
        let lines = (cfg.mode == SinkMode::Updates).then(|| LineFormat::new(cfg, schema, time));
        let mut encoder = Encoder::new(cfg, schema, time, dest, resume.is_none())?;
        encoder.stats.rows = resume.map_or(0, |c| c.rows);
        encoder.spare = Some(channel.spare.0);
        let committer = recovery.map(|r| Committer {
            sink: cfg.name.clone(),
            last: resume,
            due: Instant::now() + r.interval,
            recovery: r,
            syncer: None,
        });
        let (sender, receiver) = channel.parts;
        let mode = cfg.mode;
        let thread = std::thread::Builder::new()
            .name(format!("sink:{}", cfg.name))
            .spawn(move || {
                let merge = Merge {
                    workers,
                    mode,
                    interrupt: &interrupt,
                    skip: resume,
                    refresh,
                };
                merge.run(receiver, &mut encoder, committer)?;
                Ok(encoder.stats.clone())
            })?;
        Ok(SinkWriter {
            sender,
            lines,
            thread,
        })
    }

    /// Waits for the writer after every worker dropped its sender.
    pub fn finish(self) -> std::io::Result<SinkStats> {
        drop(self.sender);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("sink writer panicked")))
    }
}

/// Commits a file sink's progress to the run's commit log.
struct Committer {
    sink: String,
    recovery: Recovery,
    /// The last commit (of this run, or of the run being resumed).
    last: Option<Commit>,
    /// No periodic commit before this instant.
    due: Instant,
    /// The thread that syncs the file and appends periodic commits (see [`Committer::commit`]).
    syncer: Option<Syncer>,
}

/// A thread that makes a file sink's periodic commits: for each, in order, it syncs the file,
/// then appends the commit to the log. The writer hands a commit over once it has written the
/// commit's bytes to the file, and goes on.
struct Syncer {
    commits: Sender<Commit>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Syncer {
    fn start(file: std::fs::File, sink: String, recovery: &Recovery) -> std::io::Result<Syncer> {
        let (commits, todo) = unbounded::<Commit>();
        let (log, failing) = (recovery.log.clone(), recovery.failing.clone());
        let thread = std::thread::Builder::new()
            .name(format!("sync:{sink}"))
            .spawn(move || {
                for commit in todo {
                    file.sync_data()?;
                    // A run that began failing meanwhile commits nothing more (see `wants`).
                    if failing.load(Ordering::Relaxed) {
                        break;
                    }
                    log.commit(&sink, &commit)?;
                }
                Ok(())
            })?;
        Ok(Syncer { commits, thread })
    }

    /// Waits until every commit handed over is made; returns the first error.
    fn finish(self) -> std::io::Result<()> {
        drop(self.commits);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("sink sync panicked")))
    }
}

impl Committer {
    /// Whether a commit of `written` is wanted: it is past the last commit and the run is not
    /// failing.
    fn wants(&self, written: Option<Tick>) -> bool {
        // Before any commit, nothing is known to be written: a bound of 0 covers no tick.
        let committed = self.last.map_or(Some(0), |c| c.bound);
        later(written, committed) && !self.recovery.failing.load(Ordering::Relaxed)
    }

    /// Commits `bound` if the interval has passed (or `now` is `None`: the end) and a commit
    /// is wanted.
    ///
    /// A periodic commit of a file is synced and appended by the [`Syncer`] while the writer
    /// goes on merging and writing: waiting for the disk here held back every tick behind it (a
    /// 2-worker q0 run sat 0.35 s in one such sync after its workers had finished, then wrote
    /// its last ticks, then synced again). The last commit waits for the syncer, then syncs
    /// and commits here.
    fn commit(
        &mut self,
        enc: &mut Encoder,
        bound: Option<Tick>,
        now: Option<Instant>,
    ) -> std::io::Result<()> {
        if now.is_none() {
            self.wait()?;
        }
        if now.is_some_and(|now| now < self.due) || !self.wants(bound) {
            return Ok(());
        }
        // Data first, then the record that points at it: a commit never names unsynced bytes.
        enc.finish()?;
        let commit = Commit {
            bound,
            bytes: enc.out.len(),
            rows: enc.stats.rows,
        };
        match enc.out.as_file().filter(|_| now.is_some()) {
            Some(file) => {
                if self.syncer.is_none() {
                    let file = file.try_clone()?;
                    self.syncer = Some(Syncer::start(file, self.sink.clone(), &self.recovery)?);
                }
                let handed = self
                    .syncer
                    .as_ref()
                    .is_some_and(|s| s.commits.send(commit).is_ok());
                if !handed {
                    // The syncer stopped on an error: report it.
                    self.wait()?;
                }
            }
            None => {
                enc.out.sync_data()?;
                self.recovery.log.commit(&self.sink, &commit)?;
            }
        }
        self.last = Some(commit);
        self.due = Instant::now() + self.recovery.interval;
        Ok(())
    }

    /// Waits until every periodic commit handed to the syncer is made; returns its error.
    fn wait(&mut self) -> std::io::Result<()> {
        self.syncer.take().map_or(Ok(()), Syncer::finish)
    }
}

/// Whether bound `a` is past bound `b` (`None` is past everything).
fn later(a: Option<Tick>, b: Option<Tick>) -> bool {
    match (a, b) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
    }
}

/// The smaller of two bounds (`None` is past everything).
fn earlier(a: Option<Tick>, b: Option<Tick>) -> Option<Tick> {
    if later(a, b) {
        b
    } else {
        a
    }
}

/// How often, and how, a live snapshot file is rewritten (see [`SinkWriter::start`]).
type Refresh = (
    Duration,
    Box<dyn FnMut(&[(Row, Diff)]) -> std::io::Result<SinkStats> + Send>,
);

/// The merge of the workers' parts into one ordered stream of ticks.
struct Merge<'a> {
    workers: usize,
    mode: SinkMode,
    interrupt: &'a super::Interrupt,
    /// Resuming: ticks this commit covers are already in the file.
    skip: Option<Commit>,
    /// A live snapshot: rewrite the file as ticks complete.
    refresh: Option<Refresh>,
}

impl Merge<'_> {
    fn run(
        mut self,
        rx: Receiver<SinkMsg>,
        enc: &mut Encoder,
        mut committer: Option<Committer>,
    ) -> std::io::Result<()> {
        // Per tick, the workers' parts: each consolidated and sorted by its worker.
        let mut pending: BTreeMap<Tick, Vec<Part>> = BTreeMap::new();
        let mut bounds: Vec<Option<Tick>> = vec![Some(0); self.workers];
        let mut snapshot: Vec<(Row, Diff)> = Vec::new();
        // Updates sinks commit along the way; snapshots are written at the end only.
        let periodic = self.mode == SinkMode::Updates && committer.is_some();
        // Every tick before this is written.
        let mut written = Some(0);
        // A live snapshot: when it was last rewritten, and whether ticks came since.
        let mut refreshed = Instant::now();
        let mut changed = false;
        loop {
            let due = committer.as_ref().filter(|c| periodic && c.wants(written));
            let msg = match due {
                // Something is not committed yet: wake up when a commit is due even if no
                // message comes.
                Some(c) => match rx.recv_deadline(c.due) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => break,
                },
            };
            match msg {
                Some(SinkMsg::Part { tick, rows, lines }) => {
                    pending.entry(tick).or_default().push((rows, lines))
                }
                Some(SinkMsg::Frontier { worker, bound }) => bounds[worker] = bound,
                None => {}
            }
            let global = bounds
                .iter()
                .copied()
                .reduce(earlier)
                .expect("at least one worker");
            while let Some(entry) = pending.first_entry() {
                if global.is_some_and(|g| *entry.key() >= g) {
                    break;
                }
                let (tick, rows) = entry.remove_entry();
                self.emit(tick, rows, enc, &mut snapshot)?;
                changed = true;
            }
            if let Some((every, rewrite)) = self.refresh.as_mut() {
                if changed && refreshed.elapsed() >= *every {
                    consolidate(&mut snapshot);
                    rewrite(&snapshot)?;
                    refreshed = Instant::now();
                    changed = false;
                }
            }
            // Everything before the global frontier is written, except what an interrupt drops.
            written = earlier(global, self.interrupt.bound());
            if let Some(c) = committer.as_mut().filter(|_| periodic) {
                c.commit(enc, written, Some(Instant::now()))?;
            }
        }
        if self.mode == SinkMode::Snapshot {
            // Ticks may contribute to the same row; fold them all into one multiset.
            consolidate(&mut snapshot);
            match self.refresh.as_mut() {
                // The file was (or may have been) replaced: write the final one the same way.
                Some((_, rewrite)) => {
                    let stats = rewrite(&snapshot)?;
                    enc.stats.rows = stats.rows;
                    enc.stats.negative = stats.negative;
                }
                None => enc.write_snapshot(&snapshot)?,
            }
        }
        // Any tick left (a worker disconnected without reporting its end) is still written, in order.
        for (tick, rows) in std::mem::take(&mut pending) {
            if self.mode == SinkMode::Updates {
                self.emit(tick, rows, enc, &mut snapshot)?;
            }
        }
        enc.finish()?;
        if let Some(c) = committer.as_mut() {
            let written = self.interrupt.bound();
            // An interrupted snapshot is partial: leave it uncommitted, a resume rewrites it.
            if self.mode == SinkMode::Updates || written.is_none() {
                c.commit(enc, written, None)?;
            }
        }
        Ok(())
    }

    /// Hands one complete tick to the encoder (updates) or the snapshot.
    fn emit(
        &self,
        tick: Tick,
        parts: Vec<Part>,
        enc: &mut Encoder,
        snapshot: &mut Vec<(Row, Diff)>,
    ) -> std::io::Result<()> {
        if !self.interrupt.keeps(tick) {
            return Ok(()); // the run was interrupted: this tick is not final
        }
        if self.skip.is_some_and(|c| c.covers(tick)) {
            return Ok(()); // resuming: already in the file
        }
        match self.mode {
            SinkMode::Updates => enc.write_parts(tick, parts),
            SinkMode::Snapshot => {
                snapshot.extend(merge_parts(parts.into_iter().map(|p| p.0).collect()));
                Ok(())
            }
        }
    }
}

/// One worker's updates of a tick, with their encoded lines if the worker encoded them.
type Part = (Vec<(Row, Diff)>, Option<Lines>);

/// Whether a list of updates is sorted by row, with no row twice and no zero diff.
fn is_consolidated(p: &[(Row, Diff)]) -> bool {
    p.windows(2).all(|w| w[0].0 < w[1].0) && p.iter().all(|r| r.1 != 0)
}

/// The consolidation of several consolidated, sorted parts. One part is already the answer;
/// several are concatenated and sorted with a stable sort, which finds the sorted runs and
/// merges them (O(n log parts)), then equal rows are summed.
fn merge_parts(mut parts: Vec<Vec<(Row, Diff)>>) -> Vec<(Row, Diff)> {
    // Workers send consolidated parts; checking costs one comparison per row, far less than
    // the sort it saves, and keeps hand-driven writers (tests) correct.
    if parts.len() == 1 && is_consolidated(&parts[0]) {
        return parts.pop().expect("one part");
    }
    let mut rows: Vec<(Row, Diff)> = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        rows.extend(p);
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    sum_equal(&mut rows);
    rows
}

/// Sums the diffs of adjacent equal rows of a sorted list, dropping zeros.
fn sum_equal(rows: &mut Vec<(Row, Diff)>) {
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
}

/// Sorts by row and sums the diffs of equal rows, dropping zeros.
pub fn consolidate(rows: &mut Vec<(Row, Diff)>) {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    sum_equal(rows);
    // Sorting by (row, diff): after consolidation each row appears once, so row order suffices.
}

/// Where a sink's bytes go: a buffered file, which can be synced for a commit, or stdout.
/// Counts the bytes written, so that a commit can record the file's length without asking the
/// file system.
pub struct Dest {
    kind: DestKind,
    bytes: u64,
    /// Bytes of the file whose write-back to disk was already started (see [`Dest::write_back`]).
    written_back: u64,
}

/// Start writing a file's data back to disk every this many bytes, so that a commit's sync (and
/// the last one, at the end of a run) finds little left to write.
const WRITE_BACK_EVERY: u64 = 8 << 20;

enum DestKind {
    File(std::io::BufWriter<std::fs::File>),
    Stdout(std::io::BufWriter<std::io::Stdout>),
    /// One message per line; `bytes` counts the lines (messages).
    Amqp(Box<super::amqp_sink::Publisher>),
    /// One message per line; `bytes` counts the lines (messages).
    #[cfg(feature = "kafka")]
    Kafka(Box<super::kafka_sink::Publisher>),
}

impl Dest {
    /// A destination that already holds `bytes` (a resumed run's committed prefix).
    fn at(kind: DestKind, bytes: u64) -> Dest {
        Dest {
            kind,
            bytes,
            written_back: bytes,
        }
    }

    /// A new, empty file.
    pub fn file(file: std::fs::File) -> Dest {
        Dest::file_at(file, 0)
    }

    /// A file that holds `len` bytes, positioned at its end.
    fn file_at(file: std::fs::File, len: u64) -> Dest {
        Dest::at(
            DestKind::File(std::io::BufWriter::with_capacity(1 << 20, file)),
            len,
        )
    }

    /// Standard output (never committed).
    pub fn stdout() -> Dest {
        Dest::at(
            DestKind::Stdout(std::io::BufWriter::new(std::io::stdout())),
            0,
        )
    }

    /// An existing file cut to its first `len` bytes (its last commit), positioned at the end:
    /// whatever a crashed run wrote after its last commit is dropped.
    pub fn reopen(path: &Path, len: u64) -> std::io::Result<Dest> {
        use std::io::{Seek, SeekFrom};
        // A commit of 0 bytes (a JSON Lines file with no rows yet) may name a file never flushed.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let found = file.metadata()?.len();
        if found < len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the file has {found} bytes, fewer than the {len} its last commit recorded; \
                     it was changed after the interrupted run: delete the output folder and run again"
                ),
            ));
        }
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        Ok(Dest::file_at(file, len))
    }

    /// Bytes written so far, including any committed prefix.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The file, for a file (the others need no sync: their flush waited for what one would).
    fn as_file(&self) -> Option<&std::fs::File> {
        match &self.kind {
            DestKind::File(w) => Some(w.get_ref()),
            _ => None,
        }
    }

    /// For a file, waits until everything flushed so far is on disk.
    pub fn sync_data(&self) -> std::io::Result<()> {
        match &self.kind {
            DestKind::File(w) => w.get_ref().sync_data(),
            // Flushing waited for the broker's confirms of persistent messages.
            DestKind::Stdout(_) | DestKind::Amqp(_) => Ok(()),
            // Flushing waited for the delivery reports (acks=all).
            #[cfg(feature = "kafka")]
            DestKind::Kafka(_) => Ok(()),
        }
    }

    /// Starts (without waiting for it) the write-back to disk of what the file holds beyond
    /// `written_back`. Otherwise the kernel keeps a large output dirty in memory and the next
    /// sync writes all of it while the writer waits (the periodic commits of a q0 run, 500 MB,
    /// waited 0.2–0.5 s each). A hint only: a failed write-back shows in the sync that follows.
    fn write_back(&mut self) {
        let DestKind::File(w) = &self.kind else {
            return;
        };
        // The file holds what the buffer passed on; the file's offset is `bytes` minus the rest.
        let in_file = self.bytes - w.buffer().len() as u64;
        if in_file <= self.written_back {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on a file descriptor this writer owns; no memory is passed.
            unsafe {
                libc::sync_file_range(
                    w.get_ref().as_raw_fd(),
                    self.written_back as libc::off64_t,
                    (in_file - self.written_back) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.written_back = in_file;
    }

    /// The rows that follow are at `tick` (message ids of queue sinks name it).
    pub fn begin_tick(&mut self, tick: Tick) {
        match &mut self.kind {
            DestKind::Amqp(p) => p.begin_tick(tick),
            #[cfg(feature = "kafka")]
            DestKind::Kafka(p) => p.begin_tick(tick),
            DestKind::File(_) | DestKind::Stdout(_) => {}
        }
    }
}

impl Write for Dest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.kind {
            DestKind::File(w) => {
                w.write_all(buf)?;
                self.bytes += buf.len() as u64;
                if self.bytes - self.written_back >= WRITE_BACK_EVERY {
                    self.write_back();
                }
                return Ok(());
            }
            DestKind::Stdout(w) => w.write_all(buf)?,
            DestKind::Amqp(p) => {
                self.bytes += p.write(buf)?;
                return Ok(());
            }
            #[cfg(feature = "kafka")]
            DestKind::Kafka(p) => {
                self.bytes += p.write(buf)?;
                return Ok(());
            }
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.kind {
            DestKind::File(w) => w.flush(),
            DestKind::Stdout(w) => w.flush(),
            DestKind::Amqp(p) => p.flush(),
            #[cfg(feature = "kafka")]
            DestKind::Kafka(p) => p.flush(),
        }
    }
}

struct Encoder {
    mode: SinkMode,
    line: LineFormat,
    out: Dest,
    text: String,
    stats: SinkStats,
    /// Where written parts' line buffers go back to the workers.
    spare: Option<Sender<Lines>>,
}

impl Encoder {
    /// An encoder writing to `out`, starting with a header row (CSV) when `header` is set.
    fn new(
        cfg: &SinkConfig,
        schema: &Schema,
        time: TimeDomain,
        mut out: Dest,
        header: bool,
    ) -> std::io::Result<Encoder> {
        let line = LineFormat::new(cfg, schema, time);
        if header && cfg.format == SinkFormat::Csv {
            let mut text = String::new();
            line.header(&mut text);
            out.write_all(text.as_bytes())?;
        }
        Ok(Encoder {
            mode: cfg.mode,
            line,
            out,
            text: String::new(),
            stats: SinkStats::default(),
            spare: None,
        })
    }

    fn write_row(&mut self, row: &Row, extra: Option<(Tick, Diff)>) -> std::io::Result<()> {
        self.stats.rows += 1;
        self.text.clear();
        self.line.encode(row, extra, &mut self.text);
        self.out.write_all(self.text.as_bytes())
    }

    /// Writes one tick's updates from the workers' parts (see [`Encoder::merge_parts`]), then
    /// hands their line buffers back to the workers.
    fn write_parts(&mut self, tick: Tick, mut parts: Vec<Part>) -> std::io::Result<()> {
        let written = self.merge_parts(tick, &mut parts);
        if let Some(spare) = &self.spare {
            for lines in parts.into_iter().filter_map(|p| p.1) {
                // A full pool: the workers have enough; this buffer is freed.
                let _ = spare.try_send(lines);
            }
        }
        written
    }

    /// Writes one tick's updates from the workers' parts: merged by row (equal rows from
    /// several workers summed), copying the lines the workers encoded where they can be used
    /// as they are.
    fn merge_parts(&mut self, tick: Tick, parts: &mut Vec<Part>) -> std::io::Result<()> {
        debug_assert_eq!(self.mode, SinkMode::Updates);
        // Queue sinks name their messages after the tick.
        self.out.begin_tick(tick);
        parts.retain(|(rows, lines)| {
            !rows.is_empty() || lines.as_ref().is_some_and(|l| !l.ends.is_empty())
        });
        // One worker's part: its lines are the tick's output.
        if let [(rows, Some(lines))] = parts.as_slice() {
            if rows.is_empty() || is_consolidated(rows) {
                self.stats.rows += lines.ends.len() as u64;
                return self.out.write_all(lines.text.as_bytes());
            }
        }
        // Encoded parts (what workers send; lines always carry their keys): merged by key.
        if parts
            .iter()
            .all(|(rows, lines)| rows.is_empty() && lines.is_some())
        {
            let lines: Vec<&Lines> = parts.iter().filter_map(|p| p.1.as_ref()).collect();
            return self.merge_lines(&lines);
        }
        let usable = parts.iter().all(|(rows, lines)| {
            is_consolidated(rows) && lines.as_ref().is_none_or(|l| l.ends.len() == rows.len())
        });
        if !usable {
            let rows = merge_parts(parts.iter_mut().map(|p| std::mem::take(&mut p.0)).collect());
            for (row, diff) in &rows {
                self.write_row(row, Some((tick, *diff)))?;
            }
            return Ok(());
        }
        // A k-way merge over the sorted parts (k = workers, small).
        let mut next = vec![0usize; parts.len()];
        let mut from = Vec::with_capacity(parts.len());
        loop {
            let mut min: Option<&Row> = None;
            for (p, (rows, _)) in parts.iter().enumerate() {
                if let Some((row, _)) = rows.get(next[p]) {
                    if min.is_none_or(|m| row < m) {
                        min = Some(row);
                    }
                }
            }
            let Some(min) = min else { break };
            let mut diff = 0;
            from.clear();
            for (p, (rows, _)) in parts.iter().enumerate() {
                if let Some((row, d)) = rows.get(next[p]) {
                    if row == min {
                        diff += d;
                        from.push(p);
                    }
                }
            }
            match (from.as_slice(), diff) {
                (_, 0) => {}
                ([p], _) if parts[*p].1.is_some() => {
                    let lines = parts[*p].1.as_ref().expect("checked just above");
                    self.stats.rows += 1;
                    self.out.write_all(lines.line(next[*p]).as_bytes())?;
                }
                _ => {
                    self.stats.rows += 1;
                    self.text.clear();
                    self.line.encode(min, Some((tick, diff)), &mut self.text);
                    self.out.write_all(self.text.as_bytes())?;
                }
            }
            for &p in &from {
                next[p] += 1;
            }
        }
        Ok(())
    }

    /// Writes the k-way merge of consolidated parts by order key (k = workers, small). A run of
    /// lines from one part that sorts before every other part's next line is copied at once;
    /// a row several workers updated gets one line with the summed diff (none if it is zero).
    fn merge_lines(&mut self, parts: &[&Lines]) -> std::io::Result<()> {
        let mut next = vec![0usize; parts.len()];
        let mut tied = Vec::with_capacity(parts.len());
        loop {
            // The part holding the smallest next line, and the second smallest line's order.
            let mut min: Option<(usize, (u128, &[u8]))> = None;
            let mut second: Option<(u128, &[u8])> = None;
            for (p, lines) in parts.iter().enumerate() {
                if next[p] == lines.len() {
                    continue;
                }
                let order = lines.order_of(next[p]);
                match min {
                    Some((_, m)) if order >= m => {
                        if second.is_none_or(|s| order < s) {
                            second = Some(order);
                        }
                    }
                    _ => {
                        second = min.map(|(_, m)| m).or(second);
                        min = Some((p, order));
                    }
                }
            }
            let Some((p, order)) = min else { break };
            if second != Some(order) {
                // Part p leads: copy its lines up to the next line of any other part.
                let lines = parts[p];
                let from = next[p];
                let mut to = from + 1;
                while to < lines.len() && second.is_none_or(|s| lines.order_of(to) < s) {
                    to += 1;
                }
                self.stats.rows += (to - from) as u64;
                self.out.write_all(lines.span(from, to).as_bytes())?;
                next[p] = to;
                continue;
            }
            // The same row from several workers: one line with the diffs summed.
            tied.clear();
            let mut diff = 0;
            for (q, lines) in parts.iter().enumerate() {
                if next[q] < lines.len() && lines.order_of(next[q]) == order {
                    diff += LineFormat::diff_of(lines.line(next[q]));
                    tied.push(q);
                }
            }
            if diff != 0 {
                self.stats.rows += 1;
                self.text.clear();
                LineFormat::with_diff(parts[p].line(next[p]), diff, &mut self.text);
                self.out.write_all(self.text.as_bytes())?;
            }
            for &q in &tied {
                next[q] += 1;
            }
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

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Writes everything out and waits for the disk; returns the destination's length.
    fn sync(&mut self) -> std::io::Result<u64> {
        self.finish()?;
        self.out.sync_data()?;
        Ok(self.out.len())
    }
}

/// The channels between a sink's workers and its writer.
pub struct SinkChannel {
    /// Workers send their parts and frontiers; the writer receives them.
    pub parts: (Sender<SinkMsg>, Receiver<SinkMsg>),
    /// The writer hands back the line buffers it has written; workers take them for their next
    /// ticks. At most two spares per worker wait (a writer syncing to disk lags a tick or
    /// two), so a finished run holds little memory.
    pub spare: (Sender<Lines>, Receiver<Lines>),
}

/// Creates the channels between `workers` local workers' sink operators and a writer.
pub fn channel(workers: usize) -> SinkChannel {
    SinkChannel {
        parts: unbounded(),
        spare: bounded(2 * workers.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::commit_log::LogState;
    use crate::connectors::Interrupt;
    use crate::record::{Type, Value};

    fn config(format: SinkFormat, mode: SinkMode) -> SinkConfig {
        SinkConfig {
            name: "out".into(),
            format,
            target: SinkTarget::File("out.txt".into()),
            path_span: 0..0,
            mode,
        }
    }

    /// Runs a writer over ticks 0, 10, …, 90 from two workers, with a commit after every
    /// frontier step; returns what it wrote and its commits, oldest first.
    fn write(
        dir: &Path,
        cfg: &SinkConfig,
        resume: Option<Commit>,
        interrupt: Interrupt,
        failing: bool,
    ) -> (Vec<u8>, SinkStats, Vec<Commit>) {
        let schema = Schema::new([("worker", Type::Int), ("text", Type::String)]);
        let log_path = dir.join("commits.log");
        let recovery = Recovery {
            log: Arc::new(CommitLog::open(&log_path, 0).unwrap()),
            interval: Duration::ZERO,
            resume,
            failing: Arc::new(AtomicBool::new(failing)),
        };
        let time = TimeDomain::Position { tick_records: 10 };
        let writer = SinkWriter::start(
            cfg,
            &schema,
            time,
            dir,
            2,
            Arc::new(interrupt),
            Some(recovery),
            channel(1),
            None,
        )
        .unwrap();
        for t in 0..10u64 {
            let tick = t * 10;
            for worker in 0..2 {
                let rows = (0..3)
                    .map(|i| {
                        let text = format!("row \"{t}\", {i}");
                        (vec![Value::Int(worker as i64), Value::Str(text.into())], 1)
                    })
                    .collect();
                writer
                    .sender
                    .send(SinkMsg::Part {
                        tick,
                        rows,
                        lines: None,
                    })
                    .unwrap();
                let bound = Some(tick + 10);
                writer
                    .sender
                    .send(SinkMsg::Frontier { worker, bound })
                    .unwrap();
            }
        }
        for worker in 0..2 {
            let bound = None;
            writer
                .sender
                .send(SinkMsg::Frontier { worker, bound })
                .unwrap();
        }
        let stats = writer.finish().unwrap();
        let commits = std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .map(|l| {
                let state = LogState::parse(format!("{l}\n").as_bytes()).unwrap();
                state.sinks["out"]
            })
            .collect();
        (std::fs::read(dir.join("out.txt")).unwrap(), stats, commits)
    }

    #[test]
    fn csv_lines_are_what_the_csv_crate_writes() {
        let schema = Schema::new([("a", Type::String), ("b", Type::Int), ("c", Type::Float)]);
        let format = LineFormat::new(
            &config(SinkFormat::Csv, SinkMode::Snapshot),
            &schema,
            TimeDomain::Position { tick_records: 10 },
        );
        let texts = [
            "",
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            " spaced ",
            "\"",
            "é,ü",
        ];
        for text in texts {
            for row in [
                vec![Value::Str(text.into()), Value::Int(-3), Value::float(1.5)],
                vec![Value::Str(text.into())],
                vec![Value::Null, Value::Str(text.into()), Value::Null],
            ] {
                let mut ours = String::new();
                format.encode(&row, None, &mut ours);
                let mut w = csv::Writer::from_writer(Vec::new());
                let fields: Vec<String> = row
                    .iter()
                    .map(|v| {
                        let mut t = String::new();
                        v.write_text(&mut t);
                        t
                    })
                    .collect();
                w.write_record(&fields).unwrap();
                let theirs = String::from_utf8(w.into_inner().unwrap()).unwrap();
                assert_eq!(ours, theirs, "{row:?}");
            }
        }
    }

    #[test]
    fn merging_encoded_parts_equals_encoding_the_merge() {
        let schema = Schema::new([("k", Type::Int), ("s", Type::String)]);
        let time = TimeDomain::Position { tick_records: 10 };
        let row = |k: i64, s: &str| vec![Value::Int(k), Value::Str(s.into())];
        // Row (2, "b") is in two parts and cancels; (3, "c") is in all three and adds up; the
        // third part's rows 5..8 follow every other part's (a run copied at once).
        let a = vec![(row(1, "a"), 1), (row(2, "b"), 1), (row(3, "c"), 1)];
        let b = vec![(row(2, "b"), -1), (row(3, "c"), 2), (row(4, "d,e"), -1)];
        let c = vec![
            (row(-7, "z"), 1),
            (row(3, "c"), 1),
            (row(5, ""), 1),
            (row(6, "}"), 2),
            (row(7, "x:1"), -3),
        ];
        for format in [SinkFormat::Csv, SinkFormat::Jsonl] {
            let cfg = config(format, SinkMode::Updates);
            let line_format = LineFormat::new(&cfg, &schema, time);
            // Parts as rows, as rows with lines, or as keyed lines only (what workers send).
            let write = |rows: bool, lines: bool| {
                let dir = tempfile::tempdir().unwrap();
                let file = std::fs::File::create(dir.path().join("o")).unwrap();
                let mut enc = Encoder::new(&cfg, &schema, time, Dest::file(file), true).unwrap();
                let part = |p: &Vec<(Row, Diff)>| {
                    (
                        if rows { p.clone() } else { Vec::new() },
                        lines.then(|| {
                            // A reused buffer, as the writer hands back: it still holds
                            // another tick's lines.
                            let mut l = Lines::default();
                            line_format.encode_tick(9, &c, &mut l);
                            line_format.encode_tick(20, p, &mut l);
                            l
                        }),
                    )
                };
                enc.write_parts(20, vec![part(&a), part(&b), part(&c)])
                    .unwrap();
                enc.finish().unwrap();
                std::fs::read_to_string(dir.path().join("o")).unwrap()
            };
            let plain = write(true, false);
            if format == SinkFormat::Csv {
                assert_eq!(
                    plain,
                    "k,s,time,diff\n-7,z,20,1\n1,a,20,1\n3,c,20,4\n4,\"d,e\",20,-1\n\
                     5,,20,1\n6,},20,2\n7,x:1,20,-3\n"
                );
            }
            assert_eq!(
                plain.lines().count(),
                8 - (format == SinkFormat::Jsonl) as usize
            );
            assert_eq!(write(true, true), plain);
            assert_eq!(write(false, true), plain);
        }
    }

    #[test]
    fn encoding_a_tick_consolidates_it_in_row_order() {
        let schema = Schema::new([("k", Type::Int), ("s", Type::String), ("x", Type::Float)]);
        let time = TimeDomain::Position { tick_records: 10 };
        let cfg = config(SinkFormat::Csv, SinkMode::Updates);
        let format = LineFormat::new(&cfg, &schema, time);
        // Rows whose keys share their first 16 bytes (same k, long equal string heads), equal
        // rows to sum, a pair that cancels, and negative numbers.
        let row = |k: i64, s: &str, x: f64| vec![Value::Int(k), Value::str(s), Value::float(x)];
        let mut rows = Vec::new();
        for i in 0..200i64 {
            let j = i % 60; // each row three or four times
            let s = format!("same-head-{}", (j * 7919) % 13);
            rows.push((
                row((j * 31) % 17 - 8, &s, (j % 5) as f64 - 2.0),
                1 + i as Diff % 3,
            ));
        }
        rows.push((row(100, "gone", 0.0), 2));
        rows.push((row(100, "gone", 0.0), -2));
        let mut lines = Lines::default();
        format.encode_tick(30, &rows, &mut lines);
        let mut expected = rows.clone();
        consolidate(&mut expected);
        let mut text = String::new();
        for (row, diff) in &expected {
            format.encode(row, Some((30, *diff)), &mut text);
        }
        assert!(expected.len() < rows.len() - 2, "some rows were summed");
        assert_eq!(lines.text, text);
        assert_eq!(lines.ends.len(), expected.len());
        for (i, (row, _)) in expected.iter().enumerate() {
            let mut key = Vec::new();
            write_order_key(row, &mut key);
            assert_eq!(lines.order_of(i).1, key.as_slice());
        }
    }

    #[test]
    fn a_reused_pending_tick_encodes_like_a_fresh_one() {
        let schema = Schema::new([("k", Type::Int), ("s", Type::String)]);
        let time = TimeDomain::Position { tick_records: 10 };
        let cfg = config(SinkFormat::Csv, SinkMode::Updates);
        let format = LineFormat::new(&cfg, &schema, time);
        let rows = |n: i64| -> Vec<(Row, Diff)> {
            (0..n)
                .map(|i| {
                    (
                        vec![Value::Int((i * 7) % 5), Value::str(&"x".repeat(i as usize))],
                        1,
                    )
                })
                .collect()
        };
        let mut fresh = Lines::default();
        format.encode_tick(4, &rows(9), &mut fresh);
        // One pending buffer and one lines buffer through a bigger tick, then a smaller one.
        // Each tick expects the last finished one's size, as a sink does.
        let mut pending = TickLines::default();
        let mut lines = Lines::default();
        let mut sizes = Vec::new();
        let mut last = TickSize::default();
        for (tick, n) in [(3, 40), (4, 9)] {
            pending.expect(&last);
            format.start_tick(tick, &mut pending);
            for (row, diff) in rows(n) {
                format.push(&mut pending, &row, diff);
            }
            assert_eq!(pending.len(), n as usize);
            last = pending.size();
            sizes.push(last);
            LineFormat::finish_tick(&mut pending, &mut lines);
            assert!(pending.is_empty());
        }
        // A fresh buffer expecting the big tick has room for all of it before the first push.
        let big = sizes[0];
        let mut sized = TickLines::default();
        sized.expect(&big);
        assert!(sized.lines.text.capacity() >= big.text, "{big:?}");
        assert!(sized.lines.keys.capacity() >= big.keys, "{big:?}");
        assert!(sized.diffs.capacity() >= big.updates && big.updates == 40);
        assert_eq!(lines.text, fresh.text);
        assert_eq!(lines.ends, fresh.ends);
        for i in 0..lines.len() {
            assert_eq!(lines.order_of(i), fresh.order_of(i));
        }
        assert!(
            lines.text.starts_with("0,,4,1\n0,xxxxx,4,1\n1,xxx,4,1\n"),
            "{}",
            lines.text
        );
    }

    #[test]
    fn a_resumed_writer_cuts_the_file_and_writes_only_uncommitted_ticks() {
        for format in [SinkFormat::Csv, SinkFormat::Jsonl] {
            let cfg = config(format, SinkMode::Updates);
            let reference = tempfile::tempdir().unwrap();
            let (full, stats, commits) =
                write(reference.path(), &cfg, None, Interrupt::default(), false);
            assert_eq!(stats.rows, 60);
            assert!(commits.len() >= 5, "{commits:?}");
            let last = *commits.last().unwrap();
            assert_eq!(
                (last.bound, last.bytes, last.rows),
                (None, full.len() as u64, 60)
            );
            // Every commit names a prefix of the final file holding exactly the ticks before its
            // bound: 6 rows per tick, whole lines, after the CSV header.
            for c in &commits[..commits.len() - 1] {
                let prefix = &full[..c.bytes as usize];
                assert_eq!(c.rows, 6 * c.bound.unwrap() / 10, "{c:?}");
                let header = u64::from(format == SinkFormat::Csv);
                assert_eq!(
                    memchr::memchr_iter(b'\n', prefix).count() as u64,
                    c.rows + header
                );
                assert!(prefix.ends_with(b"\n"), "{c:?}");
            }
            // Resume from every commit, with junk after the committed prefix as a crash leaves it.
            for c in &commits {
                let dir = tempfile::tempdir().unwrap();
                let mut torn = full[..c.bytes as usize].to_vec();
                torn.extend_from_slice(b"1,\"row half-writ");
                std::fs::write(dir.path().join("out.txt"), torn).unwrap();
                let (again, stats, _) =
                    write(dir.path(), &cfg, Some(*c), Interrupt::default(), false);
                assert_eq!(
                    String::from_utf8_lossy(&again),
                    String::from_utf8_lossy(&full),
                    "{c:?}"
                );
                assert_eq!(stats.rows, 60, "{c:?}");
            }
        }
    }

    #[test]
    fn a_resumed_writer_never_commits_less_than_it_resumed_from() {
        let cfg = config(SinkFormat::Csv, SinkMode::Updates);
        let reference = tempfile::tempdir().unwrap();
        let (full, _, commits) = write(reference.path(), &cfg, None, Interrupt::default(), false);
        let middle = commits[commits.len() / 2];
        let dir = tempfile::tempdir().unwrap();
        let mut torn = full[..middle.bytes as usize].to_vec();
        torn.extend_from_slice(b"written after the commit");
        std::fs::write(dir.path().join("out.txt"), torn).unwrap();
        // Interrupted early: the ticks it keeps are all in the committed prefix already, and
        // what a crash left after that prefix is cut off.
        let interrupt = Interrupt::default();
        interrupt.record(10);
        let (again, stats, resumed) = write(dir.path(), &cfg, Some(middle), interrupt, false);
        assert_eq!(again, &full[..middle.bytes as usize]);
        assert_eq!(stats.rows, middle.rows);
        assert!(resumed.is_empty(), "{resumed:?}");
    }

    #[test]
    fn an_interrupted_writer_commits_up_to_the_interrupt() {
        let cfg = config(SinkFormat::Csv, SinkMode::Updates);
        let dir = tempfile::tempdir().unwrap();
        let interrupt = Interrupt::default();
        interrupt.record(50);
        let (file, stats, commits) = write(dir.path(), &cfg, None, interrupt, false);
        let last = *commits.last().unwrap();
        assert_eq!(
            (last.bound, last.bytes, last.rows),
            (Some(50), file.len() as u64, 30)
        );
        assert_eq!(stats.rows, 30);
    }

    #[test]
    fn a_failing_run_commits_nothing() {
        for mode in [SinkMode::Updates, SinkMode::Snapshot] {
            let dir = tempfile::tempdir().unwrap();
            let (_, _, commits) = write(
                dir.path(),
                &config(SinkFormat::Csv, mode),
                None,
                Interrupt::default(),
                true,
            );
            assert!(commits.is_empty(), "{commits:?}");
        }
    }

    #[test]
    fn a_snapshot_commits_once_complete_and_is_rewritten_on_resume() {
        let cfg = config(SinkFormat::Jsonl, SinkMode::Snapshot);
        let dir = tempfile::tempdir().unwrap();
        let (full, _, commits) = write(dir.path(), &cfg, None, Interrupt::default(), false);
        assert_eq!(commits.len(), 1);
        assert_eq!(commits[0].bound, None);
        let (again, _, _) = write(
            dir.path(),
            &cfg,
            Some(commits[0]),
            Interrupt::default(),
            false,
        );
        assert_eq!(again, full);
        let interrupt = Interrupt::default();
        interrupt.record(50);
        let (_, _, commits) = write(dir.path(), &cfg, None, interrupt, false);
        assert!(
            commits.is_empty(),
            "an interrupted snapshot is partial: {commits:?}"
        );
    }

    #[test]
    fn reopening_a_file_shorter_than_its_commit_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = Dest::reopen(&path, 100).err().expect("too short");
        assert!(
            err.to_string().contains("8 bytes, fewer than the 100"),
            "{err}"
        );
        let mut dest = Dest::reopen(&path, 4).unwrap();
        dest.write_all(b"3,4\n").unwrap();
        dest.flush().unwrap();
        assert_eq!(dest.len(), 8);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n3,4\n");
    }
}
