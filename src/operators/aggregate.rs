//! `aggregate`: grouped `count`, `sum`, `min`, `max` and `avg`, maintained incrementally.
//!
//! ```toml
//! [transforms.revenue]
//! type = "aggregate"
//! input = "paid"
//! group_by = ["category"]
//! aggregates = { revenue = "sum(amount)", orders = "count(*)" }
//! ```
//!
//! The state of a group is an [`AggState`]: a value that can be *added* (a semigroup). Each
//! record contributes `diff × its values`, so a retraction subtracts. Because addition is
//! associative and exact, workers pre-combine the records of a tick locally ([`Combiner`]) and
//! differential dataflow only sees one update per group, worker and tick.
//!
//! Exactness: integer sums are kept in `i128`; float sums in fixed point with 9 decimal places
//! (also `i128`), so a float sum is the same whatever order or worker adds it — a plain `f64` sum
//! would differ in its last bits between runs and worker counts.
//! `min`/`max` keep only the extreme value, so they need an input without retractions; the plan
//! rejects them otherwise.

use super::{
    fields_of, FieldUse, InputInfo, PlanCtx, PlannedTransform, TransformConfig, TransformFactory,
    TransformOp,
};
use crate::diag::Diagnostic;
use crate::expr::{compile_aggregate, AggFunc, Expr};
use crate::record::{Diff, Field, Row, Schema, Tick, Type, Value};
use crate::spec::{Params, Sp};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Fixed-point scale for float sums: 10⁹ (nine decimal places).
const FLOAT_SCALE: f64 = 1e9;

/// Factory for `type = "aggregate"`.
pub struct AggregateFactory;

struct AggregateConfig {
    group_by: Vec<Sp<String>>,
    aggregates: Vec<(Sp<String>, Sp<String>)>,
    window: Option<WindowConfig>,
    emit: Emit,
}

struct WindowConfig {
    kind: WindowKind,
    time_field: Option<Sp<String>>,
    span: std::ops::Range<usize>,
}

/// The most hopping windows one record may belong to (`size / slide`).
pub const MAX_WINDOWS_PER_RECORD: i64 = 1000;

/// Which windows a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Windows `[s, s + size)` starting at every multiple of `slide` (tumbling: `slide == size`).
    Fixed {
        /// Window length, ms.
        size: i64,
        /// Distance between window starts, ms.
        slide: i64,
    },
    /// Per group key: records less than `gap` apart form one session `[first, last + gap)`.
    Session {
        /// Inactivity gap, ms.
        gap: i64,
    },
}

/// When a windowed aggregate writes its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Once per window, when the watermark passes its end.
    Final,
    /// At every tick where a window's result changed (-1 old, +1 new).
    Updates,
}

/// A planned window: its kind, the event-time field it reads and when it emits.
#[derive(Clone, Copy, Debug)]
pub struct WindowPlan {
    /// Tumbling, hopping or session.
    pub kind: WindowKind,
    /// Position of the event-time field in the input.
    pub time: usize,
    /// Final or updates.
    pub emit: Emit,
}

impl TransformFactory for AggregateFactory {
    fn name(&self) -> &'static str {
        "aggregate"
    }
    fn summary(&self) -> &'static str {
        "grouped count/sum/min/max/avg, updated incrementally (`group_by`, `aggregates`)"
    }
    fn example(&self) -> &'static str {
        "type = \"aggregate\"\ninput = \"orders\"\ngroup_by = [\"category\"]\naggregates = { revenue = \"sum(amount)\", orders = \"count(*)\" }\n"
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        let group_by = params.str_list("group_by").unwrap_or_default();
        let aggregates = params.str_table("aggregates");
        if params.raw("aggregates").is_none() {
            params.missing("aggregates", "{ n = \"count(*)\" }");
        }
        let aggregates = aggregates?;
        if aggregates.is_empty() && group_by.is_empty() {
            params.error(
                Diagnostic::error(
                    "E0105",
                    "an aggregate needs `group_by` fields or at least one aggregate",
                )
                .at(params.owner_span(), "nothing to compute"),
            );
            return None;
        }
        let window = params.table("window").and_then(|mut w| {
            let span = w.owner_span();
            let kind = w.choice("type", &["tumbling", "hopping", "session"]);
            if w.raw("type").is_none() {
                w.missing("type", "\"tumbling\"");
            }
            let size = w.duration_ms("size");
            let slide = w.duration_ms("slide");
            let gap = w.duration_ms("gap");
            let time_field = w.str("time_field");
            let need = |w: &mut Params<'_>, v: &Option<Sp<u64>>, key: &str| match v {
                Some(d) if d.value > 0 => Some(d.value as i64),
                Some(d) => {
                    w.error(Diagnostic::error("E0105", format!("`{key}` must be greater than zero")).at(d.span.clone(), "zero"));
                    None
                }
                None => {
                    w.missing(key, "\"1m\"");
                    None
                }
            };
            let kind = match kind.map(|k| k.value) {
                Some("tumbling") => need(&mut w, &size, "size").map(|s| WindowKind::Fixed { size: s, slide: s }),
                Some("hopping") => match (need(&mut w, &size, "size"), need(&mut w, &slide, "slide")) {
                    // Every record is added to size/slide windows: bound that work per record.
                    (Some(size), Some(step)) if step <= size && size / step > MAX_WINDOWS_PER_RECORD => {
                        let s = slide.as_ref().map(|s| s.span.clone()).unwrap_or(span.clone());
                        w.error(
                            Diagnostic::error("E0105", format!("a hopping window of this size and slide puts every record in {} windows, more than {MAX_WINDOWS_PER_RECORD}", size / step))
                                .at(s, "slide too short for the size")
                                .help("use a longer `slide` or a shorter `size`"),
                        );
                        None
                    }
                    (Some(size), Some(slide)) if slide <= size => Some(WindowKind::Fixed { size, slide }),
                    (Some(_), Some(_)) => {
                        let s = slide.as_ref().map(|s| s.span.clone()).unwrap_or(span.clone());
                        w.error(
                            Diagnostic::error("E0105", "a hopping window's `slide` must not exceed its `size`")
                                .at(s, "slide longer than the window")
                                .help("records between windows would be dropped; use a tumbling window instead"),
                        );
                        None
                    }
                    _ => None,
                },
                Some("session") => need(&mut w, &gap, "gap").map(|gap| WindowKind::Session { gap }),
                _ => None,
            };
            let kind_ok = kind.is_some();
            let diags = w.finish();
            let failed = !diags.is_empty() || !kind_ok;
            params.absorb(diags);
            if failed {
                return None;
            }
            Some(WindowConfig { kind: kind?, time_field, span })
        });
        let emit = match params
            .choice("emit", &["final", "updates"])
            .map(|e| e.value)
        {
            Some("updates") => Emit::Updates,
            _ => Emit::Final,
        };
        if params.raw("window").is_some() && window.is_none() {
            return None;
        }
        Some(Box::new(AggregateConfig {
            group_by,
            aggregates,
            window,
            emit,
        }))
    }
}

impl TransformConfig for AggregateConfig {
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let input = inputs[0];
        let mut diags = Vec::new();
        let mut keys = Vec::new();
        let mut fields = Vec::new();
        let mut window = None;
        if let Some(w) = &self.window {
            let time = match &w.time_field {
                Some(name) => match input.schema.index_of(&name.value) {
                    Some(i) if input.schema.fields[i].ty == Type::Timestamp => Some(i),
                    Some(_) => {
                        diags.push(
                            Diagnostic::error(
                                "E0303",
                                format!("window time field `{}` is not a timestamp", name.value),
                            )
                            .at(name.span.clone(), "not a timestamp"),
                        );
                        None
                    }
                    None => {
                        diags.push(
                            Diagnostic::error(
                                "E0306",
                                format!("unknown window time field `{}`", name.value),
                            )
                            .at(name.span.clone(), "no such field in the input")
                            .suggest(&name.value, input.schema.names()),
                        );
                        None
                    }
                },
                None if input.event_time.is_some() => input.event_time,
                None => {
                    diags.push(
                        Diagnostic::error("E0308", "a window needs event time, and this input has no event-time field")
                            .at(w.span.clone(), "no event time here")
                            .help("give the source an `event_time` and keep that field up to here, or set `time_field` in the window"),
                    );
                    None
                }
            };
            if matches!(w.kind, WindowKind::Session { .. }) && input.retracting {
                diags.push(
                    Diagnostic::error(
                        "E0309",
                        "session windows over an input that carries retractions are not supported",
                    )
                    .at(w.span.clone(), "this input can retract rows")
                    .note("a retraction could split a session that has already merged"),
                );
            }
            if let Some(time) = time {
                window = Some(WindowPlan {
                    kind: w.kind,
                    time,
                    emit: self.emit,
                });
                fields.push(Field {
                    name: "window_start".into(),
                    ty: Type::Timestamp,
                });
                fields.push(Field {
                    name: "window_end".into(),
                    ty: Type::Timestamp,
                });
            }
        }
        for (i, g) in self.group_by.iter().enumerate() {
            if self.group_by[..i].iter().any(|h| h.value == g.value) {
                diags.push(
                    Diagnostic::error(
                        "E0310",
                        format!("`{}` appears twice in `group_by`", g.value),
                    )
                    .at(g.span.clone(), "duplicate"),
                );
                continue;
            }
            if let Some(i) = super::field_position(g, input.schema, "`group_by`", &mut diags) {
                keys.push(i);
                fields.push(input.schema.fields[i].clone());
            }
        }
        let mut aggs = Vec::new();
        for (name, text) in &self.aggregates {
            if fields.iter().any(|f: &Field| f.name == name.value) {
                diags.push(
                    Diagnostic::error("E0310", format!("duplicate output column `{}`", name.value))
                        .at(name.span.clone(), "already a group_by field or aggregate"),
                );
            }
            match compile_aggregate(&text.value, input.schema) {
                Ok(call) => {
                    let input_float = call.arg.as_ref().and_then(Expr::ty) == Some(Type::Float);
                    fields.push(Field {
                        name: name.value.clone(),
                        ty: call.ty,
                    });
                    aggs.push(AggSpec {
                        func: call.func,
                        // Over retractions, min and max keep every value with its count, so a
                        // retracted extreme gives way to the next one.
                        multiset: input.retracting
                            && matches!(call.func, AggFunc::Min | AggFunc::Max),
                        arg: call.arg,
                        input_float,
                    });
                }
                Err(errs) => diags.extend(ctx.expr_diags(text, errs)),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let visible = aggs.len();
        if let Some(WindowPlan {
            kind: WindowKind::Session { .. },
            time,
            ..
        }) = window
        {
            // Sessions need each partial's first and last event time: hidden min/max columns.
            let name = format!(
                "\"{}\"",
                input.schema.fields[time].name.replace('"', "\"\"")
            );
            for func in [AggFunc::Min, AggFunc::Max] {
                let arg = Expr::compile(&name, input.schema)
                    .map_err(|e| ctx.expr_diags(&Sp::new(name.clone(), 0..0), e))?;
                aggs.push(AggSpec {
                    func,
                    arg: Some(arg),
                    input_float: false,
                    multiset: false,
                });
            }
        }
        let window_text = match (&self.window, window) {
            (Some(_), Some(w)) => {
                let kind = match w.kind {
                    WindowKind::Fixed { size, slide } if size == slide => {
                        format!("tumbling {size} ms")
                    }
                    WindowKind::Fixed { size, slide } => {
                        format!("hopping {size} ms every {slide} ms")
                    }
                    WindowKind::Session { gap } => format!("session gap {gap} ms"),
                };
                format!(
                    " over {kind} windows on `{}`, emit {:?}",
                    input.schema.fields[w.time].name, w.emit
                )
                .to_lowercase()
            }
            _ => String::new(),
        };
        let describe = format!(
            "group by [{}]{window_text}: {}",
            self.group_by
                .iter()
                .map(|g| g.value.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.aggregates
                .iter()
                .map(|(n, t)| format!("{} = {}", n.value, t.value))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut reads = fields_of(
            aggs.iter().filter_map(|a: &AggSpec| a.arg.as_ref()),
            input.schema.len(),
        );
        reads.extend(&keys);
        reads.extend(window.map(|w| w.time));
        reads.sort_unstable();
        reads.dedup();
        Ok(PlannedTransform {
            schema: Schema { fields },
            // A final window is written once and never retracted.
            retracting: window.is_none_or(|w| w.emit == Emit::Updates),
            event_time: None,
            describe,
            reads: FieldUse::Only(reads),
            op: TransformOp::Aggregate(Arc::new(AggregatePlan {
                keys,
                aggs,
                visible,
                window,
            })),
        })
    }
}

/// One aggregate column.
#[derive(Clone, Debug)]
pub struct AggSpec {
    func: AggFunc,
    arg: Option<Expr>,
    input_float: bool,
    /// Keep the multiset of values (`Acc::Distinct`) rather than a running extreme.
    multiset: bool,
}

/// A planned aggregate: which fields form the key and what to compute per group.
#[derive(Clone, Debug)]
pub struct AggregatePlan {
    keys: Vec<usize>,
    aggs: Vec<AggSpec>,
    /// How many of `aggs` are output columns; the rest are hidden (a session's first/last time).
    visible: usize,
    /// The window, for windowed aggregates.
    pub window: Option<WindowPlan>,
}

/// The accumulated state of one aggregate column.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Acc {
    /// `count(x)`: rows where x is not null. (`count(*)` reads [`AggState::records`].)
    Count(i64),
    /// `sum`/`avg`: the exact sum (integers, or floats in fixed point) and the non-null count.
    Sum {
        /// Exact sum.
        sum: i128,
        /// How many non-null values.
        n: i64,
    },
    /// `min`: the smallest value seen.
    Min(Option<Value>),
    /// `max`: the largest value seen.
    Max(Option<Value>),
    /// `count(DISTINCT x)`: the multiset of non-null values (so retractions work).
    Distinct(BTreeMap<Value, i64>),
}

/// The state of one group: the signed number of records and one [`Acc`] per aggregate column.
/// It is differential dataflow's difference type for aggregates, so adding two states must be
/// associative and commutative ([`AggState::add`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AggState {
    /// Records in the group (inserts minus retractions).
    pub records: i64,
    /// One accumulator per aggregate column.
    pub accs: Vec<Acc>,
}

impl AggState {
    /// Adds another state into this one.
    pub fn add(&mut self, other: &AggState) {
        self.records += other.records;
        for (a, b) in self.accs.iter_mut().zip(&other.accs) {
            match (a, b) {
                (Acc::Count(x), Acc::Count(y)) => *x += y,
                (Acc::Sum { sum, n }, Acc::Sum { sum: s2, n: n2 }) => {
                    *sum = sum.wrapping_add(*s2);
                    *n += n2;
                }
                (Acc::Min(x), Acc::Min(y)) => merge_extreme(x, y, std::cmp::Ordering::Less),
                (Acc::Max(x), Acc::Max(y)) => merge_extreme(x, y, std::cmp::Ordering::Greater),
                (Acc::Distinct(x), Acc::Distinct(y)) => {
                    for (v, n) in y {
                        add_count(x, v, *n);
                    }
                }
                _ => debug_assert!(false, "aggregate states of different shapes"),
            }
        }
    }

    /// Whether the state is the identity: no records and nothing accumulated.
    pub fn is_zero(&self) -> bool {
        self.records == 0
            && self.accs.iter().all(|a| match a {
                Acc::Count(c) => *c == 0,
                Acc::Sum { sum, n } => *sum == 0 && *n == 0,
                Acc::Min(v) | Acc::Max(v) => v.is_none(),
                Acc::Distinct(m) => m.is_empty(),
            })
    }
}

fn add_count(m: &mut BTreeMap<Value, i64>, v: &Value, n: i64) {
    if let Some(c) = m.get_mut(v) {
        *c += n;
        if *c == 0 {
            m.remove(v);
        }
    } else if n != 0 {
        m.insert(v.clone(), n);
    }
}

fn merge_extreme(x: &mut Option<Value>, y: &Option<Value>, keep: std::cmp::Ordering) {
    if let Some(y) = y {
        match x {
            Some(cur) if sql_cmp(y, cur) != keep => {}
            _ => *x = Some(y.clone()),
        }
    }
}

/// Orders values as SQL does: ints and floats numerically.
fn sql_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if !matches!((a, b), (Value::Int(_), Value::Int(_))) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

impl AggregatePlan {
    /// The output schema's leading fields are the key fields, in `group_by` order.
    pub fn key_len(&self) -> usize {
        self.keys.len()
    }

    /// Writes the group key of `row` into `key` (cleared first).
    pub fn key_into(&self, row: &[Value], key: &mut Row) {
        key.clear();
        self.push_key(row, key);
    }

    /// Appends `row`'s group key to `key`.
    fn push_key(&self, row: &[Value], key: &mut Row) {
        key.extend(
            self.keys
                .iter()
                .map(|&i| row.get(i).cloned().unwrap_or_default()),
        );
    }

    /// The identity state.
    pub fn zero(&self) -> AggState {
        AggState {
            records: 0,
            accs: self
                .aggs
                .iter()
                .map(|a| match a.func {
                    AggFunc::Count => Acc::Count(0),
                    AggFunc::CountDistinct => Acc::Distinct(BTreeMap::new()),
                    _ if a.multiset => Acc::Distinct(BTreeMap::new()),
                    AggFunc::Sum | AggFunc::Avg => Acc::Sum { sum: 0, n: 0 },
                    AggFunc::Min => Acc::Min(None),
                    AggFunc::Max => Acc::Max(None),
                })
                .collect(),
        }
    }

    /// Adds `diff` copies of `row` into `state` without allocating (for numeric arguments).
    pub fn fold(&self, state: &mut AggState, row: &[Value], diff: Diff) {
        let diff = diff as i64;
        state.records += diff;
        for (spec, acc) in self.aggs.iter().zip(state.accs.iter_mut()) {
            let Some(arg) = &spec.arg else {
                continue; // count(*): `records` is the answer
            };
            let v = match arg.as_field() {
                Some(i) => std::borrow::Cow::Borrowed(row.get(i).unwrap_or(&Value::Null)),
                None => std::borrow::Cow::Owned(arg.eval(row)),
            };
            // NULL, NaN and infinities are skipped, as SQL skips NULL: an exact sum has no
            // representation for them.
            if v.is_null() || v.as_f64().is_some_and(|x| !x.is_finite()) {
                continue;
            }
            match acc {
                Acc::Count(c) => *c += diff,
                Acc::Sum { sum, n } => {
                    let x: i128 = match &*v {
                        Value::Int(i) => *i as i128,
                        Value::Float(f) if spec.input_float => {
                            (f.get() * FLOAT_SCALE).round() as i128
                        }
                        Value::Float(f) => f.get() as i128,
                        _ => continue,
                    };
                    *sum = sum.wrapping_add(x.wrapping_mul(diff as i128));
                    *n += diff;
                }
                Acc::Distinct(m) => add_count(m, &v, diff),
                Acc::Min(m) => merge_extreme(m, &Some(v.into_owned()), std::cmp::Ordering::Less),
                Acc::Max(m) => merge_extreme(m, &Some(v.into_owned()), std::cmp::Ordering::Greater),
            }
        }
    }

    /// The output row of a group: its key, then each aggregate's value.
    pub fn finalize(&self, key: &[Value], state: &AggState) -> Row {
        let mut row = Vec::with_capacity(key.len() + self.aggs.len());
        row.extend_from_slice(key);
        for (spec, acc) in self.aggs[..self.visible].iter().zip(&state.accs) {
            // Borrowed, not cloned: a `count(DISTINCT)` state can hold thousands of values.
            row.push(match (spec.func, acc) {
                (AggFunc::Min, Acc::Distinct(m)) => m.keys().next().cloned().unwrap_or_default(),
                (AggFunc::Max, Acc::Distinct(m)) => {
                    m.keys().next_back().cloned().unwrap_or_default()
                }
                (_, Acc::Distinct(m)) => Value::Int(m.len() as i64),
                (AggFunc::Count, Acc::Count(_)) if spec.arg.is_none() => Value::Int(state.records),
                (_, Acc::Count(c)) => Value::Int(*c),
                (_, Acc::Sum { n: 0, .. }) => Value::Null,
                (AggFunc::Avg, Acc::Sum { sum, n }) => {
                    let total = if spec.input_float {
                        *sum as f64 / FLOAT_SCALE
                    } else {
                        *sum as f64
                    };
                    Value::float(total / *n as f64)
                }
                (_, Acc::Sum { sum, .. }) if spec.input_float => {
                    Value::float(*sum as f64 / FLOAT_SCALE)
                }
                (_, Acc::Sum { sum, .. }) => {
                    Value::Int((*sum).clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                }
                (_, Acc::Min(v)) | (_, Acc::Max(v)) => v.clone().unwrap_or_default(),
            });
        }
        row
    }
}

/// Pre-aggregation: combines the records of each (tick, group) on one worker before they are
/// exchanged, so differential dataflow sees one update per group per tick instead of one per
/// record. Lookups borrow the key, so a record of an existing group allocates nothing.
pub struct Combiner {
    plan: Arc<AggregatePlan>,
    /// Tick length, when fixed windows with `emit = "final"` file their records at the tick
    /// where the window closes (see [`Combiner::closing_ticks`]).
    closing_tick_ms: Option<u64>,
    ticks: BTreeMap<Tick, HashMap<Row, AggState, foldhash::fast::FixedState>>,
    key: Row,
}

impl Combiner {
    /// An empty combiner for `plan`.
    pub fn new(plan: Arc<AggregatePlan>) -> Combiner {
        Combiner {
            closing_tick_ms: None,
            plan,
            ticks: BTreeMap::new(),
            key: Vec::new(),
        }
    }

    /// For fixed windows with `emit = "final"`, files every record at the tick where its window
    /// closes (its end rounded up to a tick of `tick_ms`) instead of its own tick. A final
    /// window's result does not depend on when within the window a record arrived, so this
    /// combines a whole window per worker into one partial state.
    pub fn closing_ticks(mut self, tick_ms: u64) -> Combiner {
        self.closing_tick_ms = Some(tick_ms.max(1));
        self
    }

    /// Adds `diff` copies of `row` at `tick`; for fixed windows, once per window the row falls
    /// in, under a key that starts with the window's start.
    pub fn add(&mut self, tick: Tick, row: &[Value], diff: Diff) {
        match self.plan.window {
            Some(WindowPlan {
                kind: WindowKind::Fixed { size, slide },
                time,
                emit,
            }) => {
                let Some(t) = row.get(time).and_then(Value::as_i64) else {
                    return; // no event time: belongs to no window
                };
                let closing = self.closing_tick_ms.filter(|_| emit == Emit::Final);
                // The group key is made once, after a slot for each window's start.
                self.key.clear();
                self.key.push(Value::Null);
                self.plan.push_key(row, &mut self.key);
                let mut start = t - t.rem_euclid(slide);
                while start > t - size {
                    let at = match closing {
                        Some(tick_ms) => ((start + size).max(0) as u64).div_ceil(tick_ms) * tick_ms,
                        None => tick,
                    };
                    self.key[0] = Value::Time(start);
                    self.add_keyed(at, row, diff);
                    start -= slide;
                }
            }
            _ => {
                self.plan.key_into(row, &mut self.key);
                self.add_keyed(tick, row, diff)
            }
        }
    }

    /// Folds `row` into the state of group `self.key` at `tick`.
    fn add_keyed(&mut self, tick: Tick, row: &[Value], diff: Diff) {
        let groups = self.ticks.entry(tick).or_default();
        // One hash per record: a new group is inserted where the lookup left off.
        let state = groups
            .entry_ref(self.key.as_slice())
            .or_insert_with(|| self.plan.zero());
        self.plan.fold(state, row, diff);
    }

    /// Removes and returns every tick before `bound` (all ticks for `None`), in tick order,
    /// dropping groups whose state cancelled out.
    pub fn drain_before(&mut self, bound: Option<Tick>) -> Vec<(Tick, Vec<(Row, AggState)>)> {
        let keep = match bound {
            Some(b) => self.ticks.split_off(&b),
            None => BTreeMap::new(),
        };
        let done = std::mem::replace(&mut self.ticks, keep);
        done.into_iter()
            .map(|(t, groups)| {
                (
                    t,
                    groups.into_iter().filter(|(_, s)| !s.is_zero()).collect(),
                )
            })
            .collect()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.ticks.is_empty()
    }
}
