#!/usr/bin/env bash
# NodePort traffic from a client outside the cluster to a backend on the other node, side by side in one run. Each setup
# is a "fabric" network namespace holding a bridge and the client (172.28.0.100/24 on the bridge), and two node
# namespaces on the bridge (node A 172.28.0.1, node B 172.28.0.2) with one server pod on node B. The client connects
# to node A's address at the NodePorts 30201 (iperf3), 32000 (RR) and 32001 (CRR), which lead to the pod's 5201, 7000
# and 7001:
#   snat      plexus agents (native routing, auto-direct-node-routes, kube-proxy replacement), --bpf-lb-mode snat:
#             node A translates the destination and, leaving towards node B, the source to its own address; replies
#             come back through node A;
#   dsr       the same with --bpf-lb-mode dsr: node A keeps the client's address and names the frontend in an IPv4
#             option of each connection's SYN; node B's replies go straight to the client;
#   iptables  no plexus: the pod on a plain veth with a /32 route on node B, node A routing B's pod CIDR, and on node A
#             the NAT rules in the shape kube-proxy's iptables mode writes them (KUBE-NODEPORTS -> KUBE-EXT (mark for
#             masquerade) -> KUBE-SVC -> KUBE-SEP DNAT; KUBE-POSTROUTING MASQUERADE --random-fully of marked packets).
# Metrics, per setup: iperf3 throughput with 1 and 4 streams, client to server (upload) and server to client (iperf3
# -R: a download, the replies DSR sends straight from node B), TCP_RR and TCP_CRR p50/p99 (bench/lib.sh bench_rounds);
# then the ratios to iptables with the targets (dsr throughput >= 1.2x and CRR p50 <= 0.8x; snat throughput >= 1.0x).
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
CLI=("$BUILD/cli/plexus" --timeout 60)
WORK="$(mktemp -d /tmp/plexus-bench-np.XXXXXX)"
BENCH_DIRS+=("$WORK")
SAMPLES="$WORK/samples"
STATUS="$WORK/status"
: >"$SAMPLES"; : >"$STATUS"
NODE_A=172.28.0.1; NODE_B=172.28.0.2; CLIENT_IP=172.28.0.100
SHIFT_PORTS=25000  # NodePort = server port + 25000: 5201 -> 30201, 7000 -> 32000, 7001 -> 32001

declare -A CLIENT SERVER TARGET SHIFT
SETUPS=()
unavailable() {  # setup reason
  echo "$1 unavailable $2" >>"$STATUS"
  echo "bench nodeport: $1 unavailable: $2" >&2
}
last_log_line() { grep -v '^\s*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-300; }

# The fabric namespace $1 (bridge + client) and nodes $2 $3 on it through veths named $4 (node side), forwarding on.
fabric() {
  local f="$1" a="$2" b="$3" dev="$4" i=0
  bench_netns "$f"
  ip -n "$f" link add br0 type bridge
  ip -n "$f" addr add "$CLIENT_IP/24" dev br0
  ip -n "$f" link set br0 up
  for n in "$a" "$b"; do
    i=$((i + 1))
    bench_netns "$n"
    ip link add "$dev" netns "$n" type veth peer name "p$i" netns "$f"
    ip -n "$f" link set "p$i" master br0 up
    ip -n "$n" addr add "172.28.0.$i/24" dev "$dev"
    ip -n "$n" link set "$dev" up
    ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1
  done
}

# Bounded reachability check: one new connection from the fabric to node A's NodePort, up to 4 attempts of 5 s.
reachable() {  # fabric pod
  local ok=0
  for _ in 1 2 3 4; do
    ip netns exec "$2" timeout 7 "$RR" crr-server 7001 1 >/dev/null 2>&1 &
    local spid=$!
    sleep 0.2
    if ip netns exec "$1" timeout 5 "$RR" crr-client "$NODE_A" $((7001 + SHIFT_PORTS)) 1 >/dev/null 2>&1; then ok=1; fi
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
    [ "$ok" = 1 ] && break
  done
  [ "$ok" = 1 ]
}

# --- plexus: two agents, the Node objects, the server pod's Pod object and the NodePort Service applied to both
plexus_setup() {  # setup tag cidr-a-net cidr-b-net agent-args...
  local setup="$1" tag="$2" na="$3" nb="$4"
  shift 4
  local f="bp${tag}f$BENCH_ID" a="bp${tag}a$BENCH_ID" b="bp${tag}b$BENCH_ID" pod="bp${tag}p$BENCH_ID"
  local dev="bpd$BENCH_ID" sock_a sock_b ip err
  fabric "$f" "$a" "$b" "$dev"
  if ! bench_start_agent "$a" "10.$na.0.0/24" --devices "$dev" --routing-mode native --auto-direct-node-routes=true \
    "$@" 2>/dev/null; then
    unavailable "$setup" "agent refused to start: $(last_log_line "$PLEXUS_WORK/agent.log")"; return 0
  fi
  sock_a="$PLEXUS_SOCK"
  if ! bench_start_agent "$b" "10.$nb.0.0/24" --devices "$dev" --routing-mode native --auto-direct-node-routes=true \
    "$@" 2>/dev/null; then
    unavailable "$setup" "agent refused to start: $(last_log_line "$PLEXUS_WORK/agent.log")"; return 0
  fi
  sock_b="$PLEXUS_SOCK"
  bench_netns "$pod"
  ip="$(PLEXUS_SOCK="$sock_b" bench_plexus_add "$b" "$pod" 2>"$WORK/$tag.cni")" || true
  if [ -z "$ip" ]; then unavailable "$setup" "CNI ADD failed: $(last_log_line "$WORK/$tag.cni")"; return 0; fi
  {
    for n in "a $a $na $NODE_A" "b $b $nb $NODE_B"; do
      read -r _ name net addr <<<"$n"
      printf 'apiVersion: v1\nkind: Node\nmetadata: {name: %s}\nspec: {podCIDR: 10.%s.0.0/24}\n' "$name" "$net"
      printf 'status: {addresses: [{type: InternalIP, address: %s}]}\n---\n' "$addr"
    done
    printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: bench, labels: {app: np-server}}\n' "$pod"
    printf 'spec: {nodeName: %s, containers: [{name: c}]}\nstatus: {podIP: %s}\n---\n' "$b" "$ip"
    printf 'apiVersion: v1\nkind: Service\nmetadata: {name: np, namespace: bench}\nspec:\n  type: NodePort\n  ports:\n'
    for p in 5201 7000 7001; do
      printf '  - {name: p%s, port: %s, protocol: TCP, targetPort: %s, nodePort: %s}\n' "$p" "$p" "$p" $((p + SHIFT_PORTS))
    done
    printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n'
    printf 'metadata: {name: np-1, namespace: bench, labels: {kubernetes.io/service-name: np}}\naddressType: IPv4\n'
    printf 'ports: [{name: p5201, port: 5201, protocol: TCP}, {name: p7000, port: 7000, protocol: TCP}, '
    printf '{name: p7001, port: 7001, protocol: TCP}]\n'
    printf 'endpoints: [{addresses: [%s], conditions: {ready: true}, nodeName: %s}]\n' "$ip" "$b"
  } >"$WORK/$tag.yaml"
  for sock in "$sock_a" "$sock_b"; do
    if ! err="$("${CLI[@]}" --socket "$sock" apply -f "$WORK/$tag.yaml" 2>&1 >/dev/null)"; then
      unavailable "$setup" "plexus apply failed: $(echo "$err" | tail -n 1 | cut -c1-300)"; return 0
    fi
  done
  if ! reachable "$f" "$pod"; then
    unavailable "$setup" "the client cannot reach node A's NodePort within 4 attempts of 5 s"; return 0
  fi
  SETUPS+=("$setup"); CLIENT[$setup]="$f"; SERVER[$setup]="$pod"; TARGET[$setup]="$NODE_A"
  SHIFT[$setup]="$SHIFT_PORTS"
}

# --- iptables: kube-proxy's NAT rules on node A, the pod routed by the kernel on node B
iptables_setup() {
  local f="bpif$BENCH_ID" a="bpia$BENCH_ID" b="bpib$BENCH_ID" pod="bpip$BENCH_ID" dev="bpd$BENCH_ID"
  local host="bpiv$BENCH_ID" ip=10.236.0.2 rules
  fabric "$f" "$a" "$b" "$dev"
  bench_routed_pod "$b" "$pod" "$ip" "$host"
  ip -n "$a" route add 10.236.0.0/24 via "$NODE_B" dev "$dev"
  rules="*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
"
  for p in 5201 7000 7001; do
    rules+=":KUBE-EXT-$p - [0:0]
:KUBE-SVC-$p - [0:0]
:KUBE-SEP-$p - [0:0]
-A KUBE-NODEPORTS -p tcp -m tcp --dport $((p + SHIFT_PORTS)) -j KUBE-EXT-$p
-A KUBE-EXT-$p -j KUBE-MARK-MASQ
-A KUBE-EXT-$p -j KUBE-SVC-$p
-A KUBE-SVC-$p -j KUBE-SEP-$p
-A KUBE-SEP-$p -p tcp -m tcp -j DNAT --to-destination $ip:$p
"
  done
  rules+="-A KUBE-SERVICES -d $NODE_A/32 -j KUBE-NODEPORTS
COMMIT
"
  if ! err="$(echo "$rules" | ip netns exec "$a" iptables-restore 2>&1)"; then
    unavailable iptables "iptables-restore failed: $(echo "$err" | tail -n 1 | cut -c1-300)"; return 0
  fi
  if ! reachable "$f" "$pod"; then
    unavailable iptables "the client cannot reach node A's NodePort within 4 attempts of 5 s"; return 0
  fi
  SETUPS+=(iptables); CLIENT[iptables]="$f"; SERVER[iptables]="$pod"; TARGET[iptables]="$NODE_A"
  SHIFT[iptables]="$SHIFT_PORTS"
}

plexus_setup snat s 237 238 --bpf-lb-mode snat
plexus_setup dsr d 239 240 --bpf-lb-mode dsr
iptables_setup

BENCH_REVERSE=1 bench_rounds nodeport
bench_summary "$STATUS" '{"bench": "nodeport", "absolute": true,
  "names": {"snat": "plexus NodePort snat", "dsr": "plexus NodePort dsr", "iptables": "iptables NodePort (kube-proxy)"},
  "ratios": [["dsr", "iptables", "tp1", ">= 1.2"], ["dsr", "iptables", "tp4", ">= 1.2"],
             ["dsr", "iptables", "tpr1", ">= 1.2"], ["dsr", "iptables", "tpr4", ">= 1.2"],
             ["snat", "iptables", "tpr1", ">= 1.0"], ["snat", "iptables", "tpr4", ">= 1.0"],
             ["dsr", "iptables", "crr50", "<= 0.8"], ["dsr", "iptables", "rr50", "<= 0.8"],
             ["dsr", "iptables", "crr99", null], ["dsr", "iptables", "rr99", null],
             ["snat", "iptables", "tp1", ">= 1.0"], ["snat", "iptables", "tp4", ">= 1.0"],
             ["snat", "iptables", "crr50", null], ["snat", "iptables", "rr50", null],
             ["snat", "iptables", "crr99", null], ["snat", "iptables", "rr99", null]]}'
