#!/usr/bin/env bash
# Installs, starts or stops a local Kafka-compatible broker (nisshi 0.8.1, in-memory storage) on
# 127.0.0.1:9092 for the Kafka tests (`cargo test --release --features kafka`).
#   scripts/kafka.sh install              cargo install nisshi 0.8.1 (about 20 min), if missing
#   scripts/kafka.sh start                start it in the background, wait for port 9092
#   scripts/kafka.sh stop                 stop the broker this script started
#   scripts/kafka.sh status               exit 0 if port 9092 answers
#   scripts/kafka.sh bounce [SECONDS]     stop, wait SECONDS (default 2), start again
#   scripts/kafka.sh create-topic NAME [PARTITIONS]   create a topic (default 2 partitions)
# The broker keeps topics and messages in memory: a restart loses them (Apache Kafka cannot be
# installed here; nisshi's persistent engines need PostgreSQL, SQLite or S3 builds).
# The tests find it at EVENTFLOW_KAFKA_BROKERS (e.g. 127.0.0.1:9092).
set -euo pipefail

PORT=9092
STATE=${EVENTFLOW_KAFKA_STATE:-${TMPDIR:-/tmp}/eventflow-kafka}
PIDFILE=$STATE/nisshi.pid
LOG=$STATE/nisshi.log

nisshi_bin() {
  if command -v nisshi >/dev/null 2>&1; then
    command -v nisshi
  else
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/nisshi"
  fi
}

port_open() { (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; }

start() {
  if port_open; then
    echo "kafka: a broker already answers on 127.0.0.1:$PORT"
    return 0
  fi
  local bin
  bin=$(nisshi_bin)
  [ -x "$bin" ] || { echo "kafka: nisshi not installed (scripts/kafka.sh install)" >&2; exit 1; }
  mkdir -p "$STATE/run"
  # From an empty folder: nisshi reads a `.env` in its working directory.
  (
    cd "$STATE/run"
    nohup "$bin" broker \
      --kafka-listener-url "tcp://127.0.0.1:$PORT" \
      --kafka-advertised-listener-url "tcp://127.0.0.1:$PORT" \
      --storage-engine "memory://nisshi/" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  )
  for _ in $(seq 1 120); do
    port_open && { echo "kafka: nisshi running on 127.0.0.1:$PORT (log $LOG)"; return 0; }
    sleep 0.5
  done
  echo "kafka: port $PORT did not open within 60 s; see $LOG" >&2
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    local pid
    pid=$(cat "$PIDFILE")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  install)
    if [ ! -x "$(nisshi_bin)" ]; then
      cargo install nisshi --version 0.8.1 --locked --ignore-rust-version \
        --no-default-features --features dynostore
    fi
    ;;
  start) start ;;
  stop) stop ;;
  status) port_open ;;
  bounce)
    stop
    sleep "${2:-2}"
    start
    ;;
  create-topic)
    [ -n "${2:-}" ] || { echo "usage: $0 create-topic NAME [PARTITIONS]" >&2; exit 2; }
    "$(nisshi_bin)" topic create "$2" --partitions "${3:-2}" --broker "tcp://127.0.0.1:$PORT"
    ;;
  *)
    echo "usage: $0 install|start|stop|status|bounce [SECONDS]|create-topic NAME [PARTITIONS]" >&2
    exit 2
    ;;
esac
