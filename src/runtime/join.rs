//! Renders a `join` onto differential dataflow: both inputs keyed and arranged once, matched
//! with `join_core`; a left join adds the left rows whose key has no right row, padded with
//! NULLs (left minus its semijoin with the distinct right keys).

use super::Coll;
use crate::operators::join::{JoinKind, JoinPlan};
use std::sync::Arc;

/// The joined collection of `left` and `right`.
///
/// Both sides are arranged by a 64-bit hash of their key, not by the key itself: the arrange
/// sorts, merges and exchanges a number instead of a row, and allocates no key. Rows whose
/// hashes collide but whose keys differ are told apart when matched (`keys_match`).
pub fn render<'s>(left: Coll<'s>, right: Coll<'s>, plan: Arc<JoinPlan>) -> Coll<'s> {
    let p = plan.clone();
    let left_keyed = left
        .clone()
        .flat_map(move |row| p.left_hash(&row).map(|h| (h, row)));
    let p = plan.clone();
    let right_keyed = right.flat_map(move |row| p.right_hash(&row).map(|h| (h, row)));
    let left_arranged = left_keyed.clone().arrange_by_key();
    let p = plan.clone();
    let matched = left_arranged
        .clone()
        .join_core(right_keyed.clone().arrange_by_key(), move |_h, l, r| {
            p.keys_match(l, r).then(|| p.joined(l, r))
        });
    if plan.kind == JoinKind::Inner {
        return matched;
    }
    // Left rows whose key is NULL never match; the others are unmatched while no right row
    // has their key. Each left row meets each distinct right key of its hash once, and keeps
    // it only if it is its own key: a row with m copies is matched m times, not more.
    let p = plan.clone();
    let null_keys = left.filter(move |row| p.left_key_has_null(row));
    let p = plan.clone();
    let right_keys = right_keyed
        .flat_map(move |(h, row)| p.right_key(&row).map(|k| (h, k)))
        .distinct()
        .arrange_by_key();
    let p = plan.clone();
    let with_match = left_arranged.join_core(right_keys, move |h, l, k| {
        p.left_key_is(l, k).then(|| (*h, l.clone()))
    });
    let p = plan.clone();
    let unmatched = left_keyed
        .concat(with_match.negate())
        .map(|(_, row)| row)
        .concat(null_keys)
        .map(move |row| p.padded(&row));
    matched.concat(unmatched)
}
