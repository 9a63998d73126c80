#!/usr/bin/env bash
# Checks the `kubectl mcprollout` release as a user gets it, leaving the repository as it is:
# - hack/release-plugin.sh (dev profile, same static linking) into a temporary directory; the
#   archive's SHA-256 matches its .sha256 file and the krew manifest;
# - krew (built from its Go module, sigs.k8s.io/krew) installs it from that manifest and
#   archive, and kubectl finds it as `kubectl mcprollout`; an archive with one byte changed is
#   refused by krew;
# - in an empty root (the binary, /etc/hosts, /etc/resolv.conf, /dev/urandom — no loader, no
#   library, no NSS module) it reaches the API server by a name only that hosts file knows.
#
#   KUBECTL=... KUBECONFIG=... hack/check-plugin-release.sh
#
# KUBECONFIG: a running cluster whose server is https://127.0.0.1:PORT with `localhost` in its
# certificate (the local cluster, hack/cluster.sh). Needs root (chroot, mknod).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

: "${KUBECTL:?KUBECTL must name a kubectl binary}"
: "${KUBECONFIG:?KUBECONFIG must name the running cluster}"
cache=${MCP_ROLLOUT_CACHE:-$HOME/.cache/mcp-rollout}
krew_version=v0.4.3
krew=$cache/bin/krew-$krew_version

work=$(mktemp -d /tmp/mcp-rollout-plugin-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

PROFILE=dev PLUGIN_TARGET_DIR=$cache/plugin-target DIST=$work/dist KREW_MANIFEST=$work/mcprollout.yaml \
  hack/release-plugin.sh
archive=$work/dist/kubectl-mcprollout-linux-amd64.tar.gz
(cd "$work/dist" && sha256sum --quiet -c kubectl-mcprollout-linux-amd64.tar.gz.sha256)
grep -q "sha256: $(cut -d' ' -f1 "$archive.sha256")" "$work/mcprollout.yaml"

if [[ ! -x $krew ]]; then
  mkdir -p "$cache/bin" "$work/gobin"
  (cd "$work" && GOBIN=$work/gobin go install "sigs.k8s.io/krew/cmd/krew@$krew_version")
  mv "$work/gobin/krew" "$krew"
fi

# Installed by krew from the manifest and the archive (krew checks the sha256), found by
# kubectl's plugin lookup on PATH.
export KREW_ROOT=$work/krew
"$krew" install --manifest="$work/mcprollout.yaml" --archive="$archive" </dev/null >"$work/krew.log" 2>&1 \
  || { cat "$work/krew.log" >&2; echo "check-plugin-release: krew did not install the plugin" >&2; exit 1; }
version=$(PATH=$KREW_ROOT/bin:$PATH "$KUBECTL" mcprollout --version)
[[ $version == kubectl-mcprollout* ]] || { echo "check-plugin-release: kubectl mcprollout --version said: $version" >&2; exit 1; }

# A changed archive is refused (into a root of its own: `krew uninstall` needs the index,
# which lives on the internet).
export KREW_ROOT=$work/krew-tampered
cp "$archive" "$work/tampered.tar.gz"
printf 'x' >>"$work/tampered.tar.gz"
if "$krew" install --manifest="$work/mcprollout.yaml" --archive="$work/tampered.tar.gz" </dev/null >"$work/tampered.log" 2>&1; then
  echo "check-plugin-release: krew installed an archive whose checksum does not match" >&2
  exit 1
fi
grep -q "checksum does not match" "$work/tampered.log" \
  || { cat "$work/tampered.log" >&2; echo "check-plugin-release: krew refused the changed archive, but not for its checksum" >&2; exit 1; }

# An empty root: nothing but the binary and what any machine has in /etc and /dev.
root=$work/root
mkdir -p "$root/etc" "$root/dev"
tar -xzf "$archive" -C "$root"
mknod -m 444 "$root/dev/urandom" c 1 9
mknod -m 444 "$root/dev/random" c 1 8
mknod -m 666 "$root/dev/null" c 1 3
echo "127.0.0.1 mcp-api.test" >"$root/etc/hosts"
echo "nameserver 127.0.0.1" >"$root/etc/resolv.conf"
"$KUBECTL" --kubeconfig "$KUBECONFIG" config view --raw --minify --flatten >"$root/kubeconfig"
grep -Eq 'server: https://127\.0\.0\.1:[0-9]+$' "$root/kubeconfig" \
  || { echo "check-plugin-release: the kubeconfig's server is not https://127.0.0.1:PORT" >&2; exit 1; }
sed -i -E 's#server: https://127\.0\.0\.1:([0-9]+)$#server: https://mcp-api.test:\1\n    tls-server-name: localhost#' "$root/kubeconfig"
if ! listed=$(chroot "$root" /kubectl-mcprollout list -A --kubeconfig /kubeconfig 2>&1); then
  echo "check-plugin-release: the static binary in an empty root could not list McpRollouts: $listed" >&2
  exit 1
fi
echo "check-plugin-release: archive $(du -k "$archive" | cut -f1) KiB, checksum verified; krew $krew_version installed it" \
  "(a changed archive refused); '$version' through kubectl; in an empty root it listed McpRollouts" \
  "at mcp-api.test (its hosts file only): $(head -n 1 <<<"$listed")"
