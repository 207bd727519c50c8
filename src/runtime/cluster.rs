//! Running one pipeline as several cooperating processes on timely's cluster mode.
//!
//! Every process runs the same pipeline file over the same inputs with the same number of
//! workers; global worker `g = process × workers + local`. The pieces specific to a cluster:
//! - **Start-up check** ([`Hello`]): before the dataflow is built, each process sends every
//!   worker its identity (pipeline and input hashes, worker count) and, from process 0, whether
//!   its outputs may be written. Every worker then judges the same set of messages the same way,
//!   so either all processes start or all refuse, naming the difference.
//! - **Input split**: chunk `k` of a file belongs to global worker `k % (processes × workers)`
//!   (see [`crate::connectors::file_source::ChunkShare`]).
//! - **Event-time clock** ([`render_clock_share`]): lateness is decided by the maximum event
//!   time of all earlier chunks in file order, so each process sends the maxima of the chunks it
//!   parsed to every other process's `ChunkClock`.
//! - **Outputs**: sink updates are exchanged to process 0's workers, whose writers alone write
//!   the output files; at the end every other process sends its counters and dead letters to
//!   global worker 0 ([`Report`]), so `dead_letters.jsonl` and `summary.json` are written there.
//! - **A lost peer**: timely's communication threads panic when a peer's connection closes;
//!   [`peer_lost`] turns that panic into a clear error, and the binary's panic hook exits at
//!   once instead of letting the workers hang.

use super::source::SourceWakers;
use crate::connectors::dead_letter::DeadLetter;
use crate::connectors::file_source::{ChunkClock, ChunkMax, Wake};
use crate::record::Tick;
use crossbeam_channel::{Receiver, TryRecvError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Scope;

/// This process's place in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Number of processes.
    pub processes: usize,
    /// This process's index, `0..processes`.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
}

/// Set once this process runs as part of a cluster (read by the panic hook).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether this process runs as part of a cluster.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// If `panic` (a panic's message) is timely's reaction to losing a peer process, the message to
/// show instead of an internal-bug report.
pub fn peer_lost(panic: &str) -> Option<String> {
    let lost = panic.contains("timely communication error")
        || panic.contains("poisoned")
        || panic.contains("MergeQueue");
    (active() && lost).then(|| {
        format!(
            "lost the connection to another process of the cluster ({panic}); it died or was \
             killed, so every process stops. The outputs are unfinished: run the same command on \
             every process again to resume"
        )
    })
}

/// Reads a host file: one `host:port` per line, in process order; blank lines and lines
/// starting with `#` are ignored. Returns the first `processes` addresses.
pub fn read_hostfile(path: &Path, processes: usize) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read host file `{}`: {e}", path.display()))?;
    let addresses: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .take(processes)
        .collect();
    if addresses.len() < processes {
        return Err(format!(
            "host file `{}` lists {} address{}, but --processes is {processes}; write one `host:port` per line",
            path.display(),
            addresses.len(),
            if addresses.len() == 1 { "" } else { "es" }
        ));
    }
    if let Some(bad) = addresses.iter().find(|a| !a.contains(':')) {
        return Err(format!(
            "host file `{}`: `{bad}` is not `host:port`",
            path.display()
        ));
    }
    Ok(addresses)
}

/// Starts this process's `workers` timely workers running `func`: in one process, or connected
/// to the other processes of `cluster` (which blocks until every process is connected).
pub(crate) fn execute<T, F>(
    workers: usize,
    cluster: Option<&Cluster>,
    func: F,
) -> Result<timely::communication::WorkerGuards<T>, String>
where
    T: Send + 'static,
    F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
{
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
    let Some(c) = cluster else {
        return timely::execute(timely::Config::process(workers), func);
    };
    ACTIVE.store(true, Ordering::Relaxed);
    let sockets = connect(c, workers)?;
    let hooks = timely::communication::Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, c.process, workers, hooks)
            .map_err(|e| format!("cannot start the cluster's communication threads: {e}"))?;
    timely::execute::execute_from(
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        Box::new(guard),
        timely::WorkerConfig::default(),
        func,
    )
}

/// The first bytes on every connection between two processes: "eventflw" in ASCII, then the
/// connecting process's index, the number of processes and the workers per process (big-endian
/// u64 each). The accepting process answers with one byte, [`AGREED`] or [`DISAGREED`].
const MAGIC: u64 = u64::from_be_bytes(*b"eventflw");
const AGREED: u8 = 1;
const DISAGREED: u8 = 2;

/// Connects this process to every other one: it connects to each lower-numbered process (retrying
/// every 50 ms while that one is not yet listening) and accepts a connection from each
/// higher-numbered one. Returns the sockets by process index (`None` for this one), ready for
/// timely's communication threads. (Timely's own connection code retries only once a second and
/// prints to stdout, where a sink may write.)
fn connect(c: &Cluster, workers: usize) -> Result<Vec<Option<std::net::TcpStream>>, String> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};
    let me = c.process;
    let mut sockets: Vec<Option<TcpStream>> = (0..c.processes).map(|_| None).collect();
    // Listen first, so that higher-numbered processes can connect while this one connects on.
    let listener = TcpListener::bind(&c.addresses[me]).map_err(|e| {
        format!(
            "process {me} cannot listen on `{}` (its line in the host file): {e}",
            c.addresses[me]
        )
    })?;
    let disagree = |j: usize, n: usize, w: usize| {
        format!(
            "process {j} runs with --processes {n} --workers {w}, process {me} with --processes {} --workers {workers}; give every process the same",
            c.processes
        )
    };
    // Sends the greeting; the answer says whether the other process agrees on the layout.
    let hello = |stream: &mut TcpStream| -> std::io::Result<bool> {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&MAGIC.to_be_bytes());
        bytes[8..16].copy_from_slice(&(me as u64).to_be_bytes());
        bytes[16..24].copy_from_slice(&(c.processes as u64).to_be_bytes());
        bytes[24..].copy_from_slice(&(workers as u64).to_be_bytes());
        stream.write_all(&bytes)?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer)?;
        Ok(answer[0] == AGREED)
    };
    let patience = Duration::from_secs(10);
    for (j, address) in c.addresses.iter().enumerate().take(me) {
        let started = Instant::now();
        let mut told = false;
        let stream = loop {
            match TcpStream::connect(address) {
                Ok(mut s) => {
                    let _ = s.set_nodelay(true);
                    let agreed = hello(&mut s)
                        .map_err(|e| format!("cannot reach process {j} at `{address}`: {e}"))?;
                    if !agreed {
                        return Err(format!(
                            "process {j} at `{address}` runs another layout (--processes, --workers); give every process the same"
                        ));
                    }
                    break s;
                }
                Err(e) => {
                    if !told && started.elapsed() > patience {
                        told = true;
                        eprintln!("eventflow: process {me} still waiting for process {j} at `{address}` ({e})");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        sockets[j] = Some(stream);
    }
    let mut missing = c.processes - me - 1;
    while missing > 0 {
        let (mut stream, from) = listener
            .accept()
            .map_err(|e| format!("process {me} cannot accept connections: {e}"))?;
        let mut bytes = [0u8; 32];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        if stream.read_exact(&mut bytes).is_err() {
            continue; // not one of ours
        }
        let word =
            |i: usize| u64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (magic, j, n, w) = (
            word(0),
            word(1) as usize,
            word(2) as usize,
            word(3) as usize,
        );
        if magic != MAGIC {
            eprintln!("eventflow: process {me} ignored a connection from {from} that is not an eventflow process");
            continue;
        }
        if n != c.processes || w != workers {
            let _ = stream.write_all(&[DISAGREED]);
            return Err(disagree(j, n, w));
        }
        if j <= me || j >= c.processes || sockets[j].is_some() {
            let _ = stream.write_all(&[DISAGREED]);
            return Err(format!(
                "a process at {from} connected as process {j}, which is not expected here; check that every process has its own --process index"
            ));
        }
        stream
            .write_all(&[AGREED])
            .map_err(|e| format!("cannot answer process {j} at {from}: {e}"))?;
        let _ = stream.set_read_timeout(None);
        let _ = stream.set_nodelay(true);
        sockets[j] = Some(stream);
        missing -= 1;
    }
    Ok(sockets)
}

/// What a process tells every worker at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sending process.
    pub process: usize,
    /// Its workers per process.
    pub workers: usize,
    /// xxh3 of the pipeline file's text, in hex.
    pub pipeline: String,
    /// Per source: (name, input length, xxh3 of the input), in plan order.
    pub inputs: Vec<(String, u64, String)>,
    /// Process 0 only: why the run may not start (its outputs cannot be written, or `--resume`
    /// cannot be honoured).
    pub refusal: Option<String>,
}

impl Hello {
    /// This process's identity.
    pub fn of(
        process: usize,
        workers: usize,
        manifest: &super::manifest::Manifest,
        refusal: Option<String>,
    ) -> Hello {
        Hello {
            process,
            workers,
            pipeline: manifest.pipeline.xxh3.clone(),
            inputs: manifest
                .inputs
                .iter()
                .map(|i| (i.source.clone(), i.length, i.xxh3.clone()))
                .collect(),
            refusal,
        }
    }

    /// Whether the cluster may start, given every process's hello. Every worker receives the
    /// same hellos, so every worker decides the same.
    pub fn judge(all: &[Hello], processes: usize) -> Result<(), String> {
        let mut all = all.to_vec();
        all.sort_by_key(|h| h.process);
        all.dedup_by_key(|h| h.process);
        if all.len() != processes {
            return Err(format!(
                "expected {processes} processes at start-up, heard from {}",
                all.len()
            ));
        }
        if let Some(h) = all.iter().find(|h| h.refusal.is_some()) {
            return Err(format!(
                "process {} refused to start: {}",
                h.process,
                h.refusal.as_deref().unwrap_or_default()
            ));
        }
        // Compare everyone with process 0, so every process names the same difference.
        let first = &all[0];
        for h in &all[1..] {
            let (a, b) = (first.process, h.process);
            if h.workers != first.workers {
                return Err(format!(
                    "process {a} runs {} workers and process {b} runs {}; give every process the same --workers",
                    first.workers, h.workers
                ));
            }
            if h.pipeline != first.pipeline {
                return Err(format!(
                    "process {a} and process {b} run different pipeline files (xxh3 {} vs {}); every process must run the same file",
                    first.pipeline, h.pipeline
                ));
            }
            if h.inputs.len() != first.inputs.len() {
                return Err(format!(
                    "process {a} and process {b} have different sources"
                ));
            }
            for (x, y) in first.inputs.iter().zip(&h.inputs) {
                if x != y {
                    let how = if x.1 != y.1 {
                        format!("length {} vs {}", x.1, y.1)
                    } else {
                        "same length, different contents".into()
                    };
                    return Err(format!(
                        "the input of source `{}` differs between process {a} and process {b} ({how}); every process must read the same bytes",
                        x.0
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a process other than 0 sends to global worker 0 once its dataflow is complete.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Per source node (plan index): read, emitted, filtered, dead, skipped, bytes.
    pub sources: Vec<(usize, [u64; 6])>,
    /// Its dead letters.
    pub dead: Vec<DeadLetter>,
    /// Its first malformed record under `on_error = "fail"`: (source, line, detail).
    pub failure: Option<(String, u64, String)>,
}

/// Runs a one-shot dataflow on this worker: sends each `(target worker, item)` to its target and
/// returns the items this worker received, once every worker of every process has sent its own.
pub(crate) fn exchange_once<D>(worker: &mut timely::worker::Worker, items: Vec<(u64, D)>) -> Vec<D>
where
    D: timely::ExchangeData + Clone,
{
    let got: Rc<RefCell<Vec<D>>> = Rc::default();
    let sink_got = got.clone();
    worker.dataflow::<Tick, _, _>(|scope| {
        let mut items = Some(items);
        let stream = source::<_, CapacityContainerBuilder<Vec<(u64, D)>>, _, _>(
            scope,
            "Send",
            move |cap, _info| {
                let mut cap = Some(cap);
                move |output| {
                    if let (Some(c), Some(mut items)) = (cap.take(), items.take()) {
                        output.session(&c).give_container(&mut items);
                    }
                }
            },
        );
        stream.sink(
            Exchange::new(|x: &(u64, D)| x.0),
            "Receive",
            move |(input, _frontier)| {
                input.for_each(|_cap, data| {
                    sink_got.borrow_mut().extend(data.drain(..).map(|(_, d)| d))
                });
            },
        );
    });
    while worker.has_dataflows() {
        worker.step_or_park(None);
    }
    got.take()
}

/// A chunk index that means "stop": a source of the sending process failed
/// (`on_error = "fail"`), so its chunks after the failure will never be published.
const STOP: u64 = u64::MAX;

/// Sends the event-time maxima of the chunks this worker's parser published to the clocks of
/// the other processes (to their local worker 0), and publishes the maxima that arrive from
/// them into this process's `clock`, waking the local source operators.
///
/// A failing run (`stop`) is announced too: the receivers stop their sources, which would
/// otherwise wait for maxima of chunks the failed process never parses.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_clock_share(
    scope: Scope<'_, Tick>,
    name: &str,
    published: Receiver<ChunkMax>,
    publish_wakers: Arc<SourceWakers>,
    clock: Arc<ChunkClock>,
    source_wakers: Arc<SourceWakers>,
    stop: Arc<AtomicBool>,
    cluster: &Cluster,
    workers: usize,
    local: usize,
) {
    let stop_in = stop.clone();
    let targets: Vec<u64> = (0..cluster.processes)
        .filter(|&p| p != cluster.process)
        .map(|p| (p * workers) as u64)
        .collect();
    let stream = source::<_, CapacityContainerBuilder<Vec<(u64, u64, Option<i64>)>>, _, _>(
        scope,
        &format!("ClockShare({name})"),
        move |cap, info| {
            publish_wakers.install(
                local,
                scope.worker().sync_activator_for(info.address.to_vec()),
            );
            let mut cap = Some(cap);
            let mut announced = false;
            move |output| {
                let Some(c) = cap.as_ref() else { return };
                let mut done = false;
                {
                    let mut session = output.session(c);
                    if !announced && stop.load(Ordering::Relaxed) {
                        announced = true;
                        for &t in &targets {
                            session.give((t, STOP, None));
                        }
                    }
                    loop {
                        match published.try_recv() {
                            Ok((index, max)) => {
                                for &t in &targets {
                                    session.give((t, index, max));
                                }
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                done = true;
                                break;
                            }
                        }
                    }
                }
                if done {
                    cap = None;
                }
            }
        },
    );
    stream.sink(
        Exchange::new(|x: &(u64, u64, Option<i64>)| x.0),
        &format!("ClockApply({name})"),
        move |(input, _frontier)| {
            let mut any = false;
            input.for_each(|_cap, data| {
                for (_, index, max) in data.drain(..) {
                    if index == STOP {
                        stop_in.store(true, Ordering::Relaxed);
                    } else {
                        clock.publish(index, max);
                    }
                    any = true;
                }
            });
            if any {
                source_wakers.wake_all();
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(process: usize) -> Hello {
        Hello {
            process,
            workers: 2,
            pipeline: "ab".into(),
            inputs: vec![("orders".into(), 10, "cd".into())],
            refusal: None,
        }
    }

    #[test]
    fn identical_processes_start() {
        let all = [hello(1), hello(0)];
        assert_eq!(Hello::judge(&all, 2), Ok(()));
    }

    #[test]
    fn a_different_input_or_pipeline_or_worker_count_refuses() {
        let mut other = hello(1);
        other.inputs[0].2 = "ce".into();
        let err = Hello::judge(&[hello(0), other], 2).unwrap_err();
        assert!(
            err.contains("source `orders`") && err.contains("same length"),
            "{err}"
        );
        let mut other = hello(1);
        other.pipeline = "xx".into();
        let err = Hello::judge(&[hello(0), other], 2).unwrap_err();
        assert!(err.contains("different pipeline files"), "{err}");
        let mut other = hello(1);
        other.workers = 3;
        let err = Hello::judge(&[hello(0), other], 2).unwrap_err();
        assert!(err.contains("same --workers"), "{err}");
        let mut first = hello(0);
        first.refusal = Some("cannot resume".into());
        let err = Hello::judge(&[first, hello(1)], 2).unwrap_err();
        assert!(
            err.contains("process 0 refused to start: cannot resume"),
            "{err}"
        );
    }

    #[test]
    fn host_files_skip_blanks_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(
            &path,
            "# cluster\n127.0.0.1:4000\n\n127.0.0.1:4001\n10.0.0.3:4002\n",
        )
        .unwrap();
        assert_eq!(
            read_hostfile(&path, 2).unwrap(),
            vec!["127.0.0.1:4000".to_string(), "127.0.0.1:4001".into()]
        );
        let err = read_hostfile(&path, 4).unwrap_err();
        assert!(err.contains("lists 3 addresses"), "{err}");
    }
}
