#!/usr/bin/env bash
# Regenerates fuzz/corpus/grpc_requests/: each seed is one method byte (see fuzz_grpc_requests.cc) followed by
# the request encoded by protoc from the text below. Run from anywhere; needs protoc (protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus/grpc_requests
mkdir -p "${out}"

seed() {  # seed <file> <method byte> <message type> <text format>
  local file="$1" method="$2" type="$3" text="$4"
  { printf "\\x$(printf '%02x' "${method}")"
    printf '%s\n' "${text}" | protoc --proto_path=api --encode="plexus.v1.${type}" api/plexus/v1/*.proto
  } >"${out}/${file}"
}

seed cni-add 0 CniAddRequest 'container_id: "0123456789abcdef" netns: "/var/run/netns/pod1" ifname: "eth0"
  pod_namespace: "default" pod_name: "web" pod_uid: "5e1b" requested_ips: "10.0.0.7" requested_mac: "02:00:00:00:00:07" mtu: 1400'
seed cni-add-chained 0 CniAddRequest 'container_id: "c1" netns: "/run/netns/p" ifname: "eth0"
  chained { host_ifname: "veth1234" container_ifname: "eth0" container_mac: "bb:bb:bb:bb:bb:bb"
            ips: "10.99.0.5/24" ips: "fd00::5/64" }'
seed cni-add-invalid 0 CniAddRequest 'container_id: "c2" ifname: "eth0" requested_ips: "10.0.0.256" requested_mac: "zz"'
seed cni-del 1 CniDelRequest 'container_id: "0123456789abcdef" netns: "" ifname: ""'
seed cni-gc 2 CniGcRequest 'valid_attachments { container_id: "c1" ifname: "eth0" } valid_attachments { container_id: "c2" }'
seed get-endpoint 3 GetEndpointRequest 'selector: "default/web"'
seed get-flows 4 GetFlowsRequest 'last: 20 follow: false filter { namespace: "default" pod: "default/web" from_pod: "client"
  to_pod: "web" label: "app=web" ip: "10.0.0.5" verdict: "DROPPED" protocol: "TCP" identity: 300 port: 80
  since_unix_nano: 1700000000000000000 }'
seed get-flows-invalid 4 GetFlowsRequest 'filter { verdict: "MAYBE" protocol: "GRE" ip: "::1" port: 70000 label: "=x" }'
seed explain 5 ExplainRequest 'from: "default/client" to: "default/web" protocol: "TCP" port: 8080'
seed explain-invalid 5 ExplainRequest 'from: "world" to: "host" protocol: "ICMP" port: 0'
seed apply 6 ApplyRequest 'source: "web.yaml" manifest: "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  clusterIP: 10.96.0.10\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n"'
echo "make_grpc_seeds: $(ls "${out}" | wc -l) seeds in ${out}"
