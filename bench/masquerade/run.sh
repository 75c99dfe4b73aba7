#!/usr/bin/env bash
# Pod-to-internet traffic through masquerade, side by side in one run. Each setup is a plexus node namespace whose
# external device is a veth "wire" to an "internet" namespace (192.0.2.1/24 and 192.0.2.2/24) that has no route to
# the pods, with one pod on the node:
#   bpf       --enable-bpf-masquerade: SNAT in the device's tc programs (plexus_snat4_v1);
#   iptables  --enable-ipv4-masquerade without BPF: netfilter's MASQUERADE (the chain the agent installs), as Cilium's
#             legacy masquerade and kube-proxy clusters do it;
#   routed    no masquerade, the internet namespace routes the pod CIDR back (the cost of no translation at all).
# The agents are otherwise alike (kube-proxy replacement on, --devices <wire>). Metrics, per setup: iperf3 throughput
# with 1 and 4 streams, TCP_RR and TCP_CRR p50/p99 from the pod to the internet namespace; rounds alternate between
# the setups; medians; then the ratios of bpf to iptables (target: bpf at least 1.0x iptables in throughput).
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
RR_N="${RR_N:-20000}"
CRR_N="${CRR_N:-2000}"
source ./lib.sh
trap bench_cleanup EXIT
RR="$BUILD/bench/datapath/plexus-bench-rr"
WORK="$(mktemp -d /tmp/plexus-bench-masq.XXXXXX)"
BENCH_DIRS+=("$WORK")
SAMPLES="$WORK/samples"   # lines: <setup> <metric> <value>
STATUS="$WORK/status"     # lines: <setup> unavailable <reason>
: >"$SAMPLES"; : >"$STATUS"

declare -A CLIENT SERVER
SETUPS=()
unavailable() {  # setup reason
  echo "$1 unavailable $2" >>"$STATUS"
  echo "bench masquerade: $1 unavailable: $2" >&2
}

setup() {  # name tag cidr-net agent-args...
  local name="$1" tag="$2" net="$3"
  shift 3
  local node="bq${tag}n$BENCH_ID" inet="bq${tag}i$BENCH_ID" pod="bq${tag}p$BENCH_ID" wire="bqw$BENCH_ID"
  bench_netns "$node"; bench_netns "$inet"
  ip link add "$wire" netns "$node" type veth peer name "$wire" netns "$inet"
  ip -n "$node" addr add 192.0.2.1/24 dev "$wire"; ip -n "$inet" addr add 192.0.2.2/24 dev "$wire"
  ip -n "$node" link set "$wire" up; ip -n "$inet" link set "$wire" up
  if ! bench_start_agent "$node" "10.$net.0.0/24" --devices "$wire" "$@" 2>/dev/null; then
    unavailable "$name" "agent refused to start: $(grep -v '^\s*$' "$PLEXUS_WORK/agent.log" | tail -n 1 | cut -c1-300)"
    return 0
  fi
  bench_netns "$pod"
  if [ -z "$(bench_plexus_add "$node" "$pod" 2>/dev/null)" ]; then
    unavailable "$name" "CNI ADD failed"; return 0
  fi
  [ "$name" = routed ] && ip -n "$inet" route add "10.$net.0.0/24" via 192.0.2.1
  # Bounded reachability check: one new connection, up to 4 attempts.
  local ok=0
  for _ in 1 2 3 4; do
    ip netns exec "$inet" timeout 7 "$RR" crr-server 7002 1 >/dev/null 2>&1 &
    local spid=$!
    sleep 0.2
    if ip netns exec "$pod" timeout 5 "$RR" crr-client 192.0.2.2 7002 1 >/dev/null 2>&1; then ok=1; fi
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
    [ "$ok" = 1 ] && break
  done
  if [ "$ok" != 1 ]; then unavailable "$name" "the pod cannot reach the internet namespace"; return 0; fi
  SETUPS+=("$name"); CLIENT[$name]="$pod"; SERVER[$name]="$inet"
}
setup bpf b 231 --enable-bpf-masquerade=true
setup iptables i 232 --enable-ipv4-masquerade=true
setup routed r 233

declare -A TARGET SHIFT
for s in "${SETUPS[@]}"; do TARGET[$s]=192.0.2.2; done
bench_rounds masquerade
bench_summary "$STATUS" '{"bench": "masquerade",
  "names": {"bpf": "BPF masquerade", "iptables": "iptables MASQUERADE", "routed": "no masquerade (routed)"},
  "ratios": [["bpf", "iptables", "tp1", ">= 1.0"], ["bpf", "iptables", "tp4", ">= 1.0"],
             ["bpf", "iptables", "rr50", null], ["bpf", "iptables", "rr99", null],
             ["bpf", "iptables", "crr50", null], ["bpf", "iptables", "crr99", null],
             ["bpf", "routed", "tp1", null], ["bpf", "routed", "tp4", null], ["bpf", "routed", "rr50", null],
             ["bpf", "routed", "rr99", null], ["bpf", "routed", "crr50", null], ["bpf", "routed", "crr99", null]]}'
