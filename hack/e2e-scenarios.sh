#!/usr/bin/env bash
# Runs the e2e scenarios (e2e/scenarios/tests) on the cluster E2E_KUBECONFIG names, with the
# settings hack/e2e-install.sh printed already exported (hack/test.sh does both).
#
# Scenarios get a namespace each, so most of them share the cluster, two at a time. They are
# dealt one test at a time to two workers (xargs -P 2), longest files first: `cargo test` runs
# one test binary after another, and with two threads per binary the second thread idled
# through the tail of every binary (the router's seven scenarios alone take as long as the
# rest). Two at a time is what the scenarios are proven at: with four at once, seen here, a
# router rollback came before any session reached the canary (and a canary failing 10% of its
# calls passed its 5% step — which CI later saw at two as well: too few canary calls for a
# clean window to mean anything; that scenario now fails 30% at twice the rate). The scenarios that disturb what every scenario shares (the
# operator, Prometheus, the cluster's own components) then run alone, one after another.
#
#   E2E_KUBECONFIG=... hack/e2e-scenarios.sh
set -Eeuo pipefail
cd "$(dirname "$0")/.."
: "${E2E_KUBECONFIG:?E2E_KUBECONFIG must name the cluster (hack/test.sh starts one)}"

# Files with the longest scenarios first (seen here, one scenario at a time: router 31–272 s
# each, safety 12–127 s, canary 14–93 s, blue_green 50–62 s, the rest under 50 s; 25 scenarios,
# 1,343 s in all, done two at a time in 672 s).
SHARED=(router canary safety blue_green migration chart manual gateway gitops gates)
ALONE=(operations resilience cluster_restarts)

# Every scenario file runs: a file in no list fails the run rather than being skipped.
listed=$(printf '%s\n' "${SHARED[@]}" "${ALONE[@]}" | sort)
present=$(find e2e/scenarios/tests -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort)
if [[ $listed != "$present" ]]; then
  echo "e2e-scenarios.sh: the lists here do not name exactly the scenario files:" >&2
  diff <(echo "$listed") <(echo "$present") >&2 || true
  exit 1
fi

test_args() { local t; for t in "$@"; do printf -- '--test\n%s\n' "$t"; done; }
# Everything the scenarios run here is built before the first starts (a no-op when
# hack/test.sh has done it).
hack/e2e-build.sh

# The longest scenarios start first, so that none of them starts last and runs alone (the
# rest are dealt in file order).
LONGEST=(
  router::through_the_router_a_canary_and_a_flip_lose_no_session_and_split_new_sessions_by_weight
  safety::lowering_replicas_mid_canary_and_mid_drain_cuts_no_stream
)

# "file test" lines, in the order above.
jobs=$(mktemp)
logs=$(mktemp -d)
trap 'rm -rf "$jobs" "$logs"' EXIT
for file in "${SHARED[@]}"; do
  names=$(cargo test --locked -q -p e2e --test "$file" -- --list --format terse | sed -n 's/: test$//p')
  [[ -n $names ]] || { echo "e2e-scenarios.sh: no test found in $file" >&2; exit 1; }
  sed "s/^/$file /" <<<"$names" >>"$jobs"
done
for long in "${LONGEST[@]}"; do
  line="${long%%::*} ${long#*::}"
  grep -qxF "$line" "$jobs" || { echo "e2e-scenarios.sh: $long is not a scenario (LONGEST)" >&2; exit 1; }
  { echo "$line"; grep -vxF "$line" "$jobs" || true; } >"$jobs.next"
  mv "$jobs.next" "$jobs"
done

# One scenario; its output is printed whole once it ends (the two workers' lines would
# interleave otherwise), with its name and time.
run_one() {
  local file=$1 name=$2 log="$E2E_LOGS/$1.$2.log" start=$SECONDS rc=0
  cargo test --locked -q -p e2e --test "$file" -- --exact "$name" --test-threads=1 --nocapture \
    >"$log" 2>&1 || rc=$?
  if ((rc == 0)); then
    echo "e2e: ok     $file::$name in $((SECONDS - start)) s" >&2
  else
    { echo "e2e: FAILED $file::$name in $((SECONDS - start)) s; its output:"; sed 's/^/    /' "$log"; } >&2
  fi
  return "$rc"
}
export -f run_one
export E2E_LOGS=$logs

started=$SECONDS
echo "e2e: $(wc -l <"$jobs") scenarios on the shared cluster, two at a time" >&2
rc=0
# xargs runs every line even when one fails (exit 123 then).
xargs -P 2 -L 1 bash -c 'run_one "$@"' _ <"$jobs" || rc=$?
echo "e2e: shared-cluster scenarios done in $((SECONDS - started)) s" >&2
((rc == 0)) || { echo "e2e: a shared-cluster scenario failed (its output is above)" >&2; exit 1; }

alone_start=$SECONDS
mapfile -t args < <(test_args "${ALONE[@]}")
cargo test --locked --no-fail-fast -p e2e "${args[@]}" -- --test-threads=1
echo "e2e: scenarios run alone done in $((SECONDS - alone_start)) s" >&2
