//! Golden outputs: the sample pipelines' files at 1, 2 and 4 workers, byte for byte against
//! checked-in expected files. `BLESS=1 cargo test --release golden` rewrites them.

use super::support::{read, root, run_pipeline};

fn check_golden(pipeline: &str, files: &[&str]) {
    let expected_dir = root().join("tests/golden").join(pipeline);
    for workers in [1, 2, 4] {
        let out = tempfile::tempdir().unwrap();
        run_pipeline(
            &root().join("pipelines").join(format!("{pipeline}.toml")),
            workers,
            out.path(),
        );
        for file in files {
            let actual = read(&out.path().join(file));
            let expected_path = expected_dir.join(file);
            if std::env::var_os("BLESS").is_some() && workers == 1 {
                std::fs::create_dir_all(&expected_dir).unwrap();
                std::fs::write(&expected_path, &actual).unwrap();
            }
            let expected = read(&expected_path);
            assert!(
                actual == expected,
                "{pipeline}/{file} at {workers} workers differs from {} (BLESS=1 rewrites it)",
                expected_path.display()
            );
        }
    }
}

#[test]
fn orders_revenue_matches_golden_at_1_2_4_workers() {
    check_golden(
        "orders_revenue",
        &[
            "revenue_updates.csv",
            "revenue_snapshot.csv",
            "dead_letters.jsonl",
        ],
    );
}

#[test]
fn large_orders_matches_golden_at_1_2_4_workers() {
    check_golden("large_orders", &["large_orders.csv", "dead_letters.jsonl"]);
}

#[test]
fn clickstream_windows_matches_golden_at_1_2_4_workers() {
    check_golden(
        "clickstream_windows",
        &[
            "page_views.csv",
            "page_views_updates.csv",
            "active_users.csv",
            "sessions.csv",
            "dead_letters.jsonl",
        ],
    );
}
