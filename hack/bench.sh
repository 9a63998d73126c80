#!/usr/bin/env bash
# Benchmarks, printed side by side with their anchor in one run. No test asserts on these.
#
#   hack/bench.sh router   # mcp-rollout-router against Debian's nginx as a plain reverse proxy,
#                          # both in front of the same mcp-fixture, same load; and the fixture
#                          # called directly (the baseline the added latency is measured from)
#   hack/bench.sh scale [N...]   # N McpRollouts (default 100 300 1000) on one operator, then N
#                          # equivalent Argo Rollouts on Argo's controller (built from its Go
#                          # module), on a local cluster of its own with kwok's fake nodes:
#                          # API requests by verb and resource, RSS, CPU, reconcile p50/p99 at
#                          # rest and in a wave of rollouts, time to promote all N, and from an
#                          # analysis breach to all traffic on stable, timed on the
#                          # EndpointSlices for both (hack/bench_scale.py)
#   Options (environment): BENCH_CONTROLLERS=mcp-rollout|argo-rollouts (both by default),
#   BENCH_STEADY_SECONDS (120), BENCH_WAVE_TIMEOUT (1800 s), BENCH_SKIP_WAVE=1 (no promote wave:
#   deploy, rest, then hold at 50 % and breach), BENCH_OPERATOR (another operator binary),
#   BENCH_KEEP_WORK=1 (keep the work directory with every process's log). The operator reads its
#   flags' environment variables too (MAX_CONCURRENT_RECONCILES=64 runs it with 64 reconciles).
#   BENCH_ARGO_QPS (2000): Argo's --qps (burst twice that); 40, its default, throttles it.
#   BENCH_PROFILE=1: CPU profiles of the API server and the controller manager over the first
#   60 s of the breach, into the work directory (with BENCH_KEEP_WORK=1, for `go tool pprof`).
#
# Loopback only, or addresses inside the network namespace of the cluster it starts. Every
# process it starts is stopped on exit, and the cluster brought down.
set -Eeuo pipefail
trap 'echo "bench.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."

what=${1:-router}
[[ $what == router || $what == scale ]] || { echo "usage: hack/bench.sh router | scale [N...]" >&2; exit 2; }
hack/install-test-deps.sh >/dev/null

if [[ $what == scale ]]; then
  shift
  sizes=("$@")
  ((${#sizes[@]})) || sizes=(100 300 1000)
  cargo build --release --locked --quiet -p mcp-rollout --bin mcp-rollout-operator -p mcp-fixture --bin mcp-fixture
  # kwok and Argo Rollouts' controller, each from a Go module of its own (e2e/bench), cached by
  # their go.sum. Argo Rollouts v1.10.2 needs Go 1.26.10, which the Go proxy serves.
  cache=${MCP_ROLLOUT_CACHE:-$HOME/.cache/mcp-rollout}/bin/bench-$(cat e2e/bench/*/go.sum | sha256sum | cut -c1-12)
  mkdir -p "$cache"
  export CGO_ENABLED=0
  if [[ ! -x $cache/kwok ]]; then
    echo "bench: building kwok" >&2
    (cd e2e/bench/kwok && go build -ldflags "-s -w" -o "$cache/kwok" sigs.k8s.io/kwok/cmd/kwok)
  fi
  # Only when it is measured (BENCH_CONTROLLERS names the controllers to run; both by default).
  if [[ ! -x $cache/rollouts-controller && ${BENCH_CONTROLLERS:-argo-rollouts} == *argo-rollouts* ]]; then
    echo "bench: building Argo Rollouts' controller (minutes)" >&2
    (cd e2e/bench/argo-rollouts && GOTOOLCHAIN=go1.26.10 go build -ldflags "-s -w" -o "$cache/rollouts-controller" \
      github.com/argoproj/argo-rollouts/cmd/rollouts-controller)
  fi
  kwok_dir=$(cd e2e/bench/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  argo_dir=$(cd e2e/bench/argo-rollouts && GOTOOLCHAIN=go1.26.10 go list -m -f '{{.Dir}}' github.com/argoproj/argo-rollouts)
  cluster_dir=$(mktemp -d /tmp/mcpr-bench.XXXXXX)
  export MCP_CLUSTER_DIR=$cluster_dir MCP_CLUSTER_IMAGES=none MCP_CLUSTER_API_QPS=${BENCH_CLUSTER_QPS:-200}
  trap 'hack/cluster.sh down >/dev/null 2>&1 || echo "bench: cluster down failed ($cluster_dir)" >&2' EXIT
  hack/cluster.sh up >/dev/null
  # Nothing here sends traffic through a Service (probes go to pod addresses), and kube-proxy
  # rewriting thousands of Services' rules on every change would only add noise to the figures.
  hack/cluster.sh stop-component kube-proxy
  python3 hack/bench_scale.py --repo "$PWD" --cluster-dir "$cluster_dir" --cluster-bin "$(hack/cluster.sh bin)" \
    --netns "$(hack/cluster.sh netns)" --operator "${BENCH_OPERATOR:-$PWD/target/release/mcp-rollout-operator}" \
    --fixture "$PWD/target/release/mcp-fixture" --kwok "$cache/kwok" --kwok-dir "$kwok_dir" \
    --argo "$cache/rollouts-controller" --argo-dir "$argo_dir" \
    --steady-seconds "${BENCH_STEADY_SECONDS:-120}" ${BENCH_CONTROLLERS:+--controllers "$BENCH_CONTROLLERS"} \
    ${BENCH_WAVE_TIMEOUT:+--wave-timeout "$BENCH_WAVE_TIMEOUT"} ${BENCH_SKIP_WAVE:+--skip-wave} "${sizes[@]}"
  exit 0
fi
if ! command -v nginx >/dev/null; then
  # Debian's nginx: the anchor the router is measured against (only the binary is used; its
  # own service is never started by this script).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
DURATION=${BENCH_SECONDS:-10}
AGENTS=${BENCH_AGENTS:-16}
SESSIONS=${BENCH_SESSIONS:-10000}

cargo build --release --locked --quiet -p mcp-rollout --bin mcp-rollout-router -p mcp-fixture \
  --bin mcp-fixture --bin mcp-agents
bin=target/release
work=$(mktemp -d /tmp/mcp-rollout-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing listening on $1" >&2
  exit 1
}

fixture_port=$(free_port)
"$bin/mcp-fixture" --listen "127.0.0.1:$fixture_port" >"$work/fixture.log" 2>&1 &
pids+=($!)
wait_port "$fixture_port"

router_port=$(free_port)
"$bin/mcp-rollout-router" standalone --listen "127.0.0.1:$router_port" \
  --stable "http://127.0.0.1:$fixture_port" >"$work/router.log" 2>&1 &
router_pid=$!
pids+=($router_pid)
wait_port "$router_port"

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  upstream fixture { server 127.0.0.1:$fixture_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://fixture;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;          # SSE passes through
      proxy_read_timeout 300s;
    }
  }
}
EOF
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' >"$work/nginx/out.log" 2>&1 &
pids+=($!)
wait_port "$nginx_port"

# Handshake-era agents over Streamable HTTP, either as fast as they go (closed loop:
# throughput) or paced to a total rate (latency at that rate), in two client shapes: agents
# that read each streamed answer's stream to its end, so that their keep-alive connections
# carry the next request, and agents that drop the stream once the answer has arrived (the
# connection goes with it: a new connection per call, what the e2e agents do by default).
load() { # port, calls/s per agent, extra agent flags
  "$bin/mcp-agents" --target "http://127.0.0.1:$1" --agents "$AGENTS" --duration "$DURATION" \
    --rate "$2" --session-min 5 --session-max 10 --era handshake ${3:+"$3"} --json - 2>/dev/null |
    sed -n '/^--- report ---$/{n;p}'
}
PACED=${BENCH_RATE:-1000}
per_agent=$(python3 -c "print($PACED / $AGENTS)")
figures() { # name, report json
  python3 - "$1" "$2" "$DURATION" <<'PY'
import json, sys
name, report, seconds = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
ok = report["calls"].get("ok", 0)
print(json.dumps({"name": name, "calls_per_s": ok / seconds, "p50": report["latency_ms_p50"],
                  "p99": report["latency_ms_p99"], "failed": sum(v for k, v in report["calls"].items() if k != "ok"),
                  "lost": report["sessions_lost"]}))
PY
}
shape() { # title, extra agent flags
  local direct nginx router paced_direct paced_nginx paced_router
  echo "bench: $1" >&2
  direct=$(figures direct "$(load "$fixture_port" 100000 "$2")")
  nginx=$(figures nginx "$(load "$nginx_port" 100000 "$2")")
  router=$(figures router "$(load "$router_port" 100000 "$2")")
  paced_direct=$(figures direct "$(load "$fixture_port" "$per_agent" "$2")")
  paced_nginx=$(figures nginx "$(load "$nginx_port" "$per_agent" "$2")")
  paced_router=$(figures router "$(load "$router_port" "$per_agent" "$2")")
  python3 - "$1" "$direct" "$nginx" "$router" "$paced_direct" "$paced_nginx" "$paced_router" "$PACED" <<'PY'
import json, sys
title = sys.argv[1]
d, n, r, pd, pn, pr = (json.loads(a) for a in sys.argv[2:8])
paced = int(sys.argv[8])
def table(name, rows, base):
    print(name)
    print(f"{'':<8}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p50':>8}{'+p99':>8}{'failed':>8}{'lost':>6}")
    for x in rows:
        print(f"{x['name']:<8}{x['calls_per_s']:>10.0f}{x['p50']:>9.2f}{x['p99']:>9.2f}"
              f"{x['p50'] - base['p50']:>8.2f}{x['p99'] - base['p99']:>8.2f}{x['failed']:>8}{x['lost']:>6}")
print(f"== {title}")
table("closed loop (as fast as the agents go):", (d, n, r), d)
table(f"paced at {paced} calls/s:", (pd, pn, pr), pd)
ratio = r["calls_per_s"] / n["calls_per_s"] if n["calls_per_s"] else float("nan")
print(f"router/nginx throughput: {ratio:.2f}x (goal >= 1.0x); router p99 added at {pr['calls_per_s']:.0f} calls/s: "
      f"{pr['p99'] - pd['p99']:.2f} ms, nginx's {pn['p99'] - pd['p99']:.2f} ms (goal <= 1 ms at 1,000 calls/s)")
PY
}
echo "bench: $AGENTS agents, ${DURATION}s each run, handshake era, Streamable HTTP; closed loop, then $PACED calls/s" >&2
shape "keep-alive clients (each stream read to its end)" --read-streams-to-end
shape "a connection per call (each stream dropped once answered)" ""

# RSS of the router holding many open sessions: initialize only, never closed.
python3 - "$router_port" "$SESSIONS" <<'PY'
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}})
conn = http.client.HTTPConnection("127.0.0.1", port)
opened = 0
for _ in range(n):
    conn.request("POST", "/mcp", body, {"content-type": "application/json",
                                         "accept": "application/json, text/event-stream"})
    r = conn.getresponse(); r.read()
    opened += r.getheader("mcp-session-id") is not None
print(f"bench: {opened} sessions opened through the router", file=sys.stderr)
PY

python3 - "$(awk '/^VmRSS/ {print $2}' "/proc/$router_pid/status")" "$SESSIONS" <<'PY'
import sys
print(f"router RSS with {sys.argv[2]} open sessions: {int(sys.argv[1]) / 1024:.1f} MiB (goal <= 64 MiB)")
PY
