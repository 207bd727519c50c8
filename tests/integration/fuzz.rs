//! Fuzz tests and the regressions they found.

use super::support::bin;
use std::path::Path;

const HEADER: &str = "order_id,ts,customer_id,category,product,quantity,unit_price,amount,status";

const SCHEMA: &str = "{ order_id = \"int\", ts = \"timestamp\", customer_id = \"int\", category = \"string\", product = \"string\", quantity = \"int\", unit_price = \"float\", amount = \"float\", status = \"string\" }";

/// Runs `pipeline` with the binary; checks exit status 0 and that summary.json balances and
/// read every record the reader counts.
fn run_and_check(pipeline: &Path, out: &Path, workers: usize, records: u64) {
    let run = std::process::Command::new(bin())
        .args(["run", "--quiet", "--workers", &workers.to_string(), "--out"])
        .arg(out)
        .arg(pipeline)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let name = pipeline.file_name().unwrap().to_string_lossy();
    assert_ne!(run.status.code(), Some(101), "{name}: panic\n{stderr}");
    assert_eq!(run.status.code(), Some(0), "{name}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let source = &summary["sources"][0];
    let count = |v: &serde_json::Value| v.as_u64().unwrap();
    let dead: u64 = source["dead_lettered"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    let read = count(&source["read"]);
    assert_eq!(read, records, "{name}: records read");
    assert_eq!(
        read,
        count(&source["emitted"]) + count(&source["filtered"]) + dead + count(&source["skipped"]),
        "{name}: balance\n{summary:#}"
    );
    let letters = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
    assert_eq!(letters.lines().count() as u64, dead, "{name}: dead letters");
}

// ---------------------------------------------------------------------------------------------
// Regressions: minimized inputs the fuzz tests found
// ---------------------------------------------------------------------------------------------

/// Found by `runs_on_bad_files_exit_0_and_balance`: the event time `9223372036854775807`
/// (epoch milliseconds, the largest `i64`) overflowed window arithmetic (`start + size`): a
/// panic, exit status 101, in a debug build, wrapped windows in a release build. It also
/// pushed the watermark to the end of time, so every later record was late. Event times after
/// 9999-12-31 are now bad values, like times before 1970.
#[test]
fn event_time_at_the_end_of_i64_is_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let row = |id: u32, ts: &str| format!("{id},{ts},1,a,b,1,1,1,paid\n");
    let data = [
        format!("{HEADER}\n"),
        row(1, "2024-01-01T00:00:00Z"),
        row(2, "9223372036854775807"),
        row(3, "253402300800000"),
        row(4, "2024-01-01T00:00:01Z"),
        row(5, "9999-12-31T23:59:59.999Z"),
        row(6, "2024-01-01T00:00:02Z"),
    ]
    .concat();
    std::fs::write(dir.path().join("orders.csv"), data).unwrap();
    let windows = [
        "type = \"tumbling\", size = \"1m\"",
        "type = \"hopping\", size = \"2m\", slide = \"1m\"",
        "type = \"session\", gap = \"30s\"",
    ];
    for (i, window) in windows.iter().enumerate() {
        for emit in ["final", "updates"] {
            let pipeline = dir.path().join(format!("w{i}_{emit}.toml"));
            std::fs::write(
                &pipeline,
                format!(
                    "[pipeline]\ntick = \"1s\"\n\
                     [sources.orders]\ntype = \"csv\"\npath = \"orders.csv\"\nschema = {SCHEMA}\n\
                     event_time = \"ts\"\nmax_lateness = \"5s\"\n\
                     [transforms.w]\ntype = \"aggregate\"\ninput = \"orders\"\n\
                     window = {{ {window} }}\nemit = \"{emit}\"\n\
                     aggregates = {{ n = \"count(*)\", last = \"max(ts)\" }}\n\
                     [sinks.out]\ntype = \"csv\"\ninput = \"w\"\n"
                ),
            )
            .unwrap();
            for workers in [1, 3] {
                let out = dir.path().join(format!("out_w{i}_{emit}_{workers}"));
                run_and_check(&pipeline, &out, workers, 6);
                let letters = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
                let reasons: Vec<(u64, String, String)> = letters
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        let text = |k: &str| v[k].as_str().unwrap().to_string();
                        (v["line"].as_u64().unwrap(), text("reason"), text("detail"))
                    })
                    .collect();
                let after = "event time is after 9999-12-31".to_string();
                assert_eq!(
                    reasons[..2],
                    [
                        (3, "bad_value".to_string(), after.clone()),
                        (4, "bad_value".to_string(), after)
                    ],
                    "{letters}"
                );
                // Only the record behind the (valid) year-9999 record is late.
                assert_eq!(reasons.len(), 3, "{letters}");
                assert_eq!((reasons[2].0, reasons[2].1.as_str()), (7, "late"));
            }
        }
    }
}

/// Found while fixing the above: a duration beyond `i64` milliseconds, such as
/// `max_lateness = "18446744073709551615ms"`, was accepted and then wrapped to a negative
/// number (a watermark ahead of every record, windows of negative size). Durations are now at
/// most the span of event time.
#[test]
fn durations_beyond_event_time_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.csv"), format!("{HEADER}\n")).unwrap();
    let cases = [
        ("max_lateness = \"18446744073709551615ms\"", ""),
        ("max_lateness = 253402300800000", ""),
        (
            "",
            "window = { type = \"tumbling\", size = \"9223372036854775808ms\" }",
        ),
        (
            "",
            "window = { type = \"session\", gap = \"106751991167d\" }",
        ),
    ];
    for (source, transform) in cases {
        let pipeline = dir.path().join("p.toml");
        std::fs::write(
            &pipeline,
            format!(
                "[sources.orders]\ntype = \"csv\"\npath = \"orders.csv\"\nschema = {SCHEMA}\n\
                 event_time = \"ts\"\n{source}\n\
                 [transforms.w]\ntype = \"aggregate\"\ninput = \"orders\"\n{transform}\n\
                 aggregates = {{ n = \"count(*)\" }}\n\
                 [sinks.out]\ntype = \"csv\"\ninput = \"w\"\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(bin())
            .arg("check")
            .arg(&pipeline)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{source}{transform}\n{stderr}");
        assert!(
            stderr.contains("error[E0105]")
                && stderr.contains("longer than eventflow's event-time range"),
            "{source}{transform}\n{stderr}"
        );
    }
}
