//! The reading side of a RabbitMQ source: one reader thread that consumes a queue, parses
//! messages with the file parsers, and feeds the workers in queue order.
//!
//! - **Chunks in queue order.** The reader takes the messages that arrived (at most
//!   [`BATCH_MESSAGES`]) as one chunk, parses it (`csv_parse`/`jsonl_parse`, so typing and dead
//!   letters are those of files), sends chunk `k` to worker `k % workers` and only then publishes
//!   it to the source's [`ChunkClock`]. Lateness is therefore decided in queue order, whatever
//!   the number of workers, and a worker that sees chunk `k` published and its channel empty
//!   knows it will get nothing before `k`: it can follow the watermark without records of its own.
//! - **Back-pressure.** The broker sends at most `prefetch` unacknowledged messages, and the
//!   channel to each worker holds 4 chunks; a slow pipeline stops the consumer, it never buffers
//!   without limit.
//! - **Journal and acknowledgements.** With commits on, every message is appended to
//!   `.eventflow/journal-SOURCE.jsonl` before it is handed to the workers. A message is
//!   acknowledged once the journal is synced past it and every committing sink has committed
//!   every tick up to the message's own tick (see [`Acks`]). A resumed run replays the journal
//!   first (recomputing the state the crashed run had), then consumes again; redelivered
//!   messages already in the journal are recognised by message id and only acknowledged.
//! - **Idle sources.** With `idle_timeout`, a source that got no message for that long publishes
//!   an *idle advance*: an empty chunk that moves its largest event time so that its watermark
//!   reaches the smallest watermark of the other, non-idle sources (or, alone, the end of the
//!   tick holding its own largest event time). The advance is journaled like a message, so a
//!   replay decides lateness the same way.
//! - **Broker trouble.** A lost connection is retried with doubling waits
//!   ([`super::amqp::CONNECT_ATTEMPTS`]); past that the run fails with a message naming the
//!   broker. Messages not yet acknowledged are redelivered by the broker on the new connection.

use super::amqp::{block, resolve_url, Link, Role};
use super::commit_log::CommitLog;
use super::csv_parse::{self, CsvLayout};
use super::file_source::{ChunkClock, ParsedChunk, Wake};
use super::jsonl_parse::{self, JsonLayout};
use super::parsed::ParsedBatch;
use super::split::Chunk;
use super::{Interrupt, SourceConfig, SourceFormat};
use crate::record::time::TimeDomain;
use crate::record::{Tick, Value};
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use lapin::message::DeliveryResult;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use std::collections::{HashSet, VecDeque};
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
const POLL: Duration = Duration::from_millis(20);

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

/// A running RabbitMQ source reader.
pub struct AmqpSourceReader {
    /// One receiver per local worker.
    pub receivers: Vec<Mutex<Option<Receiver<ParsedChunk>>>>,
    /// Event-time prefix maxima by chunk.
    pub clock: Arc<ChunkClock>,
    /// Message counts.
    pub stats: Arc<LiveStats>,
    finish: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AmqpSourceReader {
    /// Starts the reader thread for `workers` local workers.
    pub fn start(
        cfg: &SourceConfig,
        needed: &[bool],
        workers: usize,
        waker: Arc<dyn Wake>,
        ctx: LiveContext,
    ) -> std::io::Result<AmqpSourceReader> {
        let live = cfg
            .live
            .clone()
            .expect("AmqpSourceReader is started for live sources");
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
        let reader = Reader {
            name: cfg.name.clone(),
            url: resolve_url(live.url.as_deref()),
            queue: live.queue.clone(),
            prefetch: live.prefetch,
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
            pending: VecDeque::new(),
            generation: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("rabbitmq:{}", cfg.name))
            .spawn(move || reader.run())?;
        Ok(AmqpSourceReader {
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
struct Pending {
    /// The largest tick of the chunk's records: once every committing sink is past it, the
    /// records' own ticks are committed.
    tick: Tick,
    /// The chunk's last delivery tag on the channel of generation `.0`.
    tag: Option<(u64, u64)>,
    /// Messages it covers (duplicates attached to it included).
    messages: u64,
}

struct Reader {
    name: String,
    url: String,
    queue: String,
    prefetch: u16,
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
    max_seen: Option<i64>,
    /// Ids of every message read (journal and broker), to drop redelivered duplicates.
    seen: HashSet<String>,
    pending: VecDeque<Pending>,
    /// Increases with every new connection: delivery tags belong to one channel.
    generation: u64,
}

/// A connection with its consumer's deliveries.
struct Consuming {
    link: Link,
    deliveries: Receiver<DeliveryResult>,
    broken: Arc<AtomicBool>,
}

impl Reader {
    fn what(&self) -> String {
        format!("rabbitmq source `{}`", self.name)
    }

    fn run(mut self) {
        if let Err(e) = self.replay() {
            self.fail(format!("{}: cannot replay its journal: {e}", self.what()));
        }
        let mut conn: Option<Consuming> = None;
        let mut batch: Vec<(Message, u64)> = Vec::new();
        let mut last_message = Instant::now();
        // Idle advances follow the other sources at most this often.
        let idle_every = self
            .idle_timeout
            .map_or(Duration::ZERO, |d| (d / 10).max(Duration::from_millis(100)));
        let mut last_idle = Instant::now();
        loop {
            if self.ctx.interrupt.signal().is_some() || self.ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            if conn
                .as_ref()
                .is_some_and(|c| c.broken.load(Ordering::Relaxed))
            {
                eprintln!(
                    "{}: connection to the broker lost; reconnecting (unacknowledged messages will be redelivered)",
                    self.what()
                );
                if let Some(c) = conn.take() {
                    c.link.close();
                }
            }
            if conn.is_none() {
                match self.connect() {
                    Ok(c) => {
                        conn = Some(c);
                        // Quiet time counts from the (re)connection, not across an outage.
                        last_message = Instant::now();
                    }
                    Err(msg) => {
                        self.fail(msg);
                        break;
                    }
                }
            }
            let c = conn.as_ref().expect("connected above");
            // Wait for a first message, then take what else has arrived.
            match c.deliveries.recv_timeout(POLL) {
                Ok(d) => {
                    let mut next = Some(d);
                    while let Some(d) = next.take() {
                        match d {
                            Ok(Some(d)) => {
                                self.stats.consumed.fetch_add(1, Ordering::Relaxed);
                                let id = message_id(&d.properties, &d.data);
                                // A message id names one message: seen again, it is a
                                // redelivery or a publisher's retry. Without an id, only a
                                // redelivered body is compared (equal records may be distinct).
                                let named = d.properties.message_id().is_some();
                                if (d.redelivered || named) && self.seen.contains(&id) {
                                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                                    self.attach_duplicate(d.delivery_tag);
                                } else {
                                    batch.push((Message { id, body: d.data }, d.delivery_tag));
                                }
                            }
                            Ok(None) | Err(_) => c.broken.store(true, Ordering::Relaxed),
                        }
                        if batch.len() < BATCH_MESSAGES {
                            next = c.deliveries.try_recv().ok();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => c.broken.store(true, Ordering::Relaxed),
            }
            if !batch.is_empty() {
                last_message = Instant::now();
                self.idle.store(false, Ordering::Relaxed);
                let tag = batch.last().map(|b| (self.generation, b.1));
                let messages: Vec<Message> = batch.drain(..).map(|(m, _)| m).collect();
                for m in &messages {
                    self.seen.insert(m.id.clone());
                }
                let entries: Vec<Entry> = messages.into_iter().map(Entry::Message).collect();
                if !self.feed(entries, tag) {
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
            self.ack(conn.as_ref(), false);
        }
        // End of input for the workers: they finish once their channels are drained.
        self.senders.clear();
        self.waker.wake_all();
        // Acknowledge as the sinks commit, until the run says the sinks are done.
        while !self.finish.load(Ordering::Relaxed) {
            std::thread::sleep(POLL);
            if conn
                .as_ref()
                .is_some_and(|c| !c.broken.load(Ordering::Relaxed))
            {
                self.ack(conn.as_ref(), false);
            }
        }
        if conn
            .as_ref()
            .is_some_and(|c| !c.broken.load(Ordering::Relaxed))
        {
            self.ack(conn.as_ref(), true);
        }
        if let Some(c) = conn {
            c.link.close();
        }
        if let Some(j) = self.journal.as_mut() {
            let _ = j.sync();
        }
    }

    /// Fails the run: the message becomes its error (printed once the workers stopped).
    fn fail(&mut self, msg: String) {
        let mut e = self.ctx.error.lock().expect("error lock is never poisoned");
        e.get_or_insert(msg);
        self.ctx.stop.store(true, Ordering::Relaxed);
    }

    fn connect(&mut self) -> Result<Consuming, String> {
        let (interrupt, stop) = (self.ctx.interrupt.clone(), self.ctx.stop.clone());
        let give_up = move || interrupt.signal().is_some() || stop.load(Ordering::Relaxed);
        let link = Link::open_with_retry(
            &self.url,
            &self.queue,
            Role::Consumer {
                prefetch: self.prefetch,
            },
            &self.what(),
            &give_up,
        )?;
        self.generation += 1;
        // Tags of the old channel cannot be acknowledged any more; the broker redelivers them.
        for p in &mut self.pending {
            if p.tag.take().is_some() {
                self.stats.released.fetch_add(p.messages, Ordering::Relaxed);
                p.messages = 0;
            }
        }
        let (tx, rx) = unbounded();
        let broken = Arc::new(AtomicBool::new(false));
        {
            let broken = broken.clone();
            link.connection
                .on_error(move |_| broken.store(true, Ordering::Relaxed));
        }
        let consumer = block(link.channel.basic_consume(
            &self.queue,
            &format!("eventflow-{}", self.name),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .map_err(|e| {
            format!(
                "{}: cannot consume queue `{}`: {e}",
                self.what(),
                self.queue
            )
        })?;
        // A thread pulls the consumer's stream in order (lapin runs a consumer delegate as one
        // task per delivery, which may reorder them) and ends when the consumer does.
        std::thread::Builder::new()
            .name(format!("rabbitmq-recv:{}", self.name))
            .spawn(move || {
                use futures_lite::StreamExt;
                let mut consumer = consumer;
                loop {
                    let d: DeliveryResult = match block(consumer.next()) {
                        Some(Ok(d)) => Ok(Some(d)),
                        Some(Err(e)) => Err(e),
                        None => Ok(None),
                    };
                    let end = !matches!(d, Ok(Some(_)));
                    if tx.send(d).is_err() || end {
                        return;
                    }
                }
            })
            .map_err(|e| format!("{}: cannot start a thread: {e}", self.what()))?;
        Ok(Consuming {
            link,
            deliveries: rx,
            broken,
        })
    }

    /// Replays the journal of the run being resumed, before any message is consumed.
    fn replay(&mut self) -> std::io::Result<()> {
        let Some(entries) = self.journal.as_mut().map(|j| j.take_replay()) else {
            return Ok(());
        };
        let entries = entries?;
        let mut batch = Vec::new();
        for e in entries {
            if let Entry::Message(m) = &e {
                self.seen.insert(m.id.clone());
                self.stats.replayed.fetch_add(1, Ordering::Relaxed);
            }
            let idle = matches!(e, Entry::Idle(_));
            batch.push(e);
            if (idle || batch.len() >= BATCH_MESSAGES)
                && !self.feed_replayed(std::mem::take(&mut batch))
            {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            self.feed_replayed(batch);
        }
        Ok(())
    }

    fn feed_replayed(&mut self, entries: Vec<Entry>) -> bool {
        // Replayed messages were acknowledged, or will be redelivered and recognised.
        self.feed_inner(entries, None, false)
    }

    fn feed(&mut self, entries: Vec<Entry>, tag: Option<(u64, u64)>) -> bool {
        self.feed_inner(entries, tag, true)
    }

    /// Parses `entries` into one chunk, journals them, sends the chunk to its worker and
    /// publishes it. `false` if the run is stopping.
    fn feed_inner(&mut self, entries: Vec<Entry>, tag: Option<(u64, u64)>, journal: bool) -> bool {
        let mut text = Vec::new();
        let mut idle = None;
        let mut messages = 0u64;
        for e in &entries {
            match e {
                Entry::Message(m) => {
                    messages += 1;
                    text.extend_from_slice(&m.body);
                    if !m.body.ends_with(b"\n") {
                        text.push(b'\n');
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
        let max = self.event_time.and_then(|et| {
            batch
                .rows()
                .filter_map(|r| match r[et] {
                    Value::Time(t) if crate::record::time::is_event_time(t) => Some(t),
                    _ => None,
                })
                .max()
        });
        let max = match (max, idle) {
            (m, Some(t)) => Some(m.map_or(t, |m| m.max(t))),
            (m, None) => m,
        };
        if let Some(m) = max {
            self.max_seen = Some(self.max_seen.map_or(m, |s| s.max(m)));
        }
        let tick = match self.event_time {
            Some(_) => max.map_or(0, |m| self.ctx.time.tick_of(m.max(0) as u64)),
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
                    if self.ctx.interrupt.signal().is_some()
                        || self.ctx.stop.load(Ordering::Relaxed)
                    {
                        return false;
                    }
                    parsed = Some(p);
                }
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
        match idle {
            Some(_) => self
                .clock
                .publish_idle(index, max.unwrap_or(0), self.next_position),
            None => self.clock.publish_live(index, max, self.next_position),
        }
        self.waker.wake_all();
        if tag.is_some() || (journal && messages > 0) {
            self.pending.push_back(Pending {
                tick,
                tag,
                messages,
            });
        }
        true
    }

    /// A redelivered message this run already read: acknowledge it with the latest chunk.
    fn attach_duplicate(&mut self, tag: u64) {
        let t = Some((self.generation, tag));
        match self.pending.back_mut() {
            Some(p) => {
                p.tag = t;
                p.messages += 1;
            }
            None => self.pending.push_back(Pending {
                tick: 0,
                tag: t,
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
        let own = max - self.lateness as i64;
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
    fn ack(&mut self, conn: Option<&Consuming>, all: bool) {
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
        let stalled = self.journal.is_some() && self.stats.in_flight() >= self.prefetch as u64;
        let failing = self.ctx.stop.load(Ordering::Relaxed);
        let mut last = None;
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
            if let Some(t) = p.tag {
                last = Some(t);
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
        let Some((generation, tag)) = last else {
            return;
        };
        let Some(c) = conn.filter(|_| generation == self.generation) else {
            return; // an old channel: the broker redelivers, and the duplicates are recognised
        };
        match block(
            c.link
                .channel
                .basic_ack(tag, BasicAckOptions { multiple: true }),
        ) {
            Ok(()) => {
                self.stats.acked.fetch_add(count, Ordering::Relaxed);
            }
            Err(_) => c.broken.store(true, Ordering::Relaxed),
        }
    }
}

/// A message's identity for recognising redeliveries: its `message_id` property, or else a
/// hash of its body.
fn message_id(props: &lapin::BasicProperties, body: &[u8]) -> String {
    match props.message_id() {
        Some(id) => id.to_string(),
        None => format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(body)),
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
