"""Who may reach whom, from the rendered manifests alone.

For every overlay: render it (`kubectl kustomize`), model the pods it makes
(workloads' pod templates; a SpinApp's pods as the spin operator labels them;
Strimzi's Kafka brokers and the NetworkPolicy Strimzi adds for a listener's
`networkPolicyPeers`; the actors outside the manifests: ingress-nginx, KEDA's
operator, a stray pod), then

- every Ingress backend names a Service of the overlay, in the Ingress's
  namespace, whose selector matches at least one workload's pods and whose
  port resolves to a port those pods listen on;
- the NetworkPolicies, evaluated as Kubernetes does (a pod selected by any
  policy is isolated; a connection is allowed when some policy selecting the
  target has a rule whose peers match the source, by pod and namespace
  selectors, and whose ports match, by number or by the container port's
  name), allow exactly the edges of EXPECTED and refuse those of REFUSED.

The tests named test_broken_* prove the evaluation catches a policy that drops
a front end and a policy that lets a stray pod reach a store.
"""

import copy
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ["local", "gke", "spinkube"]

NAMESPACE = "bandvote"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
SPIN_HTTP_PORT = 80  # what the spin shim listens on; the operator's Service targets it


def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


# ---- the model: pods, services, policies ------------------------------------

class Pod:
    def __init__(self, name, namespace, labels, ports):
        self.name, self.namespace, self.labels = name, namespace, dict(labels)
        self.ports = dict(ports)  # port name (or str(number)) -> number

    def port(self, p):
        """A Service/NetworkPolicy port (number or name) on this pod, or None."""
        if isinstance(p, int):
            return p if p in self.ports.values() or not self.ports else None
        return self.ports.get(p)

    def __repr__(self):
        return f"{self.namespace}/{self.name}"


def selector_matches(sel, labels):
    if sel is None:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_of(o):
    return o["metadata"].get("namespace")


def pods_of(objs):
    pods = []
    for o in objs:
        if o["kind"] in WORKLOAD_KINDS:
            t = o["spec"]["template"]
            ports = {}
            for c in t["spec"].get("containers", []):
                for p in c.get("ports", []):
                    ports[p.get("name") or str(p["containerPort"])] = p["containerPort"]
            pods.append(Pod(o["metadata"]["name"], namespace_of(o), t["metadata"].get("labels", {}), ports))
        elif o["kind"] == "SpinApp":
            # The spin operator labels the app's pods with core.spinkube.dev/app-name
            # and adds spec.podLabels; the shim serves HTTP on port 80.
            labels = {"core.spinkube.dev/app-name": o["metadata"]["name"], **(o["spec"].get("podLabels") or {})}
            pods.append(Pod(o["metadata"]["name"], namespace_of(o), labels, {"http-app": SPIN_HTTP_PORT}))
        elif o["kind"] == "Kafka":
            # Strimzi's broker pods.
            labels = {"strimzi.io/cluster": o["metadata"]["name"], "strimzi.io/kind": "Kafka", "strimzi.io/broker-role": "true"}
            ports = {l["name"]: l["port"] for l in o["spec"]["kafka"]["listeners"]}
            pods.append(Pod("kafka", namespace_of(o), labels, ports))
    return pods


def services_of(objs):
    """Services of the manifests, plus the one the spin operator makes per SpinApp."""
    services = [o for o in objs if o["kind"] == "Service"]
    for o in objs:
        if o["kind"] == "SpinApp":
            services.append({
                "kind": "Service",
                "metadata": {"name": o["metadata"]["name"], "namespace": namespace_of(o)},
                "spec": {"selector": {"core.spinkube.dev/app-name": o["metadata"]["name"]},
                         "ports": [{"name": "http", "port": 80, "targetPort": SPIN_HTTP_PORT}]},
            })
    return services


def policies_of(objs):
    """NetworkPolicies of the manifests, plus the one Strimzi makes for each
    listener that has networkPolicyPeers (without them Strimzi allows all)."""
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    for o in objs:
        if o["kind"] != "Kafka":
            continue
        rules = []
        for l in o["spec"]["kafka"]["listeners"]:
            rule = {"ports": [{"port": l["port"], "protocol": "TCP"}]}
            if l.get("networkPolicyPeers") is not None:
                rule["from"] = l["networkPolicyPeers"]
            rules.append(rule)
        policies.append({
            "kind": "NetworkPolicy",
            "metadata": {"name": f"{o['metadata']['name']}-strimzi-listeners", "namespace": namespace_of(o)},
            "spec": {"podSelector": {"matchLabels": {"strimzi.io/cluster": o["metadata"]["name"], "strimzi.io/kind": "Kafka"}},
                     "policyTypes": ["Ingress"], "ingress": rules},
        })
    return policies


def namespace_labels(ns):
    return {"kubernetes.io/metadata.name": ns}


def peer_matches(peer, source, target_ns):
    if "ipBlock" in peer:
        return False
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if ns_sel is not None:
        if not selector_matches(ns_sel, namespace_labels(source.namespace)):
            return False
    elif source.namespace != target_ns:
        return False
    return pod_sel is None or selector_matches(pod_sel, source.labels)


def port_matches(rule_ports, target, port):
    if not rule_ports:
        return True
    for rp in rule_ports:
        if "port" not in rp:
            return True
        want = rp["port"]
        number = want if isinstance(want, int) else target.ports.get(want)
        end = rp.get("endPort", number)
        if number is not None and number <= port <= end:
            return True
    return False


def allowed(policies, source, target, port):
    """May `source` open a TCP connection to `target`:`port`?"""
    selecting = [p for p in policies
                 if namespace_of(p) == target.namespace
                 and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and (p["spec"].get("podSelector") == {} or selector_matches(p["spec"].get("podSelector"), target.labels))]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("ingress") or []:
            peers = rule.get("from")
            if (not peers or any(peer_matches(peer, source, target.namespace) for peer in peers)) and port_matches(rule.get("ports"), target, port):
                return True
    return False


# ---- the actors outside the manifests ----------------------------------------

INGRESS_NGINX = Pod("ingress-nginx-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}, {})
KEDA = Pod("keda-operator", "keda", {"app": "keda-operator", "app.kubernetes.io/name": "keda-operator"}, {})
STRAY = Pod("stray", NAMESPACE, {"app.kubernetes.io/name": "something-else"}, {})
STRAY_ELSEWHERE = Pod("stray", "default", {"app.kubernetes.io/name": "bandvote-consumer"}, {})

# (source, target, port): who must reach whom. "intake" is the overlay's HTTP
# intake (the host, or the SpinApp); None as port = the target's only port.
EXPECTED = [
    ("intake", "kafka", 9092),           # the wasm host publishes natively
    ("bandvote-grpc", "kafka", 9092),    # gRPC producer and REST bridge
    ("bandvote-consumer", "kafka", 9092),
    ("bandvote-consumer", "redis", 6379),
    ("bandvote-consumer", "mongo", 27017),
    ("bandvote-web", "redis", 6379),
    ("bandvote-web", "mongo", 27017),
    ("grafana", "redis", 6379),
    ("intake", "redis", 6379),           # idempotency-key claims (Redis user `intake`)
    ("bandvote-grpc", "redis", 6379),
    ("bandvote-grpc-client", "bandvote-grpc", 50051),
    ("prometheus", "bandvote-consumer", 9181),
    ("grafana", "prometheus", 9090),
]
SPIN_EXPECTED = [("intake", "bandvote-grpc", 8082)]  # the Spin intake publishes through the REST bridge
KEDA_EXPECTED = [(KEDA, "kafka", 9092)]              # the ScaledObject's lag check
REFUSED = [
    (STRAY, "redis", 6379), (STRAY, "mongo", 27017), (STRAY, "kafka", 9092),
    (STRAY_ELSEWHERE, "redis", 6379), (STRAY_ELSEWHERE, "mongo", 27017),
    (INGRESS_NGINX, "redis", 6379), (INGRESS_NGINX, "mongo", 27017), (INGRESS_NGINX, "kafka", 9092),
    (KEDA, "redis", 6379), (KEDA, "mongo", 27017),
    ("intake", "mongo", 27017), ("bandvote-grpc", "mongo", 27017), ("grafana", "mongo", 27017),
    ("bandvote-grpc-client", "redis", 6379), ("bandvote-grpc-client", "mongo", 27017), ("bandvote-grpc-client", "kafka", 9092),
    ("prometheus", "redis", 6379), ("prometheus", "mongo", 27017),
]


class Overlay:
    def __init__(self, objs):
        self.objs = objs
        self.pods = pods_of(objs)
        self.services = services_of(objs)
        self.policies = policies_of(objs)
        self.spin = any(o["kind"] == "SpinApp" for o in objs)
        self.keda = any(o["kind"] == "ScaledObject" for o in objs)

    def pod(self, ref):
        if isinstance(ref, Pod):
            return ref
        name = ("bandvote-intake" if self.spin else "bandvote-host") if ref == "intake" else ref
        found = [p for p in self.pods if p.name == name]
        assert found, f"no workload {name} in the overlay"
        return found[0]

    def edges(self):
        edges = list(EXPECTED) + (SPIN_EXPECTED if self.spin else []) + (KEDA_EXPECTED if self.keda else [])
        if self.spin:  # the SpinApp does not talk to Kafka or Redis itself
            edges = [e for e in edges if not (e[0] == "intake" and e[1] in ("kafka", "redis"))]
        return edges

    def problems(self):
        out = []
        for src, dst, port in self.edges():
            s, d = self.pod(src), self.pod(dst)
            if not allowed(self.policies, s, d, port):
                out.append(f"{s} cannot reach {d}:{port}")
        for src, dst, port in REFUSED:
            s, d = self.pod(src), self.pod(dst)
            if not (src == "intake" and self.spin) and allowed(self.policies, s, d, port):
                out.append(f"{s} may reach {d}:{port} and must not")
        return out + self.ingress_problems()

    def ingress_problems(self):
        out = []
        for ing in (o for o in self.objs if o["kind"] == "Ingress"):
            ns = namespace_of(ing)
            for rule in ing["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    be = path["backend"]["service"]
                    where = f"Ingress {ing['metadata']['name']} {path['path']}"
                    svc = next((s for s in self.services if s["metadata"]["name"] == be["name"] and namespace_of(s) == ns), None)
                    if svc is None:
                        out.append(f"{where}: Service {ns}/{be['name']} does not exist")
                        continue
                    sp = next((p for p in svc["spec"]["ports"] if p.get("name") == be["port"].get("name") or p["port"] == be["port"].get("number")), None)
                    if sp is None:
                        out.append(f"{where}: Service {be['name']} has no port {be['port']}")
                        continue
                    backends = [p for p in self.pods if p.namespace == ns and selector_matches({"matchLabels": svc["spec"]["selector"]}, p.labels)]
                    if not backends:
                        out.append(f"{where}: Service {be['name']} selects no pods")
                    for pod in backends:
                        port = pod.port(sp.get("targetPort", sp["port"]))
                        if port is None:
                            out.append(f"{where}: {pod} has no port {sp.get('targetPort')}")
                        elif not allowed(self.policies, INGRESS_NGINX, pod, port):
                            out.append(f"{where}: ingress-nginx cannot reach {pod}:{port}")
        return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everyone_reaches_what_it_needs_and_nothing_else(overlay):
    o = Overlay(render(overlay))
    for obj in o.objs:
        kind = obj["kind"]
        if kind not in ("Namespace", "RuntimeClass", "ClusterRole", "ClusterRoleBinding"):
            assert namespace_of(obj) == NAMESPACE, f"{overlay}: {kind} {obj['metadata']['name']} is not in namespace {NAMESPACE}"
    assert o.problems() == []


def test_broken_a_policy_that_drops_a_front_end_is_caught():
    objs = render("spinkube")
    for p in objs:
        if p["kind"] == "SpinApp":
            p["spec"].pop("podLabels", None)
    assert any("ingress-nginx cannot reach bandvote/bandvote-intake" in p for p in Overlay(objs).problems())


def test_broken_a_store_open_to_a_stray_pod_is_caught():
    objs = copy.deepcopy(render("local"))
    for p in objs:
        if p["kind"] == "NetworkPolicy" and p["metadata"]["name"].startswith("redis"):
            p["spec"]["ingress"] = [{}]
    assert any("stray may reach bandvote/redis:6379" in p for p in Overlay(objs).problems())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ballot_posts_through_the_ingress_to_the_intake(overlay):
    """The ballot page (served by the web app at /vote, through the Ingress's
    `/`) posts to BANDVOTE_WEB_BALLOT_POST on the same host: the longest
    Ingress prefix for that path must lead to the overlay's HTTP intake."""
    o = Overlay(render(overlay))
    web = next(x for x in o.objs if x["kind"] == "Deployment" and x["metadata"]["name"] == "bandvote-web")
    env = {e["name"]: e.get("value") for c in web["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    post = env.get("BANDVOTE_WEB_BALLOT_POST")
    assert post and post.startswith("/"), f"{overlay}: the ballot must post to an Ingress path, not through the web app ({post!r})"
    ing = next(x for x in o.objs if x["kind"] == "Ingress" and x["metadata"]["name"] == "bandvote")
    paths = [p for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    def route(path):
        match = [p for p in paths if path == p["path"] or path.startswith(p["path"].rstrip("/") + "/") or p["path"] == "/"]
        return max(match, key=lambda p: len(p["path"]))["backend"]["service"]["name"]
    assert route("/vote") == "bandvote-web", f"{overlay}: /vote does not reach the web app"
    svc = next(s for s in o.services if s["metadata"]["name"] == route(post))
    backends = [p for p in o.pods if selector_matches({"matchLabels": svc["spec"]["selector"]}, p.labels)]
    assert o.pod("intake") in backends, f"{overlay}: the ballot's {post} reaches {[str(b) for b in backends]}, not the intake"
