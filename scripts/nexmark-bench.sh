#!/usr/bin/env bash
# Benchmarks every Nexmark query with `eventflow bench` at 1 and 2 workers (release build,
# events pregenerated). Results: out/bench/nexmark_qN/bench.csv and bench.svg.
#   scripts/nexmark-bench.sh [REPEAT]      (default 3 runs per worker count)
# q3 and q8 read only people and auctions (8% of the events) and finish in well under a second
# at 4M events, where start-up dominates; they run on 100M events instead (8M of them people
# and auctions, generated in a few seconds), the size of Flink's runs. q0-q2 run on 10M:
# at 4M (four 100 ms ticks) the last tick's merge and sync, which only the writer thread can
# do, is a tenth of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-3}
cargo build --release
for q in q0 q1 q2 q3 q4 q5 q6 q7 q8; do
  case $q in
    q3 | q8) events=100000000 ;;
    q0 | q1 | q2) events=10000000 ;;
    *) events=4000000 ;;
  esac
  target/release/eventflow bench "pipelines/nexmark/$q.toml" --events "$events" --workers 1,2 \
    --repeat "$repeat"
done
