// Dense matmul y[M, N] = x[M, K] · W[N, K]^T with W in its stored dtype (f32/f16/bf16), f32 accumulation.
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
#include "cpu/qmatmul.h"
#include "quant/quant.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))  // (AMX intrinsics are 64-bit only)
#include <cpuid.h>
#include <immintrin.h>
#include <vector>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#define MOE_HAVE_X86_DISPATCH 1
#else
#define MOE_HAVE_X86_DISPATCH 0
#endif
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
  // Optional (AMX): pack x once per call on the calling thread (nullptr: not applicable to this dtype/shape),
  // then every thread runs matmul_rows_packed on its rows of W against the shared packed x.
  const void* (*prepack)(const float* x, int64_t ldx, DType dt, int64_t M, int64_t K) = nullptr;
  void (*matmul_rows_packed)(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                             int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc, const void* packed) = nullptr;
  // Attention: scores of one query against n keys, and the weighted sum of n value rows.
  void (*dot_rows)(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale) = nullptr;
  void (*axpy_rows)(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d) = nullptr;
};

void dot_rows_portable(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale) {
  for (int64_t j = 0; j < n; ++j) out[j] = dot_portable(q, K + j * ldk, d) * scale;
}

void axpy_rows_portable(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d) {
  for (int64_t j = 0; j < n; ++j) axpy_portable(o, w[j], V + j * ldv, d);
}

const Kernels kPortable = {"portable", matvec_rows_portable, matmul_rows_portable, dot_portable, axpy_portable,
                           row_convert_portable, nullptr, nullptr, dot_rows_portable, axpy_rows_portable};

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C kernels (x86-64, GCC/Clang). Compiled per function with target attributes so the rest of the
// binary stays baseline x86-64; used only when cpuid says the CPU has all three.
//   bf16 -> f32: zero-extend 16 -> 32 bits and shift left 16 (bf16 is the top half of an f32).
//   f16  -> f32: vcvtph2ps (_mm256_cvtph_ps), exact for all values incl. subnormals/inf/nan.
// ---------------------------------------------------------------------------------------------------------------
#if MOE_HAVE_X86_DISPATCH
#define MOE_AVX2 __attribute__((target("avx2,fma,f16c")))

MOE_AVX2 inline __m256 load8_f32(const float* p) { return _mm256_loadu_ps(p); }
MOE_AVX2 inline __m256 load8_bf16(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
MOE_AVX2 inline __m256 load8_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
template <DType DT> struct WLoad;
template <> struct WLoad<DType::F32> { using T = float;
  MOE_AVX2 static __m256 load(const float* p) { return load8_f32(p); }
  static float one(const float* p) { return *p; } };
template <> struct WLoad<DType::F16> { using T = uint16_t;
  MOE_AVX2 static __m256 load(const uint16_t* p) { return load8_f16(p); }
  static float one(const uint16_t* p) { return f16_to_f32(*p); } };
template <> struct WLoad<DType::BF16> { using T = uint16_t;
  MOE_AVX2 static __m256 load(const uint16_t* p) { return load8_bf16(p); }
  static float one(const uint16_t* p) { return bf16_to_f32(*p); } };

MOE_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// [sum(a), sum(b), sum(c), sum(d)] for four 8-lane accumulators.
MOE_AVX2 inline __m128 hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 ab = _mm256_hadd_ps(a, b);        // a01 a23 b01 b23 | a45 a67 b45 b67
  __m256 cd = _mm256_hadd_ps(c, d);
  __m256 abcd = _mm256_hadd_ps(ab, cd);    // a0123 b0123 c0123 d0123 | a4567 b4567 c4567 d4567
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}
// Mask with the first r (0..8) lanes set, for loading the K tail of x without reading past its end.
MOE_AVX2 inline __m256i tail_mask(int64_t r) {
  alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - r));
}

MOE_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
  }
  for (; k + 8 <= n; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
  if (k < n) {
    __m256i mk = tail_mask(n - k);
    s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + k, mk), _mm256_maskload_ps(b + k, mk), s1);
  }
  return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

MOE_AVX2 void axpy_avx2(float* y, float a, const float* x, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(y + k, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k)));
  for (; k < n; ++k) y[k] += a * x[k];
}

template <DType DT>
MOE_AVX2 void convert_avx2(float* out, const typename WLoad<DT>::T* w, int64_t len) {
  int64_t k = 0;
  for (; k + 8 <= len; k += 8) _mm256_storeu_ps(out + k, WLoad<DT>::load(w + k));
  for (; k < len; ++k) out[k] = WLoad<DT>::one(w + k);
}

MOE_AVX2 void row_convert_avx2(float* out, const void* W, DType dt, int64_t n, int64_t K, int64_t k0, int64_t len) {
  const int64_t base = n * K + k0;
  switch (dt) {
    case DType::F32: convert_avx2<DType::F32>(out, static_cast<const float*>(W) + base, len); break;
    case DType::F16: convert_avx2<DType::F16>(out, static_cast<const uint16_t*>(W) + base, len); break;
    default: convert_avx2<DType::BF16>(out, static_cast<const uint16_t*>(W) + base, len); break;
  }
}

// Decode (M == 1): y[n] = dot(x, W[n]). Four weight rows per iteration share each x load; two 8-lane
// accumulators per row (8 in flight) hide the FMA latency, so the loop runs at the speed weights stream in.
template <DType DT>
MOE_AVX2 void matvec_rows_avx2_t(float* y, const float* x, const void* Wv, int64_t n0, int64_t n1, int64_t K, bool acc) {
  using T = typename WLoad<DT>::T;
  const T* W = static_cast<const T*>(Wv);
  const int64_t K16 = K & ~int64_t(15), K8 = K & ~int64_t(7);
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const T* w0 = W + n * K; const T* w1 = w0 + K; const T* w2 = w1 + K; const T* w3 = w2 + K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t k = 0;
    for (; k < K16; k += 16) {
      const __m256 xa = _mm256_loadu_ps(x + k), xb = _mm256_loadu_ps(x + k + 8);
      a0 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w0 + k), a0); b0 = _mm256_fmadd_ps(xb, WLoad<DT>::load(w0 + k + 8), b0);
      a1 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w1 + k), a1); b1 = _mm256_fmadd_ps(xb, WLoad<DT>::load(w1 + k + 8), b1);
      a2 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w2 + k), a2); b2 = _mm256_fmadd_ps(xb, WLoad<DT>::load(w2 + k + 8), b2);
      a3 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w3 + k), a3); b3 = _mm256_fmadd_ps(xb, WLoad<DT>::load(w3 + k + 8), b3);
    }
    for (; k < K8; k += 8) {
      const __m256 xa = _mm256_loadu_ps(x + k);
      a0 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w0 + k), a0); a1 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w1 + k), a1);
      a2 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w2 + k), a2); a3 = _mm256_fmadd_ps(xa, WLoad<DT>::load(w3 + k), a3);
    }
    __m128 s = hsum8x4(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1), _mm256_add_ps(a2, b2), _mm256_add_ps(a3, b3));
    alignas(16) float r[4];
    _mm_store_ps(r, s);
    for (; k < K; ++k) {
      const float xk = x[k];
      r[0] += xk * WLoad<DT>::one(w0 + k); r[1] += xk * WLoad<DT>::one(w1 + k);
      r[2] += xk * WLoad<DT>::one(w2 + k); r[3] += xk * WLoad<DT>::one(w3 + k);
    }
    for (int i = 0; i < 4; ++i) y[n + i] = acc ? y[n + i] + r[i] : r[i];
  }
  for (; n < n1; ++n) {  // remaining 1-3 rows
    const T* w0 = W + n * K;
    __m256 a0 = _mm256_setzero_ps(), b0 = a0;
    int64_t k = 0;
    for (; k < K16; k += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), WLoad<DT>::load(w0 + k), a0);
      b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), WLoad<DT>::load(w0 + k + 8), b0);
    }
    for (; k < K8; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), WLoad<DT>::load(w0 + k), a0);
    float r = hsum8(_mm256_add_ps(a0, b0));
    for (; k < K; ++k) r += x[k] * WLoad<DT>::one(w0 + k);
    y[n] = acc ? y[n] + r : r;
  }
}

MOE_AVX2 void matvec_rows_avx2(float* y, const float* x, const void* W, DType dt, int64_t n0, int64_t n1, int64_t K, bool acc) {
  switch (dt) {
    case DType::F32: matvec_rows_avx2_t<DType::F32>(y, x, W, n0, n1, K, acc); break;
    case DType::F16: matvec_rows_avx2_t<DType::F16>(y, x, W, n0, n1, K, acc); break;
    default: matvec_rows_avx2_t<DType::BF16>(y, x, W, n0, n1, K, acc); break;
  }
}

// Prefill micro-kernel: MR rows of x times the 4-row f32 weight tile t[4][kbp] (kbp a multiple of 8, zero padded),
// y[m, 0:4] += sum_k x[m, k] t[r, k]. MR*4 accumulators (12 ymm for MR = 3); per 8-wide k step: 4 tile loads
// (L1) + MR x loads feed 4*MR FMAs. The last partial 8-block of x is read with a mask (never past the row).
template <int MR>
MOE_AVX2 inline void micro_avx2(float* y, int64_t ldy, const float* x, int64_t ldx, const float* t, int64_t kbp,
                                int64_t kb, int nr) {
  __m256 acc[MR][4];
  for (int i = 0; i < MR; ++i) for (int r = 0; r < 4; ++r) acc[i][r] = _mm256_setzero_ps();
  const int64_t kfull = kb & ~int64_t(7);
  int64_t k = 0;
  for (; k < kfull; k += 8) {
    const __m256 t0 = _mm256_loadu_ps(t + k), t1 = _mm256_loadu_ps(t + kbp + k);
    const __m256 t2 = _mm256_loadu_ps(t + 2 * kbp + k), t3 = _mm256_loadu_ps(t + 3 * kbp + k);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
      acc[i][0] = _mm256_fmadd_ps(xv, t0, acc[i][0]); acc[i][1] = _mm256_fmadd_ps(xv, t1, acc[i][1]);
      acc[i][2] = _mm256_fmadd_ps(xv, t2, acc[i][2]); acc[i][3] = _mm256_fmadd_ps(xv, t3, acc[i][3]);
    }
  }
  if (k < kb) {
    const __m256i mk = tail_mask(kb - k);
    const __m256 t0 = _mm256_loadu_ps(t + k), t1 = _mm256_loadu_ps(t + kbp + k);
    const __m256 t2 = _mm256_loadu_ps(t + 2 * kbp + k), t3 = _mm256_loadu_ps(t + 3 * kbp + k);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_maskload_ps(x + i * ldx + k, mk);
      acc[i][0] = _mm256_fmadd_ps(xv, t0, acc[i][0]); acc[i][1] = _mm256_fmadd_ps(xv, t1, acc[i][1]);
      acc[i][2] = _mm256_fmadd_ps(xv, t2, acc[i][2]); acc[i][3] = _mm256_fmadd_ps(xv, t3, acc[i][3]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    __m128 s = hsum8x4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
    float* yi = y + i * ldy;
    if (nr == 4) _mm_storeu_ps(yi, _mm_add_ps(_mm_loadu_ps(yi), s));
    else { alignas(16) float r[4]; _mm_store_ps(r, s); for (int j = 0; j < nr; ++j) yi[j] += r[j]; }
  }
}

constexpr int64_t KB_AVX2 = 256;  // K tile: 4 rows * 256 * 4 B = 4 KiB of f32 weights, stays in L1

template <DType DT>
MOE_AVX2 void matmul_rows_avx2_t(float* y, int64_t ldy, const float* x, int64_t ldx, const void* Wv,
                                 int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  using T = typename WLoad<DT>::T;
  const T* W = static_cast<const T*>(Wv);
  alignas(32) float tile[4 * KB_AVX2];
  for (int64_t n = n0; n < n1; n += 4) {
    const int nr = int(n1 - n < 4 ? n1 - n : 4);
    if (!acc) for (int64_t m = 0; m < M; ++m) for (int r = 0; r < nr; ++r) y[m * ldy + n + r] = 0.f;
    for (int64_t k0 = 0; k0 < K; k0 += KB_AVX2) {
      const int64_t kb = K - k0 < KB_AVX2 ? K - k0 : KB_AVX2;
      const int64_t kbp = (kb + 7) & ~int64_t(7);
      // Convert each weight row of the block once; rows past nr and lanes past kb are zero.
      for (int r = 0; r < 4; ++r) {
        float* tr = tile + r * kbp;
        if (r < nr) convert_avx2<DT>(tr, W + (n + r) * K + k0, kb);
        for (int64_t k = r < nr ? kb : 0; k < kbp; ++k) tr[k] = 0.f;
      }
      int64_t m = 0;
      for (; m + 3 <= M; m += 3) micro_avx2<3>(y + m * ldy + n, ldy, x + m * ldx + k0, ldx, tile, kbp, kb, nr);
      if (M - m == 2) micro_avx2<2>(y + m * ldy + n, ldy, x + m * ldx + k0, ldx, tile, kbp, kb, nr);
      else if (M - m == 1) micro_avx2<1>(y + m * ldy + n, ldy, x + m * ldx + k0, ldx, tile, kbp, kb, nr);
    }
  }
}

MOE_AVX2 void matmul_rows_avx2(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                               int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  switch (dt) {
    case DType::F32: matmul_rows_avx2_t<DType::F32>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
    case DType::F16: matmul_rows_avx2_t<DType::F16>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
    default: matmul_rows_avx2_t<DType::BF16>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
  }
}

// out[j] = scale * dot(q, K[j]) for n keys of length d (rows ldk apart): four keys per pass share the q loads,
// one call per query instead of one per key (head_dim is only 64-128, so per-call overhead used to dominate).
MOE_AVX2 void dot_rows_avx2(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale) {
  const int64_t d8 = d & ~int64_t(7);
  const __m256i mk = tail_mask(d - d8);
  const __m128 vs = _mm_set1_ps(scale);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float* k0 = K + j * ldk; const float* k1 = k0 + ldk; const float* k2 = k1 + ldk; const float* k3 = k2 + ldk;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < d8; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0); a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), a2); a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), a3);
    }
    if (d8 < d) {
      const __m256 qv = _mm256_maskload_ps(q + d8, mk);
      a0 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k0 + d8, mk), a0); a1 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k1 + d8, mk), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k2 + d8, mk), a2); a3 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k3 + d8, mk), a3);
    }
    _mm_storeu_ps(out + j, _mm_mul_ps(hsum8x4(a0, a1, a2, a3), vs));
  }
  for (; j < n; ++j) out[j] = dot_avx2(q, K + j * ldk, d) * scale;
}

// o[0:d] += sum_j w[j] V[j, 0:d]: o stays in registers (32 floats at a time) across all n value rows.
MOE_AVX2 void axpy_rows_avx2(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d) {
  int64_t i0 = 0;
  for (; i0 + 32 <= d; i0 += 32) {
    __m256 c0 = _mm256_loadu_ps(o + i0), c1 = _mm256_loadu_ps(o + i0 + 8);
    __m256 c2 = _mm256_loadu_ps(o + i0 + 16), c3 = _mm256_loadu_ps(o + i0 + 24);
    for (int64_t j = 0; j < n; ++j) {
      const __m256 wv = _mm256_broadcast_ss(w + j);
      const float* v = V + j * ldv + i0;
      c0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(v), c0); c1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + 8), c1);
      c2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + 16), c2); c3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + 24), c3);
    }
    _mm256_storeu_ps(o + i0, c0); _mm256_storeu_ps(o + i0 + 8, c1);
    _mm256_storeu_ps(o + i0 + 16, c2); _mm256_storeu_ps(o + i0 + 24, c3);
  }
  for (; i0 < d; i0 += 8) {  // d % 32 tail, 8 (masked) lanes at a time
    const __m256i mk = tail_mask(d - i0 < 8 ? d - i0 : 8);
    __m256 c = _mm256_maskload_ps(o + i0, mk);
    for (int64_t j = 0; j < n; ++j) c = _mm256_fmadd_ps(_mm256_broadcast_ss(w + j), _mm256_maskload_ps(V + j * ldv + i0, mk), c);
    _mm256_maskstore_ps(o + i0, mk, c);
  }
}

const Kernels kAvx2 = {"avx2+fma+f16c", matvec_rows_avx2, matmul_rows_avx2, dot_avx2, axpy_avx2, row_convert_avx2,
                       nullptr, nullptr, dot_rows_avx2, axpy_rows_avx2};

// ---------------------------------------------------------------------------------------------------------------
// AVX-512F kernels: same algorithms with 16 lanes. Prefill is compute bound, so doubling the vector width roughly
// doubles it on CPUs with two 512-bit FMA ports (Sapphire Rapids and later); decode gains on cache-resident
// experts. K tails use masked loads (x) / zero-padded tiles (weights); no reads past a row.
// ---------------------------------------------------------------------------------------------------------------
#define MOE_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 flags its own _mm*_undefined_*() (used inside several AVX-512 intrinsics) as (maybe-)uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

template <DType DT> struct WLoad16;
template <> struct WLoad16<DType::F32> { using T = float;
  MOE_AVX512 static __m512 load(const float* p) { return _mm512_loadu_ps(p); } };
template <> struct WLoad16<DType::F16> { using T = uint16_t;
  MOE_AVX512 static __m512 load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); } };
template <> struct WLoad16<DType::BF16> { using T = uint16_t;
  MOE_AVX512 static __m512 load(const uint16_t* p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); } };

MOE_AVX512 inline __m256 fold512(__m512 v) {  // 16 lanes -> 8 lanes (pairwise sums)
  const __m512 hi = _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2));  // lanes 8..15 moved down
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(hi));
}

template <DType DT>
MOE_AVX512 void convert_avx512(float* out, const typename WLoad<DT>::T* w, int64_t len) {
  int64_t k = 0;
  for (; k + 16 <= len; k += 16) _mm512_storeu_ps(out + k, WLoad16<DT>::load(w + k));
  for (; k < len; ++k) out[k] = WLoad<DT>::one(w + k);
}

template <DType DT>
MOE_AVX512 void matvec_rows_avx512_t(float* y, const float* x, const void* Wv, int64_t n0, int64_t n1, int64_t K, bool acc) {
  using T = typename WLoad<DT>::T;
  const T* W = static_cast<const T*>(Wv);
  const int64_t K32 = K & ~int64_t(31), K16 = K & ~int64_t(15);
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const T* w0 = W + n * K; const T* w1 = w0 + K; const T* w2 = w1 + K; const T* w3 = w2 + K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t k = 0;
    for (; k < K32; k += 32) {
      const __m512 xa = _mm512_loadu_ps(x + k), xb = _mm512_loadu_ps(x + k + 16);
      a0 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w0 + k), a0); b0 = _mm512_fmadd_ps(xb, WLoad16<DT>::load(w0 + k + 16), b0);
      a1 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w1 + k), a1); b1 = _mm512_fmadd_ps(xb, WLoad16<DT>::load(w1 + k + 16), b1);
      a2 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w2 + k), a2); b2 = _mm512_fmadd_ps(xb, WLoad16<DT>::load(w2 + k + 16), b2);
      a3 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w3 + k), a3); b3 = _mm512_fmadd_ps(xb, WLoad16<DT>::load(w3 + k + 16), b3);
    }
    for (; k < K16; k += 16) {
      const __m512 xa = _mm512_loadu_ps(x + k);
      a0 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w0 + k), a0); a1 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w1 + k), a1);
      a2 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w2 + k), a2); a3 = _mm512_fmadd_ps(xa, WLoad16<DT>::load(w3 + k), a3);
    }
    __m128 s = hsum8x4(fold512(_mm512_add_ps(a0, b0)), fold512(_mm512_add_ps(a1, b1)),
                       fold512(_mm512_add_ps(a2, b2)), fold512(_mm512_add_ps(a3, b3)));
    alignas(16) float r[4];
    _mm_store_ps(r, s);
    for (; k < K; ++k) {
      const float xk = x[k];
      r[0] += xk * WLoad<DT>::one(w0 + k); r[1] += xk * WLoad<DT>::one(w1 + k);
      r[2] += xk * WLoad<DT>::one(w2 + k); r[3] += xk * WLoad<DT>::one(w3 + k);
    }
    for (int i = 0; i < 4; ++i) y[n + i] = acc ? y[n + i] + r[i] : r[i];
  }
  for (; n < n1; ++n) {
    const T* w0 = W + n * K;
    __m512 a0 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < K16; k += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), WLoad16<DT>::load(w0 + k), a0);
    float r = hsum8(fold512(a0));
    for (; k < K; ++k) r += x[k] * WLoad<DT>::one(w0 + k);
    y[n] = acc ? y[n] + r : r;
  }
}

MOE_AVX512 void matvec_rows_avx512(float* y, const float* x, const void* W, DType dt, int64_t n0, int64_t n1, int64_t K, bool acc) {
  switch (dt) {
    case DType::F32: matvec_rows_avx512_t<DType::F32>(y, x, W, n0, n1, K, acc); break;
    case DType::F16: matvec_rows_avx512_t<DType::F16>(y, x, W, n0, n1, K, acc); break;
    default: matvec_rows_avx512_t<DType::BF16>(y, x, W, n0, n1, K, acc); break;
  }
}

// MR rows of x times the 4-row tile t[4][kbp] (kbp multiple of 16, zero padded). MR*4 zmm accumulators.
template <int MR>
MOE_AVX512 inline void micro_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, const float* t, int64_t kbp,
                                    int64_t kb, int nr) {
  __m512 acc[MR][4];
  for (int i = 0; i < MR; ++i) for (int r = 0; r < 4; ++r) acc[i][r] = _mm512_setzero_ps();
  const int64_t kfull = kb & ~int64_t(15);
  int64_t k = 0;
  for (; k < kfull; k += 16) {
    const __m512 t0 = _mm512_loadu_ps(t + k), t1 = _mm512_loadu_ps(t + kbp + k);
    const __m512 t2 = _mm512_loadu_ps(t + 2 * kbp + k), t3 = _mm512_loadu_ps(t + 3 * kbp + k);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + i * ldx + k);
      acc[i][0] = _mm512_fmadd_ps(xv, t0, acc[i][0]); acc[i][1] = _mm512_fmadd_ps(xv, t1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(xv, t2, acc[i][2]); acc[i][3] = _mm512_fmadd_ps(xv, t3, acc[i][3]);
    }
  }
  if (k < kb) {
    const __mmask16 mk = __mmask16((1u << (kb - k)) - 1u);
    const __m512 t0 = _mm512_loadu_ps(t + k), t1 = _mm512_loadu_ps(t + kbp + k);
    const __m512 t2 = _mm512_loadu_ps(t + 2 * kbp + k), t3 = _mm512_loadu_ps(t + 3 * kbp + k);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i * ldx + k);
      acc[i][0] = _mm512_fmadd_ps(xv, t0, acc[i][0]); acc[i][1] = _mm512_fmadd_ps(xv, t1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(xv, t2, acc[i][2]); acc[i][3] = _mm512_fmadd_ps(xv, t3, acc[i][3]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    __m128 s = hsum8x4(fold512(acc[i][0]), fold512(acc[i][1]), fold512(acc[i][2]), fold512(acc[i][3]));
    float* yi = y + i * ldy;
    if (nr == 4) _mm_storeu_ps(yi, _mm_add_ps(_mm_loadu_ps(yi), s));
    else { alignas(16) float r[4]; _mm_store_ps(r, s); for (int j = 0; j < nr; ++j) yi[j] += r[j]; }
  }
}

constexpr int64_t KB_AVX512 = 512;  // 4 rows * 512 * 4 B = 8 KiB tile (L1 is 48 KiB)

template <DType DT>
MOE_AVX512 void matmul_rows_avx512_t(float* y, int64_t ldy, const float* x, int64_t ldx, const void* Wv,
                                     int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  using T = typename WLoad<DT>::T;
  const T* W = static_cast<const T*>(Wv);
  alignas(64) float tile[4 * KB_AVX512];
  for (int64_t n = n0; n < n1; n += 4) {
    const int nr = int(n1 - n < 4 ? n1 - n : 4);
    if (!acc) for (int64_t m = 0; m < M; ++m) for (int r = 0; r < nr; ++r) y[m * ldy + n + r] = 0.f;
    for (int64_t k0 = 0; k0 < K; k0 += KB_AVX512) {
      const int64_t kb = K - k0 < KB_AVX512 ? K - k0 : KB_AVX512;
      const int64_t kbp = (kb + 15) & ~int64_t(15);
      for (int r = 0; r < 4; ++r) {
        float* tr = tile + r * kbp;
        if (r < nr) convert_avx512<DT>(tr, W + (n + r) * K + k0, kb);
        for (int64_t k = r < nr ? kb : 0; k < kbp; ++k) tr[k] = 0.f;
      }
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) micro_avx512<4>(y + m * ldy + n, ldy, x + m * ldx + k0, ldx, tile, kbp, kb, nr);
      switch (M - m) {
        case 3: micro_avx512<3>(y + m * ldy + n, ldy, x + m * ldx + k0, ldx, tile, kbp, kb, nr); break;
        case 2: micro_avx512<2>(y + m * ldy + n, ldy, x + m * ldx + k0, ldx, tile, kbp, kb, nr); break;
        case 1: micro_avx512<1>(y + m * ldy + n, ldy, x + m * ldx + k0, ldx, tile, kbp, kb, nr); break;
        default: break;
      }
    }
  }
}

MOE_AVX512 void matmul_rows_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                                   int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  switch (dt) {
    case DType::F32: matmul_rows_avx512_t<DType::F32>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
    case DType::F16: matmul_rows_avx512_t<DType::F16>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
    default: matmul_rows_avx512_t<DType::BF16>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
  }
}

// Attention with 16 lanes: eight keys per pass (8 independent accumulator chains), masked d % 16 tails.
MOE_AVX512 void dot_rows_avx512(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale) {
  const int64_t d16 = d & ~int64_t(15);
  const __mmask16 mk = __mmask16((1u << (d - d16)) - 1u);
  const __m128 vs = _mm_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const float* kj = K + j * ldk;
    __m512 a[8];
    for (int r = 0; r < 8; ++r) a[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < d16; i += 16) {
      const __m512 qv = _mm512_loadu_ps(q + i);
      for (int r = 0; r < 8; ++r) a[r] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kj + r * ldk + i), a[r]);
    }
    if (d16 < d) {
      const __m512 qv = _mm512_maskz_loadu_ps(mk, q + d16);
      for (int r = 0; r < 8; ++r) a[r] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, kj + r * ldk + d16), a[r]);
    }
    _mm_storeu_ps(out + j, _mm_mul_ps(hsum8x4(fold512(a[0]), fold512(a[1]), fold512(a[2]), fold512(a[3])), vs));
    _mm_storeu_ps(out + j + 4, _mm_mul_ps(hsum8x4(fold512(a[4]), fold512(a[5]), fold512(a[6]), fold512(a[7])), vs));
  }
  if (j < n) dot_rows_avx2(out + j, q, K + j * ldk, ldk, n - j, d, scale);
}

MOE_AVX512 void axpy_rows_avx512(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d) {
  int64_t i0 = 0;
  for (; i0 + 64 <= d; i0 += 64) {  // o[i0:i0+64] in 4 registers, two accumulator sets (even / odd rows)
    __m512 c[4], e[4];
    for (int t = 0; t < 4; ++t) { c[t] = _mm512_loadu_ps(o + i0 + 16 * t); e[t] = _mm512_setzero_ps(); }
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
      const __m512 w0 = _mm512_set1_ps(w[j]), w1 = _mm512_set1_ps(w[j + 1]);
      const float* v0 = V + j * ldv + i0; const float* v1 = v0 + ldv;
      for (int t = 0; t < 4; ++t) {
        c[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(v0 + 16 * t), c[t]);
        e[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(v1 + 16 * t), e[t]);
      }
    }
    if (j < n) {
      const __m512 w0 = _mm512_set1_ps(w[j]);
      for (int t = 0; t < 4; ++t) c[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(V + j * ldv + i0 + 16 * t), c[t]);
    }
    for (int t = 0; t < 4; ++t) _mm512_storeu_ps(o + i0 + 16 * t, _mm512_add_ps(c[t], e[t]));
  }
  for (; i0 < d; i0 += 16) {  // d % 64 tail, 16 (masked) lanes at a time
    const __mmask16 mk = d - i0 >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - i0)) - 1u);
    __m512 c = _mm512_maskz_loadu_ps(mk, o + i0);
    for (int64_t j = 0; j < n; ++j) c = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), _mm512_maskz_loadu_ps(mk, V + j * ldv + i0), c);
    _mm512_mask_storeu_ps(o + i0, mk, c);
  }
}

const Kernels kAvx512 = {"avx512f+fma+f16c", matvec_rows_avx512, matmul_rows_avx512, dot_avx2, axpy_avx2,
                         row_convert_avx2, nullptr, nullptr, dot_rows_avx512, axpy_rows_avx512};

// ---------------------------------------------------------------------------------------------------------------
// AMX (Sapphire Rapids and later) for prefill with bf16 weights. TDPBF16PS multiplies bf16 pairs and accumulates
// in f32 at ~16x the rate of AVX-512 FMA. The weights are bf16 already (exact); the f32 activations are split
// into three bf16 parts x = hi + mid + lo (each the round-to-nearest bf16 of what is left; |x - hi - mid - lo| <=
// 2^-26 |x|), and each part is multiplied exactly (8x8-bit mantissas fit in f32), so the result is f32-accurate:
// the same tolerance as the FMA paths, at 3 tile products per block.
// Roles are swapped so that the weights need no repacking: C^T[n, m] = sum_k W[n, k] x[m, k]
//   A tile = W[n0:n0+16, k0:k0+32]   loaded straight from the (mmapped) weights, row stride 2K bytes
//   B tile = x parts in VNNI layout   B[kp][m] = (x[m, 2kp], x[m, 2kp+1]) as one 32-bit pair, packed per call
//   C tile = 16 weight rows x 16 x rows of f32, transposed into y at the end of the K loop.
// K % 32 tail columns, N % 16 tail rows and small M fall back to the AVX-512 code.
// ---------------------------------------------------------------------------------------------------------------
#define MOE_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16,avx512bw,avx512vl,avx2,fma,f16c")))

constexpr int64_t kAmxMinM = 4;

struct alignas(64) AmxTileConfig {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Linux: a process must ask for the AMX tile data state before its first tile instruction.
bool amx_usable() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  if (!amx_bf16 || !amx_tile) return false;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return false;  // AVX512_BF16
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl"))
    return false;
#if defined(__linux__)
  constexpr long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return false;
#endif
}

// Packed activations for this thread's current call: [3 parts][MB m-blocks][KP = K32/2 pairs][16 m] uint32.
// Grows to the largest prefill seen, then is reused (decode never comes here).
thread_local std::vector<uint32_t> t_amx_pack;

// In-register transpose of a 16x16 matrix of 32-bit elements (rows r[0..15]). Four shuffle stages; the result
// has rows 1,2 (mod 4) swapped, which amx_pack_x undoes when storing.
MOE_AMX inline void transpose16x16_epi32(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) {
      r[4 * i + j] = _mm512_unpacklo_epi64(t[4 * i + j], t[4 * i + j + 2]);
      r[4 * i + j + 2] = _mm512_unpackhi_epi64(t[4 * i + j], t[4 * i + j + 2]);
    }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}

MOE_AMX inline __m512 bf16_widen(__m256bh h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h), 16));
}

// x[M, K32] -> buf[part][mb][kp][mi] = (part of x[16 mb + mi, 2 kp], part of x[16 mb + mi, 2 kp + 1]).
// Per 16 rows x 32 columns: each row's 32 values become, per part, one vector of 16 bf16 pairs (row-major
// [mi][kp]); a 16x16 transpose turns that into the 16 B-tile rows [kp][mi]. Rows m >= M are zero.
MOE_AMX void amx_pack_x(uint32_t* buf, const float* x, int64_t ldx, int64_t M, int64_t K32, int64_t MB) {
  const int64_t KP = K32 / 2, part_stride = MB * KP * 16;
  __m512i R[3][16];
  for (int64_t mb = 0; mb < MB; ++mb) {
    const int64_t rows = M - mb * 16 < 16 ? M - mb * 16 : 16;
    for (int64_t k0 = 0; k0 < K32; k0 += 32) {
      for (int i = 0; i < 16; ++i) {
        if (i >= rows) { R[0][i] = R[1][i] = R[2][i] = _mm512_setzero_si512(); continue; }
        const float* xr = x + (mb * 16 + i) * ldx + k0;
        __m256bh parts[3][2];
        for (int h = 0; h < 2; ++h) {
          const __m512 v = _mm512_loadu_ps(xr + 16 * h);
          parts[0][h] = _mm512_cvtneps_pbh(v);
          const __m512 r1 = _mm512_sub_ps(v, bf16_widen(parts[0][h]));
          parts[1][h] = _mm512_cvtneps_pbh(r1);
          const __m512 r2 = _mm512_sub_ps(r1, bf16_widen(parts[1][h]));
          parts[2][h] = _mm512_cvtneps_pbh(r2);
        }
        for (int p = 0; p < 3; ++p)
          R[p][i] = _mm512_inserti64x4(_mm512_castsi256_si512((__m256i)parts[p][0]), (__m256i)parts[p][1], 1);
      }
      for (int p = 0; p < 3; ++p) {
        transpose16x16_epi32(R[p]);
        uint32_t* dst = buf + p * part_stride + (mb * KP + k0 / 2) * 16;
        for (int i = 0; i < 16; ++i) {
          const int row = (i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1);  // undo the 1<->2 swap
          _mm512_storeu_si512(dst + row * 16, R[p][i]);
        }
      }
    }
  }
}

// y[m, n+r] (+)= c[r][mi] + the K % 32 tail, for the valid x rows of m-block mb. c is transposed in registers
// (16x16 f32) so each x row gets one 16-wide store.
MOE_AMX inline void amx_store(float (*c)[16], float* y, int64_t ldy, const float* x, int64_t ldx, const uint16_t* wn,
                              int64_t n, int64_t mb, int64_t M, int64_t K, int64_t K32, bool acc) {
  const int64_t m_end = M - mb * 16 < 16 ? M - mb * 16 : 16;
  __m512i t[16];
  for (int r = 0; r < 16; ++r) t[r] = _mm512_load_si512(c[r]);
  transpose16x16_epi32(t);  // t[i] holds column ((i & ~3) | (i & 1) << 1 | (i >> 1) & 1) of c
  for (int i = 0; i < 16; ++i) {
    const int64_t mi = (i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1);
    if (mi >= m_end) continue;
    const int64_t m = mb * 16 + mi;
    float* yr = y + m * ldy + n;
    __m512 v = _mm512_castsi512_ps(t[i]);
    if (K32 < K) {  // K % 32 tail: scalar, rare (hidden sizes are multiples of 32)
      alignas(64) float tail[16];
      const float* xr = x + m * ldx;
      for (int r = 0; r < 16; ++r) {
        float s = 0.f;
        for (int64_t k = K32; k < K; ++k) s += xr[k] * bf16_to_f32(wn[r * K + k]);
        tail[r] = s;
      }
      v = _mm512_add_ps(v, _mm512_load_ps(tail));
    }
    if (acc) v = _mm512_add_ps(v, _mm512_loadu_ps(yr));
    _mm512_storeu_ps(yr, v);
  }
}

// NB (1|2) blocks of 16 weight rows x MBK (1|2) blocks of 16 x rows, over all of K32. Tiles: 0..3 = C[nb][mb]
// (0 = n0/mb0, 1 = n0/mb1, 2 = n1/mb0, 3 = n1/mb1), 4..5 = A (weights), 6..7 = B (x parts). Per 32-wide k step:
// NB + 3*MBK tile loads feed 3*NB*MBK tile products.
template <int NB, int MBK>
MOE_AMX inline void amx_block(float* y, int64_t ldy, const float* x, int64_t ldx, const uint16_t* W, int64_t n,
                              int64_t mb, const uint32_t* buf, int64_t part_stride, int64_t M, int64_t K, int64_t K32,
                              bool acc) {
  const int64_t KP = K32 / 2;
  const uint16_t* wn = W + n * K;
  const uint32_t* b0 = buf + mb * KP * 16;
  const uint32_t* b1 = b0 + KP * 16;
  _tile_zero(0);
  if (MBK > 1) _tile_zero(1);
  if (NB > 1) _tile_zero(2);
  if (NB > 1 && MBK > 1) _tile_zero(3);
  for (int64_t kp = 0; kp < KP; kp += 16) {
    _tile_loadd(4, wn + 2 * kp, K * 2);
    if (NB > 1) _tile_loadd(5, wn + 16 * K + 2 * kp, K * 2);
    for (int p = 2; p >= 0; --p) {  // lo, mid, hi: smallest part first
      _tile_loadd(6, b0 + p * part_stride + kp * 16, 64);
      if (MBK > 1) _tile_loadd(7, b1 + p * part_stride + kp * 16, 64);
      _tile_dpbf16ps(0, 4, 6);
      if (NB > 1) _tile_dpbf16ps(2, 5, 6);
      if (MBK > 1) _tile_dpbf16ps(1, 4, 7);
      if (NB > 1 && MBK > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  alignas(64) float c[16][16];
  _tile_stored(0, c, 64);
  amx_store(c, y, ldy, x, ldx, wn, n, mb, M, K, K32, acc);
  if (MBK > 1) { _tile_stored(1, c, 64); amx_store(c, y, ldy, x, ldx, wn, n, mb + 1, M, K, K32, acc); }
  if (NB > 1) { _tile_stored(2, c, 64); amx_store(c, y, ldy, x, ldx, wn + 16 * K, n + 16, mb, M, K, K32, acc); }
  if (NB > 1 && MBK > 1) { _tile_stored(3, c, 64); amx_store(c, y, ldy, x, ldx, wn + 16 * K, n + 16, mb + 1, M, K, K32, acc); }
}

// Packs x into this thread's buffer if the AMX path applies to (dt, M, K), else returns nullptr.
MOE_AMX const void* amx_prepack(const float* x, int64_t ldx, DType dt, int64_t M, int64_t K) {
  const int64_t K32 = K & ~int64_t(31);
  if (dt != DType::BF16 || M < kAmxMinM || K32 == 0) return nullptr;
  const int64_t MB = (M + 15) / 16, part_stride = MB * (K32 / 2) * 16;
  if (t_amx_pack.size() < size_t(3 * part_stride)) t_amx_pack.resize(size_t(3 * part_stride));
  amx_pack_x(t_amx_pack.data(), x, ldx, M, K32, MB);
  return t_amx_pack.data();
}

MOE_AMX void matmul_rows_amx_packed(float* y, int64_t ldy, const float* x, int64_t ldx, const void* Wv, DType dt,
                                    int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc, const void* packed) {
  const uint16_t* W = static_cast<const uint16_t*>(Wv);
  const uint32_t* buf = static_cast<const uint32_t*>(packed);
  const int64_t K32 = K & ~int64_t(31), MB = (M + 15) / 16, part_stride = MB * (K32 / 2) * 16;
  int64_t n = n0;
  if (n1 - n0 >= 16) {
    AmxTileConfig cfg{};
    cfg.palette_id = 1;
    for (int t = 0; t < 8; ++t) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
    for (; n + 32 <= n1; n += 32) {
      int64_t mb = 0;
      for (; mb + 2 <= MB; mb += 2) amx_block<2, 2>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
      if (mb < MB) amx_block<2, 1>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
    }
    if (n + 16 <= n1) {
      int64_t mb = 0;
      for (; mb + 2 <= MB; mb += 2) amx_block<1, 2>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
      if (mb < MB) amx_block<1, 1>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
      n += 16;
    }
    _tile_release();
  }
  if (n < n1) matmul_rows_avx512(y, ldy, x, ldx, Wv, dt, M, n, n1, K, acc);
}

MOE_AMX void matmul_rows_amx(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                             int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  const void* packed = n1 - n0 >= 16 ? amx_prepack(x, ldx, dt, M, K) : nullptr;
  if (!packed) matmul_rows_avx512(y, ldy, x, ldx, W, dt, M, n0, n1, K, acc);
  else matmul_rows_amx_packed(y, ldy, x, ldx, W, dt, M, n0, n1, K, acc, packed);
}

const Kernels kAmx = {"amx-bf16+avx512f", matvec_rows_avx512, matmul_rows_amx, dot_avx2, axpy_avx2, row_convert_avx2,
                      amx_prepack, matmul_rows_amx_packed, dot_rows_avx512, axpy_rows_avx512};
#endif  // MOE_HAVE_X86_DISPATCH

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

void row_to_f32(float* out, const void* W, DType w_dtype, int64_t row, int64_t K) {
  if (is_quant(w_dtype)) {  // an embedding row of a quantized table: reference dequantisation of that row
    dequantize_row(w_dtype, static_cast<const uint8_t*>(W) + size_t(row) * dtype_row_bytes(w_dtype, K), out, K);
    return;
  }
  check_dtype("row_to_f32", w_dtype);
  K_().row_convert(out, W, w_dtype, row, K, 0, K);
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
