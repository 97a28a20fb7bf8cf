#!/usr/bin/env bash
# Builds and runs the matmul micro-benchmark against native/cpu (no CMake needed): bash test/bench/run_bench_matmul.sh [min_seconds]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${TMPDIR:-/tmp}/moe_bench_matmul"
g++ -std=c++20 -O3 -fno-math-errno -pthread -I"$root/native" -I"$root" \
  "$root/test/bench/bench_matmul.cpp" "$root"/native/cpu/*.cpp "$root"/native/backend/*.cpp "$root/native/quant/quant.cpp" "$root/native/quant/nf4.cpp" \
  "$root/native/cuda/backend_emu.cpp" -o "$out"  # the emulator stub (no MOE_HAVE_SIMT_EMU): make_backend links
nice "$out" "$@"
