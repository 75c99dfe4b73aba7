#!/usr/bin/env bash
# Cross-node pod-to-pod traffic on a two-node fabric: each setup is two "node" network namespaces joined by a veth
# "wire" (172.29.0.1/24 and 172.29.0.2/24), with one pod on each node. Side by side in one run:
#   host     host networking: node to node over the wire, no pods (no CNI);
#   routes   plain veth pods, /32 routes and static neighbours, the other node's pod CIDR routed via its wire address
#            (Calico BGP-mode shape);
#   floor    the routes shape plus two tc programs per node (bench/multinode/floor.c): a FIB lookup and a redirect out of
#            the pod's veth, bpf_redirect_peer into the pod from the wire; no lookup of any CNI state. What no BPF
#            datapath on veth pods can beat, so the ceiling of the native row's ratios;
#   flannel  plain veth pods on a bridge (cni0), a kernel VXLAN device (id 1, port 8472, nolearning) with per-peer
#            FDB and neighbour entries and an onlink route, as flannel's vxlan backend writes them; pod MTU = wire - 50;
#   native   plexus agents, --routing-mode native --auto-direct-node-routes --devices <wire>;
#   vxlan    plexus agents, --routing-mode tunnel --devices <wire>.
# Both plexus nodes get the two Node objects and both Pod objects through `plexus apply`. A plexus row that cannot be
# set up (the agent refuses its flags, CNI ADD or apply fails, the pods do not reach each other within a bounded
# check) is reported unavailable with the reason; no figure is made up for it.
# Metrics, per setup: iperf3 throughput with 1 and 4 streams, TCP_RR and TCP_CRR p50/p99 (plexus-bench-rr). Rounds
# alternate between the setups so machine noise hits all alike; medians of the rounds, one JSON line per metric,
# then the ratios with their targets.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
source ./multinode/setup.sh

# --- measurements: every metric in every round for every setup, the setup order rotated each round
declare -A SHIFT
bench_rounds multinode
bench_summary "$STATUS" '{"bench": "multinode", "absolute": true,
  "names": {"host": "host networking", "routes": "kernel routes (Calico BGP shape)",
            "floor": "the floor of BPF forwarding (FIB + redirect only)",
            "flannel": "bridge + kernel VXLAN (flannel shape)", "native": "plexus native", "vxlan": "plexus vxlan"},
  "ratios": [["native", "host", "tp1", ">= 0.98"], ["native", "host", "tp4", ">= 0.98"],
             ["native", "host", "rr50", "<= 1.05"], ["native", "host", "crr50", "<= 1.05"],
             ["native", "host", "rr99", null], ["native", "host", "crr99", null],
             ["native", "routes", "tp1", ">= 1.05"], ["native", "routes", "tp4", ">= 1.05"],
             ["native", "routes", "rr50", null], ["native", "routes", "crr50", null],
             ["floor", "host", "tp1", null], ["floor", "host", "tp4", null], ["floor", "host", "rr50", null],
             ["floor", "routes", "tp1", null], ["floor", "routes", "tp4", null], ["floor", "routes", "rr50", null],
             ["native", "floor", "tp1", null], ["native", "floor", "tp4", null], ["native", "floor", "rr50", null],
             ["native", "floor", "crr50", null],
             ["vxlan", "flannel", "tp1", ">= 1.10"], ["vxlan", "flannel", "tp4", ">= 1.10"],
             ["vxlan", "flannel", "rr50", "<= 0.90"], ["vxlan", "flannel", "crr50", "<= 0.90"],
             ["vxlan", "flannel", "rr99", null], ["vxlan", "flannel", "crr99", null]]}'
