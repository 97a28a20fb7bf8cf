// Dense matmul y[M, N] = x[M, K] · W[N, K]^T with W in its stored dtype (f32/f16/bf16), f32 accumulation.
//
// This file: the public API of cpu/matmul.h, the oracle, the run-time choice of a kernel table and the threading.
// The kernels live one file per ISA family (map and shared helpers in cpu/matmul_kernels.h).
//
// Structure (llm.c / ggml spirit):
//   matmul_ref            plain scalar triple loop (double accumulator): the oracle.
//   Kernels               a table of the two row-range kernels + vector primitives, one per SIMD level:
//     matvec_rows(n0,n1)  M == 1 (decode): y[n] = dot(x, W[n]) for n in [n0, n1). Memory bound: each weight row
//                         is streamed exactly once, several rows at a time so the x loads are shared.
//     matmul_rows(n0,n1)  M > 1 (prefill): for a block of NR weight rows and a K tile, convert the weights once to
//                         an f32 tile (fits L1), then reuse it for every row of x. Compute bound.
//     prepack + matmul_rows_packed   (AMX only) x converted once per call, shared by all threads.
//   matmul / matmul_st    split N (or M when N is tiny) over the pool and call the kernels.
// Paths, best first: amx-bf16+avx512f > avx512f+fma+f16c > avx2+fma+f16c > portable. The table is chosen once
// at run time (cpuid + OS permission for AMX), so one binary runs on every x86-64 / arm64 CPU; MOE_SIMD overrides.
// Measured on this project's 2-core Xeon (AMX/AVX-512), bf16 weights, 1 thread (test/bench/run_bench_matmul.sh):
//   prefill M=16 N=512 K=1024:  portable 19, avx2 81, avx512 96, amx 348 GFLOP/s
//   decode  M=1, 1 GiB of weights: 14 GB/s (1 thread), 19 GB/s (2 threads) = DRAM bandwidth
#include "cpu/matmul.h"
#include "cpu/matmul_kernels.h"
#include "cpu/qmatmul.h"
#include "quant/quant.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace moe {

namespace {

using cpu_matmul::Kernels;
using cpu_matmul::NR;
using cpu_matmul::kPortable;
#if MOE_HAVE_X86_DISPATCH
using cpu_matmul::amx_usable;
using cpu_matmul::kAmx;
using cpu_matmul::kAvx2;
using cpu_matmul::kAvx512;
#endif

[[noreturn]] void bad_dtype(const char* fn, DType dt) {
  throw std::invalid_argument(std::string("cpu/matmul.cpp ") + fn + ": weight dtype " + dtype_name(dt) +
                              " is not supported (expected f32, f16 or bf16)");
}

inline void check_dtype(const char* fn, DType dt) {
  if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16) bad_dtype(fn, dt);
}

// Element k of row n of W (row length K) widened to f32.
inline float w_at(const void* W, DType dt, int64_t idx) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(W)[idx];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(W)[idx]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(W)[idx]);
  }
}

// Paths this CPU can run, best first (portable always last).
int available_kernels(const Kernels** out) {
  int n = 0;
#if MOE_HAVE_X86_DISPATCH
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  static const bool amx = avx2 && amx_usable();
  if (amx) out[n++] = &kAmx;
  if (avx2 && __builtin_cpu_supports("avx512f")) out[n++] = &kAvx512;
  if (avx2) out[n++] = &kAvx2;
#endif
  out[n++] = &kPortable;
  return n;
}

// Best path, unless the environment variable MOE_SIMD names another available one (avx512f+fma+f16c,
// avx2+fma+f16c, portable; a prefix such as "avx2" is enough): lets benchmarks compare paths end to end.
const Kernels& select_kernels() {
  const Kernels* ks[6];
  int n = available_kernels(ks);
  if (const char* env = std::getenv("MOE_SIMD"); env && *env)
    for (int i = 0; i < n; ++i)
      if (std::strncmp(ks[i]->name, env, std::strlen(env)) == 0) return *ks[i];
  return *ks[0];
}

std::atomic<const Kernels*> g_kernels{nullptr};

const Kernels& K_() {
  const Kernels* k = g_kernels.load(std::memory_order_acquire);
  if (!k) {
    k = &select_kernels();
    g_kernels.store(k, std::memory_order_release);
  }
  return *k;
}

// Rows [m0, m1) of x/y against weight rows [n0, n1).
inline void run_block(const Kernels& kr, float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                      int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K, bool acc) {
  if (m1 - m0 == 1) kr.matvec_rows(y + m0 * ldy, x + m0 * ldx, W, dt, n0, n1, K, acc);
  else kr.matmul_rows(y + m0 * ldy, ldy, x + m0 * ldx, ldx, W, dt, m1 - m0, n0, n1, K, acc);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

void matmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype, int64_t M,
                int64_t N, int64_t K, bool accumulate) {
  if (is_quant(w_dtype)) { qmatmul_ref(y, ldy, x, ldx, W, w_dtype, M, N, K, accumulate); return; }
  check_dtype("matmul_ref", w_dtype);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(x[m * ldx + k]) * double(w_at(W, w_dtype, n * K + k));
      y[m * ldy + n] = accumulate ? float(y[m * ldy + n] + s) : float(s);
    }
}

void matmul_st(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype, int64_t M,
               int64_t N, int64_t K, bool accumulate) {
  if (is_quant(w_dtype)) { qmatmul(nullptr, y, ldy, x, ldx, W, w_dtype, M, N, K, accumulate); return; }
  check_dtype("matmul_st", w_dtype);
  if (M <= 0 || N <= 0) return;
  run_block(K_(), y, ldy, x, ldx, W, w_dtype, 0, M, 0, N, K, accumulate);
}

void matmul(ThreadPool& pool, float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype,
            int64_t M, int64_t N, int64_t K, bool accumulate) {
  // Block-quantized weights (Q8_0/Q4_0/Q4_K) take the fused dequantise-and-dot kernels of cpu/qmatmul.cpp.
  if (is_quant(w_dtype)) { qmatmul(&pool, y, ldy, x, ldx, W, w_dtype, M, N, K, accumulate); return; }
  check_dtype("matmul", w_dtype);
  if (M <= 0 || N <= 0) return;
  const Kernels& kr = K_();
  const int nt = pool.size();
  // Work per chunk should dwarf the ~1-5 us of waking a worker: at least ~64K multiply-adds.
  const int64_t work_per_row = M * (K > 0 ? K : 1);
  int64_t grain_rows = (65536 + work_per_row - 1) / work_per_row;
  const int64_t n_blocks = (N + NR - 1) / NR;  // split N on NR-row boundaries
  int64_t grain_blocks = (grain_rows + NR - 1) / NR;
  if (nt <= 1 || n_blocks * NR * work_per_row < 2 * 65536) {
    run_block(kr, y, ldy, x, ldx, W, w_dtype, 0, M, 0, N, K, accumulate);
    return;
  }
  if (const void* packed = M > 1 && N >= 32 && kr.prepack ? kr.prepack(x, ldx, w_dtype, M, K) : nullptr) {
    // x packed once here, shared by all threads; N split in units of 32 rows (the AMX 2x16-row block).
    const int64_t n_units = (N + 31) / 32, grain_units = (grain_rows + 31) / 32;
    pool.run(n_units, grain_units, [&](int64_t u0, int64_t u1, int) {
      const int64_t n0 = u0 * 32, n1 = u1 * 32 < N ? u1 * 32 : N;
      kr.matmul_rows_packed(y, ldy, x, ldx, W, w_dtype, M, n0, n1, K, accumulate, packed);
    });
    return;
  }
  if (n_blocks < 2 * nt && M >= 2 * nt) {
    // Few output features (e.g. a router with 64 experts) but many tokens: split over M instead.
    pool.run(M, 1, [&](int64_t m0, int64_t m1, int) {
      run_block(kr, y, ldy, x, ldx, W, w_dtype, m0, m1, 0, N, K, accumulate);
    });
    return;
  }
  pool.run(n_blocks, grain_blocks, [&](int64_t b0, int64_t b1, int) {
    int64_t n0 = b0 * NR, n1 = b1 * NR < N ? b1 * NR : N;
    run_block(kr, y, ldy, x, ldx, W, w_dtype, 0, M, n0, n1, K, accumulate);
  });
}

void matmul_batch(ThreadPool& pool, const MatmulJob* jobs, int n) {
  constexpr int kMax = 256;
  MatmulJob q[kMax];
  const MatmulJob* dense[kMax];
  int64_t end[kMax];  // dense products' NR-row blocks laid end to end: product i owns [end[i-1], end[i])
  const Kernels& kr = K_();
  for (int i0 = 0; i0 < n; i0 += kMax) {
    const int i1 = std::min(n, i0 + kMax);
    int nq = 0, nd = 0;
    int64_t blocks = 0, work = 0, kmax = 1;
    for (int i = i0; i < i1; ++i) {
      const MatmulJob& j = jobs[i];
      if (is_quant(j.t)) { q[nq++] = j; continue; }
      check_dtype("matmul", j.t);
      if (j.M <= 0 || j.N <= 0) continue;
      if (j.M != 1) { matmul(pool, j.y, j.ldy, j.x, j.ldx, j.W, j.t, j.M, j.N, j.K, j.accumulate); continue; }
      dense[nd] = &j;
      blocks += (j.N + NR - 1) / NR;
      end[nd++] = blocks;
      work += j.N * j.K;
      kmax = std::max(kmax, j.K);
    }
    if (nq) qmatmul_batch(&pool, q, nq);
    if (!nd) continue;
    // the same NR-row block boundaries as matmul's split, so each product's bits are matmul's
    auto run = [&](int64_t a, int64_t b, int) {
      for_each_piece(nd, [&](int i) { return end[i]; }, a, b, [&](int i, int64_t b0, int64_t b1) {
        const MatmulJob& j = *dense[i];
        run_block(kr, j.y, j.ldy, j.x, j.ldx, j.W, j.t, 0, 1, b0 * NR, std::min(j.N, b1 * NR), j.K, j.accumulate);
      });
    };
    if (pool.size() <= 1 || work < 2 * 65536) run(0, blocks, 0);
    else pool.run(blocks, std::max<int64_t>(1, 65536 / (NR * kmax)), [&](int64_t a, int64_t b, int t) { run(a, b, t); });
  }
}

void row_to_f32(float* out, const void* W, DType w_dtype, int64_t row, int64_t K) {
  if (is_quant(w_dtype)) {  // an embedding row of a quantized table: reference dequantisation of that row
    dequantize_row(w_dtype, static_cast<const uint8_t*>(W) + size_t(row) * dtype_row_bytes(w_dtype, K), out, K);
    return;
  }
  check_dtype("row_to_f32", w_dtype);
  K_().row_convert(out, W, w_dtype, row, K, 0, K);
}

bool matmul_dw_narrow(ThreadPool& pool, float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu,
                      int64_t M, int64_t N, int64_t R, bool accumulate) {
  const Kernels& k = K_();
  if (!k.outer_rows || !k.outer_rows(dW, ldw, dy, lddy, u, ldu, M, 0, 0, R, accumulate)) return false;  // (an empty range: is R a width it has)
  auto rows = [&](int64_t n0, int64_t n1, int) { k.outer_rows(dW, ldw, dy, lddy, u, ldu, M, n0, n1, R, accumulate); };
  // LoRA's dB at M = 64 is ~2 MFLOP: below ~128 K multiply-adds one thread beats a hand-off
  if (M * N * R < 2 * 65536 || pool.size() <= 1) rows(0, N, 0);
  else pool.run(N, std::max<int64_t>(24, 65536 / std::max<int64_t>(1, M * R)), [&](int64_t a, int64_t b, int t) { rows(a, b, t); });
  return true;
}

float vec_dot_f32(const float* a, const float* b, int64_t n) { return K_().dot(a, b, n); }
void vec_axpy_f32(float* y, float a, const float* x, int64_t n) { K_().axpy(y, a, x, n); }
void vec_dot_rows_f32(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale) {
  K_().dot_rows(out, q, K, ldk, n, d, scale);
}
void vec_axpy_rows_f32(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d) {
  K_().axpy_rows(o, w, V, ldv, n, d);
}
const char* simd_name() { return K_().name; }

int simd_paths(const char** names, int max_names) {
  const Kernels* ks[6];
  int n = available_kernels(ks);
  for (int i = 0; i < n && i < max_names; ++i) names[i] = ks[i]->name;
  return n;
}

bool simd_use_path(const char* name) {
  if (!name || !*name) { g_kernels.store(&select_kernels(), std::memory_order_release); return true; }
  const Kernels* ks[6];
  int n = available_kernels(ks);
  for (int i = 0; i < n; ++i)
    if (std::strcmp(ks[i]->name, name) == 0) { g_kernels.store(ks[i], std::memory_order_release); return true; }
  return false;
}

bool simd_force_portable(bool on) {
  bool prev = std::strcmp(K_().name, "portable") == 0;
  simd_use_path(on ? "portable" : nullptr);
  return prev;
}

}  // namespace moe
