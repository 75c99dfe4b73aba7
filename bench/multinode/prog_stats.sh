#!/usr/bin/env bash
# Where the datapath's time goes under load: the rows of bench/multinode (setup.sh) with the kernel's BPF statistics
# on (kernel.bpf_stats_enabled, restored at exit), and for each row in PROG_SETUPS, ROUNDS rounds of iperf3 (STREAMS
# streams, SECONDS_PER_RUN seconds) alternating between the rows. Per run: the throughput, and for every BPF program
# attached in the row's two node namespaces (tc, on any device) how often it ran and its mean ns per run. With
# OLD_BUILD=<another build directory>, a row `native_old` runs that build's agent next to `native`: an A/B of two
# datapaths in one run. The statistics add two clock reads per program run; compare rows of one run only.
# Prints one JSON line per run.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
cd "$(dirname "$0")/.."
STREAMS="${STREAMS:-4}"
source ./multinode/setup.sh
if [ -n "${OLD_BUILD:-}" ]; then
  NEW_BUILD="$BUILD"
  BUILD="$(realpath "$OLD_BUILD")"
  # shellcheck disable=SC2086  # word splitting of the flag list is intended
  plexus_setup native_old po 231 232 $NATIVE_ARGS
  BUILD="$NEW_BUILD"
fi
PROG_SETUPS="${PROG_SETUPS:-floor native${OLD_BUILD:+ native_old}}"

stats_before="$(sysctl -n kernel.bpf_stats_enabled)"
trap 'sysctl -qw kernel.bpf_stats_enabled="$stats_before"; bench_cleanup' EXIT
sysctl -qw kernel.bpf_stats_enabled=1

# "id name run_cnt run_time_ns" of every program attached in the node namespaces $@.
programs() {
  local n
  for n in "$@"; do
    ip netns exec "$n" bpftool -j net show 2>/dev/null | python3 -c '
import json, sys
for dev in json.load(sys.stdin):
    for hook in dev.get("tc", []):
        print(hook["id"])' || true
  done | sort -u | while read -r id; do
    bpftool -j prog show id "$id" 2>/dev/null |
      python3 -c 'import json,sys; p=json.load(sys.stdin); print(p["id"], p.get("name","?"), p.get("run_cnt",0), p.get("run_time_ns",0))'
  done
}

for round in $(seq 1 "$ROUNDS"); do
  for s in $PROG_SETUPS; do
    if [ -z "${CLIENT[$s]:-}" ]; then
      echo "bench multinode prog_stats: $s unavailable" >&2
      continue
    fi
    # shellcheck disable=SC2086  # the two node names
    before="$(programs ${NODES[$s]})"
    gbps="$(bench_throughput "${CLIENT[$s]}" "${SERVER[$s]}" "${TARGET[$s]}" "$STREAMS")"
    # shellcheck disable=SC2086
    after="$(programs ${NODES[$s]})"
    python3 - "$s" "$round" "$gbps" "$before" "$after" <<'PY'
import json, sys
setup, rnd, gbps, before, after = sys.argv[1:6]
def load(text):
    out = {}
    for line in text.splitlines():
        i, name, cnt, ns = line.split()
        out[i] = (name, int(cnt), int(ns))
    return out
b, a = load(before), load(after)
progs = []
for i, (name, cnt, ns) in sorted(a.items()):
    runs = cnt - b.get(i, (name, 0, 0))[1]
    if runs > 0:
        spent = ns - b.get(i, (name, 0, 0))[2]
        progs.append({"id": int(i), "name": name, "runs": runs, "avg_ns": round(spent / runs, 1)})
print(json.dumps({"bench": "multinode-prog-stats", "setup": setup, "round": int(rnd),
                  "throughput_gbps": float(gbps) if gbps else None, "programs": progs}))
PY
  done
done
