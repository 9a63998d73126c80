#!/usr/bin/env bash
# Fuzzes the session router's parsers (operator/fuzz: token, jsonrpc, sse) with cargo fuzz
# (libFuzzer, AddressSanitizer), each for FUZZ_SECONDS (default 30): a bounded run, as CI does.
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
start=$SECONDS
# The committed Cargo.lock as it is (cargo fuzz has no --locked of its own).
cargo metadata --locked --format-version 1 >/dev/null
cargo fuzz build --release
for target in token jsonrpc sse; do
  mkdir -p "corpus/$target"
  # pipefail: a crash (cargo fuzz's exit status) fails the run; the filter only shortens the log.
  cargo fuzz run --release "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | { grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done|thread)" || true; } >&2
done
echo "fuzz: token, jsonrpc, sse for ${seconds} s each, done in $((SECONDS - start)) s" >&2
