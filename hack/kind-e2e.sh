#!/usr/bin/env bash
# The e2e scenarios on a kind cluster, for machines with Docker (this project's own machines
# have none: hack/test.sh runs the same scenarios on the local cluster of hack/cluster.sh).
# Builds the images from the Dockerfiles (operator/Dockerfile, e2e/mcp-fixture/Dockerfile once
# per tool profile), creates a kind cluster, loads them, installs Prometheus and the operator
# (hack/e2e-install.sh: helm install of the chart) and runs hack/test.sh against it.
#
#   hack/kind-e2e.sh                  # needs docker, kind, kubectl, helm, cargo, go, python3 and the internet
#   KEEP_CLUSTER=1 hack/kind-e2e.sh   # leave the cluster up afterwards
#
# Not run on this project's machines; .github/workflows/kind-e2e.yaml runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-mcp-rollout-e2e}
OPERATOR_IMAGE=mcp-rollout-operator:e2e
PROFILES=(v1 v2-compatible v2-breaking)
for tool in docker kind kubectl helm cargo go python3; do
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
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "${PROFILES[@]/#/mcp-fixture:}"

settings=$(KUBECONFIG=$kubeconfig hack/e2e-install.sh charts/mcp-rollout/ci/kind-values.yaml)
while IFS='=' read -r key value; do
  [[ $key == E2E_* ]] && export "$key=$value"
done <<<"$settings"
# kind has cluster DNS, but the scenarios reach Prometheus by cluster IP everywhere.
export E2E_KUBECONFIG=$kubeconfig
# The fixture image carries mcp-agents too.
export E2E_AGENTS_IMAGE=mcp-fixture:v1
hack/test.sh
