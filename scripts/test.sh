#!/usr/bin/env bash
# The one test command: installs what is missing (cached), starts the real
# services on loopback, builds the component, and runs every test.
# Idempotent: a second run reuses the cached tool builds; the test services are
# restarted with empty data each run.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests get their own services (own ports, own data), fresh each run: the demo's
# data is never touched, and tansu stays fast (it slows down as the topics and
# consumer groups that tests create pile up).
export BANDVOTE_STATE="${BANDVOTE_TEST_STATE:-${BANDVOTE_CACHE:-$HOME/.cache/bandvote}/test-state}"
export BANDVOTE_KAFKA_PORT="${BANDVOTE_TEST_KAFKA_PORT:-19092}"
export BANDVOTE_REDIS_PORT="${BANDVOTE_TEST_REDIS_PORT:-16379}"
export BANDVOTE_MONGO_PORT="${BANDVOTE_TEST_MONGO_PORT:-17017}"
source scripts/lib.sh

bash scripts/setup.sh
BANDVOTE_INTAKE_WASM=$(bash scripts/build-wasm.sh)
export BANDVOTE_INTAKE_WASM
BANDVOTE_SPIN_WASM=$(bash scripts/build-spin.sh)
export BANDVOTE_SPIN_WASM
bash scripts/services.sh stop
rm -rf "$STATE/kafka" "$STATE/redis" "$STATE/mongo"
bash scripts/services.sh start

log "cargo test (all native crates; the component is exercised through the host tests)"
cargo test --no-fail-fast

log "pytest: Python grpcio client, Kubernetes manifests and Dockerfiles"
"$CACHE/venv/bin/pytest" -q tests/python k8s/tests
log "browser test: Chromium + playwright-core against the live pipeline"
(cd tests/browser && node --test live.test.mjs)
log "all tests passed (test services left running on ports $KAFKA_PORT, $REDIS_PORT, $MONGO_PORT; BANDVOTE_STATE=$STATE scripts/services.sh stop)"
