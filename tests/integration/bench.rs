//! `eventflow bench`: child runs per worker count, the table, bench.csv and bench.svg.

use super::support::{bin, read, root};
use std::process::Command;

#[test]
fn bench_runs_each_worker_count_and_writes_csv_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("bench");
    // Run from the temp folder so the generated-data cache (data/generated/bench, relative to
    // the current folder) lands there too.
    let out = Command::new(bin())
        .current_dir(dir.path())
        .arg("bench")
        .arg(root().join("pipelines/orders_revenue.toml"))
        .args([
            "--events",
            "2000",
            "--workers",
            "1,2",
            "--repeat",
            "2",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("bench `orders_revenue`: 2000 generated events"),
        "{stdout}"
    );
    // The table's rows (a legend line follows them).
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.first().is_some_and(|w| w.parse::<usize>().is_ok()))
        .collect();
    assert!(stdout.contains("machine ×"), "{stdout}");
    let workers: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        workers,
        ["1", "2"],
        "one table row per worker count:\n{stdout}"
    );
    assert!(rows.iter().all(|r| r[1] == "2"), "two runs each:\n{stdout}");
    assert_eq!(
        stderr.matches("run ").count(),
        4,
        "a progress line per run:\n{stderr}"
    );
    assert!(dir
        .path()
        .join("data/generated/bench/orders_2000_7.csv")
        .exists());

    let csv = read(&out_dir.join("bench.csv"));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("pipeline,events,workers,run,wall_seconds,events_per_second,peak_memory_bytes,cores,commit,cpu_seconds,machine_speedup")
    );
    let data: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(data.len(), 4, "{csv}");
    for (row, workers) in data.iter().zip(["1", "1", "2", "2"]) {
        assert_eq!(row[0], "orders_revenue");
        assert_eq!(row[1], "2000", "every generated event is read: {csv}");
        assert_eq!(row[2], workers);
        let eps: f64 = row[5].parse().unwrap();
        assert!(eps > 0.0, "{csv}");
        // The machine's own speedup: exactly 1 for one worker, measured for two (no upper
        // bound holds while other tests load the machine).
        let machine: f64 = row[10].parse().unwrap();
        if workers == "1" {
            assert_eq!(machine, 1.0, "{csv}");
        } else {
            assert!(machine.is_finite() && machine > 0.0, "{csv}");
        }
    }

    let svg = read(&out_dir.join("bench.svg"));
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));

    // A second bench reuses the cached input.
    let again = Command::new(bin())
        .current_dir(dir.path())
        .arg("bench")
        .arg(root().join("pipelines/orders_revenue.toml"))
        .args([
            "--events",
            "2000",
            "--workers",
            "1",
            "--repeat",
            "1",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("reusing"), "{stderr}");
}

#[test]
fn bench_reports_a_failing_run_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    // Valid to plan, but the run stops at the malformed second record (`on_error = "fail"`).
    std::fs::write(dir.path().join("in.csv"), "order_id\n1\nabc\n").unwrap();
    std::fs::write(
        &pipeline,
        "[sources.o]\ntype = \"csv\"\npath = \"in.csv\"\non_error = \"fail\"\nschema = { order_id = \"int\" }\n\
         [sinks.s]\ntype = \"csv\"\ninput = \"o\"\npath = \"o.csv\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .current_dir(dir.path())
        .arg("bench")
        .arg(&pipeline)
        .args(["--workers", "1", "--repeat", "1", "--out"])
        .arg(dir.path().join("bench"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("run 1/1 (1 worker, #1) failed"), "{stderr}");
    assert!(
        stderr.contains("cannot parse `abc` as int"),
        "the child's stderr is shown: {stderr}"
    );
}
