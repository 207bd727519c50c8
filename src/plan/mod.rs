//! From a parsed pipeline file to a validated, typed graph ready to run.
//!
//! Checks run in phases, each reporting all of its errors; a failing phase stops the next so
//! errors never cascade:
//! 1. settings and node parameters (unknown keys, wrong value types, unknown node types);
//! 2. the graph (duplicate names, unknown inputs, cycles, sinks used as inputs);
//! 3. schemas and expressions, in topological order;
//! 4. the environment (input files readable, CSV headers, output paths that collide).
//!
//! The output folder is known only when a run starts, so its checks ([`check_outputs`]) are
//! separate; `runtime::run` calls them before it creates anything.

mod env;

pub use env::{check_outputs, RUN_FILES};

use crate::connectors::{self, SinkConfig, SinkTarget, SourceConfig, SINK_TYPES, SOURCE_TYPES};
use crate::diag::{Diagnostic, SourceFile};
use crate::operators::{FieldUse, InputInfo, PlanCtx, PlannedTransform, TransformConfig};
use crate::record::Schema;
use crate::registry;
use crate::spec::{NodeSpec, Params, PipelineSpec, Role};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

pub use crate::record::time::TimeDomain;

/// What a node does.
pub enum NodeKind {
    /// Reads a file.
    Source(SourceConfig),
    /// Transforms its inputs.
    Transform(PlannedTransform),
    /// Writes its input.
    Sink(SinkConfig),
}

/// One node of the validated graph.
pub struct PlanNode {
    /// Its name.
    pub name: String,
    /// Its `type`.
    pub kind_name: String,
    /// Indices (into [`Plan::nodes`]) of its inputs.
    pub inputs: Vec<usize>,
    /// Indices of the nodes that read it.
    pub consumers: Vec<usize>,
    /// The schema of its output (for a sink: of its input).
    pub schema: Schema,
    /// Whether its output may carry retractions.
    pub retracting: bool,
    /// Position of the event-time field in its output, if it still has one.
    pub event_time: Option<usize>,
    /// For each output field, whether any consumer reads it (sources parse only those).
    pub needed: Vec<bool>,
    /// What it does.
    pub kind: NodeKind,
}

/// A validated pipeline: nodes in topological order (every input before its readers).
pub struct Plan {
    /// Pipeline name (`[pipeline] name`, or the file's stem).
    pub name: String,
    /// The pipeline file.
    pub file: SourceFile,
    /// How time is derived.
    pub time: TimeDomain,
    /// Nodes, inputs first.
    pub nodes: Vec<PlanNode>,
}

/// Builds the plan, or every diagnostic of the first failing phase.
pub fn build(spec: &PipelineSpec) -> Result<Plan, Vec<Diagnostic>> {
    // Phase 1: settings and parameters.
    let mut diags = Vec::new();
    let mut settings = Params::new(
        &spec.settings.value,
        "[pipeline]",
        spec.settings.span.clone(),
    );
    let default_name = std::path::Path::new(&spec.file.name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    let name = settings
        .str("name")
        .map(|s| s.value)
        .unwrap_or(default_name);
    let _description = settings.str("description");
    let tick = settings.duration_ms("tick");
    let tick_records = settings.u64("tick_records");
    for t in [&tick, &tick_records].into_iter().flatten() {
        if t.value == 0 {
            settings.error(
                Diagnostic::error("E0105", "a tick must be greater than zero")
                    .at(t.span.clone(), "zero"),
            );
        }
    }
    diags.extend(settings.finish());

    enum Configured {
        Source(SourceConfig),
        /// A transform, and which of its named outputs this node is (for `route`).
        Transform(Arc<dyn TransformConfig>, Option<usize>),
        Sink(SinkConfig),
    }
    let mut configured = Vec::new();
    for node in &spec.nodes {
        let owner = format!("{}.{}", node.role.table(), node.name.value);
        let mut params = Params::new(&node.params, owner, node.name.span.clone());
        let types: Vec<&str> = match node.role {
            Role::Source => SOURCE_TYPES.iter().map(|t| t.0).collect(),
            Role::Transform => registry::TRANSFORMS.iter().map(|t| t.name()).collect(),
            Role::Sink => SINK_TYPES.iter().map(|t| t.0).collect(),
        };
        if !types.contains(&node.kind.value.as_str()) {
            let msg = format!("unknown {} type `{}`", node.role.noun(), node.kind.value);
            diags.push(
                Diagnostic::error("E0203", msg)
                    .at(
                        node.kind.span.clone(),
                        format!("no {} with this name", node.role.noun()),
                    )
                    .suggest(&node.kind.value, types.iter().copied())
                    .note(format!(
                        "`eventflow operators` lists every {} type: {}",
                        node.role.noun(),
                        types.join(", ")
                    )),
            );
            configured.push(None);
            continue;
        }
        let c = match node.role {
            Role::Source => {
                connectors::configure_source(&node.kind.value, &node.name.value, &mut params, spec)
                    .map(Configured::Source)
            }
            Role::Transform => {
                let factory = registry::transform(&node.kind.value).expect("checked above");
                let (min, max) = factory.arity();
                let n = node.inputs.len();
                if n < min || max.is_some_and(|m| n > m) {
                    let want = match max {
                        Some(m) if m == min => format!("exactly {min}"),
                        Some(m) => format!("{min} to {m}"),
                        None => format!("at least {min}"),
                    };
                    params.error(
                        Diagnostic::error(
                            "E0205",
                            format!("`{}` takes {want} input(s), found {n}", node.kind.value),
                        )
                        .at(node.name.span.clone(), "wrong number of inputs"),
                    );
                }
                factory
                    .configure(&mut params)
                    .map(|c| Configured::Transform(Arc::from(c), None))
            }
            Role::Sink => {
                if node.inputs.len() > 1 {
                    params.error(
                        Diagnostic::error("E0205", "a sink takes exactly one input")
                            .at(node.inputs[1].span.clone(), "extra input")
                            .help("put a `union` transform in front of the sink"),
                    );
                }
                connectors::configure_sink(&node.kind.value, &node.name.value, &mut params)
                    .map(Configured::Sink)
            }
        };
        diags.extend(params.finish());
        configured.push(c);
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    // A transform with named outputs (`route`) becomes one graph node per output, named
    // `NAME.PORT`; from here on the graph is made of these nodes.
    let mut graph_nodes: Vec<NodeSpec> = Vec::new();
    let mut graph_configs: Vec<Configured> = Vec::new();
    for (node, c) in spec.nodes.iter().zip(configured) {
        match c.expect("no diagnostics means configured") {
            Configured::Transform(t, _) if !t.ports().is_empty() => {
                for (k, port) in t.ports().iter().enumerate() {
                    let mut n = node.clone();
                    n.name.value = format!("{}.{port}", node.name.value);
                    graph_nodes.push(n);
                    graph_configs.push(Configured::Transform(t.clone(), Some(k)));
                }
            }
            c => {
                graph_nodes.push(node.clone());
                graph_configs.push(c);
            }
        }
    }
    let gnodes = &graph_nodes;
    let configured = graph_configs;

    // Phase 2: the graph.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, node) in gnodes.iter().enumerate() {
        if let Some(&first) = index.get(node.name.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    "E0201",
                    format!("duplicate node name `{}`", node.name.value),
                )
                .at(node.name.span.clone(), "second node with this name")
                .also(gnodes[first].name.span.clone(), "first defined here")
                .help("node names must be unique across sources, transforms and sinks"),
            );
        } else {
            index.insert(&node.name.value, i);
        }
    }
    let mut edges: Vec<Vec<usize>> = Vec::new();
    for node in gnodes {
        let mut ins = Vec::new();
        for input in &node.inputs {
            match index.get(input.value.as_str()) {
                Some(&j) if gnodes[j].role == Role::Sink => diags.push(
                    Diagnostic::error(
                        "E0205",
                        format!("`{}` reads from sink `{}`", node.name.value, input.value),
                    )
                    .at(input.span.clone(), "sinks have no output")
                    .help("read from the sink's input instead"),
                ),
                Some(&j) => ins.push(j),
                None => {
                    let names = spec
                        .nodes
                        .iter()
                        .filter(|n| n.role != Role::Sink)
                        .map(|n| n.name.value.as_str());
                    diags.push(
                        Diagnostic::error(
                            "E0202",
                            format!("unknown input `{}` of `{}`", input.value, node.name.value),
                        )
                        .at(input.span.clone(), "no source or transform with this name")
                        .suggest(&input.value, names),
                    )
                }
            }
        }
        edges.push(ins);
    }
    if !gnodes.iter().any(|n| n.role == Role::Sink) {
        diags.push(
            Diagnostic::error("E0206", "the pipeline has no sink")
                .at(spec.settings.span.clone(), "nothing would be written")
                .help("add a `[sinks.NAME]` table with `type = \"csv\"` and an `input`"),
        );
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let order = match topological_order(&edges) {
        Ok(o) => o,
        Err(cycle) => {
            let path = cycle
                .iter()
                .map(|&i| gnodes[i].name.value.as_str())
                .collect::<Vec<_>>()
                .join(" → ");
            let first = &gnodes[cycle[0]];
            let mut d = Diagnostic::error("E0204", format!("the pipeline has a cycle: {path}"))
                .at(first.name.span.clone(), "this node depends on itself")
                .help("pipelines are acyclic: remove one of these inputs");
            for &i in &cycle[1..cycle.len() - 1] {
                d = d.also(gnodes[i].name.span.clone(), "part of the cycle");
            }
            return Err(vec![d]);
        }
    };

    // Phase 3: schemas and expressions, inputs first.
    let mut slots: Vec<Option<Configured>> = configured.into_iter().map(Some).collect();
    let mut position = vec![usize::MAX; gnodes.len()];
    let mut nodes: Vec<PlanNode> = Vec::new();
    let mut failed = vec![false; gnodes.len()];
    for &i in &order {
        let node = &gnodes[i];
        position[i] = nodes.len();
        let inputs: Vec<usize> = edges[i].iter().map(|&j| position[j]).collect();
        let kind_name = node.kind.value.clone();
        if edges[i].iter().any(|&j| failed[j]) {
            failed[i] = true;
            nodes.push(placeholder(node.name.value.clone(), kind_name, inputs));
            continue;
        }
        let planned = match slots[i].take().expect("each node planned once") {
            Configured::Source(cfg) => Ok((
                cfg.output_schema(),
                cfg.change.is_some(),
                cfg.output_event_time(),
                NodeKind::Source(cfg),
            )),
            Configured::Sink(cfg) => {
                let input = &nodes[inputs[0]];
                let clash = input.schema.names().find(|n| *n == "time" || *n == "diff");
                match (cfg.mode, clash) {
                    (connectors::SinkMode::Updates, Some(name)) => Err(vec![Diagnostic::error(
                        "E0311",
                        format!("input field `{name}` clashes with the `{name}` column of an updates sink"),
                    )
                    .at(node.name.span.clone(), "updates sink")
                    .help(format!(
                        "rename `{name}` with a `select` before this sink, or use `mode = \"snapshot\"`"
                    ))]),
                    _ => Ok((input.schema.clone(), input.retracting, input.event_time, NodeKind::Sink(cfg))),
                }
            }
            Configured::Transform(cfg, port) => {
                let infos: Vec<InputInfo<'_>> = inputs
                    .iter()
                    .map(|&j| InputInfo {
                        name: &nodes[j].name,
                        schema: &nodes[j].schema,
                        retracting: nodes[j].retracting,
                        event_time: nodes[j].event_time,
                    })
                    .collect();
                let ctx = PlanCtx {
                    file: &spec.file,
                    node_span: node.name.span.clone(),
                };
                match port {
                    Some(k) => cfg.plan_port(k, &infos, &ctx),
                    None => cfg.plan(&infos, &ctx),
                }
                .map(|p| {
                    (
                        p.schema.clone(),
                        p.retracting,
                        p.event_time,
                        NodeKind::Transform(p),
                    )
                })
            }
        };
        match planned {
            Ok((schema, retracting, event_time, kind)) => nodes.push(PlanNode {
                name: node.name.value.clone(),
                kind_name,
                inputs,
                consumers: Vec::new(),
                schema,
                retracting,
                event_time,
                needed: Vec::new(),
                kind,
            }),
            Err(d) => {
                diags.extend(d);
                failed[i] = true;
                nodes.push(placeholder(node.name.value.clone(), kind_name, inputs));
            }
        }
    }
    let sources: Vec<&SourceConfig> = nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Source(s) => Some(s),
            _ => None,
        })
        .collect();
    // In an event-time pipeline, a source without `event_time` is a table: all of its rows
    // hold from the start (time zero), like a dimension table that events are joined with.
    let with_time = sources.iter().filter(|s| s.event_time.is_some()).count();
    if tick.is_some() && with_time == 0 {
        diags.push(
            Diagnostic::error(
                "E0105",
                "`tick` is a duration of event time, but no source has `event_time`",
            )
            .at(
                tick.as_ref().map(|t| t.span.clone()).unwrap_or(0..0),
                "no event time",
            )
            .help("use `tick_records` to group records by position"),
        );
    }
    if let (Some(t), true) = (&tick_records, with_time > 0) {
        diags.push(
            Diagnostic::error(
                "E0105",
                "`tick_records` groups records by position, but the sources have `event_time`",
            )
            .at(t.span.clone(), "not used with event time")
            .help("use `tick = \"1s\"` (a duration of event time)"),
        );
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let time = if with_time > 0 {
        TimeDomain::Event {
            tick_ms: tick.map(|t| t.value).unwrap_or(1000),
        }
    } else {
        TimeDomain::Position {
            tick_records: tick_records.map(|t| t.value).unwrap_or(100_000),
        }
    };
    // Windows need event-time ticks, and sessions pre-combine per tick, which is exact only
    // when a tick is no longer than the gap.
    for (k, n) in nodes.iter().enumerate() {
        let NodeKind::Transform(t) = &n.kind else {
            continue;
        };
        let crate::operators::TransformOp::Aggregate(p) = &t.op else {
            continue;
        };
        let Some(w) = p.window else { continue };
        let span = gnodes[order[k]].name.span.clone();
        match (time, w.kind) {
            (TimeDomain::Position { .. }, _) => diags.push(
                Diagnostic::error("E0308", "windows need event time, but the sources have no `event_time`")
                    .at(span, "windowed aggregate")
                    .help("give the sources an `event_time` field"),
            ),
            (TimeDomain::Event { tick_ms }, crate::operators::aggregate::WindowKind::Session { gap })
                if (gap as u64) < tick_ms =>
            {
                diags.push(
                    Diagnostic::error("E0105", format!("the session gap ({gap} ms) is shorter than the pipeline's tick ({tick_ms} ms)"))
                        .at(span, "session window")
                        .help("set `[pipeline] tick` to at most the gap"),
                )
            }
            _ => {}
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    for i in 0..nodes.len() {
        for j in nodes[i].inputs.clone() {
            nodes[j].consumers.push(i);
        }
    }

    // Which fields each node's consumers read, so sources parse only those (projection pushdown).
    for i in (0..nodes.len()).rev() {
        let mut needed = vec![false; nodes[i].schema.len()];
        for &c in &nodes[i].consumers {
            match &nodes[c].kind {
                NodeKind::Sink(_) => needed.iter_mut().for_each(|n| *n = true),
                NodeKind::Transform(t) => {
                    let extra = match &t.reads {
                        FieldUse::All => {
                            needed.iter_mut().for_each(|n| *n = true);
                            continue;
                        }
                        FieldUse::Only(f) => f,
                        FieldUse::PassThrough(f) => {
                            for (n, m) in needed.iter_mut().zip(&nodes[c].needed) {
                                *n |= m;
                            }
                            f
                        }
                    };
                    for &f in extra {
                        if let Some(n) = needed.get_mut(f) {
                            *n = true;
                        }
                    }
                }
                NodeKind::Source(_) => {}
            }
        }
        if let NodeKind::Source(cfg) = &nodes[i].kind {
            // A source parses its declared schema, which has the change column too.
            if let Some(c) = &cfg.change {
                needed.insert(c.field, true);
            }
            if let Some(et) = cfg.event_time {
                needed[et] = true;
            }
        }
        nodes[i].needed = needed;
    }

    // Phase 4: the environment.
    let specs: Vec<&NodeSpec> = order.iter().map(|&i| &gnodes[i]).collect();
    diags.extend(env::check_files(&nodes, &specs));
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Plan {
        name,
        file: spec.file.clone(),
        time,
        nodes,
    })
}

fn placeholder(name: String, kind_name: String, inputs: Vec<usize>) -> PlanNode {
    PlanNode {
        name,
        kind_name,
        inputs,
        consumers: Vec::new(),
        schema: Schema::default(),
        retracting: false,
        event_time: None,
        needed: Vec::new(),
        kind: NodeKind::Transform(PlannedTransform {
            schema: Schema::default(),
            retracting: false,
            event_time: None,
            op: crate::operators::TransformOp::Union,
            describe: String::new(),
            reads: crate::operators::FieldUse::PassThrough(Vec::new()),
        }),
    }
}

/// Kahn's algorithm, stable in declaration order; on a cycle returns its path (first = last).
fn topological_order(edges: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = edges.len();
    let mut indegree: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut readers = vec![Vec::new(); n];
    for (i, ins) in edges.iter().enumerate() {
        for &j in ins {
            readers[j].push(i);
        }
    }
    let mut order = Vec::new();
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &r in &readers[i] {
            indegree[r] -= 1;
            if indegree[r] == 0 {
                ready.insert(r);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk inputs from a node left in the cycle until a node repeats.
    let mut at = (0..n).find(|&i| indegree[i] > 0).expect("a node is left");
    let mut path = vec![at];
    loop {
        at = *edges[at]
            .iter()
            .find(|&&j| indegree[j] > 0)
            .expect("a cycle node has a cyclic input");
        if let Some(p) = path.iter().position(|&x| x == at) {
            // `path` follows inputs; reverse it so the cycle reads in the direction data flows.
            let mut cycle: Vec<usize> = path[p..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(at);
    }
}

impl Plan {
    /// The graph in Graphviz DOT, for `eventflow graph` (render with `dot -Tsvg`).
    pub fn to_dot(&self) -> String {
        let mut out = format!(
            "digraph {:?} {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n",
            self.name
        );
        for n in &self.nodes {
            let shape = match n.kind {
                NodeKind::Source(_) => "cylinder",
                NodeKind::Transform(_) => "box",
                NodeKind::Sink(_) => "note",
            };
            let fields = n.schema.names().collect::<Vec<_>>().join(", ");
            let label = format!("{}\\n[{}]\\n({fields})", n.name, n.kind_name);
            let _ = writeln!(
                out,
                "  {:?} [shape={shape}, label=\"{}\"];",
                n.name,
                label.replace('"', "\\\"")
            );
        }
        for n in &self.nodes {
            for &i in &n.inputs {
                let _ = writeln!(out, "  {:?} -> {:?};", self.nodes[i].name, n.name);
            }
        }
        out.push_str("}\n");
        out
    }

    /// A readable description of the plan: nodes, edges and schemas, for `eventflow check`.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let time = match self.time {
            TimeDomain::Event { tick_ms } => format!("event time, ticks of {tick_ms} ms"),
            TimeDomain::Position { tick_records } => {
                format!("record position, ticks of {tick_records} records")
            }
        };
        let _ = writeln!(
            out,
            "pipeline `{}` ({} nodes; time: {time})",
            self.name,
            self.nodes.len()
        );
        for n in &self.nodes {
            let inputs = n
                .inputs
                .iter()
                .map(|&i| self.nodes[i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let (role, detail) = match &n.kind {
                NodeKind::Source(s) => {
                    let mut d = s.input_label();
                    if let Some(et) = s.event_time {
                        let _ = write!(
                            d,
                            ", event_time {} (max_lateness {} ms)",
                            s.schema.fields[et].name, s.max_lateness_ms
                        );
                    }
                    ("source", d)
                }
                NodeKind::Transform(t) => ("transform", t.describe.clone()),
                NodeKind::Sink(s) => {
                    let target = match &s.target {
                        SinkTarget::Stdout => "stdout".into(),
                        t => t.describe(),
                    };
                    (
                        "sink",
                        format!("{target}, mode {:?}", s.mode).to_lowercase(),
                    )
                }
            };
            let _ = writeln!(out, "  {role} {} [{}]: {detail}", n.name, n.kind_name);
            if !inputs.is_empty() {
                let _ = writeln!(out, "    inputs: {inputs}");
            }
            if let NodeKind::Source(connectors::SourceConfig {
                format: connectors::SourceFormat::Csv { .. },
                schema: declared,
                ..
            }) = &n.kind
            {
                let parsed: Vec<&str> = declared
                    .fields
                    .iter()
                    .zip(&n.needed)
                    .filter(|(_, u)| **u)
                    .map(|(f, _)| f.name.as_str())
                    .collect();
                let _ = writeln!(
                    out,
                    "    parses: {} (fields no node reads are skipped)",
                    parsed.join(", ")
                );
            }
            let _ = writeln!(
                out,
                "    schema: ({}){}",
                n.schema,
                if n.retracting {
                    ", with retractions"
                } else {
                    ""
                }
            );
        }
        out
    }
}
