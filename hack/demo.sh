#!/usr/bin/env bash
# mcp-rollout on a real Kubernetes: the operator installed by `helm install`, an MCP server
# rolled out twice under agent traffic — a healthy v2 that is promoted, then a v3 failing 30% of
# its tool calls that the analysis catches and rolls back. Status is printed as it changes.
#
#   hack/demo.sh                 # on a local cluster it starts (hack/cluster.sh) and stops
#   KUBECONFIG=... hack/demo.sh  # on the cluster KUBECONFIG names (it needs the images of
#                                # hack/images.sh loaded and pullable as named there)
#
# On a fresh machine it installs what it needs first (hack/install-test-deps.sh) and builds the
# cluster's components (tens of minutes the first time; cached afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-test-deps.sh >/dev/null
work=$(mktemp -d /tmp/mcp-rollout-demo.XXXXXX)
started_cluster=""
cleanup() {
  [[ -n ${agents_pod:-} ]] && kubectl -n demo delete pod "$agents_pod" --wait=false >/dev/null 2>&1 || true
  [[ -n ${timeline_pid:-} ]] && kill "$timeline_pid" 2>/dev/null || true
  if [[ -n $started_cluster ]]; then
    hack/cluster.sh down >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [[ -z ${KUBECONFIG:-} ]]; then
  say "a local Kubernetes (etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy)"
  export MCP_CLUSTER_DIR=$work/cluster
  started_cluster=1
  up=$(hack/cluster.sh up | tail -n 1)
  export KUBECONFIG=${up#KUBECONFIG=}
  bin=$(hack/cluster.sh bin)
  export PATH=$bin:$PATH
  install_env=(PROMETHEUS_IMAGE=localhost/prometheus:e2e)
else
  install_env=()
fi
for tool in kubectl helm; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing" >&2; exit 1; }
done
say "the McpRollout CRD, Prometheus and the operator (helm install charts/mcp-rollout)"
settings=$(env "${install_env[@]}" hack/e2e-install.sh)
prometheus=$(sed -n 's/^E2E_PROMETHEUS_URL=//p' <<<"$settings")
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
cargo build --quiet -p mcp-rollout --bin kubectl-mcprollout
plugin=$PWD/target/debug/kubectl-mcprollout

rollout() { # image, extra env (YAML flow list)
  cat <<EOF
apiVersion: mcprollout.dev/v1alpha1
kind: McpRollout
metadata:
  name: docs
  namespace: demo
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
    # The demo's Prometheus scrapes every second: four scrapes.
    rateWindow: 4s
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
    line=$(kubectl -n demo get mcprollout docs -o jsonpath='{.status.phase}  stable {.status.stableRevision}  canary {.status.canaryRevision}  weight {.status.desiredWeight}% (effective {.status.effectiveWeight}%)  {.status.message}' 2>/dev/null || true)
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
timeline_pid=$!
kubectl -n demo wait --for=condition=Ready mcprollout/docs --timeout=180s >/dev/null

ip=$(kubectl -n demo get service docs -o jsonpath='{.spec.clusterIP}')
agents_pod=demo-agents
say "agents: a pod of 4 agents calling tools through the Service at $ip:8080 for 150 s"
kubectl -n demo run "$agents_pod" --image=mcp-agents:e2e --image-pull-policy=Never --restart=Never -- \
  --target "http://$ip:8080" --duration 150 --era stateless --no-keepalive --allow-remote-target >/dev/null

say "v2 (compatible: a new tool, an optional parameter): canary 5% → 25% → 50% → 100%"
rollout mcp-fixture:v2-compatible "[]" | kubectl apply --server-side -f - >/dev/null
kubectl -n demo wait --for=jsonpath='{.status.phase}'=Progressing mcprollout/docs --timeout=60s >/dev/null
kubectl -n demo wait --for=jsonpath='{.status.phase}'=Healthy mcprollout/docs --timeout=180s >/dev/null

say "v3: the same tools, but 30% of tool calls fail — the analysis should roll it back"
rollout mcp-fixture:v2-compatible '[{name: FIXTURE_ERROR_RATE, value: "0.3"}]' | kubectl apply --server-side -f - >/dev/null
kubectl -n demo wait --for=jsonpath='{.status.phase}'=Degraded mcprollout/docs --timeout=180s >/dev/null
sleep 2

say "waiting for the agents to finish their 150 s"
kubectl -n demo wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$agents_pod" --timeout=300s >/dev/null || true
kubectl -n demo logs "$agents_pod"
say "the rollout now"
"$plugin" status docs -n demo
say "done: v3 was rolled back; calls that failed even after the agents' retries are counted above"
