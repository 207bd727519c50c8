//! Renders a `join` onto differential dataflow: both inputs keyed and arranged once, matched
//! with `join_core`; a left join adds the left rows whose key has no right row, padded with
//! NULLs (left minus its semijoin with the distinct right keys). A broadcast join copies one
//! input to every worker and arranges the other where its rows are, unexchanged.

use super::Coll;
use crate::operators::join::{Broadcast, JoinKind, JoinPlan};
use crate::record::{Diff, Row, Tick};
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::VecCollection;
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Broadcast as _;

/// Rows (or keys) by the hash of their join key.
type Keyed<'s, V> = VecCollection<'s, Tick, (u64, V), Diff>;
/// A [`Keyed`] collection arranged by the hash.
type ByHash<'s, V> = Arranged<'s, TraceAgent<ValSpine<u64, V, Tick, Diff>>>;

/// Where one input's rows are arranged.
#[derive(Clone, Copy)]
enum Placement {
    /// On the worker its key hash picks (both inputs of an ordinary join).
    ByKey,
    /// On every worker (the broadcast input).
    Everywhere,
    /// Where the row already is (the other input of a broadcast join).
    InPlace,
}

/// Arranges `keyed` by its key hash on the workers `placement` says.
fn arrange<'s, V>(keyed: Keyed<'s, V>, placement: Placement) -> ByHash<'s, V>
where
    V: differential_dataflow::ExchangeData,
{
    let (updates, name) = match placement {
        Placement::ByKey => return keyed.arrange_by_key(),
        Placement::Everywhere => (keyed.inner.broadcast(), "ArrangeBroadcast"),
        Placement::InPlace => (keyed.inner, "ArrangeInPlace"),
    };
    // `Pipeline`: the updates stay on the worker that has them (after the copy, for a broadcast).
    arrange_core::<_, _, ValBatcher<u64, V, Tick, Diff>, _>(
        updates,
        Pipeline,
        name,
        ValBatcher::new,
    )
}

/// The joined collection of `left` and `right`.
///
/// Both sides are arranged by a 64-bit hash of their key, not by the key itself: the arrange
/// sorts, merges and exchanges a number instead of a row, and allocates no key. Rows whose
/// hashes collide but whose keys differ are told apart when matched (`keys_match`).
///
/// A broadcast join copies one input to every worker and matches the other input's rows where
/// they are: every pair is still made exactly once, on the worker that holds its other row.
pub fn render<'s>(left: Coll<'s>, right: Coll<'s>, plan: Arc<JoinPlan>) -> Coll<'s> {
    // One worker holds everything already: copying a side to "every worker" would only clone it.
    let single = left.inner.scope().peers() == 1;
    let (left_at, right_at) = match plan.broadcast {
        Broadcast::None => (Placement::ByKey, Placement::ByKey),
        _ if single => (Placement::InPlace, Placement::InPlace),
        Broadcast::Left => (Placement::Everywhere, Placement::InPlace),
        Broadcast::Right => (Placement::InPlace, Placement::Everywhere),
    };
    let p = plan.clone();
    let left_keyed = left
        .clone()
        .flat_map(move |row| p.left_hash(&row).map(|h| (h, row)));
    let p = plan.clone();
    let right_keyed = right.flat_map(move |row| p.right_hash(&row).map(|h| (h, row)));
    let left_arranged: ByHash<'s, Row> = arrange(left_keyed.clone(), left_at);
    let p = plan.clone();
    let matched = left_arranged
        .clone()
        .join_core(arrange(right_keyed.clone(), right_at), move |_h, l, r| {
            p.keys_match(l, r).then(|| p.joined(l, r))
        });
    if plan.kind == JoinKind::Inner {
        return matched;
    }
    // Left rows whose key is NULL never match; the others are unmatched while no right row
    // has their key. Each left row meets each distinct right key of its hash once, and keeps
    // it only if it is its own key: a row with m copies is matched m times, not more. (The
    // planner broadcasts only the right input of a left join: a left row's check needs every
    // right key.)
    let p = plan.clone();
    let null_keys = left.filter(move |row| p.left_key_has_null(row));
    let p = plan.clone();
    let right_keys = arrange(
        right_keyed
            .flat_map(move |(h, row)| p.right_key(&row).map(|k| (h, k)))
            .distinct(),
        right_at,
    );
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
