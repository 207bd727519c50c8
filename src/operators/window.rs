//! Event-time windows for `aggregate`: the per-worker state machine behind a windowed aggregate,
//! in plain Rust (the runtime wraps it in a timely operator).
//!
//! Inputs are pre-combined partial states: for fixed windows keyed by `[window_start, group…]`,
//! for sessions keyed by the group, with the partial's first and last event time in two hidden
//! `min`/`max` accumulators. They are stashed by tick and applied in tick order once the frontier
//! has passed the tick, so results never depend on arrival order. A window closes when the
//! frontier reaches its end rounded up to a tick; its state is then dropped, which keeps memory
//! bounded on an endless stream.

use super::aggregate::{Acc, AggState, AggregatePlan, Emit, WindowKind, WindowPlan};
use crate::record::{Diff, Row, Tick, Value};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One output change: (time, row, diff).
pub type Change = (Tick, Row, Diff);

/// A per-worker aggregate state machine the runtime drives: keyed partial states in, output
/// changes out, in tick order ([`WindowState`], [`super::accumulate::GroupState`]).
pub trait KeyedState: 'static {
    /// Takes a partial state that arrived at `tick`.
    fn insert(&mut self, tick: Tick, key: Row, partial: AggState);
    /// Applies every stashed tick before `bound` (all for `None`) and returns the changes.
    fn advance(&mut self, bound: Option<Tick>) -> Vec<Change>;
    /// The earliest time this state may still emit at, if any: the capability to hold.
    fn min_needed(&self) -> Option<Tick>;
}

struct Slot {
    state: AggState,
    emitted: Option<Row>,
}

struct Session {
    first: i64,
    last: i64,
    state: AggState,
    emitted: Option<Row>,
}

/// The open sessions of one group, sorted by `first`.
struct GroupSessions {
    group: Row,
    open: Vec<Session>,
}

/// A small number standing for a group with open sessions, so the end index needs no row
/// copies; ids never leave this worker's state.
type GroupId = u64;

/// The open windows of one worker.
pub struct WindowState {
    plan: Arc<AggregatePlan>,
    window: WindowPlan,
    tick_ms: u64,
    stash: BTreeMap<Tick, Vec<(Row, AggState)>>,
    /// Fixed windows by end, then by `[start, group…]`.
    fixed: BTreeMap<i64, HashMap<Row, Slot>>,
    /// The id of every group with open sessions.
    group_ids: HashMap<Row, GroupId>,
    /// Open sessions per group id.
    sessions: HashMap<GroupId, GroupSessions>,
    /// (end, group id) of every open session, to close them in end order.
    session_ends: BTreeSet<(i64, GroupId)>,
    next_group_id: GroupId,
}

impl WindowState {
    /// Empty state for a windowed aggregate in a pipeline with ticks of `tick_ms`.
    ///
    /// # Panics
    /// If `plan` has no window (the runtime only builds this for windowed aggregates).
    pub fn new(plan: Arc<AggregatePlan>, tick_ms: u64) -> WindowState {
        let window = plan.window.expect("a windowed aggregate");
        WindowState {
            plan,
            window,
            tick_ms: tick_ms.max(1),
            stash: BTreeMap::new(),
            fixed: BTreeMap::new(),
            group_ids: HashMap::new(),
            sessions: HashMap::new(),
            session_ends: BTreeSet::new(),
            next_group_id: 0,
        }
    }

    /// The tick at which the watermark has passed `end`: `end` rounded up to a tick.
    fn closes_at(&self, end: i64) -> Tick {
        let end = end.max(0) as u64;
        end.div_ceil(self.tick_ms) * self.tick_ms
    }
}

impl KeyedState for WindowState {
    /// Takes a partial state that arrived at `tick`.
    fn insert(&mut self, tick: Tick, key: Row, partial: AggState) {
        self.stash.entry(tick).or_default().push((key, partial));
    }

    /// The earliest time this state may still emit at, if any: the capability to hold.
    fn min_needed(&self) -> Option<Tick> {
        let stash = self.stash.keys().next().copied();
        let fixed = self.fixed.keys().next().map(|&e| self.closes_at(e));
        let session = self.session_ends.first().map(|(e, _)| self.closes_at(*e));
        [stash, fixed, session].into_iter().flatten().min()
    }

    /// Applies every stashed tick before `bound` and closes every window the frontier `bound`
    /// has passed (`None`: the input has ended), returning the output changes.
    fn advance(&mut self, bound: Option<Tick>) -> Vec<Change> {
        let mut out = Vec::new();
        let ready = match bound {
            Some(b) => {
                let later = self.stash.split_off(&b);
                std::mem::replace(&mut self.stash, later)
            }
            None => std::mem::take(&mut self.stash),
        };
        let track_changes = self.window.emit == Emit::Updates;
        for (tick, partials) in ready {
            // Windows and groups that changed at this tick, for `emit = "updates"`.
            let mut dirty_windows: Vec<(i64, Row)> = Vec::new();
            let mut dirty_groups: Vec<GroupId> = Vec::new();
            for (key, partial) in partials {
                match self.window.kind {
                    WindowKind::Fixed { size, .. } => {
                        let start = key.first().and_then(Value::as_i64).unwrap_or(0);
                        if track_changes {
                            dirty_windows.push((start + size, key.clone()));
                        }
                        match self.fixed.entry(start + size).or_default().entry(key) {
                            Entry::Occupied(mut slot) => slot.get_mut().state.add(&partial),
                            Entry::Vacant(slot) => {
                                slot.insert(Slot {
                                    state: partial,
                                    emitted: None,
                                });
                            }
                        }
                    }
                    WindowKind::Session { gap } => {
                        let id = self.merge_session(tick, key, partial, gap, &mut out);
                        if let Some(id) = id.filter(|_| track_changes) {
                            dirty_groups.push(id);
                        }
                    }
                }
            }
            dirty_windows.sort();
            dirty_windows.dedup();
            for (end, key) in dirty_windows {
                self.emit_window_change(tick, end, &key, &mut out);
            }
            dirty_groups.sort_unstable();
            dirty_groups.dedup();
            for id in dirty_groups {
                self.emit_session_changes(tick, id, &mut out);
            }
        }
        self.close(bound, &mut out);
        out
    }
}

impl WindowState {
    /// Merges a group's partial into its open sessions; returns the group's id, or `None` when
    /// the partial has no event time and so belongs to no session.
    fn merge_session(
        &mut self,
        tick: Tick,
        group: Row,
        partial: AggState,
        gap: i64,
        out: &mut Vec<Change>,
    ) -> Option<GroupId> {
        let (Some(first), Some(last)) = span_of(&partial) else {
            return None;
        };
        let id = match self.group_ids.get(&group) {
            Some(&id) => id,
            None => {
                let id = self.next_group_id;
                self.next_group_id += 1;
                self.group_ids.insert(group.clone(), id);
                self.sessions.insert(
                    id,
                    GroupSessions {
                        group,
                        open: Vec::new(),
                    },
                );
                id
            }
        };
        let sessions = &mut self
            .sessions
            .get_mut(&id)
            .expect("every group id has its sessions")
            .open;
        let mut merged = Session {
            first,
            last,
            state: partial,
            emitted: None,
        };
        // Merging can widen the session into neighbours it did not reach before: repeat until
        // no open session is less than `gap` away.
        while let Some(i) = sessions
            .iter()
            .position(|s| s.first < merged.last + gap && merged.first < s.last + gap)
        {
            let s = sessions.remove(i);
            self.session_ends.remove(&(s.last + gap, id));
            merged.first = merged.first.min(s.first);
            merged.last = merged.last.max(s.last);
            merged.state.add(&s.state);
            match (merged.emitted.is_none(), s.emitted) {
                // Keep one emitted row to compare against; retract the others now.
                (true, Some(row)) => merged.emitted = Some(row),
                (false, Some(row)) => out.push((tick, row, -1)),
                (_, None) => {}
            }
        }
        self.session_ends.insert((merged.last + gap, id));
        let at = sessions.partition_point(|s| s.first < merged.first);
        sessions.insert(at, merged);
        Some(id)
    }

    /// Writes the -old/+new change of one fixed window.
    fn emit_window_change(&mut self, tick: Tick, end: i64, key: &Row, out: &mut Vec<Change>) {
        let WindowKind::Fixed { size, .. } = self.window.kind else {
            unreachable!("fixed state")
        };
        if let Some(slot) = self.fixed.get_mut(&end).and_then(|s| s.get_mut(key)) {
            let row = fixed_row(&self.plan, key, size, &slot.state);
            change(tick, &mut slot.emitted, row, out);
        }
    }

    /// Writes the -old/+new changes of every open session of a group.
    fn emit_session_changes(&mut self, tick: Tick, id: GroupId, out: &mut Vec<Change>) {
        let WindowKind::Session { gap } = self.window.kind else {
            unreachable!("session state")
        };
        if let Some(g) = self.sessions.get_mut(&id) {
            for s in &mut g.open {
                let row = session_row(&self.plan, &g.group, s.first, s.last + gap, &s.state);
                change(tick, &mut s.emitted, row, out);
            }
        }
    }

    fn close(&mut self, bound: Option<Tick>, out: &mut Vec<Change>) {
        // Strictly past: partials filed at a window's closing tick (see
        // `Combiner::closing_ticks`) are applied once the frontier is beyond that tick.
        let passed = |at: Tick| bound.is_none_or(|b| at < b);
        let final_mode = self.window.emit == Emit::Final;
        while let Some((&end, _)) = self.fixed.first_key_value() {
            let at = self.closes_at(end);
            if !passed(at) {
                break;
            }
            let slots = self.fixed.remove(&end).expect("the first key exists");
            if final_mode {
                let WindowKind::Fixed { size, .. } = self.window.kind else {
                    unreachable!("fixed state")
                };
                for (key, slot) in slots {
                    if let Some(row) = fixed_row(&self.plan, &key, size, &slot.state) {
                        out.push((at, row, 1));
                    }
                }
            }
        }
        while let Some(&(end, id)) = self.session_ends.first() {
            let at = self.closes_at(end);
            if !passed(at) {
                break;
            }
            self.session_ends.pop_first();
            let WindowKind::Session { gap } = self.window.kind else {
                unreachable!("session state")
            };
            let Some(g) = self.sessions.get_mut(&id) else {
                continue;
            };
            if let Some(i) = g.open.iter().position(|s| s.last + gap == end) {
                let s = g.open.remove(i);
                if final_mode {
                    if let Some(row) = session_row(&self.plan, &g.group, s.first, end, &s.state) {
                        out.push((at, row, 1));
                    }
                }
            }
            if g.open.is_empty() {
                let g = self.sessions.remove(&id).expect("present");
                self.group_ids.remove(&g.group);
            }
        }
    }
}

/// Records an output change from `emitted` to `row` (`None`: the window is empty).
fn change(tick: Tick, emitted: &mut Option<Row>, row: Option<Row>, out: &mut Vec<Change>) {
    if *emitted == row {
        return;
    }
    if let Some(old) = emitted.take() {
        out.push((tick, old, -1));
    }
    if let Some(new) = &row {
        out.push((tick, new.clone(), 1));
    }
    *emitted = row;
}

fn fixed_row(plan: &AggregatePlan, key: &Row, size: i64, state: &AggState) -> Option<Row> {
    if state.is_zero() {
        return None;
    }
    let start = key.first().and_then(Value::as_i64).unwrap_or(0);
    let mut prefix = Vec::with_capacity(key.len() + 1);
    prefix.push(Value::Time(start));
    prefix.push(Value::Time(start + size));
    prefix.extend_from_slice(&key[1..]);
    Some(plan.finalize(&prefix, state))
}

fn session_row(
    plan: &AggregatePlan,
    group: &Row,
    first: i64,
    end: i64,
    state: &AggState,
) -> Option<Row> {
    if state.is_zero() {
        return None;
    }
    let mut prefix = Vec::with_capacity(group.len() + 2);
    prefix.push(Value::Time(first));
    prefix.push(Value::Time(end));
    prefix.extend_from_slice(group);
    Some(plan.finalize(&prefix, state))
}

/// A session partial's first and last event time, from its two hidden trailing accumulators.
fn span_of(state: &AggState) -> (Option<i64>, Option<i64>) {
    match state.accs.as_slice() {
        [.., Acc::Min(first), Acc::Max(last)] => (
            first.as_ref().and_then(Value::as_i64),
            last.as_ref().and_then(Value::as_i64),
        ),
        _ => (None, None),
    }
}
