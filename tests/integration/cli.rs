//! Command-line behaviour: help, check output, run output locations and exit codes.

use super::support::{bin, generate_orders, orders_revenue_pipeline, root};
use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for cmd in ["run", "check", "graph", "generate", "operators"] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
}

#[test]
fn check_prints_nodes_edges_and_schemas() {
    let out = Command::new(bin())
        .arg("check")
        .arg(root().join("pipelines/orders_revenue.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("transform revenue [aggregate]"), "{text}");
    assert!(text.contains("inputs: paid"), "{text}");
    assert!(
        text.contains("parses: ts, category, amount, status (fields no node reads are skipped)"),
        "{text}"
    );
    assert!(text.contains("schema: (category: string, revenue: float, orders: int, avg_order: float, largest_order: float), with retractions"), "{text}");
}

#[test]
fn run_writes_outputs_and_summary_to_the_out_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 2_000, 4, 0.0);
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let out_dir = dir.path().join("results");
    let out = Command::new(bin())
        .args(["run", "--workers", "2", "--out"])
        .arg(&out_dir)
        .arg(&pipeline)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2000 records read"), "{stderr}");
    for file in [
        "revenue_updates.csv",
        "revenue_snapshot.csv",
        "dead_letters.jsonl",
        "summary.json",
    ] {
        assert!(out_dir.join(file).exists(), "{file} missing");
    }
}

#[test]
fn stdout_sink_prints_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 100, 4, 0.0);
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[sources.o]\ntype = \"csv\"\npath = {:?}\nschema = {{ order_id = \"int\", status = \"string\" }}\n\
             [transforms.n]\ntype = \"aggregate\"\ninput = \"o\"\ngroup_by = [\"status\"]\naggregates = {{ n = \"count(*)\" }}\n\
             [sinks.s]\ntype = \"stdout\"\ninput = \"n\"\nmode = \"snapshot\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["run", "-q", "--out"])
        .arg(dir.path().join("o"))
        .arg(&pipeline)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.starts_with("status,n\n"), "{stdout}");
    let total: i64 = stdout
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 100);
}

#[test]
fn graph_prints_dot_with_every_edge() {
    let out = Command::new(bin())
        .arg("graph")
        .arg(root().join("pipelines/orders_revenue.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with("digraph \"orders_revenue\" {"), "{text}");
    for edge in [
        "\"orders\" -> \"paid\"",
        "\"paid\" -> \"revenue\"",
        "\"revenue\" -> \"revenue_updates\"",
        "\"revenue\" -> \"revenue_snapshot\"",
    ] {
        assert!(text.contains(edge), "missing {edge}:\n{text}");
    }
}
