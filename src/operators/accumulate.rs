//! The per-worker state machine behind an aggregate without a window: one accumulated state per
//! group, updated tick by tick (the runtime wraps it in a timely operator, like windows).
//!
//! Partial states are stashed by tick and applied in tick order once the frontier has passed
//! the tick. Applying a tick touches only the groups that changed in it: the old result row is
//! retracted and the new one inserted, unless they are equal. This costs O(change) per tick,
//! where differential's `count_total` re-adds a group's history to find its current value —
//! ruinous for `count(DISTINCT)` states over long-lived groups.

use super::aggregate::{AggState, AggregatePlan};
use super::window::{Change, KeyedState};
use crate::record::{Row, Tick};
use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The groups of one worker.
pub struct GroupState {
    plan: Arc<AggregatePlan>,
    stash: BTreeMap<Tick, HashMap<Row, AggState>>,
    groups: HashMap<Row, AggState>,
}

impl GroupState {
    /// No groups yet.
    pub fn new(plan: Arc<AggregatePlan>) -> GroupState {
        GroupState {
            plan,
            stash: BTreeMap::new(),
            groups: HashMap::new(),
        }
    }
}

impl KeyedState for GroupState {
    fn insert(&mut self, tick: Tick, key: Row, partial: AggState) {
        let at = self.stash.entry(tick).or_default();
        match at.get_mut(&key) {
            Some(s) => s.add(&partial),
            None => {
                at.insert(key, partial);
            }
        }
    }

    fn min_needed(&self) -> Option<Tick> {
        self.stash.keys().next().copied()
    }

    fn advance(&mut self, bound: Option<Tick>) -> Vec<Change> {
        let keep = match bound {
            Some(b) => self.stash.split_off(&b),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut self.stash, keep);
        let mut changes = Vec::new();
        for (tick, partials) in ready {
            for (key, partial) in partials {
                let old = self.groups.remove(&key);
                let before = old
                    .as_ref()
                    .filter(|s| !s.is_zero())
                    .map(|s| self.plan.finalize(&key, s));
                let mut state = old.unwrap_or_else(|| self.plan.zero());
                state.add(&partial);
                let after = (!state.is_zero()).then(|| self.plan.finalize(&key, &state));
                if before != after {
                    changes.extend(before.map(|row| (tick, row, -1)));
                    changes.extend(after.map(|row| (tick, row, 1)));
                }
                if !state.is_zero() {
                    self.groups.insert(key, state);
                }
            }
        }
        changes
    }
}
