#!/usr/bin/env bash
# Start, stop or show the real services bandvote runs on, all on loopback:
#   nisshi (Kafka wire protocol; storage sqlite, or PostgreSQL with BANDVOTE_KAFKA_STORAGE=postgres),
#   redis-server (AOF), secantusd-rs (MongoDB wire).
# `status` checks that each service works (Kafka: a produce and a fetch), exit 1 if one does not.
# Usage: scripts/services.sh start|stop|status|restart [kafka|redis|mongo|postgres]...
# (postgres: the broker's own PostgreSQL, started with kafka when BANDVOTE_KAFKA_STORAGE=postgres)
# Idempotent: `start` leaves running services alone; `stop` ignores stopped ones.
# Data and logs live under $BANDVOTE_STATE (default ~/.cache/bandvote/state).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mkdir -p "$LOGS"

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

kafka_url() { echo "tcp://127.0.0.1:$KAFKA_PORT"; }

# The broker's storage: sqlite (default, a file under $STATE/kafka) or
# postgres (a PostgreSQL 15 cluster of our own on $PG_PORT, started here).
storage_url() {
  case $KAFKA_STORAGE in
    sqlite) echo "sqlite://nisshi.db" ;;
    postgres) echo "postgres://postgres@127.0.0.1:$PG_PORT/postgres" ;;
    *) die "BANDVOTE_KAFKA_STORAGE must be sqlite or postgres, not '$KAFKA_STORAGE'" ;;
  esac
}

# PostgreSQL refuses to run as root; as root it runs as the postgres user, with
# its data where that user can reach it.
pg_dir() { if [ "$(id -u)" = 0 ]; then echo "/var/tmp/bandvote-pg/$PG_PORT"; else echo "$STATE/pg"; fi; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)

start_postgres() {
  if port_open "$PG_PORT"; then log "postgres: already on 127.0.0.1:$PG_PORT"; return; fi
  [ -x "$PG_BIN/postgres" ] || die "PostgreSQL is not installed: apt-get install postgresql (or BANDVOTE_KAFKA_STORAGE=sqlite)"
  local dir; dir=$(pg_dir)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    log "postgres: initdb $dir/data"
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$LOGS/postgres-initdb.log" 2>&1 \
      || { tail -5 "$LOGS/postgres-initdb.log"; die "initdb failed"; }
  fi
  log "postgres: starting PostgreSQL on 127.0.0.1:$PG_PORT (data: $dir/data, log: $dir/postgres.log)"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
    || { tail -5 "$dir/postgres.log"; die "postgres did not start"; }
  wait_port "$PG_PORT" postgres
}

stop_postgres() {
  local dir; dir=$(pg_dir)
  if [ -f "$dir/data/postmaster.pid" ]; then
    log "postgres: stopping"
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

start_kafka() {
  if port_open "$KAFKA_PORT"; then log "kafka: already on 127.0.0.1:$KAFKA_PORT"; else
    command -v nisshi >/dev/null || die "nisshi is not installed: run scripts/setup.sh"
    [ "$KAFKA_STORAGE" = postgres ] && start_postgres
    mkdir -p "$STATE/kafka"
    log "kafka: starting nisshi on 127.0.0.1:$KAFKA_PORT (storage: $KAFKA_STORAGE $(storage_url), data: $STATE/kafka, log: $LOGS/kafka.log)"
    # nisshi resolves the sqlite URL's path against its working directory.
    (cd "$STATE/kafka" && exec nohup nisshi broker \
      --listener-url "$(kafka_url)" \
      --advertised-listener-url "$(kafka_url)" \
      --group-initial-rebalance-delay "${BANDVOTE_KAFKA_REBALANCE_DELAY:-3s}" \
      --storage-engine "$(storage_url)" >>"$LOGS/kafka.log" 2>&1) &
    echo $! >"$STATE/kafka.pid"
    wait_port "$KAFKA_PORT" kafka 60 "$(pid_of kafka)"
  fi
  if nisshi topic list --broker "$(kafka_url)" 2>/dev/null | grep -q "\"$VOTES_TOPIC\""; then
    log "kafka: topic $VOTES_TOPIC exists"
  else
    log "kafka: creating topic $VOTES_TOPIC with $VOTES_PARTITIONS partitions"
    local i
    for i in 1 2 3 4 5; do
      nisshi topic create "$VOTES_TOPIC" --partitions "$VOTES_PARTITIONS" --broker "$(kafka_url)" >>"$LOGS/kafka.log" 2>&1 && break
      sleep 1
    done
    nisshi topic create "$VOTES_TOPIC-dlq" --partitions 1 --broker "$(kafka_url)" >>"$LOGS/kafka.log" 2>&1 || true
  fi
}

# The broker answers a produce and a fetch of that same record, not only a TCP
# connect: a probe topic of its own, removed afterwards.
probe_kafka() {
  local topic value out rc=0
  value="probe-$(date +%s%N)"; topic="bandvote-$value"
  out=$(timeout 10 nisshi topic create "$topic" --partitions 1 --broker "$(kafka_url)" 2>&1) || { echo "create topic failed: $out"; return 1; }
  if ! out=$(printf '{"value":"%s"}\n' "$value" | timeout 10 nisshi cat produce "$topic" --broker "$(kafka_url)" 2>&1); then
    echo "produce failed: $out"; rc=1
  elif ! out=$(timeout 10 nisshi cat consume "$topic" --broker "$(kafka_url)" --max-wait-time-ms 2000 2>&1); then
    echo "fetch failed: $out"; rc=1
  elif ! grep -q "$value" <<<"$out"; then
    echo "fetch did not return the record just produced"; rc=1
  fi
  timeout 10 nisshi topic delete "$topic" --broker "$(kafka_url)" >/dev/null 2>&1 || true
  return $rc
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
  if ! port_open "$2"; then log "$1: down"; return 1; fi
  local why
  case $1 in
    kafka) why=$(probe_kafka) || { log "$1: port $2 open but NOT WORKING: $why (log: $LOGS/kafka.log)"; return 1; } ;;
    redis) why=$(redis-cli -p "$2" PING 2>&1) && [ "$why" = PONG ] || { log "$1: port $2 open but PING failed: $why"; return 1; } ;;
  esac
  log "$1: up on 127.0.0.1:$2 (pid $(pid_of "$1"))$([ "$1" = kafka ] && echo ", answers produce + fetch, storage $KAFKA_STORAGE")"
}

cmd=${1:-status}; shift || true
names=("$@"); [ "${#names[@]}" -gt 0 ] || names=(kafka redis mongo)
port_for() { case $1 in kafka) echo "$KAFKA_PORT" ;; redis) echo "$REDIS_PORT" ;; mongo) echo "$MONGO_PORT" ;; postgres) echo "$PG_PORT" ;; *) die "unknown service $1" ;; esac; }
status_rc=0
for name in "${names[@]}"; do
  case $cmd in
    start) "start_$name" ;;
    stop)
      if [ "$name" = postgres ]; then stop_postgres; else stop_one "$name" "$(port_for "$name")"; fi
      [ "$name" = kafka ] && stop_postgres ;;
    restart) if [ "$name" = postgres ]; then stop_postgres; else stop_one "$name" "$(port_for "$name")"; fi; "start_$name" ;;
    status) status_one "$name" "$(port_for "$name")" || status_rc=1 ;;
    *) die "usage: $0 start|stop|status|restart [kafka|redis|mongo|postgres]..." ;;
  esac
done
exit $status_rc
