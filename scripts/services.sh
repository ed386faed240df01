#!/usr/bin/env bash
# Start, stop or show the real services bandvote runs on, all on loopback:
#   tansu (Kafka wire protocol, sqlite storage), redis-server (AOF), secantusd-rs (MongoDB wire).
# Usage: scripts/services.sh start|stop|status|restart [kafka|redis|mongo]...
# Idempotent: `start` leaves running services alone; `stop` ignores stopped ones.
# Data and logs live under $BANDVOTE_STATE (default ~/.cache/bandvote/state).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mkdir -p "$LOGS"

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

start_kafka() {
  if port_open "$KAFKA_PORT"; then log "kafka: already on 127.0.0.1:$KAFKA_PORT"; else
    command -v tansu >/dev/null || die "tansu is not installed: run scripts/setup.sh"
    mkdir -p "$STATE/kafka"
    log "kafka: starting tansu on 127.0.0.1:$KAFKA_PORT (data: $STATE/kafka, log: $LOGS/kafka.log)"
    # tansu resolves the sqlite URL's path against its working directory.
    (cd "$STATE/kafka" && exec nohup tansu broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db" >>"$LOGS/kafka.log" 2>&1) &
    echo $! >"$STATE/kafka.pid"
    wait_port "$KAFKA_PORT" kafka 60 "$(pid_of kafka)"
  fi
  if tansu topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" 2>/dev/null | grep -q "\"$VOTES_TOPIC\""; then
    log "kafka: topic $VOTES_TOPIC exists"
  else
    log "kafka: creating topic $VOTES_TOPIC with $VOTES_PARTITIONS partitions"
    local i
    for i in 1 2 3 4 5; do
      tansu topic create "$VOTES_TOPIC" --partitions "$VOTES_PARTITIONS" --broker "tcp://127.0.0.1:$KAFKA_PORT" >>"$LOGS/kafka.log" 2>&1 && break
      sleep 1
    done
    tansu topic create "$VOTES_TOPIC-dlq" --partitions 1 --broker "tcp://127.0.0.1:$KAFKA_PORT" >>"$LOGS/kafka.log" 2>&1 || true
  fi
}

start_redis() {
  if port_open "$REDIS_PORT"; then log "redis: already on 127.0.0.1:$REDIS_PORT"; return; fi
  mkdir -p "$STATE/redis"
  log "redis: starting redis-server on 127.0.0.1:$REDIS_PORT (AOF, data: $STATE/redis, log: $LOGS/redis.log)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" \
    --appendonly yes --appendfsync always --save "" --daemonize yes \
    --pidfile "$STATE/redis.pid" --logfile "$LOGS/redis.log"
  wait_port "$REDIS_PORT" redis
}

start_mongo() {
  if port_open "$MONGO_PORT"; then log "mongo: already on 127.0.0.1:$MONGO_PORT"; return; fi
  command -v secantusd-rs >/dev/null || die "secantusd-rs is not installed: run scripts/setup.sh"
  mkdir -p "$STATE/mongo"
  log "mongo: starting secantusd-rs on 127.0.0.1:$MONGO_PORT (data: $STATE/mongo, log: $LOGS/mongo.log)"
  nohup secantusd-rs --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$STATE/mongo" \
    --sync-on-commit --log-file-max 16MB >>"$LOGS/mongo.log" 2>&1 &
  echo $! >"$STATE/mongo.pid"
  wait_port "$MONGO_PORT" mongo 60 "$(pid_of mongo)"
}

stop_one() { # name port
  local pid; pid=$(pid_of "$1")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "$1: stopping pid $pid"
    kill "$pid"
    local i; for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  elif port_open "$2"; then
    log "$1: running on port $2 but not started by us; leaving it"
  else
    log "$1: not running"
  fi
  rm -f "$STATE/$1.pid"
}

status_one() { # name port
  if port_open "$2"; then log "$1: up on 127.0.0.1:$2 (pid $(pid_of "$1"))"; else log "$1: down"; fi
}

cmd=${1:-status}; shift || true
names=("$@"); [ "${#names[@]}" -gt 0 ] || names=(kafka redis mongo)
port_for() { case $1 in kafka) echo "$KAFKA_PORT" ;; redis) echo "$REDIS_PORT" ;; mongo) echo "$MONGO_PORT" ;; *) die "unknown service $1" ;; esac; }
for name in "${names[@]}"; do
  case $cmd in
    start) "start_$name" ;;
    stop) stop_one "$name" "$(port_for "$name")" ;;
    restart) stop_one "$name" "$(port_for "$name")"; "start_$name" ;;
    status) status_one "$name" "$(port_for "$name")" ;;
    *) die "usage: $0 start|stop|status|restart [kafka|redis|mongo]..." ;;
  esac
done
