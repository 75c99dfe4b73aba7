#!/usr/bin/env bash
# Maglev table build time, M = 16381, N = 10/100/1000. No baseline exists in one run (Cilium is not installable
# here); the figures are absolute and reported as such.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
"$BUILD/bench/maglev/bench_maglev" --benchmark_format=json --benchmark_min_time=0.2 2>/dev/null |
  python3 -c '
import json, sys
for b in json.load(sys.stdin)["benchmarks"]:
    n = b["name"].split("/")[1]
    print(json.dumps({"bench": "maglev", "metric": f"Maglev build M=16381 N={n} (ms)", "plexus": round(b["real_time"], 3),
                      "baseline": 0, "ratio": None, "better": "lower"}))'
