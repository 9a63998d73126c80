#!/usr/bin/env bash
# Checks that `hack/cluster.sh down` left this machine as `up` found it: no process of the
# cluster, no mount under its directory, no network namespace, network interface or host
# iptables rule more than before, no pod cgroup, host sysctls restored.
#
#   hack/cluster-clean-check.sh before   # snapshot (before `up`)
#   hack/cluster-clean-check.sh after    # compare (after `down`); exit 1 on any leftover
set -Eeuo pipefail
trap 'echo "cluster-clean-check.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
DIR=${MCP_CLUSTER_DIR:?MCP_CLUSTER_DIR names the cluster}
SNAP=${TMPDIR:-/tmp}/mcp-cluster-clean-$(printf '%s' "$(realpath -m "$DIR")" | sha256sum | cut -c1-8)

snapshot() {
  local out=$1
  mkdir -p "$out"
  ip -o link show | awk -F': ' '{print $2}' | sort >"$out/links"
  { ip netns list 2>/dev/null || true; } | awk '{print $1}' | sort >"$out/netns"
  # Rules only (no counters, no generated header lines); none at all is an empty list.
  { iptables-save 2>/dev/null || true; } | { grep -v '^#' || true; } | sed 's/\[[0-9]*:[0-9]*\]//' | sort >"$out/iptables"
  awk '{print $5}' /proc/self/mountinfo | sort >"$out/mounts"
  find /sys/fs/cgroup -maxdepth 2 -name 'mcpr-*' 2>/dev/null | sort >"$out/cgroups"
  for key in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops; do
    echo "$key=$(sysctl -n "$key")"
  done >"$out/sysctls"
}

case ${1:-} in
  before)
    rm -rf "$SNAP"
    snapshot "$SNAP/before"
    ;;
  after)
    [[ -d $SNAP/before ]] || { echo "clean-check: no snapshot taken before up" >&2; exit 1; }
    snapshot "$SNAP/after"
    failed=0
    for what in links netns iptables mounts cgroups sysctls; do
      extra=$(comm -13 "$SNAP/before/$what" "$SNAP/after/$what")
      changed=$(comm -23 "$SNAP/before/$what" "$SNAP/after/$what")
      if [[ -n $extra || ( $what == sysctls && -n $changed ) ]]; then
        echo "clean-check: $what left behind:" >&2
        echo "$extra" | sed 's/^/  + /' >&2
        [[ -n $changed ]] && echo "$changed" | sed 's/^/  - /' >&2
        failed=1
      fi
    done
    # Processes naming the cluster's directory (every component and shim does; containers
    # live in the pod cgroups checked above, which cannot be removed while a process is left).
    leftovers=$(ps -eo pid=,args= | grep -F -e "$(realpath -m "$DIR")" | grep -v -e grep -e cluster-clean-check || true)
    if [[ -n $leftovers ]]; then
      echo "clean-check: processes left behind:" >&2
      echo "$leftovers" | sed 's/^/  /' >&2
      failed=1
    fi
    [[ -e $DIR ]] && { echo "clean-check: $DIR still exists" >&2; failed=1; }
    ((failed == 0)) && echo "clean-check: nothing left behind" >&2
    rm -rf "$SNAP"
    exit "$failed"
    ;;
  *)
    echo "usage: hack/cluster-clean-check.sh before|after" >&2
    exit 2
    ;;
esac
