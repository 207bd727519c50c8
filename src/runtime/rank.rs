//! Renders `top_k`/`dedup` and `distinct` onto differential dataflow.

use super::Coll;
use crate::operators::rank::RankPlan;
use crate::record::Value;
use std::sync::Arc;

/// The first `k` rows of each group: a differential `reduce` whose values arrive sorted by
/// (sort key, row), so the logic only walks the front of each group.
pub fn top_k<'s>(input: Coll<'s>, plan: Arc<RankPlan>) -> Coll<'s> {
    let p = plan.clone();
    input
        .map(move |row| (p.group(&row), (p.sort_key(&row), row)))
        .reduce(move |_group, rows, out| {
            let mut left = plan.k;
            let mut rank = 0i64;
            for ((_, row), n) in rows {
                if left == 0 {
                    break;
                }
                // More retractions than inserts of a row: it is not there.
                let copies = (*n).max(0) as usize;
                let take = copies.min(left);
                left -= take;
                if plan.with_rank {
                    for _ in 0..take {
                        rank += 1;
                        let mut ranked = row.clone();
                        ranked.push(Value::Int(rank));
                        out.push((ranked, 1isize));
                    }
                } else if take > 0 {
                    out.push((row.clone(), take as isize));
                }
            }
        })
        .map(|(_, row)| row)
}

/// Each distinct row (of the kept fields) once, while its count is positive.
pub fn distinct<'s>(input: Coll<'s>, keep: Option<Arc<Vec<usize>>>) -> Coll<'s> {
    let projected = match keep {
        Some(keep) => input.map(move |row| keep.iter().map(|&i| row[i].clone()).collect()),
        None => input,
    };
    projected.distinct()
}
