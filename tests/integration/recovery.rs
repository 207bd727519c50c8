//! Crash recovery: runs killed with SIGKILL (or stopped by SIGINT) and resumed end with the
//! same files as an uninterrupted run; a resume of a changed pipeline or input is refused.

use super::support::{bin, generate_orders, orders_revenue_pipeline, read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The files every run writes besides summary.json, compared byte for byte.
const OUTPUTS: [&str; 4] = [
    "revenue_updates.csv",
    "revenue_snapshot.csv",
    "large/orders.jsonl",
    "dead_letters.jsonl",
];

/// orders_revenue (updates and snapshot CSV) plus a JSON Lines updates sink of large paid orders
/// in a subfolder, reading `data`.
fn pipeline(dir: &Path, data: &Path) -> PathBuf {
    let path = orders_revenue_pipeline(dir, data);
    let mut text = read(&path);
    text.push_str(
        "\n[transforms.large]\ntype = \"filter\"\ninput = \"orders\"\n\
         where = \"status = 'paid' AND amount >= 1000\"\n\
         [transforms.large_rows]\ntype = \"select\"\ninput = \"large\"\n\
         fields = { order_id = \"order_id\", ts = \"ts\", category = \"upper(category)\", amount = \"amount\" }\n\
         [sinks.large_orders]\ntype = \"jsonl\"\ninput = \"large_rows\"\npath = \"large/orders.jsonl\"\n",
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `eventflow run` on two workers with stderr captured.
fn start(pipeline: &Path, out: &Path, extra: &[&str]) -> Child {
    Command::new(bin())
        .args(["run", "--quiet", "--workers", "2", "--out"])
        .arg(out)
        .args(extra)
        .arg(pipeline)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs to the end; returns the exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SIGKILLs `child` after `delay`; returns whether it was still running (so really killed).
fn kill_after(mut child: Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    !status.success()
}

/// summary.json without its timings and memory, which differ between runs.
fn summary_counts(out: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    let map = v.as_object_mut().unwrap();
    for timing in [
        "wall_seconds",
        "events_per_second",
        "peak_memory_bytes",
        "cpu_seconds",
        "pregenerate_seconds",
    ] {
        map.remove(timing).expect("a timing field");
    }
    v
}

/// Asserts that `out` holds exactly the reference run's outputs.
fn assert_same_outputs(reference: &Path, out: &Path, what: &str) {
    for file in OUTPUTS {
        let (want, got) = (
            std::fs::read(reference.join(file)).unwrap(),
            std::fs::read(out.join(file)).unwrap_or_default(),
        );
        if want != got {
            let at = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
            panic!(
                "{what}: `{file}` differs from the uninterrupted run's at byte {at} \
                 ({} bytes instead of {})",
                got.len(),
                want.len()
            );
        }
    }
    assert_eq!(
        summary_counts(out),
        summary_counts(reference),
        "{what}: summary"
    );
    let log = read(&out.join(".eventflow/commits.log"));
    assert!(
        log.ends_with("{\"complete\":true}\n"),
        "{what}: the run is recorded as complete:\n{log}"
    );
}

/// A fixed pseudo-random sequence (splitmix64), so kill points are the same on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Kills runs with SIGKILL at 24 points spread over a run (sometimes the resumed run too),
/// resumes each to the end, and compares every output file with an uninterrupted run's.
#[test]
fn runs_killed_at_random_points_resume_to_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 1_500_000, 29, 0.001);
    let pipeline = pipeline(dir.path(), &data);
    let reference = dir.path().join("reference");
    let began = Instant::now();
    let (code, stderr) = finish(start(&pipeline, &reference, &["--no-commit"]));
    // The duration of a whole run, to spread kill points over. Other tests may slow the first
    // runs down, so it follows the fastest whole run seen (each final resume replays all input).
    let mut wall = began.elapsed();
    assert_eq!(code, Some(0), "{stderr}");

    const POINTS: u64 = 24;
    let (mut killed, mut resumed_with_commits, mut double) = (0, 0, 0);
    for seed in 0..POINTS {
        let mut rng = Seeded(seed);
        // Mostly short intervals, so that runs this short commit along the way.
        let interval = ["10ms", "50ms", "50ms", "250ms", "1s"][(rng.next() % 5) as usize];
        let args = ["--commit-interval", interval];
        // Spread over the whole run, from before it writes anything to its last commits.
        let delay = wall.mul_f64(rng.unit());
        let out = dir.path().join(format!("kill-{seed}"));
        let what = format!(
            "kill point {seed} ({} ms, commits every {interval})",
            delay.as_millis()
        );
        killed += u32::from(kill_after(start(&pipeline, &out, &args), delay));
        if rng.next().is_multiple_of(3) {
            // Kill the resumed run too, at a second point.
            let again = wall.mul_f64(rng.unit());
            double += u32::from(kill_after(start(&pipeline, &out, &args), again));
        }
        let began = Instant::now();
        let (code, stderr) = finish(start(&pipeline, &out, &args));
        wall = wall.min(began.elapsed());
        assert_eq!(code, Some(0), "{what}: {stderr}");
        resumed_with_commits += u32::from(stderr.contains("committed up to"));
        assert_same_outputs(&reference, &out, &what);
        std::fs::remove_dir_all(&out).unwrap();
    }
    eprintln!(
        "{POINTS} kill points over a run of {} ms: {killed} runs killed mid-way, {double} resumed runs \
         killed again, {resumed_with_commits} resumes from a commit",
        wall.as_millis()
    );
    // The points must really interrupt runs, and many of them after something was committed.
    assert!(
        killed >= POINTS as u32 / 2,
        "only {killed} runs were killed"
    );
    assert!(
        resumed_with_commits >= POINTS as u32 / 3,
        "only {resumed_with_commits} resumes started from a commit"
    );
}

/// Ctrl-C leaves an unfinished run with its final ticks committed; the next run resumes it.
#[test]
fn a_run_stopped_by_sigint_resumes_to_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 1_000_000, 31, 0.001);
    let pipeline = pipeline(dir.path(), &data);
    let reference = dir.path().join("reference");
    let began = Instant::now();
    let (code, stderr) = finish(start(&pipeline, &reference, &[]));
    assert_eq!(code, Some(0), "{stderr}");
    let wall = began.elapsed();

    // Ctrl-C at half the reference run's time; a signal that lands after the last tick (the
    // run is faster than the reference, e.g. with warm caches) leaves a complete run, so the
    // stop is tried again earlier, at most three times.
    let out = dir.path().join("stopped");
    let mut delay = wall / 2;
    let log = loop {
        let _ = std::fs::remove_dir_all(&out);
        let child = start(&pipeline, &out, &["--commit-interval", "50ms"]);
        std::thread::sleep(delay);
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let (code, stderr) = finish(child);
        assert_eq!(code, Some(130), "stopped before its end: {stderr}");
        let log = read(&out.join(".eventflow/commits.log"));
        if !log.contains("complete") || delay <= wall / 8 {
            break log;
        }
        delay /= 2;
    };
    assert!(
        !log.contains("complete"),
        "an interrupted run is unfinished:\n{log}"
    );

    let (code, stderr) = finish(start(&pipeline, &out, &["--resume"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("committed up to"), "{stderr}");
    assert_same_outputs(&reference, &out, "resumed after SIGINT");
}

/// Makes the completed run in `out` look as if it crashed after its last commit.
fn forget_completion(out: &Path) {
    let path = out.join(".eventflow/commits.log");
    let log = read(&path).replace("{\"complete\":true}\n", "");
    std::fs::write(path, log).unwrap();
}

/// `--resume` says exactly why it cannot resume; without it, such a folder starts afresh.
#[test]
fn resume_refuses_a_changed_pipeline_or_input_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 20_000, 5, 0.0);
    let pipeline = pipeline(dir.path(), &data);
    let out = dir.path().join("out");
    let run = |extra: &[&str]| finish(start(&pipeline, &out, extra));

    let (code, stderr) = run(&["--resume"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("holds no interrupted run"), "{stderr}");

    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    let reference = dir.path().join("reference");
    std::fs::create_dir_all(reference.join("large")).unwrap();
    for file in OUTPUTS.iter().chain(&["summary.json"]) {
        std::fs::copy(out.join(file), reference.join(file)).unwrap();
    }
    let (code, stderr) = run(&["--resume"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("its run completed, so there is nothing to resume"),
        "{stderr}"
    );

    forget_completion(&out);
    let original = std::fs::read(&data).unwrap();
    let shown = data.display().to_string();
    let mut longer = original.clone();
    longer.extend_from_slice(b"999999,2024-01-01T00:00:00.000Z,1,books,Book,1,1.00,1.00,paid\n");
    std::fs::write(&data, &longer).unwrap();
    let (code, stderr) = run(&["--resume"]);
    assert_eq!(code, Some(1), "{stderr}");
    let why = format!(
        "input `{shown}` changed since the interrupted run (length {} → {})",
        original.len(),
        longer.len()
    );
    assert!(stderr.contains(&why), "{stderr}");
    assert!(
        stderr.contains("run without --resume to start afresh"),
        "{stderr}"
    );

    let mut same_length = original.clone();
    let last_digit = same_length.len() - 2;
    same_length[last_digit] = if same_length[last_digit] == b'1' {
        b'2'
    } else {
        b'1'
    };
    std::fs::write(&data, &same_length).unwrap();
    let (code, stderr) = run(&["--resume"]);
    assert_eq!(code, Some(1), "{stderr}");
    let why = format!(
        "input `{shown}` changed since the interrupted run (same length, different contents)"
    );
    assert!(stderr.contains(&why), "{stderr}");

    std::fs::write(&data, &original).unwrap();
    let text = read(&pipeline);
    std::fs::write(&pipeline, format!("{text}# a comment\n")).unwrap();
    let (code, stderr) = run(&["--resume"]);
    assert_eq!(code, Some(1), "{stderr}");
    let why = format!(
        "pipeline file `{}` changed since the interrupted run",
        pipeline.display()
    );
    assert!(stderr.contains(&why), "{stderr}");
    // Without --resume the changed run starts afresh, with a warning.
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("cannot be resumed (pipeline file"),
        "{stderr}"
    );
    assert!(stderr.contains("starting afresh"), "{stderr}");
    assert_same_outputs(&reference, &out, "started afresh");

    // An unfinished run of the very same pipeline and input resumes.
    forget_completion(&out);
    let (code, stderr) = run(&["--resume"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("resuming run in") && stderr.contains("2 sinks committed to the end"),
        "{stderr}"
    );
    assert_same_outputs(&reference, &out, "resumed");
}

/// An output file cut shorter than its last commit cannot be resumed.
#[test]
fn resume_refuses_an_output_file_shorter_than_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 20_000, 6, 0.0);
    let pipeline = pipeline(dir.path(), &data);
    let out = dir.path().join("out");
    let (code, stderr) = finish(start(&pipeline, &out, &[]));
    assert_eq!(code, Some(0), "{stderr}");
    forget_completion(&out);
    std::fs::write(out.join("revenue_updates.csv"), "category\n").unwrap();
    let (code, stderr) = finish(start(&pipeline, &out, &["--resume"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("revenue_updates.csv` has 9 bytes, fewer than the"),
        "{stderr}"
    );
}
