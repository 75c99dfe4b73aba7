#!/usr/bin/env bash
# Runs every bench side by side with its baseline and prints the ratios. Each bench is its own script; a failing
# bench is reported and the others still run. Results (JSON lines) go to $BUILD/bench-results.jsonl.
set -uo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")"
out="$BUILD/bench-results.jsonl"
: >"$out"
failed=()
for b in datapath multinode masquerade nodeport apply cni_add events maglev services policy restart; do
  echo "=== bench $b"
  if bash "$b/run.sh" "$BUILD" | tee -a "$out"; then :; else failed+=("$b"); fi
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"\n{'metric':48} {'plexus':>10} {'baseline':>10} {'ratio':>7}")
cell = lambda v: '-' if v is None else v
for r in rows:
    note = f"  unavailable: {r['unavailable']}" if isinstance(r.get('unavailable'), str) else ''
    if r.get('reason'):
        note = f"  unavailable: {r['reason']}"
    if r.get('target'):
        note = f"  target {r['target']}" + note
    print(f"{r['metric']:48} {cell(r['plexus']):>10} {cell(r['baseline']):>10} {cell(r['ratio']):>7}  ({r['better']} is better){note}")
PY
if [ ${#failed[@]} -gt 0 ]; then echo "bench: FAILED: ${failed[*]}"; exit 1; fi
