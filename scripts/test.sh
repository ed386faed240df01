#!/usr/bin/env bash
# The one test command: installs what is missing (cached), starts the real
# services on loopback, builds the component, and runs every test.
# Idempotent: a second run reuses cached tool builds and running services.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bash scripts/setup.sh
BANDVOTE_INTAKE_WASM=$(bash scripts/build-wasm.sh)
export BANDVOTE_INTAKE_WASM
BANDVOTE_SPIN_WASM=$(bash scripts/build-spin.sh)
export BANDVOTE_SPIN_WASM
bash scripts/services.sh start

log "cargo test (all native crates; the component is exercised through the host tests)"
cargo test --no-fail-fast

log "pytest: Python grpcio client, Kubernetes manifests and Dockerfiles"
"$CACHE/venv/bin/pytest" -q tests/python k8s/tests
log "browser test: Chromium + playwright-core against the live pipeline"
(cd tests/browser && node --test live.test.mjs)
log "all tests passed (services left running; stop them with scripts/services.sh stop)"
