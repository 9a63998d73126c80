#!/usr/bin/env bash
# The project's test command (README, CI): every Rust test in the workspace and a bounded fuzz
# run of the session router's parsers (hack/fuzz.sh); then the e2e scenarios on a real
# Kubernetes cluster — the one E2E_KUBECONFIG names, or else a local one
# this script starts (hack/cluster.sh: kube-apiserver, kubelet, containerd, ... built from their
# Go modules), with the operator installed by `helm install`; then the offline checks of crds/
# and examples/ with Kubernetes' own schemas, and of the Helm chart with Helm's own engine. On
# the local cluster it also checks the plugin as released (hack/check-plugin-release.sh).
#
#   hack/test.sh                      # everything, on a local cluster started and stopped here
#   E2E_KUBECONFIG=... hack/test.sh   # the scenarios on that cluster (hack/e2e-install.sh first)
#   MCP_KEEP_CLUSTER=1 hack/test.sh   # leave the local cluster up afterwards
set -Eeuo pipefail
trap 'echo "test.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
start=$SECONDS
# Each phase says when it starts and how long the run has taken so far (CI's time budget).
phase() { echo "test: [$((SECONDS - start)) s] $*" >&2; }
hack/install-test-deps.sh >/dev/null

phase "unit and integration tests"
cargo test --workspace --locked --exclude e2e
phase "Go (e2e/cluster): gofmt, go vet"
(cd e2e/cluster && test -z "$(gofmt -l .)" && go vet ./...) || { echo "test: gofmt/go vet failed" >&2; exit 1; }

fuzz() { FUZZ_SECONDS=${FUZZ_SECONDS:-20} hack/fuzz.sh; }
e2e_build() { hack/e2e-build.sh; }

if [[ -z ${E2E_KUBECONFIG:-} ]]; then
  export MCP_CLUSTER_DIR=${MCP_CLUSTER_DIR:-$(mktemp -d /tmp/mcp-rollout-cluster.XXXXXX)}
  hack/cluster-clean-check.sh before
  # The cluster starts in the background (much of `up` waits: image layers compressed on one
  # core, components and the operator starting) while the fuzz run and the scenarios' build
  # take the CPU; its lines carry "[cluster]".
  cluster_pid=
  cluster_wait() {
    [[ -n $cluster_pid ]] || return 0
    local pid=$cluster_pid
    cluster_pid=
    wait "$pid"
  }
  # A failure anywhere still waits for the cluster's start (bounded by its own timeouts), so
  # that `down` finds everything it started.
  trap 'rc=$?; cluster_wait || true; exit $rc' EXIT
  if [[ -z ${MCP_KEEP_CLUSTER:-} ]]; then
    # Down even when a test failed; a failing down or a leftover fails the run too.
    trap 'rc=$?; cluster_wait || true; { hack/cluster.sh down && hack/cluster-clean-check.sh after; } || rc=1; exit $rc' EXIT
  fi
  # The images carry the binaries the tests above already built (a release build of the
  # workspace would add 15 min on 2 cores); hack/bench.sh measures release builds.
  export IMAGES_PROFILE=${IMAGES_PROFILE:-dev}
  settings=$MCP_CLUSTER_DIR/e2e-settings
  start_cluster() {
    local up bin
    up=$(hack/cluster.sh up | tail -n 1)
    bin=$(hack/cluster.sh bin)
    { echo "E2E_KUBECONFIG=${up#KUBECONFIG=}"
      KUBECONFIG=${up#KUBECONFIG=} KUBECTL=$bin/kubectl HELM=$bin/helm \
        PROMETHEUS_IMAGE=localhost/prometheus:e2e hack/e2e-install.sh
    } >"$settings.partial"
    mv "$settings.partial" "$settings"
  }
  phase "local cluster: up and the operator installed, in the background (images: $IMAGES_PROFILE profile)"
  { start_cluster 2>&1 | sed -u 's/^/[cluster] /' >&2; } &
  cluster_pid=$!
  phase "fuzzing the parsers of what the operator reads (bounded)"
  fuzz
  phase "building the e2e scenarios"
  e2e_build
  phase "waiting for the cluster"
  cluster_wait && [[ -s $settings ]] || { echo "test: the cluster did not start (its lines carry [cluster])" >&2; exit 1; }
  while IFS='=' read -r key value; do
    [[ $key == E2E_* ]] && export "$key=$value"
  done <"$settings"
  phase "the plugin as released: static binary, checksum, krew install, an empty root (hack/check-plugin-release.sh)"
  KUBECTL=$(hack/cluster.sh bin)/kubectl KUBECONFIG=$E2E_KUBECONFIG hack/check-plugin-release.sh
else
  phase "fuzzing the parsers of what the operator reads (bounded)"
  fuzz
fi

phase "e2e scenarios on the cluster ($E2E_KUBECONFIG)"
hack/e2e-scenarios.sh

phase "offline checks: crds/, examples/, the Helm chart"
.venv/bin/python hack/validate-crds.py
.venv/bin/python hack/chart.py check
echo "test: done in $((SECONDS - start)) s" >&2
