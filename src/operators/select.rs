//! `select`: projects, renames and computes columns.
//!
//! `fields = ["a", "b"]` keeps fields; `fields = { total = "amount * quantity", id = "order_id" }`
//! names each output column and gives its SQL expression (a bare field name projects or renames).

use super::{
    fields_of, FieldUse, InputInfo, PlanCtx, PlannedTransform, RecordOp, TransformConfig,
    TransformFactory, TransformOp,
};
use crate::diag::Diagnostic;
use crate::expr::Expr;
use crate::record::{Row, Schema, Type};
use crate::spec::{Params, Sp, TomlValue};
use std::sync::Arc;

/// Factory for `type = "select"`.
pub struct SelectFactory;

struct SelectConfig {
    /// (output name, expression text)
    columns: Vec<(Sp<String>, Sp<String>)>,
}

/// The runtime object: one compiled expression per output column.
pub struct Select {
    columns: Vec<Expr>,
    /// Per column: it is a plain field that no other column reads, so its value is moved out
    /// of the input row instead of cloned (no string copy).
    moves: Vec<bool>,
}

impl Select {
    fn new(columns: Vec<Expr>, input_fields: usize) -> Select {
        let mut uses = vec![0usize; input_fields];
        for e in &columns {
            let mut used = vec![false; input_fields];
            e.mark_fields(&mut used);
            for (count, u) in uses.iter_mut().zip(used) {
                *count += u as usize;
            }
        }
        let moves = columns
            .iter()
            .map(|e| e.as_field().is_some_and(|i| uses[i] == 1))
            .collect();
        Select { columns, moves }
    }
}

impl TransformFactory for SelectFactory {
    fn name(&self) -> &'static str {
        "select"
    }
    fn summary(&self) -> &'static str {
        "project, rename and compute columns (`fields`)"
    }
    fn example(&self) -> &'static str {
        "type = \"select\"\ninput = \"orders\"\nfields = { order_id = \"order_id\", total = \"amount * 1.1\", cat = \"upper(category)\" }\n"
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        let Some(raw) = params.raw("fields") else {
            params.missing("fields", "[\"field\", ...] or { name = \"expression\" }");
            return None;
        };
        let columns = match &raw.value {
            TomlValue::Array(_) | TomlValue::Str(_) => params
                .str_list("fields")?
                .into_iter()
                .map(|f| (f.clone(), f))
                .collect(),
            TomlValue::Table(_) => params.str_table("fields")?,
            other => {
                params.error(
                    Diagnostic::error(
                        "E0103",
                        format!(
                            "`fields` must be a list or a table, found {}",
                            other.type_name()
                        ),
                    )
                    .at(
                        raw.span.clone(),
                        "expected [\"a\", \"b\"] or { name = \"expression\" }",
                    ),
                );
                return None;
            }
        };
        if columns.is_empty() {
            params.error(
                Diagnostic::error("E0105", "`fields` is empty")
                    .at(raw.span.clone(), "select at least one column"),
            );
            return None;
        }
        Some(Box::new(SelectConfig { columns }))
    }
}

impl TransformConfig for SelectConfig {
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let input = inputs[0];
        let mut diags = Vec::new();
        let mut exprs = Vec::new();
        let mut fields: Vec<(String, Type)> = Vec::new();
        for (name, text) in &self.columns {
            if let Some(prev) = self
                .columns
                .iter()
                .find(|(n, _)| n.value == name.value && n.span != name.span)
            {
                if prev.0.span.start < name.span.start {
                    diags.push(
                        Diagnostic::error(
                            "E0310",
                            format!("duplicate output column `{}`", name.value),
                        )
                        .at(name.span.clone(), "second column with this name")
                        .also(prev.0.span.clone(), "first defined here"),
                    );
                }
            }
            match Expr::compile(&text.value, input.schema) {
                Ok(e) => {
                    // A NULL literal has no type; give it `string` so the schema stays total.
                    fields.push((name.value.clone(), e.ty().unwrap_or(Type::String)));
                    exprs.push(e);
                }
                Err(errs) => diags.extend(ctx.expr_diags(text, errs)),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let describe = self
            .columns
            .iter()
            .map(|(n, t)| {
                if n.value == t.value {
                    n.value.clone()
                } else {
                    format!("{} AS {}", t.value, n.value)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(PlannedTransform {
            schema: Schema::new(fields),
            retracting: input.retracting,
            event_time: input
                .event_time
                .and_then(|t| exprs.iter().position(|e| e.as_field() == Some(t))),
            describe,
            reads: FieldUse::Only(fields_of(&exprs, input.schema.len())),
            op: TransformOp::Record(Arc::new(Select::new(exprs, input.schema.len()))),
        })
    }
}

impl RecordOp for Select {
    fn apply(&self, row: &mut Row, scratch: &mut Row) -> bool {
        scratch.clear();
        for (e, &moved) in self.columns.iter().zip(&self.moves) {
            let v = match e.as_field() {
                // Nothing else reads field i, and expressions read the row as it came.
                Some(i) if moved => row.get_mut(i).map(std::mem::take).unwrap_or_default(),
                Some(i) => row.get(i).cloned().unwrap_or_default(),
                None => e.eval(row),
            };
            scratch.push(v);
        }
        std::mem::swap(row, scratch);
        true
    }
}
