//! The `nexmark` source: the Nexmark benchmark's people, auctions and bids, generated in process
//! by the [`nexmark`] crate instead of read from a file.
//!
//! One Nexmark run is one sequence of `events` events (1 person : 3 auctions : 46 bids, the
//! standard proportions). A source picks one kind out of it (`stream = "person" | "auction" |
//! "bid"`), so several sources with the same settings see the same universe: the auctions'
//! sellers are the people of the person stream, the bids' auctions are the auction stream's ids.
//!
//! Event time is the generator's `date_time`: `base_time` plus the event's number divided by
//! `events_per_second` (the generator's rate; Flink's Nexmark runner uses 10,000,000 events per
//! second of event time, so 100M events span 10 s). Times never decrease along the sequence.
//!
//! How the work is split: the source's own sequence (only its kind, numbered 0, 1, …) is cut into
//! chunks of [`CHUNK_EVENTS`]; chunk `k` is made by generator thread `k % workers` (the crate's
//! generator started at offset `k * CHUNK_EVENTS` of its kind) and handed to worker
//! `k % workers`, exactly as a file source hands out parsed chunks. Each chunk's largest event
//! time goes to the source's [`ChunkClock`], so lateness, watermarks and ticks are decided in
//! sequence order, whatever the number of workers, and outputs are byte-identical for any worker
//! count. With `pregenerate = true` every chunk is generated (in parallel) before the run's clock
//! starts, so a benchmark measures the dataflow, not the generator.

use super::file_source::{ChunkClock, FileSourceReader, ParsedChunk, Wake};
use super::parsed::ParsedBatch;
use super::{OnError, SourceConfig, SourceFormat};
use crate::diag::Diagnostic;
use crate::record::{Schema, Type, Value};
use crate::spec::Params;
use compact_str::CompactString;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use nexmark::EventGenerator;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events per chunk: enough to amortise per-chunk work, few enough to spread small runs over
/// every worker.
pub const CHUNK_EVENTS: u64 = 8192;

/// Generated chunks in flight per worker (when not pregenerated).
const CHANNEL_CHUNKS: usize = 4;

/// Default events per second of event time: the density of Flink's Nexmark runner.
pub const DEFAULT_EVENTS_PER_SECOND: u64 = 10_000_000;

/// Default number of events (of all kinds) in the sequence.
pub const DEFAULT_EVENTS: u64 = 1_000_000;

/// Default base time: 2024-01-01T00:00:00Z, fixed so that runs repeat exactly.
pub const DEFAULT_BASE_TIME: i64 = 1_704_067_200_000;

/// Which kind of Nexmark event a source emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NexmarkStream {
    /// New people (sellers and bidders).
    Person,
    /// New auctions.
    Auction,
    /// Bids on auctions.
    Bid,
}

impl NexmarkStream {
    /// The name used in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            NexmarkStream::Person => "person",
            NexmarkStream::Auction => "auction",
            NexmarkStream::Bid => "bid",
        }
    }

    fn event_type(self) -> EventType {
        match self {
            NexmarkStream::Person => EventType::Person,
            NexmarkStream::Auction => EventType::Auction,
            NexmarkStream::Bid => EventType::Bid,
        }
    }

    /// The rows this stream emits (Flink's Nexmark column names in snake case).
    pub fn schema(self) -> Schema {
        use Type::*;
        match self {
            NexmarkStream::Person => Schema::new([
                ("id", Int),
                ("name", String),
                ("email_address", String),
                ("credit_card", String),
                ("city", String),
                ("state", String),
                ("date_time", Timestamp),
                ("extra", String),
            ]),
            NexmarkStream::Auction => Schema::new([
                ("id", Int),
                ("item_name", String),
                ("description", String),
                ("initial_bid", Int),
                ("reserve", Int),
                ("date_time", Timestamp),
                ("expires", Timestamp),
                ("seller", Int),
                ("category", Int),
                ("extra", String),
            ]),
            NexmarkStream::Bid => Schema::new([
                ("auction", Int),
                ("bidder", Int),
                ("price", Int),
                ("channel", String),
                ("url", String),
                ("date_time", Timestamp),
                ("extra", String),
            ]),
        }
    }

    /// How many events of this kind are among the first `events` of the sequence.
    pub fn count_in(self, events: u64) -> u64 {
        // Per 50 events: 1 person, then 3 auctions, then 46 bids.
        let (full, rem) = (events / 50, events % 50);
        match self {
            NexmarkStream::Person => full + rem.min(1),
            NexmarkStream::Auction => full * 3 + rem.saturating_sub(1).min(3),
            NexmarkStream::Bid => full * 46 + rem.saturating_sub(4),
        }
    }
}

/// A `nexmark` source's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexmarkSettings {
    /// Which kind of event the source emits.
    pub stream: NexmarkStream,
    /// Events of all kinds in the sequence (the source emits its kind's share).
    pub events: u64,
    /// Events per second of event time.
    pub events_per_second: u64,
    /// Event time of the first event, in epoch milliseconds.
    pub base_time: i64,
    /// Generate every event before the run's clock starts.
    pub pregenerate: bool,
}

impl NexmarkSettings {
    /// The generator configuration: the crate's defaults with a fixed base time and a constant
    /// rate.
    pub fn config(&self) -> NexmarkConfig {
        NexmarkConfig {
            base_time: self.base_time as u64,
            first_rate: self.events_per_second as usize,
            next_rate: self.events_per_second as usize,
            ..NexmarkConfig::default()
        }
    }

    /// A generator of this stream's events, from the first one.
    pub fn generator(&self) -> EventGenerator {
        EventGenerator::new(self.config()).with_type_filter(self.stream.event_type())
    }

    /// How many rows the source emits.
    pub fn rows(&self) -> u64 {
        self.stream.count_in(self.events)
    }
}

/// Reads a `nexmark` source's settings. The schema is fixed by `stream`; event time is
/// `date_time`.
pub fn configure(name: &str, params: &mut Params<'_>) -> Option<SourceConfig> {
    let stream = params
        .choice("stream", &["person", "auction", "bid"])
        .map(|c| match c.value {
            "person" => NexmarkStream::Person,
            "auction" => NexmarkStream::Auction,
            _ => NexmarkStream::Bid,
        });
    if params.raw("stream").is_none() {
        params.missing("stream", "\"bid\"");
    }
    let events = params.u64("events").map(|e| e.value);
    let eps = params.u64("events_per_second");
    let base_time = params.str("base_time");
    let pregenerate = params.bool("pregenerate").map(|b| b.value);
    let lateness = params.duration_ms("max_lateness");
    if let Some(e) = &eps {
        if e.value == 0 || e.value > 1_000_000_000 {
            params.error(
                Diagnostic::error(
                    "E0105",
                    "`events_per_second` must be from 1 to 1,000,000,000",
                )
                .at(e.span.clone(), "out of range"),
            );
        }
    }
    let base = match &base_time {
        None => Some(DEFAULT_BASE_TIME),
        Some(b) => match crate::record::time::parse_timestamp(&b.value) {
            Some(t) if crate::record::time::is_event_time(t) => Some(t),
            _ => {
                params.error(
                    Diagnostic::error("E0105", format!("invalid `base_time` `{}`", b.value))
                        .at(b.span.clone(), "not a timestamp")
                        .help("write an ISO-8601 UTC time, e.g. \"2024-01-01T00:00:00Z\""),
                );
                None
            }
        },
    };
    let stream = stream?;
    let settings = NexmarkSettings {
        stream,
        events: events.unwrap_or(DEFAULT_EVENTS),
        events_per_second: eps
            .map(|e| e.value)
            .unwrap_or(DEFAULT_EVENTS_PER_SECOND)
            .clamp(1, 1_000_000_000),
        base_time: base?,
        pregenerate: pregenerate.unwrap_or(false),
    };
    let schema = stream.schema();
    let event_time = schema.index_of("date_time");
    Some(SourceConfig {
        name: name.to_string(),
        format: SourceFormat::Nexmark(settings),
        path: PathBuf::new(),
        path_span: params.owner_span(),
        schema,
        event_time,
        max_lateness_ms: lateness.map(|l| l.value).unwrap_or(0),
        on_error: OnError::DeadLetter,
        max_error_rate: None,
        change: None,
        live: None,
    })
}

/// Appends `event`'s fields to `batch`, filling only the `needed` ones (the rest stay NULL).
pub fn push_event(event: Event, needed: &[bool], batch: &mut ParsedBatch) {
    let base = batch.begin_row();
    let slots = &mut batch.values[base..];
    let mut put = |i: usize, v: &mut dyn FnMut() -> Value| {
        if needed.get(i).copied().unwrap_or(true) {
            slots[i] = v();
        }
    };
    let int = |x: usize| Value::Int(x as i64);
    let time = |x: u64| Value::Time(x as i64);
    let text = |s: String| Value::Str(CompactString::from(s));
    match event {
        Event::Person(mut p) => {
            put(0, &mut || int(p.id));
            put(1, &mut || text(std::mem::take(&mut p.name)));
            put(2, &mut || text(std::mem::take(&mut p.email_address)));
            put(3, &mut || text(std::mem::take(&mut p.credit_card)));
            put(4, &mut || text(std::mem::take(&mut p.city)));
            put(5, &mut || text(std::mem::take(&mut p.state)));
            put(6, &mut || time(p.date_time));
            put(7, &mut || text(std::mem::take(&mut p.extra)));
        }
        Event::Auction(mut a) => {
            put(0, &mut || int(a.id));
            put(1, &mut || text(std::mem::take(&mut a.item_name)));
            put(2, &mut || text(std::mem::take(&mut a.description)));
            put(3, &mut || int(a.initial_bid));
            put(4, &mut || int(a.reserve));
            put(5, &mut || time(a.date_time));
            put(6, &mut || time(a.expires));
            put(7, &mut || int(a.seller));
            put(8, &mut || int(a.category));
            put(9, &mut || text(std::mem::take(&mut a.extra)));
        }
        Event::Bid(mut b) => {
            put(0, &mut || int(b.auction));
            put(1, &mut || int(b.bidder));
            put(2, &mut || int(b.price));
            put(3, &mut || text(std::mem::take(&mut b.channel)));
            put(4, &mut || text(std::mem::take(&mut b.url)));
            put(5, &mut || time(b.date_time));
            put(6, &mut || text(std::mem::take(&mut b.extra)));
        }
    }
}

/// Generates chunk `index` of the source's sequence.
fn make_chunk(
    gen: &EventGenerator,
    settings: &NexmarkSettings,
    needed: &[bool],
    arity: usize,
    index: u64,
) -> (ParsedChunk, Option<i64>) {
    let total = settings.rows();
    let start = index * CHUNK_EVENTS;
    let end = (start + CHUNK_EVENTS).min(total);
    let mut batch = ParsedBatch::new(arity);
    batch.values.reserve((end - start) as usize * arity);
    let mut max = None;
    for (pos, event) in (start..end).zip(gen.clone().with_offset(start)) {
        let t = event.timestamp() as i64;
        max = Some(max.map_or(t, |m: i64| m.max(t)));
        push_event(event, needed, &mut batch);
        batch.commit_row(pos + 1, pos);
    }
    let chunk = ParsedChunk {
        index,
        batch,
        end_position: end,
        bytes: end - start,
    };
    (chunk, max)
}

/// Starts generating a `nexmark` source for `workers` local workers. With `pregenerate`, returns
/// only once every chunk is generated; [`FileSourceReader::setup`] says how long that took.
pub fn start(
    cfg: &SourceConfig,
    settings: &NexmarkSettings,
    needed: &[bool],
    workers: usize,
    waker: Arc<dyn Wake>,
) -> std::io::Result<FileSourceReader> {
    let clock = Arc::new(ChunkClock::default());
    let generated = Arc::new(AtomicU64::new(0));
    let total = settings.rows();
    let chunks = total.div_ceil(CHUNK_EVENTS);
    let arity = cfg.schema.len();
    let gen = settings.generator();
    let needed: Arc<[bool]> = needed.into();
    let mut receivers = Vec::new();
    let mut threads = Vec::new();
    if settings.pregenerate {
        let began = Instant::now();
        let mut handles = Vec::new();
        for p in 0..workers {
            let (gen, settings, needed) = (gen.clone(), settings.clone(), needed.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("nexmark:{}:{p}", cfg.name))
                    .spawn(move || {
                        (p as u64..chunks)
                            .step_by(workers)
                            .map(|k| make_chunk(&gen, &settings, &needed, arity, k))
                            .collect::<Vec<_>>()
                    })?,
            );
        }
        for h in handles {
            let made = h
                .join()
                .map_err(|_| std::io::Error::other("a Nexmark generator thread panicked"))?;
            let (tx, rx) = crossbeam_channel::unbounded();
            for (chunk, max) in made {
                clock.publish(chunk.index, max);
                generated.fetch_add(chunk.bytes, Ordering::Relaxed);
                let _ = tx.send(chunk);
            }
            receivers.push(std::sync::Mutex::new(Some(rx)));
        }
        let setup = began.elapsed();
        return Ok(FileSourceReader::from_parts(
            receivers, clock, total, generated, threads, setup,
        ));
    }
    for p in 0..workers {
        let (tx, rx) = crossbeam_channel::bounded::<ParsedChunk>(CHANNEL_CHUNKS);
        receivers.push(std::sync::Mutex::new(Some(rx)));
        let (gen, settings, needed) = (gen.clone(), settings.clone(), needed.clone());
        let (clock, waker, generated) = (clock.clone(), waker.clone(), generated.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("nexmark:{}:{p}", cfg.name))
                .spawn(move || {
                    for k in (p as u64..chunks).step_by(workers) {
                        let (chunk, max) = make_chunk(&gen, &settings, &needed, arity, k);
                        clock.publish(k, max);
                        waker.wake_all();
                        generated.fetch_add(chunk.bytes, Ordering::Relaxed);
                        if tx.send(chunk).is_err() {
                            return; // the run is shutting down
                        }
                        waker.wake(p);
                    }
                    drop(tx);
                    waker.wake(p);
                })?,
        );
    }
    Ok(FileSourceReader::from_parts(
        receivers,
        clock,
        total,
        generated,
        threads,
        Duration::ZERO,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(stream: NexmarkStream, events: u64) -> NexmarkSettings {
        NexmarkSettings {
            stream,
            events,
            events_per_second: 1000,
            base_time: DEFAULT_BASE_TIME,
            pregenerate: false,
        }
    }

    #[test]
    fn kind_counts_match_the_generator() {
        let n = 10_007;
        let all: Vec<Event> = EventGenerator::new(settings(NexmarkStream::Bid, n).config())
            .take(n as usize)
            .collect();
        for s in [
            NexmarkStream::Person,
            NexmarkStream::Auction,
            NexmarkStream::Bid,
        ] {
            let want: Vec<&Event> = all
                .iter()
                .filter(|e| e.event_type() == s.event_type())
                .collect();
            assert_eq!(s.count_in(n), want.len() as u64, "{s:?}");
            let got: Vec<Event> = settings(s, n).generator().take(want.len()).collect();
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{s:?}");
        }
    }

    #[test]
    fn chunks_start_where_the_previous_ended_and_times_never_decrease() {
        let s = settings(NexmarkStream::Bid, 50_000);
        let needed = vec![true; 7];
        let gen = s.generator();
        let mut last = i64::MIN;
        let mut rows = 0;
        for k in 0..s.rows().div_ceil(CHUNK_EVENTS) {
            let (c, max) = make_chunk(&gen, &s, &needed, 7, k);
            for r in c.batch.rows() {
                let Value::Time(t) = r[5] else { panic!() };
                assert!(t >= last);
                last = t;
                rows += 1;
            }
            assert_eq!(max, Some(last));
        }
        assert_eq!(rows, s.rows());
    }
}
