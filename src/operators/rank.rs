//! Ranking transforms: `top_k` (the first k rows per group by an ordering), `dedup` (the first
//! row per key) and `distinct` (each distinct row once).
//!
//! `top_k` and `dedup` share one runtime plan, [`RankPlan`]: rows are grouped by key and ordered
//! by a sort key built from the `order_by` expressions, then by the whole row, so ties are broken
//! the same way on every run and worker count. NULL sort values come last in either direction.
//! Differential dataflow keeps each group's rows; when one enters or leaves the first k, the
//! output retracts and inserts exactly the rows that changed.

use super::{
    field_position, fields_of, FieldUse, InputInfo, PlanCtx, PlannedTransform, TransformConfig,
    TransformFactory, TransformOp,
};
use crate::diag::Diagnostic;
use crate::expr::Expr;
use crate::record::{Field, Row, Schema, Type, Value};
use crate::spec::{Params, Sp};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::sync::Arc;

/// Factory for `type = "top_k"`.
pub struct TopKFactory;
/// Factory for `type = "dedup"`.
pub struct DedupFactory;
/// Factory for `type = "distinct"`.
pub struct DistinctFactory;

/// One `order_by` entry as written: an expression and a direction.
struct OrderText {
    expr: Sp<String>,
    descending: bool,
}

struct RankConfig {
    group_by: Vec<Sp<String>>,
    order_by: Vec<OrderText>,
    k: u64,
    rank_field: Option<String>,
    /// `dedup` (k = 1, ordered by event time unless told otherwise) rather than `top_k`.
    dedup: bool,
}

/// The runtime object of `top_k` and `dedup`.
pub struct RankPlan {
    keys: Vec<usize>,
    order: Vec<(Expr, bool)>,
    /// How many rows per group.
    pub k: usize,
    /// Whether to append each row's 1-based rank.
    pub with_rank: bool,
}

/// A sort value with its direction; NULL sorts last either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortValue {
    /// Smallest first.
    Asc(Value),
    /// Largest first.
    Desc(Value),
}

impl Ord for SortValue {
    fn cmp(&self, other: &Self) -> Ordering {
        fn nulls_last(a: &Value, b: &Value, desc: bool) -> Ordering {
            match (a.is_null(), b.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if desc => b.cmp(a),
                _ => a.cmp(b),
            }
        }
        match (self, other) {
            (SortValue::Asc(a), SortValue::Asc(b)) => nulls_last(a, b, false),
            (SortValue::Desc(a), SortValue::Desc(b)) => nulls_last(a, b, true),
            // A position always holds the same direction; order the variants for totality.
            (SortValue::Asc(_), SortValue::Desc(_)) => Ordering::Less,
            (SortValue::Desc(_), SortValue::Asc(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for SortValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl RankPlan {
    /// The group key of a row.
    pub fn group(&self, row: &[Value]) -> Row {
        self.keys
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or_default())
            .collect()
    }
    /// The sort key of a row.
    pub fn sort_key(&self, row: &[Value]) -> Vec<SortValue> {
        self.order
            .iter()
            .map(|(e, desc)| {
                let v = e.eval(row);
                if *desc {
                    SortValue::Desc(v)
                } else {
                    SortValue::Asc(v)
                }
            })
            .collect()
    }
}

fn parse_order(text: &Sp<String>) -> OrderText {
    let trimmed = text.value.trim_end();
    let lower = trimmed.to_ascii_lowercase();
    for (suffix, descending) in [(" desc", true), (" asc", false)] {
        if lower.ends_with(suffix) {
            let expr = trimmed[..trimmed.len() - suffix.len()].to_string();
            return OrderText {
                expr: Sp::new(expr, text.span.clone()),
                descending,
            };
        }
    }
    OrderText {
        expr: text.clone(),
        descending: false,
    }
}

fn read_rank(params: &mut Params<'_>, dedup: bool) -> Option<Box<dyn TransformConfig>> {
    let group_by = if dedup {
        let key = params.str_list("key");
        if key.is_none() && params.raw("key").is_none() {
            params.missing("key", "[\"user_id\"]");
        }
        key?
    } else {
        params.str_list("group_by").unwrap_or_default()
    };
    let order_by: Vec<OrderText> = params
        .str_list("order_by")
        .unwrap_or_default()
        .iter()
        .map(parse_order)
        .collect();
    let k = if dedup {
        1
    } else {
        match params.u64("k") {
            Some(k) if k.value == 0 => {
                params.error(
                    Diagnostic::error("E0105", "`k` must be at least 1").at(k.span.clone(), "zero"),
                );
                return None;
            }
            Some(k) => k.value,
            None => {
                if params.raw("k").is_none() {
                    params.missing("k", "10");
                }
                return None;
            }
        }
    };
    if !dedup && order_by.is_empty() && params.raw("order_by").is_none() {
        params.missing("order_by", "[\"views DESC\"]");
        return None;
    }
    let rank_field = if dedup {
        None
    } else {
        params.str("rank").map(|r| r.value)
    };
    Some(Box::new(RankConfig {
        group_by,
        order_by,
        k,
        rank_field,
        dedup,
    }))
}

impl TransformFactory for TopKFactory {
    fn name(&self) -> &'static str {
        "top_k"
    }
    fn summary(&self) -> &'static str {
        "the first `k` rows per `group_by` group by `order_by` (e.g. \"amount DESC\")"
    }
    fn example(&self) -> &'static str {
        "type = \"top_k\"\ninput = \"orders\"\ngroup_by = [\"category\"]\norder_by = [\"amount DESC\"]\nk = 3\nrank = \"rank\"\n"
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        read_rank(params, false)
    }
}

impl TransformFactory for DedupFactory {
    fn name(&self) -> &'static str {
        "dedup"
    }
    fn summary(&self) -> &'static str {
        "the first row per `key`, by event time (or `order_by`)"
    }
    fn example(&self) -> &'static str {
        "type = \"dedup\"\ninput = \"orders\"\nkey = [\"order_id\"]\norder_by = [\"ts\"]\n"
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        read_rank(params, true)
    }
}

impl TransformConfig for RankConfig {
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let input = inputs[0];
        let mut diags = Vec::new();
        let mut keys = Vec::new();
        let setting = if self.dedup { "`key`" } else { "`group_by`" };
        for g in &self.group_by {
            keys.extend(field_position(g, input.schema, setting, &mut diags));
        }
        let mut order = Vec::new();
        for o in &self.order_by {
            match Expr::compile(&o.expr.value, input.schema) {
                Ok(e) => order.push((e, o.descending)),
                Err(e) => diags.extend(ctx.expr_diags(&o.expr, e)),
            }
        }
        if order.is_empty() && diags.is_empty() {
            // dedup without `order_by` keeps the earliest record by event time.
            match input.event_time {
                Some(et) => {
                    let name = format!(
                        "\"{}\"",
                        input.schema.fields[et].name.replace('"', "\"\"")
                    );
                    let e = Expr::compile(&name, input.schema)
                        .map_err(|e| ctx.expr_diags(&Sp::new(name.clone(), 0..0), e))?;
                    order.push((e, false));
                }
                None => diags.push(
                    Diagnostic::error(
                        "E0105",
                        "`dedup` without `order_by` keeps the earliest record by event time, but this input has no event-time field",
                    )
                    .at(ctx.node_span.clone(), "which record is first?")
                    .help("add `order_by = [\"field\"]`"),
                ),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let mut fields = input.schema.fields.clone();
        if let Some(name) = &self.rank_field {
            if fields.iter().any(|f| &f.name == name) {
                return Err(vec![Diagnostic::error(
                    "E0310",
                    format!("rank column `{name}` clashes with an input field"),
                )
                .at(ctx.node_span.clone(), "choose another `rank` name")]);
            }
            fields.push(Field {
                name: name.clone(),
                ty: Type::Int,
            });
        }
        let reads = fields_of(order.iter().map(|(e, _)| e), input.schema.len());
        let describe = format!(
            "{} by [{}] ordered by [{}]",
            if self.dedup {
                "first row".to_string()
            } else {
                format!("top {}", self.k)
            },
            self.group_by
                .iter()
                .map(|g| g.value.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.order_by
                .iter()
                .map(|o| format!(
                    "{}{}",
                    o.expr.value,
                    if o.descending { " DESC" } else { "" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let plan = RankPlan {
            keys: keys.clone(),
            order,
            k: self.k.min(usize::MAX as u64) as usize,
            with_rank: self.rank_field.is_some(),
        };
        let mut reads = reads;
        reads.extend(keys);
        Ok(PlannedTransform {
            schema: Schema { fields },
            retracting: true,
            event_time: input.event_time,
            describe,
            reads: FieldUse::PassThrough(reads),
            op: TransformOp::Rank(Arc::new(plan)),
        })
    }
}

struct DistinctConfig {
    fields: Option<Vec<Sp<String>>>,
}

impl TransformFactory for DistinctFactory {
    fn name(&self) -> &'static str {
        "distinct"
    }
    fn summary(&self) -> &'static str {
        "each distinct row once (of `fields`, or of whole rows)"
    }
    fn example(&self) -> &'static str {
        "type = \"distinct\"\ninput = \"orders\"\nfields = [\"category\", \"status\"]\n"
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        let fields = params.str_list("fields");
        Some(Box::new(DistinctConfig { fields }))
    }
}

impl TransformConfig for DistinctConfig {
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        _ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let input = inputs[0];
        let Some(names) = &self.fields else {
            return Ok(PlannedTransform {
                schema: input.schema.clone(),
                retracting: input.retracting,
                event_time: input.event_time,
                describe: "distinct rows".into(),
                reads: FieldUse::PassThrough(Vec::new()),
                op: TransformOp::Distinct(None),
            });
        };
        let mut diags = Vec::new();
        let mut keep = Vec::new();
        for g in names {
            keep.extend(field_position(g, input.schema, "`fields`", &mut diags));
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(PlannedTransform {
            schema: Schema {
                fields: keep
                    .iter()
                    .map(|&i| input.schema.fields[i].clone())
                    .collect(),
            },
            retracting: input.retracting,
            event_time: input
                .event_time
                .and_then(|et| keep.iter().position(|&i| i == et)),
            describe: format!(
                "distinct [{}]",
                names
                    .iter()
                    .map(|n| n.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            reads: FieldUse::Only(keep.clone()),
            op: TransformOp::Distinct(Some(Arc::new(keep))),
        })
    }
}
