//! Criterion benchmarks of eventflow's hot paths, through the public library API only.
//!
//! Every benchmark reports throughput in elements (rows) per second.
//!
//! Groups:
//! - `csv_parse`: [`parse_chunk`] over 100,000 generated orders rows (seed 42, clean), cut into
//!   1 MiB chunks by [`Splitter`] beforehand (splitting is not timed). `all_fields` parses all
//!   nine schema fields; `projected_4` parses only the four that `pipelines/orders_revenue.toml`
//!   reads (`ts`, `category`, `amount`, `status`; the layout is narrowed with
//!   [`CsvLayout::project`], as file sources do).
//! - `expr_eval`: compiled expressions over the 100,000 pre-parsed rows: `predicate` is
//!   `status = 'paid' AND amount >= 100` through [`Expr::eval_predicate`], `round_amount` is
//!   `round(amount * 1.2, 2)` through [`Expr::eval`].
//! - `aggregate_update`: the pre-aggregation [`Combiner`] of the `revenue` transform of
//!   `orders_revenue` (group by `category`; `sum`, `count(*)`, `avg`, `max` of `amount`), planned
//!   from the real pipeline file. Each iteration adds every one of the 100,000 rows (paid or not)
//!   at its 1-minute event-time tick, then drains everything with `drain_before(None)`. Ticks
//!   are computed before timing.
//! - `output_writing`: encoding the 100,000 order rows the way the file sink does (its encoder is
//!   private): `csv_snapshot` writes each value with [`Value::write_text`] into a reused `String`
//!   and hands it to the `csv` crate's writer; `csv_updates` also appends the `time` column
//!   ([`write_iso8601`] of the row's tick) and the `diff` column; `jsonl_snapshot` builds
//!   `{"name":value,...}` lines with [`write_json_string`] and [`Value::write_json`]. Output goes
//!   to `std::io::sink()`, so no disk time is included. `lines_updates` is the encoder the file
//!   sink itself runs on each worker for updates sinks ([`LineFormat::encode_tick`]): one tick
//!   of 100,000 updates, in a scrambled order (as they leave differential's arrangements), consolidated by order key and encoded as CSV lines;
//!   `lines_updates_row_sort` does the same by sorting the rows themselves (the former way).
//! - `join_update`: [`eventflow::runtime::run`] of `pipelines/nexmark/q4.toml` on 200,000
//!   pregenerated Nexmark events (6% auctions, 92% bids, joined on the auction id, then a
//!   `BETWEEN` filter and two aggregates), 1 worker. The time is the run's own `wall_seconds`
//!   (criterion's `iter_custom`), which leaves out generating the events. 10 samples.
//! - `end_to_end`: [`eventflow::runtime::run`] of `pipelines/orders_revenue.toml` (its source path
//!   redirected to a generated 1,000,000-row temporary file) with 1 and 2 workers, writing all
//!   outputs into a temporary folder. Includes file mapping, splitting, parsing, filtering,
//!   aggregation in timely/differential and writing the sinks. 10 samples.
//!
//! Run everything with
//!
//! ```text
//! cargo bench --bench hot_paths
//! ```
//!
//! or one group (the argument is a regular expression over benchmark ids) with
//!
//! ```text
//! cargo bench --bench hot_paths -- csv_parse
//! ```
//!
//! Shorter runs: append `--warm-up-time 1 --measurement-time 3` after `--`. Fixtures are built
//! lazily, so a filtered run does not generate the 1M-row file.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eventflow::connectors::csv_parse::{parse_chunk, CsvLayout};
use eventflow::connectors::file_sink::{consolidate, LineFormat, Lines, TickLines};
use eventflow::connectors::parsed::ParsedBatch;
use eventflow::connectors::split::{line_at, read_header, Chunk, Splitter};
use eventflow::connectors::{SinkConfig, SinkFormat, SinkMode, SinkTarget};
use eventflow::diag::{render, SourceFile};
use eventflow::expr::Expr;
use eventflow::generate::{orders_csv_bytes, orders_schema, write_orders_csv, OrdersConfig};
use eventflow::operators::aggregate::{AggregatePlan, Combiner};
use eventflow::operators::TransformOp;
use eventflow::plan::{self, NodeKind, Plan, TimeDomain};
use eventflow::record::time::write_iso8601;
use eventflow::record::{write_json_string, Schema, Tick, Value};
use eventflow::runtime::{run, RunOptions};
use eventflow::spec::PipelineSpec;
use std::cell::OnceCell;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Rows of the in-memory fixture shared by the micro-benchmarks.
const ROWS: u64 = 100_000;
/// Rows of the end-to-end input file.
const E2E_ROWS: u64 = 1_000_000;
/// Chunk size, as file sources use.
const CHUNK_BYTES: usize = 1 << 20;
/// The fields `orders_revenue` reads.
const REVENUE_FIELDS: [&str; 4] = ["ts", "category", "amount", "status"];
/// The pipeline the aggregate and end-to-end benchmarks plan.
const ORDERS_REVENUE: &str = include_str!("../pipelines/orders_revenue.toml");
/// Its source path, replaced by the generated file's.
const ORDERS_REVENUE_PATH: &str = "path = \"../data/orders.csv\"";

/// 100,000 generated orders: the CSV bytes, their chunks and their parsed rows.
struct Orders {
    data: Vec<u8>,
    chunks: Vec<Chunk>,
    schema: Schema,
    layout: CsvLayout,
    /// The chunks parsed with `layout` (all fields).
    batches: Vec<ParsedBatch>,
}

impl Orders {
    fn new() -> Orders {
        let data = orders_csv_bytes(&OrdersConfig {
            events: ROWS,
            ..Default::default()
        });
        let schema = orders_schema();
        let (header, body) = read_header(&data);
        let header = header.expect("generated orders have a header");
        let layout = CsvLayout::from_header(header, &schema, b',').expect("orders header");
        let chunks: Vec<Chunk> =
            Splitter::new(&data, body, line_at(&data, body), CHUNK_BYTES, true).collect();
        let batches: Vec<ParsedBatch> = chunks
            .iter()
            .map(|chunk| {
                let mut batch = ParsedBatch::new(schema.len());
                parse_chunk(chunk.bytes(&data), chunk, &layout, &schema, &mut batch);
                batch
            })
            .collect();
        let good: usize = batches.iter().map(ParsedBatch::len).sum();
        let dead: usize = batches.iter().map(|b| b.dead.len()).sum();
        assert_eq!((good, dead), (ROWS as usize, 0), "clean orders parse fully");
        Orders {
            data,
            chunks,
            schema,
            layout,
            batches,
        }
    }

    fn rows(&self) -> impl Iterator<Item = &[Value]> + '_ {
        self.batches.iter().flat_map(ParsedBatch::rows)
    }

    fn field(&self, name: &str) -> usize {
        self.schema
            .index_of(name)
            .unwrap_or_else(|| panic!("orders have no field `{name}`"))
    }
}

/// The shared 100,000-row fixture (in memory only, so keeping it for the process is harmless).
fn orders() -> &'static Orders {
    static ORDERS: OnceLock<Orders> = OnceLock::new();
    ORDERS.get_or_init(Orders::new)
}

/// Plans `orders_revenue` with its source reading `dir/orders.csv` (which must exist: planning
/// checks the CSV header).
fn plan_orders_revenue(dir: &Path) -> Plan {
    assert!(
        ORDERS_REVENUE.contains(ORDERS_REVENUE_PATH),
        "pipelines/orders_revenue.toml no longer reads {ORDERS_REVENUE_PATH}; update the benchmark"
    );
    let text = ORDERS_REVENUE.replace(ORDERS_REVENUE_PATH, "path = \"orders.csv\"");
    let file = SourceFile {
        name: "orders_revenue.toml".into(),
        text,
    };
    let spec = PipelineSpec::parse(file, dir.to_path_buf())
        .unwrap_or_else(|(file, diags)| panic!("{}", render(&file, &diags, false)));
    plan::build(&spec).unwrap_or_else(|diags| panic!("{}", render(&spec.file, &diags, false)))
}

/// The aggregate plan of a planned pipeline's single aggregate transform.
fn aggregate_plan(plan: &Plan) -> Arc<AggregatePlan> {
    let mut found = plan.nodes.iter().filter_map(|node| match &node.kind {
        NodeKind::Transform(t) => match &t.op {
            TransformOp::Aggregate(agg) => Some(agg.clone()),
            _ => None,
        },
        _ => None,
    });
    let agg = found.next().expect("the pipeline has an aggregate");
    assert!(found.next().is_none(), "the pipeline has one aggregate");
    agg
}

fn csv_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("csv_parse");
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("all_fields", |b| {
        let o = orders();
        let mut batch = ParsedBatch::new(o.schema.len());
        b.iter(|| {
            let mut rows = 0;
            for chunk in &o.chunks {
                batch.clear();
                parse_chunk(
                    chunk.bytes(&o.data),
                    chunk,
                    &o.layout,
                    &o.schema,
                    &mut batch,
                );
                rows += batch.len();
            }
            black_box(rows)
        });
    });
    group.bench_function("projected_4", |b| {
        let o = orders();
        let mut needed = vec![false; o.schema.len()];
        for name in REVENUE_FIELDS {
            needed[o.field(name)] = true;
        }
        let mut layout = o.layout.clone();
        layout.project(&needed);
        let mut batch = ParsedBatch::new(o.schema.len());
        b.iter(|| {
            let mut rows = 0;
            for chunk in &o.chunks {
                batch.clear();
                parse_chunk(chunk.bytes(&o.data), chunk, &layout, &o.schema, &mut batch);
                rows += batch.len();
            }
            black_box(rows)
        });
    });
    group.finish();
}

fn expr_eval(c: &mut Criterion) {
    let mut group = c.benchmark_group("expr_eval");
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("predicate", |b| {
        let o = orders();
        let expr = Expr::compile("status = 'paid' AND amount >= 100", &o.schema)
            .expect("predicate compiles");
        b.iter(|| {
            let mut kept = 0u64;
            for row in o.rows() {
                kept += u64::from(expr.eval_predicate(black_box(row)));
            }
            black_box(kept)
        });
    });
    group.bench_function("round_amount", |b| {
        let o = orders();
        let expr = Expr::compile("round(amount * 1.2, 2)", &o.schema).expect("expression compiles");
        b.iter(|| {
            for row in o.rows() {
                black_box(expr.eval(black_box(row)));
            }
        });
    });
    group.finish();
}

fn aggregate_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate_update");
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("combiner_orders_revenue", |b| {
        let o = orders();
        let dir = tempfile::tempdir().expect("temporary folder");
        std::fs::write(dir.path().join("orders.csv"), &o.data).expect("writing orders.csv");
        let plan = plan_orders_revenue(dir.path());
        assert!(matches!(plan.time, TimeDomain::Event { .. }));
        let agg = aggregate_plan(&plan);
        let ts = o.field("ts");
        let input: Vec<(Tick, &[Value])> = o
            .rows()
            .map(|row| {
                let t = row[ts].as_i64().expect("timestamps parse");
                (plan.time.tick_of(t as u64), row)
            })
            .collect();
        b.iter(|| {
            let mut combiner = Combiner::new(agg.clone());
            for &(tick, row) in &input {
                combiner.add(tick, row, 1);
            }
            black_box(combiner.drain_before(None))
        });
    });
    group.finish();
}

/// The CSV updates line format of the order rows, and the rows as one tick of updates in a
/// fixed scrambled order (a stride through the file), so that consolidating them has sorting
/// to do.
fn orders_tick() -> (LineFormat, Vec<(Vec<Value>, isize)>) {
    let o = orders();
    let cfg = SinkConfig {
        name: "bench".into(),
        format: SinkFormat::Csv,
        target: SinkTarget::Stdout,
        path_span: 0..0,
        mode: SinkMode::Updates,
    };
    let format = LineFormat::new(&cfg, &o.schema, TimeDomain::Event { tick_ms: 60_000 });
    let rows: Vec<&[Value]> = o.rows().collect();
    let n = rows.len();
    let updates = (0..n).map(|i| (rows[i * 7919 % n].to_vec(), 1)).collect();
    (format, updates)
}

fn output_writing(c: &mut Criterion) {
    let mut group = c.benchmark_group("output_writing");
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("csv_snapshot", |b| {
        let o = orders();
        b.iter(|| {
            let mut w = csv::WriterBuilder::new()
                .buffer_capacity(1 << 16)
                .from_writer(std::io::sink());
            let mut text = String::new();
            for row in o.rows() {
                for v in row {
                    text.clear();
                    v.write_text(&mut text);
                    w.write_field(text.as_bytes()).expect("sink");
                }
                w.write_record(std::iter::empty::<&[u8]>()).expect("sink");
            }
            w.flush().expect("sink");
        });
    });
    group.bench_function("csv_updates", |b| {
        let o = orders();
        let ts = o.field("ts");
        let time = TimeDomain::Event { tick_ms: 60_000 };
        b.iter(|| {
            let mut w = csv::WriterBuilder::new()
                .buffer_capacity(1 << 16)
                .from_writer(std::io::sink());
            let mut text = String::new();
            let mut itoa = itoa::Buffer::new();
            for row in o.rows() {
                for v in row {
                    text.clear();
                    v.write_text(&mut text);
                    w.write_field(text.as_bytes()).expect("sink");
                }
                let tick = time.tick_of(row[ts].as_i64().unwrap_or(0) as u64);
                text.clear();
                write_iso8601(tick as i64, &mut text);
                w.write_field(text.as_bytes()).expect("sink");
                w.write_field(itoa.format(1isize).as_bytes()).expect("sink");
                w.write_record(std::iter::empty::<&[u8]>()).expect("sink");
            }
            w.flush().expect("sink");
        });
    });
    group.bench_function("lines_updates", |b| {
        let (format, updates) = orders_tick();
        // One set of buffers for every tick, as a sink's worker reuses its pending ticks' and
        // the buffers its writer hands back.
        let mut pending = TickLines::default();
        let mut lines = Lines::default();
        b.iter(|| {
            format.start_tick(0, &mut pending);
            for (row, diff) in &updates {
                format.push(&mut pending, row, *diff);
            }
            LineFormat::finish_tick(&mut pending, &mut lines);
            black_box(lines.ends.len())
        });
    });
    // The same tick the way sinks did it before order keys: sort and sum the rows themselves
    // (`consolidate`), then encode each line. `lines_updates` against this is the sort's gain.
    group.bench_function("lines_updates_row_sort", |b| {
        let (format, updates) = orders_tick();
        b.iter_batched(
            || updates.clone(),
            |mut rows| {
                consolidate(&mut rows);
                let mut text = String::new();
                for (row, diff) in &rows {
                    format.encode(row, Some((0, *diff)), &mut text);
                }
                black_box(text)
            },
            criterion::BatchSize::LargeInput,
        );
    });
    group.bench_function("jsonl_snapshot", |b| {
        let o = orders();
        let names: Vec<&str> = o.schema.names().collect();
        b.iter(|| {
            use std::io::Write;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::sink());
            let mut text = String::new();
            for row in o.rows() {
                text.clear();
                text.push('{');
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    write_json_string(names[i], &mut text);
                    text.push(':');
                    v.write_json(&mut text);
                }
                text.push_str("}\n");
                out.write_all(text.as_bytes()).expect("sink");
            }
            out.flush().expect("sink");
        });
    });
    group.finish();
}

/// The end-to-end input: a temporary folder holding `orders.csv` (1M rows), the plan reading it
/// and an output folder. Dropping it deletes both folders.
struct EndToEnd {
    plan: Arc<Plan>,
    out: tempfile::TempDir,
    _input: tempfile::TempDir,
}

impl EndToEnd {
    fn new() -> EndToEnd {
        let input = tempfile::tempdir().expect("temporary folder");
        let path = input.path().join("orders.csv");
        let file = std::fs::File::create(&path).expect("creating orders.csv");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let cfg = OrdersConfig {
            events: E2E_ROWS,
            ..Default::default()
        };
        write_orders_csv(&cfg, &mut out).expect("writing orders.csv");
        drop(out);
        let plan = Arc::new(plan_orders_revenue(input.path()));
        EndToEnd {
            plan,
            out: tempfile::tempdir().expect("temporary folder"),
            _input: input,
        }
    }
}

fn end_to_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Elements(E2E_ROWS));
    group.sample_size(10);
    // Built on first use and dropped (temporary files deleted) when the group ends.
    let fixture: OnceCell<EndToEnd> = OnceCell::new();
    for workers in [1usize, 2] {
        group.bench_with_input(
            BenchmarkId::new("orders_revenue", workers),
            &workers,
            |b, &workers| {
                let e2e = fixture.get_or_init(EndToEnd::new);
                let opts = RunOptions {
                    workers,
                    out_dir: e2e.out.path().to_path_buf(),
                    progress: false,
                    recovery: Default::default(),
                    cluster: None,
                    stop_when_idle: None,
                };
                b.iter(|| {
                    let summary = run(e2e.plan.clone(), &opts).expect("run succeeds");
                    assert_eq!(summary.records_read, E2E_ROWS);
                    summary
                });
            },
        );
    }
    group.finish();
}

/// Nexmark events in the `join_update` runs.
const JOIN_EVENTS: u64 = 200_000;

fn join_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("join_update");
    group.throughput(Throughput::Elements(JOIN_EVENTS));
    group.sample_size(10);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("pipelines/nexmark/q4.toml"))
        .expect("pipelines/nexmark/q4.toml");
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("events =") {
                format!("events = {JOIN_EVENTS}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let file = SourceFile {
        name: "q4.toml".into(),
        text,
    };
    let spec = PipelineSpec::parse(file, root.join("pipelines/nexmark"))
        .unwrap_or_else(|(file, diags)| panic!("{}", render(&file, &diags, false)));
    let plan = Arc::new(
        plan::build(&spec).unwrap_or_else(|diags| panic!("{}", render(&spec.file, &diags, false))),
    );
    let out = tempfile::tempdir().expect("temporary folder");
    let opts = RunOptions {
        workers: 1,
        out_dir: out.path().to_path_buf(),
        progress: false,
        recovery: Default::default(),
        cluster: None,
        stop_when_idle: None,
    };
    group.bench_function("nexmark_q4", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let summary = run(plan.clone(), &opts).expect("run succeeds");
                assert_eq!(summary.nexmark_events, Some(JOIN_EVENTS));
                total += std::time::Duration::from_secs_f64(summary.wall_seconds);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    csv_parse,
    expr_eval,
    aggregate_update,
    output_writing,
    join_update,
    end_to_end
);
criterion_main!(benches);
