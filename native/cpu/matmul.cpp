// Dense matmul y[M, N] = x[M, K] · W[N, K]^T with W in its stored dtype (f32/f16/bf16), f32 accumulation.
//
// Structure (llm.c / ggml spirit):
//   matmul_ref            plain scalar triple loop (double accumulator): the oracle.
//   Kernels               a table of the two row-range kernels + vector primitives, one per SIMD level:
//     matvec_rows(n0,n1)  M == 1 (decode): y[n] = dot(x, W[n]) for n in [n0, n1). Memory bound: each weight row
//                         is streamed exactly once, several rows at a time so the x loads are shared.
//     matmul_rows(n0,n1)  M > 1 (prefill): for a block of NR weight rows and a K tile, convert the weights once to
//                         an f32 tile (fits L1), then reuse it for every row of x. Compute bound.
//   matmul / matmul_st    split N (or M when N is tiny) over the pool and call the kernels.
// The SIMD table is chosen once at run time (cpuid), so one binary runs on every x86-64 / arm64 CPU.
#include "cpu/matmul.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace moe {

namespace {

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

// Convert W[n, k0:k0+len] to f32 (len floats into out).
inline void row_convert_portable(float* out, const void* W, DType dt, int64_t n, int64_t K, int64_t k0, int64_t len) {
  const int64_t base = n * K + k0;
  switch (dt) {
    case DType::F32: { const float* w = static_cast<const float*>(W) + base; for (int64_t k = 0; k < len; ++k) out[k] = w[k]; break; }
    case DType::F16: { const uint16_t* w = static_cast<const uint16_t*>(W) + base; for (int64_t k = 0; k < len; ++k) out[k] = f16_to_f32(w[k]); break; }
    default:         { const uint16_t* w = static_cast<const uint16_t*>(W) + base; for (int64_t k = 0; k < len; ++k) out[k] = bf16_to_f32(w[k]); break; }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Portable kernels. 4 independent accumulators break the FP-add dependency chain (and let the compiler keep
// them in SIMD lanes); no -ffast-math needed.
// ---------------------------------------------------------------------------------------------------------------
constexpr int NR = 4;      // weight rows per block
constexpr int64_t KB = 512;  // K tile (floats) for converted weights: NR*KB*4 = 8 KiB, fits L1

float dot_portable(const float* a, const float* b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += a[k] * b[k]; s1 += a[k + 1] * b[k + 1]; s2 += a[k + 2] * b[k + 2]; s3 += a[k + 3] * b[k + 3];
  }
  for (; k < n; ++k) s0 += a[k] * b[k];
  return (s0 + s1) + (s2 + s3);
}

void axpy_portable(float* y, float a, const float* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] += a * x[k];
}

// M > 1, rows [n0, n1) of W: y[m, n] (+)= sum_k x[m, k] W[n, k].
void matmul_rows_portable(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                          int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  float tile[NR][KB];
  for (int64_t n = n0; n < n1; n += NR) {
    const int nr = int(n1 - n < NR ? n1 - n : NR);
    if (!acc) for (int64_t m = 0; m < M; ++m) for (int r = 0; r < nr; ++r) y[m * ldy + n + r] = 0.f;
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
      const int64_t kb = K - k0 < KB ? K - k0 : KB;
      for (int r = 0; r < nr; ++r) row_convert_portable(tile[r], W, dt, n + r, K, k0, kb);
      for (int64_t m = 0; m < M; ++m) {
        const float* xm = x + m * ldx + k0;
        float* ym = y + m * ldy + n;
        for (int r = 0; r < nr; ++r) ym[r] += dot_portable(xm, tile[r], kb);
      }
    }
  }
}

// M == 1: y[n] (+)= dot(x, W[n]) for n in [n0, n1). Same code path as M > 1 (the tile is the streaming buffer).
void matvec_rows_portable(float* y, const float* x, const void* W, DType dt, int64_t n0, int64_t n1, int64_t K, bool acc) {
  if (dt == DType::F32) {  // no conversion: dot straight from the weights
    const float* w = static_cast<const float*>(W);
    for (int64_t n = n0; n < n1; ++n) {
      float s = dot_portable(x, w + n * K, K);
      y[n] = acc ? y[n] + s : s;
    }
    return;
  }
  matmul_rows_portable(y, 0, x, 0, W, dt, 1, n0, n1, K, acc);
}

struct Kernels {
  const char* name;
  void (*matvec_rows)(float* y, const float* x, const void* W, DType dt, int64_t n0, int64_t n1, int64_t K, bool acc);
  void (*matmul_rows)(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                      int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float* y, float a, const float* x, int64_t n);
  void (*row_convert)(float* out, const void* W, DType dt, int64_t n, int64_t K, int64_t k0, int64_t len);
};

const Kernels kPortable = {"portable", matvec_rows_portable, matmul_rows_portable, dot_portable, axpy_portable,
                           row_convert_portable};

const Kernels& select_kernels() { return kPortable; }

std::atomic<const Kernels*> g_kernels{nullptr};
std::atomic<bool> g_force_portable{false};

const Kernels& K_() {
  const Kernels* k = g_kernels.load(std::memory_order_acquire);
  if (!k) {
    k = g_force_portable.load() ? &kPortable : &select_kernels();
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
  check_dtype("matmul_st", w_dtype);
  if (M <= 0 || N <= 0) return;
  run_block(K_(), y, ldy, x, ldx, W, w_dtype, 0, M, 0, N, K, accumulate);
}

void matmul(ThreadPool& pool, float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype,
            int64_t M, int64_t N, int64_t K, bool accumulate) {
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

void row_to_f32(float* out, const void* W, DType w_dtype, int64_t row, int64_t K) {
  check_dtype("row_to_f32", w_dtype);
  K_().row_convert(out, W, w_dtype, row, K, 0, K);
}

float vec_dot_f32(const float* a, const float* b, int64_t n) { return K_().dot(a, b, n); }
void vec_axpy_f32(float* y, float a, const float* x, int64_t n) { K_().axpy(y, a, x, n); }
const char* simd_name() { return K_().name; }

bool simd_force_portable(bool on) {
  bool prev = g_force_portable.exchange(on);
  g_kernels.store(on ? &kPortable : &select_kernels(), std::memory_order_release);
  return prev;
}

}  // namespace moe
