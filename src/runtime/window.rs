//! Renders the last stage of an aggregate: partial states exchanged by key into a timely
//! operator that drives a per-worker state machine ([`WindowState`] for windows, [`GroupState`]
//! otherwise), holding one capability at the earliest time it may still emit.

use crate::operators::accumulate::GroupState;
use crate::operators::aggregate::{AggState, AggregatePlan};
use crate::operators::window::{KeyedState, WindowState};
use crate::record::{Diff, Row, Tick};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

/// Windows `partials` (keyed pre-combined states) into output rows.
pub fn render<'s>(
    partials: VecCollection<'s, Tick, Row, AggState>,
    plan: Arc<AggregatePlan>,
    tick_ms: u64,
) -> VecCollection<'s, Tick, Row, Diff> {
    render_with(partials, "Window", WindowState::new(plan, tick_ms))
}

/// Accumulates `partials` per group into output rows (aggregates without a window).
pub fn render_groups<'s>(
    partials: VecCollection<'s, Tick, Row, AggState>,
    plan: Arc<AggregatePlan>,
) -> VecCollection<'s, Tick, Row, Diff> {
    render_with(partials, "Aggregate", GroupState::new(plan))
}

fn render_with<'s, S: KeyedState>(
    partials: VecCollection<'s, Tick, Row, AggState>,
    name: &str,
    state: S,
) -> VecCollection<'s, Tick, Row, Diff> {
    let route = Exchange::new(|update: &(Row, Tick, AggState)| update.0.hashed());
    partials
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(Row, Tick, Diff)>>, _, _, _>(
            route,
            name,
            move |_capability, _info| {
                let mut state = state;
                let mut held: Option<Capability<Tick>> = None;
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        let Some(&least) = cap.least() else { return };
                        if held.as_ref().is_none_or(|h| least < *h.time()) {
                            held = Some(cap.delayed(&least, 0));
                        }
                        for (key, tick, partial) in data.drain(..) {
                            state.insert(tick, key, partial);
                        }
                    });
                    let bound = frontier.frontier().iter().next().copied();
                    let changes = state.advance(bound);
                    if let Some(cap) = &held {
                        let mut by_time: BTreeMap<Tick, Vec<(Row, Tick, Diff)>> = BTreeMap::new();
                        for (t, row, diff) in changes {
                            by_time.entry(t).or_default().push((row, t, diff));
                        }
                        for (t, updates) in by_time {
                            let at = cap.delayed(&t);
                            output.session(&at).give_iterator(updates.into_iter());
                        }
                    }
                    match state.min_needed() {
                        None => held = None,
                        Some(m) => {
                            if let Some(cap) = held.as_mut() {
                                if m > *cap.time() {
                                    cap.downgrade(&m);
                                }
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}
