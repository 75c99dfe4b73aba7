#!/usr/bin/env bash
# CNI ADD latency over N pods: plexus-cni (through the agent) against the reference bridge + host-local plugins,
# each executed inside a node netns exactly as a runtime does. Alternates plexus and baseline pod by pod.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
PODS="${PODS:-100}"
source ./lib.sh
trap bench_cleanup EXIT

pnode="bcp$BENCH_ID"; bnode="bcb$BENCH_ID"
bench_start_agent "$pnode" 10.203.0.0/24
bench_netns "$bnode"
hl_dir="$(mktemp -d /tmp/plexus-bench-hl.XXXXXX)"; BENCH_DIRS+=("$hl_dir")
bridge_conf='{"cniVersion":"1.0.0","name":"bench-bridge","type":"bridge","bridge":"bbr'"$BENCH_ID"'","isGateway":true,"ipam":{"type":"host-local","dataDir":"'"$hl_dir"'","ranges":[[{"subnet":"10.204.0.0/24"}]]}}'
plexus_conf='{"cniVersion":"1.0.0","name":"plexus","type":"plexus-cni","socket":"'"$PLEXUS_SOCK"'"}'

add_ms() {  # node netns conf plugin -> ms
  local node="$1" pod="$2" conf="$3" plugin="$4" t0 t1
  t0=$(date +%s%N)
  echo "$conf" | ip netns exec "$node" env CNI_COMMAND=ADD CNI_CONTAINERID="$pod" CNI_NETNS="/run/netns/$pod" \
    CNI_IFNAME=eth0 CNI_PATH="$BUILD/cni:/usr/lib/cni" CNI_ARGS="K8S_POD_NAMESPACE=bench;K8S_POD_NAME=$pod" \
    "$plugin" >/dev/null
  t1=$(date +%s%N)
  echo "scale=3; ($t1 - $t0) / 1000000" | bc
}

plexus_ms=(); bridge_ms=()
for i in $(seq 1 "$PODS"); do
  pp="bcpp$i-$BENCH_ID"; bp="bcbp$i-$BENCH_ID"
  bench_netns "$pp"; bench_netns "$bp"
  plexus_ms+=("$(add_ms "$pnode" "$pp" "$plexus_conf" "$BUILD/cni/plexus-cni")")
  bridge_ms+=("$(add_ms "$bnode" "$bp" "$bridge_conf" /usr/lib/cni/bridge)")
done
pct() {  # percentile values...
  local p="$1"; shift
  printf '%s\n' "$@" | sort -g | awk -v p="$p" '{a[NR]=$1} END {i=int(p*NR); if (i<1) i=1; if (i>NR) i=NR; print a[i]}'
}
# The agent's own time per ADD (request in to status out, its gRPC interceptor), so a run shows how the wall time
# splits between the agent and the plugin process (docs/benchmarks.md, "CNI ADD").
agent_s=$(bench_agent_metric 'plexus_cni_request_duration_seconds_sum{command="ADD"}' || true)
agent_n=$(bench_agent_metric 'plexus_cni_request_duration_seconds_count{command="ADD"}' || true)
if [ -n "$agent_s" ] && [ -n "$agent_n" ]; then
  echo "cni_add: the agent's own time per ADD: mean $(echo "scale=2; $agent_s * 1000 / $agent_n" | bc) ms over $agent_n" >&2
fi
bench_emit cni_add "CNI ADD p50 over $PODS pods (ms)" "$(pct 0.50 "${plexus_ms[@]}")" "$(pct 0.50 "${bridge_ms[@]}")" lower
bench_emit cni_add "CNI ADD p99 over $PODS pods (ms)" "$(pct 0.99 "${plexus_ms[@]}")" "$(pct 0.99 "${bridge_ms[@]}")" lower
