#!/usr/bin/env bash
# Fuzzes what the operator reads from outside (operator/fuzz): the session router's token,
# jsonrpc and sse readers; the probe's event_stream and answer; Prometheus answers
# (prometheus); McpRollout manifests (spec). cargo fuzz (libFuzzer, AddressSanitizer), each
# target for FUZZ_SECONDS (default 30): a bounded run, as CI does. FUZZ_TARGETS picks some.
# Stable Rust: RUSTC_BOOTSTRAP lets cargo fuzz pass its -Z flags (the sanitizer runtime ships
# with the stable toolchain). A crash fails the run and leaves its input under
# operator/fuzz/artifacts/.
set -Eeuo pipefail
cd "$(dirname "$0")/../operator/fuzz"
seconds=${FUZZ_SECONDS:-30}
if ! command -v cargo-fuzz >/dev/null; then
  cargo install --locked cargo-fuzz@0.13.1 --quiet
fi
export RUSTC_BOOTSTRAP=1
# The instrumented build of the dependencies (kube's derive and CEL, k8s-openapi, reqwest's
# types) takes ~8 min on 2 cores; kept beside the cluster's binaries, a warm run rebuilds
# only this workspace's crates.
target_dir=${FUZZ_TARGET_DIR:-${MCP_ROLLOUT_CACHE:-$HOME/.cache/mcp-rollout}/fuzz-target}
mkdir -p "$target_dir"
start=$SECONDS
# The committed Cargo.lock as it is (cargo fuzz has no --locked of its own).
cargo metadata --locked --format-version 1 >/dev/null
cargo fuzz build --release --target-dir "$target_dir"
targets=${FUZZ_TARGETS:-token jsonrpc sse event_stream answer prometheus spec}
for target in $targets; do
  mkdir -p "corpus/$target"
  # Seeds: a few well-formed inputs (seeds/), and the repo's example manifests for `spec`.
  if [[ -d seeds/$target ]]; then cp seeds/"$target"/* "corpus/$target/"; fi
  if [[ $target == spec ]]; then cp ../../examples/*.yaml corpus/spec/; fi
  # pipefail: a crash (cargo fuzz's exit status) fails the run; the filter only shortens the log.
  cargo fuzz run --release --target-dir "$target_dir" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | { grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done|thread)" || true; } >&2
done
echo "fuzz: ${targets// /, } for ${seconds} s each, done in $((SECONDS - start)) s" >&2
