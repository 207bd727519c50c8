//! Transforms: the operator trait every transform implements, built-in or user-written.
//!
//! A transform type has two halves, as in Vector and DataFusion:
//! - a [`TransformFactory`] (one per type, listed in [`crate::registry`]) that reads the node's
//!   settings and returns a [`TransformConfig`]; it validates but builds nothing;
//! - the config's [`TransformConfig::plan`], called once the input schemas are known, which
//!   resolves names, compiles expressions and returns the runtime object ([`TransformOp`]).
//!
//! Runtime objects come in tiers; use the lowest that works:
//! 1. [`RecordOp`]: a pure function from one row to zero or one row, with no state and no time
//!    (`filter`, `select`). Chains of them are fused into the source that feeds them.
//! 2. Built-in dataflow operators the runtime renders onto differential dataflow (`union`,
//!    `aggregate`).

pub mod accumulate;
pub mod aggregate;
pub mod filter;
pub mod join;
pub mod rank;
pub mod route;
pub mod select;
pub mod union;
pub mod window;

use crate::diag::{Diagnostic, SourceFile};
use crate::expr::ExprError;
use crate::record::{Row, Schema};
use crate::spec::{Params, Sp};
use std::sync::Arc;

/// What a transform's plan step knows about one input.
#[derive(Clone, Copy, Debug)]
pub struct InputInfo<'a> {
    /// The input node's name.
    pub name: &'a str,
    /// The input's schema.
    pub schema: &'a Schema,
    /// Whether the input may carry retractions (diff -1).
    pub retracting: bool,
    /// Position of the pipeline's event-time field in this input, if it still has one.
    pub event_time: Option<usize>,
}

/// Context for planning: the pipeline file, to turn expression errors into file spans.
pub struct PlanCtx<'a> {
    /// The pipeline file.
    pub file: &'a SourceFile,
    /// The span of the node's name, for errors about the node as a whole.
    pub node_span: std::ops::Range<usize>,
}

impl PlanCtx<'_> {
    /// Converts expression errors into diagnostics pointing inside the expression string.
    pub fn expr_diags(&self, text: &Sp<String>, errors: Vec<ExprError>) -> Vec<Diagnostic> {
        errors
            .into_iter()
            .map(|e| {
                let span = crate::spec::params::span_within(&self.file.text, text, e.span.clone());
                let d = Diagnostic::error(e.code, e.message).at(span, e.label);
                match e.help {
                    Some(h) => d.help(h),
                    None => d,
                }
            })
            .collect()
    }
}

/// Reads a transform type's settings. Implementations are unit structs listed in the registry.
pub trait TransformFactory: Sync {
    /// The `type` name in pipeline files (a verb, snake_case).
    fn name(&self) -> &'static str;
    /// One line for `eventflow operators`.
    fn summary(&self) -> &'static str;
    /// An example node body (without the `[transforms.NAME]` header) that a test plans.
    fn example(&self) -> &'static str;
    /// How many inputs it takes: (min, max); `None` is unbounded.
    fn arity(&self) -> (usize, Option<usize>) {
        (1, Some(1))
    }
    /// Reads and checks the settings; problems go to `params.diags`. Returns `None` on error.
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>>;
}

/// A transform's checked settings, waiting for its input schemas.
pub trait TransformConfig: Send + Sync {
    /// Resolves names against the inputs, compiles expressions, and returns the runtime object.
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>>;

    /// Names of its outputs when it has several (`route`); downstream nodes read `NAME.PORT`.
    /// Empty (the default) means one output, read as `NAME`.
    fn ports(&self) -> Vec<String> {
        Vec::new()
    }

    /// Plans the output `port` (an index into [`TransformConfig::ports`]).
    fn plan_port(
        &self,
        _port: usize,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        self.plan(inputs, ctx)
    }
}

/// A transform ready to run.
pub struct PlannedTransform {
    /// The schema of its output.
    pub schema: Schema,
    /// Whether its output may carry retractions.
    pub retracting: bool,
    /// Position of the event-time field in its output, if it keeps one.
    pub event_time: Option<usize>,
    /// What the runtime renders.
    pub op: TransformOp,
    /// A one-line description for `eventflow check`.
    pub describe: String,
    /// Which input fields it reads, so sources parse only what the pipeline uses.
    pub reads: FieldUse,
}

/// The input fields a transform reads.
#[derive(Clone, Debug)]
pub enum FieldUse {
    /// Exactly these input positions (`select`, `aggregate`): downstream needs do not matter.
    Only(Vec<usize>),
    /// These positions plus whatever its consumers need, position for position (`filter`,
    /// `union`: the output has the input's schema).
    PassThrough(Vec<usize>),
    /// Every field of every input (`join`).
    All,
}

/// The position of the field `name` names in `schema`, or an E0306 diagnostic (with a
/// did-you-mean) saying which setting (`what`, e.g. "`group_by`") named an unknown field.
pub fn field_position(
    name: &Sp<String>,
    schema: &Schema,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let found = schema.index_of(&name.value);
    if found.is_none() {
        diags.push(
            Diagnostic::error("E0306", format!("unknown field `{}` in {what}", name.value))
                .at(name.span.clone(), "no such field in the input")
                .suggest(&name.value, schema.names())
                .note(format!("the input has: {schema}")),
        );
    }
    found
}

/// The positions an expression reads.
pub fn fields_of<'a>(
    exprs: impl IntoIterator<Item = &'a crate::expr::Expr>,
    arity: usize,
) -> Vec<usize> {
    let mut used = vec![false; arity];
    for e in exprs {
        e.mark_fields(&mut used);
    }
    used.iter()
        .enumerate()
        .filter(|(_, u)| **u)
        .map(|(i, _)| i)
        .collect()
}

/// The runtime object of a transform.
#[derive(Clone)]
pub enum TransformOp {
    /// Tier 1: a stateless per-row function; fused into upstream chains.
    Record(Arc<dyn RecordOp>),
    /// Concatenate inputs of the same schema.
    Union,
    /// Grouped aggregates maintained by differential dataflow.
    Aggregate(Arc<aggregate::AggregatePlan>),
    /// An equi-join of two inputs.
    Join(Arc<join::JoinPlan>),
    /// The first k rows per group (`top_k`, `dedup`).
    Rank(Arc<rank::RankPlan>),
    /// Distinct rows, optionally of some fields (positions) only.
    Distinct(Option<Arc<Vec<usize>>>),
}

/// Tier 1 operator: a pure function over one row. `apply` rewrites `row` in place (it may use
/// `scratch` as a second buffer and swap) and returns whether the row continues downstream.
/// It must not panic on any row, and must not keep state between calls: the runtime may call
/// it on any worker, in any order.
pub trait RecordOp: Send + Sync {
    /// Processes one row; `false` drops it (the run summary counts it as filtered).
    fn apply(&self, row: &mut Row, scratch: &mut Row) -> bool;
}
