//! Cluster mode (timely's cluster configuration, on loopback): outputs identical to one process,
//! the start-up identity check, and what happens when a process dies.

use super::support::{bin, generate_orders, orders_revenue_pipeline, root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `eventflow run FILE --out OUT ARGS…` to the end.
fn run(file: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .args(args)
        .output()
        .expect("eventflow starts")
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The output files of a run (no summary: it holds timings; no recovery folder).
fn output_files(out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().unwrap() != "summary.json")
        .collect();
    files.sort();
    files
}

/// Every output file of `out` is byte-identical to the reference's, and the summaries count
/// the same records.
fn assert_same_outputs(reference: &Path, out: &Path, what: &str) {
    let expected = output_files(reference);
    assert!(!expected.is_empty(), "{what}: the reference wrote nothing");
    let names = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&output_files(out)), names(&expected), "{what}");
    for file in &expected {
        let name = file.file_name().unwrap();
        let a = std::fs::read(file).unwrap();
        let b = std::fs::read(out.join(name)).unwrap();
        assert!(
            a == b,
            "{what}: {} differs from the single-process run's",
            name.to_string_lossy()
        );
    }
    let counts = |dir: &Path| {
        let mut s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        let o = s.as_object_mut().unwrap();
        for volatile in [
            "wall_seconds",
            "events_per_second",
            "cpu_seconds",
            "pregenerate_seconds",
            "peak_memory_bytes",
            "workers",
            "processes",
        ] {
            o.remove(volatile);
        }
        s
    };
    assert_eq!(counts(out), counts(reference), "{what}: summary counts");
}

#[test]
fn every_sample_pipeline_gives_identical_outputs_as_2x1_and_2x2_processes() {
    let mut pipelines: Vec<PathBuf> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // Pipelines reading a message queue run until stopped, in one process only.
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.contains("type = \"rabbitmq\"") && !text.contains("type = \"kafka\"")
        })
        .collect();
    pipelines.sort();
    assert!(pipelines.len() >= 5, "{pipelines:?}");
    for pipeline in &pipelines {
        let name = pipeline.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = tempfile::tempdir().unwrap();
        let reference = dir.path().join("1x1");
        assert_ok(
            &run(pipeline, &reference, &["--workers", "1"]),
            &format!("{name} 1x1"),
        );
        for (processes, workers) in [("2", "1"), ("2", "2")] {
            let layout = format!("{processes}x{workers}");
            let out = dir.path().join(&layout);
            let output = run(
                pipeline,
                &out,
                &["--processes", processes, "--local", "--workers", workers],
            );
            assert_ok(&output, &format!("{name} {layout}"));
            assert_same_outputs(&reference, &out, &format!("{name} at {layout}"));
            assert!(
                !out.join(".eventflow/commits.log").exists()
                    || std::fs::read_to_string(out.join(".eventflow/commits.log"))
                        .unwrap()
                        .contains("\"complete\":true"),
                "{name} {layout}: the cluster run completes its recovery log"
            );
        }
    }
}

#[test]
fn late_and_malformed_records_over_many_chunks_match_one_process() {
    // ~16 MiB: 16 chunks spread over every worker of every process; a tight lateness bound
    // makes many records late, decided by file order across processes.
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 200_000, 7, 0.01);
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("max_lateness = \"5s\"", "max_lateness = \"1s\"");
    std::fs::write(&pipeline, text).unwrap();
    let reference = dir.path().join("1x1");
    assert_ok(&run(&pipeline, &reference, &["--workers", "1"]), "1x1");
    let dead = std::fs::read_to_string(reference.join("dead_letters.jsonl")).unwrap();
    assert!(dead.matches("\"late\"").count() > 1000, "few late records");
    assert!(dead.contains("\"malformed\""), "no malformed records");
    for (processes, workers) in [("2", "2"), ("3", "1")] {
        let layout = format!("{processes}x{workers}");
        let out = dir.path().join(&layout);
        let output = run(
            &pipeline,
            &out,
            &["--processes", processes, "--local", "--workers", workers],
        );
        assert_ok(&output, &layout);
        assert_same_outputs(&reference, &out, &layout);
    }
}

fn hostfile(dir: &Path, processes: usize) -> PathBuf {
    let ports: Vec<u16> = {
        let listeners: Vec<_> = (0..processes)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    };
    let path = dir.join("hosts");
    let text: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts process `i` of 2, with one worker.
fn start(file: &Path, out: &Path, hosts: &Path, i: usize, extra: &[&str]) -> Child {
    start_with(file, out, hosts, i, "1", extra)
}

/// Starts process `i` of 2, with `workers` workers.
fn start_with(
    file: &Path,
    out: &Path,
    hosts: &Path,
    i: usize,
    workers: &str,
    extra: &[&str],
) -> Child {
    Command::new(bin())
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(out)
        .args([
            "--quiet",
            "--workers",
            workers,
            "--processes",
            "2",
            "--hostfile",
        ])
        .arg(hosts)
        .args(["--process", &i.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("eventflow starts")
}

/// Waits at most `limit` for `child`; returns its exit code (`None`: killed by a signal) and
/// stderr, or panics if it is still running.
fn wait_within(mut child: Child, limit: Duration, what: &str) -> (Option<i32>, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn killing_one_process_stops_the_other_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("orders.csv");
    // Big enough that the run is still going when the kill comes (~300 MB, a few seconds).
    let made = Command::new(bin())
        .args(["generate", "orders", "--events", "4000000", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert_ok(&made, "generate");
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let out = dir.path().join("out");
    let hosts = hostfile(dir.path(), 2);
    let commits = ["--commit-interval", "100ms"];
    let p0 = start(&pipeline, &out, &hosts, 0, &commits);
    let p1 = start(&pipeline, &out, &hosts, 1, &commits);
    // Process 0 creates its output files once both processes agreed to start.
    let started = Instant::now();
    while !out.join("revenue_updates.csv").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the cluster never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Stopped, process 1 can no longer let the run finish; then it dies.
    signal(&p1, "-STOP");
    signal(&p1, "-KILL");
    let killed = Instant::now();
    let (code, err) = wait_within(
        p0,
        Duration::from_secs(10),
        "process 0 after process 1 died",
    );
    assert!(
        code.is_some_and(|c| c != 0),
        "process 0 exits non-zero: {code:?}\n{err}"
    );
    assert!(err.contains("lost the connection"), "{err}");
    eprintln!("process 0 exited {:?} after the kill", killed.elapsed());
    let _ = wait_within(p1, Duration::from_secs(10), "the killed process");
    assert!(
        !out.join(".eventflow/commits.log").exists()
            || !std::fs::read_to_string(out.join(".eventflow/commits.log"))
                .unwrap()
                .contains("complete"),
        "the killed run is unfinished"
    );

    // The same cluster command resumes it; the outputs equal a single process's.
    let hosts = hostfile(dir.path(), 2);
    let p0 = start(&pipeline, &out, &hosts, 0, &["--resume"]);
    let p1 = start(&pipeline, &out, &hosts, 1, &["--resume"]);
    let (c0, e0) = wait_within(p0, Duration::from_secs(240), "resumed process 0");
    let (c1, e1) = wait_within(p1, Duration::from_secs(240), "resumed process 1");
    assert_eq!((c0, c1), (Some(0), Some(0)), "{e0}\n{e1}");
    assert!(e0.contains("resuming run"), "{e0}");
    let reference = dir.path().join("reference");
    assert_ok(
        &run(&pipeline, &reference, &["--workers", "2", "--no-commit"]),
        "reference",
    );
    assert_same_outputs(&reference, &out, "resumed cluster run");
}

#[test]
fn killing_a_child_of_a_local_cluster_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("orders.csv");
    let made = Command::new(bin())
        .args(["generate", "orders", "--events", "3000000", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert_ok(&made, "generate");
    let pipeline = orders_revenue_pipeline(dir.path(), &data);
    let out = dir.path().join("out");
    let parent = Command::new(bin())
        .arg("run")
        .arg(&pipeline)
        .arg("--out")
        .arg(&out)
        .args(["--quiet", "--workers", "1", "--processes", "2", "--local"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("revenue_updates.csv").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.id())).unwrap();
    let pids: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "{children}");
    for sig in ["-STOP", "-KILL"] {
        assert!(Command::new("kill")
            .args([sig, pids[1]])
            .status()
            .unwrap()
            .success());
    }
    let (code, err) = wait_within(parent, Duration::from_secs(10), "the local cluster");
    assert_eq!(
        code,
        Some(137),
        "the killed child's status (128 + 9)\n{err}"
    );
    assert!(err.contains("process 1 exited with status 137"), "{err}");
}

#[test]
fn processes_with_different_inputs_or_pipelines_refuse_to_start() {
    // The same pipeline text in two folders, each reading its own `orders.csv`; process 1's
    // copy has one byte changed.
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().join("here");
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(&other_dir).unwrap();
    let data = generate_orders(&here, 2_000, 1, 0.0);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'1' { b'2' } else { b'1' };
    std::fs::write(other_dir.join("orders.csv"), bytes).unwrap();
    let text = std::fs::read_to_string(root().join("pipelines/orders_revenue.toml"))
        .unwrap()
        .replace("\"../data/orders.csv\"", "\"orders.csv\"");
    let pipeline = here.join("p.toml");
    let other_pipeline = other_dir.join("p.toml");
    std::fs::write(&pipeline, &text).unwrap();
    std::fs::write(&other_pipeline, &text).unwrap();
    let out = dir.path().join("out");
    let hosts = hostfile(dir.path(), 2);
    let p0 = start(&pipeline, &out, &hosts, 0, &[]);
    let p1 = start(&other_pipeline, &out, &hosts, 1, &[]);
    let (c0, e0) = wait_within(p0, Duration::from_secs(60), "process 0");
    let (c1, e1) = wait_within(p1, Duration::from_secs(60), "process 1");
    assert_eq!((c0, c1), (Some(1), Some(1)), "{e0}\n{e1}");
    for err in [&e0, &e1] {
        assert!(
            err.contains("the input of source `orders` differs between process 0 and process 1 (same length, different contents)"),
            "{err}"
        );
    }
    assert!(!out.exists(), "a refused run writes nothing");

    // A different pipeline text (a comment is enough).
    let text = std::fs::read_to_string(&pipeline).unwrap() + "# changed\n";
    std::fs::write(&other_pipeline, text).unwrap();
    let hosts = hostfile(dir.path(), 2);
    let p0 = start(&pipeline, &out, &hosts, 0, &[]);
    let p1 = start(&other_pipeline, &out, &hosts, 1, &[]);
    let (c0, e0) = wait_within(p0, Duration::from_secs(60), "process 0");
    let (c1, e1) = wait_within(p1, Duration::from_secs(60), "process 1");
    assert_eq!((c0, c1), (Some(1), Some(1)), "{e0}\n{e1}");
    assert!(e1.contains("different pipeline files"), "{e1}");
    assert!(!out.exists(), "a refused run writes nothing");

    // Different worker counts are found while connecting.
    let hosts = hostfile(dir.path(), 2);
    let p0 = start_with(&pipeline, &out, &hosts, 0, "1", &[]);
    let p1 = start_with(&pipeline, &out, &hosts, 1, "2", &[]);
    let (c0, e0) = wait_within(p0, Duration::from_secs(60), "process 0");
    let (c1, e1) = wait_within(p1, Duration::from_secs(60), "process 1");
    assert_eq!((c0, c1), (Some(1), Some(1)), "{e0}\n{e1}");
    assert!(e0.contains("give every process the same"), "{e0}");
    assert!(e1.contains("runs another layout"), "{e1}");
    assert!(!out.exists(), "a refused run writes nothing");

    // Process 0 refusing (nothing to --resume) stops process 1 too.
    let hosts = hostfile(dir.path(), 2);
    let p0 = start(&pipeline, &out, &hosts, 0, &["--resume"]);
    let p1 = start(&pipeline, &out, &hosts, 1, &["--resume"]);
    let (c0, e0) = wait_within(p0, Duration::from_secs(60), "process 0");
    let (c1, e1) = wait_within(p1, Duration::from_secs(60), "process 1");
    assert_eq!((c0, c1), (Some(1), Some(1)), "{e0}\n{e1}");
    assert!(e0.contains("cannot resume"), "{e0}");
    assert!(e1.contains("process 0 refused to start"), "{e1}");
}

#[test]
fn cluster_flags_are_checked() {
    let pipeline = root().join("pipelines/orders_revenue.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = run(&pipeline, &dir.path().join("out"), &["--processes", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --process I and --hostfile"), "{err}");
    let hosts = hostfile(dir.path(), 1);
    let out = Command::new(bin())
        .arg("run")
        .arg(&pipeline)
        .args(["--processes", "2", "--process", "0", "--hostfile"])
        .arg(&hosts)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lists 1 address"), "{err}");
}
