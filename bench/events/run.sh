#!/usr/bin/env bash
# Flow events cost: pod-to-pod throughput, request/response latency and new-connection latency (TCP_CRR, where every
# connection's packets with new TCP flags are events) with events on (default aggregation) against events off
# (--enable-hubble=false), side by side; then the event rate the agent sustains with aggregation off (every packet an
# event) under a UDP flood, and how many were lost; then the agent's own work per event (bench_flow_events).
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
RR_N="${RR_N:-20000}"
CRR_N="${CRR_N:-2000}"
source ./lib.sh
trap bench_cleanup EXIT

setup() {  # tag cidr agent-args -> sets ${tag}_a ${tag}_b ${tag}_bip ${tag}_sock
  local tag="$1" cidr="$2" args="$3"
  PLEXUS_AGENT_ARGS="$args" bench_start_agent "be${tag}n$BENCH_ID" "$cidr"
  bench_netns "be${tag}a$BENCH_ID"; bench_netns "be${tag}b$BENCH_ID"
  bench_plexus_add "be${tag}n$BENCH_ID" "be${tag}a$BENCH_ID" >/dev/null
  local ip
  ip="$(bench_plexus_add "be${tag}n$BENCH_ID" "be${tag}b$BENCH_ID")"
  eval "${tag}_bip=$ip ${tag}_sock=$PLEXUS_SOCK ${tag}_node=be${tag}n$BENCH_ID"
}
setup on 10.205.0.0/24 ""
setup off 10.206.0.0/24 "--enable-hubble=false"

tp_on=(); tp_off=(); p50_on=(); p50_off=(); crr50_on=(); crr50_off=(); crr99_on=(); crr99_off=()
for r in $(seq 1 "$ROUNDS"); do
  tp_on+=("$(bench_throughput "beona$BENCH_ID" "beonb$BENCH_ID" "$on_bip")")
  tp_off+=("$(bench_throughput "beoffa$BENCH_ID" "beoffb$BENCH_ID" "$off_bip")")
  read -r a _ < <(bench_latency "beona$BENCH_ID" "beonb$BENCH_ID" "$on_bip"); p50_on+=("$a")
  read -r a _ < <(bench_latency "beoffa$BENCH_ID" "beoffb$BENCH_ID" "$off_bip"); p50_off+=("$a")
  read -r a b < <(bench_crr "beona$BENCH_ID" "beonb$BENCH_ID" "$on_bip"); crr50_on+=("$a"); crr99_on+=("$b")
  read -r a b < <(bench_crr "beoffa$BENCH_ID" "beoffb$BENCH_ID" "$off_bip"); crr50_off+=("$a"); crr99_off+=("$b")
done
med() { printf '%s\n' "$@" | bench_median; }
bench_emit events "throughput, events on vs off (Gbit/s)" "$(med "${tp_on[@]}")" "$(med "${tp_off[@]}")" higher
bench_emit events "RR p50, events on vs off (us)" "$(med "${p50_on[@]}")" "$(med "${p50_off[@]}")" lower
bench_emit events "TCP_CRR p50, events on vs off (us)" "$(med "${crr50_on[@]}")" "$(med "${crr50_off[@]}")" lower
bench_emit events "TCP_CRR p99, events on vs off (us)" "$(med "${crr99_on[@]}")" "$(med "${crr99_off[@]}")" lower

# Sustained event rate: aggregation off, a UDP flood for a few seconds, events processed and lost per second.
setup flood 10.207.0.0/24 "--monitor-aggregation=none"
scrape() { ip netns exec "$flood_node" curl -sf http://127.0.0.1:9962/metrics; }
value() { awk -v s="$1" '$1==s {print $2}'; }
before="$(scrape)"
ip netns exec "beflooda$BENCH_ID" timeout 3 iperf3 -s -1 -p 5202 >/dev/null 2>&1 &
sleep 0.3
t0=$(date +%s%N)
ip netns exec "befloodb$BENCH_ID" timeout 10 iperf3 -u -c "$(ip -n "beflooda$BENCH_ID" -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)" \
  -p 5202 -b 0 -l 64 -t 2 >/dev/null 2>&1 || true
t1=$(date +%s%N)
sleep 1
after="$(scrape)"
seen=$(( $(echo "$after" | value plexus_hubble_flows_processed_total) - $(echo "$before" | value plexus_hubble_flows_processed_total) ))
lost=$(( $(echo "$after" | value 'plexus_hubble_lost_events_total{source="perf_event_ring_buffer"}') - $(echo "$before" | value 'plexus_hubble_lost_events_total{source="perf_event_ring_buffer"}') ))
python3 -c 'import json,sys; s,l,ns=map(int,sys.argv[1:]); secs=ns/1e9; print(json.dumps({"bench":"events","metric":"events processed per second, aggregation off (lost per second)","plexus":round(s/secs),"baseline":round(l/secs),"ratio":None,"better":"higher"}))' "$seen" "$lost" "$((t1 - t0))"

# The agent's own work per event: decode, enrich and store (bench/events/flow_bench.cc).
bench_gbench events "agent work per flow event: decode, enrich, store in a full ring of {n} (ns)" \
  "$BUILD/bench/events/bench_flow_events"
