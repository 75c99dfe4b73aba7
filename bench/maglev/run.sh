#!/usr/bin/env bash
# Maglev table build time, M = 16381, N = 10/100/1000. No baseline exists in one run (Cilium is not installable
# here); the figures are absolute and reported as such.
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
source "$(dirname "$0")/../lib.sh"
bench_gbench maglev "Maglev build M=16381 N={n} (ms)" "$BUILD/bench/maglev/bench_maglev"
