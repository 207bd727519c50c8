//! `eventflow bench`: runs a pipeline several times at several worker counts and reports
//! throughput and peak memory.
//!
//! Every run is a separate child process (`eventflow run FILE --workers W --out TMP --quiet`),
//! so each run starts cold and its peak memory is its own. The numbers come from the child's
//! `summary.json` ([`RunSummary`](crate::runtime::RunSummary)): `wall_seconds` excludes process
//! start-up and pipeline planning.
//!
//! With [`BenchOptions::events`](crate::bench::BenchOptions::events), the input is generated (orders or clickstream, detected from
//! each source's schema) into a cache folder and a copy of the pipeline whose source paths point
//! at it is run instead of the original.
//!
//! For pipelines whose sources are all `nexmark`, `events` instead sets each source's `events`
//! (the length of the Nexmark sequence), and a run's events are that sequence's events of all
//! kinds (the usual Nexmark unit), not only the records the pipeline read.
//!
//! Outputs: a table per worker count ([`BenchReport::render_table`](crate::bench::BenchReport::render_table)), `bench.csv` with one row
//! per run and `bench.svg`, a bar chart of the median events/s per worker count with min–max
//! whiskers.

mod calibration;

use crate::generate::clickstream::{write_clickstream_csv, ClickstreamConfig};
use crate::generate::{write_orders_csv, OrdersConfig};
use crate::spec::{PipelineSpec, Role, TomlValue};
use anyhow::{bail, ensure, Context};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Seed of the generated benchmark inputs.
pub const SEED: u64 = 7;

/// What to benchmark and how.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Generate this many input events instead of reading the pipeline's own inputs.
    pub events: Option<u64>,
    /// Worker counts to run, in order.
    pub workers: Vec<usize>,
    /// Runs per worker count.
    pub repeat: usize,
    /// Where `bench.csv` and `bench.svg` go (default: `out/bench/<pipeline name>`).
    pub out_dir: Option<PathBuf>,
    /// Cache folder for generated inputs, reused between benchmarks.
    pub data_dir: PathBuf,
    /// The `eventflow` binary that runs each child (the CLI passes `std::env::current_exe()`).
    pub exe: PathBuf,
    /// Print a line on stderr per run.
    pub progress: bool,
}

impl BenchOptions {
    /// Defaults: the pipeline's own inputs, workers 1 and 2, 3 runs each, generated data in
    /// `data/generated/bench`, progress on.
    pub fn new(pipeline: impl Into<PathBuf>, exe: impl Into<PathBuf>) -> BenchOptions {
        BenchOptions {
            pipeline: pipeline.into(),
            events: None,
            workers: vec![1, 2],
            repeat: 3,
            out_dir: None,
            data_dir: PathBuf::from("data/generated/bench"),
            exe: exe.into(),
            progress: true,
        }
    }
}

/// One child run.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRun {
    /// Worker threads.
    pub workers: usize,
    /// Run number within its worker count, from 1.
    pub run: usize,
    /// Records read (the run's `records_read`).
    pub events: u64,
    /// Wall-clock seconds of the run, from the child's summary.
    pub wall_seconds: f64,
    /// Records read per wall-clock second.
    pub events_per_second: f64,
    /// CPU seconds (all threads) the child used in `wall_seconds`.
    pub cpu_seconds: f64,
    /// Peak resident memory of the child (bytes; 0 where unknown).
    pub peak_memory_bytes: u64,
    /// What `workers` plain threads did, times the work of one, measured just before the run
    /// (1.0 for one worker): the most the run could scale by on this machine at that moment.
    pub machine_speedup: f64,
}

/// The runs of one worker count, summarised.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchGroup {
    /// Worker threads.
    pub workers: usize,
    /// Number of runs.
    pub runs: usize,
    /// Median events/s over the runs.
    pub median: f64,
    /// Slowest run's events/s.
    pub min: f64,
    /// Fastest run's events/s.
    pub max: f64,
    /// Median events/s divided by the cores the run could use: `min(workers, cores)`.
    pub per_core: f64,
    /// Largest peak memory over the runs (bytes).
    pub peak_memory_bytes: u64,
    /// Median events per CPU-second (user + system time of all the run's threads): what one
    /// fully used core processes, steadier than wall time on a shared machine.
    pub per_cpu_second: f64,
    /// Median of the runs' [`BenchRun::machine_speedup`].
    pub machine_speedup: f64,
}

/// The result of a benchmark.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Pipeline name.
    pub pipeline: String,
    /// The generated input size, if any.
    pub generated_events: Option<u64>,
    /// For Nexmark pipelines: whether the generator's cost is in the timings.
    pub generator: Option<&'static str>,
    /// The input file each source read, when generated.
    pub inputs: Vec<PathBuf>,
    /// Cores available to this process (`std::thread::available_parallelism`).
    pub cores: usize,
    /// The git commit the binary was built from, with `-dirty` when tracked files had
    /// uncommitted changes; `None` when it was not built in a git checkout.
    pub commit: Option<String>,
    /// Every run, in order.
    pub runs: Vec<BenchRun>,
    /// One summary per worker count, in the order asked for.
    pub groups: Vec<BenchGroup>,
    /// The written `bench.csv`.
    pub csv_path: PathBuf,
    /// The written `bench.svg`.
    pub svg_path: PathBuf,
}

/// The fields of `summary.json` that the benchmark reads.
#[derive(Deserialize)]
struct ChildSummary {
    records_read: u64,
    #[serde(default)]
    nexmark_events: Option<u64>,
    #[serde(default)]
    pregenerate_seconds: f64,
    #[serde(default)]
    cpu_seconds: f64,
    wall_seconds: f64,
    events_per_second: f64,
    peak_memory_bytes: u64,
    workers: usize,
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "eventflow-bench-{}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create temp folder `{}`", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the benchmark, writes `bench.csv` and `bench.svg`, and returns the report.
pub fn run_bench(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    ensure!(!opts.workers.is_empty(), "no worker counts given");
    ensure!(
        opts.workers.iter().all(|&w| w > 0),
        "worker counts must be at least 1"
    );
    ensure!(opts.repeat > 0, "--repeat must be at least 1");
    let spec = PipelineSpec::load(&opts.pipeline).map_err(|(_, diags)| {
        anyhow::anyhow!(
            "`{}` is not a valid pipeline ({} error(s); `eventflow check` shows them)",
            opts.pipeline.display(),
            diags.iter().filter(|d| d.is_error()).count()
        )
    })?;
    let plan = crate::plan::build(&spec).map_err(|_| {
        anyhow::anyhow!(
            "`{}` is not a valid pipeline (`eventflow check` shows why)",
            opts.pipeline.display()
        )
    })?;
    let name = plan.name.clone();
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| Path::new("out/bench").join(&name));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let commit = build_commit();
    let tmp = TempDir::new()?;

    let nexmark = nexmark_sources(&spec)?;
    let (pipeline_file, inputs) = match opts.events {
        Some(n) if nexmark => {
            let copy = tmp.0.join("pipeline.toml");
            std::fs::write(&copy, rewrite_nexmark_events(&spec, n)?)
                .with_context(|| format!("cannot write `{}`", copy.display()))?;
            (copy, Vec::new())
        }
        Some(n) => {
            let inputs = generate_inputs(&spec, n, &opts.data_dir, opts.progress)?;
            let copy = tmp.0.join("pipeline.toml");
            std::fs::write(&copy, rewrite_source_paths(&spec, &inputs)?)
                .with_context(|| format!("cannot write `{}`", copy.display()))?;
            (copy, inputs)
        }
        None => (opts.pipeline.clone(), Vec::new()),
    };

    let total = opts.workers.len() * opts.repeat;
    let mut runs = Vec::with_capacity(total);
    let mut generator = None;
    // Worker counts take turns (1, 2, 1, 2, …) so that a machine whose speed drifts during
    // the bench slows every count alike.
    for run in 1..=opts.repeat {
        for &workers in &opts.workers {
            let label = format!(
                "run {}/{total} ({workers} worker{}, #{run})",
                runs.len() + 1,
                if workers == 1 { "" } else { "s" }
            );
            let out = tmp.0.join(format!("w{workers}-r{run}"));
            // The previous run's output may still be on its way to disk: finish that first, so
            // that it does not slow this run.
            #[cfg(unix)]
            // SAFETY: `sync` takes no arguments and cannot fail.
            unsafe {
                libc::sync()
            };
            let machine_speedup = calibration::machine_speedup(workers);
            let summary = run_child(&opts.exe, &pipeline_file, workers, &out, &label)?;
            let _ = std::fs::remove_dir_all(&out);
            ensure!(
                summary.workers == workers,
                "{label}: the child ran with {} workers",
                summary.workers
            );
            // Nexmark throughput counts the sequence's events of every kind.
            let (events, eps) = match summary.nexmark_events {
                Some(n) if summary.wall_seconds > 0.0 => (n, n as f64 / summary.wall_seconds),
                _ => (summary.records_read, summary.events_per_second),
            };
            if summary.nexmark_events.is_some() {
                generator = Some(if summary.pregenerate_seconds > 0.0 {
                    "generator excluded (events pregenerated before the clock starts)"
                } else {
                    "generator included (events generated while running)"
                });
            }
            if opts.progress {
                eprintln!(
                    "{label}: {} events in {:.2} s, {} events/s, peak {:.0} MB",
                    events,
                    summary.wall_seconds,
                    group_digits(eps),
                    mb(summary.peak_memory_bytes)
                );
            }
            runs.push(BenchRun {
                workers,
                run,
                events,
                wall_seconds: summary.wall_seconds,
                events_per_second: eps,
                cpu_seconds: summary.cpu_seconds,
                peak_memory_bytes: summary.peak_memory_bytes,
                machine_speedup,
            });
        }
    }
    // Reported grouped by worker count, in the order asked for.
    runs.sort_by_key(|r| (opts.workers.iter().position(|&w| w == r.workers), r.run));
    let groups = opts
        .workers
        .iter()
        .map(|&w| summarise(w, &runs, cores))
        .collect();

    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create `{}`", out_dir.display()))?;
    let report = BenchReport {
        pipeline: name,
        generated_events: opts.events,
        generator,
        inputs,
        cores,
        commit,
        runs,
        groups,
        csv_path: out_dir.join("bench.csv"),
        svg_path: out_dir.join("bench.svg"),
    };
    write_csv(&report).with_context(|| format!("cannot write `{}`", report.csv_path.display()))?;
    std::fs::write(&report.svg_path, report.to_svg())
        .with_context(|| format!("cannot write `{}`", report.svg_path.display()))?;
    Ok(report)
}

/// Runs one child `eventflow run` and reads its `summary.json`.
fn run_child(
    exe: &Path,
    pipeline: &Path,
    workers: usize,
    out: &Path,
    label: &str,
) -> anyhow::Result<ChildSummary> {
    let output = Command::new(exe)
        .arg("run")
        .arg(pipeline)
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("{label}: cannot start `{}`", exe.display()))?;
    if !output.status.success() {
        bail!(
            "{label} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{label}: cannot read `{}`", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{label}: invalid `{}`", path.display()))
}

/// The generated datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dataset {
    Orders,
    Clickstream,
}

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::Orders => "orders",
            Dataset::Clickstream => "clickstream",
        }
    }
}

/// Which dataset fits a source, from its type and schema field names.
fn detect_dataset(node: &crate::spec::NodeSpec) -> anyhow::Result<Dataset> {
    let source = &node.name.value;
    ensure!(
        node.kind.value == "csv",
        "source `{source}` is `{}`; --events generates CSV files, so it works with csv sources only",
        node.kind.value
    );
    if let Some((_, d)) = node.params.get("delimiter") {
        ensure!(
            matches!(&d.value, TomlValue::Str(s) if s == ","),
            "source `{source}` sets a `delimiter`; generated files are comma-separated"
        );
    }
    let fields: Vec<&str> = match node.params.get("schema").map(|(_, v)| &v.value) {
        Some(TomlValue::Table(t)) => t.entries.iter().map(|(k, _)| k.value.as_str()).collect(),
        _ => Vec::new(),
    };
    let has = |f: &str| fields.contains(&f);
    if has("order_id") && has("amount") {
        Ok(Dataset::Orders)
    } else if has("event_id") && has("page") {
        Ok(Dataset::Clickstream)
    } else {
        bail!(
            "cannot tell which dataset to generate for source `{source}`: its schema has neither \
             `order_id` and `amount` (orders) nor `event_id` and `page` (clickstream)"
        )
    }
}

/// Generates (or reuses) one input file per source, in the order of the sources.
fn generate_inputs(
    spec: &PipelineSpec,
    events: u64,
    data_dir: &Path,
    progress: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    for node in spec.nodes.iter().filter(|n| n.role == Role::Source) {
        let dataset = detect_dataset(node)?;
        let path = data_dir.join(format!("{}_{events}_{SEED}.csv", dataset.name()));
        if !path.exists() {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create `{}`", data_dir.display()))?;
            if progress {
                eprintln!(
                    "generating {events} {} events into {}",
                    dataset.name(),
                    path.display()
                );
            }
            // Written under a temporary name and renamed, so an interrupted or concurrent
            // generation never leaves a truncated file under the cached name.
            let part = path.with_extension(format!("csv.part{}", std::process::id()));
            let written = (|| -> std::io::Result<()> {
                let file = std::fs::File::create(&part)?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
                match dataset {
                    Dataset::Orders => {
                        let cfg = OrdersConfig {
                            events,
                            seed: SEED,
                            ..Default::default()
                        };
                        write_orders_csv(&cfg, &mut w)?;
                    }
                    Dataset::Clickstream => {
                        let cfg = ClickstreamConfig {
                            events,
                            seed: SEED,
                            ..Default::default()
                        };
                        write_clickstream_csv(&cfg, &mut w)?;
                    }
                }
                std::io::Write::flush(&mut w)?;
                std::fs::rename(&part, &path)
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_file(&part);
                return Err(e).with_context(|| format!("cannot write `{}`", path.display()));
            }
        } else if progress {
            eprintln!("reusing {}", path.display());
        }
        let abs = std::fs::canonicalize(&path)
            .with_context(|| format!("cannot resolve `{}`", path.display()))?;
        inputs.push(abs);
    }
    ensure!(!inputs.is_empty(), "the pipeline has no sources");
    Ok(inputs)
}

/// Whether the pipeline's sources are `nexmark` sources (all of them; a mix is an error).
fn nexmark_sources(spec: &PipelineSpec) -> anyhow::Result<bool> {
    let kinds: Vec<&str> = spec
        .nodes
        .iter()
        .filter(|n| n.role == Role::Source)
        .map(|n| n.kind.value.as_str())
        .collect();
    let nexmark = kinds.iter().filter(|k| **k == "nexmark").count();
    ensure!(
        nexmark == 0 || nexmark == kinds.len(),
        "the pipeline mixes `nexmark` and file sources; --events cannot size both"
    );
    Ok(nexmark > 0)
}

/// The pipeline text with every `nexmark` source's `events` set to `events` (added after its
/// `type` when absent), checked by parsing the result again.
fn rewrite_nexmark_events(spec: &PipelineSpec, events: u64) -> anyhow::Result<String> {
    let mut edits = Vec::new();
    for node in spec.nodes.iter().filter(|n| n.role == Role::Source) {
        match node.params.get("events") {
            Some((_, value)) => edits.push((value.span.clone(), events.to_string())),
            None => {
                let end = node.kind.span.end;
                edits.push((end..end, format!("\nevents = {events}")));
            }
        }
    }
    let (out, reparsed) = apply_edits(spec, edits)?;
    for node in reparsed.nodes.iter().filter(|n| n.role == Role::Source) {
        ensure!(
            matches!(node.params.get("events").map(|(_, v)| &v.value), Some(TomlValue::Int(n)) if *n as u64 == events),
            "the rewritten pipeline does not set `events` of source `{}`",
            node.name.value
        );
    }
    Ok(out)
}

/// The pipeline text with `edits` (span, replacement) applied, and that text parsed again.
fn apply_edits(
    spec: &PipelineSpec,
    mut edits: Vec<(std::ops::Range<usize>, String)>,
) -> anyhow::Result<(String, PipelineSpec)> {
    // From the end, so earlier spans stay valid.
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut out = spec.file.text.clone();
    for (span, replacement) in edits {
        out.replace_range(span, &replacement);
    }
    let copy = crate::diag::SourceFile {
        name: spec.file.name.clone(),
        text: out.clone(),
    };
    let reparsed = PipelineSpec::parse(copy, spec.dir.clone())
        .map_err(|_| anyhow::anyhow!("the rewritten pipeline does not parse"))?;
    Ok((out, reparsed))
}

/// The pipeline text with each source's `path` value replaced by the matching input (quoted),
/// checked by parsing the result again.
fn rewrite_source_paths(spec: &PipelineSpec, inputs: &[PathBuf]) -> anyhow::Result<String> {
    let text = &spec.file.text;
    let sources: Vec<_> = spec
        .nodes
        .iter()
        .filter(|n| n.role == Role::Source)
        .collect();
    ensure!(sources.len() == inputs.len(), "one input per source");
    let mut edits = Vec::new();
    for (node, input) in sources.iter().zip(inputs) {
        let Some((_, value)) = node.params.get("path") else {
            bail!("source `{}` has no `path`", node.name.value);
        };
        let span = value.span.clone();
        let literal = text.get(span.clone()).unwrap_or_default();
        ensure!(
            matches!(value.value, TomlValue::Str(_))
                && (literal.starts_with('"') || literal.starts_with('\'')),
            "the `path` of source `{}` is not a string literal",
            node.name.value
        );
        let input = input
            .to_str()
            .with_context(|| format!("`{}` is not valid UTF-8", input.display()))?;
        edits.push((span, toml_string(input)));
    }
    // Check that every source now reads the generated file.
    let (out, reparsed) = apply_edits(spec, edits)?;
    let paths: Vec<Option<&str>> = reparsed
        .nodes
        .iter()
        .filter(|n| n.role == Role::Source)
        .map(|n| match n.params.get("path").map(|(_, v)| &v.value) {
            Some(TomlValue::Str(s)) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let expected: Vec<Option<&str>> = inputs.iter().map(|p| p.to_str()).collect();
    ensure!(
        paths == expected,
        "the rewritten pipeline reads {paths:?}, not {expected:?}"
    );
    Ok(out)
}

/// A TOML string literal holding `s`: a literal string when possible, else an escaped basic one.
fn toml_string(s: &str) -> String {
    if !s.contains('\'') && !s.chars().any(char::is_control) {
        return format!("'{s}'");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The commit this binary was built from (`build.rs`), which the children run too.
fn build_commit() -> Option<String> {
    option_env!("EVENTFLOW_BUILD_COMMIT").map(str::to_string)
}

fn summarise(workers: usize, runs: &[BenchRun], cores: usize) -> BenchGroup {
    let these: Vec<&BenchRun> = runs.iter().filter(|r| r.workers == workers).collect();
    let eps: Vec<f64> = these.iter().map(|r| r.events_per_second).collect();
    let min = eps.iter().copied().reduce(f64::min).unwrap_or(0.0);
    let max = eps.iter().copied().reduce(f64::max).unwrap_or(0.0);
    let median_eps = median(eps);
    BenchGroup {
        workers,
        runs: these.len(),
        median: median_eps,
        min,
        max,
        per_core: median_eps / workers.min(cores).max(1) as f64,
        peak_memory_bytes: these.iter().map(|r| r.peak_memory_bytes).max().unwrap_or(0),
        per_cpu_second: median(
            these
                .iter()
                .filter(|r| r.cpu_seconds > 0.0)
                .map(|r| r.events as f64 / r.cpu_seconds)
                .collect(),
        ),
        machine_speedup: median(these.iter().map(|r| r.machine_speedup).collect()),
    }
}

/// The median (the mean of the middle two for an even count; 0 for none).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn write_csv(report: &BenchReport) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(&report.csv_path)?;
    w.write_record([
        "pipeline",
        "events",
        "workers",
        "run",
        "wall_seconds",
        "events_per_second",
        "peak_memory_bytes",
        "cores",
        "commit",
        "cpu_seconds",
        "machine_speedup",
    ])?;
    for r in &report.runs {
        w.write_record([
            report.pipeline.clone(),
            r.events.to_string(),
            r.workers.to_string(),
            r.run.to_string(),
            format!("{:.6}", r.wall_seconds),
            format!("{:.1}", r.events_per_second),
            r.peak_memory_bytes.to_string(),
            report.cores.to_string(),
            report.commit.clone().unwrap_or_default(),
            format!("{:.6}", r.cpu_seconds),
            format!("{:.3}", r.machine_speedup),
        ])?;
    }
    w.flush()?;
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// `1234567.8` → `1,234,568`.
fn group_digits(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1234567.0` → `1.23M`, for chart labels.
fn short_number(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl BenchReport {
    /// The header line: pipeline, input size, cores and commit.
    pub fn header(&self) -> String {
        let events = match (self.generated_events, self.runs.first()) {
            (_, Some(r)) if self.generator.is_some() => format!("{} Nexmark events", r.events),
            (Some(n), _) => format!("{n} generated events"),
            (None, Some(r)) => format!("{} events", r.events),
            (None, None) => "no runs".into(),
        };
        format!(
            "bench `{}`: {events}{}, {} cores, commit {}",
            self.pipeline,
            self.generator.map(|g| format!(", {g}")).unwrap_or_default(),
            self.cores,
            self.commit.as_deref().unwrap_or("unknown")
        )
    }

    /// The header line and a table with one row per worker count.
    pub fn render_table(&self) -> String {
        let mut out = self.header();
        out.push('\n');
        let _ = writeln!(
            out,
            "{:>7}  {:>4}  {:>14}  {:>14}  {:>14}  {:>14}  {:>14}  {:>9}  {:>7}  {:>9}",
            "workers",
            "runs",
            "events/s med",
            "min",
            "max",
            "per core",
            "per CPU-s",
            "peak MB",
            "vs 1 w",
            "machine ×"
        );
        let one = self
            .groups
            .iter()
            .find(|g| g.workers == 1)
            .map(|g| g.median);
        for g in &self.groups {
            let vs_one = match one {
                Some(m) if m > 0.0 => format!("{:.2}", g.median / m),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:>7}  {:>4}  {:>14}  {:>14}  {:>14}  {:>14}  {:>14}  {:>9.0}  {:>7}  {:>9.2}",
                g.workers,
                g.runs,
                group_digits(g.median),
                group_digits(g.min),
                group_digits(g.max),
                group_digits(g.per_core),
                group_digits(g.per_cpu_second),
                mb(g.peak_memory_bytes),
                vs_one,
                g.machine_speedup
            );
        }
        if self.groups.iter().any(|g| g.workers > 1) {
            out.push_str(
                "vs 1 w: median events/s over 1 worker's; machine ×: what as many plain threads \
                 did at once, times the work of one, measured before each run (median): the \
                 most this machine allowed\n",
            );
        }
        out
    }

    /// A bar chart of the median events/s per worker count, with min–max whiskers.
    pub fn to_svg(&self) -> String {
        let (w, h) = (520.0, 320.0);
        let (left, right, top, bottom) = (80.0, 20.0, 40.0, 50.0);
        let plot_w = w - left - right;
        let plot_h = h - top - bottom;
        let top_value = self.groups.iter().map(|g| g.max).fold(0.0, f64::max);
        // A round axis maximum: 1, 2, 2.5 or 5 times a power of ten, with 5 gridlines.
        let raw_step = (top_value * 1.05 / 5.0).max(1.0);
        let magnitude = 10f64.powf(raw_step.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw_step)
            .unwrap_or(10.0 * magnitude);
        let y_max = step * 5.0;
        let y = |v: f64| top + plot_h - v / y_max * plot_h;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{} — median events/s (whiskers: min–max)</text>"#,
            w / 2.0,
            xml_escape(&self.pipeline)
        );
        for i in 0..=5 {
            let v = step * i as f64;
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + plot_w,
                left - 6.0,
                yy + 4.0,
                short_number(v)
            );
        }
        let n = self.groups.len().max(1) as f64;
        let slot = plot_w / n;
        let bar = (slot * 0.6).min(80.0);
        for (i, g) in self.groups.iter().enumerate() {
            let cx = left + slot * (i as f64 + 0.5);
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="#4c78a8"><title>workers = {}: median {}, min {}, max {}</title></rect>"##,
                cx - bar / 2.0,
                y(g.median),
                top + plot_h - y(g.median),
                g.workers,
                group_digits(g.median),
                group_digits(g.min),
                group_digits(g.max)
            );
            let (y_lo, y_hi) = (y(g.min), y(g.max));
            let _ = writeln!(
                s,
                r##"<g stroke="#222"><line x1="{cx:.1}" y1="{y_lo:.1}" x2="{cx:.1}" y2="{y_hi:.1}"/><line x1="{:.1}" y1="{y_lo:.1}" x2="{:.1}" y2="{y_lo:.1}"/><line x1="{:.1}" y1="{y_hi:.1}" x2="{:.1}" y2="{y_hi:.1}"/></g>"##,
                cx - 8.0,
                cx + 8.0,
                cx - 8.0,
                cx + 8.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                top + plot_h + 16.0,
                g.workers,
                y_hi - 6.0,
                short_number(g.median)
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{0}" stroke="#222"/><line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#222"/>"##,
            top + plot_h,
            left + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">workers</text>"#,
            left + plot_w / 2.0,
            h - 12.0
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{0:.1}" text-anchor="middle" transform="rotate(-90 18 {0:.1})">events/s</text>"#,
            top + plot_h / 2.0
        );
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(workers: usize, run: usize, eps: f64, mem: u64) -> BenchRun {
        BenchRun {
            workers,
            run,
            events: 100,
            wall_seconds: 100.0 / eps,
            events_per_second: eps,
            cpu_seconds: 0.0,
            peak_memory_bytes: mem,
            machine_speedup: 1.0,
        }
    }

    #[test]
    fn summarises_median_min_max_and_per_core() {
        let runs = vec![
            run(1, 1, 3.0, 10),
            run(1, 2, 1.0, 30),
            run(1, 3, 2.0, 20),
            run(4, 1, 8.0, 5),
            run(4, 2, 4.0, 7),
        ];
        let g1 = summarise(1, &runs, 2);
        assert_eq!((g1.runs, g1.median, g1.min, g1.max), (3, 2.0, 1.0, 3.0));
        assert_eq!((g1.per_core, g1.peak_memory_bytes), (2.0, 30));
        let g4 = summarise(4, &runs, 2);
        assert_eq!(
            (g4.median, g4.per_core),
            (6.0, 3.0),
            "per core uses min(4, 2 cores)"
        );
    }

    #[test]
    fn rewrites_every_source_path_by_span() {
        let text = "[sources.a]\ntype = \"csv\"\npath = \"../x.csv\" # path = \"../x.csv\"\n\
                    schema = { order_id = \"int\", amount = \"float\" }\n\
                    [sources.b]\ntype = \"csv\"\nschema = { event_id = \"int\", page = \"string\" }\npath = '../y.csv'\n";
        let file = crate::diag::SourceFile {
            name: "p.toml".into(),
            text: text.into(),
        };
        let spec = PipelineSpec::parse(file, PathBuf::from("."))
            .map_err(|e| e.1)
            .unwrap();
        let sources: Vec<_> = spec
            .nodes
            .iter()
            .filter(|n| n.role == Role::Source)
            .collect();
        assert_eq!(detect_dataset(sources[0]).unwrap(), Dataset::Orders);
        assert_eq!(detect_dataset(sources[1]).unwrap(), Dataset::Clickstream);
        let inputs = [PathBuf::from("/tmp/o'k.csv"), PathBuf::from("/tmp/c.csv")];
        let out = rewrite_source_paths(&spec, &inputs).unwrap();
        assert!(
            out.contains("path = \"/tmp/o'k.csv\" # path = \"../x.csv\"\n"),
            "{out}"
        );
        assert!(out.contains("path = '/tmp/c.csv'\n"), "{out}");
    }

    #[test]
    fn sets_the_events_of_every_nexmark_source() {
        let text =
            "[sources.a]\ntype = \"nexmark\"\nstream = \"bid\"\nevents = 1_000 # events = 5\n\
                    [sources.b]\ntype = \"nexmark\"\nstream = \"person\"\n";
        let file = crate::diag::SourceFile {
            name: "p.toml".into(),
            text: text.into(),
        };
        let spec = PipelineSpec::parse(file, PathBuf::from("."))
            .map_err(|e| e.1)
            .unwrap();
        assert!(nexmark_sources(&spec).unwrap());
        let out = rewrite_nexmark_events(&spec, 42).unwrap();
        assert!(out.contains("events = 42 # events = 5\n"), "{out}");
        assert!(
            out.contains("type = \"nexmark\"\nevents = 42\nstream = \"person\""),
            "{out}"
        );
    }

    #[test]
    fn svg_has_a_bar_per_worker_count() {
        let runs = vec![run(1, 1, 1.5e6, 1), run(2, 1, 2.5e6, 1)];
        let report = BenchReport {
            pipeline: "p<&>".into(),
            generated_events: Some(100),
            generator: None,
            inputs: vec![],
            cores: 2,
            commit: None,
            groups: vec![summarise(1, &runs, 2), summarise(2, &runs, 2)],
            runs,
            csv_path: PathBuf::new(),
            svg_path: PathBuf::new(),
        };
        let svg = report.to_svg();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(svg.contains("p&lt;&amp;&gt;"));
        assert!(report.render_table().contains("1,500,000"));
        assert_eq!(short_number(2_500_000.0), "2.5M");
    }
}
