#!/usr/bin/env bash
# Runs every test tier against an already-built tree (make test builds first).
#   unit   pure logic (Catch2 [unit])
#   bpf    real BPF programs through BPF_PROG_TEST_RUN
#   netns  the real agent, CNI plugin and CLI with namespaces and traffic
#   helm   chart rendering tests (node --test), when node is available
# Each tier reports on its own line; the script exits non-zero if any tier failed.
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
failed=()

run_tier() {
  local name="$1"; shift
  echo "=== tier ${name}"
  if "$@"; then
    echo "=== tier ${name}: passed"
  else
    echo "=== tier ${name}: FAILED"
    failed+=("${name}")
  fi
}

# ctest runs each binary; Catch2 prints the failing assertions. A per-test timeout keeps CI bounded.
run_tier ctest ctest --test-dir "${build}" --output-on-failure --timeout 900

if [ -x helm/tests/run.sh ] || [ -f helm/tests/run.sh ]; then
  run_tier helm bash helm/tests/run.sh
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "run-tests: FAILED tiers: ${failed[*]}"
  exit 1
fi
echo "run-tests: all tiers passed"
