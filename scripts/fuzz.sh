#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, docs/fuzzing.md) in their own build directory with clang and runs each
# for a while, starting from its committed seed corpus (fuzz/corpus/<target>/). New inputs go to a temporary
# directory, never into the repository. Prints executions and crashes per target; exits non-zero on a crash.
#   scripts/fuzz.sh [--seconds N] [--build DIR] [target...]
#     --seconds N   how long each target runs (default: $FUZZ_SECONDS, else 60); make test runs 5
#     --build DIR   the fuzz build directory (default: build-fuzz)
#     --seed N      libFuzzer's random seed (default 0: a new one each run); make test uses 1, so a run repeats
#     --build-only  builds the targets and stops (run-tests.sh builds them in the background during ctest)
#     target        cni cni_grpc manifest flow_filter k8s_watch grpc_requests hubble_request journal (default: all)
# JOBS (default: nproc) sets the build's parallelism; FUZZ_OPT (-O0, or -O1) the optimisation of a new build.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
build=build-fuzz
seed=0
build_only=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(cni cni_grpc manifest flow_filter k8s_watch grpc_requests hubble_request journal)
fi
jobs="${JOBS:-$(nproc)}"

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not found (scripts/install-deps.sh installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi

start=$(date +%s)
if [ ! -f "${build}/CMakeCache.txt" ]; then
  mkdir -p "${build}"
  CC=clang CXX=clang++ cmake -S . -B "${build}" -G "Unix Makefiles" -DPLEXUS_FUZZ=ON -DCMAKE_BUILD_TYPE=Fuzz \
    -DPLEXUS_FUZZ_OPT="${FUZZ_OPT:--O0}" \
    >"${build}/configure.log" 2>&1 || { cat "${build}/configure.log"; exit 1; }
fi
bins=()
for t in "${targets[@]}"; do bins+=(--target "fuzz_${t}"); done
if ! cmake --build "${build}" "${bins[@]}" -j "${jobs}" >"${build}/fuzz-build.log" 2>&1; then
  tail -50 "${build}/fuzz-build.log"
  echo "fuzz: build failed (${build}/fuzz-build.log)"
  exit 1
fi
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start )) s (${build})"
if [ ${build_only} -eq 1 ]; then
  exit 0
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT
failed=0
summary=()
for t in "${targets[@]}"; do
  bin="${build}/fuzz/fuzz_${t}"
  corpus="fuzz/corpus/${t}"
  artifacts="${build}/fuzz-artifacts/${t}"
  mkdir -p "${work}/${t}" "${artifacts}"
  log="${build}/fuzz-${t}.log"
  # The first corpus directory receives new inputs (a scratch copy); the committed seeds are only read.
  timeout $((seconds + 120)) "${bin}" -max_total_time="${seconds}" -seed="${seed}" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="${artifacts}/" "${work}/${t}" "${corpus}" >"${log}" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}" | tail -1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "${log}" | tail -1)
  crashes=0
  if [ ${rc} -ne 0 ]; then
    crashes=1
    failed=1
  fi
  line=$(printf '%-14s %10s executions %6s new inputs %3s crashes  (%s s)' "${t}" "${execs:-?}" "${added:-?}" "${crashes}" "${seconds}")
  summary+=("${line}")
  echo "fuzz: ${line}"
  if [ ${crashes} -ne 0 ]; then
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "${log}" | head -5
    grep -E '^ +#[0-9]+ ' "${log}" | grep -v -E 'libFuzzer|fuzzer::|libc\.so|__sanitizer|libstdc\+\+' | head -8
    unit=$(sed -n "s/.*Test unit written to //p" "${log}" | tail -1)
    echo "fuzz: ${t} failed (exit ${rc}); log ${log}"
    if [ -n "${unit}" ]; then
      echo "fuzz: reproduce with ${bin} ${unit}"
    fi
  fi
done
echo "fuzz: summary (${seconds} s per target, total $(( $(date +%s) - start )) s)"
printf '  %s\n' "${summary[@]}"
exit ${failed}
