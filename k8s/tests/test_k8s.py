"""Offline validation of the Kubernetes manifests and Dockerfiles.

Renders every overlay with `kubectl kustomize`, validates each object against
the Kubernetes OpenAPI schemas (kubernetes-validate) or, for the CRDs we use,
against the schemas in k8s/schemas/, and checks the wiring: Service selectors
match pod templates, every env var a binary reads and needs is set (and none it
does not read), ports match what the binaries listen on, probes and Service
targetPorts name real container ports, containers run as non-root with limits,
no credentials in plain manifests. The `test_broken_*` tests prove each check
fails on a deliberately broken manifest.
"""

import copy
import json
import pathlib
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ["local", "gke", "spinkube"]
K8S_VERSION = "1.31.0"

# Which Rust source declares each image's configuration (flags with `env = "…"`).
IMAGE_SOURCES = {
    "bandvote/host": ["host/src/config.rs", "crates/kafka/src/args.rs", "crates/admission/src/args.rs"],
    "bandvote/grpc": ["crates/grpc-producer/src/config.rs", "crates/kafka/src/args.rs", "crates/admission/src/args.rs"],
    "bandvote/grpc-client": ["crates/grpc-producer/src/bin/grpc_client.rs"],
    "bandvote/consumer": ["crates/consumer/src/config.rs", "crates/consumer/src/main.rs"],
    "bandvote/web": ["crates/web/src/main.rs"],
}
SHARED_ENV = {"BANDVOTE_LOG_FORMAT", "RUST_LOG"}  # read by bandvote-telemetry / tracing
CRD_SCHEMAS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): "strimzi-kafka.json",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): "strimzi-kafkanodepool.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "strimzi-kafkatopic.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("core.spinkube.dev/v1alpha1", "SpinApp"): "spinkube-spinapp.json",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$", re.I)


def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def binary_env(image):
    """(every env var the binary reads, those whose default is a loopback address)."""
    names, loopback = set(), set()
    for src in IMAGE_SOURCES[image]:
        text = (ROOT / src).read_text()
        for m in re.finditer(r'env = "([A-Z0-9_]+)"(?:, default_value(?:_t)? = ([^)\]]+))?', text):
            names.add(m.group(1))
            if m.group(2) and "127.0.0.1" in m.group(2):
                loopback.add(m.group(1))
    return names, loopback


def image_name(image):
    return image.split(":")[0].split("@")[0]


def pod_templates(objs):
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o, o["spec"]["template"]


# ---- checks: each returns a list of problems -------------------------------

def check_schema(o):
    key = (o["apiVersion"], o["kind"])
    if key in CRD_SCHEMAS:
        schema = json.loads((K8S / "schemas" / CRD_SCHEMAS[key]).read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(o), key=str)
        return [f"{o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}" for e in errors]
    try:
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}"]
    except kubernetes_validate.utils.SchemaNotFoundError:
        return [f"{o['kind']}/{o['metadata']['name']}: no schema for {o['apiVersion']} {o['kind']}"]
    return []


def check_selectors(objs):
    problems = []
    pods = [(o["metadata"].get("namespace"), t["metadata"].get("labels", {})) for o, t in pod_templates(objs)]
    for s in (o for o in objs if o["kind"] == "Service"):
        sel = s["spec"].get("selector") or {}
        ns = s["metadata"].get("namespace")
        if not any(ns == pns and all(labels.get(k) == v for k, v in sel.items()) for pns, labels in pods):
            if s["metadata"]["name"] != "bandvote-intake":  # created by the SpinApp operator
                problems.append(f"Service/{s['metadata']['name']}: selector {sel} matches no pod template")
    for o, t in pod_templates(objs):
        sel = o["spec"]["selector"]["matchLabels"]
        labels = t["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in sel.items()):
            problems.append(f"{o['kind']}/{o['metadata']['name']}: selector {sel} does not match its template labels")
    return problems


def container_ports(c):
    return {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}


def check_containers(objs):
    problems = []
    for o, t in pod_templates(objs):
        spec = t["spec"]
        where = f"{o['kind']}/{o['metadata']['name']}"
        psc = spec.get("securityContext", {})
        for c in spec["containers"]:
            w = f"{where}/{c['name']}"
            if not (psc.get("runAsNonRoot") or c.get("securityContext", {}).get("runAsNonRoot")):
                problems.append(f"{w}: not runAsNonRoot")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{w}: allowPrivilegeEscalation not false")
            res = c.get("resources", {})
            if not (res.get("requests") and res.get("limits")):
                problems.append(f"{w}: resources requests/limits missing")
            if ":" not in c["image"].split("/")[-1] or c["image"].endswith(":latest"):
                problems.append(f"{w}: image {c['image']} is not pinned to a tag")
            ports = container_ports(c)
            for probe in ("readinessProbe", "livenessProbe"):
                p = c.get(probe)
                if not p:
                    problems.append(f"{w}: no {probe}")
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or p.get("grpc") or {}).get("port")
                if port is not None and port not in ports:
                    problems.append(f"{w}: {probe} port {port} is not a container port")
            env = {e["name"]: e for e in c.get("env", [])}
            for name, e in env.items():
                if SECRET_NAME.search(name) and "value" in e:
                    problems.append(f"{w}: {name} set in plain text (use secretKeyRef)")
            image = image_name(c["image"])
            if image in IMAGE_SOURCES:
                reads, loopback = binary_env(image)
                for name in env:
                    if name not in reads | SHARED_ENV:
                        problems.append(f"{w}: env {name} is not read by {image}")
                for name in loopback - set(env):
                    problems.append(f"{w}: env {name} not set (its default is a loopback address)")
                listen_ports = set()
                for name, e in env.items():
                    m = re.fullmatch(r"[0-9.]+:(\d+)", e.get("value", ""))
                    if name.endswith("_LISTEN") and m:
                        listen_ports.add(int(m.group(1)))
                        if not e["value"].startswith("0.0.0.0"):
                            problems.append(f"{w}: {name} listens on {e['value']}, unreachable from other pods")
                declared = {p["containerPort"] for p in c.get("ports", [])}
                if listen_ports != declared:
                    problems.append(f"{w}: container ports {sorted(declared)} != listen ports {sorted(listen_ports)}")
    # Service targetPorts must be ports of the pods they select.
    for s in (o for o in objs if o["kind"] == "Service"):
        sel = s["spec"].get("selector") or {}
        targets = [c for o, t in pod_templates(objs) if all(t["metadata"].get("labels", {}).get(k) == v for k, v in sel.items()) for c in t["spec"]["containers"]]
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            if targets and not any(tp in container_ports(c) for c in targets):
                problems.append(f"Service/{s['metadata']['name']}: targetPort {tp} is not a port of its pods")
    return problems


def check_no_plain_secrets(objs):
    return [f"Secret/{o['metadata']['name']}: credentials in a plain manifest" for o in objs if o["kind"] == "Secret"]


def all_problems(objs):
    problems = [p for o in objs for p in check_schema(o)]
    return problems + check_selectors(objs) + check_containers(objs) + check_no_plain_secrets(objs)


# ---- tests ------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid(overlay):
    objs = render(overlay)
    assert len(objs) > 30
    problems = all_problems(objs)
    assert not problems, "\n".join(problems)


def test_ingress_has_the_paths_clients_use():
    objs = render("local")
    paths = {p["path"] for o in objs if o["kind"] == "Ingress" for r in o["spec"]["rules"] for p in r["http"]["paths"]}
    assert {"/", "/wasm", "/rust", "/grpc"} <= paths
    hop = next(p for o in objs if o["kind"] == "Ingress" for r in o["spec"]["rules"] for p in r["http"]["paths"] if p["path"] == "/grpc")
    assert hop["backend"]["service"]["name"] == "bandvote-grpc-client", "JSON on /grpc goes to the gRPC client hop"
    grpc = next(o for o in objs if o["kind"] == "Ingress" and o["metadata"]["name"] == "bandvote-grpc")
    assert grpc["spec"]["tls"] and all(r.get("host") for r in grpc["spec"]["rules"]), "native gRPC on its own TLS host (HTTP/2)"


def test_votes_topic_partitions_and_min_isr():
    objs = render("gke")
    topic = next(o for o in objs if o["kind"] == "KafkaTopic" and o["metadata"]["name"] == "votes")
    assert topic["spec"]["partitions"] == 6 and topic["spec"]["config"]["min.insync.replicas"] == 2


def test_spinkube_replaces_the_host_with_a_spinapp():
    objs = render("spinkube")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("SpinApp", "bandvote-intake") in kinds and ("RuntimeClass", "wasmtime-spin-v2") in kinds
    assert ("Deployment", "bandvote-host") not in kinds


def test_grafana_dashboards_use_real_metrics_and_keys():
    metrics = set()
    for src in ["host/src/metrics.rs", "crates/consumer/src/metrics.rs", "crates/grpc-producer/src/metrics.rs"]:
        metrics |= set(re.findall(r'"(bandvote_[a-z_]+)"', (ROOT / src).read_text()))
    keys = (ROOT / "crates/store/src/keys.rs").read_text()
    redis_keys = set(re.findall(r'pub const [A-Z_]+: &str = "([a-z_:]+)";', keys))
    assert {"votos_banda", "votos_album", "votes:total", "leaderboard:bands"} <= redis_keys
    for f in (K8S / "base/grafana/dashboards").glob("*.json"):
        for panel in json.loads(f.read_text())["panels"]:
            for t in panel["targets"]:
                if "expr" in t:
                    for name in re.findall(r"\b(bandvote_[a-z_]+)", t["expr"]):
                        base = re.sub(r"_(bucket|sum|count)$", "", name)
                        assert base in metrics, f"{f.name}: {name} is not exported by any service"
                if "keyName" in t:
                    assert t["keyName"] in redis_keys, f"{f.name}: Redis key {t['keyName']} is not written by the consumer"


DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))


def lint_dockerfile(text):
    problems = []
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l.split()[1] for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        problems.append("not multi-stage")
    for image in froms:
        if ":" not in image.split("/")[-1] or image.endswith(":latest"):
            problems.append(f"base image {image} not pinned")
    last_stage = text[text.rfind("\nFROM "):]
    users = re.findall(r"^USER\s+(\S+)", last_stage, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("runtime stage does not switch to a non-root USER")
    for m in re.finditer(r"^(?:ENV|ARG)\s+(\S+?)[= ]", text, re.M):
        if SECRET_NAME.search(m.group(1)):
            problems.append(f"secret-like {m.group(1)} baked into the image")
    return problems


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lint(path):
    assert not lint_dockerfile(path.read_text())


def test_kafka_listeners_name_their_peers():
    # Without networkPolicyPeers Strimzi adds an allow-all policy for the listener.
    for overlay in OVERLAYS:
        kafka = next(o for o in render(overlay) if o["kind"] == "Kafka")
        for listener in kafka["spec"]["kafka"]["listeners"]:
            peers = listener.get("networkPolicyPeers")
            assert peers, f"{overlay}: listener {listener['name']} open to every pod"


def secret_refs(objs):
    for o, t in pod_templates(objs):
        for c in t["spec"].get("initContainers", []) + t["spec"]["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield o["metadata"]["name"], c["name"], e["name"], ref["name"], ref["key"]


def test_every_secret_key_used_is_generated_by_the_script():
    script = (ROOT / "scripts/k8s-secrets.sh").read_text()
    made = {}
    for m in re.finditer(r"^create (\S+) (.*?)(?<!\\)$", script, re.M | re.S):
        made[m.group(1)] = set(re.findall(r"([a-z-]+)=", m.group(2)))
    for overlay in OVERLAYS:
        for owner, container, env, secret, key in secret_refs(render(overlay)):
            if secret == "bandvote-grpc-tls":
                continue
            assert key in made.get(secret, set()), f"{owner}/{container} {env}: {secret}/{key} is not generated by scripts/k8s-secrets.sh"


def test_stores_are_reached_as_least_privileged_users():
    objs = render("local")
    refs = {(owner, env): (secret, key) for owner, _, env, secret, key in secret_refs(objs)}
    assert refs[("bandvote-web", "BANDVOTE_MONGO_URL")] == ("bandvote-mongo", "web-url"), "the web app reads MongoDB as the read-only user"
    assert refs[("bandvote-web", "BANDVOTE_REDIS_URL")] == ("bandvote-redis", "web-url")
    assert refs[("bandvote-consumer", "BANDVOTE_MONGO_URL")] == ("bandvote-mongo", "consumer-url")
    assert refs[("bandvote-consumer", "BANDVOTE_REDIS_URL")] == ("bandvote-redis", "consumer-url")
    init = (K8S / "base/mongo/init-users.js").read_text()
    assert "user: 'web'" in init and "role: 'read'" in init
    acl = (K8S / "base/redis/users.acl").read_text()
    assert re.search(r"^user default on nopass resetkeys resetchannels -@all \+ping$", acl, re.M), "anonymous Redis clients may only PING"
    redis = find(objs, "StatefulSet", "redis")
    assert "--aclfile" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    ds = (K8S / "base/grafana/provisioning/datasources/bandvote.yaml").read_text()
    assert "acl: true" in ds and "user: ${REDIS_USER:-grafana}" in ds


def test_web_image_builds_without_kafka():
    # bandvote-web reads the stores through bandvote-store only: no librdkafka, so no cmake.
    assert "cmake" not in (ROOT / "docker/Dockerfile.web").read_text()


def test_dockerfiles_exist_for_every_native_service():
    assert {p.name for p in DOCKERFILES} >= {f"Dockerfile.{s}" for s in ["host", "grpc", "consumer", "web"]}


# ---- the checks catch deliberately broken manifests -------------------------

def broken(mutate):
    objs = copy.deepcopy(render("local"))
    mutate(objs)
    return all_problems(objs)


def find(objs, kind, name):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def test_broken_selector_is_caught():
    def m(objs):
        find(objs, "Service", "bandvote-web")["spec"]["selector"] = {"app.kubernetes.io/name": "typo"}
    assert any("matches no pod template" in p for p in broken(m))


def test_broken_schema_is_caught():
    def m(objs):
        find(objs, "Deployment", "bandvote-web")["spec"]["replicas"] = "two"
    assert any("Deployment/bandvote-web" in p for p in broken(m))


def test_unknown_field_is_caught():
    def m(objs):
        find(objs, "Deployment", "bandvote-web")["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert any("imagePullPolcy" in p or "Additional properties" in p for p in broken(m))


def test_broken_crd_is_caught():
    def m(objs):
        find(objs, "KafkaTopic", "votes")["spec"]["partitions"] = 0
    assert any("KafkaTopic/votes" in p for p in broken(m))


def test_missing_env_is_caught():
    def m(objs):
        c = find(objs, "StatefulSet", "bandvote-consumer")["spec"]["template"]["spec"]["containers"][0]
        c["env"] = [e for e in c["env"] if e["name"] != "BANDVOTE_REDIS_URL"]
    assert any("BANDVOTE_REDIS_URL not set" in p for p in broken(m))


def test_misspelt_env_is_caught():
    def m(objs):
        find(objs, "Deployment", "bandvote-web")["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "BANDVOTE_REDIS_ULR", "value": "x"})
    assert any("BANDVOTE_REDIS_ULR is not read" in p for p in broken(m))


def test_wrong_port_is_caught():
    def m(objs):
        c = find(objs, "Deployment", "bandvote-host")["spec"]["template"]["spec"]["containers"][0]
        c["ports"][0]["containerPort"] = 8081
    assert any("listen ports" in p for p in broken(m))


def test_plain_secret_is_caught():
    def m(objs):
        objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak", "namespace": "bandvote"}, "stringData": {"password": "hunter2"}})
    assert any("Secret/leak" in p for p in broken(m))


def test_broken_dockerfile_is_caught():
    assert lint_dockerfile("FROM rust:latest\nRUN cargo build\n")
    assert "runtime stage does not switch to a non-root USER" in lint_dockerfile("FROM a:1 AS b\nFROM c:2\nUSER root\n")


def test_alert_rules_use_real_metrics_and_are_loaded():
    """Every metric an alert rule reads is exported by a service (the
    publisher's own metrics carry the binary's prefix), and Prometheus loads
    the rules file from its mounted config."""
    metrics = set()
    for src in ["host/src/metrics.rs", "crates/consumer/src/metrics.rs", "crates/grpc-producer/src/metrics.rs"]:
        metrics |= set(re.findall(r'"(bandvote_[a-z_]+)"', (ROOT / src).read_text()))
    progress = set(re.findall(r'opts\(\s*"([a-z_]+)"', (ROOT / "crates/kafka/src/progress.rs").read_text()))
    # Admission's counters (crates/admission/src/metrics.rs: NAMES) and its gauge carry the same prefixes.
    progress |= set(re.findall(r'\("([a-z_]+_total)", "', (ROOT / "crates/admission/src/metrics.rs").read_text())) | {"contest_known"}
    metrics |= {f"{prefix}_{name}" for prefix in ("bandvote_host", "bandvote_grpc") for name in progress}
    rules = yaml.safe_load((K8S / "base/prometheus/alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\b(bandvote_[a-z_]+)", expr):
            assert name in metrics, f"alert reads {name}, which no service exports"
    config = yaml.safe_load((K8S / "base/prometheus/prometheus.yml").read_text())
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    cm = next(o for o in render("local") if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("prometheus-config"))
    assert "alerts.yml" in cm["data"]


def test_spinapp_variables_reach_the_component():
    """The SpinApp's spec.variables are Spin variables: each must be declared in
    spin.toml's [variables] and handed to the component ([component.intake.variables]),
    whose adapter reads exactly those keys through wasi:config/store; the REST
    proxy it names must be an allowed outbound host of the component."""
    import tomllib
    manifest = tomllib.loads((ROOT / "spin.toml").read_text())
    declared = set(manifest["variables"])
    component = manifest["component"]["intake"]
    handed = {k for k, v in component["variables"].items() if v.strip() == "{{ %s }}" % k}
    adapter = (ROOT / "components/rest-adapter/src/lib.rs").read_text()
    read = set(re.findall(r'config\("([a-z_]+)"\)', adapter))
    assert read and read <= handed <= declared, (read, handed, declared)
    assert component["source"] == "dist/bandvote-intake-spin.wasm"
    spinapp = next(o for o in render("spinkube") if o["kind"] == "SpinApp")
    values = {v["name"]: v["value"] for v in spinapp["spec"]["variables"]}
    assert set(values) <= declared, set(values) - declared
    url = values["kafka_rest_url"]
    assert url in component["allowed_outbound_hosts"], f"{url} is not an allowed outbound host"
    # ... and it names the REST bridge's Service and port in the overlay.
    svc = next(o for o in render("spinkube") if o["kind"] == "Service" and o["metadata"]["name"] == "bandvote-grpc")
    host, port = url.removeprefix("http://").split(":")
    assert host.split(".")[0] == "bandvote-grpc" and int(port) in [p["port"] for p in svc["spec"]["ports"]]
