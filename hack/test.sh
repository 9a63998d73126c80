#!/usr/bin/env bash
# The project's test command (README, CI): every Rust test in the workspace and a bounded fuzz
# run of the session router's parsers (hack/fuzz.sh); then the e2e scenarios on a real
# Kubernetes cluster — the one E2E_KUBECONFIG names, or else a local one
# this script starts (hack/cluster.sh: kube-apiserver, kubelet, containerd, ... built from their
# Go modules), with the operator installed by `helm install`; then the offline checks of crds/
# and examples/ with Kubernetes' own schemas, and of the Helm chart with Helm's own engine.
#
#   hack/test.sh                      # everything, on a local cluster started and stopped here
#   E2E_KUBECONFIG=... hack/test.sh   # the scenarios on that cluster (hack/e2e-install.sh first)
#   MCP_KEEP_CLUSTER=1 hack/test.sh   # leave the local cluster up afterwards
set -Eeuo pipefail
trap 'echo "test.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
start=$SECONDS
hack/install-test-deps.sh >/dev/null

echo "test: unit and integration tests" >&2
cargo test --workspace --locked --exclude e2e
echo "test: fuzzing the session router's parsers (bounded)" >&2
FUZZ_SECONDS=${FUZZ_SECONDS:-20} hack/fuzz.sh
echo "test: Go (e2e/cluster): gofmt, go vet" >&2
(cd e2e/cluster && test -z "$(gofmt -l .)" && go vet ./...) || { echo "test: gofmt/go vet failed" >&2; exit 1; }

if [[ -z ${E2E_KUBECONFIG:-} ]]; then
  export MCP_CLUSTER_DIR=${MCP_CLUSTER_DIR:-$(mktemp -d /tmp/mcp-rollout-cluster.XXXXXX)}
  hack/cluster-clean-check.sh before
  if [[ -z ${MCP_KEEP_CLUSTER:-} ]]; then
    # Down even when a test failed; a failing down or a leftover fails the run too.
    trap 'rc=$?; { hack/cluster.sh down && hack/cluster-clean-check.sh after; } || rc=1; exit $rc' EXIT
  fi
  # The images carry the binaries the tests above already built (a release build of the
  # workspace would add 15 min on 2 cores); hack/bench.sh measures release builds.
  export IMAGES_PROFILE=${IMAGES_PROFILE:-dev}
  up=$(hack/cluster.sh up | tail -n 1)
  export E2E_KUBECONFIG=${up#KUBECONFIG=}
  bin=$(hack/cluster.sh bin)
  settings=$(KUBECONFIG=$E2E_KUBECONFIG KUBECTL=$bin/kubectl HELM=$bin/helm \
    PROMETHEUS_IMAGE=localhost/prometheus:e2e hack/e2e-install.sh)
  while IFS='=' read -r key value; do
    [[ $key == E2E_* ]] && export "$key=$value"
  done <<<"$settings"
fi

echo "test: e2e scenarios on the cluster ($E2E_KUBECONFIG)" >&2
# Scenarios get a namespace each and share the cluster two at a time; the ones that disturb
# what every scenario shares (the operator, Prometheus, the cluster's own components) run alone.
cargo test --locked -p e2e --test blue_green --test canary --test chart --test gateway --test gitops \
  --test manual --test router --test safety -- --test-threads=2
cargo test --locked -p e2e --test operations --test resilience --test cluster_restarts -- --test-threads=1

.venv/bin/python hack/validate-crds.py
.venv/bin/python hack/chart.py check
echo "test: done in $((SECONDS - start)) s" >&2
