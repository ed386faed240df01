#!/usr/bin/env bash
# Build the intake component for wasm32-wasip2 (profile `wasm`: opt-level 3, LTO, stripped)
# and print its path. BANDVOTE_WASM_PROFILE=wasm-profiling keeps the function
# names for profiles (README, "Profiling the host").
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
log "building the intake component (wasm32-wasip2; cold about 1 min on 2 cores)"
PROFILE="${BANDVOTE_WASM_PROFILE:-wasm}"
cargo build --quiet -p bandvote-intake --target wasm32-wasip2 --profile "$PROFILE"
echo "$CARGO_TARGET_DIR/wasm32-wasip2/$PROFILE/bandvote_intake.wasm"
