#!/usr/bin/env bash
# Restart under load: new connections at a steady rate on the three paths a pod uses (pod to pod, pod to a
# ClusterIP through socket LB, pod to a ClusterIP through per-packet LB) while the agent is killed with -9 and
# restarted RESTARTS times; connections attempted, failed and retransmitted per path. The baseline is the same run
# (as long, same rate) with no restart. The goal is zero failed connections.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
RESTARTS="${RESTARTS:-10}"
INTERVAL_MS="${INTERVAL_MS:-50}"  # per path
UP_SECONDS="${UP_SECONDS:-1}"     # load with the agent up between restarts
DOWN_SECONDS="${DOWN_SECONDS:-1}" # load with no agent at all, before each start
source ./lib.sh
trap bench_cleanup EXIT
LOAD="$PWD/restart/load.py"
CLI=("$BUILD/cli/plexus" --timeout 60)

node="brn$BENCH_ID"; web="brw$BENCH_ID"; direct="brd$BENCH_ID"; sock="brs$BENCH_ID"; packet="brp$BENCH_ID"
bench_start_agent "$node" 10.215.0.0/24
for p in "$web" "$direct" "$sock" "$packet"; do bench_netns "$p"; done
web_ip="$(bench_plexus_add "$node" "$web")"
for p in "$direct" "$sock" "$packet"; do bench_plexus_add "$node" "$p" >/dev/null; done
echo "apiVersion: v1
kind: Pod
metadata: {name: $web, namespace: bench, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec: {clusterIP: 10.96.15.10, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}" |
  "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -f - >/dev/null
CG="$PLEXUS_WORK/cgroup/bench"  # the agent's --cgroup-root: socket LB applies to processes in it

# One run: the backend and three clients under load while `$1` (a shell function) runs; the clients' JSON lines go
# to $PLEXUS_WORK/<tag>.<path>.json.
run() {  # tag body
  local tag="$1" stop="$PLEXUS_WORK/$1.stop" pids=()
  ip netns exec "$web" python3 "$LOAD" server 8080 "$stop" &
  pids+=($!)
  sleep 0.5
  ip netns exec "$direct" python3 "$LOAD" client "$web_ip" 8080 "$INTERVAL_MS" "$stop" >"$PLEXUS_WORK/$tag.direct.json" &
  pids+=($!)
  ip netns exec "$sock" sh -c "echo \$\$ > $CG/cgroup.procs && exec python3 $LOAD client 10.96.15.10 80 $INTERVAL_MS $stop" \
    >"$PLEXUS_WORK/$tag.socket.json" &
  pids+=($!)
  ip netns exec "$packet" python3 "$LOAD" client 10.96.15.10 80 "$INTERVAL_MS" "$stop" >"$PLEXUS_WORK/$tag.packet.json" &
  pids+=($!)
  BENCH_PIDS+=("${pids[@]}")  # a failed run still stops them
  "$2"
  touch "$stop"
  for p in "${pids[@]}"; do wait "$p" || true; done
}

restarts() {
  local t0 i
  t0=$(date +%s%N)
  for i in $(seq 1 "$RESTARTS"); do
    sleep "$UP_SECONDS"
    kill -9 "$PLEXUS_AGENT_PID"
    wait "$PLEXUS_AGENT_PID" 2>/dev/null || true
    sleep "$DOWN_SECONDS"
    bench_run_agent
  done
  sleep "$UP_SECONDS"
  echo $(( ($(date +%s%N) - t0) / 1000000 )) >"$PLEXUS_WORK/restarts.ms"
}
steady() { sleep "$(echo "scale=3; $(cat "$PLEXUS_WORK/restarts.ms") / 1000" | bc)"; }

run restart restarts
run steady steady  # the baseline: as long as the restart run, no restart

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
for path in direct socket packet; do
  case $path in
    direct) name="pod to pod" ;;
    socket) name="pod to ClusterIP, socket LB" ;;
    packet) name="pod to ClusterIP, per-packet LB" ;;
  esac
  r="$PLEXUS_WORK/restart.$path.json"; s="$PLEXUS_WORK/steady.$path.json"
  echo "$name: restarts $(cat "$r"), steady $(cat "$s")" >&2
  for what in attempted failed retransmitted; do
    better=lower; [ "$what" = attempted ] && better=higher
    bench_emit restart "$name: connections $what, $RESTARTS kill -9 restarts vs none" \
      "$(field "$r" "$what")" "$(field "$s" "$what")" "$better"
  done
done
echo "restart run $(cat "$PLEXUS_WORK/restarts.ms") ms, $RESTARTS restarts, a connection every $INTERVAL_MS ms per path" >&2
