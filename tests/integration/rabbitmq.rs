//! RabbitMQ source and sink against a real broker: outputs equal to the file pipeline's, a run
//! killed with SIGKILL and resumed, idle sources, broker restarts.
//!
//! The broker is found at `EVENTFLOW_AMQP_URL` (default amqp://guest:guest@127.0.0.1:5672/%2f;
//! `scripts/rabbitmq.sh start` starts one). Without a broker these tests print a notice and
//! pass, unless `CI` is set (then they fail); `EVENTFLOW_AMQP_URL=none` skips them on purpose.

use super::support::{
    assert_same_revenue, bin, generate_orders, kill_mid_stream, notice, orders_revenue_pipeline,
    reference, root, run_to_end, start_run as start, summary, unique_name, wait_for_commits,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Broker tests run one at a time: one of them restarts the broker.
static BROKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the broker for one test.
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    BROKER.lock().unwrap_or_else(|e| e.into_inner())
}

/// The broker URL, or `None` (with a notice) when there is no broker to test against.
fn broker(test: &str) -> Option<String> {
    let url = std::env::var("EVENTFLOW_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    if url == "none" || url == "off" {
        notice(&format!("{test} skipped: EVENTFLOW_AMQP_URL={url}"));
        return None;
    }
    let reachable = futures_lite::future::block_on(lapin::Connection::connect(
        &url,
        lapin::ConnectionProperties::default(),
    ))
    .is_ok();
    if reachable {
        return Some(url);
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("EVENTFLOW_AMQP_URL").is_some() {
        panic!("{test}: no RabbitMQ broker at {url} (start one with `scripts/rabbitmq.sh start`)");
    }
    notice(&format!(
        "{test} skipped: no RabbitMQ broker at {url} (`scripts/rabbitmq.sh start` starts one)"
    ));
    None
}

/// A queue name no other test (or earlier run) uses.
fn queue(test: &str) -> String {
    unique_name(test)
}

/// Messages waiting in `queue` (ready, not delivered).
fn queue_len(url: &str, queue: &str) -> u32 {
    futures_lite::future::block_on(async {
        let c = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let ch = c.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = c.close(200, "bye").await;
        q.message_count()
    })
}

fn delete_queue(url: &str, queue: &str) {
    futures_lite::future::block_on(async {
        if let Ok(c) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
        {
            if let Ok(ch) = c.create_channel().await {
                let _ = ch.queue_delete(queue, QueueDeleteOptions::default()).await;
            }
            let _ = c.close(200, "bye").await;
        }
    });
}

fn publish(url: &str, file: &Path, queue: &str) {
    let out = Command::new(bin())
        .args([
            "publish",
            file.to_str().unwrap(),
            "--queue",
            queue,
            "--to",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sample rabbitmq pipeline reading `queue` (and nothing idle-related).
fn rabbit_pipeline(dir: &Path, queue: &str, url: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("pipelines/orders_from_rabbitmq.toml")).unwrap();
    let text = text
        .replace(
            "queue = \"orders\"",
            &format!("queue = \"{queue}\"\nurl = \"{url}\""),
        )
        .replace("idle_timeout = \"10s\"\n", "");
    let path = dir.join("orders_from_rabbitmq.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn rabbitmq_source_gives_the_file_pipelines_outputs_and_empties_the_queue() {
    let _broker = exclusive();
    let Some(url) = broker("rabbitmq_source_gives_the_file_pipelines_outputs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 5_000, 7, 0.01);
    let reference = reference(dir.path(), &data);
    for workers in ["1", "2"] {
        let q = queue(&format!("same-{workers}"));
        publish(&url, &data, &q);
        let pipeline = rabbit_pipeline(dir.path(), &q, &url);
        let out = dir.path().join(format!("rabbit-{workers}"));
        run_to_end(&pipeline, &out, workers, &["--stop-when-idle", "1s"]);
        assert_same_revenue(&reference, &out);
        let s = summary(&out);
        let r = summary(&reference);
        for k in [
            "records_read",
            "records_emitted",
            "records_filtered",
            "records_dead_lettered",
        ] {
            assert_eq!(s[k], r[k], "{k}");
        }
        let m = &s["sources"][0]["messages"];
        assert_eq!(m["consumed"], 5_000, "{m}");
        assert_eq!(m["acknowledged"], 5_000, "{m}");
        assert_eq!(m["in_flight"], 0, "{m}");
        assert_eq!(queue_len(&url, &q), 0, "every message acknowledged");
        delete_queue(&url, &q);
    }
}

#[test]
fn rabbitmq_run_killed_mid_stream_resumes_without_loss_or_double_counting() {
    let _broker = exclusive();
    let Some(url) = broker("rabbitmq_run_killed_mid_stream_resumes") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let events = 60_000;
    let data = generate_orders(dir.path(), events, 11, 0.0);
    let reference = reference(dir.path(), &data);
    let q = queue("kill");
    publish(&url, &data, &q);
    let pipeline = rabbit_pipeline(dir.path(), &q, &url);
    let out = dir.path().join("rabbit");
    let args = ["--commit-interval", "50ms", "--stop-when-idle", "2s"];
    kill_mid_stream(start(&pipeline, &out, &args), &out);
    let left = queue_len(&url, &q);
    assert!(
        left > 0 && left < events as u32,
        "killed mid-stream ({left} left)"
    );
    let stderr = run_to_end(&pipeline, &out, "2", &args);
    assert!(stderr.contains("resuming run"), "{stderr}");
    assert_same_revenue(&reference, &out);
    let s = summary(&out);
    assert_eq!(
        s["records_read"], events,
        "no message lost or counted twice"
    );
    assert_eq!(s["records_read"], summary(&reference)["records_read"]);
    assert_eq!(queue_len(&url, &q), 0, "the queue is empty at the end");
    delete_queue(&url, &q);
}

/// Publishes JSON bodies to `queue`.
fn send_json(url: &str, queue: &str, bodies: &[String]) {
    futures_lite::future::block_on(async {
        let c = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let ch = c.create_channel().await.unwrap();
        ch.queue_declare(
            queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        for b in bodies {
            ch.basic_publish(
                "",
                queue,
                Default::default(),
                b.as_bytes(),
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap();
        }
        let _ = c.close(200, "bye").await;
    });
}

fn event(minute: u32, second: u32, key: &str) -> String {
    format!("{{\"ts\":\"2024-01-01T00:{minute:02}:{second:02}Z\",\"key\":\"{key}\"}}")
}

/// Two live sources; `quiet` gets one early event and then nothing. With `idle_timeout` on
/// it, the busy source's windows close and are written while the run goes on; and a late
/// event on the idle source is dead-lettered as late, saying the source was idle; the
/// snapshot sink is rewritten while the run goes on.
#[test]
fn an_idle_source_does_not_hold_back_the_others_windows() {
    let _broker = exclusive();
    let Some(url) = broker("an_idle_source_does_not_hold_back") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (busy, quiet) = (queue("busy"), queue("quiet"));
    let pipeline = dir.path().join("idle.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
name = "idle"
tick = "1m"

[sources.busy]
type = "rabbitmq"
url = "{url}"
queue = "{busy}"
schema = {{ ts = "timestamp", key = "string" }}
event_time = "ts"
idle_timeout = "1s"

[sources.quiet]
type = "rabbitmq"
url = "{url}"
queue = "{quiet}"
schema = {{ ts = "timestamp", key = "string" }}
event_time = "ts"
idle_timeout = "1s"

[transforms.both]
type = "union"
inputs = ["busy", "quiet"]

[transforms.counts]
type = "aggregate"
input = "both"
group_by = ["key"]
window = {{ type = "tumbling", size = "1m" }}
aggregates = {{ n = "count(*)" }}

[sinks.counts_out]
type = "csv"
input = "counts"
path = "counts.csv"

[sinks.counts_now]
type = "csv"
input = "counts"
path = "counts_now.csv"
mode = "snapshot"
"#
        ),
    )
    .unwrap();
    send_json(&url, &quiet, &[event(0, 10, "q")]);
    let out = dir.path().join("out");
    let mut child = start(&pipeline, &out, &["--commit-interval", "100ms"]);
    // The busy source keeps sending, one event a second, minute after minute.
    let t = Instant::now();
    let mut minute = 0;
    let mut seen = false;
    while t.elapsed() < Duration::from_secs(40) {
        send_json(&url, &busy, &[event(minute, 30, "b")]);
        minute += 1;
        std::thread::sleep(Duration::from_millis(300));
        let written = std::fs::read_to_string(out.join("counts.csv")).unwrap_or_default();
        if written.contains("2024-01-01T00:02:00") {
            seen = true;
            break;
        }
    }
    // A live run's snapshot is rewritten as ticks complete, not only at the end.
    let snapshot_while_running = std::fs::read_to_string(out.join("counts_now.csv"))
        .unwrap_or_default()
        .lines()
        .count();
    // Now a late event on the idle source: its watermark moved on with the busy one.
    send_json(&url, &quiet, &[event(0, 20, "late")]);
    std::thread::sleep(Duration::from_millis(1500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        seen,
        "the busy source's windows were not written while the quiet one was idle: {stderr}"
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        snapshot_while_running > 1,
        "the snapshot was written while the run went on"
    );
    let dead = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
    assert!(
        dead.contains("\"late\"") && dead.contains("idle"),
        "the late event on the idle source is dead-lettered: {dead}"
    );
    delete_queue(&url, &busy);
    delete_queue(&url, &quiet);
}

/// A rabbitmq sink publishes every update once, as JSON with a stable message id.
#[test]
fn rabbitmq_sink_publishes_each_update_with_a_stable_id() {
    let _broker = exclusive();
    let Some(url) = broker("rabbitmq_sink_publishes_each_update") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = generate_orders(dir.path(), 2_000, 3, 0.0);
    let reference = reference(dir.path(), &data);
    let q = queue("sink");
    let text = std::fs::read_to_string(orders_revenue_pipeline(dir.path(), &data)).unwrap();
    let text = text.replace(
        "[sinks.revenue_snapshot]\ntype = \"csv\"\ninput = \"revenue\"\npath = \"revenue_snapshot.csv\"\nmode = \"snapshot\"",
        &format!("[sinks.revenue_queue]\ntype = \"rabbitmq\"\ninput = \"revenue\"\nurl = \"{url}\"\nqueue = \"{q}\""),
    );
    assert!(text.contains("revenue_queue"));
    let pipeline = dir.path().join("to_queue.toml");
    std::fs::write(&pipeline, text).unwrap();
    let out = dir.path().join("out");
    run_to_end(&pipeline, &out, "2", &[]);
    let expected = std::fs::read_to_string(reference.join("revenue_updates.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let got = futures_lite::future::block_on(async {
        let c = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let ch = c.create_channel().await.unwrap();
        let mut got = Vec::new();
        while let Some(m) = ch
            .basic_get(&q, lapin::options::BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let id = m
                .delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string();
            got.push((id, String::from_utf8(m.delivery.data.clone()).unwrap()));
        }
        let _ = c.close(200, "bye").await;
        got
    });
    assert_eq!(got.len(), expected);
    let ids: std::collections::BTreeSet<_> = got.iter().map(|g| g.0.clone()).collect();
    assert_eq!(ids.len(), got.len(), "ids are unique");
    assert!(
        got[0].0.starts_with("orders_revenue:revenue_queue:"),
        "{}",
        got[0].0
    );
    let first: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    assert!(
        first.get("diff").is_some() && first.get("time").is_some(),
        "{first}"
    );
    delete_queue(&url, &q);
}

/// The broker goes away for a few seconds mid-run: the source reconnects, the broker redelivers
/// what was not acknowledged, and the outputs are still the file pipeline's.
#[test]
fn rabbitmq_broker_restart_mid_run_reconnects_and_finishes_correctly() {
    let _broker = exclusive();
    let Some(url) = broker("rabbitmq_broker_restart_mid_run") else {
        return;
    };
    let script = root().join("scripts/rabbitmq.sh");
    if !Command::new(&script)
        .arg("status")
        .status()
        .is_ok_and(|s| s.success())
    {
        notice("broker restart test skipped: the broker is not the local one `scripts/rabbitmq.sh` controls");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = 60_000;
    let data = generate_orders(dir.path(), events, 13, 0.0);
    let reference = reference(dir.path(), &data);
    let q = queue("bounce");
    publish(&url, &data, &q);
    let pipeline = rabbit_pipeline(dir.path(), &q, &url);
    let out = dir.path().join("rabbit");
    let mut child = start(
        &pipeline,
        &out,
        &["--commit-interval", "50ms", "--stop-when-idle", "4s"],
    );
    wait_for_commits(&mut child, &out, 2);
    let bounced = Command::new(&script)
        .args(["bounce", "2"])
        .status()
        .unwrap();
    assert!(bounced.success());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("reconnecting"),
        "the loss was logged: {stderr}"
    );
    assert_same_revenue(&reference, &out);
    let s = summary(&out);
    assert_eq!(s["records_read"], events, "{s}");
    assert_eq!(queue_len(&url, &q), 0, "the queue is empty at the end");
    delete_queue(&url, &q);
}
