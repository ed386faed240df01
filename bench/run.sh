#!/usr/bin/env bash
# The benchmark command: writes bench/results.json and bench/results.md.
# Runs on its own fresh services (own ports and data) so figures do not depend
# on what the demo or the tests left in the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
use_fresh_services bench 29092 26379 27018
# --brokers-only: only the nisshi storage-engine comparison (bench/brokers.md).
if [ "${1:-}" = --brokers-only ]; then shift; BROKERS_ONLY=1; fi
bash scripts/setup.sh bench
bash scripts/build-wasm.sh >/dev/null
log "building release binaries and the soak test"
# The demo's package set: one feature unification, so the two share their builds.
cargo build --release --quiet -p bandvote-host -p bandvote-grpc -p bandvote-consumer -p bandvote-load -p bandvote-web
BANDVOTE_INTAKE_WASM=$(bash scripts/build-wasm.sh); export BANDVOTE_INTAKE_WASM
bash scripts/services.sh start redis mongo
# The broker comparison takes ~10 min; BANDVOTE_BENCH_BROKERS=0 keeps the last bench/brokers.json.
[ "${BANDVOTE_BENCH_BROKERS:-1}" = 0 ] || python3 bench/brokers.py
[ "${BROKERS_ONLY:-0}" = 1 ] && exit 0
bash scripts/services.sh stop kafka
rm -rf "$STATE/kafka"
exec python3 bench/run.py "$@"
