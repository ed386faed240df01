#!/usr/bin/env bash
# The one test command: installs what is missing (cached), starts the real
# services on loopback, builds the component, and runs every test.
# Idempotent: a second run reuses the cached tool builds; the test services are
# restarted with empty data each run.
set -euo pipefail
cd "$(dirname "$0")/.."
# The host tests hold thousands of sockets at once (2,000 silent connections, 600 tricklers).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source scripts/lib.sh
# Tests get their own services (ports 19092/16379/17017), emptied at each run.
use_fresh_services test 19092 16379 17017

bash scripts/setup.sh test packages
# The tools build (after a cold demo: 20 min, 2026-12-07; README, "The two commands")
# while this script builds the component and the tests: two builds side by
# side keep both cores busy.
start_tools test
BANDVOTE_INTAKE_WASM=$(bash scripts/build-wasm.sh)
export BANDVOTE_INTAKE_WASM
# The tests build in the `demo` profile (release at opt-level 1): after
# scripts/demo.sh only what the tests add is compiled (the demo's binaries and
# nearly all their dependencies are reused), and the service tests run the
# binaries the demo runs.
log "building the tests (profile demo; after a demo about 5 min on 2 cores beside the tools, on a fresh machine longer)"
cargo test --profile demo --no-run
# Where the Python and browser tests find the workspace's binaries.
export BANDVOTE_BIN_DIR="$CARGO_TARGET_DIR/demo"
log "waiting for the tool builds (logs under $CACHE/logs)"
wait_tools
log "unused dependencies (cargo machete)"
"$TOOLS/bin/cargo-machete" --with-metadata . >/dev/null || { "$TOOLS/bin/cargo-machete" --with-metadata .; die "unused dependencies: remove them (or list generated-code users under [package.metadata.cargo-machete])"; }
BANDVOTE_SPIN_WASM=$(bash scripts/build-spin.sh)
export BANDVOTE_SPIN_WASM
# The same, with configuration from the environment, for plain `wasmtime serve`.
export BANDVOTE_WASMTIME_SERVE_WASM="${BANDVOTE_SPIN_WASM%_spin.wasm}_wasmtime.wasm"
# The runtimes the Spin artifact is tested on: the wasmtime SpinKube's shim
# embeds (containerd-shim-spin v0.24 / Spin 3.6.3) and the newest Spin's (4.0.2; both from setup.sh).
export BANDVOTE_SPIN_RUNTIMES="42.0.2=$TOOLS/wasmtime-42.0.2/bin/wasmtime 44.0.0=$TOOLS/bin/wasmtime"
bash scripts/services.sh start

log "cargo test (all native crates, profile demo; the component is exercised through the host tests)"
cargo test --profile demo --no-fail-fast

log "pytest: Python grpcio client, Kubernetes manifests and Dockerfiles"
"$CACHE/venv/bin/pytest" -q tests/python k8s/tests
log "browser tests: Chromium + playwright-core against the live pipeline (results page; ballot with receipts and axe-core)"
(cd tests/browser && node --test live.test.mjs ballot.test.mjs)
log "all tests passed (test services left running on ports $KAFKA_PORT, $REDIS_PORT, $MONGO_PORT; BANDVOTE_STATE=$STATE scripts/services.sh stop)"
