#!/usr/bin/env bash
# Services at scale, plexus against an iptables ruleset in the shape kube-proxy's iptables mode writes
# (KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* with statistic probabilities), for COUNTS services:
#   - new-connection latency (connect + request + close) p50/p99 to the first and the last service, with a direct
#     pod-to-pod connection as the floor;
#   - time to program all services (plexus apply of the manifests, against iptables-restore of the ruleset);
#   - time to add one service with all the others installed (kube-proxy rewrites the whole table);
#   - the agent's resident memory.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
COUNTS="${COUNTS:-100 1000 5000 10000}"
CONNS="${CONNS:-1000}"
ROUNDS="${ROUNDS:-5}"
source ./lib.sh
trap bench_cleanup EXIT
RR="$BUILD/bench/datapath/plexus-bench-rr"
CLI=("$BUILD/cli/plexus" --timeout 300)

# plexus: agent, a backend pod with a named port, a client pod.
pnode="bsn$BENCH_ID"; pb="bsb$BENCH_ID"; pc="bsc$BENCH_ID"
# A second client for the per-packet path: its connections leave TIME_WAIT state on the backend for their own
# address, so they cannot collide with the socket-LB client's reuse of a port.
pt="bst$BENCH_ID"
bench_start_agent "$pnode" 10.210.0.0/24
bench_netns "$pb"; bench_netns "$pc"; bench_netns "$pt"
pb_ip="$(bench_plexus_add "$pnode" "$pb")"
bench_plexus_add "$pnode" "$pc" >/dev/null
bench_plexus_add "$pnode" "$pt" >/dev/null
echo "apiVersion: v1
kind: Pod
metadata: {name: $pb, namespace: bench, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}" | "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -f - >/dev/null
CG="$PLEXUS_WORK/cgroup/bench"  # the agent's --cgroup-root: socket LB applies to processes in it

# baseline: plain routed pods; the ruleset lives in the node's nat table.
bnode="bsbn$BENCH_ID"; bb="bsbb$BENCH_ID"; bc="bsbc$BENCH_ID"
bench_plain_pods "$bnode" "$bc" "$bb" 211
bb_ip=10.211.0.3

vip() { echo "10.100.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }
services_yaml() {  # from to
  python3 - "$1" "$2" <<'PY'
import sys
a, b = int(sys.argv[1]), int(sys.argv[2])
for i in range(a, b):
    print(f"""apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: bench}}
spec: {{clusterIP: 10.100.{i // 250}.{i % 250 + 1}, selector: {{app: web}}, ports: [{{name: http, port: 80, targetPort: http}}]}}
---""")
PY
}
iptables_rules() {  # count backend
  python3 - "$1" "$2" <<'PY'
import hashlib, sys
n, be = int(sys.argv[1]), sys.argv[2]
h = lambda s: hashlib.sha256(s.encode()).hexdigest()[:16].upper()
chains, rules = [], []
for i in range(n):
    svc, sep_a, sep_b = "KUBE-SVC-" + h(f"s{i}"), "KUBE-SEP-" + h(f"s{i}a"), "KUBE-SEP-" + h(f"s{i}b")
    chains += [svc, sep_a, sep_b]
    vip = f"10.100.{i // 250}.{i % 250 + 1}"
    rules.append(f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "bench/s{i}:http cluster IP" -m tcp --dport 80 -j {svc}')
    rules.append(f'-A {svc} -m comment --comment "bench/s{i}:http" -m statistic --mode random --probability 0.50000000000 -j {sep_a}')
    rules.append(f'-A {svc} -m comment --comment "bench/s{i}:http" -j {sep_b}')
    for sep in (sep_a, sep_b):
        rules.append(f'-A {sep} -s {be}/32 -m comment --comment "bench/s{i}:http" -j KUBE-MARK-MASQ')
        rules.append(f'-A {sep} -p tcp -m comment --comment "bench/s{i}:http" -m tcp -j DNAT --to-destination {be}:8080')
print("*nat")
print(":PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]")
print(":KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]")
for c in chains:
    print(f":{c} - [0:0]")
print("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
print("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
print("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000")
print("\n".join(rules))
print("COMMIT")
PY
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
crr() {  # client-ns server-ns ip port [cgroup] -> "p50 p99"
  ip netns exec "$2" timeout 120 "$RR" crr-server 8080 "$CONNS" &
  local spid=$!
  sleep 0.2
  # With a cgroup, the client runs inside it: the agent's --cgroup-root, where pods live in a cluster, so its
  # connects are translated by the socket programs (the default path). Without, packets are translated at tc.
  ip netns exec "$1" sh -c "${5:+echo \$\$ > $5/cgroup.procs && }exec timeout 120 $RR crr-client $3 $4 $CONNS" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["p50_us"], d["p99_us"])'
  wait "$spid" || true
}
agent_ms() {  # the agent's own time from `plexus apply -o json`
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("agent_ms", 0))' "$1"
}
emit_abs() {  # metric plexus baseline better
  python3 -c 'import json,sys; m,p,b,d=sys.argv[1:]; p=float(p); b=float(b); print(json.dumps({"bench":"services","metric":m,"plexus":round(p,3),"baseline":round(b,3),"ratio":round(p/b,3) if b else None,"better":d}))' "$@"
}

# Latency samples by path: lat[<path>.50] and lat[<path>.99] hold one p50/p99 per round.
declare -A lat=()
sample() { local a b; read -r a b < <(crr "${@:2}"); lat[$1.50]+=" $a"; lat[$1.99]+=" $b"; }
median_of() { tr ' ' '\n' <<<"$1" | grep -v '^$' | bench_median; }  # of space-separated numbers
med() { median_of "${lat[$1]}"; }

installed=0
for n in $COUNTS; do
  # Program n services: ours from the manifests, theirs with iptables-restore of the whole table.
  services_yaml "$installed" "$n" >"$PLEXUS_WORK/svc.yaml"
  t0=$(date +%s%N); "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -o json -f "$PLEXUS_WORK/svc.yaml" >"$PLEXUS_WORK/out.json"; ours=$(ms_since "$t0")
  agent_ms=$(agent_ms "$PLEXUS_WORK/out.json")
  iptables_rules "$n" "$bb_ip" >"$PLEXUS_WORK/rules"
  t0=$(date +%s%N); ip netns exec "$bnode" iptables-restore <"$PLEXUS_WORK/rules"; theirs=$(ms_since "$t0")
  installed=$n
  emit_abs "program services to $n total (ms; ours adds $n-previous, iptables-restore rewrites all)" "$ours" "$theirs" lower
  emit_abs "program services to $n total, agent time (ms; parse+store+persist+maps)" "$agent_ms" "$theirs" lower

  # Connection latency, ROUNDS rounds alternating every path and the floor (a direct pod-to-pod connection),
  # medians of the rounds' p50/p99: the machine's drift over a run lands on every path alike.
  last=$((n - 1))
  lat=()
  for _ in $(seq 1 "$ROUNDS"); do
    sample floor "$pc" "$pb" "$pb_ip" 8080
    sample first "$pc" "$pb" "$(vip 0)" 80 "$CG"
    sample ipt_first "$bc" "$bb" "$(vip 0)" 80
    sample last "$pc" "$pb" "$(vip "$last")" 80 "$CG"
    sample ipt_last "$bc" "$bb" "$(vip "$last")" 80
    sample packet "$pt" "$pb" "$(vip "$last")" 80  # the per-packet path (a client outside the socket-LB cgroup)
  done
  for k in floor first last packet; do echo "rounds at $n, $k p50:${lat[$k.50]}" >&2; done  # drift shows here
  emit_abs "direct pod connection p50 with $n services (us, floor)" "$(med floor.50)" "$(med floor.50)" lower
  emit_abs "new connection p50 to the first of $n services (us)" "$(med first.50)" "$(med ipt_first.50)" lower
  emit_abs "new connection p50 to the last of $n services (us)" "$(med last.50)" "$(med ipt_last.50)" lower
  emit_abs "new connection p99 to the last of $n services (us)" "$(med last.99)" "$(med ipt_last.99)" lower
  emit_abs "last of $n services p50 against the direct floor (plexus / floor)" "$(med last.50)" "$(med floor.50)" lower
  emit_abs "per-packet path: p50 to the last of $n services (us)" "$(med packet.50)" "$(med ipt_last.50)" lower
  emit_abs "per-packet path: p99 to the last of $n services (us)" "$(med packet.99)" "$(med ipt_last.99)" lower

  # One more service with n installed.
  services_yaml 20000 20001 >"$PLEXUS_WORK/one.yaml"
  t0=$(date +%s%N); "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -o json -f "$PLEXUS_WORK/one.yaml" >"$PLEXUS_WORK/out.json"; ours=$(ms_since "$t0")
  agent_ms=$(agent_ms "$PLEXUS_WORK/out.json")
  iptables_rules "$((n + 1))" "$bb_ip" >"$PLEXUS_WORK/rules1"
  t0=$(date +%s%N); ip netns exec "$bnode" iptables-restore <"$PLEXUS_WORK/rules1"; theirs=$(ms_since "$t0")
  "${CLI[@]}" --socket "$PLEXUS_SOCK" delete -f "$PLEXUS_WORK/one.yaml" >/dev/null
  emit_abs "add one service with $n installed (ms, plexus apply wall time)" "$ours" "$theirs" lower
  emit_abs "add one service with $n installed, agent time (ms)" "$agent_ms" "$theirs" lower
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PLEXUS_AGENT_PID/status" 2>/dev/null || echo 0)
  emit_abs "agent resident memory with $n services (MiB)" "$(echo "scale=1; $rss / 1024" | bc)" 0 lower
done

# The agent's last conntrack garbage collection (every 60 s by default) during the run above.
gc_s=$(bench_agent_metric plexus_conntrack_gc_duration_seconds)
gc_left=$(bench_agent_metric plexus_conntrack_entries)
gc_deleted=$(bench_agent_metric plexus_conntrack_gc_entries_deleted_total)
emit_abs "conntrack GC pass, the last one (ms; $gc_left entries left, $gc_deleted deleted in the run)" \
  "$(echo "$gc_s * 1000" | bc -l)" 0 lower

# A full sync of every installed service: the agent restarts and programs them all from its store.
#   warm: the maps survive the restart and are adopted, so only differences are written (none here);
#         the peer is kube-proxy's restart, an iptables-restore of the same table over itself;
#   cold: the service maps are removed first (a first start, or maps lost), so every entry is written;
#         the peer is iptables-restore into an empty nat table.
# Ours is the agent's own figure (plexus_service_sync_duration_seconds{kind="full"}: compute, diff and map writes),
# as iptables-restore's is the kernel programming alone (kube-proxy's rule generation is not counted either).
declare -A syncs=()  # syncs[<kind>.ours|theirs]: one figure per restart; syncs[<kind>.ops]: map operations
full_sync() {  # warm|cold, flush the iptables nat table first (0|1)
  bench_stop_agent
  if [ "$1" = cold ]; then rm -f "$PLEXUS_WORK/bpffs/plexus/plexus_lb4_"*; fi
  bench_run_agent
  local secs ops
  secs=$(bench_agent_metric 'plexus_service_sync_duration_seconds{kind="full"}')
  ops=$(bench_agent_metric 'plexus_service_sync_operations{kind="full"}')
  grep "full sync of" "$PLEXUS_WORK/agent.log" | tail -1 | sed 's/^/agent: /' >&2  # where the time went
  iptables_rules "$installed" "$bb_ip" >"$PLEXUS_WORK/rules"
  if [ "$2" = 1 ]; then ip netns exec "$bnode" sh -c 'iptables -t nat -F && iptables -t nat -X'; fi
  t0=$(date +%s%N); ip netns exec "$bnode" iptables-restore <"$PLEXUS_WORK/rules"; theirs=$(ms_since "$t0")
  syncs[$1.ours]+=" $(echo "$secs * 1000" | bc -l)"; syncs[$1.theirs]+=" $theirs"; syncs[$1.ops]=$ops
}
for _ in 1 2 3; do full_sync warm 0; full_sync cold 1; done
for kind in warm cold; do
  emit_abs "full sync of $installed services, $kind (${syncs[$kind.ops]} map operations; ms, agent; median of 3)" \
    "$(median_of "${syncs[$kind.ours]}")" "$(median_of "${syncs[$kind.theirs]}")" lower
done

# The planner's share of a cold full sync, pure (no maps, no agent): compute from scratch and diff against empty.
bench_gbench services "planner: full compute and diff of {n} services (ms)" "$BUILD/bench/services/bench_planner"
