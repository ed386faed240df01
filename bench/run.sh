#!/usr/bin/env bash
# The benchmark command: writes bench/results.json and bench/results.md.
# Runs on its own fresh services (own ports and data) so figures do not depend
# on what the demo or the tests left in the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
export BANDVOTE_STATE="${BANDVOTE_BENCH_STATE:-${BANDVOTE_CACHE:-$HOME/.cache/bandvote}/bench-state}"
export BANDVOTE_KAFKA_PORT="${BANDVOTE_BENCH_KAFKA_PORT:-29092}"
export BANDVOTE_REDIS_PORT="${BANDVOTE_BENCH_REDIS_PORT:-26379}"
export BANDVOTE_MONGO_PORT="${BANDVOTE_BENCH_MONGO_PORT:-27018}"
source scripts/lib.sh
bash scripts/services.sh stop >/dev/null 2>&1 || true
rm -rf "$STATE/kafka" "$STATE/redis" "$STATE/mongo"
exec python3 bench/run.py "$@"
