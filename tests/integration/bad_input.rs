//! Malformed input: runs complete, and the dead-letter file and summary account for every row.

use super::support::{generate_orders, orders_revenue_pipeline, read, run_pipeline};

#[test]
fn malformed_rows_are_dead_lettered_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 20_000, 8, 0.03);
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    for workers in [1, 3] {
        let out = dir.path().join(format!("out{workers}"));
        let summary = run_pipeline(&pipeline, workers, &out);
        assert_eq!(summary.records_read, 20_000, "every data line is a record");
        let dead = read(&out.join("dead_letters.jsonl"));
        let n = dead.lines().count() as u64;
        assert!(n > 300 && n < 1000, "about 3% malformed, got {n}");
        assert_eq!(n, summary.records_dead_lettered);
        for line in dead.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["source"], "orders");
            assert!(v["line"].as_u64().unwrap() >= 2);
            assert!(
                ["malformed", "bad_value"].contains(&v["reason"].as_str().unwrap()),
                "{line}"
            );
            assert!(!v["detail"].as_str().unwrap().is_empty());
            assert!(!v["raw"].as_str().unwrap().is_empty());
        }
        let s = &summary.sources[0];
        assert_eq!(s.read, s.emitted + s.filtered + n);
        let on_disk: serde_json::Value =
            serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
        assert_eq!(on_disk["records_dead_lettered"].as_u64(), Some(n));
    }
}

#[test]
fn garbage_and_empty_inputs_complete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("orders.csv");
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let header = "order_id,ts,customer_id,category,product,quantity,unit_price,amount,status\n";
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("header only", header.as_bytes().to_vec(), 0),
        (
            "binary garbage",
            [
                header.as_bytes(),
                &[
                    0xff, 0xfe, 0x00, b'\n', b'"', b'x', b'\n', 0x80, b',', b'\n',
                ],
            ]
            .concat(),
            2, // the unbalanced quote on the second line runs to the end of the file
        ),
        (
            "unbalanced quote",
            format!("{header}1,\"2024-01-01T00:00:00Z,2,books,p,1,1.0,1.0,paid\n").into_bytes(),
            1,
        ),
        (
            "short row",
            format!("{header}1,2024-01-01T00:00:00Z,2\n").into_bytes(),
            1,
        ),
    ];
    for (name, bytes, records) in cases {
        std::fs::write(&data, &bytes).unwrap();
        let out = dir.path().join(name.replace(' ', "_"));
        let summary = run_pipeline(&pipeline, 2, &out);
        assert_eq!(summary.records_read, records, "{name}");
        assert_eq!(summary.records_dead_lettered, records, "{name}");
    }
}

/// `on_error` and `max_error_rate`, each with the exit status and message a user sees.
#[test]
fn error_policies_skip_fail_and_max_error_rate() {
    use super::support::bin;
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 5_000, 3, 0.02);
    let base = read(&orders_revenue_pipeline(dir.path(), &data));
    let with = |name: &str, extra: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        let text = base.replacen(
            "event_time = \"ts\"",
            &format!("event_time = \"ts\"\n{extra}"),
            1,
        );
        std::fs::write(&path, text).unwrap();
        let out = dir.path().join(name);
        let run = std::process::Command::new(bin())
            .args(["run", "--workers", "2", "--out"])
            .arg(&out)
            .arg(&path)
            .output()
            .unwrap();
        (
            run.status.code(),
            String::from_utf8_lossy(&run.stderr).into_owned(),
            out,
        )
    };

    let (code, _, out) = with("dead_letter", "");
    assert_eq!(code, Some(0));
    let dead = read(&out.join("dead_letters.jsonl")).lines().count() as u64;
    assert!(dead > 50, "about 2% of 5000 are malformed, got {dead}");

    let (code, stderr, out) = with("skip", "on_error = \"skip\"");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        read(&out.join("dead_letters.jsonl")),
        "",
        "skipped records are not kept"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    assert_eq!(summary["records_skipped"].as_u64(), Some(dead));
    assert!(stderr.contains(&format!("skipped {dead}")), "{stderr}");

    let (code, stderr, _) = with("fail", "on_error = \"fail\"");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("source `orders` line "), "{stderr}");
    assert!(
        stderr.contains("field `") || stderr.contains("expected 9 columns"),
        "{stderr}"
    );

    let (code, stderr, _) = with("rate_exceeded", "max_error_rate = 0.01");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("more than max_error_rate 1.00%"),
        "{stderr}"
    );

    let (code, stderr, _) = with("rate_ok", "max_error_rate = 0.05");
    assert_eq!(code, Some(0), "{stderr}");
}

/// Ctrl-C (SIGINT) stops a run early: exit status 130, the summary says so, and every output row
/// before the reported time is exactly what an uninterrupted run writes (nothing later).
#[test]
fn sigint_stops_with_final_output_up_to_the_reported_time() {
    use super::support::bin;
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 3_000_000, 17, 0.0);
    let pipeline = dir.path().join("windows.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[pipeline]\ntick = \"1s\"\n[sources.orders]\ntype = \"csv\"\npath = {:?}\n\
             schema = {{ ts = \"timestamp\", category = \"string\", amount = \"float\" }}\n\
             event_time = \"ts\"\nmax_lateness = \"5s\"\n\
             [transforms.w]\ntype = \"aggregate\"\ninput = \"orders\"\ngroup_by = [\"category\"]\n\
             window = {{ type = \"tumbling\", size = \"1m\" }}\naggregates = {{ revenue = \"sum(amount)\" }}\n\
             [sinks.out]\ntype = \"csv\"\ninput = \"w\"\npath = \"out.csv\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let run = |out: &std::path::Path| {
        std::process::Command::new(bin())
            .args(["run", "--quiet", "--workers", "2", "--out"])
            .arg(out)
            .arg(&pipeline)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let full = dir.path().join("full");
    assert!(run(&full).wait().unwrap().success());
    let stopped = dir.path().join("stopped");
    let child = run(&stopped);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&read(&stopped.join("summary.json"))).unwrap();
    assert_eq!(summary["interrupted"], "SIGINT");
    let bound = summary["outputs_final_before"]
        .as_str()
        .expect("a stop time")
        .to_string();
    let full_rows = read(&full.join("out.csv"));
    let mut lines = full_rows.lines();
    let header = lines.next().unwrap();
    let expected: Vec<&str> = std::iter::once(header)
        .chain(lines.filter(|l| l.split(',').nth_back(1).unwrap() < bound.as_str()))
        .collect();
    let stopped_rows = read(&stopped.join("out.csv"));
    assert_eq!(
        stopped_rows.lines().collect::<Vec<_>>(),
        expected,
        "output before {bound} differs"
    );
    assert!(
        expected.len() < full_rows.lines().count(),
        "the run was stopped before its end"
    );
}
