# The two-node fabric rows of bench/multinode (sourced by run.sh and prog_stats.sh, from bench/ with BUILD set):
# host networking, kernel routes, the floor, the flannel shape, plexus native and plexus vxlan; each that can be set
# up is in SETUPS with its CLIENT, SERVER and TARGET. See run.sh for what each row is.
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
RR_N="${RR_N:-20000}"
CRR_N="${CRR_N:-2000}"
# The plexus rows' agent flags (besides --devices <wire>, added to both).
NATIVE_ARGS="${NATIVE_ARGS:---routing-mode native --auto-direct-node-routes=true}"
TUNNEL_ARGS="${TUNNEL_ARGS:---routing-mode tunnel}"
source ./lib.sh
trap bench_cleanup EXIT
RR="$BUILD/bench/datapath/plexus-bench-rr"
CLI=("$BUILD/cli/plexus" --timeout 60)
WORK="$(mktemp -d /tmp/plexus-bench-mn.XXXXXX)"
BENCH_DIRS+=("$WORK")
SAMPLES="$WORK/samples"   # lines: <setup> <metric> <value>
STATUS="$WORK/status"     # lines: <setup> unavailable <reason>
: >"$SAMPLES"; : >"$STATUS"
WIRE_A=172.29.0.1; WIRE_B=172.29.0.2

declare -A CLIENT SERVER TARGET NODES  # per setup: client netns, server netns, server address; the two node netns
SETUPS=()

# Two node namespaces $1 $2 joined by the wire $3 (the same name on both sides), forwarding on as on any k8s node.
wire_nodes() {
  local a="$1" b="$2" w="$3"
  bench_netns "$a"; bench_netns "$b"
  ip link add "$w" netns "$a" type veth peer name "$w" netns "$b"
  ip -n "$a" addr add "$WIRE_A/24" dev "$w"; ip -n "$b" addr add "$WIRE_B/24" dev "$w"
  ip -n "$a" link set "$w" up; ip -n "$b" link set "$w" up
  ip netns exec "$a" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$b" sysctl -qw net.ipv4.ip_forward=1
}
mac_of() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }

unavailable() {  # setup reason
  echo "$1 unavailable $2" >>"$STATUS"
  echo "bench multinode: $1 unavailable: $2" >&2
}
last_log_line() { grep -v '^\s*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-300; }
# Bounded reachability check from client netns $1 to server netns $2 at $3: one new connection with one exchange, up to
# 4 attempts of 5 s.
reachable() {
  local spid
  for _ in 1 2 3 4; do
    ip netns exec "$2" timeout 7 "$RR" crr-server 7002 1 >/dev/null 2>&1 &
    spid=$!
    sleep 0.2
    if ip netns exec "$1" timeout 5 "$RR" crr-client "$3" 7002 1 >/dev/null 2>&1; then
      kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
      return 0
    fi
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
  done
  return 1
}

# --- 1. host networking
h_a="bmha$BENCH_ID"; h_b="bmhb$BENCH_ID"
wire_nodes "$h_a" "$h_b" "bmw$BENCH_ID"
SETUPS+=(host); CLIENT[host]="$h_a"; SERVER[host]="$h_b"; TARGET[host]="$WIRE_B"; NODES[host]="$h_a $h_b"

# --- 2. kernel routes (Calico BGP-mode shape): pod on a veth, /32 route, static neighbours; other pod CIDR via peer
routed_nodes() {  # tag net-a net-b: nodes bm${tag}a/b with pods bm${tag}pa/pb (10.net.0.2) on host veths bm${tag}va/vb
  local t="$1" na="$2" nb="$3"
  wire_nodes "bm${t}a$BENCH_ID" "bm${t}b$BENCH_ID" "bmw$BENCH_ID"
  bench_routed_pod "bm${t}a$BENCH_ID" "bm${t}pa$BENCH_ID" "10.$na.0.2" "bm${t}va$BENCH_ID"
  bench_routed_pod "bm${t}b$BENCH_ID" "bm${t}pb$BENCH_ID" "10.$nb.0.2" "bm${t}vb$BENCH_ID"
  ip -n "bm${t}a$BENCH_ID" route add "10.$nb.0.0/24" via "$WIRE_B" dev "bmw$BENCH_ID"
  ip -n "bm${t}b$BENCH_ID" route add "10.$na.0.0/24" via "$WIRE_A" dev "bmw$BENCH_ID"
}
routed_nodes r 221 222
SETUPS+=(routes); CLIENT[routes]="bmrpa$BENCH_ID"; SERVER[routes]="bmrpb$BENCH_ID"; TARGET[routes]=10.222.0.2
NODES[routes]="bmra$BENCH_ID bmrb$BENCH_ID"

# --- 2b. the floor of BPF forwarding: the routes shape plus bench/multinode/floor.c's two tc programs per node (the
# FIB lookup and the redirect, nothing else), the least any BPF datapath on veth pods does per packet
routed_nodes l 229 230
l_a="bmla$BENCH_ID"; l_b="bmlb$BENCH_ID"; l_pa="bmlpa$BENCH_ID"; l_pb="bmlpb$BENCH_ID"
floor_attach() {  # node device program
  ip netns exec "$1" tc qdisc add dev "$2" clsact
  ip netns exec "$1" tc filter add dev "$2" ingress bpf direct-action obj "$BUILD/bench/multinode/floor.bpf.o" \
    sec "tc/$3"
}
# The stack's forwarding refuses the pods' packets (netfilter's FORWARD chain, which redirected packets skip), so the
# reachability check shows the programs forward them.
if ! { floor_attach "$l_a" "bmlva$BENCH_ID" from_pod && floor_attach "$l_a" "bmw$BENCH_ID" to_pod &&
  floor_attach "$l_b" "bmlvb$BENCH_ID" from_pod && floor_attach "$l_b" "bmw$BENCH_ID" to_pod; } 2>"$WORK/floor.err"; then
  unavailable floor "tc could not attach floor.bpf.o: $(last_log_line "$WORK/floor.err")"
elif ! ip netns exec "$l_a" iptables -P FORWARD DROP || ! ip netns exec "$l_b" iptables -P FORWARD DROP; then
  unavailable floor "iptables could not set the FORWARD policy"
elif ! reachable "$l_pa" "$l_pb" 10.230.0.2; then
  unavailable floor "the pods do not reach each other through floor.bpf.o within 4 attempts of 5 s"
else
  SETUPS+=(floor); CLIENT[floor]="$l_pa"; SERVER[floor]="$l_pb"; TARGET[floor]=10.230.0.2
  NODES[floor]="bmla$BENCH_ID bmlb$BENCH_ID"
fi

# --- 3. flannel VXLAN shape: bridge cni0 with the pod, flannel.1 VXLAN device, per-peer FDB + neighbour + route
f_a="bmfa$BENCH_ID"; f_b="bmfb$BENCH_ID"; f_pa="bmfpa$BENCH_ID"; f_pb="bmfpb$BENCH_ID"
wire_nodes "$f_a" "$f_b" "bmw$BENCH_ID"
wire_mtu="$(ip netns exec "$f_a" cat "/sys/class/net/bmw$BENCH_ID/mtu")"
vx_mtu=$((wire_mtu - 50))
flannel_node() {  # node pod net(10.N.0.0/24) local-wire-ip host-ifname
  local node="$1" pod="$2" net="$3" local_ip="$4" host="$5"
  ip -n "$node" link add cni0 type bridge
  ip -n "$node" addr add "10.$net.0.1/24" dev cni0
  ip -n "$node" link set cni0 up
  bench_netns "$pod"
  ip link add "$host" netns "$node" mtu "$vx_mtu" type veth peer name eth0 netns "$pod" mtu "$vx_mtu"
  ip -n "$node" link set "$host" master cni0 up
  ip -n "$pod" addr add "10.$net.0.2/24" dev eth0
  ip -n "$pod" link set eth0 up
  ip -n "$pod" route add default via "10.$net.0.1" dev eth0
  ip -n "$node" link add flannel.1 mtu "$vx_mtu" type vxlan id 1 local "$local_ip" dev "bmw$BENCH_ID" dstport 8472 \
    nolearning
  ip -n "$node" addr add "10.$net.0.0/32" dev flannel.1
  ip -n "$node" link set flannel.1 up
}
flannel_peer() {  # node peer-node peer-net peer-wire-ip: what flanneld writes for one remote node's lease
  local node="$1" peer="$2" net="$3" peer_ip="$4" vtep_mac
  vtep_mac="$(mac_of "$peer" flannel.1)"
  ip -n "$node" neigh replace "10.$net.0.0" lladdr "$vtep_mac" dev flannel.1 nud permanent
  ip netns exec "$node" bridge fdb append "$vtep_mac" dev flannel.1 dst "$peer_ip" self permanent
  ip -n "$node" route add "10.$net.0.0/24" via "10.$net.0.0" dev flannel.1 onlink
}
flannel_node "$f_a" "$f_pa" 223 "$WIRE_A" "bmfva$BENCH_ID"
flannel_node "$f_b" "$f_pb" 224 "$WIRE_B" "bmfvb$BENCH_ID"
flannel_peer "$f_a" "$f_b" 224 "$WIRE_B"
flannel_peer "$f_b" "$f_a" 223 "$WIRE_A"
SETUPS+=(flannel); CLIENT[flannel]="$f_pa"; SERVER[flannel]="$f_pb"; TARGET[flannel]=10.224.0.2
NODES[flannel]="$f_a $f_b"

# --- 4/5. plexus: two agents on the wire, Node and Pod objects applied to both, pods wired by plexus-cni
plexus_setup() {  # setup tag cidr-a-net cidr-b-net agent-args...
  local setup="$1" tag="$2" na="$3" nb="$4"
  shift 4
  local a="bm${tag}a$BENCH_ID" b="bm${tag}b$BENCH_ID" pa="bm${tag}pa$BENCH_ID" pb="bm${tag}pb$BENCH_ID"
  local w="bmw$BENCH_ID" sock_a sock_b ip_a ip_b err
  wire_nodes "$a" "$b" "$w"
  if ! bench_start_agent "$a" "10.$na.0.0/24" --devices "$w" "$@" 2>/dev/null; then
    unavailable "$setup" "agent refused to start: $(last_log_line "$PLEXUS_WORK/agent.log")"; return 0
  fi
  sock_a="$PLEXUS_SOCK"
  if ! bench_start_agent "$b" "10.$nb.0.0/24" --devices "$w" "$@" 2>/dev/null; then
    unavailable "$setup" "agent refused to start: $(last_log_line "$PLEXUS_WORK/agent.log")"; return 0
  fi
  sock_b="$PLEXUS_SOCK"
  bench_netns "$pa"; bench_netns "$pb"
  ip_a="$(PLEXUS_SOCK="$sock_a" bench_plexus_add "$a" "$pa" 2>"$WORK/$tag.cni")" || true
  ip_b="$(PLEXUS_SOCK="$sock_b" bench_plexus_add "$b" "$pb" 2>>"$WORK/$tag.cni")" || true
  if [ -z "$ip_a" ] || [ -z "$ip_b" ]; then
    unavailable "$setup" "CNI ADD failed: $(last_log_line "$WORK/$tag.cni")"; return 0
  fi
  cat >"$WORK/$tag.yaml" <<EOF
apiVersion: v1
kind: Node
metadata: {name: $a}
spec: {podCIDR: 10.$na.0.0/24, podCIDRs: [10.$na.0.0/24]}
status: {addresses: [{type: InternalIP, address: $WIRE_A}, {type: Hostname, address: $a}]}
---
apiVersion: v1
kind: Node
metadata: {name: $b}
spec: {podCIDR: 10.$nb.0.0/24, podCIDRs: [10.$nb.0.0/24]}
status: {addresses: [{type: InternalIP, address: $WIRE_B}, {type: Hostname, address: $b}]}
---
apiVersion: v1
kind: Pod
metadata: {name: $pa, namespace: bench, labels: {app: mn-client}}
spec: {nodeName: $a, containers: [{name: c}]}
status: {podIP: $ip_a, podIPs: [{ip: $ip_a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: $pb, namespace: bench, labels: {app: mn-server}}
spec: {nodeName: $b, containers: [{name: c}]}
status: {podIP: $ip_b, podIPs: [{ip: $ip_b}]}
EOF
  for sock in "$sock_a" "$sock_b"; do
    if ! err="$("${CLI[@]}" --socket "$sock" apply -f "$WORK/$tag.yaml" 2>&1 >/dev/null)"; then
      unavailable "$setup" "plexus apply of the Node and Pod objects failed: $(echo "$err" | tail -n 1 | cut -c1-300)"
      return 0
    fi
  done
  if ! reachable "$pa" "$pb" "$ip_b"; then
    unavailable "$setup" "pod $ip_a on node $a cannot reach pod $ip_b on node $b over TCP within 4 attempts of 5 s"
    return 0
  fi
  SETUPS+=("$setup"); CLIENT[$setup]="$pa"; SERVER[$setup]="$pb"; TARGET[$setup]="$ip_b"; NODES[$setup]="$a $b"
}
# shellcheck disable=SC2086  # word splitting of the flag lists is intended
plexus_setup native pn 225 226 $NATIVE_ARGS
# shellcheck disable=SC2086
plexus_setup vxlan pv 227 228 $TUNNEL_ARGS

