#!/usr/bin/env bash
# Try mcp-rollout without a cluster: the e2e test bed (a local API server, pods as local
# processes, a real Prometheus), the operator, and an MCP server rolled out twice under agent
# traffic — a healthy v2 that is promoted, then a v3 failing 30% of its tool calls that the
# analysis catches and rolls back. Status is printed as it changes.
#
#   hack/demo.sh            # needs kubectl and prometheus (hack/install-test-deps.sh installs both)
#
# Everything listens on loopback and stops when the script ends (Ctrl-C included).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in kubectl prometheus; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing (run hack/install-test-deps.sh)" >&2; exit 1; }
done
echo "demo: building (first time: a few minutes)"
cargo build --quiet -p testbed --bin testbed -p mcp-rollout --bin mcp-rollout-operator \
  --bin kubectl-mcprollout -p mcp-fixture --bin mcp-fixture --bin mcp-agents
bin=$PWD/target/debug
work=$(mktemp -d /tmp/mcp-rollout-demo.XXXXXX)
export KUBECONFIG=$work/kubeconfig
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -f $work/testbed.pid ]] && "$bin/testbed" down --kubeconfig "$KUBECONFIG" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "test bed: API server, kubelet, kube-proxy, Prometheus (all on loopback)"
"$bin/testbed" up --kubeconfig "$KUBECONFIG" --images e2e/images.yaml --prometheus >"$work/testbed.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -f $work/prometheus-url ]] && break; sleep 0.1; done
prometheus=$(cat "$work/prometheus-url")
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/mcprollouts.mcprollout.dev --timeout=30s >/dev/null

say "operator (logs: $work/operator.log)"
"$bin/mcp-rollout-operator" --kubeconfig "$KUBECONFIG" --metrics-addr 127.0.0.1:0 \
  --lease-namespace default >"$work/operator.log" 2>&1 &
pids+=($!)

rollout() { # image, extra env (YAML flow list)
  cat <<EOF
apiVersion: mcprollout.dev/v1alpha1
kind: McpRollout
metadata:
  name: docs
  namespace: default
spec:
  replicas: 4
  template:
    metadata:
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8080", prometheus.io/path: /metrics}
    spec:
      containers:
        - name: server
          image: $1
          env: $2
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
  service: {port: 8080, targetPort: http}
  strategy:
    canary:
      steps:
        - setWeight: 5
        - pause: {duration: 10s}
        - setWeight: 25
        - pause: {duration: 10s}
        - setWeight: 50
        - pause: {duration: 10s}
        - setWeight: 100
  probe:
    interval: 3s
    timeout: 3s
    toolCall: {name: search_documents, arguments: {query: runbook}}
  analysis:
    prometheus: {address: "$prometheus"}
    interval: 3s
    minRequestCount: 5
    checks:
      errorRate: {for: 6s}
      latency: {enabled: false}
  drain: {min: 3s, max: 10s}
EOF
}

# One line per change of the rollout's status, as it happens.
timeline() {
  local last="" line
  while true; do
    line=$(kubectl get mcprollout docs -o jsonpath='{.status.phase}  stable {.status.stableRevision}  canary {.status.canaryRevision}  weight {.status.desiredWeight}% (effective {.status.effectiveWeight}%)  {.status.message}' 2>/dev/null || true)
    if [[ -n $line && $line != "$last" ]]; then
      printf '  %s  %s\n' "$(date +%T)" "$line"
      last=$line
    fi
    sleep 0.5
  done
}

say "v1: first deploy"
rollout mcp-fixture:v1 "[]" | kubectl apply --server-side -f - >/dev/null
timeline &
pids+=($!)
kubectl wait --for=condition=Ready mcprollout/docs --timeout=90s >/dev/null

ip=$(kubectl get service docs -o jsonpath='{.spec.clusterIP}')
say "agents: 4 agents calling tools through the Service at $ip:8080 for 120 s"
"$bin/mcp-agents" --target "http://$ip:8080" --duration 120 --era stateless --no-keepalive \
  --json "$work/agents.json" >"$work/agents.txt" 2>&1 &
agents=$!
pids+=($agents)

say "v2 (compatible: a new tool, an optional parameter): canary 5% → 25% → 50% → 100%"
rollout mcp-fixture:v2-compatible "[]" | kubectl apply --server-side -f - >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Progressing mcprollout/docs --timeout=30s >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Healthy mcprollout/docs --timeout=120s >/dev/null

say "v3: the same tools, but 30% of tool calls fail — the analysis should roll it back"
rollout mcp-fixture:v2-compatible '[{name: FIXTURE_ERROR_RATE, value: "0.3"}]' | kubectl apply --server-side -f - >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Degraded mcprollout/docs --timeout=120s >/dev/null
sleep 2

say "waiting for the agents to finish their 120 s"
wait "$agents" || true
cat "$work/agents.txt"
say "the rollout now"
"$bin/kubectl-mcprollout" status docs
say "done: v3 was rolled back; calls that failed even after the agents' retries are counted above"
