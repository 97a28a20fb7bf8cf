// Portable kernels (kPortable): plain C++, the only path off x86-64 or without GCC/Clang, and MOE_SIMD=portable.
// 4 independent accumulators break the FP-add dependency chain (and let the compiler keep them in SIMD lanes);
// no -ffast-math needed.
#include "cpu/matmul_kernels.h"

namespace moe::cpu_matmul {

namespace {

constexpr int64_t KB = 512;  // K tile (floats) for converted weights: NR*KB*4 = 8 KiB, fits L1

// Convert W[n, k0:k0+len] to f32 (len floats into out).
inline void row_convert_portable(float* out, const void* W, DType dt, int64_t n, int64_t K, int64_t k0, int64_t len) {
  const int64_t base = n * K + k0;
  switch (dt) {
    case DType::F32: { const float* w = static_cast<const float*>(W) + base; for (int64_t k = 0; k < len; ++k) out[k] = w[k]; break; }
    case DType::F16: { const uint16_t* w = static_cast<const uint16_t*>(W) + base; for (int64_t k = 0; k < len; ++k) out[k] = f16_to_f32(w[k]); break; }
    default:         { const uint16_t* w = static_cast<const uint16_t*>(W) + base; for (int64_t k = 0; k < len; ++k) out[k] = bf16_to_f32(w[k]); break; }
  }
}

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

void dot_rows_portable(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale) {
  for (int64_t j = 0; j < n; ++j) out[j] = dot_portable(q, K + j * ldk, d) * scale;
}

void axpy_rows_portable(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d) {
  for (int64_t j = 0; j < n; ++j) axpy_portable(o, w[j], V + j * ldv, d);
}

}  // namespace

const Kernels kPortable = {"portable", matvec_rows_portable, matmul_rows_portable, dot_portable, axpy_portable,
                           row_convert_portable, nullptr, nullptr, dot_rows_portable, axpy_rows_portable};

}  // namespace moe::cpu_matmul
