#!/usr/bin/env bash
# Installs what the e2e scenarios need into the cluster KUBECONFIG names: the McpRollout CRD,
# Prometheus (e2e/kind/prometheus.yaml) and the operator, by `helm install` of
# charts/mcp-rollout. Prints the scenarios' settings as its last lines (E2E_...=...).
#
#   KUBECONFIG=... hack/e2e-install.sh [VALUES.yaml]   # default charts/mcp-rollout/ci/cluster-values.yaml
#
# KUBECTL and HELM name the binaries (hack/test.sh passes the local cluster's own builds);
# PROMETHEUS_IMAGE replaces the manifest's image (the local cluster imports Debian's build).
set -euo pipefail
trap 'echo "e2e-install.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?KUBECONFIG must name the cluster}"
KUBECTL=${KUBECTL:-kubectl}
HELM=${HELM:-helm}
VALUES=${1:-charts/mcp-rollout/ci/cluster-values.yaml}
RELEASE_NAMESPACE=mcp-rollout-system
started=$SECONDS

"$KUBECTL" apply --server-side --force-conflicts -f crds/ >/dev/null
manifest=$(cat e2e/kind/prometheus.yaml)
if [[ -n ${PROMETHEUS_IMAGE:-} ]]; then
  manifest=$(sed "s#image: quay.io/prometheus/prometheus:.*#image: $PROMETHEUS_IMAGE\n          imagePullPolicy: Never#" <<<"$manifest")
fi
"$KUBECTL" apply --server-side --force-conflicts -f - <<<"$manifest" >/dev/null
# The real Helm CLI; the CRD is applied above (Helm never upgrades a chart's crds/).
"$HELM" upgrade --install mcp-rollout charts/mcp-rollout --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --skip-crds -f "$VALUES" --wait --timeout 5m >/dev/null
"$KUBECTL" -n mcp-e2e rollout status deployment/prometheus --timeout=180s >/dev/null
"$KUBECTL" -n "$RELEASE_NAMESPACE" rollout status deployment/mcp-rollout --timeout=180s >/dev/null
prometheus_ip=$("$KUBECTL" -n mcp-e2e get service prometheus -o jsonpath='{.spec.clusterIP}')
echo "e2e-install: CRD, Prometheus and the operator (helm release mcp-rollout) ready in $((SECONDS - started)) s" >&2
# No DNS in the local cluster: the operator reaches Prometheus by its Service's cluster IP.
echo "E2E_PROMETHEUS_URL=http://$prometheus_ip:9090"
echo "E2E_OPERATOR_NAMESPACE=$RELEASE_NAMESPACE"
