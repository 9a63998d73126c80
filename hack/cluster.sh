#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, from upstream components built from their Go
# modules (e2e/cluster/go.mod): etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd with runc, the kubelet and kube-proxy (iptables), all inside one network namespace
# of its own. Node, pod and Service addresses exist only in that namespace; the API server is
# reached from this machine's loopback through a forwarder. Nothing is pulled: every image
# (the pause sandbox included) is imported from OCI archives built here.
#
#   hack/cluster.sh up          # build what is missing, start (idempotent); last line KUBECONFIG=...
#   hack/cluster.sh down        # stop everything, leave no process, mount, namespace or rule
#   hack/cluster.sh status      # what runs
#   hack/cluster.sh exec -- CMD...      # run CMD inside the cluster's network namespace
#   hack/cluster.sh restart COMPONENT   # kubelet, kube-apiserver, etcd, ... (for scenarios)
#   hack/cluster.sh build       # only build (and cache) the components
#   hack/cluster.sh kill-container NAMESPACE POD CONTAINER   # SIGKILL a container's processes
#   hack/cluster.sh partition NAMESPACE POD CONTAINER IP:PORT on|off   # drop (or again let
#                               through) the pod's TCP packets to IP:PORT, in its own namespace
#
# MCP_CLUSTER_DIR (default /tmp/mcp-rollout-cluster) holds the cluster's state and logs;
# MCP_ROLLOUT_CACHE (default ~/.cache/mcp-rollout) the built binaries and images, reused
# across clusters. MCP_CLUSTER_IMAGES=none imports only the pause image (hack/bench.sh scale
# runs no container); MCP_CLUSTER_API_QPS raises the controller manager's and the scheduler's
# client rate limits (default 20/s and 50/s) for clusters of thousands of fake pods. Needs root (namespaces, mounts, cgroups) and the packages
# hack/install-test-deps.sh installs (runc, iptables, conntrack).
#
# Settings this host needs, and why (see also the README's "Local cluster" section):
# - kubelet `failCgroupV1: false`: the host has cgroup v1 only; from 1.35 the kubelet refuses
#   to start on it unless told.
# - kubelet `cgroupDriver: cgroupfs` (no systemd here) and `cgroupRoot: /mcpr-<id>`, so every
#   pod cgroup sits under one root `down` removes.
# - kubelet `failSwapOn: false`, image GC at 100% and every eviction threshold at 0% (ignored):
#   imported images can never be pulled again, so nothing may remove them.
# - kubelet `resolvConf` is an empty file: there is no DNS in the cluster (pods use IPs).
# - The kubelet sets kernel tunables (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops)
#   host-wide; `protectKernelDefaults` would instead refuse to start on this host's values.
#   `up` saves the host's values and `down` restores them.
# - The node's address is on a veth pair kept inside the namespace (no dummy interfaces here).
# - containerd `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE and cannot lower an
#   OOM score; the kubelet's negative scores (sandbox -998) made every pod sandbox fail in runc.
#   The kubelet and kube-proxy log that they could not lower their own, and carry on.
# - kube-proxy `conntrack.maxPerCore: 0` and zero timeouts: leave the host-wide conntrack
#   sysctls alone.
# - containerd: its own root, state, socket and runc root under MCP_CLUSTER_DIR,
#   `netns_mounts_under_state_dir`, the sandbox image pinned to the imported pause image.
set -euo pipefail
trap 'echo "cluster.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
REPO=$(pwd)

K8S_VERSION=v1.36.3
CLUSTER_DIR=$(realpath -m "${MCP_CLUSTER_DIR:-/tmp/mcp-rollout-cluster}")
CACHE=${MCP_ROLLOUT_CACHE:-$HOME/.cache/mcp-rollout}
ID=$(printf %s "$CLUSTER_DIR" | sha256sum | cut -c1-8)
NETNS=mcpr-$ID
NETNS_PATH=/run/netns/$NETNS
CGROUP_ROOT=/mcpr-$ID
NODE_NAME=mcp-node
NODE_IP=10.201.0.2
NODE_CIDR=10.201.0.0/24
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
GOMOD=$REPO/e2e/cluster

RUN=$CLUSTER_DIR/run
LOGS=$CLUSTER_DIR/logs
PKI=$CLUSTER_DIR/pki
CONF=$CLUSTER_DIR/conf
KUBECONFIG_HOST=$CLUSTER_DIR/kubeconfig
KUBECONFIG_NETNS=$CLUSTER_DIR/kubeconfig-in-netns
CONTAINERD_SOCK=$CLUSTER_DIR/containerd/containerd.sock

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# ── building ─────────────────────────────────────────────────────────────────────────────

# One directory of binaries per set of module versions they are built from: the modules of
# every package the components import (so adding an unrelated tool to e2e/cluster/go.mod
# rebuilds nothing), the Go version and the build flags below. Computing it loads the package
# graph (seconds); it is remembered per go.sum.
COMPONENT_PACKAGES=(k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl,kubeadm}
  go.etcd.io/etcd/server/v3 github.com/containerd/containerd/v2/cmd/{containerd,containerd-shim-runc-v2,ctr}
  github.com/containernetworking/plugins/plugins/{main/bridge,main/loopback,ipam/host-local,meta/portmap}
  helm.sh/helm/v4/cmd/helm)
components_key() {
  local sum memo
  sum=$( (cat "$GOMOD/go.sum" "$GOMOD/prometheus/go.sum"; go version) | sha256sum | cut -c1-16)
  memo=$CACHE/bin/.keys/$sum
  if [[ ! -s $memo ]]; then
    mkdir -p "$(dirname "$memo")"
    {
      (cd "$GOMOD" && go list -deps -f '{{with .Module}}{{.Path}} {{.Version}}{{with .Replace}} {{.Version}}{{end}}{{end}}' \
        "${COMPONENT_PACKAGES[@]}") | sort -u
      cat "$GOMOD/prometheus/go.sum"
      echo "$(go version) flags-v1"
    } | sha256sum | cut -c1-12 >"$memo.tmp"
    mv "$memo.tmp" "$memo"
  fi
  cat "$memo"
}
BIN=$CACHE/bin/$K8S_VERSION-$(components_key)
TOOLS_BIN=$CACHE/bin/tools

KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)
ALL_BINARIES=("${KUBE_COMPONENTS[@]}" etcd containerd containerd-shim-runc-v2 ctr helm
  cni/bridge cni/host-local cni/loopback cni/portmap pause prometheus)

k8s_ldflags() {
  # What upstream's hack/lib/version.sh stamps, for both places version is read from.
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local flags=()
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=("-X $pkg.gitVersion=$K8S_VERSION" "-X $pkg.gitMajor=1" "-X $pkg.gitMinor=$minor"
      "-X $pkg.gitTreeState=clean" "-X $pkg.gitCommit=module-$K8S_VERSION"
      "-X $pkg.buildDate=1970-01-01T00:00:00Z")
  done
  echo "-s -w ${flags[*]}"
}

# go build with a line of progress per 200 packages compiled, and the time it took. `go build
# -v` names each package it compiles on a line of its own; anything else is a diagnostic.
go_build() {
  local what=$1
  shift
  local started=$SECONDS
  say "building $what"
  set +e
  (cd "$GOMOD" && go build -v "$@" 2>&1) | awk -v what="$what" '
    /^#/ || /[: ]/ { print; next }
    { n++; if (n % 200 == 0) { printf "cluster:   %s: %d packages compiled\n", what, n > "/dev/stderr" } }' >&2
  local rc=${PIPESTATUS[0]}
  set -e
  ((rc == 0)) || die "building $what failed"
  say "built $what in $((SECONDS - started)) s"
}

# Whether any of the named binaries is missing from $BIN.
missing() {
  local b
  for b in "$@"; do [[ -x $BIN/$b ]] || return 0; done
  return 1
}

build_components() {
  missing "${ALL_BINARIES[@]}" || return 0
  command -v go >/dev/null || die "go is not installed"
  mkdir -p "$BIN/cni"
  local started=$SECONDS
  say "building into $BIN; a cold build takes tens of minutes on 2 cores"
  export CGO_ENABLED=0
  if missing "${KUBE_COMPONENTS[@]}"; then
    go_build "Kubernetes $K8S_VERSION (${KUBE_COMPONENTS[*]})" -tags selinux,notest \
      -ldflags "$(k8s_ldflags)" -o "$BIN/" "${KUBE_COMPONENTS[@]/#/k8s.io/kubernetes/cmd/}"
  fi
  missing etcd && go_build "etcd" -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  if missing containerd containerd-shim-runc-v2 ctr; then
    go_build "containerd" -ldflags "-s -w" -o "$BIN/" github.com/containerd/containerd/v2/cmd/containerd \
      github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr
  fi
  if missing cni/bridge cni/host-local cni/loopback cni/portmap; then
    go_build "CNI plugins" -ldflags "-s -w" -o "$BIN/cni/" \
      github.com/containernetworking/plugins/plugins/main/bridge \
      github.com/containernetworking/plugins/plugins/main/loopback \
      github.com/containernetworking/plugins/plugins/ipam/host-local \
      github.com/containernetworking/plugins/plugins/meta/portmap
  fi
  missing helm && go_build "helm" -ldflags "-s -w" -o "$BIN/helm" helm.sh/helm/v4/cmd/helm
  # Prometheus from its own module (e2e/cluster/prometheus), with only the service discovery
  # the scenarios use; Debian's build has no Kubernetes service discovery at all.
  if missing prometheus; then
    GOMOD=$GOMOD/prometheus go_build "Prometheus" -tags remove_all_sd,enable_kubernetes_sd \
      -ldflags "-s -w" -o "$BIN/prometheus" github.com/prometheus/prometheus/cmd/prometheus
  fi
  if missing pause; then
    # The sandbox's pause process: upstream's own C source, from the kubernetes module.
    local src
    src=$(cd "$GOMOD" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
    cc -Os -static -Wall -Werror -DVERSION="$K8S_VERSION" -o "$BIN/pause" "$src" || die "building pause failed"
  fi
  say "components built in $((SECONDS - started)) s"
  echo "$((SECONDS - started))" >>"$BIN/.build-seconds"
}

# Our own small Go programs (the namespace forwarder): cheap, rebuilt when changed.
build_tools() {
  mkdir -p "$TOOLS_BIN"
  (cd "$GOMOD" && CGO_ENABLED=0 go build -o "$TOOLS_BIN/" ./cmd/...) || die "building e2e/cluster/cmd failed"
}

# ── processes ────────────────────────────────────────────────────────────────────────────

in_netns() { nsenter --net="$NETNS_PATH" -- "$@"; }

# Starts a component in the namespace, in its own session, logging to logs/NAME.log. The
# command line is kept so `restart` starts it the same way.
start() {
  local name=$1
  shift
  printf '%s\0' "$@" >"$RUN/$name.cmd"
  if [[ $name == forwarder ]]; then
    # It listens in this machine's namespace and dials into the cluster's by itself.
    setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  else
    setsid nsenter --net="$NETNS_PATH" -- "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$RUN/$name.pid"
}

restart_saved() {
  local name=$1
  [[ -f $RUN/$name.cmd ]] || die "no saved command for $name"
  local args=()
  mapfile -d '' args <"$RUN/$name.cmd"
  echo "--- restarted $(date -u +%FT%TZ) ---" >>"$LOGS/$name.log"
  start "$name" "${args[@]}"
}

alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

stop() {
  local name=$1 signal=${2:-TERM} pid
  [[ -f $RUN/$name.pid ]] || return 0
  pid=$(cat "$RUN/$name.pid")
  kill -s "$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -s KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$name.pid"
}

wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      say "timed out after ${seconds}s waiting for $what; last log lines:"
      tail -n 30 "$LOGS"/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

kubectl_admin() { in_netns "$BIN/kubectl" --kubeconfig "$KUBECONFIG_NETNS" "$@"; }

# ── up ───────────────────────────────────────────────────────────────────────────────────

setup_netns() {
  if [[ ! -e $NETNS_PATH ]]; then
    # The first `ip netns add` on a machine makes /run/netns a mount point of its own; if this
    # one does, `down` unmounts it again (when no other namespace is left in it).
    mountpoint -q /run/netns 2>/dev/null || touch "$CLUSTER_DIR/made-run-netns-mount"
    ip netns add "$NETNS"
  fi
  in_netns ip link set lo up
  if ! in_netns ip link show mcp0 >/dev/null 2>&1; then
    # The node's address on one end of a veth pair whose both ends stay in the namespace (this
    # kernel has no dummy interfaces), and a default route on it: components that look for
    # "the host's address" find it, and whatever is sent elsewhere finds no neighbour and is
    # dropped.
    in_netns ip link add mcp0 type veth peer name mcp0-end
    in_netns ip addr add "$NODE_IP/24" dev mcp0
    in_netns ip link set mcp0-end up
    in_netns ip link set mcp0 up
    in_netns ip route add default dev mcp0
  fi
  in_netns sysctl -qw net.ipv4.ip_forward=1
  in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

save_host_sysctls() {
  [[ -f $CLUSTER_DIR/host-sysctls ]] && return
  for key in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    echo "$key=$(sysctl -n "$key")"
  done >"$CLUSTER_DIR/host-sysctls"
}

write_pki() {
  [[ -f $PKI/ca.crt && -f $CONF/kube-proxy.conf ]] && return
  mkdir -p "$PKI" "$CONF"
  cat >"$CONF/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $NODE_IP
  bindPort: 6443
nodeRegistration:
  name: $NODE_NAME
  criSocket: unix://$CONTAINERD_SOCK
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $K8S_VERSION
clusterName: mcp-rollout
certificatesDir: $PKI
controlPlaneEndpoint: $NODE_IP:6443
networking:
  serviceSubnet: $SERVICE_CIDR
  podSubnet: $POD_CIDR
  dnsDomain: cluster.local
apiServer:
  certSANs: [127.0.0.1, localhost]
EOF
  # kubeadm's own phases write the certificates and the components' kubeconfigs, as on any
  # kubeadm cluster; nothing here is hand-rolled PKI.
  "$BIN/kubeadm" init phase certs all --config "$CONF/kubeadm.yaml" >/dev/null
  "$BIN/kubeadm" init phase kubeconfig all --config "$CONF/kubeadm.yaml" --kubeconfig-dir "$CONF" >/dev/null
  "$BIN/kubeadm" kubeconfig user --config "$CONF/kubeadm.yaml" --client-name system:kube-proxy \
    >"$CONF/kube-proxy.conf"
}

write_audit_policy() {
  cat >"$CONF/audit-policy.yaml" <<'EOF'
# Every request, at Metadata level: who did what to which object, and the answer's code. The
# RBAC proof reads this log (no request bodies: Secrets stay out of it).
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
EOF
}

start_etcd() {
  alive etcd && return
  # A throwaway test cluster: fsync is skipped (its disk is slow and its state is disposable).
  start etcd "$BIN/etcd" --name "$NODE_NAME" --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
  wait_for "etcd" 60 in_netns bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379'
}

start_apiserver() {
  alive kube-apiserver && return
  start kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port=6443 \
    --etcd-servers=http://127.0.0.1:2379 \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-extra-headers-prefix=X-Remote-Extra- --requestheader-group-headers=X-Remote-Group \
    --requestheader-username-headers=X-Remote-User \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --audit-policy-file="$CONF/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
    --audit-log-maxsize=0 --audit-log-maxbackup=0
}

# The bindings `kubeadm init` makes and this cluster needs: admin.conf's group
# (kubeadm:cluster-admins) as cluster-admin, and the API server's kubelet client (logs, exec,
# the pod proxy) as system:kubelet-api-admin.
bootstrap_rbac() {
  local k=("$BIN/kubectl" --kubeconfig "$CONF/super-admin.conf")
  {
    in_netns "${k[@]}" create clusterrolebinding kubeadm:cluster-admins --clusterrole=cluster-admin \
      --group=kubeadm:cluster-admins --dry-run=client -o yaml
    echo ---
    in_netns "${k[@]}" create clusterrolebinding kubeadm:apiserver-kubelet-client \
      --clusterrole=system:kubelet-api-admin --user=kube-apiserver-kubelet-client --dry-run=client -o yaml
  } | in_netns "${k[@]}" apply -f - >/dev/null
}

apiserver_ready() { in_netns "$BIN/kubectl" --kubeconfig "$CONF/super-admin.conf" get --raw /readyz; }

start_controllers() {
  local qps=()
  [[ -n ${MCP_CLUSTER_API_QPS:-} ]] && qps=(--kube-api-qps="$MCP_CLUSTER_API_QPS" --kube-api-burst="$((2 * MCP_CLUSTER_API_QPS))")
  alive kube-controller-manager || start kube-controller-manager "$BIN/kube-controller-manager" "${qps[@]}" \
    --kubeconfig="$CONF/controller-manager.conf" \
    --authentication-kubeconfig="$CONF/controller-manager.conf" \
    --authorization-kubeconfig="$CONF/controller-manager.conf" \
    --client-ca-file="$PKI/ca.crt" --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true --controllers='*,bootstrapsigner,tokencleaner' \
    --allocate-node-cidrs=true --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$SERVICE_CIDR" --leader-elect=false --bind-address=127.0.0.1
  alive kube-scheduler || start kube-scheduler "$BIN/kube-scheduler" "${qps[@]}" \
    --kubeconfig="$CONF/scheduler.conf" --authentication-kubeconfig="$CONF/scheduler.conf" \
    --authorization-kubeconfig="$CONF/scheduler.conf" --leader-elect=false --bind-address=127.0.0.1
}

write_containerd_config() {
  mkdir -p "$CLUSTER_DIR/containerd" "$CLUSTER_DIR/cni/net.d"
  cat >"$CONF/containerd.toml" <<EOF
version = 3
root = "$CLUSTER_DIR/containerd/root"
state = "$CLUSTER_DIR/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$CLUSTER_DIR/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  # This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its OOM score: the
  # kubelet's -998 for the sandbox made runc fail ("can't get final child's PID from pipe").
  # Scores are clamped at containerd's own (0), as for rootless containerd.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        Root = "$CLUSTER_DIR/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$BIN/cni"]
    conf_dir = "$CLUSTER_DIR/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
EOF
  cat >"$CLUSTER_DIR/cni/net.d/10-mcp-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "mcp-rollout",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$CLUSTER_DIR/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

ctr_() { "$BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

start_containerd() {
  alive containerd && return
  PATH=$BIN:$PATH start containerd "$BIN/containerd" --config "$CONF/containerd.toml"
  wait_for "containerd" 60 ctr_ version
}

# Builds the images (hack/images.sh) and imports them with the pause image, pinned: the
# kubelet's image GC never removes a pinned image, and nothing could pull it back.
import_images() {
  local dir=$CLUSTER_DIR/images
  mkdir -p "$dir"
  [[ ${MCP_CLUSTER_IMAGES:-} == none ]] || PROMETHEUS=$BIN/prometheus hack/images.sh "$dir"
  python3 hack/oci_image.py --name "$PAUSE_IMAGE" --out "$dir/pause.tar" --entrypoint /pause \
    --user 65535:65535 --file "$BIN/pause:/pause" >/dev/null
  local archive started=$SECONDS
  for archive in "$dir"/*.tar; do
    ctr_ images import --snapshotter overlayfs "$archive" >/dev/null
  done
  local ref
  for ref in $(ctr_ images ls -q); do
    [[ $ref == sha256:* ]] && continue
    ctr_ images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
  done
  say "images imported in $((SECONDS - started)) s"
}

write_kubelet_config() {
  : >"$CONF/resolv.conf"
  cat >"$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
resolvConf: "$CONF/resolv.conf"
podLogsDir: "$CLUSTER_DIR/pod-logs"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%", imagefs.inodesFree: "0%"}
serializeImagePulls: false
rotateCertificates: false
EOF
}

# The kubelet's cgroupRoot must exist in every hierarchy; cpuset's needs its CPUs and memory
# nodes before anything can join it (cgroup v1 starts a new cpuset empty).
make_cgroup_root() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -f $hierarchy/cgroup.procs ]] || continue
    mkdir -p "$hierarchy$CGROUP_ROOT"
  done
  local cpuset=/sys/fs/cgroup/cpuset
  if [[ -d $cpuset$CGROUP_ROOT ]]; then
    [[ -s $cpuset$CGROUP_ROOT/cpuset.cpus ]] || cat "$cpuset/cpuset.cpus" >"$cpuset$CGROUP_ROOT/cpuset.cpus"
    [[ -s $cpuset$CGROUP_ROOT/cpuset.mems ]] || cat "$cpuset/cpuset.mems" >"$cpuset$CGROUP_ROOT/cpuset.mems"
  fi
}

start_kubelet() {
  alive kubelet && return
  make_cgroup_root
  start kubelet "$BIN/kubelet" --config="$CONF/kubelet.yaml" --kubeconfig="$CONF/kubelet.conf" \
    --root-dir="$CLUSTER_DIR/kubelet" --cert-dir="$CLUSTER_DIR/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
}

node_ready() {
  kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

start_kube_proxy() {
  alive kube-proxy && return
  cat >"$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$CONF/kube-proxy.conf"}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$BIN/kube-proxy" --config="$CONF/kube-proxy.yaml"
}

start_forwarder() {
  alive forwarder && return
  rm -f "$RUN/forwarder.port"
  start forwarder "$TOOLS_BIN/netns-forward" -netns "$NETNS_PATH" -listen 127.0.0.1:0 \
    -to "$NODE_IP:6443" -port-file "$RUN/forwarder.port"
  wait_for "the API forwarder" 20 test -s "$RUN/forwarder.port"
}

write_kubeconfigs() {
  local port
  port=$(cat "$RUN/forwarder.port")
  sed "s#server: https://.*#server: https://127.0.0.1:$port#" "$CONF/admin.conf" >"$KUBECONFIG_HOST"
  cp "$CONF/admin.conf" "$KUBECONFIG_NETNS"
  chmod 600 "$KUBECONFIG_HOST" "$KUBECONFIG_NETNS"
}

up() {
  [[ $(id -u) == 0 ]] || die "needs root (network namespace, mounts, cgroups)"
  command -v "$RUNC" >/dev/null || die "runc not found (hack/install-test-deps.sh installs it)"
  command -v iptables >/dev/null || die "iptables not found (hack/install-test-deps.sh installs it)"
  local started=$SECONDS
  build_components
  build_tools
  mkdir -p "$RUN" "$LOGS" "$CONF" "$CLUSTER_DIR/pod-logs"
  if [[ -f $RUN/up ]] && alive kube-apiserver && alive kubelet && alive forwarder; then
    say "already up ($CLUSTER_DIR)"
    echo "KUBECONFIG=$KUBECONFIG_HOST"
    return
  fi
  local phase_started=$SECONDS
  save_host_sysctls
  setup_netns
  write_pki
  write_audit_policy
  write_containerd_config
  write_kubelet_config
  start_etcd
  start_apiserver
  wait_for "kube-apiserver" 120 apiserver_ready
  bootstrap_rbac
  cp "$CONF/admin.conf" "$KUBECONFIG_NETNS"
  start_controllers
  start_containerd
  import_images
  start_kubelet
  wait_for "node $NODE_NAME Ready" 180 node_ready
  start_kube_proxy
  start_forwarder
  write_kubeconfigs
  wait_for "the default ServiceAccount" 60 kubectl_admin get serviceaccount default
  touch "$RUN/up"
  say "up in $((SECONDS - phase_started)) s (with building: $((SECONDS - started)) s); logs in $LOGS"
  echo "KUBECONFIG=$KUBECONFIG_HOST"
}

# ── down ─────────────────────────────────────────────────────────────────────────────────

# Every process in one of the cluster's pod cgroups (containers, their children).
pod_processes() {
  local dir
  for dir in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
    if [[ -d $dir ]]; then
      find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    fi
  done | sort -u
}

# Shims of this containerd: started with its socket as -address.
shim_processes() {
  pgrep -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true
}

down() {
  [[ -d $CLUSTER_DIR ]] || { say "nothing to stop ($CLUSTER_DIR does not exist)"; return; }
  rm -f "$RUN/up"
  for c in forwarder kube-proxy kubelet; do stop "$c"; done
  # Containers: kill their processes, then their shims and containerd.
  local pids
  pids=$(pod_processes)
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
  stop containerd
  pids=$(shim_processes)
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$c"; done
  sleep 0.5
  # Anything still running in a pod cgroup (a process that forked late).
  pids=$(pod_processes)
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
  # Mounts under the cluster directory: overlay rootfs, pod volumes, netns bind mounts.
  local mount
  for _ in 1 2 3; do
    local left=0
    while read -r mount; do
      umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
      left=1
    done < <(awk -v dir="$(realpath -m "$CLUSTER_DIR")/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    ((left)) || break
    sleep 0.3
  done
  # Pod cgroups, deepest first.
  local dir
  for dir in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
    if [[ -d $dir ]]; then
      find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    fi
  done
  if [[ -e $NETNS_PATH ]]; then
    ip netns delete "$NETNS" 2>/dev/null || true
  fi
  if [[ -f $CLUSTER_DIR/made-run-netns-mount ]] && [[ -z $(ip netns list 2>/dev/null) ]]; then
    umount /run/netns 2>/dev/null || true
  fi
  if [[ -f $CLUSTER_DIR/host-sysctls ]]; then
    while IFS='=' read -r key value; do
      sysctl -qw "$key=$value" || true
    done <"$CLUSTER_DIR/host-sysctls"
  fi
  rm -rf "$CLUSTER_DIR"
  say "down"
}

# ── status, exec, restart, kill-container ───────────────────────────────────────────────

status() {
  local c state
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy forwarder; do
    if alive "$c"; then state="running (pid $(cat "$RUN/$c.pid"))"; else state="not running"; fi
    printf '%-24s %s\n' "$c" "$state"
  done
  if alive kube-apiserver; then
    kubectl_admin get nodes -o wide 2>/dev/null || true
  fi
  [[ -f $KUBECONFIG_HOST ]] && echo "KUBECONFIG=$KUBECONFIG_HOST"
}

kill_container() {
  local namespace=$1 pod=$2 container=$3 id
  id=$(kubectl_admin -n "$namespace" get pod "$pod" \
    -o jsonpath="{.status.containerStatuses[?(@.name==\"$container\")].containerID}")
  id=${id#containerd://}
  [[ -n $id ]] || die "no running container $container in $namespace/$pod"
  ctr_ tasks kill --all --signal SIGKILL "$id"
}

# The pod's network namespace, as containerd gave it to the container (its sandbox's): it
# outlives the container's restarts, and goes with the pod.
pod_netns() {
  local namespace=$1 pod=$2 container=$3 id
  id=$(kubectl_admin -n "$namespace" get pod "$pod" \
    -o jsonpath="{.status.containerStatuses[?(@.name==\"$container\")].containerID}")
  id=${id#containerd://}
  [[ -n $id ]] || die "no container $container in $namespace/$pod"
  ctr_ containers info "$id" 2>/dev/null | python3 -c '
import json, sys
spaces = json.load(sys.stdin)["Spec"]["linux"]["namespaces"]
print(next(n["path"] for n in spaces if n["type"] == "network"))'
}

# A partition a pod cannot see through: its packets to IP:PORT dropped in its own network
# namespace (for the kubernetes Service, before kube-proxy's translation). The rule lives in
# the pod's namespace only, so deleting the pod removes it too; `off` removes it at once.
partition() {
  local namespace=$1 pod=$2 container=$3 target=$4 mode=$5 netns rule
  netns=$(pod_netns "$namespace" "$pod" "$container")
  [[ -e $netns ]] || die "no network namespace for $namespace/$pod"
  rule=(OUTPUT -p tcp -d "${target%:*}" --dport "${target##*:}" -j DROP -m comment --comment mcp-rollout-partition)
  case $mode in
    on) nsenter --net="$netns" -- iptables -w -I "${rule[@]}" ;;
    off) while nsenter --net="$netns" -- iptables -w -D "${rule[@]}" 2>/dev/null; do :; done ;;
    *) die "partition: on or off, not $mode" ;;
  esac
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  build) build_components && build_tools && echo "$BIN" ;;
  exec)
    shift
    [[ ${1:-} == -- ]] && shift
    (($#)) || die "usage: hack/cluster.sh exec -- CMD..."
    [[ -e $NETNS_PATH ]] || die "the cluster is not up"
    KUBECONFIG=$KUBECONFIG_NETNS PATH=$BIN:$PATH exec nsenter --net="$NETNS_PATH" -- "$@"
    ;;
  restart)
    [[ -n ${2:-} ]] || die "usage: hack/cluster.sh restart COMPONENT"
    stop "$2"
    restart_saved "$2"
    ;;
  stop-component)
    [[ -n ${2:-} ]] || die "usage: hack/cluster.sh stop-component COMPONENT"
    stop "$2"
    ;;
  start-component)
    [[ -n ${2:-} ]] || die "usage: hack/cluster.sh start-component COMPONENT"
    alive "$2" || restart_saved "$2"
    ;;
  kill-container)
    (($# == 4)) || die "usage: hack/cluster.sh kill-container NAMESPACE POD CONTAINER"
    kill_container "$2" "$3" "$4"
    ;;
  partition)
    (($# == 6)) || die "usage: hack/cluster.sh partition NAMESPACE POD CONTAINER IP:PORT on|off"
    partition "$2" "$3" "$4" "$5" "$6"
    ;;
  bin) echo "$BIN" ;;
  netns) echo "$NETNS_PATH" ;;
  images)
    alive containerd || die "the cluster is not up"
    import_images
    ;;
  *)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
