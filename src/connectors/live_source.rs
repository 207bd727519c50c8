//! The reading side of a live source (RabbitMQ queue, Kafka topic): one reader thread that
//! consumes the broker, parses messages with the file parsers, and feeds the workers in the
//! order it read them. What differs between brokers — connecting, receiving, acknowledging — is
//! a [`Consumer`] (`amqp_source`, `kafka_source`); everything else is here.
//!
//! - **Chunks in read order.** The reader takes the messages that arrived (at most
//!   [`BATCH_MESSAGES`]) as one chunk, parses it (`csv_parse`/`jsonl_parse`, so typing and dead
//!   letters are those of files), sends chunk `k` to worker `k % workers` and only then publishes
//!   it to the source's [`ChunkClock`]. A worker that sees chunk `k` published and its channel
//!   empty knows it will get nothing before `k`: it can follow the watermark without records of
//!   its own.
//! - **Lateness.** A queue is one ordered stream: the workers decide lateness in chunk order, as
//!   for a file. A partitioned source (Kafka) has an order per partition only, so the reader
//!   decides lateness itself, per partition: a record is late when its event time is behind the
//!   largest event time of the records before it *in its partition* minus `max_lateness`, so
//!   however the partitions interleave, no record becomes late because another partition ran
//!   ahead. Late records travel to the workers as dead records with reason `late`. The source's
//!   watermark is the smallest watermark of its partitions (none until every partition has a
//!   record or the source was idle), and that is what the clock publishes.
//! - **Back-pressure.** The channel to each worker holds 4 chunks, and a queue broker sends at
//!   most `prefetch` unacknowledged messages; a slow pipeline stops the consumer, it never
//!   buffers without limit.
//! - **Journal and acknowledgements.** With commits on, every message is appended to
//!   `.eventflow/journal-SOURCE.jsonl` before it is handed to the workers. A message is
//!   acknowledged (RabbitMQ `basic.ack`, Kafka offset commit) once the journal is synced past it
//!   and every committing sink has committed every tick up to the message's own tick (see
//!   [`Reader::ack`]). A resumed run replays the journal first (recomputing the state the
//!   crashed run had), then consumes again; messages already in the journal are recognised by
//!   their id (RabbitMQ message id, Kafka `PARTITION:OFFSET`) and only acknowledged. A Kafka
//!   source resumes each partition just after the last journaled offset.
//! - **Idle sources.** With `idle_timeout`, a source that got no message for that long publishes
//!   an *idle advance*: an empty chunk that moves its largest event time (of every partition) so
//!   that its watermark reaches the smallest watermark of the other, non-idle sources (or, alone,
//!   the end of the tick holding its own largest event time). The advance is journaled like a
//!   message, so a replay decides lateness the same way.
//! - **Broker trouble.** A lost connection is retried with doubling waits ([`CONNECT_ATTEMPTS`]);
//!   past that the run fails with a message naming the broker.

use super::commit_log::CommitLog;
use super::csv_parse::{self, CsvLayout};
use super::file_source::{ChunkClock, ParsedChunk, Wake};
use super::jsonl_parse::{self, JsonLayout};
use super::parsed::{DeadReason, DeadRecord, ParsedBatch};
use super::split::Chunk;
use super::{Interrupt, LiveBroker, SourceConfig, SourceFormat};
use crate::record::time::TimeDomain;
use crate::record::{Tick, Value};
use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most messages in one chunk.
pub const BATCH_MESSAGES: usize = 1024;

/// Parsed chunks in flight per worker.
const CHANNEL_CHUNKS: usize = 4;

/// How often the reader looks at acknowledgements, idleness and stop requests when no message
/// arrives.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Connection attempts before a run fails: the waits between them double from 250 ms, so the
/// last attempt comes about 30 s after the first failure.
pub const CONNECT_ATTEMPTS: u32 = 8;

/// Runs `attempt` until it succeeds, [`CONNECT_ATTEMPTS`] times at most with doubling waits;
/// each failure is logged on stderr. `give_up` is asked before each wait (a stop request ends
/// the retries). `what` names the connector, `target` the broker.
pub(crate) fn connect_with_retry<T>(
    what: &str,
    target: &str,
    give_up: &dyn Fn() -> bool,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let mut wait = Duration::from_millis(250);
    let mut last = String::new();
    for n in 1..=CONNECT_ATTEMPTS {
        match attempt() {
            Ok(link) => {
                if n > 1 {
                    eprintln!("{what}: connected to {target} (attempt {n})");
                }
                return Ok(link);
            }
            Err(e) => {
                last = e;
                if n == CONNECT_ATTEMPTS || give_up() {
                    break;
                }
                eprintln!(
                    "{what}: cannot connect to {target} ({last}); retrying in {} ms (attempt {n} of {CONNECT_ATTEMPTS})",
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
    }
    Err(format!(
        "{what}: cannot reach the broker at {target} after {CONNECT_ATTEMPTS} attempts over about 30 s: {last}"
    ))
}

/// One broker connection as the reader thread uses it. The reader calls [`Consumer::connect`],
/// then [`Consumer::receive`] in a loop, and [`Consumer::ack`] as the sinks commit; a consumer
/// that reports [`Consumer::is_broken`] is disconnected and connected again.
pub(crate) trait Consumer: Send + 'static {
    /// What acknowledges messages: a delivery tag, offsets per partition.
    type Mark: Send + 'static;
    /// Whether marks stay valid on a new connection (Kafka offsets do; AMQP delivery tags
    /// belong to one channel, and the broker redelivers what they did not acknowledge).
    const MARKS_SURVIVE: bool;
    /// `KIND source `NAME``, for messages.
    fn what(&self) -> String;
    /// The source's partitions, asked once before anything is read (connecting if needed);
    /// `None` for an unpartitioned queue.
    fn partitions(&mut self, give_up: &dyn Fn() -> bool) -> Result<Option<Vec<i32>>, String>;
    /// Connects (with bounded retries). `next` holds, per partition, the offset after the last
    /// message this run already has: reading resumes there.
    fn connect(
        &mut self,
        next: &BTreeMap<i32, i64>,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(), String>;
    /// Whether the connection is lost.
    fn is_broken(&self) -> bool;
    /// Waits up to `wait` for a message, then takes what else has arrived, `max` at most. An
    /// error fails the run (the broker lost messages the run has not read).
    fn receive(
        &mut self,
        wait: Duration,
        max: usize,
        out: &mut Vec<Delivery<Self::Mark>>,
    ) -> Result<(), String>;
    /// Folds a later mark into an earlier one.
    fn merge(into: &mut Self::Mark, later: Self::Mark);
    /// The mark that acknowledges a journaled message replayed by a resumed run, if marks
    /// survive connections (a Kafka offset does; RabbitMQ redelivers such a message instead).
    fn mark_of(id: &str) -> Option<Self::Mark>;
    /// Acknowledges every message up to `mark`; `false` if that failed.
    fn ack(&mut self, mark: Self::Mark) -> bool;
    /// Closes the connection (ignoring errors: the broker may be gone).
    fn disconnect(&mut self);
    /// Most unacknowledged messages the broker sends ahead (`u64::MAX`: no limit).
    fn window(&self) -> u64;
}

/// A message as a [`Consumer`] receives it.
pub(crate) struct Delivery<M> {
    /// Its identity: a message id, a body hash, or `PARTITION:OFFSET`.
    pub id: String,
    /// Payload.
    pub body: Vec<u8>,
    /// Seen again, it is a duplicate: the id names the message, or the broker flagged it as
    /// a redelivery (equal bodies without an id may be distinct messages).
    pub named: bool,
    /// What acknowledges it.
    pub mark: M,
}

/// The partition and offset in a partitioned message's id (`PARTITION:OFFSET`).
fn partition_offset(id: &str) -> Option<(i32, i64)> {
    let (p, o) = id.split_once(':')?;
    Some((p.parse().ok()?, o.parse().ok()?))
}

/// Message counts of a live source, for the summary and progress.
#[derive(Default, Debug)]
pub struct LiveStats {
    /// Messages received from the broker (duplicates included).
    pub consumed: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
    /// Redelivered messages dropped because the run had already read them.
    pub duplicates: AtomicU64,
    /// Messages replayed from the journal of the run being resumed.
    pub replayed: AtomicU64,
    /// Unacknowledged messages of a lost connection: the broker redelivers them.
    pub released: AtomicU64,
}

impl LiveStats {
    /// Received and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed).saturating_sub(
            self.acked.load(Ordering::Relaxed) + self.released.load(Ordering::Relaxed),
        )
    }
}

/// The event-time clocks of every source of a run, so an idle source can follow the others.
#[derive(Default)]
pub struct SourceClocks {
    entries: Mutex<Vec<ClockEntry>>,
}

struct ClockEntry {
    clock: Arc<ChunkClock>,
    lateness: u64,
    idle: Arc<AtomicBool>,
}

impl SourceClocks {
    /// Registers a source's clock; returns its slot and its idle flag.
    pub fn register(&self, clock: Arc<ChunkClock>, lateness: u64) -> (usize, Arc<AtomicBool>) {
        let mut e = self.entries.lock().expect("clocks lock is never poisoned");
        let idle = Arc::new(AtomicBool::new(false));
        e.push(ClockEntry {
            clock,
            lateness,
            idle: idle.clone(),
        });
        (e.len() - 1, idle)
    }

    /// The smallest watermark of the sources other than `me` that are not idle; `None` if there
    /// are none (or one of them has no watermark yet, which holds everything back anyway).
    fn others(&self, me: usize) -> Option<Option<i64>> {
        let e = self.entries.lock().expect("clocks lock is never poisoned");
        let mut min: Option<Option<i64>> = None;
        for (i, c) in e.iter().enumerate() {
            if i == me || c.idle.load(Ordering::Relaxed) {
                continue;
            }
            let w = c.clock.published().1.map(|m| m - c.lateness as i64);
            min = Some(match (min, w) {
                (None, w) => w,
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.min(b)),
            });
        }
        min
    }
}

/// What a live reader needs from the run.
pub struct LiveContext {
    /// The pipeline's name (a Kafka source's default consumer group is made from it).
    pub pipeline: String,
    /// The journal file (commits on), or `None`.
    pub journal: Option<PathBuf>,
    /// Replay the journal first (resuming an interrupted run).
    pub resume: bool,
    /// The run's commit log and the sinks whose commits acknowledgements wait for.
    pub commits: Option<(Arc<CommitLog>, Vec<String>)>,
    /// End the input once no message came for this long (`--stop-when-idle`).
    pub stop_when_idle: Option<Duration>,
    /// How ticks are formed.
    pub time: TimeDomain,
    /// Stop requests (Ctrl-C, SIGTERM).
    pub interrupt: Arc<Interrupt>,
    /// Set when the run fails; the reader stops and sets it itself when the broker is lost.
    pub stop: Arc<AtomicBool>,
    /// Why the broker failed the run.
    pub error: Arc<Mutex<Option<String>>>,
    /// Every source's clock.
    pub clocks: Arc<SourceClocks>,
}

/// A running live source reader.
pub struct LiveSourceReader {
    /// One receiver per local worker.
    pub receivers: Vec<Mutex<Option<Receiver<ParsedChunk>>>>,
    /// Event-time prefix maxima by chunk.
    pub clock: Arc<ChunkClock>,
    /// Message counts.
    pub stats: Arc<LiveStats>,
    finish: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl LiveSourceReader {
    /// Starts the reader thread for `workers` local workers.
    pub fn start(
        cfg: &SourceConfig,
        needed: &[bool],
        workers: usize,
        waker: Arc<dyn Wake>,
        ctx: LiveContext,
    ) -> std::io::Result<LiveSourceReader> {
        let live = cfg
            .live
            .clone()
            .expect("LiveSourceReader is started for live sources");
        match &live.broker {
            LiveBroker::Amqp {
                url,
                queue,
                prefetch,
            } => {
                let consumer = super::amqp_source::AmqpConsumer::new(
                    &cfg.name,
                    url.as_deref(),
                    queue,
                    *prefetch,
                );
                Self::start_with(consumer, cfg, needed, workers, waker, ctx)
            }
            #[cfg(feature = "kafka")]
            LiveBroker::Kafka {
                brokers,
                topic,
                group,
            } => {
                let group = group
                    .clone()
                    .unwrap_or_else(|| format!("eventflow-{}-{}", ctx.pipeline, cfg.name));
                let consumer = super::kafka_source::KafkaConsumer::new(
                    &cfg.name,
                    brokers.as_deref(),
                    topic,
                    &group,
                );
                Self::start_with(consumer, cfg, needed, workers, waker, ctx)
            }
            #[cfg(not(feature = "kafka"))]
            LiveBroker::Kafka { .. } => Err(std::io::Error::other(super::NO_KAFKA)),
        }
    }

    fn start_with<C: Consumer>(
        consumer: C,
        cfg: &SourceConfig,
        needed: &[bool],
        workers: usize,
        waker: Arc<dyn Wake>,
        ctx: LiveContext,
    ) -> std::io::Result<LiveSourceReader> {
        let live = cfg
            .live
            .as_ref()
            .expect("LiveSourceReader is started for live sources");
        let layout = match cfg.format {
            SourceFormat::Csv { delimiter } => {
                let mut l = CsvLayout::by_position(&cfg.schema, delimiter)
                    .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidData, m))?;
                l.project(needed);
                Layout::Csv(l)
            }
            SourceFormat::Jsonl => Layout::Json(JsonLayout::new(&cfg.schema)),
            SourceFormat::Nexmark(_) => unreachable!("queue payloads are CSV or JSON"),
        };
        let clock = Arc::new(ChunkClock::default());
        let (slot, idle) = ctx.clocks.register(clock.clone(), cfg.max_lateness_ms);
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = bounded(CHANNEL_CHUNKS);
            senders.push(tx);
            receivers.push(Mutex::new(Some(rx)));
        }
        let stats = Arc::new(LiveStats::default());
        let finish = Arc::new(AtomicBool::new(false));
        let journal = match &ctx.journal {
            Some(p) => Some(Journal::open(p, ctx.resume)?),
            None => None,
        };
        let thread_name = consumer.what();
        let reader = Reader {
            consumer,
            idle_timeout: live.idle_timeout_ms.map(Duration::from_millis),
            lateness: cfg.max_lateness_ms,
            schema: cfg.schema.clone(),
            event_time: cfg.event_time,
            layout,
            senders,
            waker,
            clock: clock.clone(),
            slot,
            idle,
            stats: stats.clone(),
            finish: finish.clone(),
            journal,
            ctx,
            next_chunk: 0,
            next_line: 1,
            next_position: 0,
            max_seen: None,
            seen: HashSet::new(),
            partitions: None,
            next_offset: BTreeMap::new(),
            partition_max: BTreeMap::new(),
            idled: false,
            pending: VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || reader.run())?;
        Ok(LiveSourceReader {
            receivers,
            clock,
            stats,
            finish,
            thread,
        })
    }

    /// After the sinks finished: acknowledges what they committed, closes the connection and
    /// waits for the reader thread.
    pub fn join(self) {
        self.finish.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

enum Layout {
    Csv(CsvLayout),
    Json(JsonLayout),
}

/// One message as the reader keeps it.
struct Message {
    id: String,
    body: Vec<u8>,
}

/// An entry of the journal.
enum Entry {
    Message(Message),
    /// An idle advance of the largest event time.
    Idle(i64),
}

/// Chunks handed to the workers and not yet acknowledged, in order.
struct Pending<M> {
    /// The largest tick of the chunk's records: once every committing sink is past it, the
    /// records' own ticks are committed.
    tick: Tick,
    /// What acknowledges the chunk's messages (`None`: replayed, or its channel is gone).
    mark: Option<M>,
    /// Messages it covers (duplicates attached to it included).
    messages: u64,
}

struct Reader<C: Consumer> {
    consumer: C,
    idle_timeout: Option<Duration>,
    lateness: u64,
    schema: crate::record::Schema,
    event_time: Option<usize>,
    layout: Layout,
    senders: Vec<Sender<ParsedChunk>>,
    waker: Arc<dyn Wake>,
    clock: Arc<ChunkClock>,
    slot: usize,
    idle: Arc<AtomicBool>,
    stats: Arc<LiveStats>,
    finish: Arc<AtomicBool>,
    journal: Option<Journal>,
    ctx: LiveContext,
    next_chunk: u64,
    next_line: u64,
    next_position: u64,
    /// The largest event time seen (idle advances included).
    max_seen: Option<i64>,
    /// Unpartitioned: ids of every message read (journal and broker), to drop duplicates.
    seen: HashSet<String>,
    /// Partitioned: the source's partitions.
    partitions: Option<Vec<i32>>,
    /// Partitioned: the offset after the last message read, per partition.
    next_offset: BTreeMap<i32, i64>,
    /// Partitioned, with event time: the largest event time per partition.
    partition_max: BTreeMap<i32, i64>,
    /// An idle advance happened (for the detail of late records).
    idled: bool,
    pending: VecDeque<Pending<C::Mark>>,
}

impl<C: Consumer> Reader<C> {
    fn what(&self) -> String {
        self.consumer.what()
    }

    fn stopping(&self) -> bool {
        self.ctx.interrupt.signal().is_some() || self.ctx.stop.load(Ordering::Relaxed)
    }

    fn run(mut self) {
        let (interrupt, stop) = (self.ctx.interrupt.clone(), self.ctx.stop.clone());
        let give_up = move || interrupt.signal().is_some() || stop.load(Ordering::Relaxed);
        match self.consumer.partitions(&give_up) {
            Ok(p) => self.partitions = p,
            Err(msg) => self.fail(msg),
        }
        if !self.stopping() {
            if let Err(e) = self.replay() {
                self.fail(format!("{}: cannot replay its journal: {e}", self.what()));
            }
        }
        let mut connected = false;
        let mut incoming: Vec<Delivery<C::Mark>> = Vec::new();
        let mut batch: Vec<Delivery<C::Mark>> = Vec::new();
        let mut last_message = Instant::now();
        // Idle advances follow the other sources at most this often.
        let idle_every = self
            .idle_timeout
            .map_or(Duration::ZERO, |d| (d / 10).max(Duration::from_millis(100)));
        let mut last_idle = Instant::now();
        loop {
            if self.stopping() {
                break;
            }
            if connected && self.consumer.is_broken() {
                let again = if C::MARKS_SURVIVE {
                    ""
                } else {
                    " (unacknowledged messages will be redelivered)"
                };
                eprintln!(
                    "{}: connection to the broker lost; reconnecting{again}",
                    self.what()
                );
                self.consumer.disconnect();
                connected = false;
            }
            if !connected {
                match self.consumer.connect(&self.next_offset, &give_up) {
                    Ok(()) => {
                        connected = true;
                        if !C::MARKS_SURVIVE {
                            self.release();
                        }
                        // Quiet time counts from the (re)connection, not across an outage.
                        last_message = Instant::now();
                    }
                    Err(msg) => {
                        self.fail(msg);
                        break;
                    }
                }
            }
            if let Err(msg) = self.consumer.receive(POLL, BATCH_MESSAGES, &mut incoming) {
                self.fail(msg);
                break;
            }
            for d in incoming.drain(..) {
                self.stats.consumed.fetch_add(1, Ordering::Relaxed);
                if self.is_duplicate(&d) {
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    self.attach_duplicate(d.mark);
                } else {
                    self.remember(&d.id);
                    batch.push(d);
                }
            }
            if !batch.is_empty() {
                last_message = Instant::now();
                self.idle.store(false, Ordering::Relaxed);
                let mut mark: Option<C::Mark> = None;
                let mut entries = Vec::with_capacity(batch.len());
                for d in batch.drain(..) {
                    match mark.as_mut() {
                        None => mark = Some(d.mark),
                        Some(m) => C::merge(m, d.mark),
                    }
                    entries.push(Entry::Message(Message {
                        id: d.id,
                        body: d.body,
                    }));
                }
                if !self.feed(entries, mark) {
                    break;
                }
            } else {
                let quiet = last_message.elapsed();
                if self.ctx.stop_when_idle.is_some_and(|d| quiet >= d) {
                    break;
                }
                if self.idle_timeout.is_some_and(|d| quiet >= d)
                    && last_idle.elapsed() >= idle_every
                {
                    last_idle = Instant::now();
                    if !self.idle_advance() {
                        break;
                    }
                }
            }
            if connected {
                self.ack(false);
            }
        }
        // End of input for the workers: they finish once their channels are drained.
        self.senders.clear();
        self.waker.wake_all();
        // Acknowledge as the sinks commit, until the run says the sinks are done.
        while !self.finish.load(Ordering::Relaxed) {
            std::thread::sleep(POLL);
            if connected && !self.consumer.is_broken() {
                self.ack(false);
            }
        }
        if connected && !self.consumer.is_broken() {
            self.ack(true);
        }
        if connected {
            self.consumer.disconnect();
        }
        if let Some(j) = self.journal.as_mut() {
            let _ = j.sync();
        }
    }

    /// Whether a message was read before (by this run or the run it resumes).
    fn is_duplicate(&self, d: &Delivery<C::Mark>) -> bool {
        match (&self.partitions, partition_offset(&d.id)) {
            (Some(_), Some((p, o))) => self.next_offset.get(&p).is_some_and(|&n| o < n),
            _ => d.named && self.seen.contains(&d.id),
        }
    }

    /// Notes a message as read.
    fn remember(&mut self, id: &str) {
        match (&self.partitions, partition_offset(id)) {
            (Some(_), Some((p, o))) => {
                let n = self.next_offset.entry(p).or_insert(0);
                *n = (*n).max(o + 1);
            }
            _ => {
                self.seen.insert(id.to_string());
            }
        }
    }

    /// A new connection: marks of the old one cannot acknowledge anything any more; the broker
    /// redelivers those messages.
    fn release(&mut self) {
        for p in &mut self.pending {
            if p.mark.take().is_some() {
                self.stats.released.fetch_add(p.messages, Ordering::Relaxed);
                p.messages = 0;
            }
        }
    }

    /// Fails the run: the message becomes its error (printed once the workers stopped).
    fn fail(&mut self, msg: String) {
        let mut e = self.ctx.error.lock().expect("error lock is never poisoned");
        e.get_or_insert(msg);
        self.ctx.stop.store(true, Ordering::Relaxed);
    }

    /// Replays the journal of the run being resumed, before any message is consumed.
    fn replay(&mut self) -> std::io::Result<()> {
        let Some(entries) = self.journal.as_mut().map(|j| j.take_replay()) else {
            return Ok(());
        };
        let entries = entries?;
        let mut batch = Vec::new();
        // Replayed messages were acknowledged, or will be delivered again and recognised, or
        // (Kafka) are acknowledged by their offsets once the sinks commit their ticks again.
        let mut mark: Option<C::Mark> = None;
        for e in entries {
            if let Entry::Message(m) = &e {
                self.remember(&m.id.clone());
                self.stats.replayed.fetch_add(1, Ordering::Relaxed);
                if let Some(later) = C::mark_of(&m.id) {
                    match mark.as_mut() {
                        None => mark = Some(later),
                        Some(into) => C::merge(into, later),
                    }
                }
            }
            let idle = matches!(e, Entry::Idle(_));
            batch.push(e);
            if (idle || batch.len() >= BATCH_MESSAGES)
                && !self.feed_inner(std::mem::take(&mut batch), mark.take(), false)
            {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            self.feed_inner(batch, mark, false);
        }
        Ok(())
    }

    fn feed(&mut self, entries: Vec<Entry>, mark: Option<C::Mark>) -> bool {
        self.feed_inner(entries, mark, true)
    }

    /// The source's watermark plus `max_lateness`: its largest event time, or for a partitioned
    /// source the smallest of its partitions' (`None` while a partition has none).
    fn effective_max(&self) -> Option<i64> {
        match &self.partitions {
            None => self.max_seen,
            Some(parts) => parts
                .iter()
                .map(|p| self.partition_max.get(p).copied())
                .min()
                .flatten(),
        }
    }

    /// Parses `entries` into one chunk, journals them, sends the chunk to its worker and
    /// publishes it. `false` if the run is stopping.
    fn feed_inner(&mut self, entries: Vec<Entry>, mark: Option<C::Mark>, journal: bool) -> bool {
        let mut text = Vec::new();
        let mut idle = None;
        let mut messages = 0u64;
        // Partitioned: the line just after each message, with its partition.
        let mut ends: Vec<(u64, i32)> = Vec::new();
        let mut line = self.next_line;
        for e in &entries {
            match e {
                Entry::Message(m) => {
                    messages += 1;
                    text.extend_from_slice(&m.body);
                    if !m.body.ends_with(b"\n") {
                        text.push(b'\n');
                    }
                    if self.partitions.is_some() {
                        line += memchr::memchr_iter(b'\n', &m.body).count() as u64
                            + u64::from(!m.body.ends_with(b"\n"));
                        let p = partition_offset(&m.id).map_or(0, |(p, _)| p);
                        ends.push((line, p));
                    }
                }
                Entry::Idle(t) => idle = Some(*t),
            }
        }
        if journal {
            if let Some(j) = self.journal.as_mut() {
                if let Err(e) = j.append(&entries) {
                    self.fail(format!("{}: cannot write its journal: {e}", self.what()));
                    return false;
                }
            }
        }
        let index = self.next_chunk;
        self.next_chunk += 1;
        let chunk = Chunk {
            index,
            start: 0,
            end: text.len(),
            first_line: self.next_line,
            first_position: self.next_position,
        };
        let mut batch = ParsedBatch::new(self.schema.len());
        if !text.is_empty() {
            match &self.layout {
                Layout::Csv(l) => {
                    csv_parse::parse_chunk(&text, &chunk, l, &self.schema, &mut batch)
                }
                Layout::Json(l) => {
                    jsonl_parse::parse_chunk(&text, &chunk, l, &self.schema, &mut batch)
                }
            }
        }
        self.next_line += memchr::memchr_iter(b'\n', &text).count() as u64;
        self.next_position += batch.records() as u64;
        if let (Some(_), Some(et)) = (&self.partitions, self.event_time) {
            self.late_by_partition(&mut batch, &ends, et);
        }
        if let (Some(parts), Some(t)) = (&self.partitions, idle) {
            for p in parts {
                let m = self.partition_max.entry(*p).or_insert(t);
                *m = (*m).max(t);
            }
        }
        if idle.is_some() {
            self.idled = true;
        }
        let rows_max = self.event_time.and_then(|et| {
            batch
                .rows()
                .filter_map(|r| match r[et] {
                    Value::Time(t) if crate::record::time::is_event_time(t) => Some(t),
                    _ => None,
                })
                .max()
        });
        let max = match (rows_max, idle) {
            (m, Some(t)) => Some(m.map_or(t, |m| m.max(t))),
            (m, None) => m,
        };
        if let Some(m) = max {
            self.max_seen = Some(self.max_seen.map_or(m, |s| s.max(m)));
        }
        // What the clock publishes: the chunk's largest event time, or for a partitioned
        // source the smallest partition maximum (the clock keeps the running maximum).
        let published = match self.partitions {
            None => max,
            Some(_) if self.event_time.is_some() || idle.is_some() => self.effective_max(),
            Some(_) => None,
        };
        let tick = match self.event_time {
            Some(_) => rows_max.map_or(0, |m| self.ctx.time.tick_of(m.max(0) as u64)),
            None => self.ctx.time.tick_of(self.next_position.saturating_sub(1)),
        };
        let parsed = ParsedChunk {
            index,
            batch,
            end_position: self.next_position,
            bytes: text.len() as u64,
        };
        let worker = (index % self.senders.len() as u64) as usize;
        let mut parsed = Some(parsed);
        while let Some(p) = parsed.take() {
            match self.senders[worker].send_timeout(p, POLL) {
                Ok(()) => {}
                Err(SendTimeoutError::Timeout(p)) => {
                    if self.stopping() {
                        return false;
                    }
                    parsed = Some(p);
                }
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
        match (idle, published) {
            (Some(_), Some(m)) => self.clock.publish_idle(index, m, self.next_position),
            _ => self
                .clock
                .publish_live(index, published, self.next_position),
        }
        self.waker.wake_all();
        if mark.is_some() || (journal && messages > 0) {
            self.pending.push_back(Pending {
                tick,
                mark,
                messages,
            });
        }
        true
    }

    /// Partitioned, with event time: moves the records behind their partition's watermark to
    /// the batch's dead records (reason `late`), in partition order.
    fn late_by_partition(&mut self, batch: &mut ParsedBatch, ends: &[(u64, i32)], et: usize) {
        let arity = batch.arity;
        let mut kept = 0;
        for i in 0..batch.len() {
            let line = batch.lines[i];
            let part = ends
                .get(ends.partition_point(|(end, _)| *end <= line))
                .map_or(0, |e| e.1);
            let t = match batch.values[i * arity + et] {
                Value::Time(t) if crate::record::time::is_event_time(t) => Some(t),
                _ => None,
            };
            if let Some(t) = t {
                let max = self.partition_max.get(&part).copied();
                if let Some(max) = max.filter(|m| t < m - self.lateness as i64) {
                    let watermark = max - self.lateness as i64;
                    let mut detail = format!(
                        "event time {} is behind the watermark {} of partition {part} (max event time seen there {} minus max_lateness {} ms)",
                        crate::record::time::iso8601(t),
                        crate::record::time::iso8601(watermark),
                        crate::record::time::iso8601(max),
                        self.lateness
                    );
                    if self.idled {
                        detail.push_str(
                            "; the source was idle for its idle_timeout earlier, which advanced its watermark",
                        );
                    }
                    batch.dead.push(DeadRecord {
                        line,
                        position: batch.positions[i],
                        raw: super::parsed::row_json(&self.schema, batch.row(i)),
                        reason: DeadReason::Late,
                        detail,
                    });
                    continue;
                }
                self.partition_max.insert(part, max.map_or(t, |m| m.max(t)));
            }
            if kept != i {
                for f in 0..arity {
                    batch.values.swap(kept * arity + f, i * arity + f);
                }
                batch.lines[kept] = batch.lines[i];
                batch.positions[kept] = batch.positions[i];
            }
            kept += 1;
        }
        batch.values.truncate(kept * arity);
        batch.lines.truncate(kept);
        batch.positions.truncate(kept);
    }

    /// A message this run already read, delivered again: acknowledge it with the latest chunk.
    fn attach_duplicate(&mut self, mark: C::Mark) {
        match self.pending.back_mut() {
            Some(p) => {
                match p.mark.as_mut() {
                    Some(m) => C::merge(m, mark),
                    None => p.mark = Some(mark),
                }
                p.messages += 1;
            }
            None => self.pending.push_back(Pending {
                tick: 0,
                mark: Some(mark),
                messages: 1,
            }),
        }
    }

    /// The source got no message for `idle_timeout`: advance its watermark. `false` if the run
    /// is stopping.
    fn idle_advance(&mut self) -> bool {
        let Some(max) = self.max_seen else {
            return true; // nothing seen: no watermark to advance
        };
        let own = self
            .effective_max()
            .map_or(i64::MIN, |m| m - self.lateness as i64);
        let tick_len = self.ctx.time.tick_len() as i64;
        let alone = (max.div_euclid(tick_len) + 1) * tick_len;
        self.idle.store(true, Ordering::Relaxed);
        let target = match self.ctx.clocks.others(self.slot) {
            None => alone,
            Some(None) => return true,
            Some(Some(w)) => w,
        };
        if target <= own {
            return true;
        }
        // As a largest event time: the watermark is that minus max_lateness.
        let new_max = target + self.lateness as i64;
        self.feed(vec![Entry::Idle(new_max)], None)
    }

    /// Acknowledges the chunks whose records' ticks every committing sink has committed (all,
    /// with `all`: the sinks are done). Journal first: an acknowledged message must be in it.
    fn ack(&mut self, all: bool) {
        let bound: Option<Option<Tick>> = match &self.ctx.commits {
            // No commits: nothing to wait for, acknowledge what the workers have.
            None => Some(None),
            Some((log, sinks)) => {
                let mut b: Option<Option<Tick>> = Some(None);
                for s in sinks {
                    match log.latest(s) {
                        None => b = None,
                        Some(c) => {
                            if let Some(cur) = b {
                                b = Some(match (cur, c.bound) {
                                    (None, x) | (x, None) => x,
                                    (Some(a), Some(x)) => Some(a.min(x)),
                                });
                            }
                        }
                    }
                }
                b
            }
        };
        // With every prefetched message unacknowledged the broker sends no more, and the
        // watermark could wait for messages that never come: the journal holds them durably,
        // so acknowledge what it holds.
        let stalled = self.journal.is_some() && self.stats.in_flight() >= self.consumer.window();
        let failing = self.ctx.stop.load(Ordering::Relaxed);
        let mut last: Option<C::Mark> = None;
        let mut count = 0;
        while let Some(p) = self.pending.front() {
            let ok = !failing
                && (stalled
                    || (all && self.ctx.interrupt.bound().is_none())
                    || match bound {
                        None => false,
                        Some(None) => true,
                        Some(Some(b)) => p.tick < b,
                    });
            if !ok {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            count += p.messages;
            if let Some(m) = p.mark {
                match last.as_mut() {
                    None => last = Some(m),
                    Some(l) => C::merge(l, m),
                }
            }
        }
        if count == 0 {
            return;
        }
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.sync() {
                self.fail(format!("{}: cannot sync its journal: {e}", self.what()));
                return;
            }
        }
        let Some(mark) = last else {
            return;
        };
        if self.consumer.ack(mark) {
            self.stats.acked.fetch_add(count, Ordering::Relaxed);
        }
    }
}

/// The journal of a live source: every message (and idle advance) in the order the workers got
/// them, one JSON object per line, so a resumed run can replay them.
struct Journal {
    file: std::io::BufWriter<std::fs::File>,
    replay: Option<std::io::Result<Vec<Entry>>>,
}

impl Journal {
    /// Opens the journal; resuming, reads its entries first (a torn last line is dropped),
    /// otherwise starts it empty.
    fn open(path: &std::path::Path, resume: bool) -> std::io::Result<Journal> {
        let mut replay = None;
        let mut valid = 0u64;
        if resume {
            match std::fs::File::open(path) {
                Ok(f) => {
                    let mut entries = Vec::new();
                    let mut reader = std::io::BufReader::new(f);
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        let n = reader.read_until(b'\n', &mut line)?;
                        if n == 0 || !line.ends_with(b"\n") {
                            break;
                        }
                        match parse_entry(&line) {
                            Some(e) => entries.push(e),
                            None => {
                                return Err(std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    format!("`{}` has a damaged line", path.display()),
                                ))
                            }
                        }
                        valid += n as u64;
                    }
                    replay = Some(Ok(entries));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        file.set_len(valid)?;
        use std::io::Seek;
        let mut file = file;
        file.seek(std::io::SeekFrom::Start(valid))?;
        Ok(Journal {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            replay,
        })
    }

    fn take_replay(&mut self) -> std::io::Result<Vec<Entry>> {
        self.replay.take().unwrap_or_else(|| Ok(Vec::new()))
    }

    fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let mut line = String::new();
        for e in entries {
            line.clear();
            match e {
                Entry::Message(m) => {
                    line.push_str("{\"id\":");
                    crate::record::write_json_string(&m.id, &mut line);
                    match std::str::from_utf8(&m.body) {
                        Ok(text) => {
                            line.push_str(",\"body\":");
                            crate::record::write_json_string(text, &mut line);
                        }
                        Err(_) => {
                            line.push_str(",\"hex\":\"");
                            for b in &m.body {
                                line.push_str(&format!("{b:02x}"));
                            }
                            line.push('"');
                        }
                    }
                    line.push_str("}\n");
                }
                Entry::Idle(t) => line.push_str(&format!("{{\"idle\":{t}}}\n")),
            }
            self.file.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

fn parse_entry(line: &[u8]) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if let Some(t) = v.get("idle") {
        return Some(Entry::Idle(t.as_i64()?));
    }
    let id = v.get("id")?.as_str()?.to_string();
    let body = match (v.get("body"), v.get("hex")) {
        (Some(b), _) => b.as_str()?.as_bytes().to_vec(),
        (None, Some(h)) => {
            let h = h.as_str()?.as_bytes();
            h.chunks(2)
                .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
                .collect::<Option<Vec<u8>>>()?
        }
        _ => return None,
    };
    Some(Entry::Message(Message { id, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut j = Journal::open(&path, false).unwrap();
        j.append(&[
            Entry::Message(Message {
                id: "a".into(),
                body: b"{\"x\":1}\n".to_vec(),
            }),
            Entry::Idle(42),
            Entry::Message(Message {
                id: "b".into(),
                body: vec![0xff, 0x00],
            }),
        ])
        .unwrap();
        j.sync().unwrap();
        drop(j);
        // A torn last line is dropped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"c\",")
            .unwrap();
        let mut j = Journal::open(&path, true).unwrap();
        let e = j.take_replay().unwrap();
        assert_eq!(e.len(), 3);
        assert!(matches!(&e[0], Entry::Message(m) if m.id == "a" && m.body == b"{\"x\":1}\n"));
        assert!(matches!(&e[1], Entry::Idle(42)));
        assert!(matches!(&e[2], Entry::Message(m) if m.body == [0xff, 0x00]));
    }
}
