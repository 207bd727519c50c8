//! `filter`: keeps the rows for which a SQL predicate is true (NULL counts as false).

use super::{
    fields_of, FieldUse, InputInfo, PlanCtx, PlannedTransform, RecordOp, TransformConfig,
    TransformFactory, TransformOp,
};
use crate::diag::Diagnostic;
use crate::expr::Expr;
use crate::record::{Row, Type};
use crate::spec::{Params, Sp};
use std::sync::Arc;

/// Factory for `type = "filter"`.
pub struct FilterFactory;

struct FilterConfig {
    predicate: Sp<String>,
}

/// The runtime object: a compiled predicate.
pub struct Filter {
    predicate: Expr,
}

impl TransformFactory for FilterFactory {
    fn name(&self) -> &'static str {
        "filter"
    }
    fn summary(&self) -> &'static str {
        "keep rows where `where` (a SQL predicate) is true"
    }
    fn example(&self) -> &'static str {
        "type = \"filter\"\ninput = \"orders\"\nwhere = \"status = 'paid' AND amount > 100\"\n"
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        let predicate = params.req_str("where", "\"amount > 0\"")?;
        Some(Box::new(FilterConfig { predicate }))
    }
}

impl TransformConfig for FilterConfig {
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let input = inputs[0];
        let predicate = Expr::compile(&self.predicate.value, input.schema)
            .map_err(|e| ctx.expr_diags(&self.predicate, e))?;
        if predicate.ty().is_some_and(|t| t != Type::Bool) {
            let ty = predicate.ty().map(|t| t.name()).unwrap_or("null");
            return Err(vec![Diagnostic::error(
                "E0303",
                format!("`where` must be a boolean expression, found `{ty}`"),
            )
            .at(self.predicate.span.clone(), "not a predicate")
            .help("compare it with something, e.g. `amount > 0`")]);
        }
        Ok(PlannedTransform {
            schema: input.schema.clone(),
            retracting: input.retracting,
            event_time: input.event_time,
            describe: format!("where {}", self.predicate.value),
            reads: FieldUse::PassThrough(fields_of([&predicate], input.schema.len())),
            op: TransformOp::Record(Arc::new(Filter { predicate })),
        })
    }
}

impl RecordOp for Filter {
    fn apply(&self, row: &mut Row, _scratch: &mut Row) -> bool {
        self.predicate.eval_predicate(row)
    }
}
