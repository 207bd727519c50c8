//! Runs a [`Plan`] on timely dataflow and differential dataflow.
//!
//! This is the only module that touches timely or differential. Every worker renders the same
//! operators in the same order (the plan's topological order):
//! - each source becomes a timely source operator fed by its reader threads
//!   ([`crate::connectors::file_source`]); a chain of record operators (`filter`, `select`)
//!   directly after a source is fused into it, and an `aggregate` right after that chain is
//!   pre-combined there too;
//! - record operators elsewhere become differential `flat_map`s, `union` a concatenation;
//! - `aggregate` combines updates per worker and tick, exchanges the partial states by group,
//!   and accumulates them tick by tick in a keyed operator ([`window`]) that writes -1 for a
//!   group's old row and +1 for its new one;
//! - `join`, `top_k`/`dedup` and `distinct` are differential's `join_core`, `reduce` and
//!   `distinct` over arranged rows;
//! - each sink consolidates and sorts what every completed tick produced and hands it to the
//!   sink's writer thread ([`crate::connectors::file_sink`]).

pub mod cluster;
pub mod join;
pub mod manifest;
pub mod metrics;
pub mod rank;
pub mod recovery;
pub mod source;
pub mod window;

pub use cluster::Cluster;
pub use metrics::RunSummary;
pub use recovery::RecoveryOptions;

use crate::connectors::dead_letter::DeadLetters;
use crate::connectors::file_sink::{
    self, consolidate, LineFormat, SinkMsg, SinkWriter, TickLines, TickSize,
};
use crate::connectors::file_source::Wake;
use crate::connectors::file_source::{
    ChunkClock, ChunkMax, ChunkShare, FileSourceReader, ParsedChunk,
};
use crate::connectors::{Interrupt, SinkMode, SinkTarget};
use crate::operators::aggregate::{AggState, AggregatePlan, Combiner};
use crate::operators::{RecordOp, TransformOp};
use crate::plan::{NodeKind, Plan};
use crate::record::{Diff, Row, Tick};
use crossbeam_channel::Sender;
use differential_dataflow::difference::{IsZero, Semigroup};
use differential_dataflow::{AsCollection, VecCollection};
use metrics::{SinkSummary, SourceMetrics, SourceSummary};
use source::{CombineEmitter, RowEmitter, SourceTask, SourceWakers};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;

impl IsZero for AggState {
    fn is_zero(&self) -> bool {
        AggState::is_zero(self)
    }
}

impl Semigroup for AggState {
    fn plus_equals(&mut self, rhs: &Self) {
        self.add(rhs)
    }
}

/// Runtime knobs (not pipeline semantics).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Worker threads.
    pub workers: usize,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Print progress to stderr while running.
    pub progress: bool,
    /// Commits and resuming after a crash.
    pub recovery: RecoveryOptions,
    /// Run as one process of a cluster (timely's cluster mode); `None`: a single process.
    pub cluster: Option<Cluster>,
    /// Live sources end their input once no message came for this long (`--stop-when-idle`);
    /// `None`: they run until stopped.
    pub stop_when_idle: Option<Duration>,
}

/// A source's reader threads: a file's splitter and parsers, or a queue consumer.
enum SourceReader {
    File(FileSourceReader),
    Live(crate::connectors::live_source::LiveSourceReader),
}

impl SourceReader {
    fn take_receivers(
        &mut self,
    ) -> Vec<Mutex<Option<crossbeam_channel::Receiver<crate::connectors::file_source::ParsedChunk>>>>
    {
        match self {
            SourceReader::File(r) => std::mem::take(&mut r.receivers),
            SourceReader::Live(r) => std::mem::take(&mut r.receivers),
        }
    }
    /// The receivers of the chunk maxima that other processes publish (file sources in a
    /// cluster); none for live sources.
    fn take_published(&mut self) -> Vec<Mutex<Option<crossbeam_channel::Receiver<ChunkMax>>>> {
        match self {
            SourceReader::File(r) => std::mem::take(&mut r.published),
            SourceReader::Live(_) => Vec::new(),
        }
    }
    fn clock(&self) -> Arc<crate::connectors::file_source::ChunkClock> {
        match self {
            SourceReader::File(r) => r.clock.clone(),
            SourceReader::Live(r) => r.clock.clone(),
        }
    }
    /// Time spent preparing input before the run could start (pregenerated Nexmark events).
    fn setup(&self) -> Duration {
        match self {
            SourceReader::File(r) => r.setup,
            SourceReader::Live(_) => Duration::ZERO,
        }
    }
    fn total_bytes(&self) -> u64 {
        match self {
            SourceReader::File(r) => r.total_bytes,
            SourceReader::Live(_) => 0,
        }
    }
    fn live_stats(&self) -> Option<Arc<crate::connectors::live_source::LiveStats>> {
        match self {
            SourceReader::File(_) => None,
            SourceReader::Live(r) => Some(r.stats.clone()),
        }
    }
    fn join(self) {
        match self {
            SourceReader::File(r) => r.join(),
            SourceReader::Live(r) => r.join(),
        }
    }
}

/// Why a run failed after it started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The outputs cannot be written, or would overwrite an input ([`crate::plan::check_outputs`]).
    /// Found before anything is created; render the diagnostics against the plan's file.
    #[error("{}", .0.iter().map(|d| d.message.as_str()).collect::<Vec<_>>().join("; "))]
    Environment(Vec<crate::diag::Diagnostic>),
    /// A source with `on_error = "fail"` met a malformed record.
    #[error("source `{source_name}` line {line}: {detail} (on_error = \"fail\" stops the run; outputs are incomplete)")]
    BadRecord {
        /// Source name.
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// What was wrong, naming the field.
        detail: String,
    },
    /// A source's share of malformed records passed its `max_error_rate`.
    #[error("source `{source_name}`: {bad} of {read} records were malformed ({:.2}%), more than max_error_rate {:.2}%; see dead_letters.jsonl", 100.0 * *bad as f64 / (*read).max(1) as f64, 100.0 * limit)]
    ErrorRate {
        /// Source name.
        source_name: String,
        /// Malformed records.
        bad: u64,
        /// Records read.
        read: u64,
        /// The configured limit.
        limit: f64,
    },
    /// `--resume` was asked for, but the output folder holds no run this run may resume.
    #[error("cannot resume the run in `{}`: {reason}; run without --resume to start afresh", out.display())]
    Resume {
        /// The output folder.
        out: PathBuf,
        /// Why not, naming what changed.
        reason: String,
    },
    /// The message broker could not be reached (after retries), or failed the run.
    #[error("{0}")]
    Broker(String),
    /// A worker failed (a bug in eventflow).
    #[error("worker failed: {0}")]
    Worker(String),
    /// The processes of a cluster did not agree to start (different pipelines, inputs or
    /// worker counts, or process 0 refused). Nothing was written.
    #[error("the cluster did not start: {0}")]
    Cluster(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io {
        action,
        path,
        source,
    }
}

/// How a source's output is rendered: the record operators fused into it, the node whose
/// output it produces, and whether that node is an aggregate it pre-combines for.
struct Fusion {
    chain: Vec<Arc<dyn RecordOp>>,
    produces: usize,
    aggregate: Option<Arc<AggregatePlan>>,
}

fn plan_fusion(plan: &Plan) -> (BTreeMap<usize, Fusion>, Vec<bool>) {
    let mut fused = vec![false; plan.nodes.len()];
    let mut fusions = BTreeMap::new();
    for (s, node) in plan.nodes.iter().enumerate() {
        if !matches!(node.kind, NodeKind::Source(_)) {
            continue;
        }
        let mut chain = Vec::new();
        let mut at = s;
        loop {
            let n = &plan.nodes[at];
            let [next] = n.consumers[..] else { break };
            let m = &plan.nodes[next];
            match &m.kind {
                NodeKind::Transform(t) if m.inputs.len() == 1 => match &t.op {
                    TransformOp::Record(op) => {
                        chain.push(op.clone());
                        fused[next] = true;
                        at = next;
                    }
                    TransformOp::Aggregate(p) => {
                        fused[next] = true;
                        let chain = std::mem::take(&mut chain);
                        fusions.insert(
                            s,
                            Fusion {
                                chain,
                                produces: next,
                                aggregate: Some(p.clone()),
                            },
                        );
                        break;
                    }
                    TransformOp::Union
                    | TransformOp::Join(_)
                    | TransformOp::Rank(_)
                    | TransformOp::Distinct(_) => break,
                },
                _ => break,
            }
        }
        fusions.entry(s).or_insert(Fusion {
            chain,
            produces: at,
            aggregate: None,
        });
    }
    (fusions, fused)
}

pub(crate) type Coll<'s> = VecCollection<'s, Tick, Row, Diff>;

/// Accumulates pre-combined partial states per group and turns them into output rows.
fn finish_aggregate<'s>(
    partials: VecCollection<'s, Tick, Row, AggState>,
    plan: Arc<AggregatePlan>,
    time: crate::plan::TimeDomain,
) -> Coll<'s> {
    if plan.window.is_some() {
        return window::render(partials, plan, time.tick_len());
    }
    window::render_groups(partials, plan)
}

/// Pre-combines a row collection per worker and batch for an aggregate that is not fused.
fn combine<'s>(
    rows: Coll<'s>,
    plan: Arc<AggregatePlan>,
    tick_len: u64,
) -> VecCollection<'s, Tick, Row, AggState> {
    rows.inner
        .unary::<CapacityContainerBuilder<Vec<(Row, Tick, AggState)>>, _, _, _>(
            Pipeline,
            "Combine",
            move |_cap, _info| {
                let mut combiner = Combiner::new(plan).closing_ticks(tick_len);
                move |input, output| {
                    input.for_each(|cap, data| {
                        for (row, t, d) in data.drain(..) {
                            combiner.add(t, &row, d);
                        }
                        for (t, groups) in combiner.drain_before(None) {
                            let at = cap.delayed(&t, 0);
                            output
                                .session(&at)
                                .give_iterator(groups.into_iter().map(|(k, s)| (k, t, s)));
                        }
                    });
                }
            },
        )
        .as_collection()
}

/// Sends every completed tick's consolidated, sorted updates to the sink's writer (`None`: this
/// process writes no outputs). In a cluster of `to_process_zero = Some(workers)` workers per
/// process, the updates first go to process 0's workers, spread over them by a hash of the row;
/// the writer merges the parts of its local workers as in a single process.
/// With `lines`, every update is encoded as it arrives and its row freed there, by the worker
/// that made it; the parts go out as lines with order keys, by which the writer merges them.
fn render_sink(
    rows: Coll<'_>,
    sender: Option<ToWriter>,
    worker: usize,
    to_process_zero: Option<usize>,
    lines: Option<file_sink::LineFormat>,
) {
    match to_process_zero {
        None => sink_with(rows, Pipeline, sender, worker, lines),
        Some(workers) => {
            let hasher = foldhash::fast::FixedState::with_seed(0);
            let route = move |(row, _, _): &(Row, Tick, Diff)| {
                use std::hash::BuildHasher;
                hasher.hash_one(row) % workers as u64
            };
            sink_with(rows, Exchange::new(route), sender, worker, lines)
        }
    }
}

fn sink_with<P>(
    rows: Coll<'_>,
    pact: P,
    sender: Option<ToWriter>,
    worker: usize,
    lines: Option<file_sink::LineFormat>,
) where
    P: ParallelizationContract<Tick, Vec<(Row, Tick, Diff)>>,
{
    // Updates waiting for their tick to complete: as rows, or (with a line format) already
    // encoded, the rows freed on arrival.
    let mut stash: BTreeMap<Tick, Vec<(Row, Diff)>> = BTreeMap::new();
    let mut encoded: BTreeMap<Tick, TickLines> = BTreeMap::new();
    let mut reported: Option<Option<Tick>> = None;
    // Finished ticks' encoding buffers, emptied, for later ticks: a tick of a million updates
    // would otherwise grow fresh buffers by doubling, faulting in new pages each time. A few
    // are kept, enough for the ticks open at once in a steady run.
    const SPARE_TICKS: usize = 4;
    let mut spare_pending: Vec<TickLines> = Vec::new();
    let mut last_size = TickSize::default();
    rows.inner.sink(pact, "Sink", move |(input, frontier)| {
        input.for_each(|_cap, data| {
            // Updates come in runs of one tick: look the tick up once per run.
            let mut updates = data.drain(..).peekable();
            while let Some((row, t, d)) = updates.next() {
                if let Some(format) = &lines {
                    let pending = encoded.entry(t).or_insert_with(|| {
                        let mut pending = spare_pending.pop().unwrap_or_default();
                        pending.expect(&last_size);
                        format.start_tick(t, &mut pending);
                        pending
                    });
                    format.push(pending, &row, d);
                    while let Some((row, _, d)) = updates.next_if(|u| u.1 == t) {
                        format.push(pending, &row, d);
                    }
                    continue;
                }
                let rows = stash.entry(t).or_insert_with(|| Vec::with_capacity(1024));
                rows.push((row, d));
                while let Some((row, _, d)) = updates.next_if(|u| u.1 == t) {
                    rows.push((row, d));
                }
            }
        });
        let Some((sender, spare)) = &sender else {
            // In a cluster, nothing reaches a process other than 0.
            stash.clear();
            encoded.clear();
            return;
        };
        let bound = frontier.frontier().iter().next().copied();
        let complete = |tick: &Tick| bound.is_none_or(|b| *tick < b);
        while let Some(entry) = encoded.first_entry() {
            if !complete(entry.key()) {
                break;
            }
            let (tick, mut pending) = entry.remove_entry();
            last_size = pending.size();
            let mut lines = spare.try_recv().unwrap_or_default();
            LineFormat::finish_tick(&mut pending, &mut lines);
            if spare_pending.len() < SPARE_TICKS {
                spare_pending.push(pending);
            }
            if !lines.ends.is_empty() {
                let _ = sender.send(SinkMsg::Part {
                    tick,
                    rows: Vec::new(),
                    lines: Some(lines),
                });
            }
        }
        while let Some(entry) = stash.first_entry() {
            if !complete(entry.key()) {
                break;
            }
            let (tick, mut rows) = entry.remove_entry();
            consolidate(&mut rows);
            if !rows.is_empty() {
                let _ = sender.send(SinkMsg::Part {
                    tick,
                    rows,
                    lines: None,
                });
            }
        }
        if reported != Some(bound) {
            reported = Some(bound);
            let _ = sender.send(SinkMsg::Frontier { worker, bound });
        }
    });
}

/// A worker's ends of a sink's channels: parts go to the writer, spare line buffers come back.
type ToWriter = (
    Sender<SinkMsg>,
    crossbeam_channel::Receiver<file_sink::Lines>,
);

/// Creates the output folder, prepares crash recovery as `decision` says and starts the sink
/// writers on `channels`.
fn start_outputs(
    plan: &Plan,
    opts: &RunOptions,
    workers: usize,
    decision: recovery::Decision,
    channels: BTreeMap<usize, file_sink::SinkChannel>,
    interrupt: &Arc<Interrupt>,
    stop: &Arc<AtomicBool>,
) -> Result<(Option<recovery::Prepared>, BTreeMap<usize, SinkWriter>), RunError> {
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(io_err("cannot create output folder", &opts.out_dir))?;
    let recovery = recovery::apply(plan, &opts.out_dir, decision)?;
    let live = plan
        .nodes
        .iter()
        .any(|n| matches!(&n.kind, NodeKind::Source(c) if c.live.is_some()));
    let mut writers = BTreeMap::new();
    for (i, channel) in channels {
        let node = &plan.nodes[i];
        let NodeKind::Sink(cfg) = &node.kind else {
            unreachable!("channels are made for sinks")
        };
        let path = match &cfg.target {
            SinkTarget::File(p) => opts.out_dir.join(p),
            t => PathBuf::from(t.describe()),
        };
        // A queue sink names its messages after the pipeline.
        let mut cfg = cfg.clone();
        if let SinkTarget::Amqp { pipeline, .. } | SinkTarget::Kafka { pipeline, .. } =
            &mut cfg.target
        {
            pipeline.clone_from(&plan.name);
        }
        let cfg = &cfg;
        let commits = recovery.as_ref().map(|r| file_sink::Recovery {
            log: r.log.clone(),
            interval: r.interval,
            resume: r.resume.get(&node.name).copied(),
            failing: stop.clone(),
        });
        let w = SinkWriter::start(
            cfg,
            &node.schema,
            plan.time,
            &opts.out_dir,
            workers,
            interrupt.clone(),
            commits,
            channel,
            // A live run may never end: its snapshots are rewritten as ticks complete.
            live.then(|| {
                recovery
                    .as_ref()
                    .map_or(Duration::from_secs(1), |r| r.interval)
            }),
        )
        .map_err(|e| match &cfg.target {
            SinkTarget::Amqp { .. } | SinkTarget::Kafka { .. } => RunError::Broker(e.to_string()),
            _ => io_err("cannot create output file", &path)(e),
        })?;
        writers.insert(i, w);
    }
    Ok((recovery, writers))
}

/// Runs the pipeline to the end of its inputs and writes every output.
///
/// In a cluster ([`RunOptions::cluster`]) every process calls this; process 0 writes the
/// outputs, `dead_letters.jsonl` and `summary.json`, and returns the summary of the whole run;
/// the others write nothing and return their own share of the counters.
pub fn run(plan: Arc<Plan>, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let workers = opts.workers.max(1);
    let cluster = opts.cluster.clone().filter(|c| c.processes > 1);
    let (processes, process) = cluster
        .as_ref()
        .map_or((1, 0), |c| (c.processes, c.process));
    if cluster.is_some() {
        // Sources that do not read files cannot yet share their input between processes.
        for n in &plan.nodes {
            let NodeKind::Source(cfg) = &n.kind else {
                continue;
            };
            let what = match &cfg.format {
                _ if cfg.live.is_some() => "reads a message queue",
                crate::connectors::SourceFormat::Nexmark(_) => "generates Nexmark events",
                _ => continue,
            };
            return Err(RunError::Cluster(format!(
                "source `{}` {what}; only file sources run in a cluster (docs/cluster.md)",
                n.name
            )));
        }
    }
    // In a cluster, only process 0 writes outputs.
    let writes = process == 0;
    let manifest = match &cluster {
        Some(_) => Some(
            manifest::Manifest::of(&plan).map_err(|(path, source)| RunError::Io {
                action: "cannot read input file",
                path,
                source,
            })?,
        ),
        None => None,
    };
    // Before anything is created: a run that cannot write its outputs does not start.
    let decided = match writes {
        true => crate::plan::check_outputs(&plan, &opts.out_dir)
            .map_err(RunError::Environment)
            .and_then(|()| recovery::decide(&plan, &opts.out_dir, &opts.recovery, manifest.clone()))
            .map(Some),
        false => Ok(None),
    };
    // In a cluster, process 0's refusal is first told to the other processes at start-up.
    let (mut decision, refusal) = match decided {
        Ok(d) => (d, None),
        Err(e) if cluster.is_none() => return Err(e),
        Err(e) => (None, Some(e)),
    };
    let hello = match (&cluster, &manifest) {
        (Some(_), Some(m)) => Some(cluster::Hello::of(
            process,
            workers,
            m,
            refusal.as_ref().map(|e| e.to_string()),
        )),
        _ => None,
    };
    let (fusions, fused) = plan_fusion(&plan);
    let fusions = Arc::new(fusions);
    let fused = Arc::new(fused);

    let dead = Arc::new(DeadLetters::default());
    // Set when a source fails the run (`on_error = "fail"`): sources stop, sinks stop committing.
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C and SIGTERM ask the run to stop: sources end, sinks keep only final ticks. Not in a
    // cluster: there a signal ends the process at once, like a crash, and the run is resumed.
    let interrupt = Arc::new(Interrupt::default());
    let signal_ids: Vec<_> = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .filter(|_| cluster.is_none())
        .filter_map(|s| {
            signal_hook::flag::register_usize(s, interrupt.signal.clone(), s as usize).ok()
        })
        .collect();
    let channels: BTreeMap<usize, file_sink::SinkChannel> = plan
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| writes && matches!(n.kind, NodeKind::Sink(_)))
        .map(|(i, _)| (i, file_sink::channel(workers)))
        .collect();
    let senders: BTreeMap<usize, ToWriter> = channels
        .iter()
        .map(|(&i, c)| (i, (c.parts.0.clone(), c.spare.1.clone())))
        .collect();
    let mut channels = Some(channels);
    let mut outputs = None;
    if cluster.is_none() {
        let decision = decision.take().expect("a single process writes outputs");
        let channels = channels.take().expect("channels are taken once");
        outputs = Some(start_outputs(
            &plan, opts, workers, decision, channels, &interrupt, &stop,
        )?);
    }
    let share = ChunkShare {
        first: process * workers,
        local: workers,
        total: processes * workers,
    };
    let mut readers: BTreeMap<usize, (SourceReader, Arc<SourceWakers>, Arc<SourceMetrics>)> =
        BTreeMap::new();
    let mut publish_wakers: BTreeMap<usize, Arc<SourceWakers>> = BTreeMap::new();
    // Every source's clock, so that an idle live source can follow the others' watermarks.
    let clocks = Arc::new(crate::connectors::live_source::SourceClocks::default());
    let broker_error: Arc<Mutex<Option<String>>> = Arc::default();
    // Live sources run in a single process only (the planner refuses them in a cluster), where
    // the outputs and their recovery state exist before any reader starts.
    let prepared = outputs.as_ref().and_then(|(r, _)| r.as_ref());
    for (i, node) in plan.nodes.iter().enumerate() {
        match &node.kind {
            NodeKind::Source(cfg) if cfg.live.is_some() => {
                let wakers = Arc::new(SourceWakers::new(workers));
                let ctx = crate::connectors::live_source::LiveContext {
                    pipeline: plan.name.clone(),
                    journal: prepared.map(|_| {
                        opts.out_dir
                            .join(recovery::DIR)
                            .join(format!("journal-{}.jsonl", node.name))
                    }),
                    resume: prepared.is_some_and(|r| r.resuming),
                    commits: prepared.map(|r| {
                        (
                            r.log.clone(),
                            recovery::committing_sinks(&plan)
                                .map(String::from)
                                .collect(),
                        )
                    }),
                    stop_when_idle: opts.stop_when_idle,
                    time: plan.time,
                    interrupt: interrupt.clone(),
                    stop: stop.clone(),
                    error: broker_error.clone(),
                    clocks: clocks.clone(),
                };
                let reader = crate::connectors::live_source::LiveSourceReader::start(
                    cfg,
                    &node.needed,
                    workers,
                    wakers.clone(),
                    ctx,
                )
                .map_err(io_err("cannot start source", &cfg.path))?;
                publish_wakers.insert(i, Arc::new(SourceWakers::new(workers)));
                readers.insert(
                    i,
                    (
                        SourceReader::Live(reader),
                        wakers,
                        Arc::new(SourceMetrics::default()),
                    ),
                );
            }
            NodeKind::Source(cfg) => {
                let wakers = Arc::new(SourceWakers::new(workers));
                let publish = Arc::new(SourceWakers::new(workers));
                let reader = FileSourceReader::start(
                    cfg,
                    &node.needed,
                    share,
                    wakers.clone(),
                    publish.clone(),
                )
                .map_err(io_err("cannot read input file", &cfg.path))?;
                clocks.register(reader.clock.clone(), cfg.max_lateness_ms);
                readers.insert(
                    i,
                    (
                        SourceReader::File(reader),
                        wakers,
                        Arc::new(SourceMetrics::default()),
                    ),
                );
                publish_wakers.insert(i, publish);
            }
            _ => {}
        }
    }

    // Everything a worker needs, shared; senders sit behind a lock so that only the workers'
    // operators hold them once the run is over (a writer finishes when its senders are gone).
    type Slots<T> = Vec<Mutex<Option<crossbeam_channel::Receiver<T>>>>;
    struct Shared {
        chunks: BTreeMap<usize, Slots<ParsedChunk>>,
        published: BTreeMap<usize, Slots<ChunkMax>>,
        clocks: BTreeMap<usize, Arc<ChunkClock>>,
        wakers: BTreeMap<usize, Arc<SourceWakers>>,
        publish_wakers: BTreeMap<usize, Arc<SourceWakers>>,
        metrics: BTreeMap<usize, Arc<SourceMetrics>>,
        senders: Mutex<Option<BTreeMap<usize, ToWriter>>>,
        /// Global worker 0 in a cluster: the other processes' reports.
        reports: Mutex<Vec<cluster::Report>>,
        lines: BTreeMap<usize, Option<file_sink::LineFormat>>,
    }
    let mut shared = Shared {
        chunks: BTreeMap::new(),
        published: BTreeMap::new(),
        clocks: BTreeMap::new(),
        wakers: BTreeMap::new(),
        publish_wakers,
        metrics: BTreeMap::new(),
        senders: Mutex::new(Some(senders)),
        reports: Mutex::default(),
        // Updates sinks: workers encode their parts' lines (the writer then copies bytes).
        lines: plan
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.kind {
                NodeKind::Sink(cfg) => Some((
                    i,
                    (cfg.mode == crate::connectors::SinkMode::Updates)
                        .then(|| file_sink::LineFormat::new(cfg, &n.schema, plan.time)),
                )),
                _ => None,
            })
            .collect(),
    };
    // Pregenerated input is made before the dataflow starts; the run's clock leaves it out.
    let setup: Duration = readers.values().map(|(r, ..)| r.setup()).sum();
    let nexmark_events = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Source(crate::connectors::SourceConfig {
                format: crate::connectors::SourceFormat::Nexmark(s),
                ..
            }) => Some(s.events),
            _ => None,
        })
        .max();
    let cpu_at_start = metrics::cpu_seconds();
    for (&i, (reader, wakers, metrics)) in readers.iter_mut() {
        shared.chunks.insert(i, reader.take_receivers());
        shared.published.insert(i, reader.take_published());
        shared.clocks.insert(i, reader.clock());
        shared.wakers.insert(i, wakers.clone());
        shared.metrics.insert(i, metrics.clone());
    }
    let shared = Arc::new(shared);

    let done = Arc::new(AtomicBool::new(false));
    // Wakes the source operators once a stop is requested, even if they are parked.
    let watcher = {
        let (interrupt, done, stop) = (interrupt.clone(), done.clone(), stop.clone());
        let wakers: Vec<Arc<SourceWakers>> = shared
            .wakers
            .values()
            .chain(shared.publish_wakers.values())
            .cloned()
            .collect();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if interrupt.signal().is_some() || stop.load(Ordering::Relaxed) {
                    wakers.iter().for_each(|w| w.wake_all());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Progress counts this process's records only, so a cluster shows none.
    let progress = (opts.progress && cluster.is_none()).then(|| {
        let totals: Vec<Progress> = readers
            .values()
            .map(|(r, _, m)| (r.total_bytes(), m.clone(), r.live_stats()))
            .collect();
        let done = done.clone();
        std::thread::spawn(move || report_progress(totals, done, started))
    });

    let failure: Arc<Mutex<Option<(String, u64, String)>>> = Arc::default();
    let (worker_stop, worker_failure) = (stop.clone(), failure.clone());
    let worker_interrupt = interrupt.clone();
    let worker_plan = plan.clone();
    let worker_shared = shared.clone();
    let worker_dead = dead.clone();
    let worker_cluster = cluster.clone();
    // Local worker 0 tells the main thread whether the start-up check passed.
    let (verdict_tx, verdict_rx) = crossbeam_channel::bounded::<Result<(), String>>(1);
    let guards = cluster::execute(
        workers,
        cluster.as_ref(),
        move |worker| -> Result<(), String> {
            let plan = &worker_plan;
            let shared = &worker_shared;
            let index = worker.index();
            // Global index = process × workers + local index.
            let local = index % workers;
            if let (Some(c), Some(hello)) = (&worker_cluster, &hello) {
                let items = match local {
                    0 => (0..worker.peers())
                        .map(|t| (t as u64, hello.clone()))
                        .collect(),
                    _ => Vec::new(),
                };
                let hellos = cluster::exchange_once(worker, items);
                let verdict = cluster::Hello::judge(&hellos, c.processes);
                if local == 0 {
                    let _ = verdict_tx.send(verdict.clone());
                }
                verdict?;
            }
            let senders = shared
                .senders
                .lock()
                .expect("sender lock is never poisoned")
                .clone()
                .unwrap_or_default();
            let to_process_zero = worker_cluster.as_ref().map(|_| workers);
            worker.dataflow::<Tick, _, _>(|scope| {
                let mut colls: Vec<Option<Coll<'_>>> =
                    (0..plan.nodes.len()).map(|_| None).collect();
                for (i, node) in plan.nodes.iter().enumerate() {
                    match &node.kind {
                        NodeKind::Source(cfg) => {
                            let fusion = &fusions[&i];
                            let chunks = shared.chunks[&i][local]
                                .lock()
                                .expect("receiver lock is never poisoned")
                                .take();
                            let chunks = chunks.expect("each worker takes its own receiver once");
                            if let (Some(c), Some(slot)) =
                                (&worker_cluster, shared.published[&i].get(local))
                            {
                                let published = slot
                                    .lock()
                                    .expect("receiver lock is never poisoned")
                                    .take()
                                    .expect("each worker takes its own receiver once");
                                cluster::render_clock_share(
                                    scope,
                                    &node.name,
                                    published,
                                    shared.publish_wakers[&i].clone(),
                                    shared.clocks[&i].clone(),
                                    shared.wakers[&i].clone(),
                                    worker_stop.clone(),
                                    c,
                                    workers,
                                    local,
                                );
                            }
                            let task = SourceTask {
                                name: node.name.clone(),
                                schema: cfg.schema.clone(),
                                chunks,
                                clock: shared.clocks[&i].clone(),
                                wakers: shared.wakers[&i].clone(),
                                worker: local,
                                time: plan.time,
                                event_time: cfg.event_time.map(|f| (f, cfg.max_lateness_ms)),
                                change: cfg.change.clone(),
                                chain: fusion.chain.clone(),
                                metrics: shared.metrics[&i].clone(),
                                dead: worker_dead.clone(),
                                on_error: cfg.on_error,
                                stop: worker_stop.clone(),
                                failure: worker_failure.clone(),
                                interrupt: worker_interrupt.clone(),
                                live: cfg.live.is_some(),
                                partitioned: cfg.live.as_ref().is_some_and(|l| {
                                    matches!(l.broker, crate::connectors::LiveBroker::Kafka { .. })
                                }),
                            };
                            colls[fusion.produces] = Some(match &fusion.aggregate {
                                Some(p) => {
                                    let partials = source::render(
                                        scope,
                                        task,
                                        CombineEmitter::new(p.clone(), plan.time.tick_len()),
                                    )
                                    .as_collection();
                                    finish_aggregate(partials, p.clone(), plan.time)
                                }
                                None => source::render(scope, task, RowEmitter::default())
                                    .as_collection(),
                            });
                        }
                        NodeKind::Transform(_) if fused[i] => {}
                        NodeKind::Transform(t) => {
                            let mut inputs = node
                                .inputs
                                .iter()
                                .map(|&j| colls[j].clone().expect("inputs render first"));
                            let first = inputs.next().expect("transforms have inputs");
                            colls[i] = Some(match &t.op {
                                TransformOp::Record(op) => {
                                    let op = op.clone();
                                    let mut scratch = Vec::new();
                                    first.flat_map(move |mut row| {
                                        op.apply(&mut row, &mut scratch).then_some(row)
                                    })
                                }
                                TransformOp::Union => inputs.fold(first, |acc, c| acc.concat(c)),
                                TransformOp::Rank(p) => rank::top_k(first, p.clone()),
                                TransformOp::Distinct(keep) => rank::distinct(first, keep.clone()),
                                TransformOp::Join(p) => {
                                    let right = inputs.next().expect("a join has two inputs");
                                    join::render(first, right, p.clone())
                                }
                                TransformOp::Aggregate(p) => finish_aggregate(
                                    combine(first, p.clone(), plan.time.tick_len()),
                                    p.clone(),
                                    plan.time,
                                ),
                            });
                        }
                        NodeKind::Sink(_) => {
                            let input = colls[node.inputs[0]].clone().expect("inputs render first");
                            render_sink(
                                input,
                                senders.get(&i).cloned(),
                                local,
                                to_process_zero,
                                shared.lines[&i].clone(),
                            );
                        }
                    }
                }
            });
            if let Some(c) = &worker_cluster {
                // Once the dataflow is complete everywhere, every process's sources have counted
                // and dead-lettered everything: send it to global worker 0.
                while worker.has_dataflows() {
                    worker.step_or_park(None);
                }
                let items = match (local, c.process) {
                    (0, p) if p != 0 => {
                        let report = cluster::Report {
                            sources: shared
                                .metrics
                                .iter()
                                .map(|(&i, m)| {
                                    let g = SourceMetrics::get;
                                    let counts = [
                                        g(&m.read),
                                        g(&m.emitted),
                                        g(&m.filtered),
                                        g(&m.dead),
                                        g(&m.skipped),
                                        g(&m.bytes),
                                    ];
                                    (i, counts)
                                })
                                .collect(),
                            dead: worker_dead.snapshot(),
                            failure: worker_failure
                                .lock()
                                .expect("failure lock is never poisoned")
                                .clone(),
                        };
                        vec![(0, report)]
                    }
                    _ => Vec::new(),
                };
                let reports = cluster::exchange_once(worker, items);
                if index == 0 {
                    shared
                        .reports
                        .lock()
                        .expect("report lock is never poisoned")
                        .extend(reports);
                }
            }
            Ok(())
        },
    )
    .map_err(|e| match cluster {
        Some(_) => RunError::Cluster(e),
        None => RunError::Worker(e),
    })?;
    // In a cluster, outputs are created only once every process agreed to start.
    let mut start_error = None;
    if cluster.is_some() {
        match verdict_rx.recv() {
            Ok(Ok(())) => {
                if let (Some(decision), Some(channels)) = (decision.take(), channels.take()) {
                    match start_outputs(&plan, opts, workers, decision, channels, &interrupt, &stop)
                    {
                        Ok(o) => outputs = Some(o),
                        Err(e) => {
                            // The other processes are running: stop this one's sources and let
                            // the run end, then report.
                            stop.store(true, Ordering::Relaxed);
                            start_error = Some(e);
                        }
                    }
                }
            }
            Ok(Err(why)) => start_error = Some(refusal.unwrap_or(RunError::Cluster(why))),
            Err(_) => {} // the worker failed; join reports it
        }
    }
    let results = guards.join();
    *shared
        .senders
        .lock()
        .expect("sender lock is never poisoned") = None;
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let _ = watcher.join();
    for id in signal_ids {
        signal_hook::low_level::unregister(id);
    }
    if let Some(e) = start_error {
        return Err(e);
    }
    for r in results {
        r.map_err(RunError::Worker)?.map_err(RunError::Cluster)?;
    }
    // The other processes' counters, dead letters and failures.
    for report in std::mem::take(
        &mut *shared
            .reports
            .lock()
            .expect("report lock is never poisoned"),
    ) {
        for (i, counts) in report.sources {
            if let Some(m) = shared.metrics.get(&i) {
                let [read, emitted, filtered, dead_n, skipped, bytes] = counts;
                for (c, n) in [
                    (&m.read, read),
                    (&m.emitted, emitted),
                    (&m.filtered, filtered),
                    (&m.dead, dead_n),
                    (&m.skipped, skipped),
                    (&m.bytes, bytes),
                ] {
                    c.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        dead.extend_letters(report.dead);
        if let Some(f) = report.failure {
            let mut mine = failure.lock().expect("failure lock is never poisoned");
            // The same rule as within a process: the earliest line wins.
            if mine.as_ref().is_none_or(|m| m.1 > f.1) {
                *mine = Some(f);
            }
            stop.store(true, Ordering::Relaxed);
        }
    }
    let (recovery, writers) = outputs.unwrap_or_default();

    let mut sinks = Vec::new();
    for (i, writer) in writers {
        let node = &plan.nodes[i];
        let NodeKind::Sink(cfg) = &node.kind else {
            unreachable!("writers are made for sinks")
        };
        let path = cfg.target.describe();
        let stats = writer.finish().map_err(|e| match &cfg.target {
            SinkTarget::Amqp { .. } | SinkTarget::Kafka { .. } => RunError::Broker(e.to_string()),
            _ => io_err("cannot write output file", &opts.out_dir.join(&path))(e),
        })?;
        sinks.push(SinkSummary {
            name: node.name.clone(),
            path,
            mode: match cfg.mode {
                SinkMode::Updates => "updates".into(),
                SinkMode::Snapshot => "snapshot".into(),
            },
            rows_written: stats.rows,
        });
    }
    let dead_path = opts.out_dir.join("dead_letters.jsonl");
    if writes {
        dead.write(&dead_path)
            .map_err(io_err("cannot write dead letters", &dead_path))?;
    }
    let dead_counts = dead.counts();
    let mut sources = Vec::new();
    for (i, (reader, _, m)) in readers {
        let node = &plan.nodes[i];
        let NodeKind::Source(cfg) = &node.kind else {
            unreachable!("readers are made for sources")
        };
        let live = reader.live_stats();
        // A live reader acknowledges what the sinks committed before it returns.
        reader.join();
        let dead_lettered: BTreeMap<String, u64> = dead_counts
            .iter()
            .filter(|((s, _), _)| *s == node.name)
            .map(|((_, r), n)| (r.clone(), *n))
            .collect();
        sources.push(SourceSummary {
            name: node.name.clone(),
            path: cfg.input_label(),
            read: SourceMetrics::get(&m.read),
            emitted: SourceMetrics::get(&m.emitted),
            filtered: SourceMetrics::get(&m.filtered),
            dead_lettered,
            skipped: SourceMetrics::get(&m.skipped),
            messages: live.map(|s| metrics::MessageCounts {
                consumed: SourceMetrics::get(&s.consumed),
                acknowledged: SourceMetrics::get(&s.acked),
                in_flight: s.in_flight(),
                duplicates: SourceMetrics::get(&s.duplicates),
                replayed: SourceMetrics::get(&s.replayed),
            }),
        });
    }
    let wall = started.elapsed().saturating_sub(setup).as_secs_f64();
    let cpu = metrics::cpu_seconds() - cpu_at_start;
    let read: u64 = sources.iter().map(|s| s.read).sum();
    let mut by_reason = BTreeMap::new();
    for ((_, r), n) in &dead_counts {
        *by_reason.entry(r.clone()).or_insert(0) += n;
    }
    let summary = RunSummary {
        pipeline: plan.name.clone(),
        workers,
        processes,
        records_read: read,
        records_emitted: sources.iter().map(|s| s.emitted).sum(),
        records_filtered: sources.iter().map(|s| s.filtered).sum(),
        records_dead_lettered: by_reason.values().sum(),
        records_skipped: sources.iter().map(|s| s.skipped).sum(),
        dead_letters_by_reason: by_reason,
        sources,
        sinks,
        wall_seconds: wall,
        pregenerate_seconds: setup.as_secs_f64(),
        cpu_seconds: cpu,
        nexmark_events,
        events_per_second: if wall > 0.0 { read as f64 / wall } else { 0.0 },
        dead_letters_file: "dead_letters.jsonl".into(),
        peak_memory_bytes: metrics::peak_memory_bytes(),
        interrupted: interrupt.signal().map(|s| match s {
            signal_hook::consts::SIGINT => "SIGINT".to_string(),
            signal_hook::consts::SIGTERM => "SIGTERM".to_string(),
            other => format!("signal {other}"),
        }),
        outputs_final_before: interrupt.bound().map(|b| {
            let mut text = String::new();
            plan.time.write_tick(b, &mut text);
            text
        }),
    };
    if writes {
        let summary_path = opts.out_dir.join("summary.json");
        let json = serde_json::to_string_pretty(&summary).expect("the summary always serializes");
        std::fs::write(&summary_path, json + "\n")
            .map_err(io_err("cannot write summary", &summary_path))?;
    }
    let failed = failure
        .lock()
        .expect("failure lock is never poisoned")
        .take();
    if let Some(r) = recovery.filter(|_| failed.is_none() && interrupt.bound().is_none()) {
        // Every output is written: nothing is left to resume.
        let log = opts.out_dir.join(recovery::DIR).join("commits.log");
        r.log
            .complete()
            .map_err(io_err("cannot write commit log", &log))?;
    }
    if let Some(e) = broker_error
        .lock()
        .expect("error lock is never poisoned")
        .take()
    {
        return Err(RunError::Broker(e));
    }
    // In a cluster, process 0 reports the failure of the whole run (with the other processes'
    // failures merged in); the others ended as planned.
    if let Some((source_name, line, detail)) = failed.filter(|_| writes) {
        return Err(RunError::BadRecord {
            source_name,
            line,
            detail,
        });
    }
    // Only process 0 knows the whole run's counts.
    for (s, node) in summary.sources.iter().filter(|_| writes).zip(
        plan.nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Source(_))),
    ) {
        let NodeKind::Source(cfg) = &node.kind else {
            continue;
        };
        let bad = s.skipped
            + s.dead_lettered
                .iter()
                .filter(|(r, _)| *r != "late")
                .map(|(_, n)| n)
                .sum::<u64>();
        if let Some(limit) = cfg.max_error_rate {
            if bad as f64 > limit * s.read as f64 {
                return Err(RunError::ErrorRate {
                    source_name: s.name.clone(),
                    bad,
                    read: s.read,
                    limit,
                });
            }
        }
    }
    Ok(summary)
}

/// Prints progress on stderr once a run has lasted a second: a bar on a terminal, a line every
/// few seconds otherwise.
type Progress = (
    u64,
    Arc<SourceMetrics>,
    Option<Arc<crate::connectors::live_source::LiveStats>>,
);

fn report_progress(sources: Vec<Progress>, done: Arc<AtomicBool>, started: Instant) {
    use std::io::IsTerminal;
    let total: u64 = sources.iter().map(|s| s.0).sum();
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(total.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last_line: Option<Instant> = None;
    let mut shown = false;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let bytes: u64 = sources.iter().map(|s| SourceMetrics::get(&s.1.bytes)).sum();
        let records: u64 = sources.iter().map(|s| SourceMetrics::get(&s.1.read)).sum();
        let rate = records as f64 / started.elapsed().as_secs_f64();
        let mut msg = format!("{records} records, {:.2} M events/s", rate / 1e6);
        let live: Vec<_> = sources.iter().filter_map(|s| s.2.as_ref()).collect();
        if !live.is_empty() {
            let get = |f: fn(&crate::connectors::live_source::LiveStats) -> u64| -> u64 {
                live.iter().map(|s| f(s)).sum()
            };
            msg.push_str(&format!(
                "; messages: {} consumed, {} acknowledged, {} in flight",
                get(|s| SourceMetrics::get(&s.consumed)),
                get(|s| SourceMetrics::get(&s.acked)),
                get(|s| s.in_flight()),
            ));
        }
        if tty {
            bar.set_position(bytes);
            bar.set_message(msg);
            shown = true;
        } else if last_line.map_or(started.elapsed() >= Duration::from_secs(2), |l| {
            l.elapsed() >= Duration::from_secs(5)
        }) {
            last_line = Some(Instant::now());
            if total > 0 {
                let pct = bytes as f64 * 100.0 / total as f64;
                eprintln!("progress: {pct:.0}% of input, {msg}");
            } else {
                eprintln!("progress: {msg}");
            }
        }
    }
    if shown {
        bar.finish_and_clear();
    }
}
