#!/usr/bin/python3
"""Publish-to-commit latency of a rabbitmq source, measured by hand (not part of CI).

Starts `eventflow run` on a small live pipeline (JSON messages, tick 100 ms, one updates CSV
sink, commits every 50 ms), publishes RATE messages/s for SECONDS seconds whose event time is
the publish time, and watches the run's commit log. A message's latency is the time from its
publish to the first commit whose bound is past its tick (its row is then durable).

    /usr/bin/python3 benches/rabbitmq_latency.py BIN [RATE] [SECONDS] [WORKERS]

Needs python3-pika (Debian) and the broker of scripts/rabbitmq.sh.
"""
import datetime, json, os, signal, subprocess, sys, tempfile, threading, time
import pika

binary = sys.argv[1]
rate = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
workers = sys.argv[4] if len(sys.argv) > 4 else "1"
url = os.environ.get("EVENTFLOW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
queue = f"eventflow-latency-{os.getpid()}"
tick_ms = 100

work = tempfile.mkdtemp()
pipeline = os.path.join(work, "latency.toml")
with open(pipeline, "w") as f:
    f.write(f"""
[pipeline]
name = "latency"
tick = "{tick_ms}ms"

[sources.events]
type = "rabbitmq"
url = "{url}"
queue = "{queue}"
schema = {{ id = "int", ts = "timestamp" }}
event_time = "ts"

[sinks.rows]
type = "csv"
input = "events"
""")
out = os.path.join(work, "out")
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.queue_declare(queue, durable=True)
run = subprocess.Popen([binary, "run", pipeline, "--quiet", "-w", workers, "--out", out,
                        "--commit-interval", "50ms"])
time.sleep(1.0)

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
    ts = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    ch.basic_publish("", queue, json.dumps({"id": i, "ts": ts}),
                     pika.BasicProperties(message_id=str(i), delivery_mode=2))
    published.append((now, ms))
    i += 1
# One more message a tick later closes the last tick.
time.sleep(tick_ms / 1000 * 2)
ms = int(time.time() * 1000)
ts = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
ch.basic_publish("", queue, json.dumps({"id": i, "ts": ts}), pika.BasicProperties(delivery_mode=2))
time.sleep(1.0)
run.send_signal(signal.SIGINT)
run.wait()
stop = True
t.join()
ch.queue_delete(queue)
conn.close()

lat = []
for (wall, ms) in published:
    tick = ms // tick_ms * tick_ms
    done = next((w for (w, b) in commits if b is None or b > tick), None)
    if done is not None:
        lat.append((done - wall) * 1000)
lat.sort()
def pct(p):
    return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
print(f"{len(published)} messages at {rate}/s over {seconds}s, {workers} worker(s), tick {tick_ms} ms, "
      f"commit interval 50 ms: {len(lat)} committed; publish->commit latency "
      f"p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms, max {lat[-1]:.0f} ms")
