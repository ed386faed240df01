# Shared shell helpers for bandvote scripts. Sourced, not run.
CACHE="${BANDVOTE_CACHE:-$HOME/.cache/bandvote}"
TOOLS="$CACHE/tools"
STATE="${BANDVOTE_STATE:-$CACHE/state}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export PATH="$TOOLS/bin:$HOME/.cargo/bin:$PATH"
log() { printf '[bandvote %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
LOGS="$STATE/logs"
KAFKA_PORT="${BANDVOTE_KAFKA_PORT:-9092}"
REDIS_PORT="${BANDVOTE_REDIS_PORT:-6379}"
MONGO_PORT="${BANDVOTE_MONGO_PORT:-27017}"
# The broker's storage engine, chosen by measurement (ARCHITECTURE.md): sqlite or postgres.
KAFKA_STORAGE="${BANDVOTE_KAFKA_STORAGE:-sqlite}"
PG_PORT="${BANDVOTE_PG_PORT:-$((KAFKA_PORT - 3000))}"
export BANDVOTE_KAFKA_STORAGE="$KAFKA_STORAGE" BANDVOTE_PG_PORT="$PG_PORT"
VOTES_TOPIC="${BANDVOTE_TOPIC:-votes}"
VOTES_PARTITIONS="${BANDVOTE_PARTITIONS:-6}"
export BANDVOTE_KAFKA_BROKERS="${BANDVOTE_KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}"
export BANDVOTE_REDIS_URL="${BANDVOTE_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/}"
export BANDVOTE_MONGO_URL="${BANDVOTE_MONGO_URL:-mongodb://127.0.0.1:$MONGO_PORT/}"
export BANDVOTE_TOPIC="$VOTES_TOPIC"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port name [seconds] [pid: give up at once if it dies]
  local i
  for ((i = 0; i < ${3:-60} * 10; i++)); do
    port_open "$1" && return 0
    if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
      tail -5 "$LOGS/$2.log" >&2 || true
      die "$2 exited before opening 127.0.0.1:$1 (log: $LOGS/$2.log)"
    fi
    sleep 0.1
  done
  die "$2 did not open 127.0.0.1:$1 (log: $LOGS/$2.log)"
}

# Switch this script to a private set of services (own ports, own data under
# $CACHE/NAME-state) and empty their data: tests and benchmarks never touch the
# demo's data, and start from an empty broker.
use_fresh_services() { # name kafka_port redis_port mongo_port
  export BANDVOTE_STATE="$CACHE/$1-state" BANDVOTE_KAFKA_PORT="$2" BANDVOTE_REDIS_PORT="$3" BANDVOTE_MONGO_PORT="$4"
  STATE="$BANDVOTE_STATE" LOGS="$BANDVOTE_STATE/logs" KAFKA_PORT="$2" REDIS_PORT="$3" MONGO_PORT="$4"
  PG_PORT=$(($2 - 3000)); export BANDVOTE_PG_PORT="$PG_PORT"
  export BANDVOTE_KAFKA_BROKERS="127.0.0.1:$2" BANDVOTE_REDIS_URL="redis://127.0.0.1:$3/" BANDVOTE_MONGO_URL="mongodb://127.0.0.1:$4/"
  bash "$(dirname "${BASH_SOURCE[0]}")/services.sh" stop >/dev/null 2>&1 || true
  rm -rf "$STATE/kafka" "$STATE/redis" "$STATE/mongo" "/var/tmp/bandvote-pg/$PG_PORT" "$STATE/pg"
}

# The tool builds (scripts/setup.sh MODE tools) in the background, in a
# process group of their own, while the caller builds the workspace: a cold
# first run spends most of its time compiling, and each build alone leaves a
# core idle in its serial tail. wait_tools waits and fails if they failed; if
# the caller exits first, the group is stopped.
start_tools() { # mode
  setsid bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "$1" tools &
  TOOLS_PID=$!
  trap 'kill -TERM -- "-$TOOLS_PID" 2>/dev/null || true' EXIT
}
wait_tools() {
  local rc=0
  wait "$TOOLS_PID" || rc=$?
  trap - EXIT
  [ "$rc" = 0 ] || die "setup's tool builds failed (exit $rc; logs under $CACHE/logs)"
}
