# Shared helpers for the benches: a plexus node (agent in its own netns, private bpffs and cgroup) and
# kubelet-style CNI calls. Source it; call bench_cleanup from an EXIT trap.
BENCH_ID="$$"
BENCH_NETNS=()
BENCH_PIDS=()
BENCH_MOUNTS=()
BENCH_DIRS=()
PLEXUS_AGENT_EXTRA=()

bench_cleanup() {
  set +e
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for n in "${BENCH_NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
  for ((i=${#BENCH_MOUNTS[@]}-1; i>=0; i--)); do
    m="${BENCH_MOUNTS[$i]}"
    find "$m" -mindepth 1 -maxdepth 1 -type d -exec rmdir {} \; 2>/dev/null
    umount "$m" 2>/dev/null
  done
  for d in "${BENCH_DIRS[@]}"; do rm -rf "$d"; done
}

bench_netns() {  # name
  ip netns add "$1"
  ip -n "$1" link set lo up
  BENCH_NETNS+=("$1")
}

# Starts an agent in node netns $1 with pod CIDR $2 and any further arguments as extra agent flags; sets PLEXUS_SOCK
# and PLEXUS_WORK. The netns is created unless it exists already (a caller that wires it first creates it itself).
bench_start_agent() {
  local node="$1" cidr="$2"
  PLEXUS_AGENT_EXTRA=("${@:3}")
  PLEXUS_WORK="$(mktemp -d /tmp/plexus-bench.XXXXXX)"
  BENCH_DIRS+=("$PLEXUS_WORK")
  mkdir -p "$PLEXUS_WORK/bpffs" "$PLEXUS_WORK/cgroup"
  mount -t bpf bpf "$PLEXUS_WORK/bpffs"
  mount -t cgroup2 none "$PLEXUS_WORK/cgroup"
  BENCH_MOUNTS+=("$PLEXUS_WORK/bpffs" "$PLEXUS_WORK/cgroup")
  mkdir -p "$PLEXUS_WORK/cgroup/bench"
  PLEXUS_SOCK="$PLEXUS_WORK/plexus.sock"
  PLEXUS_NODE="$node"
  PLEXUS_CIDR="$cidr"
  [ -e "/run/netns/$node" ] || bench_netns "$node"
  bench_run_agent
}

# (Re)starts the agent of the node bench_start_agent set up, with its state, and waits until it answers.
bench_run_agent() {
  ip netns exec "$PLEXUS_NODE" "$BUILD/agent/plexus-agent" --state-dir "$PLEXUS_WORK/state" \
    --bpf-root "$PLEXUS_WORK/bpffs/plexus" --socket "$PLEXUS_SOCK" --pod-cidr "$PLEXUS_CIDR" \
    --node-name "$PLEXUS_NODE" --cgroup-root "$PLEXUS_WORK/cgroup/bench" ${PLEXUS_AGENT_ARGS:-} "${PLEXUS_AGENT_EXTRA[@]}" \
    >>"$PLEXUS_WORK/agent.log" 2>&1 &
  PLEXUS_AGENT_PID=$!
  BENCH_PIDS+=("$PLEXUS_AGENT_PID")
  for _ in $(seq 1 200); do
    sleep 0.3  # each probe is a CLI process: probing less often leaves the starting agent the CPU
    kill -0 "$PLEXUS_AGENT_PID" 2>/dev/null || break  # exited (refused its flags, failed to start): stop waiting
    if "$BUILD/cli/plexus" --socket "$PLEXUS_SOCK" status >/dev/null 2>&1; then return 0; fi
  done
  echo "bench: agent did not start:" >&2
  cat "$PLEXUS_WORK/agent.log" >&2
  return 1
}

# Stops the agent (SIGTERM) and waits for it to exit.
bench_stop_agent() {
  kill "$PLEXUS_AGENT_PID" 2>/dev/null || true
  wait "$PLEXUS_AGENT_PID" 2>/dev/null || true
}

# One series' value from the agent's /metrics (inside the node namespace).
bench_agent_metric() {
  ip netns exec "$PLEXUS_NODE" curl -sf http://127.0.0.1:9962/metrics | awk -v s="$1" '$1 == s && !done {print $2; done = 1}'
}

# CNI ADD of pod netns $2 through plexus-cni, run inside node netns $1; prints the pod IP.
bench_plexus_add() {
  local node="$1" pod="$2"
  echo '{"cniVersion":"1.0.0","name":"plexus","type":"plexus-cni","socket":"'"$PLEXUS_SOCK"'"}' |
    ip netns exec "$node" env CNI_COMMAND=ADD CNI_CONTAINERID="$pod" CNI_NETNS="/run/netns/$pod" CNI_IFNAME=eth0 \
      CNI_PATH="$BUILD/cni" CNI_ARGS="K8S_POD_NAMESPACE=bench;K8S_POD_NAME=$pod" "$BUILD/cni/plexus-cni" |
    sed -n 's/.*"address":"\([0-9.]*\)\/32".*/\1/p'
}

# Median of numbers on stdin.
bench_median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }

# The servers listen on 5201 (iperf3), 7000 (RR) and 7001 (CRR); clients connect to those ports plus BENCH_PORT_SHIFT
# (0 unless set: a service whose frontend ports are the servers' shifted, e.g. NodePorts).

# iperf3 throughput from client netns $1 to a server in netns $2 at $3, with $4 parallel streams (default 1), the
# server sending when $5 is set (iperf3 -R); prints Gbit/s (the sum over the streams).
bench_throughput() {
  ip netns exec "$2" timeout $((SECONDS_PER_RUN + 15)) iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  local spid=$!
  sleep 0.3
  ip netns exec "$1" timeout $((SECONDS_PER_RUN + 10)) iperf3 -c "$3" -p $((5201 + ${BENCH_PORT_SHIFT:-0})) \
    -t "$SECONDS_PER_RUN" -P "${4:-1}" ${5:+-R} -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
  wait "$spid" || true
}

# Request/response latency from netns $1 to netns $2 at $3 (RR_N round trips of 64 bytes); prints "p50 p99" in us.
bench_latency() {
  ip netns exec "$2" timeout 60 "$BUILD/bench/datapath/plexus-bench-rr" server 7000 64 &
  local spid=$!
  sleep 0.2
  ip netns exec "$1" timeout 60 "$BUILD/bench/datapath/plexus-bench-rr" client "$3" $((7000 + ${BENCH_PORT_SHIFT:-0})) \
    "$RR_N" 64 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["p50_us"], d["p99_us"])'
  wait "$spid" || true
}

# New-connection latency (TCP_CRR: connect, one 64-byte request and response, close), CRR_N connections from netns
# $1 to netns $2 at $3; prints "p50 p99" in us.
bench_crr() {
  ip netns exec "$2" timeout 120 "$BUILD/bench/datapath/plexus-bench-rr" crr-server 7001 "$CRR_N" &
  local spid=$!
  sleep 0.2
  ip netns exec "$1" timeout 120 "$BUILD/bench/datapath/plexus-bench-rr" crr-client "$3" \
    $((7001 + ${BENCH_PORT_SHIFT:-0})) "$CRR_N" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["p50_us"], d["p99_us"])'
  wait "$spid" || true
}

# Runs a Google Benchmark binary ($3, with any further args) and prints one result line per benchmark, absolute (no
# baseline): $1 names the bench, $2 is the metric as a Python format string where {n} is the benchmark's argument.
bench_gbench() {
  local name="$1" fmt="$2"
  shift 2
  "$@" --benchmark_format=json --benchmark_min_time=0.2 2>/dev/null | python3 -c '
import json, sys
name, fmt = sys.argv[1:]
for b in json.load(sys.stdin)["benchmarks"]:
    print(json.dumps({"bench": name, "metric": fmt.format(n=b["name"].split("/")[1]), "plexus": round(b["real_time"], 3),
                      "baseline": 0, "ratio": None, "better": "lower"}))' "$name" "$fmt"
}

# One JSON result line: bench metric plexus baseline better(higher|lower).
bench_emit() {
  python3 -c 'import json,sys; n,m,p,b,d=sys.argv[1:]; p=float(p); b=float(b); print(json.dumps({"bench":n,"metric":m,"plexus":round(p,3),"baseline":round(b,3),"ratio":round(p/b,3) if b else None,"better":d}))' "$@"
}

# A pod on a plain veth pair in node netns $1 (Calico-style, no BPF): pod netns $2 with address $3/32, host side $4,
# a /32 route and static neighbours both ways, the pod's default route via 169.254.1.1.
bench_routed_pod() {
  local node="$1" pod="$2" ip="$3" host="$4"
  bench_netns "$pod"
  ip link add "$host" netns "$node" type veth peer name eth0 netns "$pod"
  ip -n "$pod" addr add "$ip/32" dev eth0
  ip -n "$pod" link set eth0 up
  ip -n "$pod" route add 169.254.1.1 dev eth0 scope link
  ip -n "$pod" route add default via 169.254.1.1 dev eth0
  ip -n "$node" link set "$host" up
  ip -n "$node" route add "$ip/32" dev "$host"
  local host_mac pod_mac
  host_mac="$(ip -n "$node" -o link show "$host" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')"
  pod_mac="$(ip -n "$pod" -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')"
  ip -n "$pod" neigh replace 169.254.1.1 lladdr "$host_mac" dev eth0 nud permanent
  ip -n "$node" neigh replace "$ip" lladdr "$pod_mac" dev "$host" nud permanent
}

# Two pods on plain veth pairs in node netns $1, routed by the kernel with /32 routes and static neighbours
# (Calico-style, no BPF): pods $2 and $3 get 10.$4.0.2 and 10.$4.0.3.
bench_plain_pods() {
  local node="$1" net="$4"
  bench_netns "$node"
  ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1
  bench_routed_pod "$node" "$2" "10.$net.0.2" "bv1$net$BENCH_ID"
  bench_routed_pod "$node" "$3" "10.$net.0.3" "bv2$net$BENCH_ID"
}

# Setups measured side by side: SETUPS (names), CLIENT/SERVER/TARGET (associative: client netns, server netns, the
# address the client connects to), SHIFT (associative, optional: BENCH_PORT_SHIFT per setup), SAMPLES (a file of
# "<setup> <metric> <value>" lines). bench_rounds runs ROUNDS rounds of every metric for every setup (tp1, tp4, rr50/99,
# crr50/99), rotating the setup order each round so that machine noise hits all alike. $1 names the bench in messages.
bench_sample() {  # name setup metric value...
  local name="$1" s="$2" m="$3"
  shift 3
  if [ -z "${1:-}" ]; then echo "bench $name: $s $m: run failed" >&2; return 0; fi
  echo "$s $m $1" >>"$SAMPLES"
}
bench_rounds() {  # name
  local name="$1" n=${#SETUPS[@]} r i s a b order
  for r in $(seq 1 "$ROUNDS"); do
    order=()
    for ((i = 0; i < n; i++)); do order+=("${SETUPS[$(((i + r - 1) % n))]}"); done
    for s in "${order[@]}"; do
      BENCH_PORT_SHIFT="${SHIFT[$s]:-0}"
      bench_sample "$name" "$s" tp1 "$(bench_throughput "${CLIENT[$s]}" "${SERVER[$s]}" "${TARGET[$s]}" 1 2>/dev/null || true)"
      bench_sample "$name" "$s" tp4 "$(bench_throughput "${CLIENT[$s]}" "${SERVER[$s]}" "${TARGET[$s]}" 4 2>/dev/null || true)"
      if [ -n "${BENCH_REVERSE:-}" ]; then  # also the server sending to the client (iperf3 -R), as a download
        bench_sample "$name" "$s" tpr1 "$(bench_throughput "${CLIENT[$s]}" "${SERVER[$s]}" "${TARGET[$s]}" 1 R 2>/dev/null || true)"
        bench_sample "$name" "$s" tpr4 "$(bench_throughput "${CLIENT[$s]}" "${SERVER[$s]}" "${TARGET[$s]}" 4 R 2>/dev/null || true)"
      fi
      read -r a b < <(bench_latency "${CLIENT[$s]}" "${SERVER[$s]}" "${TARGET[$s]}" 2>/dev/null || true) || true
      bench_sample "$name" "$s" rr50 "${a:-}"; bench_sample "$name" "$s" rr99 "${b:-}"
      read -r a b < <(bench_crr "${CLIENT[$s]}" "${SERVER[$s]}" "${TARGET[$s]}" 2>/dev/null || true) || true
      bench_sample "$name" "$s" crr50 "${a:-}"; bench_sample "$name" "$s" crr99 "${b:-}"
    done
    BENCH_PORT_SHIFT=0
    echo "bench $name: round $r of $ROUNDS done" >&2
  done
}

# The medians of bench_rounds' samples and their ratios, one JSON line each (bench/summary.py): $1 is the STATUS file
# ("<setup> unavailable <reason>" lines), $2 the spec as JSON (see summary.py).
bench_summary() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/summary.py" "$SAMPLES" "$1" "$2"
}
