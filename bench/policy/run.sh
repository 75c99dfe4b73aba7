#!/usr/bin/env bash
# Policy: compile time for 1,000 and 10,000 rules x 1,000 identities (absolute; no peer compiler runs here), and
# the per-packet verdict cost with 10 versus 10,000 map entries (ratio: the goal is a flat cost, 1.0).
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
source "$(dirname "$0")/../lib.sh"
bench_gbench policy "policy compile {n} rules x 1000 ids (ms)" "$BUILD/bench/policy/bench_policy_compile"
"$BUILD/bench/policy/bench_policy_lookup" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(json.dumps({"bench": "policy", "metric": "policy verdict ns/pkt, 10k vs 10 entries",
                  "plexus": r["large_ns"], "baseline": r["small_ns"],
                  "ratio": round(r["large_ns"] / r["small_ns"], 3), "better": "lower"}))'
