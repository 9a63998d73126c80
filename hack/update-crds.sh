#!/usr/bin/env bash
# Regenerates what is derived from the Rust types (operator/src/api): crds/ and the API
# reference and the state diagram in README.md. Tests fail when either is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p mcp-rollout --bin mcp-rollout-operator -- crd > crds/mcprollout.dev_mcprollouts.yaml
echo "wrote crds/mcprollout.dev_mcprollouts.yaml"
cargo run -q -p mcp-rollout --bin mcp-rollout-operator -- update-readme README.md
echo "updated the generated sections of README.md (API reference, state diagram)"
