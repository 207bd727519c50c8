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

// Broker tests (rabbitmq, kafka): runs of the binary, their summaries and commits.

/// Prints a notice past the test harness's output capture, so a skip is seen.
pub fn notice(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "notice: {text}");
}

/// A queue or topic name no other test (or earlier run) uses.
pub fn unique_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("eventflow-test-{test}-{}-{nanos}", std::process::id())
}

/// `eventflow run PIPELINE --quiet -w WORKERS --out OUT EXTRA…`, which must succeed; its stderr.
pub fn run_to_end(pipeline: &Path, out: &Path, workers: &str, extra: &[&str]) -> String {
    let o = std::process::Command::new(bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "-w", workers])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "run failed: {stderr}");
    stderr
}

/// Starts `eventflow run PIPELINE --quiet -w 2 --out OUT EXTRA…` with stderr piped.
pub fn start_run(pipeline: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "-w", "2"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A run's `summary.json`.
pub fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

/// Fails unless the two files hold the same bytes.
pub fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x == y,
        "{} and {} differ ({} vs {} bytes)",
        a.display(),
        b.display(),
        x.len(),
        y.len()
    );
}

/// Fails unless both outputs of an `orders_revenue` run in `out` equal the reference's.
pub fn assert_same_revenue(reference: &Path, out: &Path) {
    for f in ["revenue_updates.csv", "revenue_snapshot.csv"] {
        assert_same_file(&reference.join(f), &out.join(f));
    }
}

/// Waits (at most 60 s) until the run writing `out` has committed `n` sink ticks or ended;
/// returns whether it is still running.
pub fn wait_for_commits(run: &mut std::process::Child, out: &Path, n: usize) -> bool {
    let t = std::time::Instant::now();
    while commits(out) < n && t.elapsed() < std::time::Duration::from_secs(60) {
        if run.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    run.try_wait().unwrap().is_none()
}

/// Kills the run writing `out` once it has committed three times, i.e. mid-stream; fails if
/// it ended before.
pub fn kill_mid_stream(mut run: std::process::Child, out: &Path) {
    let running = wait_for_commits(&mut run, out, 3);
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(running, "the run ended before it could be killed");
}

/// Runs the file pipeline `orders_revenue` over `data` into `dir/file`, the reference.
pub fn reference(dir: &Path, data: &Path) -> PathBuf {
    let out = dir.join("file");
    let p = orders_revenue_pipeline(dir, data);
    run_to_end(&p, &out, "1", &[]);
    out
}

/// Lines of a run's commit log naming a sink.
pub fn commits(out: &Path) -> usize {
    std::fs::read_to_string(out.join(".eventflow/commits.log"))
        .map(|t| t.lines().filter(|l| l.contains("\"sink\"")).count())
        .unwrap_or(0)
}
