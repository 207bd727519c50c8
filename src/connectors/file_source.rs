//! The reading side of a file source: one splitter thread and one parser thread per local
//! worker, feeding each worker over its own bounded channel.
//!
//! The file is memory-mapped and cut into chunks at record boundaries by [`split::Splitter`]
//! (independent of how many threads parse). Chunk `k` belongs to global worker `k % total`
//! ([`ChunkShare`]); in one process that is parser and worker `k % workers`, in a cluster each
//! process scans the whole file for record boundaries but parses only its own workers' chunks.
//! Each parser publishes the largest event time of every chunk it parsed to the source's
//! [`ChunkClock`], so a worker can tell — in file order, whatever the number of workers — which
//! of its records are late. In a cluster the parsers also hand those maxima to the runtime, which
//! sends them to the other processes' clocks.

use super::csv_parse::{self, CsvLayout};
use super::jsonl_parse::{self, JsonLayout};
use super::parsed::ParsedBatch;
use super::split::{self, Splitter};
use super::{SourceConfig, SourceFormat};
use crate::record::Value;
use crossbeam_channel::{bounded, Receiver, Sender};
use memmap2::{Mmap, UncheckedAdvice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Target chunk size. Big enough to amortise per-chunk work, small enough to spread a few MB
/// over every worker.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Parsed chunks in flight per worker; bounds memory and pushes back on the parsers.
const CHANNEL_CHUNKS: usize = 4;

/// A parsed chunk on its way to a worker.
pub struct ParsedChunk {
    /// Chunk index in the file.
    pub index: u64,
    /// Its records.
    pub batch: ParsedBatch,
    /// Record position just after the chunk's last record.
    pub end_position: u64,
    /// Bytes of the file the chunk covers.
    pub bytes: u64,
}

/// Which chunks of a file this process parses: chunk `k` belongs to global worker `k % total`,
/// and this process runs global workers `first..first + local`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkShare {
    /// Global index of this process's first worker.
    pub first: usize,
    /// Workers in this process.
    pub local: usize,
    /// Workers in all processes.
    pub total: usize,
}

impl ChunkShare {
    /// A single process with `workers` workers: every chunk is parsed here.
    pub fn single(workers: usize) -> ChunkShare {
        ChunkShare {
            first: 0,
            local: workers,
            total: workers,
        }
    }

    /// The local worker that parses chunk `index`, or `None` if another process does.
    pub fn owner(&self, index: u64) -> Option<usize> {
        let global = (index % self.total as u64) as usize;
        (global >= self.first && global < self.first + self.local).then(|| global - self.first)
    }

    /// Whether other processes parse some chunks.
    pub fn is_partial(&self) -> bool {
        self.local < self.total
    }
}

/// A chunk's largest valid event time (`None`: it has none), by chunk index.
pub type ChunkMax = (u64, Option<i64>);

/// Something to call when a worker has new input (the runtime installs timely activators).
pub trait Wake: Send + Sync {
    /// Wakes local worker `worker`.
    fn wake(&self, worker: usize);
    /// Wakes every local worker.
    fn wake_all(&self);
}

/// Per-chunk event-time maxima, published by parsers in any order, read as prefixes in file order.
#[derive(Default)]
pub struct ChunkClock {
    state: Mutex<ClockState>,
}

#[derive(Default)]
struct ClockState {
    /// Max event time (and end position, for live sources) of each published chunk beyond the
    /// known prefix.
    pending: std::collections::BTreeMap<u64, (Option<i64>, Option<u64>)>,
    /// `prefix[k]` = max event time over chunks `0..k`, for every `k` up to the first unpublished chunk.
    prefix: Vec<Option<i64>>,
    /// Record position just after the last chunk of the prefix (live sources publish it).
    end: u64,
    /// The first chunk that was an idle advance of the watermark (live sources only).
    first_idle: Option<u64>,
}

impl ChunkClock {
    /// Publishes chunk `index`'s largest event time (`None` if it has no valid time).
    pub fn publish(&self, index: u64, max: Option<i64>) {
        self.publish_at(index, max, None);
    }

    /// Publishes a live source's chunk `index`: its largest event time and the record position
    /// just after it. A live reader publishes a chunk only after sending it to its worker, so a
    /// worker that sees chunk `k` published and finds its channel empty has had every chunk
    /// before `k` that is meant for it ([`ChunkClock::published`]).
    pub fn publish_live(&self, index: u64, max: Option<i64>, end: u64) {
        self.publish_at(index, max, Some(end));
    }

    /// Publishes chunk `index` of a live source as an idle advance: no records, but the source's
    /// largest event time moves to `max`, so its watermark advances ([`crate::connectors::live_source`]).
    pub fn publish_idle(&self, index: u64, max: i64, end: u64) {
        {
            let mut s = self.state.lock().expect("clock lock is never poisoned");
            s.first_idle.get_or_insert(index);
        }
        self.publish_at(index, Some(max), Some(end));
    }

    /// Whether an idle advance came before chunk `index` (for the detail of late records).
    pub fn idle_before(&self, index: u64) -> bool {
        let s = self.state.lock().expect("clock lock is never poisoned");
        s.first_idle.is_some_and(|i| i < index)
    }

    /// How many chunks are published without a gap, the largest event time over them and the
    /// record position after them.
    pub fn published(&self) -> (u64, Option<i64>, u64) {
        let s = self.state.lock().expect("clock lock is never poisoned");
        match s.prefix.last() {
            None => (0, None, 0),
            Some(m) => ((s.prefix.len() - 1) as u64, *m, s.end),
        }
    }

    fn publish_at(&self, index: u64, max: Option<i64>, end: Option<u64>) {
        let mut s = self
            .state
            .lock()
            .expect("clock lock is never poisoned: no code panics while holding it");
        if s.prefix.is_empty() {
            s.prefix.push(None);
        }
        s.pending.insert(index, (max, end));
        loop {
            let next = (s.prefix.len() - 1) as u64;
            let Some((m, end)) = s.pending.remove(&next) else {
                break;
            };
            let last = *s.prefix.last().expect("prefix starts non-empty");
            s.prefix.push(last.max(m));
            if let Some(e) = end {
                s.end = e;
            }
        }
    }

    /// The largest event time over chunks `0..index`, once all of them are published:
    /// `Some(None)` when they have no valid times, `None` when some are not yet published.
    pub fn max_before(&self, index: u64) -> Option<Option<i64>> {
        if index == 0 {
            return Some(None);
        }
        let s = self.state.lock().expect("clock lock is never poisoned");
        s.prefix.get(index as usize).copied()
    }
}

/// The running reader of one file source.
pub struct FileSourceReader {
    /// One receiver per local worker; each worker takes its own.
    pub receivers: Vec<Mutex<Option<Receiver<ParsedChunk>>>>,
    /// In a cluster, with event time: per local worker, the maxima of the chunks its parser
    /// published, for the runtime to send to the other processes.
    pub published: Vec<Mutex<Option<Receiver<ChunkMax>>>>,
    /// Event-time prefix maxima by chunk.
    pub clock: Arc<ChunkClock>,
    /// File size in bytes.
    pub total_bytes: u64,
    /// Bytes parsed so far (for progress).
    pub parsed_bytes: Arc<AtomicU64>,
    /// Time spent preparing input before the run could start (pregenerated Nexmark events);
    /// the run's clock leaves it out.
    pub setup: std::time::Duration,
    threads: Vec<JoinHandle<()>>,
}

impl FileSourceReader {
    /// A reader from its parts, for sources that are not files (`nexmark`).
    pub(crate) fn from_parts(
        receivers: Vec<Mutex<Option<Receiver<ParsedChunk>>>>,
        clock: Arc<ChunkClock>,
        total_bytes: u64,
        parsed_bytes: Arc<AtomicU64>,
        threads: Vec<JoinHandle<()>>,
        setup: std::time::Duration,
    ) -> FileSourceReader {
        FileSourceReader {
            receivers,
            published: Vec::new(),
            clock,
            total_bytes,
            parsed_bytes,
            setup,
            threads,
        }
    }

    /// Maps the file and starts the splitter and one parser thread per local worker of `share`.
    /// `needed` marks the schema fields the pipeline reads; CSV sources parse only those.
    /// `waker` wakes the workers' source operators; `publish_waker` the operators that forward
    /// published maxima to other processes (only used when `share` is partial).
    pub fn start(
        cfg: &SourceConfig,
        needed: &[bool],
        share: ChunkShare,
        waker: Arc<dyn Wake>,
        publish_waker: Arc<dyn Wake>,
    ) -> std::io::Result<FileSourceReader> {
        let parsers = share.local;
        // Generated in process, for a single process (the runtime refuses them in a cluster).
        if let SourceFormat::Nexmark(s) = &cfg.format {
            return super::nexmark::start(cfg, s, needed, parsers, waker);
        }
        let file = std::fs::File::open(&cfg.path)?;
        let len = file.metadata()?.len();
        // SAFETY: the map is read-only; eventflow never writes its inputs, and the planner refuses
        // outputs that overwrite an input. A file truncated by another process while mapped
        // would fault, as with any mmap-based reader.
        let map = Arc::new(if len == 0 {
            FileBytes::Empty
        } else {
            FileBytes::Mapped(unsafe { Mmap::map(&file)? })
        });
        let clock = Arc::new(ChunkClock::default());
        let parsed_bytes = Arc::new(AtomicU64::new(0));
        let (body_offset, first_line, layout) = {
            let data: &[u8] = map.bytes();
            match cfg.format {
                SourceFormat::Csv { delimiter } => {
                    let (header, body) = split::read_header(data);
                    let mut layout =
                        CsvLayout::from_header(header.unwrap_or(b""), &cfg.schema, delimiter)
                            .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidData, m))?;
                    layout.project(needed);
                    (body, split::line_at(data, body), Layout::Csv(layout))
                }
                SourceFormat::Jsonl => (0, 1, Layout::Json(JsonLayout::new(&cfg.schema))),
                SourceFormat::Nexmark(_) => unreachable!("handled above"),
            }
        };
        let layout = Arc::new(layout);
        let quote_aware = matches!(cfg.format, SourceFormat::Csv { .. });
        let mut threads = Vec::new();
        let mut chunk_senders = Vec::new();
        let mut receivers = Vec::new();
        let mut published = Vec::new();
        for p in 0..parsers {
            let (chunk_tx, chunk_rx) = bounded::<split::Chunk>(CHANNEL_CHUNKS);
            let (out_tx, out_rx) = bounded::<ParsedChunk>(CHANNEL_CHUNKS);
            chunk_senders.push(chunk_tx);
            receivers.push(Mutex::new(Some(out_rx)));
            // Unbounded, but one small entry per 1 MiB chunk.
            let publish = (share.is_partial() && cfg.event_time.is_some()).then(|| {
                let (tx, rx) = crossbeam_channel::unbounded();
                published.push(Mutex::new(Some(rx)));
                (tx, publish_waker.clone())
            });
            let ctx = ParserCtx {
                map: map.clone(),
                layout: layout.clone(),
                schema: cfg.schema.clone(),
                event_time: cfg.event_time,
                clock: clock.clone(),
                waker: waker.clone(),
                parsed_bytes: parsed_bytes.clone(),
                worker: p,
                publish,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("parse:{}:{p}", cfg.name))
                    .spawn(move || ctx.run(chunk_rx, out_tx))?,
            );
        }
        let split_map = map.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("split:{}", cfg.name))
                .spawn(move || {
                    let data: &[u8] = split_map.bytes();
                    let splitter =
                        Splitter::new(data, body_offset, first_line, CHUNK_BYTES, quote_aware);
                    for chunk in splitter {
                        let Some(p) = share.owner(chunk.index) else {
                            // Another process parses it; the scan paged it in, page it out.
                            split_map.release(chunk.start, chunk.end);
                            continue;
                        };
                        if chunk_senders[p].send(chunk).is_err() {
                            return; // the run is shutting down
                        }
                    }
                })?,
        );
        Ok(FileSourceReader {
            receivers,
            published,
            clock,
            total_bytes: len,
            parsed_bytes,
            setup: std::time::Duration::ZERO,
            threads,
        })
    }

    /// Waits for the reader threads (after the workers finished).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The input file's bytes: a read-only memory map (or nothing, for an empty file).
enum FileBytes {
    Empty,
    Mapped(Mmap),
}

impl FileBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            FileBytes::Empty => &[],
            FileBytes::Mapped(m) => m,
        }
    }

    /// Tells the kernel a parsed chunk's pages are no longer needed, so a run's resident memory
    /// stays bounded by the chunks in flight rather than growing to the file's size.
    fn release(&self, start: usize, end: usize) {
        const PAGE: usize = 4096;
        let (from, to) = (start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
        if let (FileBytes::Mapped(m), true) = (self, to > from) {
            // SAFETY: the map is a read-only file mapping; after MADV_DONTNEED a later read
            // faults the page back in from the file (only private *anonymous* memory would read
            // back as zeros). Only pages wholly inside this chunk are released. An error (e.g.
            // a page size other than 4 KiB) only means the pages stay resident.
            let _ = unsafe { m.unchecked_advise_range(UncheckedAdvice::DontNeed, from, to - from) };
        }
    }
}

enum Layout {
    Csv(CsvLayout),
    Json(JsonLayout),
}

struct ParserCtx {
    map: Arc<FileBytes>,
    layout: Arc<Layout>,
    schema: crate::record::Schema,
    event_time: Option<usize>,
    clock: Arc<ChunkClock>,
    waker: Arc<dyn Wake>,
    parsed_bytes: Arc<AtomicU64>,
    worker: usize,
    /// In a cluster: where to hand each chunk's maximum for the other processes, and whom to wake.
    publish: Option<(Sender<ChunkMax>, Arc<dyn Wake>)>,
}

impl ParserCtx {
    fn run(self, chunks: Receiver<split::Chunk>, out: Sender<ParsedChunk>) {
        let data: &[u8] = self.map.bytes();
        for chunk in chunks {
            let mut batch = ParsedBatch::new(self.schema.len());
            let bytes = chunk.bytes(data);
            match &*self.layout {
                Layout::Csv(l) => {
                    csv_parse::parse_chunk(bytes, &chunk, l, &self.schema, &mut batch)
                }
                Layout::Json(l) => {
                    jsonl_parse::parse_chunk(bytes, &chunk, l, &self.schema, &mut batch)
                }
            }
            self.map.release(chunk.start, chunk.end);
            let end_position = chunk.first_position + batch.records() as u64;
            if let Some(et) = self.event_time {
                let max = batch
                    .rows()
                    .filter_map(|r| match r[et] {
                        // The same range the source operator accepts: a rejected time must
                        // not move the watermark.
                        Value::Time(t) if crate::record::time::is_event_time(t) => Some(t),
                        _ => None,
                    })
                    .max();
                self.clock.publish(chunk.index, max);
                self.waker.wake_all();
                if let Some((tx, wake)) = &self.publish {
                    let _ = tx.send((chunk.index, max));
                    wake.wake(self.worker);
                }
            }
            self.parsed_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let parsed = ParsedChunk {
                index: chunk.index,
                batch,
                end_position,
                bytes: chunk.len() as u64,
            };
            if out.send(parsed).is_err() {
                return;
            }
            self.waker.wake(self.worker);
        }
        drop(out);
        self.waker.wake(self.worker);
        if let Some((tx, wake)) = self.publish {
            drop(tx);
            wake.wake(self.worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_has_exactly_one_owner_across_processes() {
        // 3 processes × 2 workers: chunk k belongs to global worker k % 6.
        let shares: Vec<ChunkShare> = (0..3)
            .map(|p| ChunkShare {
                first: p * 2,
                local: 2,
                total: 6,
            })
            .collect();
        for k in 0..50u64 {
            let owners: Vec<(usize, usize)> = shares
                .iter()
                .enumerate()
                .filter_map(|(p, s)| s.owner(k).map(|w| (p, w)))
                .collect();
            let g = (k % 6) as usize;
            assert_eq!(owners, vec![(g / 2, g % 2)], "chunk {k}");
        }
        let single = ChunkShare::single(4);
        assert!(!single.is_partial());
        assert_eq!(single.owner(9), Some(1));
    }

    #[test]
    fn the_clock_gives_prefix_maxima_whatever_the_publishing_order() {
        let clock = ChunkClock::default();
        clock.publish(2, Some(5));
        clock.publish(0, Some(3));
        assert_eq!(clock.max_before(0), Some(None));
        assert_eq!(clock.max_before(1), Some(Some(3)));
        assert_eq!(clock.max_before(2), None, "chunk 1 is not published");
        clock.publish(1, None);
        assert_eq!(clock.max_before(2), Some(Some(3)));
        assert_eq!(clock.max_before(3), Some(Some(5)));
    }
}
