#!/usr/bin/env bash
# The standalone demo: a real plexus-agent in its own "node" network namespace, three pods wired by executing
# plexus-cni exactly as kubelet does, traffic between them through the BPF datapath, and what the CLI shows.
# Everything lives in namespaces and a temp dir created here, and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
build="$(realpath "${1:-build}")"
agent="${build}/agent/plexus-agent"
cni="${build}/cni/plexus-cni"
cli="${build}/cli/plexus"

work="$(mktemp -d /tmp/plexus-demo.XXXXXX)"
node="plexus-demo-node-$$"
pods=(frontend backend db)
sock="${work}/plexus.sock"
cgroup="${work}/cgroup/plexus-demo"  # socket LB applies to this cgroup only, not to the whole machine
agent_pid=""

cleanup() {
  set +e
  for p in "${pods[@]}"; do ip netns del "plexus-demo-${p}-$$" 2>/dev/null; done
  if [ -n "${agent_pid}" ]; then kill "${agent_pid}" 2>/dev/null; wait "${agent_pid}" 2>/dev/null; fi
  ip netns del "${node}" 2>/dev/null
  rmdir "${cgroup}" 2>/dev/null
  umount "${work}/cgroup" 2>/dev/null
  umount "${work}/bpffs" 2>/dev/null
  rm -rf "${work}"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
plexus() { echo "\$ plexus $*"; "${cli}" --socket "${sock}" "$@"; }

step "Start plexus-agent (standalone) in node namespace ${node}"
mkdir -p "${work}/bpffs" "${work}/cgroup"
mount -t bpf bpf "${work}/bpffs"
mount -t cgroup2 none "${work}/cgroup"   # `ip netns exec` hides /sys/fs/cgroup from the agent
mkdir -p "${cgroup}"
ip netns add "${node}"
ip -n "${node}" link set lo up
ip netns exec "${node}" "${agent}" --state-dir "${work}/state" --bpf-root "${work}/bpffs/plexus" \
  --socket "${sock}" --pod-cidr 10.244.0.0/24 --node-name demo-node --cgroup-root "${cgroup}" >"${work}/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 100); do
  if [ -S "${sock}" ] && "${cli}" --socket "${sock}" status >/dev/null 2>&1; then break; fi
  sleep 0.1
done
plexus status

step "Create pods: kubelet-style CNI ADD for ${pods[*]}"
declare -A ip
for p in "${pods[@]}"; do
  ns="plexus-demo-${p}-$$"
  ip netns add "${ns}"
  ip -n "${ns}" link set lo up
  conf='{"cniVersion":"1.0.0","name":"plexus","type":"plexus-cni","socket":"'"${sock}"'"}'
  result="$(echo "${conf}" | ip netns exec "${node}" env CNI_COMMAND=ADD CNI_CONTAINERID="demo-${p}" \
    CNI_NETNS="/run/netns/${ns}" CNI_IFNAME=eth0 CNI_PATH="${build}/cni" \
    CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=${p}" "${cni}")"
  ip[$p]="$(echo "${result}" | sed -n 's/.*"address":"\([0-9.]*\)\/32".*/\1/p')"
  echo "pod ${p}: ${ip[$p]}"
done
plexus endpoint list

step "Traffic: ping and TCP between pods (same-node, bpf_redirect_peer)"
ip netns exec "plexus-demo-backend-$$" sh -c 'echo "hello from backend" | timeout 5 nc -l -p 8080 -q 1' >/dev/null &
server_pid=$!
sleep 0.3
ip netns exec "plexus-demo-frontend-$$" ping -c 2 -W 2 "${ip[backend]}"
echo "frontend -> backend:8080 says: $(ip netns exec "plexus-demo-frontend-$$" timeout 5 nc -w 2 "${ip[backend]}" 8080 </dev/null)"
ip netns exec "plexus-demo-db-$$" ping -c 1 -W 2 "${ip[frontend]}"
wait "${server_pid}" || true

step "A Service: ClusterIP 10.96.0.10:80 -> pods labelled app=backend, port named http (8080)"
cat >"${work}/manifests.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: default, labels: {app: backend}}
spec: {containers: [{name: server, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
plexus apply -f "${work}/manifests.yaml"
plexus service list
ip netns exec "plexus-demo-backend-$$" sh -c 'echo "hello through the service" | timeout 5 nc -l -p 8080 -q 1' >/dev/null &
server_pid=$!
sleep 0.3
echo "frontend -> 10.96.0.10:80 says: $(ip netns exec "plexus-demo-frontend-$$" timeout 5 nc -w 2 10.96.0.10 80 </dev/null)"
wait "${server_pid}" || true
plexus bpf lb list

step "A policy: backend accepts TCP 8080 only from app=frontend (CiliumNetworkPolicy)"
cat >"${work}/policy.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: default, labels: {app: frontend}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: backend-from-frontend, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: backend}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
YAML
plexus apply -f "${work}/policy.yaml"
plexus policy get
ip netns exec "plexus-demo-backend-$$" sh -c 'echo "hello, frontend" | timeout 5 nc -l -p 8080 -q 1' >/dev/null &
server_pid=$!
sleep 0.3
echo "frontend -> backend:8080 says: $(ip netns exec "plexus-demo-frontend-$$" timeout 5 nc -w 2 "${ip[backend]}" 8080 </dev/null)"
if ip netns exec "plexus-demo-db-$$" timeout 3 nc -z -w 2 "${ip[backend]}" 8080; then
  echo "db -> backend:8080: connected (unexpected)"
else
  echo "db -> backend:8080: dropped by policy"
fi
wait "${server_pid}" || true
plexus policy explain --from default/db --to default/backend --port 8080/tcp
plexus endpoint get default/backend
plexus observe --verdict DROPPED --last 3

step "What the datapath counted"
plexus bpf metrics list
plexus bpf endpoint list

step "Flows the datapath reported (new connections, TCP flag changes, drops)"
plexus observe --last 12

step "Delete pod db (CNI DEL)"
echo '{"cniVersion":"1.0.0","name":"plexus","type":"plexus-cni","socket":"'"${sock}"'"}' |
  ip netns exec "${node}" env CNI_COMMAND=DEL CNI_CONTAINERID=demo-db CNI_NETNS="/run/netns/plexus-demo-db-$$" \
    CNI_IFNAME=eth0 CNI_PATH="${build}/cni" "${cni}"
plexus status

step "Demo finished; cleaning up"
