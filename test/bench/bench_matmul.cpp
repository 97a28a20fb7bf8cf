// Micro-benchmark of native/cpu/matmul: GB/s (weight bytes streamed) and GFLOP/s (2*M*N*K) for the decode
// matrix-vector case (M = 1) and the prefill case (M = 128), per weight dtype, at 1 and 2 threads, for the
// selected SIMD path and the portable one.  Build and run: bash test/bench/run_bench_matmul.sh
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cstring>
#include <random>
#include <vector>

#include <thread>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backend/backend.h"
#include "cpu/attention.h"
#include "cpu/matmul.h"
#include "cpu/nf4_matmul.h"
#include "quant/nf4.h"
#include "cpu/qmatmul.h"
#include "quant/quant.h"

using namespace moe;
using Clock = std::chrono::steady_clock;

// Fastest single call over min_seconds of repeats: the machine is shared, and the minimum is the number least
// disturbed by other processes.
static double bench(ThreadPool& pool, const void* W, DType dt, int64_t M, int64_t N, int64_t K, float* y,
                    const float* x, double min_seconds) {
  matmul(pool, y, N, x, K, W, dt, M, N, K);  // warm-up
  auto t0 = Clock::now();
  double best = 1e30, el = 0;
  do {
    auto t1 = Clock::now();
    matmul(pool, y, N, x, K, W, dt, M, N, K);
    auto t2 = Clock::now();
    double d = std::chrono::duration<double>(t2 - t1).count();
    if (d < best) best = d;
    el = std::chrono::duration<double>(t2 - t0).count();
  } while (el < min_seconds);
  return best;
}

// ---- the machine's arithmetic peak, the figure kernel efficiencies are stated against ----
// 12 independent accumulator chains (more than FMA latency × FMA ports: 4 × 2 on current x86), no memory operands,
// `iters` steps; returns GFLOP/s (an FMA or a multiply-add of a dot instruction counts 2 flops per product).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
template <class Body>
static double peak_run(int threads, double ops_per_iter, Body body) {
  const long iters = 20000000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back([&] { body(iters); });
    for (auto& t : ts) t.join();
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, threads * ops_per_iter * double(iters) / sec / 1e9);
  }
  return best;
}
volatile float g_sink;
__attribute__((target("avx512f"))) static void fma512(long iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i));
  const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], b, c);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  g_sink = _mm512_reduce_add_ps(s);
}
__attribute__((target("avx2,fma"))) static void fma256(long iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(float(i));
  const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float o[8]; _mm256_storeu_ps(o, s); g_sink = o[0];
}
__attribute__((target("avx512f,avx512vnni"))) static void vnni512(long iters) {
  __m512i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_epi32(i);
  const __m512i b = _mm512_set1_epi8(3), c = _mm512_set1_epi8(-2);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbusd_epi32(a[i], b, c);
  __m512i s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_epi32(s, a[i]);
  g_sink = float(_mm512_reduce_add_epi32(s));
}
__attribute__((target("avx512f,avx512bf16"))) static void bf16dp512(long iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i));
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbf16_ps(a[i], b, c);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  g_sink = _mm512_reduce_add_ps(s);
}
static void print_peaks() {
  __builtin_cpu_init();
  struct P { const char* what; bool ok; double ops; void (*fn)(long); };
  const P ps[] = {
      {"f32 FMA, AVX-512 (16 lanes x 2 flops)", __builtin_cpu_supports("avx512f") != 0, 12 * 32.0, fma512},
      {"f32 FMA, AVX2 (8 lanes x 2 flops)", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), 12 * 16.0, fma256},
      {"int8 vpdpbusd, AVX-512 VNNI (64 products x 2 ops)", __builtin_cpu_supports("avx512vnni") != 0, 12 * 128.0, vnni512},
      {"bf16 vdpbf16ps, AVX-512 BF16 (32 products x 2 flops)", __builtin_cpu_supports("avx512bf16") != 0, 12 * 64.0, bf16dp512},
  };
  for (const P& p : ps) {
    if (!p.ok) { std::printf("peak %-55s not on this CPU\n", p.what); continue; }
    std::printf("peak %-55s 1 thread %8.1f G/s   2 threads %8.1f G/s\n", p.what, peak_run(1, p.ops, p.fn), peak_run(2, p.ops, p.fn));
  }
}
#else
static void print_peaks() { std::printf("peak: x86-64 only\n"); }
#endif

// ---- the training step's kernels (issue 14): GFLOP/s and the share of the FMA peak measured in the same run ----
// Shapes of the bench model (hidden 1024, experts of 512, LoRA rank 16) in a 512-token step: a dense projection's
// dX through its frozen weight (M = 512), an expert's (M = 64 routed tokens), in bf16, NF4 (Q-LoRA) and Q4_0; the
// LoRA pieces on the same tokens: u = x·Aᵀ, dB = dYᵀ·u, dA = (dY·B)ᵀ·x (the cpu backend's matmul_dw).
template <class F>
static double best_of(double min_s, F&& f) {
  f();
  double best = 1e30, el = 0;
  auto t0 = Clock::now();
  do {
    auto t1 = Clock::now();
    f();
    auto t2 = Clock::now();
    best = std::min(best, std::chrono::duration<double>(t2 - t1).count());
    el = std::chrono::duration<double>(t2 - t0).count();
  } while (el < min_s);
  return best;
}
static void print_train(double min_s) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  auto rnd = [&](int64_t n, float s) { std::vector<float> v(static_cast<size_t>(n)); for (auto& e : v) e = u(rng) * s; return v; };
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool z = __builtin_cpu_supports("avx512f");
  const double peak1 = z ? peak_run(1, 12 * 32.0, fma512) : peak_run(1, 12 * 16.0, fma256);
  const double peak2 = z ? peak_run(2, 12 * 32.0, fma512) : peak_run(2, 12 * 16.0, fma256);
#else
  const double peak1 = 0, peak2 = 0;
#endif
  std::printf("f32 FMA peak (%s): 1 thread %.1f, 2 threads %.1f GFLOP/s; simd path %s, nf4 path %s\n",
              simd_name(), peak1, peak2, simd_name(), nf4_simd_name());
  std::printf("%-44s %3s %9s %9s %7s\n", "kernel", "thr", "ms(min)", "GFLOP/s", "% peak");
  struct Dx { const char* what; int64_t M, N, K; };
  for (Dx s : {Dx{"dX = dY·W, dense proj", 512, 1024, 1024}, Dx{"dX = dY·W, expert (64 routed tokens)", 64, 512, 1024},
               Dx{"dX = dY·W, expert down (64 routed tokens)", 64, 1024, 512}}) {
    const auto wf = rnd(s.N * s.K, 0.05f), dy = rnd(s.M * s.N, 1.0f);
    std::vector<float> dx(size_t(s.M * s.K));
    std::vector<uint16_t> wb(size_t(s.N * s.K));
    for (size_t i = 0; i < wb.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
    std::vector<uint8_t> wq(qbytes(DType::Q4_0, s.N * s.K));
    quantize_tensor(DType::Q4_0, wf.data(), wq.data(), s.N * s.K);
    const NF4Tensor w4 = nf4_quantize(wf.data(), s.N, s.K);
    for (int thr : {1, 2}) {
      ThreadPool pool(thr);
      const double flop = 2.0 * s.M * s.N * s.K, peak = thr == 1 ? peak1 : peak2;
      auto row = [&](const char* dt, double sec) {
        std::printf("%-38s %-5s %3d %9.3f %9.1f %6.0f%%\n", s.what, dt, thr, sec * 1e3, flop / sec / 1e9, 100 * flop / sec / 1e9 / peak);
      };
      row("bf16", best_of(min_s, [&] { matmul_dx(&pool, dx.data(), s.K, dy.data(), s.N, wb.data(), DType::BF16, s.M, s.N, s.K, false); }));
      row("nf4", best_of(min_s, [&] { nf4_matmul_dx(&pool, dx.data(), s.K, dy.data(), s.N, w4, s.M, false); }));
      row("q4_0", best_of(min_s, [&] { matmul_dx(&pool, dx.data(), s.K, dy.data(), s.N, wq.data(), DType::Q4_0, s.M, s.N, s.K, false); }));
      if (s.M == 64 && s.N == 512) {
        std::vector<float> y(size_t(s.M * s.N));
        const auto x = rnd(s.M * s.K, 1.0f);
        row("nf4 fwd", best_of(min_s, [&] { nf4_matmul(&pool, y.data(), s.N, x.data(), s.K, w4, s.M, false); }));
      }
    }
  }
  {  // LoRA, rank 16, on an expert's 64 routed tokens (gate: K = 1024 in, N = 512 out) and on 512 tokens of a dense proj
    for (int64_t M : {64, 512}) {
      const int64_t K = 1024, N = M == 64 ? 512 : 1024, r = 16;
      const auto x = rnd(M * K, 1.0f), A = rnd(r * K, 0.05f), dy = rnd(M * N, 1.0f), uu = rnd(M * r, 1.0f);
      std::vector<float> uo(size_t(M * r)), dB(size_t(N * r)), dA(size_t(r * K));
      for (int thr : {1, 2}) {
        ThreadPool pool(thr);
        auto be = make_backend("cpu", &pool);
        const double peak = thr == 1 ? peak1 : peak2;
        auto row = [&](const char* what, double flop, double sec) {
          std::printf("%-38s M=%-3lld %3d %9.3f %9.1f %6.0f%%\n", what, (long long)M, thr, sec * 1e3, flop / sec / 1e9, 100 * flop / sec / 1e9 / peak);
        };
        row("LoRA u = x·Aᵀ (r 16)", 2.0 * M * r * K, best_of(min_s, [&] { matmul(pool, uo.data(), r, x.data(), K, A.data(), DType::F32, M, r, K); }));
        row("LoRA dB = dYᵀ·u (r 16)", 2.0 * M * N * r, best_of(min_s, [&] { be->matmul_dw(mat(dB.data(), N, r), mat(const_cast<float*>(dy.data()), M, N), mat(const_cast<float*>(uu.data()), M, r), false); }));
        row("LoRA dA = (dY·B)ᵀ·x (r 16)", 2.0 * M * r * K, best_of(min_s, [&] { be->matmul_dw(mat(dA.data(), r, K), mat(const_cast<float*>(uu.data()), M, r), mat(const_cast<float*>(x.data()), M, K), false); }));
      }
    }
  }
}

// Decode attention over an f16 cache, one token against n keys of every layer: bench_matmul SECONDS attn n Hkv G
// [threads] [layers]. Each layer has its own cache (16 layers of the bench model's shape, hd 64: 64 MiB at n = 4096,
// past the L3), so K and V stream from DRAM as in the engine; prints ms per token and the K+V bytes per second.
void print_attention(double min_s, int64_t n, int64_t Hkv, int64_t G, int threads, int layers) {
  const int64_t hd = 64, Hq = Hkv * G;
  ThreadPool pool(threads);
  std::vector<std::vector<uint16_t>> K(static_cast<size_t>(layers)), V(static_cast<size_t>(layers));
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> u(0x3000, 0x3bff);  // f16 in [0.125, 1)
  for (int l = 0; l < layers; ++l) {
    K[size_t(l)].resize(size_t(n * Hkv * hd)); V[size_t(l)].resize(K[size_t(l)].size());
    for (auto& v : K[size_t(l)]) v = uint16_t(u(rng));
    for (auto& v : V[size_t(l)]) v = uint16_t(u(rng));
  }
  std::vector<float> q(size_t(Hq * hd), 0.01f), out(size_t(Hq * hd)), scratch(size_t(threads) * size_t(n + 64));
  const double sec = best_of(min_s, [&] {
    for (int l = 0; l < layers; ++l) {
      KvCacheView kv;
      kv.k = KvRows{KvRows::F16, K[size_t(l)].data(), Hkv * hd};
      kv.v = KvRows{KvRows::F16, V[size_t(l)].data(), Hkv * hd};
      kv.Hkv = Hkv;
      attention_causal(pool, out.data(), Hq * hd, q.data(), Hq * hd, 1, Hq, hd, kv, n - 1, 0.125f, nullptr, 0, scratch.data(), n + 64);
    }
  });
  std::printf("attention decode n=%lld Hkv=%lld G=%lld hd=64 f16 layers=%d thr=%d: %.3f ms per token, %.1f GB/s of K+V, %.1f GFLOP/s\n",
              (long long)n, (long long)Hkv, (long long)G, layers, threads, sec * 1e3, double(layers) * n * Hkv * hd * 4 / sec / 1e9,
              4.0 * layers * n * Hq * hd / sec / 1e9);
}

int main(int argc, char** argv) {
  double min_s = argc > 1 ? std::atof(argv[1]) : 0.5;
  if (argc > 2 && !std::strcmp(argv[2], "train")) { print_train(min_s); return 0; }  // bench_matmul SECONDS train
  if (argc > 2 && !std::strcmp(argv[2], "peak")) { print_peaks(); return 0; }  // bench_matmul SECONDS peak
  if (argc > 5 && !std::strcmp(argv[2], "attn")) {  // bench_matmul SECONDS attn n Hkv G [threads] [layers]
    print_attention(min_s, std::atoll(argv[3]), std::atoll(argv[4]), std::atoll(argv[5]), argc > 6 ? std::atoi(argv[6]) : 2,
                    argc > 7 ? std::atoi(argv[7]) : 16);
    return 0;
  }
  if (argc > 5 && (!std::strcmp(argv[5], "q8_0") || !std::strcmp(argv[5], "q4_0") || !std::strcmp(argv[5], "q4_k"))) {
    // one quantized shape: bench_matmul SECONDS M N K q8_0|q4_0|q4_k [threads]: every quantized table, with f32
    // and int8 activations (at M >= 8 the f32 mode is the dequantised-tile path)
    const int64_t M = std::atoll(argv[2]), N = std::atoll(argv[3]), K = std::atoll(argv[4]);
    const DType dt = !std::strcmp(argv[5], "q8_0") ? DType::Q8_0 : !std::strcmp(argv[5], "q4_0") ? DType::Q4_0 : DType::Q4_K;
    const int thr = argc > 6 ? std::atoi(argv[6]) : 1;
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> wf(size_t(N * K)), x(size_t(M * K)), y(size_t(M * N));
    for (auto& v : wf) v = u(rng) * 0.05f;
    for (auto& v : x) v = u(rng);
    std::vector<uint8_t> W(qbytes(dt, N * K));
    quantize_tensor(dt, wf.data(), W.data(), N * K);
    ThreadPool pool(thr);
    const char* paths[4];
    const int n_paths = qmatmul_paths(paths, 4);
    for (int p = 0; p < n_paths; ++p)
      for (int act : {0, 1}) {
        qmatmul_use_path(paths[p]);
        const int prev = qmatmul_act_mode(act);
        double sec = bench(pool, W.data(), dt, M, N, K, y.data(), x.data(), min_s);
        qmatmul_act_mode(prev);
        std::printf("M=%lld N=%lld K=%lld %s thr=%d %-11s act=%-4s %9.3f ms %8.2f GB/s %8.2f GFLOP/s\n", (long long)M, (long long)N,
                    (long long)K, dtype_name(dt), thr, paths[p], act ? "q8" : "f32", sec * 1e3, double(W.size()) / sec / 1e9,
                    2.0 * M * N * K / sec / 1e9);
      }
    qmatmul_use_path(nullptr);
    if (const size_t pb = qpack_bytes(dt, N, K)) {  // the load-time layout the engine packs Q4_0 / Q4_K into
      std::vector<uint8_t> P(pb);
      qpack(&pool, dt, W.data(), N, K, P.data());
      const double sec = best_of(min_s, [&] { qmatmul(&pool, y.data(), N, x.data(), K, W.data(), dt, M, N, K, false, P.data()); });
      std::printf("M=%lld N=%lld K=%lld %s thr=%d %-11s act=q8   %9.3f ms %8.2f GB/s %8.2f GFLOP/s\n", (long long)M, (long long)N,
                  (long long)K, dtype_name(dt), thr, "packed", sec * 1e3, double(pb) / sec / 1e9, 2.0 * M * N * K / sec / 1e9);
    }
    return 0;
  }
  if (argc > 4) {  // one custom shape: bench_matmul SECONDS M N K [bf16|f16|f32] [threads]
    const int64_t M = std::atoll(argv[2]), N = std::atoll(argv[3]), K = std::atoll(argv[4]);
    const DType dt = argc > 5 && !std::strcmp(argv[5], "f32") ? DType::F32 : argc > 5 && !std::strcmp(argv[5], "f16") ? DType::F16 : DType::BF16;
    const int thr = argc > 6 ? std::atoi(argv[6]) : 1;
    std::vector<float> x(size_t(M * K), 0.5f), y(size_t(M * N));
    std::vector<uint8_t> W(size_t(N * K) * dtype_size(dt), 0x3c);
    const void* wp = W.data();
    if (const char* f = std::getenv("BENCH_MMAP")) {  // weights from a memory-mapped file, as the engine has them
      FILE* fp = std::fopen(f, "wb");
      std::fwrite(W.data(), 1, W.size(), fp);
      std::fclose(fp);
      int fd = open(f, O_RDONLY);
      wp = mmap(nullptr, W.size(), PROT_READ, MAP_PRIVATE, fd, 0);
      close(fd);
      std::printf("weights mmapped from %s\n", f);
    }
    ThreadPool pool(thr);
    const char* paths[8];
    const int n_paths = simd_paths(paths, 8);
    for (int p = 0; p < n_paths; ++p) {
      simd_use_path(paths[p]);
      double sec = bench(pool, wp, dt, M, N, K, y.data(), x.data(), min_s);
      std::printf("M=%lld N=%lld K=%lld %s thr=%d %-17s %9.3f ms %8.2f GB/s %8.2f GFLOP/s\n", (long long)M, (long long)N,
                  (long long)K, dtype_name(dt), thr, paths[p], sec * 1e3, double(W.size()) / sec / 1e9, 2.0 * M * N * K / sec / 1e9);
    }
    return 0;
  }
  {  // thread pool round trip: an empty parallel_for over 2 threads (the cost paid per matmul call)
    ThreadPool pool(2);
    for (int rep = 0; rep < 3; ++rep) {
      const int iters = 100000;
      auto t0 = Clock::now();
      for (int i = 0; i < iters; ++i) pool.run(2, 1, [](int64_t, int64_t, int) {});
      double us = std::chrono::duration<double>(Clock::now() - t0).count() / iters * 1e6;
      std::printf("thread pool: empty parallel_for on 2 threads: %.2f us\n", us);
    }
  }
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
  const char* paths[8];
  const int n_paths = simd_paths(paths, 8);
  std::printf("%-15s %-5s %3s %-17s %10s %9s %9s\n", "shape", "dtype", "thr", "path", "ms(min)", "GB/s", "GFLOP/s");
  {
    for (const Shape& s : shapes) {
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
          for (int p = 0; p < n_paths; ++p) {
            simd_use_path(paths[p]);
            double sec = bench(pool, W.data(), dt, s.M, s.N, s.K, y.data(), x.data(), min_s);
            std::printf("%-15s %-5s %3d %-17s %10.3f %9.2f %9.2f\n", s.what, dtype_name(dt), thr, paths[p], sec * 1e3,
                        double(W.size()) / sec / 1e9, 2.0 * s.M * s.N * s.K / sec / 1e9);
          }
          simd_use_path(nullptr);
        }
      }
    }
  }
  return 0;
}
