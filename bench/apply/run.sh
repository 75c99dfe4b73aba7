#!/usr/bin/env bash
# Bulk apply, side by side in one run: `plexus apply -f` of N Services with their EndpointSlices (3 backends each,
# the YAML a user or a GitOps tool would hand us), end to end (the CLI process included), against iptables-restore of
# the nat table kube-proxy's iptables mode writes for the same services (KUBE-SERVICES -> KUBE-SVC-* with statistic
# random over 3 KUBE-SEP-* DNAT chains). Then P CiliumNetworkPolicies and, in the last round, E pods wired through
# plexus-cni on top, and the agent's RSS after each step
# (absolute; Maglev tables are kernel memory and not in it: their size is printed too). Then, into another fresh node,
# S selector Services over S Pods of another node (the agent derives each service's endpoints from the pods' labels,
# as the EndpointSlice controller would), against iptables-restore of kube-proxy's rules for them (one endpoint each).
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
N="${N:-10000}"
P="${P:-1000}"
E="${E:-1000}"  # endpoints (pods wired through plexus-cni) added after the policies, for the memory figure
S="${S:-5000}"  # selector services (and pods) of the last step; 0 skips it
ROUNDS="${ROUNDS:-3}"
source ./lib.sh
trap bench_cleanup EXIT
CLI=("$BUILD/cli/plexus" --timeout 300)
WORK="$(mktemp -d /tmp/plexus-bench-apply.XXXXXX)"
BENCH_DIRS+=("$WORK")
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# The agent's RSS at rest: the agent hands a bulk apply's freed memory back within a second of answering.
rss_at_rest() { sleep 1.5; awk '/VmRSS/ {print $2 / 1024}' "/proc/$PLEXUS_AGENT_PID/status"; }

python3 - "$N" "$S" "$WORK" <<'PY'
import hashlib, sys
n, s, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
h = lambda t: hashlib.sha256(t.encode()).hexdigest()[:16].upper()

def kube_proxy_rules(path, services):
    """The nat table kube-proxy's iptables mode writes: (name, cluster IP, backend addresses) per service, port 80
    to 8080, statistic random over the backends."""
    chains, rules = [], []
    for name, vip, backends in services:
        svc = "KUBE-SVC-" + h(name)
        seps = ["KUBE-SEP-" + h(f"{name}{k}") for k in range(len(backends))]
        chains += [svc] + seps
        rules.append(f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "bench/{name}:http cluster IP" -m tcp --dport 80 -j {svc}')
        for k, sep in enumerate(seps):
            pick = "" if k == len(seps) - 1 else f" -m statistic --mode random --probability {1 / (len(seps) - k):.11f}"
            rules.append(f'-A {svc} -m comment --comment "bench/{name}:http"{pick} -j {sep}')
        for sep, be in zip(seps, backends):
            rules.append(f'-A {sep} -s {be}/32 -m comment --comment "bench/{name}:http" -j KUBE-MARK-MASQ')
            rules.append(f'-A {sep} -p tcp -m comment --comment "bench/{name}:http" -m tcp -j DNAT --to-destination {be}:8080')
    with open(path, "w") as r:
        r.write("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
        r.write(":KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
        r.write("".join(f":{c} - [0:0]\n" for c in chains))
        r.write("-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n")
        r.write("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n")
        r.write("\n".join(rules) + "\nCOMMIT\n")

vip = lambda i: f"10.100.{i // 250}.{i % 250 + 1}"
be = lambda i, k: f"10.{213 + k}.{i // 250 % 250}.{i % 250 + 1}"
with open(f"{work}/svc.yaml", "w") as y:
    for i in range(n):
        eps = "".join(f"- addresses: [{be(i, k)}]\n  conditions: {{ready: true}}\n" for k in range(3))
        y.write(f"""apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: bench}}
spec: {{clusterIP: {vip(i)}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: s{i}-1, namespace: bench, labels: {{kubernetes.io/service-name: s{i}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
{eps}---
""")
kube_proxy_rules(f"{work}/rules", [(f"s{i}", vip(i), [be(i, k) for k in range(3)]) for i in range(n)])

# The selector step: S pods on another node, S services selecting one each by two labels.
pod_ip = lambda i: f"10.209.{i // 250}.{i % 250 + 1}"
with open(f"{work}/pods.yaml", "w") as y:
    y.write("apiVersion: v1\nkind: Node\nmetadata: {name: other}\nspec: {podCIDR: 10.209.0.0/16}\n"
            "status: {addresses: [{type: InternalIP, address: 192.168.77.2}]}\n---\n")
    for i in range(s):
        y.write(f"""apiVersion: v1
kind: Pod
metadata: {{name: p{i}, namespace: bench, labels: {{app: a{i}, tier: web}}}}
spec: {{nodeName: other, containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]}}
status: {{podIP: {pod_ip(i)}}}
---
""")
with open(f"{work}/sel.yaml", "w") as y:
    for i in range(s):
        y.write(f"""apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: bench}}
spec: {{clusterIP: {vip(i)}, selector: {{app: a{i}, tier: web}}, ports: [{{name: http, port: 80, targetPort: http}}]}}
---
""")
kube_proxy_rules(f"{work}/sel.rules", [(f"s{i}", vip(i), [pod_ip(i)]) for i in range(s)])
PY
python3 - "$P" "$WORK" <<'PY'
import sys
p, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/cnp.yaml", "w") as y:
    for i in range(p):
        y.write(f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: p{i}, namespace: bench}}
spec:
  endpointSelector: {{matchLabels: {{app: a{i}}}}}
  ingress: [{{fromEndpoints: [{{matchLabels: {{app: b{i}}}}}], toPorts: [{{ports: [{{port: "{8000 + i % 1000}", protocol: TCP}}]}}]}}]
---
""")
PY
echo "bench apply: $N services ($(du -h "$WORK/svc.yaml" | cut -f1) of YAML), $(grep -c '^-A' "$WORK/rules") iptables rules" >&2

ours=(); theirs=(); rss_svc=(); rss_pol=(); rss_eps=""; added=0; sel_ours=(); sel_theirs=()
for r in $(seq 1 "$ROUNDS"); do
  node="bap$r$BENCH_ID"; ipt="bai$r$BENCH_ID"
  bench_start_agent "$node" 10.208.0.0/21
  bench_netns "$ipt"
  t0=$(date +%s%N); "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -f "$WORK/svc.yaml" >/dev/null; ours+=("$(ms_since "$t0")")
  t0=$(date +%s%N); ip netns exec "$ipt" iptables-restore <"$WORK/rules"; theirs+=("$(ms_since "$t0")")
  rss_svc+=("$(rss_at_rest)")
  "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -f "$WORK/cnp.yaml" >/dev/null
  rss_pol+=("$(rss_at_rest)")
  if [ "$r" = "$ROUNDS" ] && [ "$E" -gt 0 ]; then
    for i in $(seq 1 "$E"); do
      bench_netns "bae$i$BENCH_ID"
      [ -n "$(bench_plexus_add "$node" "bae$i$BENCH_ID" 2>/dev/null)" ] && added=$((added + 1))
    done
    rss_eps="$(rss_at_rest)"
    echo "bench apply: $added of $E endpoints added, RSS $rss_eps MiB" >&2
  fi
  bench_stop_agent
  ip netns del "$ipt"
  echo "bench apply: round $r: plexus apply ${ours[-1]} ms, iptables-restore ${theirs[-1]} ms, RSS ${rss_svc[-1]} / ${rss_pol[-1]} MiB" >&2
  if [ "$S" -gt 0 ]; then
    bench_start_agent "bas$r$BENCH_ID" 10.208.0.0/21
    bench_netns "$ipt"
    "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -f "$WORK/pods.yaml" >/dev/null
    t0=$(date +%s%N); "${CLI[@]}" --socket "$PLEXUS_SOCK" apply -f "$WORK/sel.yaml" >/dev/null; sel_ours+=("$(ms_since "$t0")")
    t0=$(date +%s%N); ip netns exec "$ipt" iptables-restore <"$WORK/sel.rules"; sel_theirs+=("$(ms_since "$t0")")
    # Each service derived its one endpoint: the last one's backend is its pod.
    last=$((S - 1))
    "${CLI[@]}" --socket "$PLEXUS_SOCK" service get "bench/s$last" -o json | python3 -c '
import json, sys
want = sys.argv[1]
got = [b["address"] for f in json.load(sys.stdin)["service"]["frontends"] for b in f.get("backends", [])]
sys.exit(0 if got == [want] else "bench apply: selector service s%s has backends %s, not [%s]" % (sys.argv[2], got, want))
' "10.209.$((last / 250)).$((last % 250 + 1))" "$last"
    bench_stop_agent
    ip netns del "$ipt"
    echo "bench apply: round $r: $S selector services over $S pods ${sel_ours[-1]} ms, iptables-restore ${sel_theirs[-1]} ms" >&2
  fi
done
med() { printf '%s\n' "$@" | bench_median; }
bench_emit apply "plexus apply of $N Services + 3-backend EndpointSlices, wall (ms) / iptables-restore of kube-proxy's rules" \
  "$(med "${ours[@]}")" "$(med "${theirs[@]}")" lower
bench_emit apply "agent RSS after $N services (MiB; absolute)" "$(med "${rss_svc[@]}")" 0 lower
bench_emit apply "agent RSS after $N services + $P CiliumNetworkPolicies (MiB; absolute)" "$(med "${rss_pol[@]}")" 0 lower
if [ "$S" -gt 0 ]; then
  bench_emit apply "plexus apply of $S selector Services over $S Pods (endpoints derived by the agent), wall (ms) / iptables-restore of kube-proxy's rules" \
    "$(med "${sel_ours[@]}")" "$(med "${sel_theirs[@]}")" lower
fi
if [ -n "$rss_eps" ]; then
  bench_emit apply "agent RSS after $N services + $P CiliumNetworkPolicies + $added endpoints (MiB; absolute)" "$rss_eps" 0 lower
fi
