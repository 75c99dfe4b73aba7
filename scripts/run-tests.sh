#!/usr/bin/env bash
# Runs every test tier against an already-built tree (make test builds first). Two tiers here:
#   ctest  every test binary built from tests/CMakeLists.txt:
#            unit_*        [unit] pure logic: unit_common, unit_identity, unit_policy, unit_loadbalancer,
#                          unit_node, unit_agent (agent/core), unit_control (the control layer against fakes),
#                          unit_cni, unit_cli
#            bpf_datapath  [bpf] the real BPF programs through BPF_PROG_TEST_RUN
#            netns_e2e     [netns] the real agent, CNI plugin and CLI with namespaces and traffic
#            k8s_client    [k8s] the Kubernetes client against the wire-protocol test API server
#   helm   chart tests (helm/tests/run.sh: lint, template, node --test), when the script exists
#   fuzz   every libFuzzer target briefly (FUZZ_TEST_SECONDS, default 5 s each) from its committed corpus, so a
#          crash found once stays found (scripts/fuzz.sh, its own build-fuzz tree; docs/fuzzing.md). Its clang
#          build starts in the background at the lowest CPU priority while ctest runs (netns_e2e keeps about 60%
#          of one CPU busy and waits the rest), so the tests come first and CI does not wait for the two in a row.
# Each tier reports on its own line; the script exits non-zero if any tier failed. One ctest tier alone:
# make unit, make bpf-test, make netns-test, make k8s-test.
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

fuzz_build_log="$(mktemp)"
# A process group of its own (setsid), so that an interrupted run stops the compilers too.
setsid nice -n 19 bash scripts/fuzz.sh --build-only >"${fuzz_build_log}" 2>&1 &
fuzz_build=$!
trap 'kill -- -"${fuzz_build}" 2>/dev/null; rm -f "${fuzz_build_log}"' EXIT

# ctest runs each binary; Catch2 prints the failing assertions. A per-test timeout keeps CI bounded.
run_tier ctest ctest --test-dir "${build}" --output-on-failure --timeout 900

if [ -x helm/tests/run.sh ] || [ -f helm/tests/run.sh ]; then
  run_tier helm bash helm/tests/run.sh
fi

# The fuzz tier's own build step then finds the tree built (or builds what is left, and reports a failure).
wait "${fuzz_build}"
cat "${fuzz_build_log}"
run_tier fuzz bash scripts/fuzz.sh --seconds "${FUZZ_TEST_SECONDS:-5}" --seed 1

if [ ${#failed[@]} -gt 0 ]; then
  echo "run-tests: FAILED tiers: ${failed[*]}"
  exit 1
fi
echo "run-tests: all tiers passed"
