#!/usr/bin/env python3
"""Publish-to-commit latency of a kafka source, measured by hand (not part of CI).

Creates a topic with PARTITIONS partitions, starts `eventflow run` on a small live pipeline
(JSON messages, tick 100 ms, one updates CSV sink, commits every 50 ms), publishes RATE
messages/s for SECONDS seconds (round-robin over the partitions) whose event time is the
publish time, and watches the run's commit log. A message's latency is the time from its
publish to the first commit whose bound is past its tick (its row is then durable). Every
partition gets a message a tick later at the end, so the last ticks close.

    python3 benches/kafka_latency.py BIN [RATE] [SECONDS] [WORKERS] [PARTITIONS]

Needs `pip install confluent-kafka`, a binary built with `--features kafka`, and the broker of
scripts/kafka.sh (EVENTFLOW_KAFKA_BROKERS, default 127.0.0.1:9092).
"""
import datetime, json, os, signal, subprocess, sys, tempfile, threading, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

binary = sys.argv[1]
rate = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
workers = sys.argv[4] if len(sys.argv) > 4 else "1"
partitions = int(sys.argv[5]) if len(sys.argv) > 5 else 2
brokers = os.environ.get("EVENTFLOW_KAFKA_BROKERS", "127.0.0.1:9092")
topic = f"eventflow-latency-{os.getpid()}-{int(time.time())}"
tick_ms = 100

admin = AdminClient({"bootstrap.servers": brokers})
for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
    f.result()

work = tempfile.mkdtemp()
pipeline = os.path.join(work, "latency.toml")
with open(pipeline, "w") as f:
    f.write(f"""
[pipeline]
name = "latency"
tick = "{tick_ms}ms"

[sources.events]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
schema = {{ id = "int", ts = "timestamp" }}
event_time = "ts"

[sinks.rows]
type = "csv"
input = "events"
""")
out = os.path.join(work, "out")
producer = Producer({"bootstrap.servers": brokers, "linger.ms": 0, "acks": "all"})
run = subprocess.Popen([binary, "run", pipeline, "--quiet", "-w", workers, "--out", out,
                        "--commit-interval", "50ms"])
time.sleep(2.0)

commits = []  # (wall time seen, bound)
stop = False
def watch():
    path = os.path.join(out, ".eventflow", "commits.log")
    seen = 0
    while not stop:
        try:
            with open(path) as f:
                lines = f.read().split("\n")[:-1]
        except FileNotFoundError:
            lines = []
        now = time.time()
        for line in lines[seen:]:
            c = json.loads(line)
            if c.get("sink") == "rows":
                commits.append((now, c["bound"]))
        seen = max(seen, len(lines))
        time.sleep(0.001)
t = threading.Thread(target=watch)
t.start()

def stamp(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

published = []  # (publish wall time, event time ms)
start = time.time()
i = 0
while time.time() - start < seconds:
    due = start + i / rate
    delay = due - time.time()
    if delay > 0:
        time.sleep(delay)
    now = time.time()
    ms = int(now * 1000)
    producer.produce(topic, json.dumps({"id": i, "ts": stamp(ms)}), partition=i % partitions)
    producer.poll(0)
    published.append((now, ms))
    i += 1
producer.flush()
# One more message per partition a tick later closes the last tick.
time.sleep(tick_ms / 1000 * 2)
ms = int(time.time() * 1000)
for p in range(partitions):
    producer.produce(topic, json.dumps({"id": i + p, "ts": stamp(ms)}), partition=p)
producer.flush()
time.sleep(1.0)
run.send_signal(signal.SIGINT)
run.wait()
stop = True
t.join()
admin.delete_topics([topic])

lat = []
for (wall, ms) in published:
    tick = ms // tick_ms * tick_ms
    done = next((w for (w, b) in commits if b is None or b > tick), None)
    if done is not None:
        lat.append((done - wall) * 1000)
lat.sort()
def pct(p):
    return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
print(f"{len(published)} messages at {rate}/s over {seconds}s, {partitions} partitions, "
      f"{workers} worker(s), tick {tick_ms} ms, commit interval 50 ms: {len(lat)} committed; "
      f"publish->commit latency p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms, max {lat[-1]:.0f} ms")
