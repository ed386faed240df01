#!/usr/bin/env bash
# Build the Spin artifact: the intake component composed (wac plug) with the
# REST adapter, so the result imports only standard WASI and
# wasi:config/store (Spin's variables). Also builds, for runtimes without Spin
# variables (plain `wasmtime serve`), the same artifact with the
# configuration-from-environment component plugged in.
# Prints the path of the Spin artifact; both are copied to dist/:
#   dist/bandvote-intake-spin.wasm      spin.toml, SpinKube
#   dist/bandvote-intake-wasmtime.wasm  wasmtime serve -S cli=y --env KAFKA_REST_URL=…
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
log "building the intake, the REST adapter and config-from-env (wasm32-wasip2)"
cargo build --quiet -p bandvote-intake -p bandvote-rest-adapter -p bandvote-config-from-env --target wasm32-wasip2 --profile wasm
out="$CARGO_TARGET_DIR/wasm32-wasip2/wasm"
wac plug "$out/bandvote_intake.wasm" --plug "$out/bandvote_rest_adapter.wasm" -o "$out/bandvote_intake_spin.wasm"
wac plug "$out/bandvote_intake_spin.wasm" --plug "$out/bandvote_config_from_env.wasm" -o "$out/bandvote_intake_wasmtime.wasm"
mkdir -p dist
cp "$out/bandvote_intake_spin.wasm" dist/bandvote-intake-spin.wasm
cp "$out/bandvote_intake_wasmtime.wasm" dist/bandvote-intake-wasmtime.wasm
echo "$out/bandvote_intake_spin.wasm"
