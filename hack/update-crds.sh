#!/usr/bin/env bash
# Regenerates what is derived from the Rust types (operator/api): crds/ (and the chart's
# copy, and deploy/install.yaml), the API
# reference and the state diagram in README.md. Tests fail when either is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p mcp-rollout --bin mcp-rollout-operator -- crd > crds/mcprollout.dev_mcprollouts.yaml
echo "wrote crds/mcprollout.dev_mcprollouts.yaml"
# The chart carries the same CRDs (Helm installs them from its crds/), and deploy/install.yaml
# is rendered from the chart.
cp crds/*.yaml charts/mcp-rollout/crds/
hack/install-test-deps.sh >/dev/null
.venv/bin/python hack/chart.py install-yaml > deploy/install.yaml
echo "wrote charts/mcp-rollout/crds/ and deploy/install.yaml"
cargo run -q -p mcp-rollout --bin mcp-rollout-operator -- update-readme README.md
echo "updated the generated sections of README.md (API reference, state diagram)"
