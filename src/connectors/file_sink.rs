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
use crate::record::{write_json_string, Diff, Row, Schema, Tick};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
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

/// A running sink writer.
pub struct SinkWriter {
    /// Where workers send their parts; clone one per worker.
    pub sender: Sender<SinkMsg>,
    thread: JoinHandle<std::io::Result<SinkStats>>,
}

impl SinkWriter {
    /// Creates the output file (writing the header) and starts the writer thread for `workers`
    /// local workers. With `recovery`, a file sink commits what it wrote; resuming, it appends
    /// to the committed prefix of its file instead. With `refresh` (a pipeline with a live
    /// source), a snapshot file sink rewrites its file (a new file renamed over it) with the
    /// result so far at most this often, as ticks complete, so a run that never ends still shows
    /// its snapshot.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        cfg: &SinkConfig,
        schema: &Schema,
        time: TimeDomain,
        out_dir: &Path,
        workers: usize,
        interrupt: Arc<super::Interrupt>,
        recovery: Option<Recovery>,
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
                let mut dest = Dest {
                    kind: DestKind::Amqp(Box::new(publisher)),
                    bytes: 0,
                };
                dest.bytes = resume.map_or(0, |c| c.bytes);
                dest
            }
        };
        let mut encoder = Encoder::new(cfg, schema, time, dest, resume.is_none())?;
        encoder.stats.rows = resume.map_or(0, |c| c.rows);
        let committer = recovery.map(|r| Committer {
            sink: cfg.name.clone(),
            last: resume,
            due: Instant::now() + r.interval,
            recovery: r,
        });
        let (sender, receiver) = unbounded();
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

/// Commits a file sink's progress to the run's commit log.
struct Committer {
    sink: String,
    recovery: Recovery,
    /// The last commit (of this run, or of the run being resumed).
    last: Option<Commit>,
    /// No periodic commit before this instant.
    due: Instant,
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
    fn commit(
        &mut self,
        enc: &mut Encoder,
        bound: Option<Tick>,
        now: Option<Instant>,
    ) -> std::io::Result<()> {
        if now.is_some_and(|now| now < self.due) || !self.wants(bound) {
            return Ok(());
        }
        // Data first, then the record that points at it: a commit never names unsynced bytes.
        let bytes = enc.sync()?;
        let commit = Commit {
            bound,
            bytes,
            rows: enc.stats.rows,
        };
        self.recovery.log.commit(&self.sink, &commit)?;
        self.last = Some(commit);
        self.due = Instant::now() + self.recovery.interval;
        Ok(())
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
        let mut pending: BTreeMap<Tick, Vec<(Row, Diff)>> = BTreeMap::new();
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
                Some(SinkMsg::Part { tick, rows }) => pending.entry(tick).or_default().extend(rows),
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
        mut rows: Vec<(Row, Diff)>,
        enc: &mut Encoder,
        snapshot: &mut Vec<(Row, Diff)>,
    ) -> std::io::Result<()> {
        if !self.interrupt.keeps(tick) {
            return Ok(()); // the run was interrupted: this tick is not final
        }
        if self.skip.is_some_and(|c| c.covers(tick)) {
            return Ok(()); // resuming: already in the file
        }
        consolidate(&mut rows);
        match self.mode {
            SinkMode::Updates => enc.write_updates(tick, &rows),
            SinkMode::Snapshot => {
                snapshot.extend(rows);
                Ok(())
            }
        }
    }
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

/// Where a sink's bytes go: a buffered file, which can be synced for a commit, or stdout.
/// Counts the bytes written, so that a commit can record the file's length without asking the
/// file system.
pub struct Dest {
    kind: DestKind,
    bytes: u64,
}

enum DestKind {
    File(std::io::BufWriter<std::fs::File>),
    Stdout(std::io::BufWriter<std::io::Stdout>),
    /// One message per line; `bytes` counts the lines (messages).
    Amqp(Box<super::amqp_sink::Publisher>),
}

impl Dest {
    /// A new, empty file.
    pub fn file(file: std::fs::File) -> Dest {
        Dest {
            kind: DestKind::File(std::io::BufWriter::with_capacity(1 << 20, file)),
            bytes: 0,
        }
    }

    /// Standard output (never committed).
    pub fn stdout() -> Dest {
        Dest {
            kind: DestKind::Stdout(std::io::BufWriter::new(std::io::stdout())),
            bytes: 0,
        }
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
        let mut dest = Dest::file(file);
        dest.bytes = len;
        Ok(dest)
    }

    /// Bytes written so far, including any committed prefix.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// For a file, waits until everything flushed so far is on disk.
    pub fn sync_data(&self) -> std::io::Result<()> {
        match &self.kind {
            DestKind::File(w) => w.get_ref().sync_data(),
            // Flushing waited for the broker's confirms of persistent messages.
            DestKind::Stdout(_) | DestKind::Amqp(_) => Ok(()),
        }
    }

    /// The rows that follow are at `tick` (message ids of queue sinks name it).
    pub fn begin_tick(&mut self, tick: Tick) {
        if let DestKind::Amqp(p) = &mut self.kind {
            p.begin_tick(tick);
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
            DestKind::File(w) => w.write_all(buf)?,
            DestKind::Stdout(w) => w.write_all(buf)?,
            DestKind::Amqp(p) => {
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
        }
    }
}

/// The encoded destination: CSV through the csv crate's writer (quoting, buffering), or JSON
/// Lines written directly.
enum Output {
    Csv(Box<csv::Writer<Dest>>),
    Jsonl(Dest),
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
    /// An encoder writing to `out`, starting with a header row (CSV) when `header` is set.
    fn new(
        cfg: &SinkConfig,
        schema: &Schema,
        time: TimeDomain,
        out: Dest,
        header: bool,
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
                if header {
                    w.write_record(&names)?;
                }
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
        if let Output::Jsonl(w) = &mut self.out {
            w.begin_tick(tick);
        }
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

    fn finish(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Output::Csv(w) => w.flush(),
            Output::Jsonl(w) => w.flush(),
        }
    }

    /// Writes everything out and waits for the disk; returns the destination's length.
    fn sync(&mut self) -> std::io::Result<u64> {
        self.finish()?;
        let dest = match &self.out {
            Output::Csv(w) => w.get_ref(),
            Output::Jsonl(w) => w,
        };
        dest.sync_data()?;
        Ok(dest.len())
    }
}

/// Creates a channel pair for tests that drive a writer by hand.
pub fn channel() -> (Sender<SinkMsg>, Receiver<SinkMsg>) {
    unbounded()
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
                writer.sender.send(SinkMsg::Part { tick, rows }).unwrap();
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
