//! Nexmark: each pipeline in `pipelines/nexmark/` on a small run, against a plain Rust
//! computation of the query over the same events (generated here, straight from the `nexmark`
//! crate), and byte-identical outputs at 1, 2 and 4 workers.

use super::support::{read, root, run_pipeline};
use eventflow::record::time::iso8601;
use eventflow::record::Value;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Auction, Bid, Event, Person};
use nexmark::EventGenerator;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Events in the small runs, and their density: 50,000 events over 50 s of event time, so the
/// 10 s windows of q5, q7 and q8 open and close several times.
const EVENTS: u64 = 50_000;
const EVENTS_PER_SECOND: u64 = 1_000;
/// The sources' default base time (2024-01-01T00:00:00Z).
const BASE_TIME: u64 = 1_704_067_200_000;

/// A multiset of output rows, as text fields.
type Rows = BTreeMap<Vec<String>, i64>;

/// A plain Rust computation of one query.
type Oracle = fn(&Events) -> Rows;

struct Events {
    people: Vec<Person>,
    auctions: Vec<Auction>,
    bids: Vec<Bid>,
}

fn events() -> Events {
    let cfg = NexmarkConfig {
        base_time: BASE_TIME,
        first_rate: EVENTS_PER_SECOND as usize,
        next_rate: EVENTS_PER_SECOND as usize,
        ..NexmarkConfig::default()
    };
    let mut e = Events {
        people: Vec::new(),
        auctions: Vec::new(),
        bids: Vec::new(),
    };
    for event in EventGenerator::new(cfg).take(EVENTS as usize) {
        match event {
            Event::Person(p) => e.people.push(p),
            Event::Auction(a) => e.auctions.push(a),
            Event::Bid(b) => e.bids.push(b),
        }
    }
    e
}

fn int(x: usize) -> String {
    x.to_string()
}

fn time(ms: u64) -> String {
    iso8601(ms as i64)
}

fn float(x: f64) -> String {
    let mut s = String::new();
    Value::float(x).write_text(&mut s);
    s
}

fn rows(list: impl IntoIterator<Item = Vec<String>>) -> Rows {
    let mut out = Rows::new();
    for r in list {
        *out.entry(r).or_insert(0) += 1;
    }
    out
}

/// An updates file summed per row (without `time` and `diff`), rows summing to zero dropped.
fn consolidated(path: &Path) -> Rows {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let mut out = Rows::new();
    for record in reader.records() {
        let r: Vec<String> = record.unwrap().iter().map(String::from).collect();
        let (fields, tail) = r.split_at(r.len() - 2);
        *out.entry(fields.to_vec()).or_insert(0) += tail[1].parse::<i64>().unwrap();
    }
    out.retain(|_, n| *n != 0);
    out
}

fn q0(e: &Events) -> Rows {
    rows(e.bids.iter().map(|b| {
        vec![
            int(b.auction),
            int(b.bidder),
            int(b.price),
            time(b.date_time),
            b.extra.clone(),
        ]
    }))
}

fn q1(e: &Events) -> Rows {
    rows(e.bids.iter().map(|b| {
        vec![
            int(b.auction),
            int(b.bidder),
            float(0.908 * b.price as f64),
            time(b.date_time),
            b.extra.clone(),
        ]
    }))
}

fn q2(e: &Events) -> Rows {
    rows(
        e.bids
            .iter()
            .filter(|b| b.auction % 123 == 0)
            .map(|b| vec![int(b.auction), int(b.price)]),
    )
}

fn q3(e: &Events) -> Rows {
    let mut out = Vec::new();
    for a in e.auctions.iter().filter(|a| a.category == 10) {
        for p in &e.people {
            if p.id == a.seller && ["or", "id", "ca"].contains(&p.state.as_str()) {
                out.push(vec![
                    p.name.clone(),
                    p.city.clone(),
                    p.state.clone(),
                    int(a.id),
                ]);
            }
        }
    }
    rows(out)
}

fn q4(e: &Events) -> Rows {
    let mut winning: BTreeMap<usize, (usize, usize)> = BTreeMap::new(); // id -> (category, max)
    let by_id: HashMap<usize, &Auction> = e.auctions.iter().map(|a| (a.id, a)).collect();
    for b in &e.bids {
        if let Some(a) = by_id.get(&b.auction) {
            if a.date_time <= b.date_time && b.date_time <= a.expires {
                let w = winning.entry(a.id).or_insert((a.category, 0));
                w.1 = w.1.max(b.price);
            }
        }
    }
    let mut per_category: BTreeMap<usize, (u128, u64)> = BTreeMap::new();
    for (category, price) in winning.values() {
        let c = per_category.entry(*category).or_insert((0, 0));
        c.0 += *price as u128;
        c.1 += 1;
    }
    rows(
        per_category
            .iter()
            .map(|(cat, (sum, n))| vec![int(*cat), float(*sum as f64 / *n as f64)]),
    )
}

fn q5(e: &Events) -> Rows {
    let mut counts: BTreeMap<(u64, usize), u64> = BTreeMap::new(); // (window start, auction)
    for b in &e.bids {
        let last = b.date_time - b.date_time % 2000;
        for start in (0..5).map(|i| last - i * 2000) {
            *counts.entry((start, b.auction)).or_insert(0) += 1;
        }
    }
    let mut max: BTreeMap<u64, u64> = BTreeMap::new();
    for (&(start, _), &n) in &counts {
        let m = max.entry(start).or_insert(0);
        *m = (*m).max(n);
    }
    rows(
        counts
            .iter()
            .filter(|((start, _), n)| **n == max[start])
            .map(|((start, auction), n)| {
                vec![
                    int(*auction),
                    n.to_string(),
                    time(*start),
                    time(start + 10_000),
                ]
            }),
    )
}

/// q6: per seller, the average winning price of the 10 auctions (with a valid bid) that close
/// last, ties by the larger auction id.
fn q6(e: &Events) -> Rows {
    let by_id: HashMap<usize, &Auction> = e.auctions.iter().map(|a| (a.id, a)).collect();
    let mut winning: BTreeMap<usize, usize> = BTreeMap::new(); // auction id -> max price
    for b in &e.bids {
        if let Some(a) = by_id.get(&b.auction) {
            if a.date_time <= b.date_time && b.date_time <= a.expires {
                let w = winning.entry(a.id).or_insert(0);
                *w = (*w).max(b.price);
            }
        }
    }
    let mut per_seller: BTreeMap<usize, Vec<(u64, usize, usize)>> = BTreeMap::new();
    for (id, price) in &winning {
        let a = by_id[id];
        per_seller
            .entry(a.seller)
            .or_default()
            .push((a.expires, a.id, *price));
    }
    rows(per_seller.into_iter().map(|(seller, mut auctions)| {
        auctions.sort_unstable_by(|x, y| y.cmp(x));
        let last: Vec<_> = auctions.into_iter().take(10).collect();
        let sum: u128 = last.iter().map(|(_, _, p)| *p as u128).sum();
        vec![int(seller), float(sum as f64 / last.len() as f64)]
    }))
}

fn q7(e: &Events) -> Rows {
    let window = |b: &Bid| b.date_time - b.date_time % 10_000;
    let mut max: BTreeMap<u64, usize> = BTreeMap::new();
    for b in &e.bids {
        let m = max.entry(window(b)).or_insert(0);
        *m = (*m).max(b.price);
    }
    rows(
        e.bids
            .iter()
            .filter(|b| b.price == max[&window(b)])
            .map(|b| {
                vec![
                    int(b.auction),
                    int(b.price),
                    int(b.bidder),
                    time(b.date_time),
                    b.extra.clone(),
                ]
            }),
    )
}

fn q8(e: &Events) -> Rows {
    let window = |t: u64| t - t % 10_000;
    let people: BTreeSet<(u64, usize, &str)> = e
        .people
        .iter()
        .map(|p| (window(p.date_time), p.id, p.name.as_str()))
        .collect();
    let sellers: BTreeSet<(u64, usize)> = e
        .auctions
        .iter()
        .map(|a| (window(a.date_time), a.seller))
        .collect();
    rows(
        people
            .iter()
            .filter(|(w, id, _)| sellers.contains(&(*w, *id)))
            .map(|(w, id, name)| vec![int(*id), name.to_string(), time(*w)]),
    )
}

/// The pipeline file `q`, rewritten to the small run (and `pregenerate` as given).
fn small_pipeline(dir: &Path, q: &str, pregenerate: bool) -> std::path::PathBuf {
    let text = read(&root().join(format!("pipelines/nexmark/{q}.toml")));
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "events" => out.push_str(&format!("events = {EVENTS}")),
            "events_per_second" => {
                out.push_str(&format!("events_per_second = {EVENTS_PER_SECOND}"))
            }
            "pregenerate" => out.push_str(&format!("pregenerate = {pregenerate}")),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(
        out.contains(&format!("events = {EVENTS}")),
        "{q} sets events"
    );
    let path = dir.join(format!("{q}.toml"));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn queries_match_a_plain_rust_computation_at_any_worker_count() {
    let e = events();
    let dir = tempfile::tempdir().unwrap();
    let queries: [(&str, Oracle); 9] = [
        ("q0", q0),
        ("q1", q1),
        ("q2", q2),
        ("q3", q3),
        ("q4", q4),
        ("q5", q5),
        ("q6", q6),
        ("q7", q7),
        ("q8", q8),
    ];
    for (q, oracle) in queries {
        let file = small_pipeline(dir.path(), q, true);
        let mut first: Option<String> = None;
        for workers in [1, 2, 4] {
            let out = dir.path().join(format!("{q}-{workers}"));
            let summary = run_pipeline(&file, workers, &out);
            assert_eq!(summary.nexmark_events, Some(EVENTS));
            assert_eq!(summary.records_dead_lettered, 0, "{q}: nothing is late");
            let text = read(&out.join(format!("{q}.csv")));
            match &first {
                None => {
                    let want = oracle(&e);
                    assert!(!want.is_empty(), "{q}: the oracle finds rows");
                    let got = consolidated(&out.join(format!("{q}.csv")));
                    if got != want {
                        let missing: Vec<_> = want
                            .iter()
                            .filter(|r| !got.contains_key(r.0))
                            .take(5)
                            .collect();
                        let extra: Vec<_> = got
                            .iter()
                            .filter(|r| !want.contains_key(r.0))
                            .take(5)
                            .collect();
                        panic!(
                            "{q}: {} rows, expected {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
                            got.len(),
                            want.len()
                        );
                    }
                    first = Some(text);
                }
                Some(t) => assert!(
                    *t == text,
                    "{q}: output at {workers} workers differs from 1 worker"
                ),
            }
        }
    }
}

#[test]
fn generating_while_running_gives_the_same_output_as_pregenerating() {
    let dir = tempfile::tempdir().unwrap();
    for q in ["q5", "q8"] {
        let mut outputs = Vec::new();
        for pregenerate in [true, false] {
            let file = small_pipeline(dir.path(), q, pregenerate);
            let out = dir.path().join(format!("{q}-{pregenerate}"));
            let summary = run_pipeline(&file, 2, &out);
            assert_eq!(summary.pregenerate_seconds > 0.0, pregenerate);
            outputs.push(read(&out.join(format!("{q}.csv"))));
        }
        assert!(outputs[0] == outputs[1], "{q}");
    }
}
