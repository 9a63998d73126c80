#!/usr/bin/env bash
# The e2e scenarios on a real cluster: a kind cluster with the operator installed from the Helm
# chart (image built from operator/Dockerfile), the mcp-fixture images (e2e/mcp-fixture/Dockerfile,
# one per tool profile), the Gateway API CRDs and an in-cluster Prometheus; then the same
# scenario code as on the test bed, pointed at it with E2E_KUBECONFIG.
#
#   hack/kind-e2e.sh            # needs docker, kind, kubectl, cargo, python3 and the internet
#   KEEP_CLUSTER=1 hack/kind-e2e.sh   # leave the cluster up afterwards
#
# Never run on this project's own machines (no container engine, no internet there);
# .github/workflows/kind-e2e.yaml runs it on GitHub Actions.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-mcp-rollout-e2e}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.3.0}
OPERATOR_IMAGE=mcp-rollout-operator:e2e
PROFILES=(v1 v2-compatible v2-breaking)
for tool in docker kind kubectl cargo python3; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is missing" >&2; exit 1; }
done

echo "kind-e2e: building images"
docker build -f operator/Dockerfile -t "$OPERATOR_IMAGE" .
for profile in "${PROFILES[@]}"; do
  docker build -f e2e/mcp-fixture/Dockerfile --build-arg "PROFILE=$profile" -t "mcp-fixture:$profile" .
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s
fi
[[ ${KEEP_CLUSTER:-} == 1 ]] || trap 'kind delete cluster --name "$CLUSTER"' EXIT
kubeconfig=$(mktemp)
kind get kubeconfig --name "$CLUSTER" >"$kubeconfig"
export KUBECONFIG=$kubeconfig
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "${PROFILES[@]/#/mcp-fixture:}"

echo "kind-e2e: Gateway API $GATEWAY_API_VERSION CRDs, Prometheus, the operator (Helm chart)"
kubectl apply --server-side -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"
kubectl apply --server-side -f e2e/kind/prometheus.yaml
kubectl apply --server-side -f crds/
hack/install-test-deps.sh >/dev/null
kubectl create namespace mcp-rollout-system --dry-run=client -o yaml | kubectl apply -f -
.venv/bin/python hack/chart.py render -f charts/mcp-rollout/ci/kind-values.yaml --namespace mcp-rollout-system \
  | kubectl apply --server-side -f -
kubectl -n mcp-e2e rollout status deployment/prometheus --timeout=180s
kubectl -n mcp-rollout-system rollout status deployment/mcp-rollout --timeout=180s

echo "kind-e2e: scenarios (one at a time: they share the cluster's default namespace)"
export E2E_KUBECONFIG=$kubeconfig
export E2E_PROMETHEUS_URL=http://prometheus.mcp-e2e.svc:9090
cargo test -p e2e --locked --test canary --test blue_green --test gateway --test manual \
  --test resilience --test operations -- --test-threads=1
