#!/usr/bin/env bash
# Build the intake component for wasm32-wasip2 (profile `wasm`: size-optimised, LTO)
# and print its path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
log "building the intake component (wasm32-wasip2)"
cargo build --quiet -p bandvote-intake --target wasm32-wasip2 --profile wasm
echo "$CARGO_TARGET_DIR/wasm32-wasip2/wasm/bandvote_intake.wasm"
