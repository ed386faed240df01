# Shared shell helpers for bandvote scripts. Sourced, not run.
CACHE="${BANDVOTE_CACHE:-$HOME/.cache/bandvote}"
TOOLS="$CACHE/tools"
STATE="${BANDVOTE_STATE:-$CACHE/state}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export PATH="$TOOLS/bin:$HOME/.cargo/bin:$PATH"
log() { printf '[bandvote %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
