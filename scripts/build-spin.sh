#!/usr/bin/env bash
# Build the Spin artifact: the intake component composed (wac plug) with the
# REST adapter, so the result imports only standard WASI interfaces.
# Prints the path of the composed component (also copied to dist/ for spin.toml).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
log "building the intake and the REST adapter (wasm32-wasip2)"
cargo build --quiet -p bandvote-intake -p bandvote-rest-adapter --target wasm32-wasip2 --profile wasm
out="$CARGO_TARGET_DIR/wasm32-wasip2/wasm"
wac plug "$out/bandvote_intake.wasm" --plug "$out/bandvote_rest_adapter.wasm" -o "$out/bandvote_intake_spin.wasm"
mkdir -p dist
cp "$out/bandvote_intake_spin.wasm" dist/bandvote-intake-spin.wasm
echo "$out/bandvote_intake_spin.wasm"
