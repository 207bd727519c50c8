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

#[test]
fn jsonl_source_gives_the_same_results_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 5_000, 21, 0.0);
    let mut reader = csv::Reader::from_path(&data).unwrap();
    let headers = reader.headers().unwrap().clone();
    let mut jsonl = String::new();
    for r in reader.records() {
        let r = r.unwrap();
        let mut obj = serde_json::Map::new();
        for (h, v) in headers.iter().zip(r.iter()) {
            let value = match h {
                "order_id" | "customer_id" | "quantity" => {
                    serde_json::json!(v.parse::<i64>().unwrap())
                }
                "unit_price" | "amount" => serde_json::json!(v.parse::<f64>().unwrap()),
                _ => serde_json::json!(v),
            };
            obj.insert(h.to_string(), value);
        }
        jsonl.push_str(&serde_json::Value::Object(obj).to_string());
        jsonl.push('\n');
    }
    let json_path = dir.path().join("orders.jsonl");
    std::fs::write(&json_path, jsonl).unwrap();
    let csv_pipeline = orders_revenue_pipeline(dir.path(), &data);
    let text = read(&csv_pipeline)
        .replace("type = \"csv\"\npath", "type = \"jsonl\"\npath")
        .replace(
            &format!("{:?}", data.display().to_string()),
            &format!("{:?}", json_path.display().to_string()),
        );
    assert!(text.contains("type = \"jsonl\""));
    let json_pipeline = dir.path().join("orders_revenue_jsonl.toml");
    std::fs::write(&json_pipeline, text).unwrap();
    let from_csv = dir.path().join("csv");
    let from_json = dir.path().join("json");
    run_pipeline(&csv_pipeline, 2, &from_csv);
    let summary = run_pipeline(&json_pipeline, 2, &from_json);
    assert_eq!(summary.records_read, 5_000);
    for file in ["revenue_updates.csv", "revenue_snapshot.csv"] {
        assert!(
            read(&from_csv.join(file)) == read(&from_json.join(file)),
            "{file} differs between CSV and JSONL input"
        );
    }
}

#[test]
fn union_of_two_sources_with_position_time_and_a_jsonl_sink() {
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = generate_orders(&a_dir, 7_000, 1, 0.0);
    let b = generate_orders(&b_dir, 3_000, 2, 0.0);
    let schema =
        "{ order_id = \"int\", category = \"string\", quantity = \"int\", status = \"string\" }";
    let pipeline = dir.path().join("union.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[pipeline]\ntick_records = 1000\n\
             [sources.a]\ntype = \"csv\"\npath = {a:?}\nschema = {schema}\n\
             [sources.b]\ntype = \"csv\"\npath = {b:?}\nschema = {schema}\n\
             [transforms.both]\ntype = \"union\"\ninputs = [\"a\", \"b\"]\n\
             [transforms.items]\ntype = \"aggregate\"\ninput = \"both\"\ngroup_by = [\"category\", \"status\"]\n\
             aggregates = {{ items = \"sum(quantity)\", orders = \"count(*)\" }}\n\
             [sinks.out]\ntype = \"jsonl\"\ninput = \"items\"\nmode = \"snapshot\"\n\
             [sinks.changes]\ntype = \"jsonl\"\ninput = \"items\"\n",
            a = a.display().to_string(),
            b = b.display().to_string()
        ),
    )
    .unwrap();
    // The oracle: a plain fold over both files.
    let mut expected: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for path in [&a, &b] {
        let mut reader = csv::Reader::from_path(path).unwrap();
        for r in reader.records() {
            let r = r.unwrap();
            let e = expected
                .entry((r[3].to_string(), r[8].to_string()))
                .or_insert((0, 0));
            e.0 += r[5].parse::<i64>().unwrap();
            e.1 += 1;
        }
    }
    let mut outputs = Vec::new();
    for workers in [1, 4] {
        let out = dir.path().join(format!("out{workers}"));
        let summary = run_pipeline(&pipeline, workers, &out);
        assert_eq!(summary.records_read, 10_000);
        let snapshot = read(&out.join("out.jsonl"));
        let actual: BTreeMap<(String, String), (i64, i64)> = snapshot
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let key = (
                    v["category"].as_str().unwrap().to_string(),
                    v["status"].as_str().unwrap().to_string(),
                );
                (
                    key,
                    (v["items"].as_i64().unwrap(), v["orders"].as_i64().unwrap()),
                )
            })
            .collect();
        assert_eq!(actual, expected);
        let changes = read(&out.join("out.jsonl").with_file_name("changes.jsonl"));
        // Position time: every change is stamped with the first record position of its tick.
        assert!(changes.lines().all(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["time"].as_u64().unwrap().is_multiple_of(1000)
                && v["diff"].as_i64().unwrap().abs() == 1
        }));
        outputs.push((snapshot, changes));
    }
    assert!(
        outputs[0] == outputs[1],
        "1 and 4 workers wrote different files"
    );
}
