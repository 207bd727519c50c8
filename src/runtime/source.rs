//! The per-worker source operator: drains parsed chunks, decides lateness in file order,
//! applies the fused chain of record operators, and emits updates at their ticks while holding
//! its capability at the source's watermark.

use super::metrics::SourceMetrics;
use crate::connectors::dead_letter::DeadLetters;
use crate::connectors::file_source::{ChunkClock, ParsedChunk, Wake};
use crate::connectors::parsed::{DeadReason, DeadRecord};
use crate::operators::aggregate::{AggState, AggregatePlan, Combiner};
use crate::operators::RecordOp;
use crate::record::time::TimeDomain;
use crate::record::{Row, Schema, Tick, Value};
use crossbeam_channel::{Receiver, TryRecvError};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::SyncActivator;

/// How many chunks a source operator handles before yielding to the rest of the dataflow.
const CHUNKS_PER_ACTIVATION: usize = 4;

/// Wakes worker source operators through timely's thread-safe activators.
#[derive(Default)]
pub struct SourceWakers {
    slots: Vec<Mutex<Option<SyncActivator>>>,
}

impl SourceWakers {
    /// Slots for `workers` local workers.
    pub fn new(workers: usize) -> SourceWakers {
        SourceWakers {
            slots: (0..workers).map(|_| Mutex::new(None)).collect(),
        }
    }
    pub(crate) fn install(&self, worker: usize, activator: SyncActivator) {
        *self.slots[worker]
            .lock()
            .expect("waker lock is never poisoned") = Some(activator);
    }
}

impl Wake for SourceWakers {
    fn wake(&self, worker: usize) {
        if let Some(slot) = self.slots.get(worker) {
            if let Some(activator) = slot.lock().expect("waker lock is never poisoned").as_ref() {
                // Fails only once the worker has shut down, when there is nothing left to wake.
                let _ = activator.activate();
            }
        }
    }
    fn wake_all(&self) {
        for w in 0..self.slots.len() {
            self.wake(w);
        }
    }
}

/// Everything a worker's source operator needs.
pub struct SourceTask {
    /// Source name.
    pub name: String,
    /// Its schema (the parsed row layout).
    pub schema: Schema,
    /// This worker's chunks.
    pub chunks: Receiver<ParsedChunk>,
    /// Event-time prefix maxima.
    pub clock: Arc<ChunkClock>,
    /// Wakes this operator when chunks arrive.
    pub wakers: Arc<SourceWakers>,
    /// Local worker index.
    pub worker: usize,
    /// How time is derived.
    pub time: TimeDomain,
    /// Event-time field and lateness bound.
    pub event_time: Option<(usize, u64)>,
    /// The change column, whose value becomes the update's multiplicity and is then removed.
    pub change: Option<crate::connectors::ChangeColumn>,
    /// Fused record operators, in order.
    pub chain: Vec<Arc<dyn RecordOp>>,
    /// Counters.
    pub metrics: Arc<SourceMetrics>,
    /// Where rejected records go.
    pub dead: Arc<DeadLetters>,
    /// What to do with malformed records.
    pub on_error: crate::connectors::OnError,
    /// Set when the run must stop early (`on_error = "fail"`): sources stop reading.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// A stop request (SIGINT/SIGTERM): the source records its capability and ends.
    pub interrupt: Arc<crate::connectors::Interrupt>,
    /// The first malformed record under `on_error = "fail"`: (source, line, detail).
    pub failure: Arc<Mutex<Option<(String, u64, String)>>>,
    /// A live source: its reader publishes a chunk only after sending it, so a worker with an
    /// empty channel may follow the published watermark without records of its own.
    pub live: bool,
    /// A partitioned live source (Kafka): its reader decided lateness per partition and sent
    /// late records as dead records with reason `late`; the clock carries the source's
    /// watermark (the smallest over partitions), which records do not move.
    pub partitioned: bool,
}

/// Where a source operator puts accepted rows: straight into its output, or into a pre-aggregating
/// combiner when the source feeds an aggregate directly.
pub trait Emitter: 'static {
    /// The difference type of the output updates.
    type Diff: Clone + 'static;
    /// Takes an accepted row at `tick` with multiplicity `diff`.
    fn push(&mut self, tick: Tick, row: &mut Row, diff: isize);
    /// Everything that is ready to emit, given that no more rows will arrive before `bound`.
    fn ready(&mut self, bound: Option<Tick>) -> Ready<Self::Diff>;
}

/// Updates ready to emit, grouped by tick in tick order.
pub type Ready<R> = Vec<(Tick, Vec<(Row, R)>)>;

/// Emits every row as it comes, with its multiplicity.
#[derive(Default)]
pub struct RowEmitter {
    pending: BTreeMap<Tick, Vec<(Row, isize)>>,
    /// The most rows one tick got in the last activation: a tick's vector starts that large,
    /// rather than growing by doubling (copying itself each time) on every activation.
    expect: usize,
}

impl Emitter for RowEmitter {
    type Diff = isize;
    fn push(&mut self, tick: Tick, row: &mut Row, diff: isize) {
        let owned = std::mem::replace(row, Vec::with_capacity(row.len()));
        let expect = self.expect;
        self.pending
            .entry(tick)
            .or_insert_with(|| Vec::with_capacity(expect))
            .push((owned, diff));
    }
    fn ready(&mut self, _bound: Option<Tick>) -> Ready<isize> {
        if let Some(most) = self.pending.values().map(Vec::len).max() {
            self.expect = most;
        }
        std::mem::take(&mut self.pending).into_iter().collect()
    }
}

/// Pre-aggregates rows per (tick, group) until the watermark passes the tick.
pub struct CombineEmitter(pub Combiner);

impl CombineEmitter {
    /// A combiner for `plan`.
    pub fn new(plan: Arc<AggregatePlan>, tick_len: u64) -> CombineEmitter {
        CombineEmitter(Combiner::new(plan).closing_ticks(tick_len))
    }
}

impl Emitter for CombineEmitter {
    type Diff = AggState;
    fn push(&mut self, tick: Tick, row: &mut Row, diff: isize) {
        self.0.add(tick, row, diff);
    }
    fn ready(&mut self, bound: Option<Tick>) -> Ready<AggState> {
        self.0.drain_before(bound)
    }
}

/// Builds the source operator on this worker.
pub fn render<'s, E: Emitter>(
    scope: Scope<'s, Tick>,
    mut task: SourceTask,
    mut emitter: E,
) -> Stream<'s, Tick, Vec<(Row, Tick, E::Diff)>> {
    let name = format!("Source({})", task.name);
    source::<_, CapacityContainerBuilder<Vec<(Row, Tick, E::Diff)>>, _, _>(
        scope,
        &name,
        move |capability, info| {
            let worker = scope.worker();
            task.wakers.install(
                task.worker,
                worker.sync_activator_for(info.address.to_vec()),
            );
            let activator = scope.activator_for(info.address.clone());
            let mut cap = Some(capability);
            let mut waiting: Option<ParsedChunk> = None;
            let mut disconnected = false;
            let mut row: Row = Vec::new();
            let mut scratch: Row = Vec::new();
            let mut late: Vec<DeadRecord> = Vec::new();
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                let mut handled = 0;
                if task.stop.load(Ordering::Relaxed) && !disconnected && waiting.is_some() {
                    // The run is failing: a chunk waiting for the clock may wait for chunks
                    // nobody will parse (in a cluster, another process stopped); drop it.
                    disconnected = true;
                    waiting = None;
                }
                if task.interrupt.signal().is_some() && !disconnected {
                    // Stop reading; everything before our capability is already emitted and
                    // final, everything after will be dropped by the sinks.
                    task.interrupt.record(*c.time());
                    disconnected = true;
                    waiting = None;
                }
                let mut bound = *c.time();
                // Read before draining the channel: every chunk published by now is in it.
                let published = task.live.then(|| task.clock.published());
                let mut drained = false;
                while handled < CHUNKS_PER_ACTIVATION {
                    let chunk = match waiting.take() {
                        Some(ch) => ch,
                        // Failing (`on_error = "fail"`) or interrupted: read no further. Reading on
                        // could park a chunk waiting for the clock on chunks nobody will parse.
                        None if disconnected || task.stop.load(Ordering::Relaxed) => {
                            // The run is failing: read no further, end this source.
                            disconnected = true;
                            break;
                        }
                        None => match task.chunks.try_recv() {
                            Ok(ch) => ch,
                            Err(TryRecvError::Empty) => {
                                drained = true;
                                break;
                            }
                            Err(TryRecvError::Disconnected) => {
                                disconnected = true;
                                break;
                            }
                        },
                    };
                    let running_max = match task.event_time {
                        Some(_) => match task.clock.max_before(chunk.index) {
                            Some(m) => m,
                            None => {
                                // An earlier chunk is still being parsed; its parser wakes us.
                                waiting = Some(chunk);
                                break;
                            }
                        },
                        None => None,
                    };
                    handled += 1;
                    let next = process_chunk(
                        &task,
                        chunk,
                        running_max,
                        &mut emitter,
                        &mut row,
                        &mut scratch,
                        &mut late,
                    );
                    bound = bound.max(next);
                }
                if !late.is_empty() {
                    task.dead.extend(&task.name, late.drain(..));
                }
                if let (Some((_, max, end)), true) = (published, drained && waiting.is_none()) {
                    // This worker has handled every published chunk meant for it, so its later
                    // records are all at or after the published watermark.
                    let follow = match task.event_time {
                        Some((_, lateness)) => max.map_or(0, |m| {
                            task.time.tick_of((m - lateness as i64).max(0) as u64)
                        }),
                        None if task.time.is_event() => 0,
                        None => task.time.tick_of(end),
                    };
                    bound = bound.max(follow);
                }
                let finished = disconnected && waiting.is_none();
                for (tick, updates) in emitter.ready(if finished { None } else { Some(bound) }) {
                    let at = c.delayed(&tick);
                    let mut session = output.session(&at);
                    session.give_iterator(updates.into_iter().map(|(r, d)| (r, tick, d)));
                }
                if finished {
                    cap = None;
                    // Let go of the channel: parsers blocked on it end, and so does everything
                    // waiting for them.
                    task.chunks = crossbeam_channel::never();
                    return;
                }
                if bound > *c.time() {
                    c.downgrade(&bound);
                }
                if handled == CHUNKS_PER_ACTIVATION {
                    activator.activate();
                }
            }
        },
    )
}

/// Handles one chunk; returns the tick this worker's later records cannot precede.
fn process_chunk<E: Emitter>(
    task: &SourceTask,
    mut chunk: ParsedChunk,
    mut running_max: Option<i64>,
    emitter: &mut E,
    row: &mut Row,
    scratch: &mut Row,
    late: &mut Vec<DeadRecord>,
) -> Tick {
    let m = &task.metrics;
    let batch = &mut chunk.batch;
    if task.partitioned && batch.dead.iter().any(|d| d.reason == DeadReason::Late) {
        // Late by its partition's watermark: dead-lettered whatever `on_error` says.
        let (mut gone, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut batch.dead)
            .into_iter()
            .partition(|d| d.reason == DeadReason::Late);
        batch.dead = rest;
        m.read.fetch_add(gone.len() as u64, Ordering::Relaxed);
        m.dead.fetch_add(gone.len() as u64, Ordering::Relaxed);
        late.append(&mut gone);
    }
    let dead = batch.dead.len() as u64;
    m.read
        .fetch_add(batch.len() as u64 + dead, Ordering::Relaxed);
    m.bytes.fetch_add(chunk.bytes, Ordering::Relaxed);
    if dead > 0 {
        use crate::connectors::OnError;
        if task.on_error == OnError::Fail {
            let first = &batch.dead[0];
            let mut failure = task.failure.lock().expect("failure lock is never poisoned");
            if failure.as_ref().is_none_or(|f| f.1 > first.line) {
                *failure = Some((task.name.clone(), first.line, first.detail.clone()));
            }
            task.stop.store(true, Ordering::Relaxed);
        }
        if task.on_error == OnError::Skip {
            m.skipped.fetch_add(dead, Ordering::Relaxed);
            batch.dead.clear();
        } else {
            m.dead.fetch_add(dead, Ordering::Relaxed);
            task.dead.extend(&task.name, batch.dead.drain(..));
        }
    }
    let arity = batch.arity;
    let (mut emitted, mut filtered, mut rejected) = (0u64, 0u64, 0u64);
    'records: for i in 0..batch.len() {
        row.clear();
        row.extend(
            batch.values[i * arity..(i + 1) * arity]
                .iter_mut()
                .map(std::mem::take),
        );
        let t = match task.event_time {
            Some((field, lateness)) => {
                let t = match row[field] {
                    Value::Time(t) if crate::record::time::is_event_time(t) => t,
                    ref other => {
                        let why = match other {
                            Value::Time(t) if *t > 0 => "event time is after 9999-12-31",
                            Value::Time(_) => "event time is before 1970-01-01",
                            _ => "event time is missing",
                        };
                        rejected += 1;
                        late.push(dead_record(
                            task,
                            batch.lines[i],
                            batch.positions[i],
                            row,
                            DeadReason::BadValue,
                            why.into(),
                        ));
                        continue;
                    }
                };
                if let Some(max) = running_max.filter(|_| !task.partitioned) {
                    let watermark = max - lateness as i64;
                    if t < watermark {
                        rejected += 1;
                        let mut detail = format!(
                            "event time {} is behind the watermark {} (max event time seen {} minus max_lateness {} ms)",
                            crate::record::time::iso8601(t),
                            crate::record::time::iso8601(watermark),
                            crate::record::time::iso8601(max),
                            lateness
                        );
                        if task.live && task.clock.idle_before(chunk.index) {
                            detail.push_str(
                                "; the source was idle for its idle_timeout earlier, which advanced its watermark",
                            );
                        }
                        late.push(dead_record(
                            task,
                            batch.lines[i],
                            batch.positions[i],
                            row,
                            DeadReason::Late,
                            detail,
                        ));
                        continue;
                    }
                }
                if !task.partitioned {
                    running_max = Some(running_max.map_or(t, |m| m.max(t)));
                }
                t as u64
            }
            // A table in an event-time pipeline: every row holds from time zero.
            None if task.time.is_event() => 0,
            None => batch.positions[i],
        };
        let diff = match &task.change {
            None => 1,
            Some(change) => match change.diff_of(&row[change.field]) {
                Ok(d) => {
                    row.remove(change.field);
                    d
                }
                Err(why) => {
                    rejected += 1;
                    late.push(dead_record(
                        task,
                        batch.lines[i],
                        batch.positions[i],
                        row,
                        DeadReason::BadValue,
                        why,
                    ));
                    continue;
                }
            },
        };
        for op in &task.chain {
            if !op.apply(row, scratch) {
                filtered += 1;
                continue 'records;
            }
        }
        emitted += 1;
        emitter.push(task.time.tick_of(t), row, diff);
    }
    m.emitted.fetch_add(emitted, Ordering::Relaxed);
    m.filtered.fetch_add(filtered, Ordering::Relaxed);
    m.dead.fetch_add(rejected, Ordering::Relaxed);
    match task.event_time {
        Some((_, lateness)) => running_max.map_or(0, |m| {
            task.time.tick_of((m - lateness as i64).max(0) as u64)
        }),
        None if task.time.is_event() => 0,
        None => task.time.tick_of(chunk.end_position),
    }
}

fn dead_record(
    task: &SourceTask,
    line: u64,
    position: u64,
    row: &[Value],
    reason: DeadReason,
    detail: String,
) -> DeadRecord {
    DeadRecord {
        line,
        position,
        raw: crate::connectors::parsed::row_json(&task.schema, row),
        reason,
        detail,
    }
}
