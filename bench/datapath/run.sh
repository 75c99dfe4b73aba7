#!/usr/bin/env bash
# Pod-to-pod TCP throughput (iperf3) and request/response latency (p50/p99) through plexus, against two plain veth
# pairs routed by the kernel with no BPF (/32 routes and static neighbours, Calico-style). Both setups exist at once and
# runs alternate between them, so machine noise hits both alike. Then the programs' own cost per packet (bench_prog_cost).
# Prints one JSON line per metric.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
RR_N="${RR_N:-20000}"
source ./lib.sh
trap bench_cleanup EXIT

# --- plexus: agent + two pods
pnode="bpn$BENCH_ID"; pa="bpa$BENCH_ID"; pb="bpb$BENCH_ID"
bench_start_agent "$pnode" 10.201.0.0/24
bench_netns "$pa"; bench_netns "$pb"
pa_ip="$(bench_plexus_add "$pnode" "$pa")"
pb_ip="$(bench_plexus_add "$pnode" "$pb")"

# --- baseline: the same shape with plain kernel routing
bnode="bbn$BENCH_ID"; ba="bba$BENCH_ID"; bb="bbb$BENCH_ID"
bench_plain_pods "$bnode" "$ba" "$bb" 202
ba_ip=10.202.0.2; bb_ip=10.202.0.3

tp_p=(); tp_b=(); p50_p=(); p50_b=(); p99_p=(); p99_b=()
for r in $(seq 1 "$ROUNDS"); do
  tp_p+=("$(bench_throughput "$pa" "$pb" "$pb_ip")"); tp_b+=("$(bench_throughput "$ba" "$bb" "$bb_ip")")
  read -r a b < <(bench_latency "$pa" "$pb" "$pb_ip"); p50_p+=("$a"); p99_p+=("$b")
  read -r a b < <(bench_latency "$ba" "$bb" "$bb_ip"); p50_b+=("$a"); p99_b+=("$b")
done
med() { printf '%s\n' "$@" | bench_median; }
bench_emit datapath "pod-to-pod TCP throughput (Gbit/s)" "$(med "${tp_p[@]}")" "$(med "${tp_b[@]}")" higher
bench_emit datapath "TCP request/response p50 (us)" "$(med "${p50_p[@]}")" "$(med "${p50_b[@]}")" lower
bench_emit datapath "TCP request/response p99 (us)" "$(med "${p99_p[@]}")" "$(med "${p99_b[@]}")" lower

# The programs' own cost per packet of an established flow (BPF_PROG_TEST_RUN, ns; absolute: a kernel without plexus
# runs no program to compare with). bench/datapath/prog_cost.cc says what each case sends.
"$BUILD/bench/datapath/bench_prog_cost" | python3 -c '
import json, sys
for case, ns in json.loads(sys.stdin.read()).items():
    print(json.dumps({"bench": "datapath", "metric": f"program ns/pkt, {case}", "plexus": ns, "baseline": None,
                      "ratio": None, "better": "lower"}))'
