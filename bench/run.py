#!/usr/bin/env python3
"""bandvote benchmarks: one command, figures measured side by side on this
machine, written to bench/results.json and bench/results.md.

    bench/run.sh                      # ~3 minutes of load, plus builds
    BANDVOTE_BENCH_SECONDS=20 bench/run.sh

Everything runs on loopback and stops by itself. Measured:
  * Capacity at 32, 256 and 1,024 votes in flight (BANDVOTE_BENCH_LEVELS): the raw
    VotePublisher (the broker's own ceiling), the wasm host and the native intake
    (wrk), gRPC unary (bandvote-load); median of 3 alternated runs each; acked/s,
    p50/p99, share refused with 503; a bare hyper 204 server as the machine's ceiling.
  * Open loop: fixed arrival rates at 0.25-1.5 x the wasm host's measured maximum.
  * gRPC client streaming.
  * End to end: ack → counted in Redis, p50/p99, at 50% of the wasm max rate.
  * Consumer throughput (votes/s applied to Redis + MongoDB) replaying the topic.
  * A contest's per-voter cap: the consumer replaying contest votes with and
    without a cap (alternated), and Redis bytes per voter.
  * The Spin route (issue 32): the Spin artifact under `wasmtime serve` 42.0.2
    through the REST bridge, alternated with the wasm host at 64 and 256.
  * Instance reuse (issue 24): the sandbox and the wasm host with
    --instance-reuse N for each N in BANDVOTE_BENCH_REUSE, alternated, at 256.
  * Host RSS under load; per-request instantiation time (host metrics).
  * A certified contest's bulletin at 1,000,000 votes (BANDVOTE_BENCH_BULLETIN_VOTES):
    certify's pass that writes and indexes it, the download's read, receipts'
    proofs, peak memory (bench/src/bin/bulletin.rs).
  * Optionally a bounded cargo-fuzz run on the vote parser (BANDVOTE_BENCH_FUZZ_SECONDS).
"""

import json
import os
import pathlib
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path(os.environ.get("BANDVOTE_CACHE", pathlib.Path.home() / ".cache/bandvote"))
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target"))
BIN = TARGET / "release"
SECONDS = float(os.environ.get("BANDVOTE_BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BANDVOTE_BENCH_CONCURRENCY", "32"))
# Capacity sweep: connections (votes in flight) per level, each target measured
# REPEATS times, targets alternated so drift between phases does not become a ratio.
LEVELS = [int(x) for x in os.environ.get("BANDVOTE_BENCH_LEVELS", "32,256,1024").split(",")]
REPEATS = int(os.environ.get("BANDVOTE_BENCH_REPEATS", "3"))
# Open-loop arrival rates, as fractions of the wasm host's measured maximum.
RATE_FRACTIONS = [float(x) for x in os.environ.get("BANDVOTE_BENCH_RATE_FRACTIONS", "0.25,0.5,1.0,1.5").split(",")]
# --instance-reuse values compared in the reuse phase (1: a fresh instance per request).
REUSE = [int(x) for x in os.environ.get("BANDVOTE_BENCH_REUSE", "1,8,64,1024").split(",")]
# Votes in the certified contest whose bulletin is built, downloaded and proven (issue 33); 0 skips it.
BULLETIN_VOTES = int(os.environ.get("BANDVOTE_BENCH_BULLETIN_VOTES", "1000000"))
FUZZ_SECONDS = int(os.environ.get("BANDVOTE_BENCH_FUZZ_SECONDS", "30"))
BROKERS = os.environ.get("BANDVOTE_KAFKA_BROKERS", "127.0.0.1:9092")
REDIS_URL = os.environ.get("BANDVOTE_REDIS_URL", "redis://127.0.0.1:6379/")
STAMP = time.strftime("%Y%m%d%H%M%S")
TOPIC = f"bench-{STAMP}"
PREFIX = f"bench-{STAMP}:"
LOGS = pathlib.Path(os.environ.get("BANDVOTE_STATE", CACHE / "state")) / "logs"
VOTE = '{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}'

procs = []


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def start(name, cmd, env=None):
    LOGS.mkdir(parents=True, exist_ok=True)
    out = open(LOGS / f"bench-{name}.log", "a")
    p = subprocess.Popen(cmd, env={**os.environ, "RUST_LOG": "warn", **(env or {})}, stdout=out, stderr=out)
    procs.append(p)
    return p


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"not ready: {url}")


KEYED_LUA = """
math.randomseed(os.time())
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
local n, tag = 0, nil
setup = function(thread) thread:set("tag", tostring(math.random(1, 2000000000))) end
request = function()
  n = n + 1
  tag = tag or wrk.thread:get("tag") or tostring(math.random(1, 2000000000))
  return wrk.format(nil, nil, { ["Content-Type"] = "application/json", ["Idempotency-Key"] = "k-" .. tag .. "-" .. n })
end
"""


def wrk(url, label, connections=None, keyed=False):
    """wrk POSTing the vote; `keyed`: every request with its own
    Idempotency-Key (a client key the intake claims in Redis)."""
    connections = connections or CONCURRENCY
    script = CACHE / ("bench-post-keyed.lua" if keyed else "bench-post.lua")
    script.write_text(KEYED_LUA % VOTE if keyed else
        'wrk.method = "POST"\nwrk.body = \'%s\'\nwrk.headers["Content-Type"] = "application/json"\n' % VOTE
    )
    log(f"wrk {label}: {connections} connections, {SECONDS:.0f}s → {url}")
    out = run(["wrk", "-t2", f"-c{connections}", f"-d{SECONDS:.0f}s", "--timeout", "10s", "--latency", "-s", str(script), url])
    total = int(re.search(r"(\d+) requests in", out).group(1))
    secs = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1)) * (0.001 if "ms," in out.split("requests in")[1][:20] else 1)
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", m.group(0))) if (m := re.search(r"Socket errors:.*", out)) else 0
    lat = {q: to_ms(re.search(rf"\s{q}%\s+([\d.]+\w+)", out).group(1)) for q in ("50", "99")}
    return {"requests": total, "ok": total - non2xx, "non_2xx": non2xx, "socket_errors": errors, "seconds": secs,
            "ok_per_sec": round((total - non2xx) / secs, 1), "latency_ms_p50": lat["50"], "latency_ms_p99": lat["99"]}


def from_wrk(r):
    """wrk's figures in the sweep's terms (non-2xx answers are the intake's 503s)."""
    return {"acked_per_sec": r["ok_per_sec"], "latency_ms_p50": r["latency_ms_p50"], "latency_ms_p99": r["latency_ms_p99"],
            "refused_share": round(r["non_2xx"] / max(1, r["requests"]), 4), "errors": r["socket_errors"]}


def from_load(r):
    """bandvote-load's report in the sweep's terms (overloaded = 503 / RESOURCE_EXHAUSTED)."""
    return {"acked_per_sec": r["acked_per_sec"], "latency_ms_p50": r["latency_ms_p50"], "latency_ms_p99": r["latency_ms_p99"],
            "refused_share": round(r["overloaded"] / max(1, r["sent"]), 4), "errors": r["errors"]}


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else round((xs[n // 2 - 1] + xs[n // 2]) / 2, 3)


def medians(runs):
    """The median of each figure over repeated runs (dicts with the same keys)."""
    return {k: median([r[k] for r in runs if r.get(k) is not None]) if any(r.get(k) is not None for r in runs) else None for k in runs[0]}


def ratio(a, b):
    """acked/s of one target over another's (3 decimals)."""
    return round(a["acked_per_sec"] / max(1e-9, b["acked_per_sec"]), 3)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU of process `pid` so far (/proc/<pid>/stat), or, with
    pid None, of this script's finished children (a load generator run)."""
    if pid is None:
        import resource
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def alternated(targets):
    """Each target REPEATS times in a rotating order (so drift between runs
    does not become a ratio), each run with the serving process's CPU per
    acknowledged vote. `targets`: name → (run, pid, or a dict naming the
    pids that serve it together: each one's CPU per vote is kept too, as
    `cpu_us_per_acked_<name>`). The median of each figure per target."""
    names = list(targets)
    runs = {n: [] for n in names}
    for rep in range(REPEATS):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            fn, pid = targets[name]
            pids = pid if isinstance(pid, dict) else {"": pid}
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            r = fn()
            acked = r["acked_per_sec"] * SECONDS
            per = {k: round(1e6 * (cpu_seconds(p) - cpu0[k]) / acked, 1) if acked else None for k, p in pids.items()}
            r["cpu_us_per_acked"] = round(sum(per.values()), 1) if acked else None
            if len(pids) > 1:
                r |= {f"cpu_us_per_acked_{k}": v for k, v in per.items()}
            runs[name].append(r)
            time.sleep(1)
    return {n: medians(rs) for n, rs in runs.items()}


def capacity_sweep(targets, host_pid, cpu_pids=None):
    """Every target at every level, REPEATS times, in a rotating order; the
    median of each figure per target and level. Host RSS sampled throughout.
    With `cpu_pids` (target → the pid serving it; None: the load generator
    itself, for the raw producer), each run also reports that process's CPU
    per acknowledged vote (µs): less drift than votes/s on shared cores."""
    names = list(targets)
    runs = {n: {c: [] for c in LEVELS} for n in names}
    peak_at, pss_at = {}, {}
    for c in LEVELS:
        for rep in range(REPEATS):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                stop, peak = threading.Event(), [0, 0]
                sampler = threading.Thread(target=rss_sampler, args=(host_pid, stop, peak), daemon=True)
                sampler.start()
                pid = (cpu_pids or {}).get(name, "none")
                cpu0 = cpu_seconds(pid) if pid != "none" else None
                r = targets[name](c)
                if cpu0 is not None:
                    acked = r["acked_per_sec"] * SECONDS
                    r["cpu_us_per_acked"] = round(1e6 * (cpu_seconds(pid) - cpu0) / acked, 1) if acked else None
                runs[name][c].append(r)
                stop.set()
                sampler.join()
                if name == "wasm_host":
                    peak_at[c] = max(peak_at.get(c, 0), peak[0])
                    pss_at[c] = max(pss_at.get(c, 0), peak[1])
                time.sleep(1)
    out = {}
    for name in names:
        out[name] = {}
        for c in LEVELS:
            rs = runs[name][c]
            out[name][str(c)] = medians(rs) | {"runs": rs}
    out["host_peak_rss_mib"] = {str(c): round(kib / 1024, 1) for c, kib in peak_at.items()}
    out["host_peak_pss_mib"] = {str(c): round(kib / 1024, 1) for c, kib in pss_at.items()}
    out["ratios"] = {}
    for c in map(str, LEVELS):
        out["ratios"][c] = {
            "wasm_to_raw_producer": ratio(out["wasm_host"][c], out["raw_producer"][c]),
            "wasm_to_native": ratio(out["wasm_host"][c], out["native_intake"][c]),
            "grpc_to_raw_producer": ratio(out["grpc_unary"][c], out["raw_producer"][c]),
        }
    return out


def wrk_256(port, label, pid):
    """An `alternated` target: wrk at 256 connections against a local port,
    whose CPU is `pid`'s."""
    return (lambda: from_wrk(wrk(f"http://127.0.0.1:{port}/", label, 256)), pid)


# The publisher's wait in the waiting phase (issue 32): about the broker's
# delivery time at 256 in flight (the wasm host's p50 in the capacity sweep).
PUBLISH_DELAY_MS = 50


def wait_phase(wasm, pids):
    """What waiting for the acknowledgement costs, without a broker (issue 32):
    the sandbox and the native intake with a publisher that acknowledges at
    once and one that acknowledges after PUBLISH_DELAY_MS, alternated at 256
    connections, with each process's CPU per request. With the wait, every
    request in flight holds its instance (a wasi:http 0.2 handler returns only
    after the publish call), so the wasm host keeps ~256 instances alive and
    each resumes after its wait; at once, a few instances serve everything.
    The sandbox waits both ways: the instance hands its vote to the host and
    ends (`hand-off`, the default) or waits in `publish` and answers itself
    (`BANDVOTE_HOST_REPLIES=false`, as under Spin).
    `pids`: the sandbox's and the instant native intake's; the ones that wait
    run only during this phase."""
    delay = {"BANDVOTE_BENCH_PUBLISH_DELAY_MS": str(PUBLISH_DELAY_MS)}
    waiting = [start("sandbox-wait", [str(BIN / "bandvote-sandbox"), "--listen", "127.0.0.1:28091"], {"BANDVOTE_INTAKE_WASM": wasm, **delay}),
               start("native-wait", [str(BIN / "bandvote-native-intake"), "127.0.0.1:28092", "--instant"], delay),
               start("sandbox-wait-in-instance", [str(BIN / "bandvote-sandbox"), "--listen", "127.0.0.1:28093"],
                     {"BANDVOTE_INTAKE_WASM": wasm, "BANDVOTE_HOST_REPLIES": "false", **delay})]
    pids = pids | {"sandbox_wait": waiting[0].pid, "native_wait": waiting[1].pid, "sandbox_wait_in_instance": waiting[2].pid}
    for port in (28091, 28092, 28093):
        wait_http(f"http://127.0.0.1:{port}/healthz")
    w = alternated({
        "wasm_at_once": wrk_256(28086, "sandbox, publisher at once", pids["sandbox"]),
        "wasm_after_wait": wrk_256(28091, f"sandbox, publisher after {PUBLISH_DELAY_MS} ms", pids["sandbox_wait"]),
        "wasm_after_wait_in_instance": wrk_256(28093, f"sandbox, publisher after {PUBLISH_DELAY_MS} ms, waiting in the instance",
                                               pids["sandbox_wait_in_instance"]),
        "native_at_once": wrk_256(28087, "native intake, publisher at once", pids["native_instant"]),
        "native_after_wait": wrk_256(28092, f"native intake, publisher after {PUBLISH_DELAY_MS} ms", pids["native_wait"]),
    })
    a, b = w["wasm_at_once"].get("cpu_us_per_acked"), w["wasm_after_wait_in_instance"].get("cpu_us_per_acked")
    w["wasm_in_instance_cpu_us_added_by_wait"] = round(b - a, 1) if a is not None and b is not None else None
    for k in ("wasm", "native"):
        a, b = w[f"{k}_at_once"].get("cpu_us_per_acked"), w[f"{k}_after_wait"].get("cpu_us_per_acked")
        w[f"{k}_cpu_us_added_by_wait"] = round(b - a, 1) if a is not None and b is not None else None
    w["delay_ms"] = PUBLISH_DELAY_MS
    for p in waiting:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    return w


def hand_off_phase(wasm, common, host_pid):
    """The wasm host as deployed (Kafka, key claims) with the default
    hand-off (the instance ends before Kafka answers; the host replies) and
    with every instance waiting in `publish` (BANDVOTE_HOST_REPLIES=false, as
    under Spin), alternated at 256 connections: the change's before/after in
    one run."""
    waits = start("host-instance-waits", [str(BIN / "bandvote-host"), "--component", wasm, "--listen", "127.0.0.1:28089",
                                          "--admin-listen", "127.0.0.1:29187"], {**common, "BANDVOTE_HOST_REPLIES": "false"})
    wait_http("http://127.0.0.1:29187/readyz")
    h = alternated({
        "host_replies": wrk_256(28080, "wasm host, hand-off (host replies)", host_pid),
        "instance_waits": wrk_256(28089, "wasm host, instances wait in publish", waits.pid),
    })
    h["ratio_host_replies_to_instance_waits"] = ratio(h["host_replies"], h["instance_waits"])
    waits.send_signal(signal.SIGTERM)
    waits.wait(timeout=20)
    return h


def reuse_phase(wasm, common, native_instant):
    """Issue 24, item 2: --instance-reuse N for each N in REUSE, alternated at
    256 connections, on the sandbox (publisher acknowledging at once: the
    runtime's own cost) and on the wasm host as deployed (Kafka, key claims)."""
    sandboxes, hosts = {}, {}
    for i, n in enumerate(REUSE):
        sandboxes[n] = (28100 + i, start(f"sandbox-reuse-{n}", [str(BIN / "bandvote-sandbox"), "--listen", f"127.0.0.1:{28100 + i}",
                                                               "--instance-reuse", str(n)], {"BANDVOTE_INTAKE_WASM": wasm}))
        hosts[n] = (28120 + i, start(f"host-reuse-{n}", [str(BIN / "bandvote-host"), "--component", wasm, "--listen", f"127.0.0.1:{28120 + i}",
                                                         "--admin-listen", f"127.0.0.1:{29200 + i}", "--instance-reuse", str(n)], common))
        wait_http(f"http://127.0.0.1:{28100 + i}/healthz")
        wait_http(f"http://127.0.0.1:{29200 + i}/readyz")

    sb = alternated({str(n): wrk_256(port, f"sandbox, --instance-reuse {n}", p.pid) for n, (port, p) in sandboxes.items()})
    for n in sb:
        sb[n]["ratio_wasm_to_native"] = ratio(sb[n], native_instant)
    hs = alternated({str(n): wrk_256(port, f"wasm host, --instance-reuse {n}", p.pid) for n, (port, p) in hosts.items()})
    for n in hs:
        hs[n]["ratio_to_reuse_1"] = ratio(hs[n], hs[str(REUSE[0])])
        m = metrics(f"http://127.0.0.1:{29200 + REUSE.index(int(n))}/metrics")
        hs[n]["instances"] = counter_by_label(m, "bandvote_host_instances_total")
        hs[n]["instances_retired"] = counter_by_label(m, "bandvote_host_instances_retired_total")
    for _, p in list(sandboxes.values()) + list(hosts.values()):
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    return {"sandbox": sb, "host": hs, "native_instant": native_instant}


SPIN_LEVELS = [int(x) for x in os.environ.get("BANDVOTE_BENCH_SPIN_LEVELS", "64,256").split(",")]
SPIN_WASMTIME = os.environ.get("BANDVOTE_BENCH_SPIN_WASMTIME", str(CACHE / "tools/wasmtime-42.0.2-release/bin/wasmtime"))


def passive_opens():
    """TCP connections this machine has accepted so far (/proc/net/snmp, Tcp PassiveOpens)."""
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("PassiveOpens")])


def spin_route_phase(host_pid, grpc_pid, bridge_port):
    """The Spin route (issue 32): the Spin artifact (the intake composed with
    the REST adapter, configuration from the environment) under `wasmtime
    serve` of the wasmtime SpinKube's shim embeds (42.0.2, pooling allocator
    on, as Spin runs; its totals raised to 4,000; Spin's keep-resident sizes,
    2 MiB of memory and 512 KiB of tables memset per instance, are not set:
    by hand, 2026-12-07, they cost serve 721 -> 876 us per vote at 64
    connections), publishing through the REST bridge of bandvote-grpc,
    alternated with the wasm host at each of SPIN_LEVELS connections. CPU per
    vote: wasmtime serve and the bridge's process together. Connections: the
    TCP connections the machine accepted during a run, less wrk's own, per
    request (1.0: the adapter's call to the bridge opens a new connection for
    every vote; nothing else opens connections during the run)."""
    spin_wasm = run(["bash", "scripts/build-spin.sh"]).strip()
    serve_wasm = spin_wasm.replace("_spin.wasm", "_wasmtime.wasm")
    version = run([SPIN_WASMTIME, "--version"]).split()[1]
    serve = start("spin-route", [SPIN_WASMTIME, "serve", "--addr", "127.0.0.1:28090", "-O", "pooling-allocator=y",
                                 # The composed artifact takes several core instances, memories and tables per
                                 # request; the defaults (1,000 of each in all) refused 76% at 256 (run of 2026-12-07).
                                 "-O", "pooling-total-core-instances=4000", "-O", "pooling-total-memories=4000",
                                 "-O", "pooling-total-tables=4000", "-S", "cli=y",
                                 "--env", f"KAFKA_REST_URL=http://127.0.0.1:{bridge_port}", "--env", f"KAFKA_TOPIC={TOPIC}", serve_wasm])
    wait_http("http://127.0.0.1:28090/")
    code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d", VOTE, "http://127.0.0.1:28090/"],
                          capture_output=True, text=True).stdout
    if code != "201":
        raise RuntimeError(f"the Spin route under wasmtime serve {version} answered {code!r} to a vote")
    out = {"wasmtime": version}
    for c in SPIN_LEVELS:
        connections = []

        def spin_run(c=c):
            before = passive_opens()
            raw = wrk("http://127.0.0.1:28090/", f"Spin route (wasmtime serve {version} + REST bridge)", c)
            connections.append(round((passive_opens() - before - c) / max(1, raw["requests"]), 3))
            return from_wrk(raw)
        o = alternated({"wasm_host": (lambda c=c: from_wrk(wrk("http://127.0.0.1:28080/", "wasm host", c)), host_pid),
                        "spin_route": (spin_run, {"serve": serve.pid, "bridge": grpc_pid})})
        o["spin_route"]["bridge_connections_per_request"] = median(connections)
        o["ratio_spin_to_host"] = ratio(o["spin_route"], o["wasm_host"])
        out[str(c)] = o
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=20)
    return out


def counter_by_label(text, name):
    """A Prometheus counter's value per label value (one label), as ints."""
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(rf'^{name}{{\w+="([^"]*)"}} ([\d.e+]+)$', text, re.M)}


def open_loop(url, maximum):
    """Fixed arrival rates (fractions of the measured maximum), as Locust users
    produce them, through bandvote-load's rate limiter with 1,024 workers."""
    rows = []
    for f in RATE_FRACTIONS:
        rate = max(1.0, f * maximum)
        log(f"open loop: {rate:.0f} votes/s offered to the wasm host ({f:.2f} × max)")
        r = load("http", url, ["--rate", str(rate)], concurrency=max(LEVELS))
        rows.append({"fraction_of_max": f, "offered_per_sec": round(rate, 1)} | from_load(r))
    return rows


def to_ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return round(float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit], 3)


def load(mode, target, extra=(), concurrency=None):
    out = run([str(BIN / "bandvote-load"), "--mode", mode, "--target", target, "--concurrency", str(concurrency or CONCURRENCY),
               "--duration", str(SECONDS), "--quiet", "--id-prefix", f"{STAMP}-{mode}", *extra])
    return json.loads(out)


def rss_sampler(pid, stop, peak):
    """Peak VmRSS (peak[0], KiB) every 0.1 s and peak PSS (peak[1]) every second.
    VmRSS counts a page shared by several mappings once per mapping: the
    component's read-only memory image is mapped in every pool slot; PSS counts
    it once (divided among its mappings), which is the memory actually used."""
    tick = 0
    while not stop.is_set():
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
            if tick % 10 == 0:
                for line in open(f"/proc/{pid}/smaps_rollup"):
                    if line.startswith("Pss:"):
                        peak[1] = max(peak[1], int(line.split()[1]))
        except OSError:
            pass
        tick += 1
        time.sleep(0.1)


def metrics(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def histogram_quantiles(text, name):
    buckets = [(float("inf") if le == "+Inf" else float(le), float(v))
               for le, v in re.findall(rf'{name}_bucket{{le="([^"]+)"}} ([\d.e+]+)', text)]
    count = float(re.search(rf"{name}_count ([\d.e+]+)", text).group(1))
    total = float(re.search(rf"{name}_sum ([\d.e+]+)", text).group(1))
    def q(p):
        for le, v in buckets:
            if v >= p * count:
                return le
    return {"count": int(count), "mean_us": round(1e6 * total / count, 1) if count else None,
            "p50_le_us": round(1e6 * q(0.5), 1) if count else None, "p99_le_us": round(1e6 * q(0.99), 1) if count else None}


def redis_total(prefix):
    out = run(["redis-cli", "-p", os.environ.get("BANDVOTE_REDIS_PORT", "6379"), "GET", f"{prefix}votes:total"]).strip()
    return int(out) if out.isdigit() else 0


def timed_replay(name, env, progress, expected, within):
    """Run a consumer (`env`: its topic, group, prefix, collection) until
    `progress()` (votes applied) reaches `expected`, stops moving for 10 s, or
    `within` seconds pass; the rate is measured from the first applied vote."""
    p = start(name, [str(BIN / "bandvote-consumer")], env)
    first = last = None
    seen, deadline = 0, time.time() + within
    while time.time() < deadline:
        n, now = progress(), time.time()
        if n and first is None:
            first = (now, n)
        if n != seen:
            seen, last = n, now
        if n >= expected or (last and now - last > 10):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
    if not first or not last or last <= first[0]:
        return {"votes": seen, "votes_per_sec": None}
    return {"votes": seen, "seconds": round(last - first[0], 2), "votes_per_sec": round((seen - first[1]) / (last - first[0]), 1)}


def consumer_throughput(expected):
    """Replay the whole bench topic with a fresh group, prefix and collection,
    as configured (the default fetch size per partition), then again reading
    at most 1 MiB per partition per fetch (librdkafka's default, the
    consumer's before 2026-12-07: nisshi's sqlite engine then scans the rest
    of the partition at every read that reaches the cap)."""
    out = {}
    for tag, extra in (("", {}), ("_fetch_1mib", {"BANDVOTE_FETCH_PARTITION_BYTES": str(1 << 20)})):
        prefix = f"bench-replay{tag}-{STAMP}:"
        log(f"consumer throughput{tag}: replaying {expected} records with a fresh consumer group")
        r = timed_replay(f"consumer-replay{tag}", {
            "BANDVOTE_TOPIC": TOPIC, "BANDVOTE_DLQ_TOPIC": f"{TOPIC}-dlq", "BANDVOTE_CONSUMER_GROUP": f"replay{tag}-{STAMP}",
            "BANDVOTE_REDIS_PREFIX": prefix, "BANDVOTE_MONGO_COLLECTION": f"bench_replay{tag}_{STAMP}",
            "BANDVOTE_CONSUMER_ADMIN_LISTEN": "127.0.0.1:29183", **extra}, lambda: redis_total(prefix), expected, 120)
        out |= r if not tag else {"fetch_1mib": r}
    return out


SCALE_VOTES = int(os.environ.get("BANDVOTE_BENCH_SCALE_VOTES", "1000000"))


def redis_used_memory():
    out = run(["redis-cli", "-p", os.environ.get("BANDVOTE_REDIS_PORT", "6379"), "INFO", "memory"])
    return int(re.search(r"used_memory:(\d+)", out).group(1))


def prefix_memory(prefix):
    """Bytes Redis uses for the keys under `prefix` (MEMORY USAGE of each):
    unlike used_memory, not moved by other phases' keys expiring meanwhile."""
    port = os.environ.get("BANDVOTE_REDIS_PORT", "6379")
    keys = [k for k in run(["redis-cli", "-p", port, "--scan", "--pattern", f"{prefix}*"]).split() if k]
    total = 0
    for k in keys:
        out = run(["redis-cli", "-p", port, "MEMORY", "USAGE", k, "SAMPLES", "0"]).strip()
        total += int(out) if out.isdigit() else 0
    return total


def scale_memory():
    """Redis memory per vote: SCALE_VOTES votes through the consumer (not a
    timed test). Memory is sampled once the first 10% are counted and again at
    the end; growth per vote past that point is what a contest pays per vote."""
    if SCALE_VOTES <= 0:
        return None
    topic, prefix = f"scale-{STAMP}", f"scale-{STAMP}:"
    run(["nisshi", "topic", "create", topic, "--partitions", "6", "--broker", f"tcp://{BROKERS}"])
    log(f"scale: producing {SCALE_VOTES} votes to {topic}")
    t = time.time()
    run([str(BIN / "bandvote-load"), "--mode", "kafka", "--target", BROKERS, "--topic", topic, "--concurrency", "1024",
         "--duration", "3600", "--max-votes", str(SCALE_VOTES), "--quiet", "--id-prefix", topic])
    produced_s = time.time() - t
    before = redis_used_memory()
    p = start("consumer-scale", [str(BIN / "bandvote-consumer")], {
        "BANDVOTE_TOPIC": topic, "BANDVOTE_DLQ_TOPIC": f"{TOPIC}-dlq", "BANDVOTE_CONSUMER_GROUP": f"scale-{STAMP}",
        "BANDVOTE_REDIS_PREFIX": prefix, "BANDVOTE_MONGO_COLLECTION": f"scale_{STAMP}",
        "BANDVOTE_CONSUMER_ADMIN_LISTEN": "127.0.0.1:29184"})
    mark, t0, last, seen = None, time.time(), time.time(), 0
    while True:
        n = redis_total(prefix) or 0
        if n != seen:
            seen, last = n, time.time()
            if mark is None and n >= SCALE_VOTES // 10:
                mark = (n, prefix_memory(prefix), time.time())
            if seen % 100000 < 2000:
                log(f"scale: {seen} counted")
        if n >= SCALE_VOTES or time.time() - last > 60:
            break
        time.sleep(0.5)
    end = (seen, prefix_memory(prefix), time.time())
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
    res = {"votes": SCALE_VOTES, "counted": seen, "produce_seconds": round(produced_s, 1), "redis_used_memory_before": before,
           "prefix_key_bytes_at_10pct": mark and mark[1], "prefix_key_bytes_after": end[1], "redis_used_memory_after": redis_used_memory()}
    if mark and end[0] > mark[0]:
        res["bytes_per_vote_past_10pct"] = round((end[1] - mark[1]) / (end[0] - mark[0]), 3)
        res["consumer_votes_per_sec"] = round((end[0] - mark[0]) / (end[2] - mark[2]), 1)
    log(f"scale: {res}")
    return res


def bulletin_scale():
    """A certified contest of BULLETIN_VOTES votes: certify's pass that writes
    its bulletin and index, the download's read, receipts' proofs (the same
    code, bench/src/bin/bulletin.rs), with the process's peak memory."""
    if BULLETIN_VOTES <= 0:
        return None
    log(f"bulletin: a contest of {BULLETIN_VOTES} votes (stores them, then builds, downloads and proves; minutes)")
    out = subprocess.run([str(BIN / "bandvote-bulletin-bench"), "--votes", str(BULLETIN_VOTES), "--collection", f"bulletin_{STAMP}"],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        log(f"bulletin: failed: {out.stderr[-800:]}")
        return {"votes": BULLETIN_VOTES, "error": out.stderr[-800:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"bulletin: {res}")
    return res


def fuzz():
    if FUZZ_SECONDS <= 0:
        return None
    if not shutil.which("cargo-fuzz"):
        log("installing cargo-fuzz (once)")
        subprocess.run(["cargo", "install", "cargo-fuzz", "--locked", "--root", str(CACHE / "tools")], check=True,
                       capture_output=True)
    log(f"cargo fuzz run parse_body for {FUZZ_SECONDS}s")
    env = {**os.environ, "RUSTC_BOOTSTRAP": "1", "CARGO_TARGET_DIR": str(CACHE / "fuzz-target")}
    r = subprocess.run(["cargo", "fuzz", "run", "parse_body", "-s", "none", "--", f"-max_total_time={FUZZ_SECONDS}"],
                       cwd=ROOT / "fuzz", env=env, text=True, capture_output=True)
    runs = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE)", r.stderr)
    return {"seconds": FUZZ_SECONDS, "exit_code": r.returncode, "executions": int(runs[-1]) if runs else None,
            "crashes": "no" if r.returncode == 0 else "see fuzz/artifacts"}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), None)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mib": mem, "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M")}


def save(results):
    """Write what has been measured so far (a later phase may still fail)."""
    (ROOT / "bench/results.json").write_text(json.dumps(results, indent=2) + "\n")


CONTEST_VOTES = int(os.environ.get("BANDVOTE_BENCH_CONTEST_VOTES", "60000"))
CONTEST_VOTERS = int(os.environ.get("BANDVOTE_BENCH_CONTEST_VOTERS", "20000"))


def redis(*args):
    return run(["redis-cli", "-p", os.environ.get("BANDVOTE_REDIS_PORT", "6379"), *args])


def contest_replay(topic, tag, cap):
    """One consumer over the whole contest topic (fresh group, prefix,
    collection), the contest defined with `cap` votes per voter (0: no cap).
    Progress is the contest's applied votes (every status)."""
    prefix = f"{tag}:"
    definition = {"id": "bench", "title": "bench", "roster": [], "opens_at_ms": 0, "closes_at_ms": 4102444800000,
                  "votes_per_voter": cap, "revote": "refuse", "voters": "id"}
    redis("SET", f"{prefix}contest-def:bench", json.dumps(definition))
    def applied():
        return sum(int(x) for x in redis("HVALS", f"{prefix}contest:bench:status").split() if x.lstrip("-").isdigit())
    res = timed_replay(f"consumer-{tag}", {
        "BANDVOTE_TOPIC": topic, "BANDVOTE_DLQ_TOPIC": f"{TOPIC}-dlq", "BANDVOTE_CONSUMER_GROUP": tag,
        "BANDVOTE_REDIS_PREFIX": prefix, "BANDVOTE_MONGO_COLLECTION": tag.replace("-", "_"),
        "BANDVOTE_CONSUMER_ADMIN_LISTEN": "127.0.0.1:29185"}, applied, CONTEST_VOTES, 300)
    statuses = dict(zip(*[iter(redis("HGETALL", f"{prefix}contest:bench:status").split())] * 2))
    res["by_status"] = {k: int(v) for k, v in statuses.items()}
    voters_key = f"{prefix}contest:bench:voters"
    hlen = redis("HLEN", voters_key).strip()
    usage = redis("MEMORY", "USAGE", voters_key, "SAMPLES", "0").strip()
    if hlen.isdigit() and int(hlen) and usage.isdigit():
        res["voters"], res["voters_hash_bytes"] = int(hlen), int(usage)
        res["redis_bytes_per_voter"] = round(int(usage) / int(hlen), 1)
    return res


def contest_cost():
    """The consumer's cost of a per-voter cap: the same topic of contest
    votes (CONTEST_VOTES over CONTEST_VOTERS voters, keyed by voter) replayed
    with no cap and with a cap of 2, alternated, median of REPEATS each; and
    Redis bytes per voter (the per-voter hash, MEMORY USAGE / fields)."""
    if CONTEST_VOTES <= 0:
        return None
    topic = f"contest-{STAMP}"
    run(["nisshi", "topic", "create", topic, "--partitions", "6", "--broker", f"tcp://{BROKERS}"])
    log(f"contest: producing {CONTEST_VOTES} contest votes from {CONTEST_VOTERS} voters to {topic}")
    run([str(BIN / "bandvote-load"), "--mode", "kafka", "--target", BROKERS, "--topic", topic, "--concurrency", "1024",
         "--duration", "3600", "--max-votes", str(CONTEST_VOTES), "--quiet", "--id-prefix", topic,
         "--contest", "bench", "--voters", str(CONTEST_VOTERS)])
    runs = {"no_cap": [], "cap_2": []}
    for rep in range(REPEATS):
        for name, cap in (("no_cap", 0), ("cap_2", 2))[:: 1 if rep % 2 == 0 else -1]:
            r = contest_replay(topic, f"contest-{name}-{rep}-{STAMP}", cap)
            log(f"contest replay {name} #{rep + 1}: {r}")
            runs[name].append(r)
    def med(rs):
        xs = [x["votes_per_sec"] for x in rs if x.get("votes_per_sec")]
        return median(xs) if xs else None
    capped = runs["cap_2"][-1]
    res = {"votes": CONTEST_VOTES, "voters": CONTEST_VOTERS, "runs": runs,
           "no_cap_votes_per_sec": med(runs["no_cap"]), "cap_2_votes_per_sec": med(runs["cap_2"]),
           "cap_2_by_status": capped.get("by_status"), "redis_bytes_per_voter": capped.get("redis_bytes_per_voter")}
    if res["no_cap_votes_per_sec"] and res["cap_2_votes_per_sec"]:
        res["cap_cost"] = round(1 - res["cap_2_votes_per_sec"] / res["no_cap_votes_per_sec"], 3)
    log(f"contest: {res['no_cap_votes_per_sec']} votes/s without a cap, {res['cap_2_votes_per_sec']} with a cap of 2; "
        f"{res['redis_bytes_per_voter']} Redis bytes per voter")
    return res


def main():
    os.chdir(ROOT)
    subprocess.run(["bash", "scripts/setup.sh", "bench"], check=True)
    wasm = run(["bash", "scripts/build-wasm.sh"]).strip()
    subprocess.run(["bash", "scripts/services.sh", "start"], check=True)
    if not shutil.which("wrk"):
        log("apt-get install wrk")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    log("building release binaries")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "bandvote-host", "-p", "bandvote-grpc",
                    "-p", "bandvote-consumer", "-p", "bandvote-load", "-p", "bandvote-web"], check=True)
    run(["nisshi", "topic", "create", TOPIC, "--partitions", "6", "--broker", f"tcp://{BROKERS}"])
    run(["nisshi", "topic", "create", f"{TOPIC}-dlq", "--partitions", "1", "--broker", f"tcp://{BROKERS}"])
    # As deployed: the intakes claim idempotency keys in Redis (the raw producer, the broker's ceiling, does not).
    common = {"BANDVOTE_TOPIC": TOPIC, "BANDVOTE_IDEMPOTENCY_REDIS_URL": REDIS_URL}
    # The intakes refuse votes (503) while the current contest is not known: record "no contest".
    subprocess.run([str(BIN / "bandvote-consumer"), "contest", "archive"], check=True, capture_output=True,
                   env={**os.environ, "BANDVOTE_MONGO_COLLECTION": f"bench_{STAMP}"})
    host = start("host", [str(BIN / "bandvote-host"), "--component", wasm, "--listen", "127.0.0.1:28080",
                          "--admin-listen", "127.0.0.1:29180"], common)
    native = start("native", [str(BIN / "bandvote-native-intake"), "127.0.0.1:28084"], common)
    # The same host without key claims (no Redis): the claims phase's baseline.
    unclaimed = start("host-unclaimed", [str(BIN / "bandvote-host"), "--component", wasm, "--listen", "127.0.0.1:28088",
                                         "--admin-listen", "127.0.0.1:29186"], {"BANDVOTE_TOPIC": TOPIC})
    start("ceiling", [str(BIN / "bandvote-ceiling"), "127.0.0.1:28085"])
    # The sandbox's own cost: the same host runtime and intake code, publisher acknowledging at once.
    sandbox_p = start("sandbox", [str(BIN / "bandvote-sandbox"), "--listen", "127.0.0.1:28086"], {"BANDVOTE_INTAKE_WASM": wasm})
    native_instant_p = start("native-instant", [str(BIN / "bandvote-native-intake"), "127.0.0.1:28087", "--instant"])
    grpc = start("grpc", [str(BIN / "bandvote-grpc"), "--listen", "127.0.0.1:25051", "--rest-listen", "127.0.0.1:28082",
                          "--admin-listen", "127.0.0.1:29182"], common)
    start("consumer", [str(BIN / "bandvote-consumer")], {**common, "BANDVOTE_DLQ_TOPIC": f"{TOPIC}-dlq",
          "BANDVOTE_CONSUMER_GROUP": f"bench-{STAMP}", "BANDVOTE_REDIS_PREFIX": PREFIX,
          "BANDVOTE_MONGO_COLLECTION": f"bench_{STAMP}", "BANDVOTE_CONSUMER_ADMIN_LISTEN": "127.0.0.1:29181"})
    for url in ["http://127.0.0.1:29180/readyz", "http://127.0.0.1:29186/readyz", "http://127.0.0.1:28084/healthz", "http://127.0.0.1:28085/",
                "http://127.0.0.1:28086/healthz", "http://127.0.0.1:28087/healthz",
                "http://127.0.0.1:29182/readyz", "http://127.0.0.1:29181/readyz"]:
        wait_http(url)

    results = {"machine": machine(), "seconds_per_run": SECONDS, "levels": LEVELS, "repeats": REPEATS, "http": {}}
    raw_topic = f"{TOPIC}-raw"
    run(["nisshi", "topic", "create", raw_topic, "--partitions", "6", "--broker", f"tcp://{BROKERS}"])
    results["http"]["ceiling_hyper_204"] = {str(c): from_wrk(wrk("http://127.0.0.1:28085/", "ceiling (hyper 204)", c)) for c in LEVELS}
    save(results)
    targets = {
        "raw_producer": lambda c: from_load(load("kafka", BROKERS, ["--topic", raw_topic], concurrency=c)),
        "wasm_host": lambda c: from_wrk(wrk("http://127.0.0.1:28080/", "wasm host", c)),
        "native_intake": lambda c: from_wrk(wrk("http://127.0.0.1:28084/", "native intake", c)),
        "grpc_unary": lambda c: from_load(load("grpc", "http://127.0.0.1:25051", concurrency=c)),
    }
    # Whose CPU each target costs: the process serving it (the raw producer: the load generator, producer included).
    cpu_pids = {"raw_producer": None, "wasm_host": host.pid, "native_intake": native.pid, "grpc_unary": grpc.pid}
    results["capacity"] = capacity_sweep(targets, host.pid, cpu_pids)
    save(results)
    # Idempotency-key claims (issue 24, item 1): keyless votes (ids the intake
    # generates: no claim), keyed votes claimed in Redis, and keyed votes on a
    # host without claims; the same host binary, alternated, 256 in flight.
    cl = results["claims_256"] = alternated({
        "keyless": (lambda: from_wrk(wrk("http://127.0.0.1:28080/", "wasm host, keyless", 256)), host.pid),
        "keyed_claimed": (lambda: from_wrk(wrk("http://127.0.0.1:28080/", "wasm host, keyed, claims in Redis", 256, keyed=True)), host.pid),
        "keyed_unclaimed": (lambda: from_wrk(wrk("http://127.0.0.1:28088/", "wasm host, keyed, no claims", 256, keyed=True)), unclaimed.pid),
    })
    cl["ratio_claimed_to_unclaimed"] = ratio(cl["keyed_claimed"], cl["keyed_unclaimed"])
    cl["ratio_keyless_to_unclaimed"] = ratio(cl["keyless"], cl["keyed_unclaimed"])
    save(results)
    sandbox = {"wasm_instant": [], "native_instant": []}
    for rep in range(REPEATS):
        for name, port in (("wasm_instant", 28086), ("native_instant", 28087))[:: 1 if rep % 2 == 0 else -1]:
            sandbox[name].append(from_wrk(wrk(f"http://127.0.0.1:{port}/", f"{name} (publisher acks at once)", 256)))
    sb = results["sandbox_256"] = {n: medians(rs) for n, rs in sandbox.items()}
    sb["ratio_wasm_to_native"] = ratio(sb["wasm_instant"], sb["native_instant"])
    sb["ratio_wasm_to_hyper"] = ratio(sb["wasm_instant"], results["http"]["ceiling_hyper_204"]["256"])
    save(results)
    results["wait_256"] = wait_phase(wasm, {"sandbox": sandbox_p.pid, "native_instant": native_instant_p.pid})
    save(results)
    results["hand_off_256"] = hand_off_phase(wasm, common, host.pid)
    save(results)
    results["reuse_256"] = reuse_phase(wasm, common, sb["native_instant"])
    save(results)
    try:
        results["spin_route"] = spin_route_phase(host.pid, grpc.pid, 28082)
    except Exception as e:  # reported in results.md, the rest of the run goes on
        log(f"the Spin route phase failed: {e}")
        results["spin_route"] = {"error": str(e)[-500:]}
    save(results)
    wasm_max = max(results["capacity"]["wasm_host"][str(c)]["acked_per_sec"] for c in LEVELS)
    results["open_loop_wasm_host"] = {"measured_max_per_sec": wasm_max, "rates": open_loop("http://127.0.0.1:28080/", wasm_max)}
    host_metrics = metrics("http://127.0.0.1:29180/metrics")
    results["host"] = {"instantiation": histogram_quantiles(host_metrics, "bandvote_host_instantiate_seconds"),
                       "instances": counter_by_label(host_metrics, "bandvote_host_instances_total"),
                       "instances_retired": counter_by_label(host_metrics, "bandvote_host_instances_retired_total")}
    save(results)

    rate = max(1.0, 0.5 * wasm_max)
    log(f"end to end at 50% of the wasm max: {rate:.0f} votes/s")
    e2e = load("http", "http://127.0.0.1:28080/", ["--rate", str(rate), "--e2e-redis", REDIS_URL, "--e2e-prefix", PREFIX, "--e2e-topic", TOPIC])
    results["end_to_end"] = {"rate_votes_per_sec": round(rate, 1), "acked": e2e["acked"], "samples": e2e["e2e_samples"],
                             "ack_to_counted_ms_p50": e2e["e2e_ms_p50"], "ack_to_counted_ms_p99": e2e["e2e_ms_p99"]}

    log("gRPC unary and streaming (bandvote-load)")
    results["grpc"] = {"stream_batches_of_50": load("grpc-stream", "http://127.0.0.1:25051", ["--batch", "50"], concurrency=8)}

    save(results)
    # The live consumer may still be applying: wait until the log stops growing, then count it.
    rc_env = {**os.environ, "BANDVOTE_REDIS_PREFIX": PREFIX, "BANDVOTE_MONGO_COLLECTION": f"bench_{STAMP}"}
    records, previous = 0, -1
    for _ in range(60):
        out = subprocess.run([str(BIN / "bandvote-consumer"), "recount"], env=rc_env, capture_output=True, text=True).stdout
        m = re.search(r"vote log: (\d+) votes", out)
        records = int(m.group(1)) if m else 0
        if records == previous:
            break
        previous = records
        time.sleep(1)
    results["consumer"] = consumer_throughput(records)
    rc = subprocess.run([str(BIN / "bandvote-consumer"), "recount"], capture_output=True, text=True,
                        env={**os.environ, "BANDVOTE_REDIS_PREFIX": PREFIX, "BANDVOTE_MONGO_COLLECTION": f"bench_{STAMP}"})
    results["consumer"]["recount_of_live_consumer"] = "no difference" if rc.returncode == 0 else "DIFFERENCES: " + rc.stdout[-500:]
    save(results)
    results["contest"] = contest_cost()
    save(results)
    results["scale"] = scale_memory()
    save(results)
    results["bulletin"] = bulletin_scale()
    save(results)
    results["fuzz"] = fuzz()
    results["targets"] = check_targets(results)
    results["targets_issue_24"] = check_issue_24(results)
    results["targets_issue_32"] = check_issue_32(results)
    save(results)
    (ROOT / "bench/results.md").write_text(markdown(results))
    print(markdown(results))


def check_targets(r):
    """Issue 13's targets, each checked against this run's figures (nothing
    here is written by hand: `met` is the comparison's result)."""
    cap, levels = r["capacity"], [str(c) for c in r["levels"]]
    wasm_max = r["open_loop_wasm_host"]["measured_max_per_sec"]
    top = levels[-1]
    w = cap["wasm_host"][top]
    below_max = [x for x in r["open_loop_wasm_host"]["rates"] if x["fraction_of_max"] < 1]
    rss_mb = cap["host_peak_rss_mib"].get(top, 0) * 1.048576
    pss_mb = cap["host_peak_pss_mib"].get(top, 0) * 1.048576
    rows = [
        (f"wasm host ≥ 0.8 × raw producer at {lv} in flight", f"{cap['ratios'][lv]['wasm_to_raw_producer']} ×",
         cap["ratios"][lv]["wasm_to_raw_producer"] >= 0.8) for lv in levels
    ] + [
        (f"≥ 10,000 acked/s through the wasm host at {top} connections", f"{w['acked_per_sec']:.0f}/s", w["acked_per_sec"] >= 10_000),
        (f"p99 < 500 ms at {top} connections", f"{w['latency_ms_p99']} ms", w["latency_ms_p99"] < 500),
        (f"no errors other than 503 at {top} connections", f"{w['errors']} errors", w["errors"] == 0),
        ("503s only above the measured maximum (open loop below 1 × max)",
         ", ".join(f"{100 * x['refused_share']:.1f}% at {x['fraction_of_max']} ×" for x in below_max),
         all(x["refused_share"] == 0 for x in below_max)),
        ("wasm / native with the instant publisher ≥ 0.8", f"{r['sandbox_256']['ratio_wasm_to_native']}", r["sandbox_256"]["ratio_wasm_to_native"] >= 0.8),
        ("consumer ≥ 2 × the intake's maximum", f"{r['consumer'].get('votes_per_sec')} vs 2 × {wasm_max:.0f}",
         (r["consumer"].get("votes_per_sec") or 0) >= 2 * wasm_max),
        ("ack → counted p99 < 500 ms at 50% of maximum", f"{r['end_to_end']['ack_to_counted_ms_p99']} ms", r["end_to_end"]["ack_to_counted_ms_p99"] < 500),
        (f"host RSS < 150 MB at {top} connections", f"{rss_mb:.0f} MB (PSS {pss_mb:.0f} MB)", rss_mb < 150),
    ]
    cpu256 = cap["wasm_host"].get("256", {}).get("cpu_us_per_acked")
    if cpu256 is not None:
        rows.append(("host CPU per acknowledged vote ≤ 100 µs at 256 in flight (issue 24)", f"{cpu256} µs", cpu256 <= 100))
    ct = r.get("contest") or {}
    if ct.get("cap_cost") is not None:
        rows.append(("consumer with a per-voter cap costs ≤ 10% (issue 22)",
                     f"{ct['cap_2_votes_per_sec']} vs {ct['no_cap_votes_per_sec']} votes/s: {100 * ct['cap_cost']:.1f}%", ct["cap_cost"] <= 0.10))
    return [{"target": t, "measured": m, "met": bool(ok)} for t, m, ok in rows]


def check_issue_24(r):
    """Issue 24's targets, each checked against this run's figures, with the
    figures that say why where one is not met."""
    cap, levels, top = r["capacity"], [str(c) for c in r["levels"]], str(r["levels"][-1])
    w, sb = cap["wasm_host"], r["sandbox_256"]
    cpu = lambda t, lv: cap[t][lv].get("cpu_us_per_acked")
    below_max = [x for x in r["open_loop_wasm_host"]["rates"] if x["fraction_of_max"] < 1]
    rss_mb = cap["host_peak_rss_mib"].get(top, 0) * 1.048576
    rows = [(f"wasm host ≥ 0.8 × the raw VotePublisher at {lv} in flight", f"{cap['ratios'][lv]['wasm_to_raw_producer']} ×",
             cap["ratios"][lv]["wasm_to_raw_producer"] >= 0.8,
             f"CPU per acked vote: wasm host {cpu('wasm_host', lv)} µs, raw producer + load generator {cpu('raw_producer', lv)} µs, "
             f"on the 2 cores the broker also uses") for lv in levels]
    rows += [
        ("sandbox alone (instant publisher): wasm / native ≥ 0.5", f"{sb['ratio_wasm_to_native']}", sb["ratio_wasm_to_native"] >= 0.5,
         f"{sb['wasm_instant']['acked_per_sec']:.0f} vs {sb['native_instant']['acked_per_sec']:.0f} requests/s"),
        ("host CPU per acknowledged vote ≤ 100 µs at 256 in flight", f"{cpu('wasm_host', '256')} µs", (cpu("wasm_host", "256") or 1e9) <= 100,
         f"native intake {cpu('native_intake', '256')} µs, gRPC producer {cpu('grpc_unary', '256')} µs"),
        (f"p99 < 500 ms at {top}", f"{w[top]['latency_ms_p99']} ms", w[top]["latency_ms_p99"] < 500, ""),
        (f"host RSS < 150 MB at {top}", f"{rss_mb:.0f} MB", rss_mb < 150, f"PSS {cap['host_peak_pss_mib'].get(top)} MiB"),
        (f"no errors other than 503 at {top}", f"{w[top]['errors']} errors", w[top]["errors"] == 0, ""),
        ("503s only above the maximum (open loop below 1 × max)",
         ", ".join(f"{100 * x['refused_share']:.1f}% at {x['fraction_of_max']} ×" for x in below_max),
         all(x["refused_share"] == 0 for x in below_max),
         ", ".join(f"p99 {x['latency_ms_p99']} ms at {x['fraction_of_max']} ×" for x in below_max)),
    ]
    return [{"target": t, "measured": m, "met": bool(ok), "figures": why} for t, m, ok, why in rows]


def check_issue_32(r):
    """Issue 32's targets, each checked against this run's figures."""
    cap, top = r["capacity"], str(r["levels"][-1])
    w, sb = cap["wasm_host"], r["sandbox_256"]
    cpu = lambda t, lv: cap[t].get(lv, {}).get("cpu_us_per_acked")
    host, native = cpu("wasm_host", "256"), cpu("native_intake", "256")
    wasm_max = r["open_loop_wasm_host"]["measured_max_per_sec"]
    below_max = [x for x in r["open_loop_wasm_host"]["rates"] if x["fraction_of_max"] < 1]
    rows = [
        ("host CPU per acknowledged vote ≤ 1.5 × the native intake's at 256 in flight",
         f"{round(host / native, 2) if host and native else None} ×", bool(host and native and host <= 1.5 * native),
         f"wasm host {host} µs, native intake {native} µs"),
        ("host CPU per acknowledged vote ≤ 100 µs at 256 in flight", f"{host} µs", (host or 1e9) <= 100, ""),
        ("sandbox alone (instant publisher): wasm / native ≥ 0.6", f"{sb['ratio_wasm_to_native']}", sb["ratio_wasm_to_native"] >= 0.6,
         f"{sb['wasm_instant']['acked_per_sec']:.0f} vs {sb['native_instant']['acked_per_sec']:.0f} requests/s"),
    ]
    sr = r.get("spin_route") or {}
    if sr.get("error"):
        rows.append(("Spin route ≥ 0.8 × the wasm host", "not measured", False, sr["error"][-200:]))
    for lv in (k for k in sr if k.isdigit()):
        o = sr[lv]
        rows.append((f"Spin route (wasmtime serve {sr['wasmtime']} + REST bridge) ≥ 0.8 × the wasm host at {lv} connections",
                     f"{o['ratio_spin_to_host']} ×", o["ratio_spin_to_host"] >= 0.8,
                     f"{o['spin_route']['acked_per_sec']:.0f} vs {o['wasm_host']['acked_per_sec']:.0f} votes/s; CPU per vote "
                     f"{o['spin_route'].get('cpu_us_per_acked')} µs (serve {o['spin_route'].get('cpu_us_per_acked_serve')} + bridge "
                     f"{o['spin_route'].get('cpu_us_per_acked_bridge')}) vs {o['wasm_host'].get('cpu_us_per_acked')} µs; "
                     f"{o['spin_route']['bridge_connections_per_request']} bridge connections opened per request"))
    rows += [
        ("consumer ≥ 2 × the wasm host's maximum", f"{round((r['consumer'].get('votes_per_sec') or 0) / max(1, wasm_max), 2)} ×",
         (r["consumer"].get("votes_per_sec") or 0) >= 2 * wasm_max, f"{r['consumer'].get('votes_per_sec')} votes/s vs {wasm_max:.0f}/s"),
        (f"p99 < 500 ms at {top}", f"{w[top]['latency_ms_p99']} ms", w[top]["latency_ms_p99"] < 500, ""),
        (f"no errors other than 503 at {top}", f"{w[top]['errors']} errors", w[top]["errors"] == 0, ""),
        ("no 503 below the maximum (open loop below 1 × max)",
         ", ".join(f"{100 * x['refused_share']:.1f}% at {x['fraction_of_max']} ×" for x in below_max),
         all(x["refused_share"] == 0 for x in below_max), ""),
    ]
    return [{"target": t, "measured": m, "met": bool(ok), "figures": why} for t, m, ok, why in rows]


def cpu_cell(x, refused=True):
    """A table cell: acked/s (p50 / p99 ms[, share refused]; CPU per vote)."""
    share = f", {100 * x['refused_share']:.1f}%" if refused else ""
    return f"{x['acked_per_sec']:.0f} ({x['latency_ms_p50']} / {x['latency_ms_p99']}{share}; {x.get('cpu_us_per_acked')} µs CPU)"


def markdown(r):
    m, cap = r["machine"], r["capacity"]
    out = [f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_mib']} MiB, everything on loopback "
           f"(intake, nisshi, Redis, MongoDB, consumer, load generator). {r['seconds_per_run']:.0f} s per run; "
           f"each figure the median of {r['repeats']} runs, targets alternated.", "",
           "## Capacity: acked votes/s (p50 / p99 ms, share refused with 503) by votes in flight", "",
           "| in flight | raw VotePublisher (broker ceiling) | wasm host | native intake | gRPC unary | hyper 204 | wasm / raw | wasm / native | host RSS / PSS MiB |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    cell = lambda x: f"{x['acked_per_sec']:.0f} ({x['latency_ms_p50']} / {x['latency_ms_p99']}, {100 * x['refused_share']:.1f}%)"
    for c in map(str, r["levels"]):
        ceiling = r["http"]["ceiling_hyper_204"][c]
        out.append(f"| {c} | {cell(cap['raw_producer'][c])} | {cell(cap['wasm_host'][c])} | {cell(cap['native_intake'][c])} | "
                   f"{cell(cap['grpc_unary'][c])} | {ceiling['acked_per_sec']:.0f} | {cap['ratios'][c]['wasm_to_raw_producer']} | "
                   f"{cap['ratios'][c]['wasm_to_native']} | {cap['host_peak_rss_mib'].get(c)} / {cap['host_peak_pss_mib'].get(c)} |")
    if any(cap["wasm_host"][str(c)].get("cpu_us_per_acked") is not None for c in r["levels"]):
        out += ["", "## CPU per acknowledged vote (µs of the serving process: user + system, over each run ÷ acked votes)", "",
                "| in flight | raw VotePublisher (load generator + producer) | wasm host | native intake | gRPC producer |", "|---:|---:|---:|---:|---:|"]
        for c in map(str, r["levels"]):
            out.append(f"| {c} | " + " | ".join(str(cap[t][c].get("cpu_us_per_acked")) for t in ("raw_producer", "wasm_host", "native_intake", "grpc_unary")) + " |")
    ol = r["open_loop_wasm_host"]
    out += ["", f"## Open loop: fixed arrival rates at the wasm host (max measured above: {ol['measured_max_per_sec']:.0f}/s)", "",
            "| offered/s | acked/s | p50 ms | p99 ms | refused (503) | errors |", "|---:|---:|---:|---:|---:|---:|"]
    for x in ol["rates"]:
        out.append(f"| {x['offered_per_sec']:.0f} ({x['fraction_of_max']} × max) | {x['acked_per_sec']:.0f} | {x['latency_ms_p50']} | "
                   f"{x['latency_ms_p99']} | {100 * x['refused_share']:.1f}% | {x['errors']} |")
    if r.get("claims_256"):
        cl = r["claims_256"]
        out += ["", "## Idempotency-key claims at the wasm host, 256 connections (issue 24)", "",
                "| keyless (generated ids: no claim) | keyed, claimed in Redis | keyed, host without claims | claimed / unclaimed | keyless / unclaimed |",
                "|---:|---:|---:|---:|---:|",
                f"| {cpu_cell(cl['keyless'])} | {cpu_cell(cl['keyed_claimed'])} | {cpu_cell(cl['keyed_unclaimed'])} | {cl['ratio_claimed_to_unclaimed']} | {cl['ratio_keyless_to_unclaimed']} |"]
    sb = r["sandbox_256"]
    out += ["", "## The sandbox alone: publisher acknowledging at once, 256 connections", "",
            "| wasm host runtime | native intake | hyper 204 | wasm / native | wasm / hyper |", "|---:|---:|---:|---:|---:|",
            f"| {cell(sb['wasm_instant'])} | {cell(sb['native_instant'])} | {r['http']['ceiling_hyper_204']['256']['acked_per_sec']:.0f} | "
            f"{sb['ratio_wasm_to_native']} | {sb['ratio_wasm_to_hyper']} |"]
    if r.get("wait_256"):
        w = r["wait_256"]
        out += ["", f"## Waiting for the acknowledgement: a publisher that acknowledges at once or after {w['delay_ms']} ms, 256 connections, alternated (issue 32)", "",
                f"| intake | publisher at once | after {w['delay_ms']} ms | µs of CPU per request the wait adds |", "|---|---:|---:|---:|",
                f"| wasm host runtime (sandbox), hand-off | {cpu_cell(w['wasm_at_once'], refused=False)} | {cpu_cell(w['wasm_after_wait'], refused=False)} | {w['wasm_cpu_us_added_by_wait']} |",
                *([f"| wasm host runtime (sandbox), instances wait in publish | (same) | {cpu_cell(w['wasm_after_wait_in_instance'], refused=False)} | "
                   f"{w['wasm_in_instance_cpu_us_added_by_wait']} |"] if w.get("wasm_after_wait_in_instance") else []),
                f"| native intake | {cpu_cell(w['native_at_once'], refused=False)} | {cpu_cell(w['native_after_wait'], refused=False)} | {w['native_cpu_us_added_by_wait']} |"]
    if r.get("hand_off_256"):
        h = r["hand_off_256"]
        out += ["", "## Hand-off: the wasm host as deployed, instances ending before Kafka answers (host replies) or waiting in publish, 256 connections, alternated (issue 32)", "",
                "| host replies (default) | instances wait in publish (as under Spin) | replies / waits |", "|---:|---:|---:|",
                f"| {cpu_cell(h['host_replies'])} | {cpu_cell(h['instance_waits'])} | {h['ratio_host_replies_to_instance_waits']} |"]
    if r.get("reuse_256"):
        ru = r["reuse_256"]
        out += ["", "## Instance reuse (--instance-reuse N), 256 connections, alternated (issue 24)", "",
                "| N | sandbox (instant publisher) | sandbox wasm / native | wasm host as deployed | host / host at N = 1 | host instances fresh / reused |",
                "|---:|---:|---:|---:|---:|---:|"]
        for n in ru["host"]:
            h = ru["host"][n]
            out.append(f"| {n} | {cpu_cell(ru['sandbox'][n], refused=False)} | {ru['sandbox'][n]['ratio_wasm_to_native']} | {cpu_cell(h, refused=False)} | {h['ratio_to_reuse_1']} | "
                       f"{h['instances'].get('fresh', 0)} / {h['instances'].get('reused', 0)} |")
    if r.get("spin_route", {}).get("error"):
        out += ["", f"## The Spin route (issue 32): not measured: {r['spin_route']['error'][-300:]}"]
    elif r.get("spin_route"):
        sr = r["spin_route"]
        out += ["", f"## The Spin route: the Spin artifact under wasmtime serve {sr['wasmtime']} (SpinKube's shim) through the REST bridge, alternated with the wasm host (issue 32)", "",
                "| connections | Spin route (CPU: serve + bridge) | of it µs CPU per vote: serve / bridge | wasm host | Spin / host | bridge connections opened per request |",
                "|---:|---:|---:|---:|---:|---:|"]
        for lv in (k for k in sr if k.isdigit()):
            o = sr[lv]
            split = f"{o['spin_route'].get('cpu_us_per_acked_serve')} / {o['spin_route'].get('cpu_us_per_acked_bridge')}"
            out.append(f"| {lv} | {cpu_cell(o['spin_route'])} | {split} | {cpu_cell(o['wasm_host'])} | {o['ratio_spin_to_host']} | "
                       f"{o['spin_route']['bridge_connections_per_request']} |")
    e, c, hs, g = r["end_to_end"], r["consumer"], r["host"], r["grpc"]["stream_batches_of_50"]
    out += ["", f"- gRPC client streaming (batches of 50, 8 streams): {g['acked_per_sec']:.0f} votes/s, p99 {g['latency_ms_p99']} ms per batch",
            f"- ack → counted in Redis at {e['rate_votes_per_sec']:.0f} votes/s (50% of the wasm max): p50 {e['ack_to_counted_ms_p50']} ms, "
            f"p99 {e['ack_to_counted_ms_p99']} ms ({e['samples']} samples)",
            f"- consumer replaying this run's topic: {c.get('votes_per_sec')} votes/s applied to Redis + MongoDB ({c.get('votes')} votes in {c.get('seconds')} s)"
            + (f"; reading at most 1 MiB per partition per fetch (librdkafka's default, the consumer's before): {c['fetch_1mib'].get('votes_per_sec')} votes/s "
               f"({c['fetch_1mib'].get('votes')} votes in {c['fetch_1mib'].get('seconds')} s)" if c.get("fetch_1mib") else ""),
            f"- instantiation: mean {hs['instantiation']['mean_us']} µs (p99 ≤ {hs['instantiation']['p99_le_us']} µs, {hs['instantiation']['count']} instances)"
            + (f"; the wasm host's requests ran on {hs['instances']} instances, retired {hs.get('instances_retired')}" if hs.get("instances") else "")]
    if r.get("scale"):
        sc = r["scale"]
        out.append(f"- scale: {sc['counted']} of {sc['votes']} votes replayed through the consumer: {sc.get('consumer_votes_per_sec')} votes/s past the first 10%; "
                   f"its Redis keys (MEMORY USAGE) {sc['prefix_key_bytes_at_10pct']} B at 10%, {sc['prefix_key_bytes_after']} B at the end: "
                   f"**{sc.get('bytes_per_vote_past_10pct')} bytes per vote** past 10%")
    if r.get("contest"):
        ct = r["contest"]
        out.append(f"- contest (issue 22): the consumer replaying {ct['votes']} contest votes of {ct['voters']} voters: "
                   f"{ct['no_cap_votes_per_sec']} votes/s without a per-voter cap, {ct['cap_2_votes_per_sec']} with a cap of 2 "
                   f"(cost {100 * ct['cap_cost']:.1f}%; statuses {ct['cap_2_by_status']}); "
                   f"**{ct['redis_bytes_per_voter']} Redis bytes per voter** (the per-voter hash)" if ct.get("cap_cost") is not None else
                   f"- contest (issue 22): replays incomplete: {ct}")
    if r.get("bulletin"):
        bu = r["bulletin"]
        out.append(f"- bulletin (issue 33) of a certified contest of {bu['votes']} votes: certify's pass writes and indexes it in {bu['build_seconds']} s "
                   f"({bu['build_lines_per_sec']:.0f} lines/s); the download reads {bu['download_bytes']} bytes in {bu['download_seconds']} s; "
                   f"a receipt's proof takes p50 {bu['proof_ms_p50']} ms, p99 {bu['proof_ms_p99']} ms ({bu['proofs']} proofs, ≤ {bu['proof_path_hashes_max']} hashes each, all verified); "
                   f"peak memory of the process {bu['peak_rss_kb_after_store'] // 1024} MB before the pass (the Kafka fingerprints included), "
                   f"{bu['peak_rss_kb_after_build'] // 1024} MB after it" if "error" not in bu else f"- bulletin (issue 33): failed: {bu['error'][-200:]}")
    if r.get("fuzz"):
        out.append(f"- fuzz (parse_body, {r['fuzz']['seconds']} s): {r['fuzz']['executions']} executions, exit {r['fuzz']['exit_code']}")
    if r.get("targets"):
        out += ["", "## Issue 13's targets, checked against the figures above", "", "| target | measured | met |", "|---|---:|:---:|"]
        out += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |" for t in r["targets"]]
    if r.get("targets_issue_24"):
        out += ["", "## Issue 24's targets, checked against the figures above", "", "| target | measured | met | the figures behind it |", "|---|---:|:---:|---|"]
        out += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} | {t['figures']} |" for t in r["targets_issue_24"]]
    if r.get("targets_issue_32"):
        out += ["", "## Issue 32's targets, checked against the figures above", "", "| target | measured | met | the figures behind it |", "|---|---:|:---:|---|"]
        out += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} | {t['figures']} |" for t in r["targets_issue_32"]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
