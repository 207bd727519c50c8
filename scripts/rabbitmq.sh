#!/usr/bin/env bash
# Starts or stops a local RabbitMQ broker on 127.0.0.1:5672 for the broker tests.
#   scripts/rabbitmq.sh install   apt-get install rabbitmq-server (Debian), if missing
#   scripts/rabbitmq.sh start     start it detached, wait for port 5672, then `rabbitmqctl await_startup`
#   scripts/rabbitmq.sh stop      `rabbitmqctl shutdown`, `epmd -kill`
#   scripts/rabbitmq.sh status    exit 0 if the broker answers
#   scripts/rabbitmq.sh bounce S  stop the broker application for S seconds, then start it again
# The tests find it at EVENTFLOW_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f).
set -euo pipefail

export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-rabbit@localhost}
export ERL_EPMD_ADDRESS=127.0.0.1

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

case "${1:-}" in
  install)
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq rabbitmq-server >/dev/null
      # The package starts a broker through the init system where there is one; stop it so
      # that `start` owns the broker (and its settings above).
      (service rabbitmq-server stop >/dev/null 2>&1 || true)
      (env -u RABBITMQ_NODENAME -u RABBITMQ_NODE_IP_ADDRESS rabbitmqctl -q shutdown >/dev/null 2>&1 || true)
    fi
    ;;
  start)
    if port_open && rabbitmqctl -q await_startup >/dev/null 2>&1; then
      echo "rabbitmq: already running on 127.0.0.1:5672"
      exit 0
    fi
    rabbitmq-server -detached
    for _ in $(seq 1 120); do
      port_open && break
      sleep 0.5
    done
    port_open || { echo "rabbitmq: port 5672 did not open within 60 s" >&2; exit 1; }
    timeout 60 rabbitmqctl -q await_startup
    echo "rabbitmq: running on 127.0.0.1:5672"
    ;;
  stop)
    rabbitmqctl -q shutdown 2>/dev/null || true
    epmd -kill 2>/dev/null || true
    ;;
  bounce)
    # Stops the broker application for ${2:-2} seconds and starts it again (the broker-restart
    # test); the node and its durable queues stay.
    rabbitmqctl -q stop_app
    sleep "${2:-2}"
    rabbitmqctl -q start_app
    timeout 60 rabbitmqctl -q await_startup
    ;;
  status)
    port_open && rabbitmqctl -q await_startup >/dev/null 2>&1
    ;;
  *)
    echo "usage: $0 install|start|stop|status|bounce [SECONDS]" >&2
    exit 2
    ;;
esac
