//! `route`: one input, several named outputs chosen by predicates.
//!
//! ```toml
//! [transforms.by_size]
//! type = "route"
//! input = "orders"
//! routes = { big = "amount >= 100", small = "amount < 10" }
//! default = "medium"      # optional: rows no route takes
//! ```
//! Downstream nodes read `by_size.big`, `by_size.small`, `by_size.medium`. By default a row goes
//! to the first route (in file order) whose predicate is true; `mode = "all"` sends it to every
//! route whose predicate is true. A NULL predicate counts as false, as in `filter`. Each output
//! is planned as its own node whose record operator checks the predicates, so outputs fuse
//! into their source like filters do.

use super::{
    fields_of, FieldUse, InputInfo, PlanCtx, PlannedTransform, RecordOp, TransformConfig,
    TransformFactory, TransformOp,
};
use crate::diag::Diagnostic;
use crate::expr::Expr;
use crate::record::{Row, Type};
use crate::spec::{Params, Sp};
use std::sync::Arc;

/// Factory for `type = "route"`.
pub struct RouteFactory;

struct RouteConfig {
    routes: Vec<(Sp<String>, Sp<String>)>,
    default: Option<String>,
    all: bool,
}

/// The record operator of one output.
pub struct RouteOp {
    predicates: Arc<Vec<Expr>>,
    /// Which route this output is; `None` is the default output.
    port: Option<usize>,
    /// `mode = "all"`: every matching route takes the row.
    all: bool,
}

impl TransformFactory for RouteFactory {
    fn name(&self) -> &'static str {
        "route"
    }
    fn summary(&self) -> &'static str {
        "split one input into named outputs by predicate (`routes`); read them as NAME.ROUTE"
    }
    fn example(&self) -> &'static str {
        "type = \"route\"\ninput = \"orders\"\nroutes = { big = \"amount >= 100\", small = \"amount < 10\" }\ndefault = \"medium\"\n"
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        let routes = params.str_table("routes");
        if routes.is_none() && params.raw("routes").is_none() {
            params.missing("routes", "{ big = \"amount >= 100\" }");
        }
        let default = params.str("default");
        let all = params.choice("mode", &["first", "all"]).map(|m| m.value) == Some("all");
        let routes = routes?;
        if routes.is_empty() {
            params.error(
                Diagnostic::error("E0105", "`routes` names no outputs")
                    .at(params.owner_span(), "a route needs at least one output"),
            );
            return None;
        }
        if let Some(d) = &default {
            if let Some((first, _)) = routes.iter().find(|(n, _)| n.value == d.value) {
                params.error(
                    Diagnostic::error("E0201", format!("output `{}` is named twice", d.value))
                        .at(d.span.clone(), "the default output")
                        .also(first.span.clone(), "a route with this name"),
                );
                return None;
            }
        }
        Some(Box::new(RouteConfig {
            routes,
            default: default.map(|d| d.value),
            all,
        }))
    }
}

impl TransformConfig for RouteConfig {
    fn ports(&self) -> Vec<String> {
        let mut ports: Vec<String> = self.routes.iter().map(|(n, _)| n.value.clone()).collect();
        ports.extend(self.default.clone());
        ports
    }

    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        self.plan_port(0, inputs, ctx)
    }

    fn plan_port(
        &self,
        port: usize,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let input = inputs[0];
        let mut predicates = Vec::new();
        let mut diags = Vec::new();
        for (_, text) in &self.routes {
            match Expr::compile(&text.value, input.schema) {
                Ok(p) if p.ty().is_some_and(|t| t != Type::Bool) => diags.push(
                    Diagnostic::error("E0303", "a route's predicate must be boolean")
                        .at(text.span.clone(), "not a predicate"),
                ),
                Ok(p) => predicates.push(p),
                Err(e) => diags.extend(ctx.expr_diags(text, e)),
            }
        }
        // Every output node compiles the same predicates; report their errors once.
        if !diags.is_empty() {
            return Err(if port == 0 { diags } else { Vec::new() });
        }
        let which = (port < self.routes.len()).then_some(port);
        let describe = match which {
            Some(k) => format!("rows where {}", self.routes[k].1.value),
            None => "rows no route takes".to_string(),
        };
        let reads = fields_of(&predicates, input.schema.len());
        Ok(PlannedTransform {
            schema: input.schema.clone(),
            retracting: input.retracting,
            event_time: input.event_time,
            describe,
            reads: FieldUse::PassThrough(reads),
            op: TransformOp::Record(Arc::new(RouteOp {
                predicates: Arc::new(predicates),
                port: which,
                all: self.all,
            })),
        })
    }
}

impl RecordOp for RouteOp {
    fn apply(&self, row: &mut Row, _scratch: &mut Row) -> bool {
        match self.port {
            Some(k) if self.all => self.predicates[k].eval_predicate(row),
            Some(k) => {
                self.predicates[..k].iter().all(|p| !p.eval_predicate(row))
                    && self.predicates[k].eval_predicate(row)
            }
            None => self.predicates.iter().all(|p| !p.eval_predicate(row)),
        }
    }
}
