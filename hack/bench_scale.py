#!/usr/bin/env python3
"""`hack/bench.sh scale`'s driver: N McpRollouts on one operator, and N equivalent Argo Rollouts
on Argo's controller, on the same local cluster (hack/cluster.sh), one after the other.

Pods are kwok's (no processes): kwok marks them running and ready and gives them addresses from
its fake nodes' pod CIDRs. Every such address is local in the cluster's network namespace, where
one real `mcp-fixture` listens on 0.0.0.0:8080, so each fake pod answers the operator's MCP probe.
A real Prometheus (the cluster's own build) scrapes one gauge, `bench_breach`, that this script
flips to 1 to breach both controllers' analyses at once.

Both controllers run as processes inside the cluster's network namespace, each with a client
certificate of its own (user `bench-mcp-rollout` / `bench-argo-rollouts`), so that the API
server's audit log says which requests were whose. Figures per phase:
  - API requests per second by verb and resource, from the audit log (the API server's record of
    every request; counted once per request, a watch when it starts);
  - CPU seconds and RSS of the controller process (/proc);
  - from the breach to all traffic on stable: no canary pod a ready endpoint of any
    EndpointSlice (polled each second; the same measure for both), and the controller's status
    saying so;
  - reconcile duration quantiles from each controller's own histogram.

Only loopback and addresses inside the cluster's network namespace are ever contacted. Every
loop is bounded in time. The bash side (hack/bench.sh) brings the cluster up and down.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FIXTURE_PORT = 8080
OURS_METRICS_PORT = 18080
ARGO_METRICS_PORT = 18090
ARGO_HEALTHZ_PORT = 18091
PROMETHEUS_PORT = 19090
BREACH_PORT = 19100
PODS_PER_NODE = 200  # a fake node's pod CIDR is a /24 (254 addresses)
ANALYSIS_INTERVAL_S = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"bench[{time.strftime('%H:%M:%S')}]: {msg}", file=sys.stderr, flush=True)


class Cluster:
    def __init__(self, args: argparse.Namespace):
        self.dir = Path(args.cluster_dir)
        self.bin = Path(args.cluster_bin)
        self.netns = args.netns
        self.kubeconfig = self.dir / "kubeconfig"
        self.kubeconfig_netns = self.dir / "kubeconfig-in-netns"
        self.audit = self.dir / "logs" / "audit.log"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        out = subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=600,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:4])}: {out.stderr.strip()[:2000]}")
        return out.stdout

    def apply(self, docs: list[dict]) -> None:
        # Server-side apply in batches: one request per object either way.
        for i in range(0, len(docs), 200):
            body = "\n".join(json.dumps(d) for d in docs[i : i + 200])
            self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=bench", "-f", "-",
                         input=body)

    def get_raw(self, path: str) -> dict:
        return json.loads(self.kubectl("get", "--raw", path))

    def in_netns(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    def fetch(self, url: str) -> str:
        out = subprocess.run(self.in_netns(["curl", "-sf", "--max-time", "10", url]),
                             capture_output=True, text=True, timeout=20)
        return out.stdout if out.returncode == 0 else ""


class Processes:
    """Processes this run started; all stopped on exit."""

    def __init__(self, work: Path):
        self.work = work
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        logf = open(self.work / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        self.running[name] = p
        return p

    def stop(self, name: str) -> None:
        p = self.running.pop(name, None)
        if p is None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def wait_until(what: str, timeout_s: float, check, every_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


# ── the cluster's extras: fake nodes, kwok, fixture, Prometheus, the breach gauge ───────────


def kwok_stages(kwok_dir: Path, nodes: int) -> str:
    stage = kwok_dir / "kustomize" / "stage"
    ready = (stage / "pod" / "fast" / "pod-ready.yaml").read_text()
    # kwok sets every readiness gate's condition True when a pod starts; the kubelet never sets
    # a readiness gate (its owner does: here the operator's rotation gate). Left out.
    start = ready.index("{{ range .spec.readinessGates }}")
    end = ready.index("{{ end }}", start) + len("{{ end }}")
    ready = ready[:start] + ready[end:]
    # kwok also sets Ready True whatever the gates say; the kubelet counts a pod Ready only once
    # every readiness gate is True. Without that, a pod taken out of rotation stayed a ready
    # endpoint: no drain ever ended, and every rollout was requeued each second after its wave
    # (most of the wave's reconciles). A pod with gates starts not Ready; the two stages below
    # follow the rotation gate as the kubelet does.
    ready_true = 'status: "True"\n        type: Ready'
    assert ready_true in ready, "kwok's pod-ready stage changed: see kwok_stages"
    ready = ready.replace(ready_true, 'status: {{ if .spec.readinessGates }}"False"{{ else }}"True"{{ end }}\n'
                                      '        type: Ready')
    # kwok plays pod stages 4 at a time for all its nodes; each node's kubelet is an actor of
    # its own. With 4, a breach of 1,000 rollouts waited on kwok (~21 pod updates/s, 96 s from
    # a canary taken out of rotation to its pod not Ready): one at a time per fake node.
    # A configuration given in a file is not defaulted: kwok v0.8.0's defaults, but that one.
    config = f"""apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 10.0.0.0/24
  manageAllNodes: false
  enableDebuggingHandlers: true
  enableContentionProfiling: false
  enableProfilingHandler: true
  podPlayStageParallelism: {nodes}
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false"""
    parts = [
        config,
        (stage / "node" / "fast" / "node-initialize.yaml").read_text(),
        (stage / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml").read_text(),
        ready,
        ROTATION_GATE_STAGES,
        (stage / "pod" / "fast" / "pod-complete.yaml").read_text(),
        (stage / "pod" / "fast" / "pod-delete.yaml").read_text(),
    ]
    return "\n---\n".join(parts)


# The kubelet's part for the operator's rotation gate (mcprollout.dev/in-rotation): a running
# pod that declares it is Ready while the gate is True, and not Ready while it is not.
def _rotation_stage(name: str, gate_op: str, ready_op: str, ready: str) -> str:
    return f"""apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: {name}
spec:
  resourceRef: {{apiGroup: v1, kind: Pod}}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.spec.readinessGates.[] | select( .conditionType == "mcprollout.dev/in-rotation" ) | .conditionType'
      operator: 'In'
      values: ['mcprollout.dev/in-rotation']
    - key: '.status.conditions.[] | select( .type == "mcprollout.dev/in-rotation" ) | .status'
      operator: '{gate_op}'
      values: ['True']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: '{ready_op}'
      values: ['True']
  next:
    statusTemplate: |
      conditions:
      - lastTransitionTime: {{{{ Now | Quote }}}}
        status: "{ready}"
        type: Ready"""


ROTATION_GATE_STAGES = "\n---\n".join([
    _rotation_stage("pod-rotation-gate-open", gate_op="In", ready_op="NotIn", ready="True"),
    _rotation_stage("pod-rotation-gate-closed", gate_op="NotIn", ready_op="In", ready="False"),
])


def fake_node(name: str) -> dict:
    resources = {"cpu": "256", "memory": "1Ti", "pods": str(PODS_PER_NODE)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"type": "kwok", "kubernetes.io/hostname": name},
                     "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
        "status": {"capacity": resources, "allocatable": resources},
    }


BREACH_SERVER = r"""
import http.server, sys
path = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class Bed:
    def __init__(self, args, cluster: Cluster, procs: Processes, work: Path):
        self.args, self.cluster, self.procs, self.work = args, cluster, procs, work
        self.breach_file = work / "breach.prom"

    def set_breach(self, value: int) -> None:
        tmp = self.breach_file.with_suffix(".tmp")
        tmp.write_text(f"# TYPE bench_breach gauge\nbench_breach {value}\n")
        tmp.replace(self.breach_file)

    def prometheus_value(self) -> str:
        out = self.cluster.fetch(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?query=max(bench_breach)")
        try:
            return json.loads(out)["data"]["result"][0]["value"][1]
        except (ValueError, KeyError, IndexError):
            return ""

    def up(self, max_n: int) -> None:
        c = self.cluster
        # Client certificates for each controller, signed by the cluster's CA (system:masters:
        # both run with the same rights; the name only tells their requests apart).
        for user in ("bench-mcp-rollout", "bench-argo-rollouts"):
            self.write_kubeconfig(user)
        # The fixture every fake pod address reaches.
        self.procs.start("fixture", c.in_netns([self.args.fixture]))
        # The breach gauge and a Prometheus scraping it every second.
        self.set_breach(0)
        self.procs.start("breach", c.in_netns([sys.executable, "-c", BREACH_SERVER, str(BREACH_PORT),
                                               str(self.breach_file)]))
        prom = self.work / "prometheus"
        prom.mkdir()
        (prom / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: bench\n    static_configs: [{{targets: ['127.0.0.1:{BREACH_PORT}']}}]\n")
        self.procs.start("prometheus", c.in_netns([
            str(c.bin / "prometheus"), f"--config.file={prom / 'prometheus.yml'}",
            f"--storage.tsdb.path={prom / 'data'}", f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"]))
        wait_until("Prometheus to read bench_breach", 60, lambda: self.prometheus_value() == "0", 1)
        # Fake nodes, enough for the largest N at its peak (two stable and two canary pods per
        # rollout, a surge pod, terminating ones), each with the /24 the node IPAM gives it;
        # each /24 local in the namespace.
        nodes = math.ceil(5 * max_n / PODS_PER_NODE) + 1
        # Created, not applied: server-side apply drops a Node's status (its capacity, which
        # keeps a node within the addresses of its /24).
        c.kubectl("create", "-f", "-", input="\n".join(json.dumps(fake_node(f"kwok-{i}")) for i in range(nodes)))
        stages = self.work / "kwok-stages.yaml"
        stages.write_text(kwok_stages(Path(self.args.kwok_dir), nodes))
        self.procs.start("kwok", c.in_netns([
            self.args.kwok, f"--kubeconfig={c.kubeconfig_netns}", "-c", str(stages),
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40", "--server-address=127.0.0.1:10247"]))

        def cidrs():
            items = c.get_raw("/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
            got = [n["spec"].get("podCIDR") for n in items]
            ready = [any(x["type"] == "Ready" and x["status"] == "True"
                         for x in n.get("status", {}).get("conditions", [])) for n in items]
            pods = {n["status"].get("allocatable", {}).get("pods") for n in items}
            if pods - {str(PODS_PER_NODE)}:
                raise RuntimeError(f"fake nodes allow {pods} pods each, not {PODS_PER_NODE}")
            return got if len(got) == nodes and all(got) and all(ready) else None

        for cidr in wait_until(f"{nodes} fake nodes with pod CIDRs, Ready", 120, cidrs):
            subprocess.run(c.in_netns(["ip", "route", "replace", "local", cidr, "dev", "lo"]), check=True)
        log(f"{nodes} kwok nodes Ready; fixture, Prometheus and the breach gauge up")

    def write_kubeconfig(self, user: str) -> None:
        pki = self.cluster.dir / "pki"
        key, csr, crt = (self.work / f"{user}.{x}" for x in ("key", "csr", "crt"))
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                        "-subj", f"/O=system:masters/CN={user}"], check=True, capture_output=True)
        # X.509 v3 (with extensions): rustls refuses a v1 certificate.
        ext = self.work / f"{user}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=clientAuth\n")
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", pki / "ca.crt", "-CAkey", pki / "ca.key",
                        "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext], check=True, capture_output=True)
        conf = json.loads(self.cluster.kubectl("config", "view", "--raw", "-o", "json", "--kubeconfig",
                                               str(self.cluster.kubeconfig_netns)))
        conf["users"] = [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}]
        for ctx in conf["contexts"]:
            ctx["context"]["user"] = user
        (self.work / f"{user}.kubeconfig").write_text(json.dumps(conf))

    def kubeconfig(self, user: str) -> str:
        return str(self.work / f"{user}.kubeconfig")


# ── the two controllers ───────────────────────────────────────────────────────────────────


def pod_spec(wave: int) -> dict:
    return {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{
            "name": "server", "image": "bench.invalid/mcp-fixture:1",
            "env": [{"name": "BENCH_WAVE", "value": str(wave)}],
            "ports": [{"name": "http", "containerPort": FIXTURE_PORT}],
        }],
    }


STEPS = [5, 25, 50, 100]


def canary_steps(hold_at: int | None) -> list[dict]:
    """5 → 25 → 50 → 100 with 0 s pauses, or one weight held until promoted (both controllers
    spell steps alike)."""
    if hold_at is not None:
        return [{"setWeight": hold_at}, {"pause": {}}]
    return [x for w in STEPS for x in ({"setWeight": w}, {"pause": {"duration": "0s"}})][:-1]


class Ours:
    name = "mcp-rollout"
    user = "bench-mcp-rollout"
    resource = "mcprollouts"

    def __init__(self, bed: Bed):
        self.bed = bed

    def install(self) -> None:
        self.bed.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                                 str(Path(self.bed.args.repo) / "crds"))

    def prepare(self, ns: str, n: int) -> None:
        pass

    def start(self, ns: str) -> subprocess.Popen:
        c = self.bed.cluster
        return self.bed.procs.start(self.name, c.in_netns([
            self.bed.args.operator, "run", f"--kubeconfig={self.bed.kubeconfig(self.user)}",
            f"--namespace={ns}", "--leader-elect=false", f"--metrics-addr=127.0.0.1:{OURS_METRICS_PORT}",
            "--allowed-destinations=10.244.0.0/16,127.0.0.1/32"]))

    def manifest(self, name: str, wave: int, hold_at: int | None = None) -> dict:
        steps = canary_steps(hold_at)
        return {
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "template": {"spec": pod_spec(wave)},
                "service": {"port": FIXTURE_PORT, "targetPort": "http"},
                "strategy": {"canary": {"steps": steps}},
                "analysis": {
                    "prometheus": {"address": f"http://127.0.0.1:{PROMETHEUS_PORT}"},
                    "interval": f"{ANALYSIS_INTERVAL_S}s",
                    "minRequestCount": 0,
                    "checks": {k: {"enabled": False} for k in
                               ("errorRate", "latency", "schemaValidationErrors", "crash")},
                    "metrics": [{"name": "breach", "query": "max(bench_breach)", "max": 0}],
                },
                "drain": {"min": "0s", "max": "1s"},
                "progressDeadline": "900s",
            },
        }

    @staticmethod
    def settled(obj: dict) -> bool:
        s = obj.get("status") or {}
        return (s.get("observedGeneration") == obj["metadata"]["generation"] and s.get("phase") == "Healthy"
                and not s.get("canaryRevision"))

    @staticmethod
    def held(obj: dict, weight: int) -> bool:
        s = obj.get("status") or {}
        return (s.get("observedGeneration") == obj["metadata"]["generation"] and s.get("phase") == "Paused"
                and s.get("desiredWeight") == weight and s.get("effectiveWeight", 0) > 0)

    @staticmethod
    def on_stable(obj: dict) -> bool:
        s = obj.get("status") or {}
        return s.get("effectiveWeight") == 0 and s.get("desiredWeight") == 0

    def metrics(self) -> str:
        return self.bed.cluster.fetch(f"http://127.0.0.1:{OURS_METRICS_PORT}/metrics")

    reconcile_histogram = "mcprollout_reconcile_duration_seconds"
    # Live allocations (jemalloc's count): what the state takes, beside RSS.
    heap_gauge = "mcprollout_heap_allocated_bytes"


class Argo:
    name = "argo-rollouts"
    user = "bench-argo-rollouts"
    resource = "rollouts"

    def __init__(self, bed: Bed):
        self.bed = bed

    def install(self) -> None:
        self.bed.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k",
                                 str(Path(self.bed.args.argo_dir) / "manifests" / "crds"))

    def prepare(self, ns: str, n: int) -> None:
        # The same Prometheus check as an AnalysisTemplate, run in the background from the first
        # step (Argo's equivalent of analysis at every step); one Service per Rollout over all
        # its pods, as the operator makes one (`trackServices: Auto`): a canary without traffic
        # routing needs no per-track Service in either, and each Service in a namespace costs
        # the EndpointSlice controller a match against every pod change there.
        template = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "breach", "namespace": ns},
            "spec": {"metrics": [{
                "name": "breach", "interval": f"{ANALYSIS_INTERVAL_S}s", "failureLimit": 0,
                "successCondition": "result[0] == 0",
                "provider": {"prometheus": {"address": f"http://127.0.0.1:{PROMETHEUS_PORT}",
                                            "query": "max(bench_breach)"}},
            }]},
        }
        services = [{
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"port": FIXTURE_PORT, "targetPort": "http"}]},
        } for name in names(n)]
        self.bed.cluster.apply([template, *services])

    def start(self, ns: str) -> subprocess.Popen:
        c = self.bed.cluster
        return self.bed.procs.start(self.name, c.in_netns([
            self.bed.args.argo, f"--kubeconfig={self.bed.kubeconfig(self.user)}", "--namespaced",
            f"--namespace={ns}", "--leader-elect=false", f"--metricsPort={ARGO_METRICS_PORT}",
            f"--healthzPort={ARGO_HEALTHZ_PORT}", "--loglevel=warn",
            # Its client throttles itself to 40 requests/s (burst 80) by default; ours has no
            # such limit. Left at that, a wave of 1,000 promoted none in 600 s: the same work
            # means the API server, not a client-side limit, decides for both.
            f"--qps={ARGO_QPS}", f"--burst={2 * ARGO_QPS}"]))

    def manifest(self, name: str, wave: int, hold_at: int | None = None) -> dict:
        steps = canary_steps(hold_at)
        return {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(wave)},
                "progressDeadlineSeconds": 900,
                "strategy": {"canary": {
                    "analysis": {"templates": [{"templateName": "breach"}]},
                    "steps": steps,
                }},
            },
        }

    @staticmethod
    def settled(obj: dict) -> bool:
        s = obj.get("status") or {}
        return (str(s.get("observedGeneration")) == str(obj["metadata"]["generation"])
                and s.get("phase") == "Healthy" and s.get("stableRS") == s.get("currentPodHash"))

    @staticmethod
    def held(obj: dict, weight: int) -> bool:
        s = obj.get("status") or {}
        return (str(s.get("observedGeneration")) == str(obj["metadata"]["generation"])
                and s.get("phase") == "Paused" and s.get("currentStepIndex") == 1
                and (s.get("canary") or {}).get("weights", {}).get("canary", {}).get("weight", weight) == weight
                and s.get("updatedReplicas", 0) >= 1)

    @staticmethod
    def on_stable(obj: dict) -> bool:
        # Aborted, and the canary ReplicaSet scaled to zero: nothing but stable serves.
        s = obj.get("status") or {}
        return bool(s.get("abort")) and s.get("updatedReplicas", 0) == 0

    def metrics(self) -> str:
        return self.bed.cluster.fetch(f"http://127.0.0.1:{ARGO_METRICS_PORT}/metrics")

    reconcile_histogram = "rollout_reconcile"
    # Go's live heap objects, the same measure as ours.
    heap_gauge = "go_memstats_heap_alloc_bytes"


# Argo Rollouts' client-side request limit (its --qps; its default is 40): high enough never
# to be what waits. BENCH_ARGO_QPS=40 measures Argo as it ships.
ARGO_QPS = int(os.environ.get("BENCH_ARGO_QPS", "2000"))


def names(n: int) -> list[str]:
    return [f"mcp-{i:04d}" for i in range(n)]


def wave_pods(c: "Cluster", ns: str, wave: int) -> set[str]:
    """The names of the namespace's pods made from wave `wave`'s template (both controllers'
    pods carry the wave in the same environment variable)."""
    pods = c.get_raw(f"/api/v1/namespaces/{ns}/pods")["items"]
    return {p["metadata"]["name"] for p in pods
            if any(e.get("name") == "BENCH_WAVE" and e.get("value") == str(wave)
                   for ctr in p["spec"]["containers"] for e in ctr.get("env") or [])}


def serving(c: "Cluster", ns: str, pods: set[str]) -> set[str]:
    """Which of `pods` an EndpointSlice of the namespace still lists as a ready endpoint: what
    kube-proxy would send new connections to. The same measure for both controllers, whatever
    their status says (ours waits for it; Argo's says the canary scaled to 0)."""
    slices = c.get_raw(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices")["items"]
    return {e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []
            if (e.get("targetRef") or {}).get("name") in pods and (e.get("conditions") or {}).get("ready")}


# ── measuring ─────────────────────────────────────────────────────────────────────────────


def machine_cpu() -> tuple[dict[str, float], float]:
    """CPU seconds used so far by each process name on the machine (its `comm`, at most 15
    characters: `kube-controller` is the controller manager), and the machine's busy seconds."""
    used: collections.Counter = collections.Counter()
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat_path.read_text().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, IndexError, ValueError):
            continue  # gone since the directory was read
        fields = rest.split()
        used[comm] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(x) for i, x in enumerate(cpu[:8]) if i not in (3, 4)) / CLK_TCK  # less idle, iowait
    return used, busy


# The controller manager's secure port (its /debug/pprof, authorized as any request by a
# system:masters client).
KCM_PORT = 10257


def profile_cluster(bed: Bed, user: str, seconds: int) -> list[threading.Thread]:
    """Starts CPU profiles of the API server and the controller manager over the next `seconds`
    (BENCH_PROFILE=1), written to the work directory for `go tool pprof`."""
    crt, key = bed.work / f"{user}.crt", bed.work / f"{user}.key"

    def kcm() -> None:
        subprocess.run(bed.cluster.in_netns([
            "curl", "-sfk", "--max-time", str(seconds + 30), "--cert", str(crt), "--key", str(key),
            "-o", str(bed.work / "kube-controller-manager.pprof"),
            f"https://127.0.0.1:{KCM_PORT}/debug/pprof/profile?seconds={seconds}"]), timeout=seconds + 60)

    def apiserver() -> None:
        out = subprocess.run([str(bed.cluster.bin / "kubectl"), "--kubeconfig", str(bed.cluster.kubeconfig),
                              "get", "--raw", f"/debug/pprof/profile?seconds={seconds}"],
                             capture_output=True, timeout=seconds + 60)
        (bed.work / "kube-apiserver.pprof").write_bytes(out.stdout)

    threads = [threading.Thread(target=f, daemon=True) for f in (kcm, apiserver)]
    for t in threads:
        t.start()
    return threads


def profile_summary(path: Path, top: int = 10) -> str:
    """The Kubernetes controllers' loops in a CPU profile, by share of the samples (cumulative)."""
    out = subprocess.run(["go", "tool", "pprof", "-top", "-cum", "-nodecount=400", str(path)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return f"no profile ({out.stderr.strip()[:200]})"
    total = re.search(r"Total samples = (\S+)", out.stdout)
    loops = []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 6 and re.search(r"pkg/controller/[\w/]+\.\(\*\w+\)\.(sync|handle|on|add|update|delete)\w*$",
                                          fields[5], re.I):
            loops.append(f"{fields[5].rsplit('/', 1)[-1]} {fields[4]}")
    return f"{total.group(1) if total else '?'} sampled; " + ", ".join(loops[:top])


class Snapshot:
    def __init__(self, bed: Bed, ctrl, pid: int):
        self.at = time.monotonic()
        self.machine, self.machine_busy = machine_cpu()
        self.audit_offset = bed.cluster.audit.stat().st_size
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        self.cpu_s = (int(stat[11]) + int(stat[12])) / CLK_TCK
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":" in line)
        self.rss_mib = int(status["VmRSS"].split()[0]) / 1024
        self.hwm_mib = int(status["VmHWM"].split()[0]) / 1024
        text = ctrl.metrics()
        self.histogram = histogram(text, ctrl.reconcile_histogram)
        heap = gauge(text, ctrl.heap_gauge)
        self.heap_mib = None if heap is None else heap / 1_048_576


def gauge(text: str, name: str) -> float | None:
    """An unlabelled gauge's value, or None when the controller does not export it."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram, summed over its label sets."""
    buckets: dict[float, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if not line.startswith(name + "_bucket"):
            continue
        labels, value = line.rsplit(" ", 1)
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        buckets[math.inf if le == "+Inf" else float(le)] += float(value)
    return dict(buckets)


def quantile(q: float, before: dict, after: dict) -> float | None:
    """histogram_quantile over the increase between two snapshots (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_bound, prev_count = 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if math.isinf(b):
                return prev_bound
            return prev_bound + (b - prev_bound) * ((rank - prev_count) / max(c - prev_count, 1e-9))
        prev_bound, prev_count = b, c
    return None


def audit_counts(path: Path, start: int, end: int, user: str | None) -> collections.Counter:
    """Requests by (verb, resource) of one user, or by (user, verb) of every user (`None`)."""
    counts: collections.Counter = collections.Counter()
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    for raw in data.splitlines():
        if user is not None and user.encode() not in raw:
            continue
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        username = e.get("user", {}).get("username")
        if user is not None and username != user:
            continue
        verb, stage = e.get("verb"), e.get("stage")
        # One count per request: a watch when it starts, anything else when it is answered.
        if (verb == "watch") != (stage == "ResponseStarted") or stage not in ("ResponseStarted", "ResponseComplete"):
            continue
        ref = e.get("objectRef", {})
        resource = ref.get("resource", e.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        if user is None:
            counts[(username, "writes" if verb in WRITE_VERBS else "reads")] += 1
        else:
            counts[(verb, resource)] += 1
    return counts


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def by_user(bed: Bed, before: Snapshot, after: Snapshot, top: int = 8) -> str:
    """Every client's requests per second, reads and writes apart: who else keeps the API
    server busy in a phase (kwok, the controller manager, the bench's own polling)."""
    window = after.at - before.at
    counts = audit_counts(bed.cluster.audit, before.audit_offset, after.audit_offset, None)
    users: collections.Counter = collections.Counter()
    for (u, _), v in counts.items():
        users[u] += v
    return "; ".join(f"{u.rsplit(':', 1)[-1]} {counts[(u, 'writes')] / window:.1f} w + "
                     f"{counts[(u, 'reads')] / window:.1f} r" for u, _ in users.most_common(top))


def breach_chain(bed: Bed, before: Snapshot, after: Snapshot, user: str, breach_at: float) -> str:
    """Where a rollback's time goes, per canary pod, from the audit log (the API server's own
    timestamps): the breach to our rotation patch, that to the fake kubelet's Ready=False, that
    to the EndpointSlice controller's write of the rollout Service's slice, that to our status
    write that sees it. The first hop starts when the breach gauge was flipped (`breach_at`,
    this machine's clock, as the audit log's; Prometheus scrapes it each second). Canary pods
    are those we marked draining in the window; a rollout is the first two dash-separated parts
    of a pod's name (`mcp-0042-…`)."""
    with open(bed.cluster.audit, "rb") as f:
        f.seek(before.audit_offset)
        data = f.read(after.audit_offset - before.audit_offset)
    marked: dict[str, float] = {}
    ours_rotation: dict[str, list[float]] = collections.defaultdict(list)
    kubelet: dict[str, list[float]] = collections.defaultdict(list)
    slices: dict[str, list[float]] = collections.defaultdict(list)
    status: dict[str, list[float]] = collections.defaultdict(list)
    for raw in data.splitlines():
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        if e.get("stage") != "ResponseComplete" or e.get("verb") not in WRITE_VERBS:
            continue
        at = datetime.datetime.fromisoformat(e["stageTimestamp"]).timestamp()
        who = e.get("user", {}).get("username", "")
        ref = e.get("objectRef", {})
        name, resource, sub = ref.get("name", ""), ref.get("resource"), ref.get("subresource")
        if who == user and resource == "pods" and not sub:
            marked.setdefault(name, at)
        elif who == user and resource == "pods" and sub == "status":
            ours_rotation[name].append(at)
        elif who == user and resource == "mcprollouts" and sub == "status":
            status[name].append(at)
        elif resource == "pods" and sub == "status" and who == "kubernetes-admin":  # kwok
            kubelet[name].append(at)
        elif resource == "endpointslices" and who.endswith(":endpointslice-controller"):
            m = re.fullmatch(r"(.+)-[a-z0-9]{5}", name)
            if m:
                slices[m.group(1)].append(at)

    def first_after(times: list[float], t: float) -> float | None:
        return next((x for x in times if x >= t), None)

    hops: dict[str, list[float]] = collections.defaultdict(list)
    for pod in marked:
        rollout = "-".join(pod.split("-")[:2])
        rot = first_after(ours_rotation[pod], breach_at)
        ready = rot and first_after(kubelet[pod], rot)
        sliced = ready and first_after(slices[rollout], ready)
        seen = sliced and first_after(status[rollout], sliced)
        for hop, (a, b) in {"breach→our rotation patch": (breach_at, rot), "→kubelet Ready=False": (rot, ready),
                            "→slice written": (ready, sliced), "→our status write": (sliced, seen)}.items():
            if a is not None and b is not None:
                hops[hop].append(b - a)

    def q(xs: list[float], p: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]

    return "; ".join(f"{h} p50 {statistics.median(x):.1f} s, p90 {q(x, 0.9):.1f} s (n={len(x)})"
                     for h, x in hops.items() if x) or "no canary pod marked"


class Phase:
    """What one phase of one controller's run cost."""

    def __init__(self, bed: Bed, ctrl, before: Snapshot, after: Snapshot, n: int, seconds: float | None = None):
        self.window = after.at - before.at
        self.seconds = seconds
        self.requests = audit_counts(bed.cluster.audit, before.audit_offset, after.audit_offset, ctrl.user)
        self.cpu = (after.cpu_s - before.cpu_s) / self.window
        self.rss = after.rss_mib
        self.heap = after.heap_mib
        self.hwm = after.hwm_mib
        self.p50 = quantile(0.5, before.histogram, after.histogram)
        self.p99 = quantile(0.99, before.histogram, after.histogram)
        self.reconciles = (after.histogram.get(math.inf, 0) - before.histogram.get(math.inf, 0))
        # The whole process's CPU (probes and analysis included) over its reconciles: an upper
        # bound of a reconcile's own CPU, which the wall-clock histogram cannot give.
        self.cpu_per_reconcile = (after.cpu_s - before.cpu_s) / self.reconciles if self.reconciles else None
        self.n = n
        self.status_writes = sum(v for (verb, res), v in self.requests.items()
                                 if res == f"{ctrl.resource}/status" and verb in ("patch", "update"))
        self.lists = sum(v for (verb, _), v in self.requests.items() if verb == "list")

        # Where the machine's CPU went (cores in use, by process name), to tell a busy
        # component from one that waits.
        self.machine_cores = (after.machine_busy - before.machine_busy) / self.window
        spent = {k: (after.machine.get(k, 0) - before.machine.get(k, 0)) / self.window for k in after.machine}
        self.by_process = sorted(((v, k) for k, v in spent.items() if v >= 0.01), reverse=True)

    def rate(self) -> float:
        return sum(self.requests.values()) / self.window

    def machine(self, top: int = 8) -> str:
        parts = ", ".join(f"{name} {cores:.2f}" for cores, name in self.by_process[:top])
        return f"{self.machine_cores:.2f} of {os.cpu_count()} cores busy ({parts})"

    def breakdown(self, top: int = 6) -> str:
        parts = [f"{verb} {res} {v / self.window:.2f}" for (verb, res), v in self.requests.most_common(top)]
        return "; ".join(parts) or "none"


def unreconciled(objs: list[dict]) -> str:
    """How many objects the controller has not looked at since their last spec change."""
    behind = [o["metadata"]["name"] for o in objs
              if str((o.get("status") or {}).get("observedGeneration")) != str(o["metadata"]["generation"])]
    return f"{len(behind)} with observedGeneration behind generation ({', '.join(behind[:10])})"


def warnings(c: Cluster, ns: str) -> str:
    """Warning events in the namespace, by reason (a NameConflict is the stall of issue 20)."""
    events = c.get_raw(f"/api/v1/namespaces/{ns}/events")["items"]
    reasons = collections.Counter(e.get("reason") for e in events if e.get("type") == "Warning")
    return ", ".join(f"{r} ×{k}" for r, k in reasons.most_common())


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.1f}"


def run_one(bed: Bed, ctrl, n: int, steady_s: int, results: list) -> None:
    c = bed.cluster
    ns = f"bench-{ctrl.name}-{n}"
    api = {"mcprollouts": f"/apis/mcprollout.dev/v1alpha1/namespaces/{ns}/mcprollouts",
           "rollouts": f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts"}[ctrl.resource]
    c.kubectl("create", "namespace", ns)
    ctrl.prepare(ns, n)
    proc = ctrl.start(ns)
    time.sleep(3)
    if proc.poll() is not None:
        raise RuntimeError(f"{ctrl.name} exited at start ({proc.returncode}); see {bed.work}/{ctrl.name}.log")
    row: dict = {"controller": ctrl.name, "n": n}

    def apply_wave(wave: int, hold_at: int | None = None) -> None:
        bed.cluster.apply([{**ctrl.manifest(name, wave, hold_at), "metadata": {"name": name, "namespace": ns}}
                           for name in names(n)])

    def items() -> list[dict]:
        return c.get_raw(api)["items"]

    def all_are(what: str, pred, timeout_s: float) -> float:
        t0 = time.monotonic()

        def check():
            got = items()
            done = sum(1 for o in got if pred(o))
            check.last = f"{done}/{n}"
            return len(got) == n and done == n

        check.last = "0/" + str(n)
        try:
            wait_until(f"{what} ({ctrl.name}, N={n})", timeout_s, check, 2)
        except TimeoutError as e:
            raise TimeoutError(f"{e}: {check.last}") from None
        return time.monotonic() - t0

    # First deploy of all N (informative: most of it is the Deployment and kwok machinery).
    t0 = time.monotonic()
    apply_wave(0)
    all_are("all Healthy", ctrl.settled, 1800)
    row["deploy_s"] = time.monotonic() - t0
    log(f"{ctrl.name} N={n}: all Healthy {row['deploy_s']:.0f} s after the apply")
    # Let the first deploy's drains end and the first probe of stable be recorded (probes every
    # 30 s by default): what follows is the state at rest.
    time.sleep(45)

    # Steady: nothing changes.
    before = Snapshot(bed, ctrl, proc.pid)
    time.sleep(steady_s)
    after = Snapshot(bed, ctrl, proc.pid)
    row["steady"] = Phase(bed, ctrl, before, after, n)
    log(f"{ctrl.name} N={n}: steady {row['steady'].rate():.1f} req/s; {row['steady'].breakdown()}")

    # A wave: a template change on all N, steps 5→25→50→100 with 0 s pauses (skipped with
    # --skip-wave, to measure a breach alone).
    before = Snapshot(bed, ctrl, proc.pid)
    t0 = time.monotonic()
    if not bed.args.skip_wave:
        apply_wave(1)
        try:
            all_are("all promoted", ctrl.settled, bed.args.wave_timeout)
        except TimeoutError as e:
            row["stuck"] = str(e)
            row["wave_stuck"] = True
    wave_s = time.monotonic() - t0
    after = Snapshot(bed, ctrl, proc.pid)
    row["wave"] = None if bed.args.skip_wave else Phase(bed, ctrl, before, after, n, wave_s)
    row["warnings"] = warnings(c, ns)
    if row["wave"]:
        log(f"{ctrl.name} N={n}: wave {'promoted all' if 'stuck' not in row else 'STUCK'} after {wave_s:.0f} s; "
            f"{row['wave'].rate():.1f} req/s; warning events: {row['warnings'] or 'none'}")
    if "stuck" in row:
        log(f"{row['stuck']}; {unreconciled(items())}")
        row["breach_s"] = math.nan
        row["final"] = Snapshot(bed, ctrl, proc.pid)
        bed.procs.stop(ctrl.name)
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=900s")
        results.append(row)
        return

    # A breach: all N held at 50 %, then the analysis gauge breached.
    apply_wave(2, hold_at=50)
    row["breach_s"] = math.nan
    try:
        all_are("all held at 50 %", lambda o: ctrl.held(o, 50), bed.args.wave_timeout)
        time.sleep(ANALYSIS_INTERVAL_S + 2)  # at least one passing analysis at 50 % first
        canary = wave_pods(c, ns, 2)
        log(f"{ctrl.name} N={n}: {len(canary)} canary pods, {len(serving(c, ns, canary))} of them ready "
            f"endpoints before the breach")
        before = Snapshot(bed, ctrl, proc.pid)
        bed.set_breach(1)
        t0, breach_at = time.monotonic(), time.time()
        profiling = profile_cluster(bed, ctrl.user, 60) if os.environ.get("BENCH_PROFILE") else []
        # All on stable twice over: no canary pod a ready endpoint of any slice (the figure,
        # measured alike for both), and the controller's status saying so (logged beside it).
        seen: dict[str, float] = {}

        def on_stable() -> bool:
            if "endpoints" not in seen and not serving(c, ns, canary):
                seen["endpoints"] = time.monotonic() - t0
            if "status" not in seen and all(ctrl.on_stable(o) for o in items()):
                seen["status"] = time.monotonic() - t0
            return len(seen) == 2

        wait_until(f"all traffic on stable after the breach ({ctrl.name}, N={n})", 300, on_stable, 1)
        row["breach_s"] = seen["endpoints"]
        row["breach_status_s"] = seen["status"]
        after = Snapshot(bed, ctrl, proc.pid)
        # After the breach's figures are taken: a breach shorter than the profiles waits here.
        for t in profiling:
            t.join(timeout=120)
        if profiling:
            log(f"{ctrl.name} N={n}: the controller manager's first 60 s of the breach: "
                f"{profile_summary(bed.work / 'kube-controller-manager.pprof')}")
        row["breach"] = Phase(bed, ctrl, before, after, n, row["breach_s"])
        row["breach_users"] = by_user(bed, before, after)
        if ctrl.name == Ours.name:
            log(f"{ctrl.name} N={n}: a rollback's hops, per canary pod: {breach_chain(bed, before, after, ctrl.user, breach_at)}")
        b = row["breach"]
        log(f"{ctrl.name} N={n}: breach → all on stable in {row['breach_s']:.1f} s on the endpoints, "
            f"{row['breach_status_s']:.1f} s by its status; {b.reconciles:.0f} reconciles, "
            f"p50/p99 {ms(b.p50)}/{ms(b.p99)} ms, CPU {b.cpu * 100:.1f}%; "
            f"{b.rate():.1f} req/s; {b.breakdown()}; by client: {row['breach_users']}; machine: {b.machine()}")
    except TimeoutError as e:
        row["stuck"] = str(e)
        log(f"{ctrl.name} N={n}: STUCK: {e}; {unreconciled(items())}")
    bed.set_breach(0)
    row["final"] = Snapshot(bed, ctrl, proc.pid)
    bed.procs.stop(ctrl.name)
    c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=900s")
    wait_until("the breach gauge back at 0", 30, lambda: bed.prometheus_value() == "0", 1)
    results.append(row)


def report(results: list, steady_s: int) -> str:
    out = []
    head = ("| N | controller | steady req/s | steady LISTs | status writes /rollout/10 min | wave req/s "
            "| RSS MiB (peak) | live heap MiB | CPU steady / wave | reconciles steady; wave | reconcile p50 / p99 ms (steady; wave) "
            "| CPU ms per reconcile (steady; wave) | all promoted s "
            "| breach → stable s (endpoints; status) |")
    out.append(head)
    out.append("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
    for r in results:
        s, w = r["steady"], r["wave"]
        breach = "stuck" if math.isnan(r["breach_s"]) else f"{r['breach_s']:.1f}; {r['breach_status_s']:.1f}"
        writes = s.status_writes / r["n"] * 600 / s.window
        if w is None:  # --skip-wave
            wave = ("skipped", "–", "–", "–", "–", "skipped")
        else:
            wave = (f"{w.rate():.1f}", f"{w.cpu * 100:.1f}%", f"{w.reconciles:.0f}", f"{ms(w.p50)} / {ms(w.p99)}",
                    ms(w.cpu_per_reconcile), f"{w.seconds:.0f}{' (not all)' if r.get('wave_stuck') else ''}")
        out.append(
            f"| {r['n']} | {r['controller']} | {s.rate():.2f} | {s.lists} | {writes:.2f} | {wave[0]} "
            f"| {s.rss:.0f} ({r['final'].hwm_mib:.0f}) | {'–' if s.heap is None else format(s.heap, '.0f')} | {s.cpu * 100:.1f}% / {wave[1]} "
            f"| {s.reconciles:.0f}; {wave[2]} | {ms(s.p50)} / {ms(s.p99)}; {wave[3]} "
            f"| {ms(s.cpu_per_reconcile)}; {wave[4]} "
            f"| {wave[5]} "
            f"| {breach} |")
    out.append("")
    out.append(f"Steady window {steady_s} s after every rollout was Healthy. Requests by verb and resource (per s):")
    for r in results:
        out.append(f"- {r['controller']} N={r['n']} steady: {r['steady'].breakdown(8)}")
        if r["wave"] is not None:
            out.append(f"- {r['controller']} N={r['n']} wave:   {r['wave'].breakdown(8)}")
        if r.get("breach") is not None:
            b = r["breach"]
            out.append(f"- {r['controller']} N={r['n']} breach: {b.reconciles:.0f} reconciles, p50/p99 "
                       f"{ms(b.p50)}/{ms(b.p99)} ms, CPU {b.cpu * 100:.1f}%; {b.breakdown(8)}")
            out.append(f"- {r['controller']} N={r['n']} breach, every client (writes + reads per s): "
                       f"{r['breach_users']}")
            out.append(f"- {r['controller']} N={r['n']} breach, the machine: {b.machine()}")
        out.append(f"- {r['controller']} N={r['n']} warning events: {r.get('warnings') or 'none'}")
        if "stuck" in r:
            out.append(f"- {r['controller']} N={r['n']} STUCK: {r['stuck']}")
    by = {(r["n"], r["controller"]): r for r in results}
    ratios = []
    for n in sorted({r["n"] for r in results}):
        a, b = by.get((n, Ours.name)), by.get((n, Argo.name))
        if not a or not b:
            continue

        def ratio(x: float, y: float) -> str:
            return f"{x / y:.2f}" if y > 0 else "∞" if x > 0 else "–"

        ratios.append(
            f"- N={n}: RSS {ratio(a['steady'].rss, b['steady'].rss)}, peak RSS "
            f"{ratio(a['final'].hwm_mib, b['final'].hwm_mib)}, CPU steady {ratio(a['steady'].cpu, b['steady'].cpu)}, "
            + (f"CPU wave {ratio(a['wave'].cpu, b['wave'].cpu)}, " if a["wave"] and b["wave"] else "")
            + f"API req/s steady {ratio(a['steady'].rate(), b['steady'].rate())}"
            + (f", wave {ratio(a['wave'].rate(), b['wave'].rate())}, "
               f"time to promote all {ratio(a['wave'].seconds, b['wave'].seconds)}" if a["wave"] and b["wave"] else "")
            + (f", breach → all on stable (endpoints) {ratio(a['breach_s'], b['breach_s'])}"
               if not math.isnan(a["breach_s"]) and not math.isnan(b["breach_s"]) else ""))
    if ratios:
        out.append("")
        out.append("Ratios, mcp-rollout / Argo Rollouts:")
        out.extend(ratios)
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repo", required=True)
    p.add_argument("--cluster-dir", required=True)
    p.add_argument("--cluster-bin", required=True)
    p.add_argument("--netns", required=True)
    p.add_argument("--operator", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--kwok", required=True)
    p.add_argument("--kwok-dir", required=True)
    p.add_argument("--argo", required=True)
    p.add_argument("--argo-dir", required=True)
    p.add_argument("--steady-seconds", type=int, default=120)
    p.add_argument("--controllers", default="mcp-rollout,argo-rollouts")
    p.add_argument("--wave-timeout", type=int, default=1800, help="seconds for all N to be promoted")
    p.add_argument("--skip-wave", action="store_true", help="no promote wave: deploy, rest, then the breach")
    p.add_argument("sizes", nargs="+", type=int)
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mcp-rollout-bench-scale."))
    procs = Processes(work)
    cluster = Cluster(args)
    bed = Bed(args, cluster, procs, work)
    results: list = []
    try:
        bed.up(max(args.sizes))
        wanted = args.controllers.split(",")
        controllers = [ctrl for ctrl in (Ours(bed), Argo(bed)) if ctrl.name in wanted]
        for ctrl in controllers:
            ctrl.install()
        for n in sorted(args.sizes):
            for ctrl in controllers:
                run_one(bed, ctrl, n, args.steady_seconds, results)
                # So far, to stderr: a run stopped later keeps what it measured.
                print(report(results, args.steady_seconds), file=sys.stderr, flush=True)
    finally:
        procs.stop_all()
        if results:
            print(report(results, args.steady_seconds), flush=True)
        keep = os.environ.get("BENCH_KEEP_WORK")
        if keep:
            # The cluster's logs (the audit log: who wrote what, when) go with the cluster.
            shutil.copytree(cluster.dir / "logs", work / "cluster-logs", dirs_exist_ok=True)
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
