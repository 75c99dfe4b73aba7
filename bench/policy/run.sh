#!/usr/bin/env bash
# Policy: compile time for 1,000 and 10,000 rules x 1,000 identities (absolute; no peer compiler runs here), and
# the per-packet verdict cost with 10 to 100,000 map entries (ratios to 10 entries: the goal is a flat cost, 1.0),
# and new-connection latency between two pods with 10,000 policy entries on the server against none.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
source "$(dirname "$0")/../lib.sh"
bench_gbench policy "policy compile {n} rules x 1000 ids (ms)" "$BUILD/bench/policy/bench_policy_compile"
"$BUILD/bench/policy/bench_policy_lookup" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
names = {"miss": "no entry for the peer (default deny)", "port": "the peer'"'"'s exact port", "range": "the peer'"'"'s port range"}
for case, words in names.items():
    for n in (1000, 10000, 100000):
        print(json.dumps({"bench": "policy", "metric": f"policy verdict ns/pkt, {n} vs 10 entries, {words}",
                          "plexus": r[f"{case}_{n}"], "baseline": r[f"{case}_10"],
                          "ratio": round(r[f"{case}_{n}"] / r[f"{case}_10"], 3), "better": "lower"}))'

# --- new connections (TCP_CRR) from one client pod to two server pods of one node: `big` is selected by a CNP of
# 250 /32 CIDRs x 40 TCP ports (10,000 entries) plus the client's port; `none` by no policy. Rounds alternate.
ROUNDS="${ROUNDS:-3}"
CRR_N="${CRR_N:-2000}"
trap bench_cleanup EXIT
node="bpo$BENCH_ID"; client="bpc$BENCH_ID"; big="bpg$BENCH_ID"; none="bpz$BENCH_ID"
bench_start_agent "$node" 10.216.0.0/24
for p in "$client" "$big" "$none"; do bench_netns "$p"; done
bench_plexus_add "$node" "$client" >/dev/null
big_ip="$(bench_plexus_add "$node" "$big")"
none_ip="$(bench_plexus_add "$node" "$none")"
python3 - "$client" "$big" "$none" >"$PLEXUS_WORK/policy.yaml" <<'PY'
import sys
client, big, none = sys.argv[1:]
pods = [(client, "client"), (big, "big"), (none, "none")]
for name, app in pods:
    print(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: bench, labels: {{app: {app}}}}}\n"
          "spec: {containers: [{name: c}]}\n---")
cidrs = ", ".join(f"198.18.{i // 250}.{i % 250 + 1}/32" for i in range(250))
ports = ", ".join(f"{{port: '{20000 + p}', protocol: TCP}}" for p in range(40))
print(f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: big, namespace: bench}}
spec:
  endpointSelector: {{matchLabels: {{app: big}}}}
  ingress:
  - fromCIDR: [{cidrs}]
    toPorts: [{{ports: [{ports}]}}]
  - fromEndpoints: [{{matchLabels: {{app: client}}}}]
    toPorts: [{{ports: [{{port: '7001', protocol: TCP}}]}}]""")
PY
"$BUILD/cli/plexus" --socket "$PLEXUS_SOCK" --timeout 60 apply -f "$PLEXUS_WORK/policy.yaml" >/dev/null
big_id="$("$BUILD/cli/plexus" --socket "$PLEXUS_SOCK" endpoint list -o json |
  python3 -c 'import json,sys; print(next(e["id"] for e in json.load(sys.stdin) if e["ipv4"] == sys.argv[1]))' "$big_ip")"
entries=0
for _ in $(seq 1 50); do  # bounded: the policy reaches the endpoint's maps within a few seconds
  entries="$("$BUILD/cli/plexus" --socket "$PLEXUS_SOCK" bpf policy get "$big_id" -o json |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
  [ "$entries" -ge 10000 ] && break
  sleep 0.2
done
echo "bench policy: $entries entries in the policy map of endpoint $big_id" >&2
c_big=(); c_none=()
for r in $(seq 1 "$ROUNDS"); do
  read -r a _ < <(bench_crr "$client" "$big" "$big_ip"); c_big+=("$a")
  read -r a _ < <(bench_crr "$client" "$none" "$none_ip"); c_none+=("$a")
done
med() { printf '%s\n' "$@" | bench_median; }
bench_emit policy "new connection (TCP_CRR) p50 (us), server with $entries policy entries vs none" \
  "$(med "${c_big[@]}")" "$(med "${c_none[@]}")" lower
