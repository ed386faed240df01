"""bench/locustfile.py, a load file written the way the original system's
clients are (GET and POST tasks, both JSON shapes, `/`, `/wasm`, `/rust`,
`/grpc`), run headless by Locust itself for a bounded time against the real
pipeline: the wasm host, the gRPC client hop, the gRPC producer, nisshi and the
consumer. No request may fail, and every acknowledged POST is counted once."""

import json
import os
import pathlib
import random
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The workspace's binaries: scripts/test.sh builds them in the `demo` profile.
BIN = pathlib.Path(os.environ.get("BANDVOTE_BIN_DIR", TARGET / "debug"))
BROKERS = os.environ.get("BANDVOTE_KAFKA_BROKERS", "127.0.0.1:9092")
REDIS_PORT = os.environ.get("BANDVOTE_REDIS_PORT", "6379")
VENV_BIN = pathlib.Path(os.environ.get("BANDVOTE_CACHE", pathlib.Path.home() / ".cache/bandvote")) / "venv/bin"
USERS, SECONDS = 16, 15


_given = set()


def free_port():
    """A free port below the kernel's ephemeral range (32768+): the services'
    own outgoing connections (Kafka, Redis) cannot take it before they bind."""
    while True:
        port = random.randrange(10000, 16000)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port


def wait_ready(port, proc, within=60):
    deadline = time.time() + within
    while time.time() < deadline:
        assert proc.poll() is None, f"{proc.args[0]} exited {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{proc.args[0]} not ready on :{port}")


def redis_total(prefix):
    out = subprocess.run(["redis-cli", "-p", REDIS_PORT, "GET", f"{prefix}votes:total"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    wasm = os.environ.get("BANDVOTE_INTAKE_WASM")
    if not wasm:
        pytest.fail("BANDVOTE_INTAKE_WASM: run through scripts/test.sh")
    topic = f"locust-{uuid.uuid4().hex[:12]}"
    prefix = f"{topic}:"
    for t, parts in [(topic, "3"), (f"{topic}-dlq", "1")]:
        subprocess.run(["nisshi", "topic", "create", t, "--partitions", parts, "--broker", f"tcp://{BROKERS}"], check=True, capture_output=True)
    logs = tmp_path_factory.mktemp("locust-logs")
    p = {k: free_port() for k in ["http", "host_admin", "grpc", "rest", "grpc_admin", "hop", "hop_admin", "consumer_admin"]}
    common = dict(os.environ, BANDVOTE_TOPIC=topic, BANDVOTE_KAFKA_BROKERS=BROKERS, RUST_LOG="warn")
    specs = [
        ("bandvote-host", dict(BANDVOTE_HTTP_LISTEN=f"127.0.0.1:{p['http']}", BANDVOTE_HOST_ADMIN_LISTEN=f"127.0.0.1:{p['host_admin']}",
                               BANDVOTE_INTAKE_WASM=wasm), p["host_admin"]),
        ("bandvote-grpc", dict(BANDVOTE_GRPC_LISTEN=f"127.0.0.1:{p['grpc']}", BANDVOTE_REST_LISTEN=f"127.0.0.1:{p['rest']}",
                               BANDVOTE_GRPC_ADMIN_LISTEN=f"127.0.0.1:{p['grpc_admin']}"), p["grpc_admin"]),
        ("bandvote-grpc-client", dict(BANDVOTE_HOP_LISTEN=f"127.0.0.1:{p['hop']}", BANDVOTE_GRPC_TARGET=f"http://127.0.0.1:{p['grpc']}",
                                      BANDVOTE_HOP_ADMIN_LISTEN=f"127.0.0.1:{p['hop_admin']}"), p["hop_admin"]),
        ("bandvote-consumer", dict(BANDVOTE_DLQ_TOPIC=f"{topic}-dlq", BANDVOTE_CONSUMER_GROUP=f"{topic}-grp", BANDVOTE_REDIS_PREFIX=prefix,
                                   BANDVOTE_MONGO_DB="bandvote_test", BANDVOTE_MONGO_COLLECTION=topic,
                                   BANDVOTE_CONSUMER_ADMIN_LISTEN=f"127.0.0.1:{p['consumer_admin']}"), p["consumer_admin"]),
    ]
    procs = []
    try:
        for binary, env, admin in specs:
            log = open(logs / f"{binary}.log", "w")
            proc = subprocess.Popen([str(BIN / binary)], env=dict(common, **env), stdout=log, stderr=subprocess.STDOUT)
            procs.append(proc)
            wait_ready(admin, proc)
        yield dict(http=p["http"], hop=p["hop"], prefix=prefix, logs=logs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def test_locustfile_headless_no_failures_and_every_ack_counted(pipeline, tmp_path):
    stats_file = tmp_path / "stats"
    env = dict(os.environ, BANDVOTE_GRPC_HOST=f"http://127.0.0.1:{pipeline['hop']}")
    run = subprocess.run(
        [str(VENV_BIN / "locust"), "-f", str(ROOT / "bench/locustfile.py"), "--headless", "-u", str(USERS), "-r", str(USERS),
         "-t", f"{SECONDS}s", "--host", f"http://127.0.0.1:{pipeline['http']}", "--stop-timeout", "10",
         "--json-file", str(stats_file), "--only-summary"],
        env=env, capture_output=True, text=True, timeout=SECONDS + 90)
    assert run.returncode == 0, f"locust exited {run.returncode}: {run.stderr[-2000:]}"
    # The final stats, after every user finished its last task (--stop-timeout).
    stats = json.loads(pathlib.Path(f"{stats_file}.json").read_text())
    summary = {f"{s['method']} {s['name'].split(' ', 1)[-1]}": (s["num_requests"], s["num_failures"]) for s in stats}
    print(f"locust: {summary}")
    assert sum(f for _, f in summary.values()) == 0, f"failures: {summary}\n{run.stderr[-2000:]}"
    posts = {name: n for name, (n, _) in summary.items() if name.startswith("POST ")}
    assert set(posts) == {"POST /", "POST /wasm", "POST /rust", "POST /grpc"}, posts
    assert summary["GET /"][0] > 0
    acknowledged = sum(posts.values())
    assert acknowledged > 0

    deadline = time.time() + 60
    while redis_total(pipeline["prefix"]) < acknowledged and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # anything counted twice would show up now
    counted = redis_total(pipeline["prefix"])
    print(f"locust: {acknowledged} POSTs acknowledged, {counted} counted")
    assert counted == acknowledged, f"counted != {acknowledged} POSTs acknowledged (logs: {pipeline['logs']})"
