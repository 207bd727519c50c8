//! Sources and sinks: where rows come from and where results go.
//!
//! Settings are read here (`configure_source`, `configure_sink`); the threads that read, parse
//! and write live in [`file_source`] and [`file_sink`]. Parsing and I/O never run on a worker
//! thread: they hand batches to workers over bounded crossbeam channels.

pub mod amqp;
pub mod amqp_sink;
pub mod amqp_source;
pub mod commit_log;
pub mod csv_parse;
pub mod dead_letter;
pub mod file_sink;
pub mod file_source;
pub mod jsonl_parse;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod kafka_sink;
#[cfg(feature = "kafka")]
pub mod kafka_source;
pub mod live_source;
pub mod nexmark;
pub mod outbox;
pub mod parsed;
pub mod split;

use crate::diag::Diagnostic;
use crate::record::{Schema, Type};
use crate::spec::{Params, PipelineSpec};
use std::path::PathBuf;

/// Source types, for `eventflow operators` and did-you-mean.
pub const SOURCE_TYPES: [(&str, &str); 5] = [
    (
        "csv",
        "CSV file with a header row; fields typed by `schema`",
    ),
    (
        "jsonl",
        "JSON Lines file (one object per line); fields typed by `schema`",
    ),
    (
        "rabbitmq",
        "RabbitMQ queue (AMQP 0-9-1), JSON or CSV payloads typed by `schema`; runs until stopped",
    ),
    (
        "kafka",
        "Kafka topic, every partition in order, JSON or CSV payloads; runs until stopped (feature `kafka`)",
    ),
    (
        "nexmark",
        "Nexmark benchmark events (person, auction or bid), generated in process",
    ),
];

/// Sink types, for `eventflow operators` and did-you-mean.
pub const SINK_TYPES: [(&str, &str); 5] = [
    ("csv", "CSV file in the output folder, with a header row"),
    ("jsonl", "JSON Lines file in the output folder"),
    (
        "stdout",
        "standard output, as CSV (or `format = \"jsonl\"`)",
    ),
    (
        "rabbitmq",
        "RabbitMQ queue: one persistent JSON message per update, with publisher confirms",
    ),
    (
        "kafka",
        "Kafka topic: one JSON message per update, idempotent producer, acks=all (feature `kafka`)",
    ),
];

/// How a source's file is encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// CSV with a header row and the given delimiter.
    Csv {
        /// Field delimiter byte.
        delimiter: u8,
    },
    /// One JSON object per line.
    Jsonl,
    /// Not a file: generated Nexmark events.
    Nexmark(nexmark::NexmarkSettings),
}

/// A configured file source.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Node name.
    pub name: String,
    /// Encoding.
    pub format: SourceFormat,
    /// Resolved path of the input file.
    pub path: PathBuf,
    /// Where `path` is written in the pipeline file.
    pub path_span: std::ops::Range<usize>,
    /// Declared schema.
    pub schema: Schema,
    /// Position of the event-time field, if the source has one.
    pub event_time: Option<usize>,
    /// Maximum out-of-orderness of event time, in milliseconds.
    pub max_lateness_ms: u64,
    /// What to do with a malformed record.
    pub on_error: OnError,
    /// Fail the run when more than this share of records is malformed.
    pub max_error_rate: Option<f64>,
    /// The column that says whether a record inserts or retracts a row, if any.
    pub change: Option<ChangeColumn>,
    /// A live (message queue) source's settings; `None` for a file source.
    pub live: Option<LiveConfig>,
}

/// A live source: a RabbitMQ queue or a Kafka topic read until the run is stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// What to read.
    pub broker: LiveBroker,
    /// With no message for this long (wall clock), the source stops holding back the watermark.
    pub idle_timeout_ms: Option<u64>,
}

/// The broker of a live source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveBroker {
    /// A RabbitMQ queue.
    Amqp {
        /// Broker URL as written (`url`); `None`: `EVENTFLOW_AMQP_URL`, else the local default.
        url: Option<String>,
        /// Queue to consume.
        queue: String,
        /// Unacknowledged messages the broker may send ahead (AMQP `basic.qos`).
        prefetch: u16,
    },
    /// A Kafka topic, every partition.
    Kafka {
        /// Bootstrap servers as written (`brokers`); `None`: `EVENTFLOW_KAFKA_BROKERS`, else
        /// `127.0.0.1:9092`.
        brokers: Option<String>,
        /// Topic to consume.
        topic: String,
        /// Consumer group whose offsets are committed; `None`: `eventflow-PIPELINE-SOURCE`.
        group: Option<String>,
    },
}

/// What a build without the `kafka` feature says about Kafka nodes.
pub const NO_KAFKA: &str =
    "built without the kafka feature: cargo build --release --features kafka";

/// A change column: maps each record to +1 (insert) or -1 (retract). The column itself is not
/// part of the source's output rows, so a retraction cancels the insert of the same row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeColumn {
    /// Position of the column in the declared schema.
    pub field: usize,
    /// How its values map to multiplicities.
    pub map: ChangeMap,
}

/// How a change column's values become multiplicities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeMap {
    /// An int column holding the signed multiplicity itself (e.g. `diff` = 1 or -1).
    Signed,
    /// A string column whose values name inserts or deletes.
    Labels {
        /// Values meaning +1.
        insert: Vec<String>,
        /// Values meaning -1.
        delete: Vec<String>,
    },
}

impl ChangeColumn {
    /// The multiplicity a record's change value stands for, or why it stands for none.
    pub fn diff_of(&self, value: &crate::record::Value) -> Result<isize, String> {
        use crate::record::Value;
        match (&self.map, value) {
            (ChangeMap::Signed, Value::Int(d)) if *d != 0 => Ok(*d as isize),
            (ChangeMap::Signed, Value::Int(_)) => {
                Err("change value 0 neither inserts nor deletes".into())
            }
            (ChangeMap::Labels { insert, delete }, Value::Str(s)) => {
                if insert.iter().any(|i| i == s.as_str()) {
                    Ok(1)
                } else if delete.iter().any(|d| d == s.as_str()) {
                    Ok(-1)
                } else {
                    Err(format!(
                        "change value `{s}` is none of the insert values ({}) or delete values ({})",
                        insert.join(", "),
                        delete.join(", ")
                    ))
                }
            }
            (_, Value::Null) => Err("change value is missing".into()),
            (_, other) => Err(format!("change value `{other:?}` has the wrong type")),
        }
    }
}

impl SourceConfig {
    /// What the source reads, for plans and summaries: the file, or the generator's settings.
    pub fn input_label(&self) -> String {
        match &self.format {
            SourceFormat::Nexmark(n) => format!(
                "nexmark {} stream of {} events at {} events/s{}",
                n.stream.name(),
                n.events,
                n.events_per_second,
                if n.pregenerate { ", pregenerated" } else { "" }
            ),
            _ => self.path.display().to_string(),
        }
    }
    /// The schema of the rows the source emits: the declared one without the change column.
    pub fn output_schema(&self) -> Schema {
        match &self.change {
            None => self.schema.clone(),
            Some(c) => Schema {
                fields: (self.schema.fields.iter().enumerate())
                    .filter(|(i, _)| *i != c.field)
                    .map(|(_, f)| f.clone())
                    .collect(),
            },
        }
    }
    /// Position of the event-time field in [`SourceConfig::output_schema`].
    pub fn output_event_time(&self) -> Option<usize> {
        let et = self.event_time?;
        Some(match &self.change {
            Some(c) if c.field < et => et - 1,
            _ => et,
        })
    }
}

/// What a source does with a record it cannot parse (late records are always dead-lettered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Write it to the dead-letter file with its position, raw text and reason (the default).
    DeadLetter,
    /// Count it as skipped, keep nothing else.
    Skip,
    /// Stop the run (exit status 2) with a message naming the source, line and field.
    Fail,
}

/// Whether a sink writes every change or the final result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkMode {
    /// One row per change, with `time` and `diff` columns.
    Updates,
    /// The consolidated result at the end of the input.
    Snapshot,
}

/// How a sink encodes rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkFormat {
    /// CSV with a header row.
    Csv,
    /// JSON Lines.
    Jsonl,
}

/// Where a sink writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkTarget {
    /// A file, relative to the run's output folder.
    File(PathBuf),
    /// Standard output.
    Stdout,
    /// A RabbitMQ queue.
    Amqp {
        /// Broker URL as written; `None`: `EVENTFLOW_AMQP_URL`, else the local default.
        url: Option<String>,
        /// Queue the updates are published to (through the default exchange).
        queue: String,
        /// The pipeline's name, the first part of every message id (set by the runtime).
        pipeline: String,
    },
    /// A Kafka topic.
    Kafka {
        /// Bootstrap servers as written; `None`: `EVENTFLOW_KAFKA_BROKERS`, else `127.0.0.1:9092`.
        brokers: Option<String>,
        /// Topic the updates are published to.
        topic: String,
        /// The pipeline's name, the first part of every message key (set by the runtime).
        pipeline: String,
    },
}

impl SinkTarget {
    /// How the target is shown in the summary and plan: the file, `-` for stdout, or
    /// `rabbitmq:QUEUE`, `kafka:TOPIC`.
    pub fn describe(&self) -> String {
        match self {
            SinkTarget::File(p) => p.display().to_string(),
            SinkTarget::Stdout => "-".into(),
            SinkTarget::Amqp { queue, .. } => format!("rabbitmq:{queue}"),
            SinkTarget::Kafka { topic, .. } => format!("kafka:{topic}"),
        }
    }
}

/// A configured sink.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Node name.
    pub name: String,
    /// Encoding.
    pub format: SinkFormat,
    /// Destination.
    pub target: SinkTarget,
    /// Where the destination is set in the pipeline file (`path`, or else the node's name).
    pub path_span: std::ops::Range<usize>,
    /// Updates or snapshot.
    pub mode: SinkMode,
}

/// The label a live source's input is known by, `BROKER:NAME`, at the name's place in the file.
fn broker_label(broker: &str, name: &crate::spec::Sp<String>) -> crate::spec::Sp<String> {
    crate::spec::Sp {
        value: format!("{broker}:{}", name.value),
        span: name.span.clone(),
    }
}

/// A Kafka source's broker settings, with the label its input is known by (`kafka:TOPIC`).
fn kafka_settings(params: &mut Params<'_>) -> Option<(crate::spec::Sp<String>, LiveBroker)> {
    let brokers = params.str("brokers").map(|b| b.value);
    let topic = params.req_str("topic", "\"orders\"");
    let group = params.str("group").map(|g| g.value);
    if cfg!(not(feature = "kafka")) {
        params.error(
            Diagnostic::error("E0105", NO_KAFKA)
                .at(params.owner_span(), "a kafka source")
                .help("build with `--features kafka` (librdkafka is compiled from source)"),
        );
    }
    let topic = topic?;
    let label = broker_label("kafka", &topic);
    let broker = LiveBroker::Kafka {
        brokers,
        topic: topic.value,
        group,
    };
    Some((label, broker))
}

/// A RabbitMQ source's broker settings, with the label its input is known by
/// (`rabbitmq:QUEUE`).
fn amqp_settings(params: &mut Params<'_>) -> Option<(crate::spec::Sp<String>, LiveBroker)> {
    let url = params.str("url").map(|u| u.value);
    let queue = params.req_str("queue", "\"orders\"");
    let prefetch = match params.u64("prefetch") {
        Some(p) if p.value == 0 || p.value > u16::MAX as u64 => {
            params.error(
                Diagnostic::error("E0105", "`prefetch` must be between 1 and 65535")
                    .at(p.span.clone(), "out of range"),
            );
            1000
        }
        Some(p) => p.value as u16,
        None => 1000,
    };
    let queue = queue?;
    let label = broker_label("rabbitmq", &queue);
    let broker = LiveBroker::Amqp {
        url,
        queue: queue.value,
        prefetch,
    };
    Some((label, broker))
}

/// Reads a source's settings. `kind` has been checked against [`SOURCE_TYPES`].
pub fn configure_source(
    kind: &str,
    name: &str,
    params: &mut Params<'_>,
    spec: &PipelineSpec,
) -> Option<SourceConfig> {
    if kind == "nexmark" {
        return nexmark::configure(name, params);
    }
    let live = kind == "rabbitmq" || kind == "kafka";
    let mut idle_span = None;
    let (path, live_cfg, payload) = if live {
        // The broker's own settings, then those every live source has.
        let broker = if kind == "kafka" {
            kafka_settings(params)
        } else {
            amqp_settings(params)
        };
        let payload = params.choice("format", &["json", "csv"]).map(|f| f.value);
        let idle = params.duration_ms("idle_timeout");
        idle_span = idle.as_ref().map(|i| i.span.clone());
        let path = broker.as_ref().map(|(label, _)| label.clone());
        let cfg = broker.map(|(_, broker)| LiveConfig {
            broker,
            idle_timeout_ms: idle.map(|i| i.value),
        });
        (path, cfg, Some(payload.unwrap_or("json")))
    } else {
        (params.req_str("path", "\"data/file.csv\""), None, None)
    };
    let kind = match payload {
        Some("csv") => "csv",
        Some(_) => "jsonl",
        None => kind,
    };
    let delimiter = params.str("delimiter");
    let schema = read_schema(params);
    let event_time = params.str("event_time");
    let lateness = params.duration_ms("max_lateness");
    let on_error = match params
        .choice("on_error", &["dead_letter", "skip", "fail"])
        .map(|c| c.value)
    {
        Some("skip") => OnError::Skip,
        Some("fail") => OnError::Fail,
        _ => OnError::DeadLetter,
    };
    let max_error_rate = params.f64_in("max_error_rate", 0.0..=1.0);
    let change = read_change(params);
    let format = match kind {
        "csv" => {
            let d = match &delimiter {
                Some(d) if d.value.len() == 1 => d.value.as_bytes()[0],
                Some(d) => {
                    params.error(
                        Diagnostic::error("E0105", "`delimiter` must be one character")
                            .at(d.span.clone(), "e.g. \",\" or \";\" or \"\\t\""),
                    );
                    b','
                }
                None => b',',
            };
            SourceFormat::Csv { delimiter: d }
        }
        _ => {
            if let Some(d) = &delimiter {
                params.error(
                    Diagnostic::error("E0102", "`delimiter` applies to csv sources only")
                        .at(d.span.clone(), "remove this"),
                );
            }
            SourceFormat::Jsonl
        }
    };
    let schema = schema?;
    let path = path?;
    let mut et_index = None;
    if let Some(et) = &event_time {
        match schema.index_of(&et.value) {
            Some(i) if schema.fields[i].ty == Type::Timestamp => et_index = Some(i),
            Some(i) => params.error(
                Diagnostic::error(
                    "E0303",
                    format!(
                        "event_time field `{}` is `{}`, not `timestamp`",
                        et.value, schema.fields[i].ty
                    ),
                )
                .at(et.span.clone(), "must name a timestamp field")
                .help(format!(
                    "declare `{} = \"timestamp\"` in the schema",
                    et.value
                )),
            ),
            None => params.error(
                Diagnostic::error("E0306", format!("unknown event_time field `{}`", et.value))
                    .at(et.span.clone(), "not in the schema")
                    .suggest(&et.value, schema.names()),
            ),
        }
    } else if let Some(l) = &lateness {
        params.error(
            Diagnostic::error("E0105", "`max_lateness` needs `event_time`")
                .at(l.span.clone(), "no event time to be late against")
                .help("name the timestamp field with `event_time = \"...\"`"),
        );
    }
    let change = change.and_then(|c| resolve_change(c, &schema, et_index, params));
    if live && live_cfg.is_none() {
        return None;
    }
    if let (Some(span), None) = (idle_span, et_index) {
        params.error(
            Diagnostic::error("E0105", "`idle_timeout` needs `event_time`")
                .at(span, "no watermark to advance")
                .help("name the timestamp field with `event_time = \"...\"`"),
        );
    }
    Some(SourceConfig {
        name: name.to_string(),
        format,
        path: if live {
            PathBuf::from(&path.value)
        } else {
            spec.resolve(&path.value)
        },
        path_span: path.span,
        schema,
        event_time: et_index,
        max_lateness_ms: lateness.map(|l| l.value).unwrap_or(0),
        on_error,
        max_error_rate: max_error_rate.map(|r| r.value),
        change,
        live: live_cfg,
    })
}

/// `change = { field = "op", insert = ["follow"], delete = ["unfollow"] }` as written.
struct ChangeSetting {
    field: crate::spec::Sp<String>,
    insert: Option<Vec<crate::spec::Sp<String>>>,
    delete: Option<Vec<crate::spec::Sp<String>>>,
    span: std::ops::Range<usize>,
}

fn read_change(params: &mut Params<'_>) -> Option<ChangeSetting> {
    let mut c = params.table("change")?;
    let span = c.owner_span();
    let field = c.req_str("field", "\"op\"");
    let insert = c.str_list("insert");
    let delete = c.str_list("delete");
    let diags = c.finish();
    let failed = !diags.is_empty();
    params.absorb(diags);
    if failed {
        return None;
    }
    Some(ChangeSetting {
        field: field?,
        insert,
        delete,
        span,
    })
}

/// Checks the change column against the schema: a string column with insert/delete values, or
/// an int column holding the multiplicity.
fn resolve_change(
    c: ChangeSetting,
    schema: &Schema,
    event_time: Option<usize>,
    params: &mut Params<'_>,
) -> Option<ChangeColumn> {
    let Some(field) = schema.index_of(&c.field.value) else {
        params.error(
            Diagnostic::error("E0306", format!("unknown change field `{}`", c.field.value))
                .at(c.field.span.clone(), "not in the schema")
                .suggest(&c.field.value, schema.names()),
        );
        return None;
    };
    if Some(field) == event_time {
        params.error(
            Diagnostic::error("E0105", "the change column cannot be the event-time field")
                .at(c.field.span.clone(), "also `event_time`"),
        );
        return None;
    }
    let map = match (schema.fields[field].ty, c.insert, c.delete) {
        (Type::Int, None, None) => ChangeMap::Signed,
        (Type::String, Some(insert), Some(delete)) if !insert.is_empty() || !delete.is_empty() => {
            let text = |v: Vec<crate::spec::Sp<String>>| v.into_iter().map(|s| s.value).collect();
            ChangeMap::Labels {
                insert: text(insert),
                delete: text(delete),
            }
        }
        (Type::String, _, _) => {
            params.error(
                Diagnostic::error(
                    "E0105",
                    format!("string change field `{}` needs `insert` and `delete` values", c.field.value),
                )
                .at(c.span, "which values insert and which delete?")
                .help(format!(
                    "e.g. change = {{ field = \"{}\", insert = [\"insert\"], delete = [\"delete\"] }}",
                    c.field.value
                )),
            );
            return None;
        }
        (Type::Int, _, _) => {
            params.error(
                Diagnostic::error(
                    "E0105",
                    format!("int change field `{}` holds the multiplicity itself; `insert`/`delete` apply to string fields", c.field.value),
                )
                .at(c.span, "remove `insert` and `delete`"),
            );
            return None;
        }
        (other, _, _) => {
            params.error(
                Diagnostic::error(
                    "E0303",
                    format!("change field `{}` is `{other}`; it must be `string` (with insert/delete values) or `int` (a signed multiplicity)", c.field.value),
                )
                .at(c.field.span.clone(), "wrong type"),
            );
            return None;
        }
    };
    Some(ChangeColumn { field, map })
}

fn read_schema(params: &mut Params<'_>) -> Option<Schema> {
    let Some(entries) = params.str_table("schema") else {
        if params.raw("schema").is_none() {
            params.missing(
                "schema",
                "{ id = \"int\", ts = \"timestamp\", name = \"string\" }",
            );
        }
        return None;
    };
    let mut fields: Vec<(String, Type)> = Vec::new();
    let mut ok = true;
    for (name, ty) in entries {
        match Type::from_name(&ty.value) {
            Some(t) => fields.push((name.value, t)),
            None => {
                ok = false;
                params.error(
                    Diagnostic::error(
                        "E0105",
                        format!("unknown type `{}` for field `{}`", ty.value, name.value),
                    )
                    .at(ty.span.clone(), "not a type")
                    .suggest(&ty.value, Type::ALL.iter().map(|t| t.name()))
                    .note("types: int, float, string, bool, timestamp"),
                );
            }
        }
    }
    if fields.is_empty() && ok {
        params.error(
            Diagnostic::error("E0105", "`schema` declares no fields")
                .at(params.owner_span(), "empty schema"),
        );
        return None;
    }
    ok.then(|| Schema::new(fields))
}

/// Reads a sink's settings. `kind` has been checked against [`SINK_TYPES`].
pub fn configure_sink(kind: &str, name: &str, params: &mut Params<'_>) -> Option<SinkConfig> {
    let mode = params.choice("mode", &["updates", "snapshot"]);
    let mode_span = mode.as_ref().map(|m| m.span.clone());
    let mode = match mode.map(|m| m.value) {
        Some("snapshot") => SinkMode::Snapshot,
        _ => SinkMode::Updates,
    };
    match kind {
        "rabbitmq" => {
            let url = params.str("url").map(|u| u.value);
            let queue = params.req_str("queue", "\"results\"")?;
            if let (SinkMode::Snapshot, Some(span)) = (mode, mode_span) {
                params.error(
                    Diagnostic::error("E0105", "a rabbitmq sink publishes updates only")
                        .at(span, "`mode = \"snapshot\"` is not supported here")
                        .help("remove `mode`, or write the snapshot to a file sink"),
                );
                return None;
            }
            Some(SinkConfig {
                name: name.into(),
                format: SinkFormat::Jsonl,
                target: SinkTarget::Amqp {
                    url,
                    queue: queue.value,
                    pipeline: String::new(),
                },
                path_span: queue.span,
                mode,
            })
        }
        "kafka" => {
            let brokers = params.str("brokers").map(|b| b.value);
            let topic = params.req_str("topic", "\"results\"")?;
            if cfg!(not(feature = "kafka")) {
                params.error(
                    Diagnostic::error("E0105", NO_KAFKA)
                        .at(params.owner_span(), "a kafka sink")
                        .help("build with `--features kafka` (librdkafka is compiled from source)"),
                );
                return None;
            }
            if let (SinkMode::Snapshot, Some(span)) = (mode, mode_span) {
                params.error(
                    Diagnostic::error("E0105", "a kafka sink publishes updates only")
                        .at(span, "`mode = \"snapshot\"` is not supported here")
                        .help("remove `mode`, or write the snapshot to a file sink"),
                );
                return None;
            }
            Some(SinkConfig {
                name: name.into(),
                format: SinkFormat::Jsonl,
                target: SinkTarget::Kafka {
                    brokers,
                    topic: topic.value,
                    pipeline: String::new(),
                },
                path_span: topic.span,
                mode,
            })
        }
        "stdout" => {
            let format = match params.choice("format", &["csv", "jsonl"]).map(|f| f.value) {
                Some("jsonl") => SinkFormat::Jsonl,
                _ => SinkFormat::Csv,
            };
            Some(SinkConfig {
                name: name.into(),
                format,
                target: SinkTarget::Stdout,
                path_span: params.owner_span(),
                mode,
            })
        }
        _ => {
            let format = if kind == "csv" {
                SinkFormat::Csv
            } else {
                SinkFormat::Jsonl
            };
            let (path, path_span) = match params.str("path") {
                Some(p) => (p.value, p.span),
                None => (format!("{name}.{kind}"), params.owner_span()),
            };
            if std::path::Path::new(&path).is_absolute()
                || path.split(['/', '\\']).any(|c| c == "..")
            {
                let span = params.owner_span();
                params.error(
                    Diagnostic::error(
                        "E0105",
                        format!("sink path `{path}` leaves the output folder"),
                    )
                    .at(
                        span,
                        "sink paths are relative to the output folder (`--out`)",
                    ),
                );
                return None;
            }
            Some(SinkConfig {
                name: name.into(),
                format,
                target: SinkTarget::File(PathBuf::from(path)),
                path_span,
                mode,
            })
        }
    }
}

/// Checks a source's file before any work starts: a readable file (not a folder), and (CSV) a
/// header with every schema field.
pub fn check_source_file(cfg: &SourceConfig) -> Result<(), Box<Diagnostic>> {
    if cfg.live.is_some() {
        return Ok(()); // the broker is reached when the run starts
    }
    if let SourceFormat::Nexmark(_) = cfg.format {
        return Ok(());
    }
    let shown = cfg.path.display();
    let cannot_open = |why: String, help: &str| {
        Diagnostic::error(
            "E0401",
            format!(
                "cannot open input file `{shown}` of source `{}`: {why}",
                cfg.name
            ),
        )
        .at(cfg.path_span.clone(), "this file")
        .help(help)
    };
    let io_error = |e: std::io::Error| {
        let help = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "make the file readable for this user, e.g. `chmod u+r FILE`"
            }
            _ => "paths are relative to the pipeline file's folder",
        };
        cannot_open(e.to_string(), help)
    };
    // Before opening: a folder opens fine on Linux and a FIFO blocks the open; both would
    // fail (or hang) only once the run has started, because inputs are memory-mapped.
    let meta = std::fs::metadata(&cfg.path).map_err(io_error)?;
    if !meta.is_file() {
        let why = if meta.is_dir() {
            "it is a folder"
        } else {
            "it is not a regular file (inputs are memory-mapped)"
        };
        return Err(Box::new(cannot_open(why.into(), "point `path` at a file")));
    }
    let file = std::fs::File::open(&cfg.path).map_err(io_error)?;
    if let SourceFormat::Csv { delimiter } = cfg.format {
        use std::io::Read;
        let mut head = Vec::new();
        file.take(1 << 20).read_to_end(&mut head).map_err(|e| {
            Diagnostic::error("E0401", format!("cannot read input file `{shown}`: {e}"))
                .at(cfg.path_span.clone(), "this file")
        })?;
        let (header, _) = split::read_header(&head);
        let header = header.unwrap_or(b"");
        csv_parse::CsvLayout::from_header(header, &cfg.schema, delimiter).map_err(|msg| {
            Diagnostic::error(
                "E0402",
                format!(
                    "input file `{shown}` does not match the schema of source `{}`: {msg}",
                    cfg.name
                ),
            )
            .at(cfg.path_span.clone(), "this file's header")
        })?;
    }
    Ok(())
}

/// A request to stop a run early (SIGINT or SIGTERM), shared by sources and sink writers.
///
/// Each stopping source records the tick its capability was at: nothing earlier can still
/// change. Sinks keep writing ticks before the smallest recorded tick (they are final) and drop
/// later ones, so an interrupted run leaves complete, final output up to that tick.
#[derive(Default, Debug)]
pub struct Interrupt {
    /// The signal number, 0 while none arrived (set from a signal handler).
    pub signal: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bound: std::sync::Mutex<Option<crate::record::Tick>>,
}

impl Interrupt {
    /// The signal that asked to stop, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// A stopping source's capability was at `tick`.
    pub fn record(&self, tick: crate::record::Tick) {
        let mut bound = self.bound.lock().expect("interrupt lock is never poisoned");
        *bound = Some(bound.map_or(tick, |b| b.min(tick)));
    }

    /// Outputs before this tick are final; `None` if no source stopped early.
    pub fn bound(&self) -> Option<crate::record::Tick> {
        *self.bound.lock().expect("interrupt lock is never poisoned")
    }

    /// Whether output at `tick` is final and should be written.
    pub fn keeps(&self, tick: crate::record::Tick) -> bool {
        self.bound().is_none_or(|b| tick < b)
    }
}
