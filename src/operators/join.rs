//! `join`: inner and left outer equi-joins of two inputs, incremental on both sides.
//!
//! The plan decides the output layout once: every left field, then every right field except the
//! right join keys that have the same name as their left partner (they would only repeat it).
//! A right field whose name a left field already has is renamed `<right input>_<field>` (or with
//! the configured `right_prefix`), so output columns never clash.
//!
//! With `broadcast = "right"` (or `"left"`, inner joins only) that input is copied to every worker
//! and the other input's rows are matched where they already are, instead of both inputs being
//! exchanged by key: for a small side whose few keys would put all of the big side's rows on one
//! or two workers (q5 joins per-auction counts with one maximum per window).
//!
//! SQL semantics: a NULL key matches nothing. In a left join a left row without a match is
//! written once with NULLs for the right fields; when a matching right row arrives later that
//! padded row is retracted and the joined rows are inserted.

use super::{
    field_position, FieldUse, InputInfo, PlanCtx, PlannedTransform, TransformConfig,
    TransformFactory, TransformOp,
};
use crate::diag::Diagnostic;
use crate::record::{Field, Row, Schema, Value};
use crate::spec::TomlValue;
use crate::spec::{Params, Sp};
use std::sync::Arc;

/// Factory for `type = "join"`.
pub struct JoinFactory;

/// Which rows a join keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// Only matching pairs.
    Inner,
    /// Matching pairs, and every unmatched left row padded with NULLs.
    Left,
}

/// Which input of a join, if any, is copied to every worker (`broadcast`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broadcast {
    /// Neither: both inputs are exchanged by a hash of their key.
    None,
    /// The left input goes to every worker; right rows stay where they are.
    Left,
    /// The right input goes to every worker; left rows stay where they are.
    Right,
}

struct JoinConfig {
    /// (left field, right field) pairs.
    on: Vec<(Sp<String>, Sp<String>)>,
    kind: JoinKind,
    right_prefix: Option<String>,
    broadcast: Broadcast,
}

/// The runtime object: key positions and the output layout.
#[derive(Debug)]
pub struct JoinPlan {
    /// Inner or left outer.
    pub kind: JoinKind,
    /// Which input goes to every worker.
    pub broadcast: Broadcast,
    left_keys: Vec<usize>,
    right_keys: Vec<usize>,
    left_arity: usize,
    /// Right positions written after the left fields, in order.
    right_kept: Vec<usize>,
}

impl TransformFactory for JoinFactory {
    fn name(&self) -> &'static str {
        "join"
    }
    fn summary(&self) -> &'static str {
        "join two inputs on key fields (`how` = inner or left), incrementally on both sides; `broadcast` copies a small input to every worker"
    }
    fn example(&self) -> &'static str {
        "type = \"join\"\ninputs = [\"eu_orders\", \"us_orders\"]\non = [\"order_id\"]\nhow = \"left\"\n"
    }
    fn arity(&self) -> (usize, Option<usize>) {
        (2, Some(2))
    }
    fn configure(&self, params: &mut Params<'_>) -> Option<Box<dyn TransformConfig>> {
        let kind = match params.choice("how", &["inner", "left"]).map(|c| c.value) {
            Some("left") => JoinKind::Left,
            _ => JoinKind::Inner,
        };
        let right_prefix = params.str("right_prefix").map(|p| p.value);
        let on = match params.raw("on").map(|v| &v.value) {
            None => {
                params.missing("on", "[\"order_id\"]  or  { seller = \"person_id\" }");
                return None;
            }
            Some(TomlValue::Table(_)) => params.str_table("on")?,
            Some(_) => params
                .str_list("on")?
                .into_iter()
                .map(|f| (f.clone(), f))
                .collect(),
        };
        if on.is_empty() {
            params.error(
                Diagnostic::error("E0105", "`on` names no key fields")
                    .at(params.owner_span(), "a join needs at least one key"),
            );
            return None;
        }
        let broadcast = match params.choice("broadcast", &["left", "right"]) {
            None => Broadcast::None,
            Some(side) if side.value == "right" => Broadcast::Right,
            Some(_) if kind == JoinKind::Inner => Broadcast::Left,
            Some(side) => {
                params.error(
                    Diagnostic::error("E0105", "a left join cannot broadcast its left input")
                        .at(
                            side.span,
                            "the left input's unmatched rows need all right rows",
                        )
                        .help("broadcast the right input: `broadcast = \"right\"`"),
                );
                return None;
            }
        };
        Some(Box::new(JoinConfig {
            on,
            kind,
            right_prefix,
            broadcast,
        }))
    }
}

impl TransformConfig for JoinConfig {
    fn plan(
        &self,
        inputs: &[InputInfo<'_>],
        _ctx: &PlanCtx<'_>,
    ) -> Result<PlannedTransform, Vec<Diagnostic>> {
        let (left, right) = (inputs[0], inputs[1]);
        let mut diags = Vec::new();
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        for (l, r) in &self.on {
            let li = field_position(l, left.schema, "`on` (left input)", &mut diags);
            let ri = field_position(r, right.schema, "`on` (right input)", &mut diags);
            if let (Some(li), Some(ri)) = (li, ri) {
                let (lt, rt) = (left.schema.fields[li].ty, right.schema.fields[ri].ty);
                if lt != rt {
                    diags.push(
                        Diagnostic::error(
                            "E0303",
                            format!(
                                "join keys `{}` ({lt}) and `{}` ({rt}) have different types",
                                l.value, r.value
                            ),
                        )
                        .at(r.span.clone(), "types differ")
                        .help("cast one side with a `select`, e.g. `CAST(x AS int)`"),
                    );
                }
                left_keys.push(li);
                right_keys.push(ri);
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let prefix = (self.right_prefix.clone()).unwrap_or_else(|| format!("{}_", right.name));
        let mut fields: Vec<Field> = left.schema.fields.clone();
        let mut right_kept = Vec::new();
        for (i, f) in right.schema.fields.iter().enumerate() {
            let same_key = right_keys
                .iter()
                .zip(&left_keys)
                .any(|(&r, &l)| r == i && left.schema.fields[l].name == f.name);
            if same_key {
                continue;
            }
            let mut name = f.name.clone();
            while fields.iter().any(|g| g.name == name) {
                name = format!("{prefix}{name}");
            }
            fields.push(Field { name, ty: f.ty });
            right_kept.push(i);
        }
        let describe = format!(
            "{} join on {}{}",
            match self.kind {
                JoinKind::Inner => "inner",
                JoinKind::Left => "left",
            },
            self.on
                .iter()
                .map(|(l, r)| if l.value == r.value {
                    l.value.clone()
                } else {
                    format!("{} = {}", l.value, r.value)
                })
                .collect::<Vec<_>>()
                .join(", "),
            match self.broadcast {
                Broadcast::None => "",
                Broadcast::Left => ", left input broadcast",
                Broadcast::Right => ", right input broadcast",
            }
        );
        let left_arity = left.schema.len();
        let schema = Schema { fields };
        let plan = JoinPlan {
            kind: self.kind,
            broadcast: self.broadcast,
            left_keys,
            right_keys,
            left_arity,
            right_kept,
        };
        Ok(PlannedTransform {
            schema,
            retracting: left.retracting || right.retracting || self.kind == JoinKind::Left,
            event_time: left.event_time,
            describe,
            reads: FieldUse::All,
            op: TransformOp::Join(Arc::new(plan)),
        })
    }
}

impl JoinPlan {
    /// Whether a left row has a NULL key field (it matches nothing), without building the key.
    pub fn left_key_has_null(&self, row: &[Value]) -> bool {
        self.left_keys
            .iter()
            .any(|&k| row.get(k).is_none_or(Value::is_null))
    }
    /// The join key of a right row, or `None` when a key field is NULL.
    pub fn right_key(&self, row: &[Value]) -> Option<Row> {
        key_of(&self.right_keys, row)
    }
    /// A 64-bit hash of a left row's join key (`None` when a key field is NULL), equal to the
    /// hash of every right row with an equal key: joins arrange rows by it, so that sorting and
    /// exchanging compare and move a number instead of a key row.
    pub fn left_hash(&self, row: &[Value]) -> Option<u64> {
        hash_of(&self.left_keys, row)
    }
    /// The hash of a right row's join key, as [`JoinPlan::left_hash`].
    pub fn right_hash(&self, row: &[Value]) -> Option<u64> {
        hash_of(&self.right_keys, row)
    }
    /// Whether a left and a right row with equal key hashes have equal keys (not a collision).
    pub fn keys_match(&self, left: &[Value], right: &[Value]) -> bool {
        self.left_keys
            .iter()
            .zip(&self.right_keys)
            .all(|(&l, &r)| left.get(l) == right.get(r))
    }
    /// Whether a left row's join key is `key`.
    pub fn left_key_is(&self, left: &[Value], key: &[Value]) -> bool {
        self.left_keys
            .iter()
            .zip(key)
            .all(|(&l, k)| left.get(l) == Some(k))
    }
    /// The output row of a matching pair.
    pub fn joined(&self, left: &[Value], right: &[Value]) -> Row {
        let mut out = Vec::with_capacity(self.left_arity + self.right_kept.len());
        out.extend_from_slice(left);
        out.extend(self.right_kept.iter().map(|&i| right[i].clone()));
        out
    }
    /// The output row of an unmatched left row (left join).
    pub fn padded(&self, left: &[Value]) -> Row {
        let mut out = Vec::with_capacity(self.left_arity + self.right_kept.len());
        out.extend_from_slice(left);
        out.extend(self.right_kept.iter().map(|_| Value::Null));
        out
    }
}

fn key_of(keys: &[usize], row: &[Value]) -> Option<Row> {
    let mut key = Vec::with_capacity(keys.len());
    for &k in keys {
        match row.get(k) {
            None | Some(Value::Null) => return None,
            Some(v) => key.push(v.clone()),
        }
    }
    Some(key)
}

/// The hash of the key fields `keys` of `row`, or `None` when one is NULL. The hasher has a
/// fixed seed, so every worker and process computes the same hash.
fn hash_of(keys: &[usize], row: &[Value]) -> Option<u64> {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = foldhash::fast::FixedState::with_seed(0).build_hasher();
    for &k in keys {
        match row.get(k) {
            None | Some(Value::Null) => return None,
            Some(v) => v.hash(&mut hasher),
        }
    }
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_agree_across_sides_and_matches_check_the_keys() {
        // Left (id, name) joins right (label, owner, id2) on id = owner and name = label.
        let plan = JoinPlan {
            kind: JoinKind::Left,
            broadcast: Broadcast::None,
            left_keys: vec![0, 1],
            right_keys: vec![1, 0],
            left_arity: 2,
            right_kept: vec![2],
        };
        let left = vec![Value::Int(7), Value::str("a")];
        let right = vec![Value::str("a"), Value::Int(7), Value::Int(1)];
        let other = vec![Value::str("b"), Value::Int(7), Value::Int(1)];
        assert_eq!(plan.left_hash(&left), plan.right_hash(&right));
        assert!(plan.left_hash(&left).is_some());
        assert_ne!(plan.left_hash(&left), plan.right_hash(&other));
        assert!(plan.keys_match(&left, &right));
        assert!(!plan.keys_match(&left, &other));
        let key = plan.right_key(&right).unwrap();
        assert!(plan.left_key_is(&left, &key));
        assert!(!plan.left_key_is(&left, &plan.right_key(&other).unwrap()));
        // A NULL key field matches nothing: no hash.
        assert_eq!(plan.left_hash(&[Value::Null, Value::str("a")]), None);
        assert_eq!(plan.right_hash(&[Value::str("a"), Value::Null]), None);
    }
}
