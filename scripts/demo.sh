#!/usr/bin/env bash
# The main job: start the services and the whole pipeline on loopback, send
# votes through every entry (HTTP via the wasm host, JSON over the gRPC client
# hop, native gRPC) for a bounded time with progress lines, wait for the
# consumer to catch up, and print a summary. Then it runs a contest (a roster
# of five bands, one vote per voter, voters by id): fans vote through the
# wasm host and the /grpc hop (some twice, some for a band not on the roster,
# some without a voter, some after the close), the contest is closed and
# certified, and a second summary prints counted / over_limit / late /
# refusals and the certificate.
#
#   scripts/demo.sh                 # 20 s of traffic
#   BANDVOTE_DEMO_SECONDS=60 scripts/demo.sh
#   BANDVOTE_DEMO_KEEP=1 scripts/demo.sh   # leave the pipeline running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SECONDS_OF_TRAFFIC="${BANDVOTE_DEMO_SECONDS:-20}"
# A retry keeps its first answer for this long; `contest certify` waits it out
# after the close (a real contest keeps the default, 300 s).
export BANDVOTE_IDEMPOTENCY_WINDOW_SECS="${BANDVOTE_IDEMPOTENCY_WINDOW_SECS:-10}"
HTTP_PORT="${BANDVOTE_DEMO_HTTP_PORT:-8080}"
GRPC_PORT="${BANDVOTE_DEMO_GRPC_PORT:-50051}"
WEB_PORT="${BANDVOTE_DEMO_WEB_PORT:-8090}"
HOP_PORT="${BANDVOTE_DEMO_HOP_PORT:-8083}"

# Each step's time, for the summary (README, "First run": what a cold run spends where).
steps=()
step() { steps+=("$1 $((SECONDS - step_start))s"); step_start=$SECONDS; }
step_start=$SECONDS
bash scripts/setup.sh demo packages
step packages
# The broker and the MongoDB server build (cold ~20 min) while this script
# builds the component and the pipeline (cold ~11 min): a cold run's time is
# compiling, and two builds side by side keep both cores busy.
start_tools demo
WASM=$(bash scripts/build-wasm.sh)
step "wasm build"
log "building the pipeline (profile demo: release at opt-level 1; cold about 10 min alone on 2 cores, warm seconds; per-crate timings: $CARGO_TARGET_DIR/cargo-timings/)"
# Only the binaries it starts, in the `demo` profile (Cargo.toml: about 3 min
# less than `release` cold; the bench builds `release` itself; scripts/test.sh
# builds its tests in this profile too, reusing these).
cargo build --profile demo --quiet --timings -p bandvote-host -p bandvote-grpc -p bandvote-consumer -p bandvote-load -p bandvote-web \
  --bin bandvote-host --bin bandvote-grpc --bin bandvote-grpc-client --bin bandvote-consumer --bin bandvote-load --bin bandvote-web
step "build"
log "waiting for the tool builds (nisshi, secantusd-rs; logs under $CACHE/logs)"
wait_tools
step "tools (after the build)"
bash scripts/services.sh start
step services

[ -x "$CARGO_TARGET_DIR/demo/bandvote-grpc-client" ] || die "bandvote-grpc-client was not built"
BIN="$CARGO_TARGET_DIR/demo"
RUN="$STATE/demo"
mkdir -p "$RUN"

pids=()
start() { # name args...
  local name=$1; shift
  log "starting $name (log: $LOGS/$name.log)"
  "$@" >>"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$STATE/$name.pid"
}
stop_all() {
  if [ "${BANDVOTE_DEMO_KEEP:-0}" = 1 ]; then
    log "pipeline left running (pids ${pids[*]}); stop with: kill ${pids[*]}"
    return
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_all EXIT

BANDVOTE_CONSUMER_INSTANCE_ID=${BANDVOTE_CONSUMER_INSTANCE_ID:-demo-consumer-0} start consumer "$BIN/bandvote-consumer"
# Idempotency keys are claimed in Redis: a key reused for a different vote is answered 409.
export BANDVOTE_IDEMPOTENCY_REDIS_URL=${BANDVOTE_IDEMPOTENCY_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/}
start host "$BIN/bandvote-host" --component "$WASM" --listen "127.0.0.1:$HTTP_PORT" --compile-cache "$CACHE/wasmtime"
start grpc "$BIN/bandvote-grpc" --listen "127.0.0.1:$GRPC_PORT"
start grpc-client "$BIN/bandvote-grpc-client" --listen "127.0.0.1:$HOP_PORT" --target "http://127.0.0.1:$GRPC_PORT"
start web "$BIN/bandvote-web" --listen "127.0.0.1:$WEB_PORT" --intake-url "http://127.0.0.1:$HTTP_PORT/"

wait_ready() { # name url
  local i
  for ((i = 0; i < 300; i++)); do
    curl -fsS "$2" >/dev/null 2>&1 && { log "$1 ready"; return; }
    sleep 0.2
  done
  die "$1 not ready at $2 (log: $LOGS/$1.log)"
}
wait_ready host "http://127.0.0.1:9180/readyz"
wait_ready grpc "http://127.0.0.1:9182/readyz"
wait_ready consumer "http://127.0.0.1:9181/readyz"
wait_ready grpc-client "http://127.0.0.1:9183/readyz"
wait_ready web "http://127.0.0.1:$WEB_PORT/readyz"
log "live results: http://127.0.0.1:$WEB_PORT/  (open it now to watch the votes arrive); ballot: http://127.0.0.1:$WEB_PORT/vote"

# The course's traffic runs with no contest (a contest applies to every intake).
"$BIN/bandvote-consumer" contest archive >/dev/null 2>&1 || true
sleep 1.2

# Redis's running total, or nothing when Redis does not answer.
total() { local t; t=$(redis-cli -p "$REDIS_PORT" GET votes:total 2>/dev/null | tr -dc 0-9); echo "${t:-0}"; }
base=$(total)
run_id="demo-$(date +%s)"
log "sending votes for ${SECONDS_OF_TRAFFIC}s through HTTP (wasm host), JSON on /grpc (gRPC client hop) and gRPC; every 50th HTTP vote is invalid on purpose"
"$BIN/bandvote-load" --mode http --target "http://127.0.0.1:$HTTP_PORT/" --concurrency 16 \
  --duration "$SECONDS_OF_TRAFFIC" --invalid-every 50 --id-prefix "$run_id-http" --label http --out "$RUN/http.json" >/dev/null &
http_load=$!
"$BIN/bandvote-load" --mode grpc --target "http://127.0.0.1:$GRPC_PORT" --concurrency 8 \
  --duration "$SECONDS_OF_TRAFFIC" --id-prefix "$run_id-grpc" --label grpc --quiet --out "$RUN/grpc.json" >/dev/null &
grpc_load=$!
"$BIN/bandvote-load" --mode http --target "http://127.0.0.1:$HOP_PORT/grpc" --concurrency 4 \
  --duration "$SECONDS_OF_TRAFFIC" --id-prefix "$run_id-hop" --label hop --quiet --out "$RUN/hop.json" >/dev/null &
hop_load=$!
load_rc=0
wait "$http_load" || load_rc=$?
wait "$grpc_load" || load_rc=$?
wait "$hop_load" || load_rc=$?
[ "$load_rc" = 0 ] || log "a load generator exited with status $load_rc (see above)"

acked=$(python3 -c "
import json, sys
n = 0
for f in ['$RUN/http.json', '$RUN/grpc.json', '$RUN/hop.json']:
    try: n += json.load(open(f))['acked']
    except Exception as e: print(f'{f}: {e}', file=sys.stderr)
print(n)")
want=$((base + acked))
wait_s=${BANDVOTE_DEMO_CATCHUP_SECONDS:-120}
log "waiting up to ${wait_s}s for the consumer to count $acked acknowledged votes"
started=$SECONDS
while [ "$(total)" -lt "$want" ] && [ $((SECONDS - started)) -lt "$wait_s" ]; do
  printf '[bandvote] counted %s / %s\r' "$(( $(total) - base ))" "$acked" >&2
  sleep 0.5
done
echo >&2
step "traffic and catch-up"
recount=$("$BIN/bandvote-consumer" recount 2>&1) && recount_ok=yes || recount_ok=no
lag=$(curl -fsS --max-time 3 http://127.0.0.1:9181/metrics 2>/dev/null | grep '^bandvote_consumer_lag{' || true)

summary_rc=0
python3 - "$RUN/http.json" "$RUN/grpc.json" "$RUN/hop.json" "$base" "$(total)" "$recount_ok" "$recount" "$lag" "$LOGS" "$REDIS_PORT" <<'PY' || summary_rc=$?
import json, re, subprocess, sys

def load(path):
    try:
        return json.load(open(path))
    except Exception as e:
        print(f"(no load report {path}: {e})")
        return {"sent": 0, "acked": 0, "rejected": 0, "overloaded": 0, "errors": 0, "acked_per_sec": 0.0, "latency_ms_p99": 0.0}

http, grpc, hop = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
base, counted, recount_ok, recount, lag, logs, redis_port = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8], sys.argv[9], sys.argv[10]
print()
print("=" * 64)
print("bandvote demo summary")
print("=" * 64)
print(f"{'path':<10}{'sent':>9}{'acked':>9}{'rejected':>10}{'503':>7}{'errors':>8}{'acked/s':>10}{'p99 ms':>9}")
for name, r in (("http", http), ("grpc", grpc), ("/grpc hop", hop)):
    print(f"{name:<10}{r['sent']:>9}{r['acked']:>9}{r['rejected']:>10}{r['overloaded']:>7}{r['errors']:>8}{r['acked_per_sec']:>10.0f}{r['latency_ms_p99']:>9.1f}")
acked = http["acked"] + grpc["acked"] + hop["acked"]
m = re.search(r"vote log: (\d+) votes", recount)
stored = int(m.group(1)) if m else None
print(f"acknowledged this run : {acked}")
print(f"counted in Redis      : {counted - base} (total {counted})")
print(f"stored in MongoDB     : {stored if stored is not None else 'unknown (recount failed: see below)'} (all runs)")
print(f"recount vs MongoDB    : {'no difference' if recount_ok == 'yes' else 'DIFFERENCES or failure (see [recount] lines)'}")
top = subprocess.run(["redis-cli", "-p", redis_port, "ZREVRANGE", "leaderboard:bands", "0", "4", "WITHSCORES"], capture_output=True, text=True).stdout.split("\n")
top = [t for t in top if t]
print("top bands             :")
for band, score in zip(top[0::2], top[1::2]):
    print(f"   {score:>8}  {band}")
ok = acked > 0 and counted - base == acked and recount_ok == "yes" and stored == counted
print("=" * 64)
if ok:
    print("RESULT: every acknowledged vote counted exactly once")
else:
    why = []
    if acked == 0:
        why.append("no vote was acknowledged (is the broker answering? scripts/services.sh status)")
    if counted - base < acked:
        why.append(f"the consumer has not caught up: {acked - (counted - base)} acknowledged votes not counted yet")
    elif counted - base > acked:
        why.append(f"{counted - base - acked} more votes counted than acknowledged this run")
    if stored is not None and stored != counted:
        why.append(f"MongoDB holds {stored} votes, Redis counted {counted}")
    print("RESULT: MISMATCH: " + "; ".join(why or ["recount failed"]))
    print("consumer lag per partition:")
    for line in lag.splitlines() or ["   (consumer metrics not reachable on :9181)"]:
        print(f"   {line}")
    print(f"logs: {logs}/ (consumer.log host.log grpc.log grpc-client.log kafka.log redis.log mongo.log)")
sys.exit(0 if ok else 1)
PY
echo "$recount" | sed 's/^/[recount] /'
echo "time to this summary  : $((SECONDS / 60)) min $((SECONDS % 60)) s ($(IFS=,; echo "${steps[*]}" | sed 's/,/, /g'))"

# A contest: roster, window, one vote per voter, certified result.
contest_id="festival-$(date +%s)"
roster="Alux Nahual,Bohemia Suburbana,Viernes Verde,Malacates Trébol Shop,Radio Viejo"
log "contest $contest_id: roster of 5 bands, 1 vote per voter, voters by id (bandvote-consumer contest create)"
"$BIN/bandvote-consumer" contest create --id "$contest_id" --title "Festival de Bandas (demo)" --roster "$roster" \
  --votes-per-voter 1 --voters id --open-for-secs 3600 >"$RUN/contest.json"
sleep 1.5  # every intake reads the current contest within a second
log "contest: 300 fans vote through the wasm host and the /grpc hop (some twice, some for a band not on the roster, some without a voter)"
python3 scripts/demo_contest.py --host "http://127.0.0.1:$HTTP_PORT/" --hop "http://127.0.0.1:$HOP_PORT/grpc" \
  --roster "$roster" --run "$contest_id" --voters 300 >"$RUN/contest-open.json"
log "contest: closing in 2 s (bandvote-consumer contest close)"
"$BIN/bandvote-consumer" contest close --in-ms 2000 >/dev/null
python3 scripts/demo_contest.py --host "http://127.0.0.1:$HTTP_PORT/" --hop "http://127.0.0.1:$HOP_PORT/grpc" \
  --roster "$roster" --run "$contest_id" --voters 300 --phase closed >"$RUN/contest-closed.json"
log "contest: certifying (waits for the consumer, recounts from Kafka and MongoDB, compares with Redis)"
certify=$("$BIN/bandvote-consumer" contest certify --wait-secs 120 2>&1) && certify_ok=yes || certify_ok=no
contest_rc=0
python3 - "$RUN/contest-open.json" "$RUN/contest-closed.json" "$contest_id" "$certify_ok" "$certify" "$REDIS_PORT" <<'PY' || contest_rc=$?
import json, subprocess, sys
opened, closed = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
cid, certify_ok, certify, redis_port = sys.argv[3], sys.argv[4] == "yes", sys.argv[5], sys.argv[6]
def hgetall(key):
    out = subprocess.run(["redis-cli", "-p", redis_port, "HGETALL", key], capture_output=True, text=True).stdout.split("\n")
    out = [o for o in out if o]
    return {k: int(v) for k, v in zip(out[0::2], out[1::2])}
status = hgetall(f"contest:{cid}:status")
bands = sorted(hgetall(f"contest:{cid}:bands").items(), key=lambda kv: -kv[1])
acked = opened["acked"] + closed["acked"]
refused = {}
for r in (opened, closed):
    for k, n in r["by_code"].items():
        refused[k] = refused.get(k, 0) + n
print()
print("=" * 64)
print(f"contest {cid} summary (1 vote per voter)")
print("=" * 64)
print(f"acknowledged (2xx)    : {acked} of {opened['sent'] + closed['sent']} sent")
for s in ("counted", "over_limit", "late", "early", "unknown_band"):
    print(f"  {s:<20}: {status.get(s, 0)}")
print("refused at the intake :")
for k, n in sorted(refused.items()):
    print(f"   {n:>6}  {k}")
print("leaderboard           :")
for band, n in bands:
    print(f"   {n:>6}  {band}")
cert = [l for l in certify.splitlines() if "certified" in l]
print(f"certificate           : {cert[-1] if cert and certify_ok else 'NOT CERTIFIED (see [certify] lines)'}")
ok = certify_ok and acked == sum(status.values()) and status.get("counted", 0) > 0 and closed["acked"] == 0
print("=" * 64)
if ok:
    print("RESULT: every acknowledged contest vote counted or refused by rule exactly once; result certified")
else:
    print(f"RESULT: MISMATCH: acknowledged {acked}, applied {sum(status.values())} ({status}), after the close acknowledged {closed['acked']}, certified {certify_ok}")
sys.exit(0 if ok else 1)
PY
[ "$certify_ok" = yes ] || echo "$certify" | sed 's/^/[certify] /'
[ "$contest_rc" = 0 ] || summary_rc=$contest_rc
if [ "$certify_ok" = yes ]; then
  # The public bulletin (docs/bulletin.md), its index and the certificate,
  # downloaded as anyone would, then recounted offline against the certificate.
  get() { python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' "http://127.0.0.1:$WEB_PORT$1"; }
  get "/api/contest/$contest_id/bulletin" >"$RUN/bulletin.ndjson"
  get "/api/contest/$contest_id/bulletin/index" >"$RUN/bulletin-index.ndjson"
  get "/api/contest" >"$RUN/certificate.json"
  root=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate"]["bulletin_root"])' "$RUN/certificate.json")
  echo "bulletin              : http://127.0.0.1:$WEB_PORT/api/contest/$contest_id/bulletin (root $root; index: .../bulletin/index)"
  if "$BIN/bandvote-consumer" contest verify --bulletin "$RUN/bulletin.ndjson" --certificate "$RUN/certificate.json" \
    --index "$RUN/bulletin-index.ndjson" | sed 's/^/[verify] /'; then
    echo "RESULT: the downloaded bulletin recounts to the certificate's root, index and tally (bandvote-consumer contest verify)"
  else
    echo "RESULT: MISMATCH: the bulletin does not verify against the certificate"; summary_rc=1
  fi
fi
echo "results page: http://127.0.0.1:$WEB_PORT/   (the contest's final result is on it)"
echo "ballot:       http://127.0.0.1:$WEB_PORT/vote   (for a fan's phone: the current contest's roster, a receipt that turns \"counted\")"
echo "(Grafana provisioning: k8s/base/grafana; metrics: :9180 :9181 :9182 :9183 /metrics)"
if [ "${BANDVOTE_DEMO_KEEP:-0}" = 1 ]; then log "Ctrl-C to stop the pipeline"; wait; fi
exit "$summary_rc"
