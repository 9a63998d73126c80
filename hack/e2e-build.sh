#!/usr/bin/env bash
# Builds what the e2e scenarios run on this machine besides the cluster: their test binaries,
# the kubectl-mcprollout plugin and the gitops-check tool, each with the very command the
# scenarios use when they need it (e2e/scenarios/src/lib.rs `bin_dir`, kstatus.rs
# `gitops_check`), so that nothing is built while scenarios run. Seen in a clean-clone CI run:
# the plugin, built by the first scenarios (`-p mcp-rollout` alone unifies other features than
# the workspace build, so it is a build of its own), held cargo's lock for about 4 minutes and
# more than doubled the longest scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked -p e2e --no-run
cargo build --quiet -p mcp-rollout --bin kubectl-mcprollout
(cd e2e/cluster && CGO_ENABLED=0 go build -o ../../target/go-tools/gitops-check ./cmd/gitops-check)
