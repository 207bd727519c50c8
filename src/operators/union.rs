//! `union`: concatenates inputs that have the same schema (bag semantics, like SQL UNION ALL).

use super::{
    FieldUse, InputInfo, PlanCtx, PlannedTransform, TransformConfig, TransformFactory, TransformOp,
};
use crate::diag::Diagnostic;
use crate::spec::Params;

/// Factory for `type = "union"`.
pub struct UnionFactory;

struct UnionConfig;

impl TransformFactory for UnionFactory {
    fn name(&self) -> &'static str {
        "union"
    }
    fn summary(&self) -> &'static str {
        "concatenate inputs with identical schemas (UNION ALL)"
    }
    fn example(&self) -> &'static str {
        "type = \"union\"\ninputs = [\"eu_orders\", \"us_orders\"]\n"
    }
    fn arity(&self) -> (usize, Option<usize>) {
        (1, None)
    }
    fn configure(&self, _params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        Some(Box::new(UnionConfig))
    }
}

impl TransformConfig for UnionConfig {
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let first = inputs[0].schema;
        for (i, other) in inputs.iter().enumerate().skip(1) {
            if other.schema != first {
                return Err(vec![Diagnostic::error(
                    "E0307",
                    format!("union inputs have different schemas: input 1 is ({first}) but input {} is ({})", i + 1, other.schema),
                )
                .at(ctx.node_span.clone(), "inputs must match")
                .help("add a `select` before the union so every input has the same fields, in the same order, with the same types")]);
            }
        }
        Ok(PlannedTransform {
            schema: first.clone(),
            retracting: inputs.iter().any(|i| i.retracting),
            event_time: inputs[0]
                .event_time
                .filter(|&t| inputs.iter().all(|i| i.event_time == Some(t))),
            describe: format!("{} inputs", inputs.len()),
            reads: FieldUse::PassThrough(Vec::new()),
            op: TransformOp::Union,
        })
    }
}
