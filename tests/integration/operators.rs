//! Property tests of every relational operator under retractions: random inserts, deletes and
//! re-inserts (through a source's change column) go through one pipeline that uses each
//! operator, at 1 and 4 workers; every snapshot output must equal a naive computation over the
//! rows still live at the end, and every updates output, consolidated, must equal its snapshot.

use super::support::run_pipeline;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// A row as the tests see it: (id, k, g, v) with NULL as `None`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    id: i64,
    k: Option<i64>,
    g: String,
    v: Option<i64>,
}

fn opt(v: Option<i64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

impl Row {
    fn fields(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            opt(self.k),
            self.g.clone(),
            opt(self.v),
        ]
    }
}

/// Writes a change log of random inserts, deletes and re-inserts; returns the live rows.
fn write_log(path: &Path, rng: &mut rand_chacha::ChaCha8Rng, events: usize) -> Vec<Row> {
    let mut live: Vec<Row> = Vec::new();
    let mut dead: Vec<Row> = Vec::new();
    let mut text = String::from("id,k,g,v,op\n");
    let mut next_id = 1;
    for _ in 0..events {
        let roll = rng.random_range(0..10);
        let (row, op) = if roll < 2 && !live.is_empty() {
            let i = rng.random_range(0..live.len());
            let r = live.swap_remove(i);
            dead.push(r.clone());
            (r, "delete")
        } else if roll < 3 && !dead.is_empty() {
            let i = rng.random_range(0..dead.len());
            let r = dead.swap_remove(i);
            live.push(r.clone());
            (r, "insert")
        } else {
            let r = Row {
                id: next_id,
                k: (rng.random_range(0..10) > 0).then(|| rng.random_range(0..6)),
                g: ["a", "b", "c"][rng.random_range(0..3)].to_string(),
                v: (rng.random_range(0..10) > 0).then(|| rng.random_range(-20..20)),
            };
            next_id += 1;
            live.push(r.clone());
            (r, "insert")
        };
        let _ = writeln!(text, "{},{op}", row.fields().join(","));
    }
    std::fs::write(path, text).unwrap();
    live
}

const PIPELINE: &str = r#"
[pipeline]
tick_records = 5

[sources.left]
type = "csv"
path = "left.csv"
schema = { id = "int", k = "int", g = "string", v = "int", op = "string" }
change = { field = "op", insert = ["insert"], delete = ["delete"] }

[sources.right]
type = "csv"
path = "right.csv"
schema = { id = "int", k = "int", g = "string", v = "int", op = "string" }
change = { field = "op", insert = ["insert"], delete = ["delete"] }

[transforms.positive]
type = "filter"
input = "left"
where = "v > 0"

[transforms.per_group]
type = "aggregate"
input = "left"
group_by = ["g"]
aggregates = { n = "count(*)", total = "sum(v)", low = "min(v)", high = "max(v)", keys = "count_distinct(k)" }

[transforms.inner]
type = "join"
inputs = ["left", "right"]
on = ["k"]

[transforms.outer]
type = "join"
inputs = ["left", "right"]
on = ["k"]
how = "left"

[transforms.inner_left_everywhere]
type = "join"
inputs = ["left", "right"]
on = ["k"]
broadcast = "left"

[transforms.inner_right_everywhere]
type = "join"
inputs = ["left", "right"]
on = ["k"]
broadcast = "right"

[transforms.outer_right_everywhere]
type = "join"
inputs = ["left", "right"]
on = ["k"]
how = "left"
broadcast = "right"

[transforms.pairs]
type = "distinct"
input = "left"
fields = ["g", "k"]

[transforms.top]
type = "top_k"
input = "left"
group_by = ["g"]
order_by = ["v DESC"]
k = 2
rank = "r"

[transforms.first]
type = "dedup"
input = "left"
key = ["k"]
order_by = ["id"]

[transforms.sign]
type = "route"
input = "left"
routes = { pos = "v > 0", neg = "v < 0" }
default = "other"
"#;

const OUTPUTS: [&str; 13] = [
    "positive",
    "per_group",
    "inner",
    "outer",
    // Broadcast joins: the same rows as `inner` and `outer`.
    "inner_left_everywhere",
    "inner_right_everywhere",
    "outer_right_everywhere",
    "pairs",
    "top",
    "first",
    "sign.pos",
    "sign.neg",
    "sign.other",
];

fn pipeline_text() -> String {
    let mut text = PIPELINE.to_string();
    for (i, node) in OUTPUTS.iter().enumerate() {
        let _ = write!(
            text,
            "\n[sinks.snap{i}]\ntype = \"csv\"\ninput = \"{node}\"\nmode = \"snapshot\"\n\n[sinks.upd{i}]\ntype = \"csv\"\ninput = \"{node}\"\n"
        );
    }
    text
}

/// A CSV file's data lines as sorted field lists (a multiset).
fn lines(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let mut rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    rows.sort();
    rows
}

/// An updates file consolidated: rows (without time and diff) repeated by their total diff.
fn consolidated(path: &Path) -> Vec<Vec<String>> {
    let mut sums: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for mut row in lines(path) {
        let diff: i64 = row.pop().unwrap().parse().unwrap();
        row.pop(); // time
        *sums.entry(row).or_default() += diff;
    }
    let mut out = Vec::new();
    for (row, n) in sums {
        assert!(
            n >= 0,
            "{}: row {row:?} ends with multiplicity {n}",
            path.display()
        );
        out.extend(std::iter::repeat_n(row, n as usize));
    }
    out
}

fn sorted(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.sort();
    rows
}

/// The naive result of each output node over the live rows.
fn expected(left: &[Row], right: &[Row]) -> Vec<Vec<Vec<String>>> {
    let positive = left
        .iter()
        .filter(|r| r.v.is_some_and(|v| v > 0))
        .map(Row::fields)
        .collect();

    let mut groups: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in left {
        groups.entry(&r.g).or_default().push(r);
    }
    let per_group = groups
        .iter()
        .map(|(g, rows)| {
            let vs: Vec<i64> = rows.iter().filter_map(|r| r.v).collect();
            let keys: std::collections::BTreeSet<i64> = rows.iter().filter_map(|r| r.k).collect();
            vec![
                g.to_string(),
                rows.len().to_string(),
                if vs.is_empty() {
                    String::new()
                } else {
                    vs.iter().sum::<i64>().to_string()
                },
                opt(vs.iter().min().copied()),
                opt(vs.iter().max().copied()),
                keys.len().to_string(),
            ]
        })
        .collect();

    let joined = |l: &Row, r: &Row| {
        let mut f = l.fields();
        f.extend([r.id.to_string(), r.g.clone(), opt(r.v)]);
        f
    };
    let mut inner = Vec::new();
    let mut outer = Vec::new();
    for l in left {
        let matches: Vec<&Row> = right
            .iter()
            .filter(|r| l.k.is_some() && r.k == l.k)
            .collect();
        for r in &matches {
            inner.push(joined(l, r));
            outer.push(joined(l, r));
        }
        if matches.is_empty() {
            let mut f = l.fields();
            f.extend([String::new(), String::new(), String::new()]);
            outer.push(f);
        }
    }

    let pairs: std::collections::BTreeSet<Vec<String>> =
        left.iter().map(|r| vec![r.g.clone(), opt(r.k)]).collect();

    // top_k: v descending with NULLs last, ties by the whole row (id first).
    let mut top = Vec::new();
    for rows in groups.values() {
        let mut rows = rows.clone();
        rows.sort_by(|a, b| {
            let by_v = match (a.v, b.v) {
                (Some(x), Some(y)) => y.cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            by_v.then(a.id.cmp(&b.id))
        });
        for (i, r) in rows.iter().take(2).enumerate() {
            let mut f = r.fields();
            f.push((i + 1).to_string());
            top.push(f);
        }
    }

    let mut first: BTreeMap<Option<i64>, &Row> = BTreeMap::new();
    for r in left {
        let e = first.entry(r.k).or_insert(r);
        if r.id < e.id {
            *e = r;
        }
    }

    let route = |keep: &dyn Fn(Option<i64>) -> bool| {
        left.iter()
            .filter(|r| keep(r.v))
            .map(Row::fields)
            .collect::<Vec<_>>()
    };
    vec![
        positive,
        per_group,
        inner.clone(),
        outer.clone(),
        inner.clone(),
        inner,
        outer,
        pairs.into_iter().collect(),
        top,
        first.values().map(|r| r.fields()).collect(),
        route(&|v| v.is_some_and(|v| v > 0)),
        route(&|v| v.is_some_and(|v| v < 0)),
        route(&|v| v.is_none_or(|v| v == 0)),
    ]
    .into_iter()
    .map(sorted)
    .collect()
}

#[test]
fn every_operator_matches_a_naive_reference_under_retractions() {
    for seed in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let events = 40 + 60 * seed as usize;
        let left = write_log(&dir.path().join("left.csv"), &mut rng, events);
        let right = write_log(&dir.path().join("right.csv"), &mut rng, events / 2);
        let file = dir.path().join("ops.toml");
        std::fs::write(&file, pipeline_text()).unwrap();
        let want = expected(&left, &right);
        let mut first_run: Option<Vec<String>> = None;
        for workers in [1, 4] {
            let out = dir.path().join(format!("out{workers}"));
            run_pipeline(&file, workers, &out);
            let mut texts = Vec::new();
            for (i, node) in OUTPUTS.iter().enumerate() {
                let snap = out.join(format!("snap{i}.csv"));
                let upd = out.join(format!("upd{i}.csv"));
                assert_eq!(
                    lines(&snap),
                    want[i],
                    "seed {seed}, {workers} workers: snapshot of `{node}`"
                );
                assert_eq!(
                    consolidated(&upd),
                    want[i],
                    "seed {seed}, {workers} workers: consolidated updates of `{node}`"
                );
                texts.push(std::fs::read_to_string(&upd).unwrap());
            }
            // Byte-identical updates across worker counts.
            match &first_run {
                None => first_run = Some(texts),
                Some(t) => assert_eq!(
                    t, &texts,
                    "seed {seed}: updates differ at {workers} workers"
                ),
            }
        }
    }
}
