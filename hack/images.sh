#!/usr/bin/env bash
# Builds the images the local cluster runs, as OCI archives, without a container engine:
# the workspace's binaries (release, or IMAGES_PROFILE; and the shared libraries they load) in a single layer,
# non-root, no shell — what operator/Dockerfile and e2e/mcp-fixture/Dockerfile build with
# Docker. Written to DIR (default $MCP_CLUSTER_DIR/images); hack/cluster.sh imports them.
#
#   hack/images.sh [DIR]
#
# Images (names as the chart and the scenarios use them):
#   ghcr.io/mcp-rollout/mcp-rollout-operator:e2e   the operator (and kubectl-mcprollout, mcp-rollout-router)
#   docker.io/library/mcp-fixture:{v1,v2-compatible,v2-breaking}   one per tool profile
#   docker.io/library/mcp-agents:e2e               the simulated agents (and mcp-hooks, the recording
#                                                  receiver of gate webhooks and notifications)
#   localhost/prometheus:e2e                       Prometheus for the scenarios ($PROMETHEUS: the
#                                                  build of hack/cluster.sh, from its Go module)
set -euo pipefail
trap 'echo "images.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."

OUT=${1:-${MCP_CLUSTER_DIR:-/tmp/mcp-rollout-cluster}/images}
mkdir -p "$OUT"
started=$SECONDS
# IMAGES_PROFILE: release (default), or dev — the binaries `cargo test` has already built,
# which hack/test.sh uses: a release build of the workspace took 15 min of a 2-core CI run.
profile=${IMAGES_PROFILE:-release}
echo "images: building $profile binaries" >&2
cargo build --profile "$profile" --locked --quiet -p mcp-rollout --bin mcp-rollout-operator --bin kubectl-mcprollout \
  --bin mcp-rollout-router -p mcp-fixture --bin mcp-fixture --bin mcp-agents --bin mcp-hooks
built=target/$([[ $profile == dev ]] && echo debug || echo "$profile")
# Stripped copies: what the images carry (debug builds keep line tables, 4x the size).
release=$OUT/bin
mkdir -p "$release"
for b in mcp-rollout-operator kubectl-mcprollout mcp-rollout-router mcp-fixture mcp-agents mcp-hooks; do
  strip -o "$release/$b" "$built/$b"
done

image() {
  python3 hack/oci_image.py "$@" | sed 's/^/images: /' >&2
}

# The CA bundle, as distroless images carry it: reqwest's TLS needs a root store to build a
# client at all (the probe and the Prometheus client), even for plain-HTTP targets.
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
image --name ghcr.io/mcp-rollout/mcp-rollout-operator:e2e --out "$OUT/operator.tar" \
  --entrypoint /usr/local/bin/mcp-rollout-operator --file "$CA_BUNDLE:$CA_BUNDLE" \
  --file "$release/mcp-rollout-operator:/usr/local/bin/mcp-rollout-operator" \
  --file "$release/kubectl-mcprollout:/usr/local/bin/kubectl-mcprollout" \
  --file "$release/mcp-rollout-router:/usr/local/bin/mcp-rollout-router" \
  --libs-of "$release/mcp-rollout-operator"
for profile in v1 v2-compatible v2-breaking; do
  # A real kubelet does not tell a container its image tag: the profile is baked in.
  image --name "docker.io/library/mcp-fixture:$profile" --out "$OUT/mcp-fixture-$profile.tar" \
    --entrypoint /usr/local/bin/mcp-fixture \
    --env "FIXTURE_PROFILE=$profile" --env FIXTURE_LISTEN=0.0.0.0:8080 \
    --file "$release/mcp-fixture:/usr/local/bin/mcp-fixture" \
    --file "$release/mcp-agents:/usr/local/bin/mcp-agents" \
    --libs-of "$release/mcp-fixture"
done
image --name docker.io/library/mcp-agents:e2e --out "$OUT/mcp-agents.tar" \
  --entrypoint /usr/local/bin/mcp-agents --file "$CA_BUNDLE:$CA_BUNDLE" \
  --file "$release/mcp-agents:/usr/local/bin/mcp-agents" --libs-of "$release/mcp-agents" \
  --file "$release/mcp-hooks:/usr/local/bin/mcp-hooks"
if [[ -n ${PROMETHEUS:-} ]]; then
  image --name localhost/prometheus:e2e --out "$OUT/prometheus.tar" \
    --entrypoint /usr/bin/prometheus --file "$PROMETHEUS:/usr/bin/prometheus" --libs-of "$PROMETHEUS" \
    --dir /prometheus:65532
fi
echo "images: written to $OUT in $((SECONDS - started)) s" >&2
