#!/usr/bin/env bash
# The project's test command (README, CI): every Rust test in the workspace, then the offline
# checks of crds/ and examples/ with Kubernetes' own schemas, and of the Helm chart with Helm's
# own engine (lint, render, kubernetes-validate, promtool).
set -euo pipefail
cd "$(dirname "$0")/.."
hack/install-test-deps.sh >/dev/null
cargo test --workspace --locked
.venv/bin/python hack/validate-crds.py
.venv/bin/python hack/chart.py check
