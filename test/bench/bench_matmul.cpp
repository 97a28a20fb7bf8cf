// Micro-benchmark of native/cpu/matmul: GB/s (weight bytes streamed) and GFLOP/s (2*M*N*K) for the decode
// matrix-vector case (M = 1) and the prefill case (M = 128), per weight dtype, at 1 and 2 threads, for the
// selected SIMD path and the portable one.  Build and run: bash test/bench/run_bench_matmul.sh
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/matmul.h"

using namespace moe;
using Clock = std::chrono::steady_clock;

static double bench(ThreadPool& pool, const void* W, DType dt, int64_t M, int64_t N, int64_t K, float* y,
                    const float* x, double min_seconds) {
  matmul(pool, y, N, x, K, W, dt, M, N, K);  // warm-up
  int iters = 0;
  auto t0 = Clock::now();
  double el = 0;
  do {
    matmul(pool, y, N, x, K, W, dt, M, N, K);
    ++iters;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < min_seconds);
  return el / iters;
}

int main(int argc, char** argv) {
  double min_s = argc > 1 ? std::atof(argv[1]) : 0.5;
  struct Shape { const char* what; int64_t M, N, K; };
  const Shape shapes[] = {
      {"decode  big   ", 1, 8192, 4096},   // 32-128 MiB of weights: DRAM bound
      {"decode  expert", 1, 768, 2048},    // one MoE expert projection (cache-resident when hot)
      {"prefill       ", 128, 2048, 2048}, // compute bound
      {"prefill expert", 16, 768, 2048},   // tokens routed to one expert during prefill
  };
  const DType dts[] = {DType::F32, DType::BF16, DType::F16};
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (bool portable : {false, true}) {
    simd_force_portable(portable);
    std::printf("== path: %s\n", simd_name());
    std::printf("%-15s %-5s %3s %10s %9s %9s\n", "shape", "dtype", "thr", "ms", "GB/s", "GFLOP/s");
    for (const Shape& s : shapes) {
      if (portable && s.M == 1 && s.N == 8192) continue;
      std::vector<float> x(size_t(s.M * s.K)), y(size_t(s.M * s.N));
      for (auto& v : x) v = u(rng);
      for (DType dt : dts) {
        std::vector<uint8_t> W(size_t(s.N * s.K) * dtype_size(dt));
        for (int64_t i = 0; i < s.N * s.K; ++i) {
          float v = u(rng) * 0.05f;
          if (dt == DType::F32) std::memcpy(&W[size_t(i) * 4], &v, 4);
          else { uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v); std::memcpy(&W[size_t(i) * 2], &h, 2); }
        }
        for (int thr : {1, 2}) {
          ThreadPool pool(thr);
          double sec = bench(pool, W.data(), dt, s.M, s.N, s.K, y.data(), x.data(), min_s);
          std::printf("%-15s %-5s %3d %10.3f %9.2f %9.2f\n", s.what, dtype_name(dt), thr, sec * 1e3,
                      double(W.size()) / sec / 1e9, 2.0 * s.M * s.N * s.K / sec / 1e9);
        }
      }
    }
  }
  return 0;
}
