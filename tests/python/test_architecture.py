"""ARCHITECTURE.md's crate graph is the workspace's real one (cargo metadata),
and the structural rules it states hold."""

import json
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def workspace_graph():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    names = {p["name"] for p in meta["packages"]}
    return {p["name"]: {d["name"] for d in p["dependencies"] if d["name"] in names and d["kind"] is None}
            for p in meta["packages"]}


def documented_graph():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = text.split("### Crate graph", 1)[1].split("```", 2)[1]
    graph = {}
    for line in block.strip().splitlines():
        crate, _, deps = line.partition("→")
        graph[crate.strip()] = {re.sub(r"\s*\(.*\)", "", d).strip() for d in deps.split(",") if d.strip()}
    return graph


def test_crate_graph_matches_cargo_metadata():
    assert documented_graph() == workspace_graph()


def test_readers_of_the_stores_do_not_depend_on_kafka():
    graph = workspace_graph()
    for crate in ["bandvote-web", "bandvote-store"]:
        assert not graph[crate] & {"bandvote-kafka", "bandvote-consumer"}, crate
    manifest = (ROOT / "crates/web/Cargo.toml").read_text()
    assert "rdkafka" not in manifest


def test_the_producer_decides_nothing_about_a_vote():
    """Admission (contest rules, tokens, idempotency keys, name bounds) is
    bandvote-admission's; the Kafka crate is only the producer."""
    graph = workspace_graph()
    assert not graph["bandvote-kafka"] & {"bandvote-contest", "bandvote-store", "bandvote-admission"}
    for intake in ["bandvote-host", "bandvote-grpc"]:
        assert "bandvote-admission" in graph[intake], intake
    src = "\n".join(f.read_text() for f in (ROOT / "crates/kafka/src").glob("*.rs"))
    for name in ["bandvote_contest", "bandvote_store", "KeyClaims", "BandNames", "ContestWatch"]:
        assert name not in src, name


def test_host_modules_import_each_other_without_a_cycle():
    src = ROOT / "host/src"
    imports = {f.stem: set(re.findall(r"crate::([a-z_]+)", f.read_text())) for f in src.glob("*.rs")}
    seen, done = set(), set()

    def visit(m, path):
        assert m not in path, f"module cycle: {' -> '.join(path + [m])}"
        if m in done:
            return
        for n in imports.get(m, ()):
            if n != m:
                visit(n, path + [m])
        done.add(m)

    for m in imports:
        visit(m, [])
