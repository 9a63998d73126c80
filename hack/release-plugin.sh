#!/usr/bin/env bash
# The `kubectl mcprollout` release for linux/amd64: a statically linked binary (glibc with
# crt-static: no shared library needed at run time; the API server's name is resolved by the
# plugin itself, not by getaddrinfo, which a static glibc cannot serve), its archive with a
# SHA-256 checksum, and the krew manifest for them.
#
#   hack/release-plugin.sh [VERSION]     # default: the workspace version, as v0.1.0
#
# Writes dist/kubectl-mcprollout-linux-amd64.tar.gz, its .sha256, and
# deploy/krew/mcprollout.yaml (the archive's URL on the release named VERSION, and its sha256).
# PROFILE=dev builds without optimizations (what the tests use: quicker, same linking);
# DIST and KREW_MANIFEST write elsewhere (the check does, leaving the repository as it is).
# hack/check-plugin-release.sh installs the result with krew and runs it.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

version=${1:-v$(sed -n 's/^version = "\(.*\)"/\1/p' operator/Cargo.toml | head -n 1)}
profile=${PROFILE:-release}
target=x86_64-unknown-linux-gnu
# Its own target directory: crt-static changes every crate's flags, and sharing the workspace's
# would rebuild it each way.
target_dir=${PLUGIN_TARGET_DIR:-target/static}
repository=$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
archive_name=kubectl-mcprollout-linux-amd64.tar.gz
dist=${DIST:-dist}
manifest=${KREW_MANIFEST:-deploy/krew/mcprollout.yaml}

RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$target_dir \
  cargo build --locked --profile "$profile" -p mcp-rollout --bin kubectl-mcprollout --target "$target"
out=$target_dir/$target/$([[ $profile == dev ]] && echo debug || echo "$profile")/kubectl-mcprollout

# Static or nothing: a dynamic section would mean a loader and libraries on the user's machine.
if readelf -d "$out" 2>/dev/null | grep -q NEEDED; then
  echo "release-plugin: $out links shared libraries:" >&2
  readelf -d "$out" | grep NEEDED >&2
  exit 1
fi

mkdir -p "$dist" "$(dirname "$manifest")"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$out" "$stage/kubectl-mcprollout"
strip "$stage/kubectl-mcprollout" 2>/dev/null || true
# Reproducible archive: fixed order, owner and time, so the checksum depends on the binary only.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - kubectl-mcprollout \
  | gzip -n >"$dist/$archive_name"
(cd "$dist" && sha256sum "$archive_name" >"$archive_name.sha256")
sha=$(cut -d' ' -f1 "$dist/$archive_name.sha256")

cat >"$manifest" <<EOF
# krew plugin manifest, written by hack/release-plugin.sh for $version (do not edit: run it).
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: mcprollout
spec:
  version: $version
  homepage: $repository
  shortDescription: Safe rollouts of MCP servers (McpRollout)
  description: |
    Drives McpRollouts, the canary and blue-green rollouts of MCP servers run by the
    mcp-rollout operator: status, list, promote, pause, resume, abort, retry, restart,
    history and undo; validate manifests offline; probe any MCP server.
  platforms:
    - selector:
        matchLabels:
          os: linux
          arch: amd64
      uri: $repository/releases/download/$version/$archive_name
      sha256: $sha
      bin: kubectl-mcprollout
      files:
        - from: kubectl-mcprollout
          to: .
EOF
echo "release-plugin: $dist/$archive_name ($(du -k "$dist/$archive_name" | cut -f1) KiB, sha256 $sha); $manifest for $version"
