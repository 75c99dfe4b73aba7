#!/usr/bin/env bash
# Regenerates fuzz/corpus/hubble_request/: each seed is an observer.GetFlowsRequest encoded by protoc from the text
# below, the shapes `hubble observe` sends. Run from anywhere; needs protoc (protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus/hubble_request
mkdir -p "${out}"

seed() {  # seed <file> <text format>
  printf '%s\n' "$2" | protoc --proto_path=api --encode=observer.GetFlowsRequest api/observer/observer.proto >"${out}/$1"
}

seed last-20 'number: 20'
seed first-follow 'number: 5 first: true follow: true'
seed pods-verdict 'number: 100 whitelist { source_pod: "default/client" destination_pod: "prod/" verdict: FORWARDED
  destination_port: "80" protocol: "tcp" }'
seed labels-not 'whitelist { source_label: "app=client" destination_label: "tier in (a,b)" }
  blacklist { destination_ip: "10.0.0.0/24" reply: true }'
seed since-until 'since { seconds: 1700000000 } until { seconds: 1700000002 nanos: 5 } whitelist { event_type { type: 1 } }'
seed types-flags 'follow: true whitelist { event_type { type: 4 sub_type: 0 match_sub_type: true }
  tcp_flags { SYN: true ACK: true } node_name: "cluster/kind-*" traffic_direction: EGRESS ip_version: IPv4 }'
seed identities 'whitelist { source_identity: 300 destination_identity: 2 uuid: "00000000-0000-4000-8000-000000000001" }'
seed invalid 'whitelist { source_ip: "10.0.0.999" source_pod: "/" destination_label: "=x" destination_port: "70000" }'
seed unsupported 'whitelist { source_fqdn: "*.example.com" http_status_code: "200" dns_query: "a" trace_id: "t" }'
