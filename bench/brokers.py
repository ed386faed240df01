#!/usr/bin/env python3
"""Which storage engine should nisshi, our Kafka broker, run on? Measured, not
assumed: sqlite and PostgreSQL side by side in one run, alternated and repeated
(median of BANDVOTE_BENCH_REPEAT, default 3), written to bench/brokers.json and
bench/brokers.md. The verdict there comes from the comparison below.

    bench/run.sh --brokers-only          # just this comparison
    (bench/run.sh runs it first)

Per engine, each on a fresh broker of its own (port 29092, data emptied):
  * acknowledged votes/s of the intakes' own VotePublisher (idempotent,
    acks=all, lz4) at 32, 256 and 1024 votes in flight (`bandvote-load --mode
    kafka`), with p50/p99;
  * kill -9 of the broker in the middle of a 256-in-flight run: how long from
    the restart until the next acknowledged vote, and whether the topic kept
    every vote acknowledged before the kill;
  * the soak test (`crates/service-tests/tests/soak.rs`: HTTP + gRPC clients
    retrying, kill -9 of broker, host, consumer, gRPC producer) on that engine:
    pass/fail and acknowledged votes/s through it.
"""

import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

from run import BIN, ROOT  # one place says where the repository and the release binaries are

SECONDS = float(os.environ.get("BANDVOTE_BENCH_BROKER_SECONDS", "6"))
REPEAT = int(os.environ.get("BANDVOTE_BENCH_REPEAT", "3"))
IN_FLIGHT = [32, 256, 1024]
ENGINES = ["sqlite", "postgres"]
KAFKA_PORT = int(os.environ.get("BANDVOTE_KAFKA_PORT", "29092"))
BROKERS = f"127.0.0.1:{KAFKA_PORT}"


def log(msg):
    print(f"[bench brokers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def services(*args, engine):
    env = {**os.environ, "BANDVOTE_KAFKA_STORAGE": engine}
    r = subprocess.run(["bash", "scripts/services.sh", *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"services.sh {' '.join(args)} ({engine}): {r.stderr[-2000:]}")
    return r.stderr


def fresh_broker(engine):
    """Stop the broker, empty its data (and its PostgreSQL), start it on `engine`."""
    services("stop", "kafka", engine=engine)
    state = pathlib.Path(os.environ["BANDVOTE_STATE"])
    subprocess.run(["rm", "-rf", str(state / "kafka"), f"/var/tmp/bandvote-pg/{KAFKA_PORT - 3000}", str(state / "pg")], check=True)
    services("start", "kafka", engine=engine)


def load(topic, concurrency, seconds, prefix):
    out = subprocess.run([str(BIN / "bandvote-load"), "--mode", "kafka", "--target", BROKERS, "--topic", topic,
                          "--concurrency", str(concurrency), "--duration", str(seconds), "--quiet", "--id-prefix", prefix],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def create_topic(name, partitions=6):
    subprocess.run(["nisshi", "topic", "create", name, "--partitions", str(partitions), "--broker", f"tcp://{BROKERS}"],
                   check=True, capture_output=True)


def throughput(engine, rep):
    rows = {}
    for n in IN_FLIGHT:
        topic = f"ceiling-{engine}-{rep}-{n}"
        create_topic(topic)
        r = load(topic, n, SECONDS, f"{topic}")
        rows[n] = {"acked_per_sec": round(r["acked_per_sec"], 1), "p50_ms": r["latency_ms_p50"], "p99_ms": r["latency_ms_p99"],
                   "errors": r["errors"], "overloaded": r["overloaded"]}
        log(f"{engine} rep {rep + 1}: {n:>5} in flight → {r['acked_per_sec']:.0f} acked/s (p50 {r['latency_ms_p50']} ms, p99 {r['latency_ms_p99']} ms)")
    return rows


def kill_broker_mid_run(engine):
    """kill -9 the broker 3 s into a 256-in-flight run; restart it at once."""
    topic = f"kill-{engine}"
    create_topic(topic)
    state = pathlib.Path(os.environ["BANDVOTE_STATE"])
    p = subprocess.Popen([str(BIN / "bandvote-load"), "--mode", "kafka", "--target", BROKERS, "--topic", topic,
                          "--concurrency", "256", "--duration", "12", "--quiet", "--id-prefix", topic],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    pid = int((state / "kafka.pid").read_text())
    os.kill(pid, 9)
    killed = time.time()
    time.sleep(0.5)
    services("start", "kafka", engine=engine)
    restarted = time.time()
    # First acknowledged vote after the restart: single-vote publishes, retried,
    # while the interrupted run goes on.
    recovered = None
    for i in range(120):
        try:
            one = load(topic, 1, 1, f"{topic}-probe-{i}")
            if one["acked"] > 0:
                recovered = round(time.time() - restarted, 2)
                break
        except subprocess.CalledProcessError:
            pass
    out, _ = p.communicate(timeout=120)
    r = json.loads(out)
    # Every vote acknowledged during the run must be in the topic.
    in_topic = topic_count(topic)
    return {"acked_during_run": r["acked"], "failed_during_run": r["errors"], "restart_to_ack_s": recovered,
            "records_in_topic": in_topic, "acked_all_in_topic": in_topic is not None and in_topic >= r["acked"],
            "down_s": round(restarted - killed, 2)}


def topic_count(topic):
    """Records the topic holds (sum of high - low watermarks), via `bandvote-load --mode count`."""
    r = subprocess.run([str(BIN / "bandvote-load"), "--mode", "count", "--target", BROKERS, "--topic", topic],
                       capture_output=True, text=True)
    try:
        return json.loads(r.stdout)["records"]
    except (ValueError, KeyError):
        return None


def soak(engine):
    env = {**os.environ, "BANDVOTE_KAFKA_STORAGE": engine, "BANDVOTE_SOAK_SECONDS": os.environ.get("BANDVOTE_SOAK_SECONDS", "32")}
    started = time.time()
    r = subprocess.run(["cargo", "test", "--quiet", "-p", "bandvote-service-tests", "--test", "soak", "--", "--nocapture"],
                       env=env, capture_output=True, text=True)
    text = r.stdout + r.stderr
    m = re.search(r"\[soak\] acknowledged (\d+), counted (\d+), stored (\d+) in ([\d.]+)s \((\d+) acknowledged/s\)", text)
    res = {"passed": r.returncode == 0, "seconds": round(time.time() - started, 1)}
    if m:
        res.update(acknowledged=int(m.group(1)), counted=int(m.group(2)), stored=int(m.group(3)), acknowledged_per_sec=int(m.group(5)))
    if r.returncode != 0:
        i = text.find("panicked")
        res["failure"] = text[max(0, i - 300):i + 1200] if i >= 0 else text[-1500:]
    log(f"{engine} soak: {'passed' if res['passed'] else 'FAILED'} {res.get('acknowledged', '?')} acknowledged, "
        f"{res.get('acknowledged_per_sec', '?')}/s")
    return res


def median_rows(reps):
    out = {}
    for n in IN_FLIGHT:
        rows = [r[n] for r in reps]
        out[str(n)] = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        out[str(n)]["runs_acked_per_sec"] = [row["acked_per_sec"] for row in rows]
    return out


def verdict(res):
    """The better engine: one that passed every fault test; then the one that
    wins more of the comparisons (median acked/s at each in-flight count, and
    acknowledged/s through the whole pipeline in the soak); a tie keeps sqlite
    (no server to run beside the broker)."""
    def ok(e):
        r = res[e]
        return r["soak"]["passed"] and r["kill_9"]["acked_all_in_topic"] is not False and r["kill_9"]["restart_to_ack_s"] is not None
    rows = [(f"{n} in flight", {e: res[e]["throughput"][str(n)]["acked_per_sec"] for e in ENGINES}) for n in IN_FLIGHT]
    rows.append(("soak", {e: res[e]["soak"].get("acknowledged_per_sec", 0) for e in ENGINES}))
    wins = {e: [name for name, v in rows if v[e] > max(v[o] for o in ENGINES if o != e)] for e in ENGINES}
    passing = [e for e in ENGINES if ok(e)]
    if len(passing) == 1:
        best = passing[0]
        return best, f"the only engine that passed every fault test; wins: {', '.join(wins[best]) or 'none'}"
    best = max(ENGINES, key=lambda e: (len(wins[e]), e == "sqlite"))
    return best, "; ".join(f"{e} wins {len(wins[e])} of {len(rows)} ({', '.join(wins[e]) or '-'})" for e in ENGINES)


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_mib": mem}


def main():
    os.chdir(ROOT)
    res = {e: {"throughput_runs": []} for e in ENGINES}
    for rep in range(REPEAT):
        for engine in (ENGINES if rep % 2 == 0 else ENGINES[::-1]):  # alternate the order
            log(f"{engine}: fresh broker (rep {rep + 1}/{REPEAT})")
            fresh_broker(engine)
            res[engine]["throughput_runs"].append(throughput(engine, rep))
    for engine in ENGINES:
        fresh_broker(engine)
        res[engine]["throughput"] = median_rows(res[engine].pop("throughput_runs"))
        res[engine]["kill_9"] = kill_broker_mid_run(engine)
        log(f"{engine} kill -9: {res[engine]['kill_9']}")
        services("stop", "kafka", engine=engine)
        if engine == "postgres":
            services("start", "postgres", engine=engine)  # the soak runs its own broker on it
        res[engine]["soak"] = soak(engine)
        services("stop", "postgres", engine=engine)
    best, why = verdict(res)
    out = {"measured": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "seconds_per_run": SECONDS, "repeat": REPEAT,
           "nisshi": "0.8.1", "engines": res, "better": best, "why": why}
    (ROOT / "bench/brokers.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [f"nisshi 0.8.1 storage engines, measured {out['measured']} on {out['machine']['cpus']} cores ({out['machine']['cpu']}), "
          f"loopback; median of {REPEAT} alternated runs of {SECONDS:.0f} s; producer = the intakes' VotePublisher (idempotent, acks=all, lz4).",
          "", "| in flight | " + " | ".join(f"{e} acked/s (p50 / p99 ms)" for e in ENGINES) + " |", "|---:|" + "---:|" * len(ENGINES)]
    for n in IN_FLIGHT:
        cells = [f"{res[e]['throughput'][str(n)]['acked_per_sec']:.0f} ({res[e]['throughput'][str(n)]['p50_ms']} / {res[e]['throughput'][str(n)]['p99_ms']})" for e in ENGINES]
        md.append(f"| {n} | " + " | ".join(cells) + " |")
    md.append("")
    for e in ENGINES:
        k, s = res[e]["kill_9"], res[e]["soak"]
        md.append(f"- {e}: kill -9 mid-run (256 in flight) → next acknowledged vote {k['restart_to_ack_s']} s after the restart (1 s probes), every acknowledged vote in the topic: "
                  f"{k['acked_all_in_topic']}; soak (kill -9 of broker, host, consumer, gRPC): "
                  f"{'passed' if s['passed'] else 'FAILED'}, {s.get('acknowledged', '?')} acknowledged, {s.get('acknowledged_per_sec', '?')}/s")
    md.append(f"- better: **{best}** ({why}). Rule (bench/brokers.py `verdict`): pass every fault test, then win more of "
              f"the {len(IN_FLIGHT) + 1} comparisons; a tie keeps sqlite.")
    (ROOT / "bench/brokers.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
