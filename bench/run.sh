#!/usr/bin/env bash
# Runs every bench side by side with its baseline and prints the ratios. Each bench is its own script; a failing
# bench is reported and the others still run. Results (JSON lines) go to $BUILD/bench-results.jsonl.
set -uo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")"
out="$BUILD/bench-results.jsonl"
: >"$out"
failed=()
for b in datapath cni_add events maglev services policy; do
  echo "=== bench $b"
  if bash "$b/run.sh" "$BUILD" | tee -a "$out"; then :; else failed+=("$b"); fi
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"\n{'metric':48} {'plexus':>10} {'baseline':>10} {'ratio':>7}")
for r in rows:
    ratio = r['ratio'] if r['ratio'] is not None else '-'
    print(f"{r['metric']:48} {r['plexus']:>10} {r['baseline']:>10} {ratio:>7}  ({r['better']} is better)")
PY
if [ ${#failed[@]} -gt 0 ]; then echo "bench: FAILED: ${failed[*]}"; exit 1; fi
