//! Oracle tests: the engine against a plain Rust fold over the same input, on generated data of
//! several sizes and seeds; updates consolidated per key against the snapshot; reordering within
//! `max_lateness` against the original order.

use super::support::{generate_orders, orders_revenue_pipeline, read, run_pipeline};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

/// Per category: (revenue in cents, paid orders, largest order in cents).
fn fold_orders(csv_path: &Path) -> BTreeMap<String, (i64, i64, i64)> {
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (category, amount, status) = (col("category"), col("amount"), col("status"));
    let mut out: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for record in reader.records() {
        let r = record.unwrap();
        if &r[status] != "paid" {
            continue;
        }
        let cents = (r[amount].parse::<f64>().unwrap() * 100.0).round() as i64;
        let e = out
            .entry(r[category].to_string())
            .or_insert((0, 0, i64::MIN));
        e.0 += cents;
        e.1 += 1;
        e.2 = e.2.max(cents);
    }
    out
}

fn snapshot_rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

/// Consolidates an updates file: sums `diff` per row (all columns but time and diff).
fn consolidate_updates(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[headers.len() - 2], "time");
    assert_eq!(&headers[headers.len() - 1], "diff");
    let mut acc: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for r in reader.records() {
        let r = r.unwrap();
        let n = r.len();
        let row: Vec<String> = r.iter().take(n - 2).map(String::from).collect();
        *acc.entry(row).or_insert(0) += r[n - 1].parse::<i64>().unwrap();
    }
    let mut rows = Vec::new();
    for (row, count) in acc {
        assert!(count >= 0, "row {row:?} retracted more often than inserted");
        for _ in 0..count {
            rows.push(row.clone());
        }
    }
    rows
}

fn check_against_oracle(events: u64, seed: u64, workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), events, seed, 0.0);
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let out = dir.path().join("out");
    let summary = run_pipeline(&pipeline, workers, &out);
    assert_eq!(summary.records_read, events);
    assert_eq!(
        summary.records_dead_lettered, 0,
        "no late or malformed records in generated data"
    );

    let expected = fold_orders(&data);
    let snapshot = snapshot_rows(&out.join("revenue_snapshot.csv"));
    assert_eq!(snapshot.len(), expected.len(), "one row per category");
    for (row, (category, (cents, count, largest))) in snapshot.iter().zip(&expected) {
        assert_eq!(&row[0], category);
        let revenue: f64 = row[1].parse().unwrap();
        assert_eq!(
            (revenue * 100.0).round() as i64,
            *cents,
            "revenue of {category}"
        );
        assert_eq!(
            row[2].parse::<i64>().unwrap(),
            *count,
            "orders of {category}"
        );
        let avg: f64 = row[3].parse().unwrap();
        assert!(
            (avg - *cents as f64 / 100.0 / *count as f64).abs() < 1e-6,
            "avg of {category}"
        );
        let max: f64 = row[4].parse().unwrap();
        assert_eq!(
            (max * 100.0).round() as i64,
            *largest,
            "largest order of {category}"
        );
    }
    assert_eq!(
        consolidate_updates(&out.join("revenue_updates.csv")),
        snapshot,
        "updates consolidate to the snapshot"
    );
}

#[test]
fn orders_revenue_equals_a_plain_fold() {
    for (events, seed, workers) in [(1, 1, 1), (500, 7, 2), (20_000, 11, 3), (60_000, 12345, 2)] {
        check_against_oracle(events, seed, workers);
    }
}

#[test]
fn reordering_within_max_lateness_changes_no_output_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 30_000, 99, 0.0);
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let original = dir.path().join("original");
    run_pipeline(&pipeline, 2, &original);

    // Shuffle: sort by event time plus a random delay of up to 1 s. A record then follows only
    // records at most 1 s later than it, well within the pipeline's 5 s max_lateness.
    let text = read(&data);
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let ts_col = header.split(',').position(|h| h == "ts").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut keyed: Vec<(i64, &str)> = lines
        .map(|l| {
            let ts = eventflow::record::time::parse_timestamp(l.split(',').nth(ts_col).unwrap())
                .unwrap();
            (ts + rng.random_range(0..1000), l)
        })
        .collect();
    keyed.shuffle(&mut rng);
    keyed.sort_by_key(|k| k.0);
    let reordered = std::iter::once(header.as_str())
        .chain(keyed.iter().map(|k| k.1))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(reordered, text, "the shuffle changed the order");
    std::fs::write(&data, reordered).unwrap();
    let shuffled = dir.path().join("shuffled");
    let summary = run_pipeline(&pipeline, 2, &shuffled);
    assert_eq!(summary.records_dead_lettered, 0);
    for file in [
        "revenue_updates.csv",
        "revenue_snapshot.csv",
        "dead_letters.jsonl",
    ] {
        assert!(
            read(&original.join(file)) == read(&shuffled.join(file)),
            "{file} changed after reordering"
        );
    }
}

#[test]
fn records_beyond_max_lateness_are_dead_lettered_identically_at_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 10_000, 3, 0.0);
    // Move every 1000th record 60 s back in time: far beyond the 5 s max_lateness.
    let text = read(&data);
    let mut out = String::new();
    let mut moved = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i > 0 && i % 1000 == 0 {
            let mut fields: Vec<String> = line.split(',').map(String::from).collect();
            let ts = eventflow::record::time::parse_timestamp(&fields[1]).unwrap() - 60_000;
            fields[1] = eventflow::record::time::iso8601(ts);
            moved.push(i as u64 + 1); // line number
            out.push_str(&fields.join(","));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(&data, out).unwrap();
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let mut dead_files = Vec::new();
    for workers in [1, 2, 4] {
        let out = dir.path().join(format!("out{workers}"));
        let summary = run_pipeline(&pipeline, workers, &out);
        assert_eq!(
            summary.dead_letters_by_reason.get("late").copied(),
            Some(moved.len() as u64)
        );
        let dead = read(&out.join("dead_letters.jsonl"));
        let lines: Vec<u64> = dead
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(lines, moved, "exactly the moved records are late");
        dead_files.push(dead);
    }
    assert!(dead_files.windows(2).all(|w| w[0] == w[1]));
}
