//! Shared helpers: generating data, writing pipelines into temp folders, running them.

use eventflow::generate::{write_orders_csv, OrdersConfig};
use eventflow::runtime::{run, RunOptions, RunSummary};
use eventflow::spec::PipelineSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built `eventflow` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_eventflow"))
}

/// Writes `n` generated orders to `dir/orders.csv`.
pub fn generate_orders(dir: &Path, events: u64, seed: u64, malformed_share: f64) -> PathBuf {
    let path = dir.join("orders.csv");
    let cfg = OrdersConfig {
        events,
        seed,
        malformed_share,
        ..Default::default()
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write_orders_csv(&cfg, &mut file).unwrap();
    std::io::Write::flush(&mut file).unwrap();
    path
}

/// The sample orders_revenue pipeline, with its input path replaced by `data`.
pub fn orders_revenue_pipeline(dir: &Path, data: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("pipelines/orders_revenue.toml")).unwrap();
    let text = text.replace(
        "\"../data/orders.csv\"",
        &format!("{:?}", data.display().to_string()),
    );
    let path = dir.join("orders_revenue.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Plans and runs a pipeline file with `workers` workers into `out`.
pub fn run_pipeline(file: &Path, workers: usize, out: &Path) -> RunSummary {
    let spec = PipelineSpec::load(file)
        .map_err(|e| e.1)
        .expect("pipeline parses");
    let plan = eventflow::plan::build(&spec).expect("pipeline plans");
    let opts = RunOptions {
        workers,
        out_dir: out.to_path_buf(),
        progress: false,
        recovery: Default::default(),
        cluster: None,
        stop_when_idle: None,
    };
    let summary = run(Arc::new(plan), &opts).expect("pipeline runs");
    assert!(
        summary.balanced(),
        "every record accounted for: {summary:#?}"
    );
    summary
}

/// A file's text.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
