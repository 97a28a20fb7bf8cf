// NF4 forward and the dX = dY · W kernels (interface, math and work split in nf4_matmul.h).
//
// Decoding 4-bit codes with SIMD: 16 packed bytes hold 32 codes, element 2i in the high nibble of byte i. Split
// into hi = byte >> 4 and lo = byte & 15 (bytes), then unpacklo/hi_epi8(hi, lo) interleave them back into element
// order (h0 l0 h1 l1 ... = codes of elements 0, 1, 2, 3, ...). Each code indexes the 16-entry NF4 table:
//   AVX-512: vpermps with a 16-float table register (_mm512_permutexvar_ps) — one instruction per 16 codes;
//   AVX2:    two 8-float halves (_mm256_permutevar8x32_ps uses the low 3 bits) blended on bit 3 of the code.
// A dequantised value is NF4[q] * scale with one f32 multiply (exactly the reference's), so tiles are bit-exact.
#include "cpu/nf4_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include "cpu/matmul.h"
#include "quant/quant.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MOE_NX86 1
#else
#define MOE_NX86 0
#endif

namespace moe {

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Portable kernels (also the tails of the SIMD ones).
// ---------------------------------------------------------------------------------------------------------------

// y[0, len) = NF4[q] * scale for `len` (even) elements starting at an even element: bytes p[0, len/2).
void dequant_pairs_portable(const uint8_t* p, float scale, int64_t len, float* y) {
  const float* c = nf4_code();
  for (int64_t i = 0; i < len / 2; ++i) { y[2 * i] = c[p[i] >> 4] * scale; y[2 * i + 1] = c[p[i] & 15] * scale; }
}
// Σ NF4[q_i] x_i over `len` (even) elements starting at an even element (unscaled).
float dot_pairs_portable(const uint8_t* p, const float* x, int64_t len) {
  const float* c = nf4_code();
  float s0 = 0, s1 = 0;
  for (int64_t i = 0; i < len / 2; ++i) { s0 += c[p[i] >> 4] * x[2 * i]; s1 += c[p[i] & 15] * x[2 * i + 1]; }
  return s0 + s1;
}

// Σ_b scale_b Σ_{i<64} NF4[q_{64b+i}] x_{64b+i} over nb whole blocks (a row that starts on a block boundary).
float dot_blocks_portable(const uint8_t* p, const float* x, const float* scales, int64_t nb) {
  float acc = 0;
  for (int64_t b = 0; b < nb; ++b) acc += scales[b] * dot_pairs_portable(p + 32 * b, x + 64 * b, 64);
  return acc;
}

inline float w_load(const void* W, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(W)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(W)[i]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(W)[i]);
  }
}

// dx[m, k] (+)= Σ_{j < nn} dy[m, j] W[j, k]  for m < M, k in [k0, kc): W rows ldw elements apart, dtype f32/f16/bf16.
void dx_cols_portable(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt, int64_t ldw,
                      int64_t M, int64_t nn, int64_t k0, int64_t kc, bool acc) {
  for (int64_t m = 0; m < M; ++m) {
    float* d = dx + m * lddx;
    if (!acc) for (int64_t k = k0; k < kc; ++k) d[k] = 0;
    for (int64_t j = 0; j < nn; ++j) {
      const float a = dy[m * lddy + j];
      for (int64_t k = k0; k < kc; ++k) d[k] += a * w_load(W, dt, j * ldw + k);
    }
  }
}
void dx_block_portable(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt, int64_t ldw,
                       int64_t M, int64_t nn, int64_t kc, bool acc) {
  dx_cols_portable(dx, lddx, dy, lddy, W, dt, ldw, M, nn, 0, kc, acc);
}

struct NKernels {
  const char* name;
  void (*dequant_pairs)(const uint8_t* p, float scale, int64_t len, float* y);
  float (*dot_pairs)(const uint8_t* p, const float* x, int64_t len);
  float (*dot_blocks)(const uint8_t* p, const float* x, const float* scales, int64_t nb);
  // dx[M, kc] (+)= dy[M, nn] · W[nn, kc]
  void (*dx_block)(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt, int64_t ldw,
                   int64_t M, int64_t nn, int64_t kc, bool acc);
};
const NKernels kNPortable{"portable", dequant_pairs_portable, dot_pairs_portable, dot_blocks_portable, dx_block_portable};

#if MOE_NX86
// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C
// ---------------------------------------------------------------------------------------------------------------
#define MOE_NAVX2 __attribute__((target("avx2,fma,f16c")))

// 16 packed bytes -> codes of elements 0..15 (first) and 16..31 (second), one byte each, in element order.
MOE_NAVX2 inline void split16(const uint8_t* p, __m128i& first, __m128i& second) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m4 = _mm_set1_epi8(15);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4), lo = _mm_and_si128(v, m4);
  first = _mm_unpacklo_epi8(hi, lo);
  second = _mm_unpackhi_epi8(hi, lo);
}
// 8 codes (low 8 bytes of c) -> 8 NF4 values.
MOE_NAVX2 inline __m256 lookup8(__m128i c, __m256 tlo, __m256 thi) {
  const __m256i idx = _mm256_cvtepu8_epi32(c);
  const __m256 a = _mm256_permutevar8x32_ps(tlo, idx), b = _mm256_permutevar8x32_ps(thi, idx);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));  // bit 3 -> sign bit selects b
}
MOE_NAVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

MOE_NAVX2 void dequant_pairs_avx2(const uint8_t* p, float scale, int64_t len, float* y) {
  const __m256 tlo = _mm256_loadu_ps(nf4_code()), thi = _mm256_loadu_ps(nf4_code() + 8), s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 32 <= len; i += 32, p += 16, y += 32) {
    __m128i a, b;
    split16(p, a, b);
    _mm256_storeu_ps(y, _mm256_mul_ps(lookup8(a, tlo, thi), s));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(lookup8(_mm_srli_si128(a, 8), tlo, thi), s));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(lookup8(b, tlo, thi), s));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(lookup8(_mm_srli_si128(b, 8), tlo, thi), s));
  }
  dequant_pairs_portable(p, scale, len - i, y);
}

MOE_NAVX2 float dot_pairs_avx2(const uint8_t* p, const float* x, int64_t len) {
  const __m256 tlo = _mm256_loadu_ps(nf4_code()), thi = _mm256_loadu_ps(nf4_code() + 8);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= len; i += 32, p += 16, x += 32) {
    __m128i a, b;
    split16(p, a, b);
    acc0 = _mm256_fmadd_ps(lookup8(a, tlo, thi), _mm256_loadu_ps(x), acc0);
    acc1 = _mm256_fmadd_ps(lookup8(_mm_srli_si128(a, 8), tlo, thi), _mm256_loadu_ps(x + 8), acc1);
    acc0 = _mm256_fmadd_ps(lookup8(b, tlo, thi), _mm256_loadu_ps(x + 16), acc0);
    acc1 = _mm256_fmadd_ps(lookup8(_mm_srli_si128(b, 8), tlo, thi), _mm256_loadu_ps(x + 24), acc1);
  }
  return hsum8(_mm256_add_ps(acc0, acc1)) + dot_pairs_portable(p, x, len - i);
}

// Whole blocks: per block two partial vectors (no horizontal sum), scaled into the row accumulator once.
MOE_NAVX2 float dot_blocks_avx2(const uint8_t* p, const float* x, const float* scales, int64_t nb) {
  const __m256 tlo = _mm256_loadu_ps(nf4_code()), thi = _mm256_loadu_ps(nf4_code() + 8);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, p += 32, x += 64) {
    __m128i a0, b0, a1, b1;
    split16(p, a0, b0);
    split16(p + 16, a1, b1);
    __m256 s0 = _mm256_mul_ps(lookup8(a0, tlo, thi), _mm256_loadu_ps(x));
    __m256 s1 = _mm256_mul_ps(lookup8(_mm_srli_si128(a0, 8), tlo, thi), _mm256_loadu_ps(x + 8));
    s0 = _mm256_fmadd_ps(lookup8(b0, tlo, thi), _mm256_loadu_ps(x + 16), s0);
    s1 = _mm256_fmadd_ps(lookup8(_mm_srli_si128(b0, 8), tlo, thi), _mm256_loadu_ps(x + 24), s1);
    s0 = _mm256_fmadd_ps(lookup8(a1, tlo, thi), _mm256_loadu_ps(x + 32), s0);
    s1 = _mm256_fmadd_ps(lookup8(_mm_srli_si128(a1, 8), tlo, thi), _mm256_loadu_ps(x + 40), s1);
    s0 = _mm256_fmadd_ps(lookup8(b1, tlo, thi), _mm256_loadu_ps(x + 48), s0);
    s1 = _mm256_fmadd_ps(lookup8(_mm_srli_si128(b1, 8), tlo, thi), _mm256_loadu_ps(x + 56), s1);
    acc = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), _mm256_set1_ps(scales[b]), acc);
  }
  return hsum8(acc);
}

MOE_NAVX2 inline __m256 wload8(const void* W, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return _mm256_loadu_ps(static_cast<const float*>(W) + i);
    case DType::F16: return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(W) + i)));
    default: {
      const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(W) + i)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    }
  }
}

// R rows of dx x NV vectors of 8 columns at column k: acc[r][v] = Σ_j dy[r, j] W[j, k + 8v ..].
// U = 2 for R <= 2: two accumulator sets over rows j, j + 1 of W (enough independent FMA chains; see the AVX-512 one).
template <int R, int NV, int U = (R <= 2 ? 2 : 1)>
MOE_NAVX2 void dx_micro_avx2(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt,
                             int64_t ldw, int64_t nn, int64_t k, bool acc) {
  __m256 c[U][R][NV];
  for (int u = 0; u < U; ++u) for (int r = 0; r < R; ++r) for (int v = 0; v < NV; ++v) c[u][r][v] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + U <= nn; j += U)
    for (int u = 0; u < U; ++u) {
      __m256 w[NV];
      for (int v = 0; v < NV; ++v) w[v] = wload8(W, dt, (j + u) * ldw + k + 8 * v);
      for (int r = 0; r < R; ++r) {
        const __m256 a = _mm256_broadcast_ss(dy + r * lddy + j + u);
        for (int v = 0; v < NV; ++v) c[u][r][v] = _mm256_fmadd_ps(a, w[v], c[u][r][v]);
      }
    }
  for (; j < nn; ++j) {
    __m256 w[NV];
    for (int v = 0; v < NV; ++v) w[v] = wload8(W, dt, j * ldw + k + 8 * v);
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(dy + r * lddy + j);
      for (int v = 0; v < NV; ++v) c[0][r][v] = _mm256_fmadd_ps(a, w[v], c[0][r][v]);
    }
  }
  for (int u = 1; u < U; ++u) for (int r = 0; r < R; ++r) for (int v = 0; v < NV; ++v) c[0][r][v] = _mm256_add_ps(c[0][r][v], c[u][r][v]);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* d = dx + r * lddx + k + 8 * v;
      _mm256_storeu_ps(d, acc ? _mm256_add_ps(_mm256_loadu_ps(d), c[0][r][v]) : c[0][r][v]);
    }
}
template <int R>
MOE_NAVX2 void dx_rows_avx2(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt,
                            int64_t ldw, int64_t nn, int64_t kc, bool acc) {
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) dx_micro_avx2<R, 2>(dx, lddx, dy, lddy, W, dt, ldw, nn, k, acc);
  for (; k + 8 <= kc; k += 8) dx_micro_avx2<R, 1>(dx, lddx, dy, lddy, W, dt, ldw, nn, k, acc);
  if (k < kc) dx_cols_portable(dx, lddx, dy, lddy, W, dt, ldw, R, nn, k, kc, acc);
}
MOE_NAVX2 void dx_block_avx2(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt,
                             int64_t ldw, int64_t M, int64_t nn, int64_t kc, bool acc) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) dx_rows_avx2<4>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc);
  switch (M - m) {
    case 3: dx_rows_avx2<3>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc); break;
    case 2: dx_rows_avx2<2>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc); break;
    case 1: dx_rows_avx2<1>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc); break;
    default: break;
  }
}
const NKernels kNAvx2{"avx2", dequant_pairs_avx2, dot_pairs_avx2, dot_blocks_avx2, dx_block_avx2};

// ---------------------------------------------------------------------------------------------------------------
// AVX-512F (same structure, 16 lanes; the whole NF4 table fits one register)
// ---------------------------------------------------------------------------------------------------------------
// GCC 12 flags its own _mm512_undefined_*() (inside cvtepu8/16, permutexvar, cvtph) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define MOE_NAVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

MOE_NAVX512 void dequant_pairs_avx512(const uint8_t* p, float scale, int64_t len, float* y) {
  const __m512 t = _mm512_loadu_ps(nf4_code()), s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 32 <= len; i += 32, p += 16, y += 32) {
    __m128i a, b;
    split16(p, a, b);
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(a), t), s));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(b), t), s));
  }
  dequant_pairs_portable(p, scale, len - i, y);
}

MOE_NAVX512 float dot_pairs_avx512(const uint8_t* p, const float* x, int64_t len) {
  const __m512 t = _mm512_loadu_ps(nf4_code());
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= len; i += 32, p += 16, x += 32) {
    __m128i a, b;
    split16(p, a, b);
    acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(a), t), _mm512_loadu_ps(x), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(b), t), _mm512_loadu_ps(x + 16), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + dot_pairs_portable(p, x, len - i);
}

MOE_NAVX512 float dot_blocks_avx512(const uint8_t* p, const float* x, const float* scales, int64_t nb) {
  const __m512 t = _mm512_loadu_ps(nf4_code());
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, p += 32, x += 64) {
    __m128i a0, b0, a1, b1;
    split16(p, a0, b0);
    split16(p + 16, a1, b1);
    __m512 s0 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(a0), t), _mm512_loadu_ps(x));
    __m512 s1 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(b0), t), _mm512_loadu_ps(x + 16));
    s0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(a1), t), _mm512_loadu_ps(x + 32), s0);
    s1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(b1), t), _mm512_loadu_ps(x + 48), s1);
    // two row accumulators (even / odd blocks) halve the dependency chain through the scaling FMA
    if (b & 1) acc1 = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), _mm512_set1_ps(scales[b]), acc1);
    else acc0 = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), _mm512_set1_ps(scales[b]), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

MOE_NAVX512 inline __m512 wload16(const void* W, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return _mm512_loadu_ps(static_cast<const float*>(W) + i);
    case DType::F16: return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(W) + i)));
    default: {
      const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(W) + i)));
      return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    }
  }
}
// U = 2 (for R <= 2): rows j and j + 1 of W go to two accumulator sets, so that 2 * R * NV >= 8 independent FMA
// chains cover the FMA latency (4 cycles x 2 ports); with R = 1 a single set of 4 chains measured ~2x slower.
template <int R, int NV, int U = (R <= 2 ? 2 : 1)>
MOE_NAVX512 void dx_micro_avx512(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt,
                                 int64_t ldw, int64_t nn, int64_t k, bool acc) {
  __m512 c[U][R][NV];
  for (int u = 0; u < U; ++u) for (int r = 0; r < R; ++r) for (int v = 0; v < NV; ++v) c[u][r][v] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + U <= nn; j += U)
    for (int u = 0; u < U; ++u) {
      __m512 w[NV];
      for (int v = 0; v < NV; ++v) w[v] = wload16(W, dt, (j + u) * ldw + k + 16 * v);
      for (int r = 0; r < R; ++r) {
        const __m512 a = _mm512_set1_ps(dy[r * lddy + j + u]);
        for (int v = 0; v < NV; ++v) c[u][r][v] = _mm512_fmadd_ps(a, w[v], c[u][r][v]);
      }
    }
  for (; j < nn; ++j) {
    __m512 w[NV];
    for (int v = 0; v < NV; ++v) w[v] = wload16(W, dt, j * ldw + k + 16 * v);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(dy[r * lddy + j]);
      for (int v = 0; v < NV; ++v) c[0][r][v] = _mm512_fmadd_ps(a, w[v], c[0][r][v]);
    }
  }
  for (int u = 1; u < U; ++u) for (int r = 0; r < R; ++r) for (int v = 0; v < NV; ++v) c[0][r][v] = _mm512_add_ps(c[0][r][v], c[u][r][v]);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* d = dx + r * lddx + k + 16 * v;
      _mm512_storeu_ps(d, acc ? _mm512_add_ps(_mm512_loadu_ps(d), c[0][r][v]) : c[0][r][v]);
    }
}
template <int R>
MOE_NAVX512 void dx_rows_avx512(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt,
                                int64_t ldw, int64_t nn, int64_t kc, bool acc) {
  int64_t k = 0;
  for (; k + 64 <= kc; k += 64) dx_micro_avx512<R, 4>(dx, lddx, dy, lddy, W, dt, ldw, nn, k, acc);
  for (; k + 32 <= kc; k += 32) dx_micro_avx512<R, 2>(dx, lddx, dy, lddy, W, dt, ldw, nn, k, acc);
  for (; k + 16 <= kc; k += 16) dx_micro_avx512<R, 1>(dx, lddx, dy, lddy, W, dt, ldw, nn, k, acc);
  if (k < kc) dx_cols_portable(dx, lddx, dy, lddy, W, dt, ldw, R, nn, k, kc, acc);
}
MOE_NAVX512 void dx_block_avx512(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt,
                                 int64_t ldw, int64_t M, int64_t nn, int64_t kc, bool acc) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) dx_rows_avx512<4>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc);
  switch (M - m) {
    case 3: dx_rows_avx512<3>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc); break;
    case 2: dx_rows_avx512<2>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc); break;
    case 1: dx_rows_avx512<1>(dx + m * lddx, lddx, dy + m * lddy, lddy, W, dt, ldw, nn, kc, acc); break;
    default: break;
  }
}
const NKernels kNAvx512{"avx512", dequant_pairs_avx512, dot_pairs_avx512, dot_blocks_avx512, dx_block_avx512};
#endif  // MOE_NX86

// Follow the dense kernels' choice (simd_use_path / MOE_SIMD): the names there are "amx-bf16+avx512f",
// "avx512f+fma+f16c", "avx2+fma+f16c", "portable" — each implies the CPU has what the matching path here needs.
const NKernels& NK() {
#if MOE_NX86
  const char* s = simd_name();
  if (std::strncmp(s, "amx", 3) == 0 || std::strncmp(s, "avx512", 6) == 0) return kNAvx512;
  if (std::strncmp(s, "avx2", 4) == 0) return kNAvx2;
#endif
  return kNPortable;
}

// f32 scales of blocks [b0, b1) in thread-local scratch (one call per row or tile: a call per block was ~40% of
// the decode time).
thread_local std::vector<float> t_scales;
const float* block_scales(const NF4Tensor& W, int64_t b0, int64_t b1) {
  if (t_scales.size() < size_t(b1 - b0)) t_scales.resize(size_t(b1 - b0));
  nf4_block_scales(W, b0, b1, t_scales.data());
  return t_scales.data();
}

// Elements [e0, e1) of W into y: per block segment, an odd head / tail nibble scalar, the even-aligned pairs SIMD.
void dequant_range(const NKernels& kr, const NF4Tensor& W, int64_t e0, int64_t e1, float* y) {
  if (e0 >= e1) return;
  const float* c = nf4_code();
  const uint8_t* p = W.packed.data();
  const int64_t bfirst = e0 / NF4_BLOCK;
  const float* sc = block_scales(W, bfirst, (e1 - 1) / NF4_BLOCK + 1);
  for (int64_t e = e0; e < e1;) {
    const int64_t b = e / NF4_BLOCK, end = std::min(e1, (b + 1) * NF4_BLOCK);
    const float s = sc[b - bfirst];
    if (e & 1) { y[e - e0] = c[p[e >> 1] & 15] * s; ++e; }
    const int64_t len = (end - e) & ~int64_t(1);
    kr.dequant_pairs(p + (e >> 1), s, len, y + (e - e0));
    e += len;
    if (e < end) { y[e - e0] = c[p[e >> 1] >> 4] * s; ++e; }
  }
}

// W row n · x, fused (K even: the row starts on a byte and every block segment has even length).
float row_dot(const NKernels& kr, const NF4Tensor& W, int64_t n, const float* x) {
  const int64_t K = W.cols, e0 = n * K;
  if (K == 0) return 0;
  const int64_t bfirst = e0 / NF4_BLOCK;
  const float* sc = block_scales(W, bfirst, (e0 + K - 1) / NF4_BLOCK + 1);
  if (e0 % NF4_BLOCK == 0 && K % NF4_BLOCK == 0) return kr.dot_blocks(W.packed.data() + e0 / 2, x, sc, K / NF4_BLOCK);
  float acc = 0;
  for (int64_t e = e0; e < e0 + K;) {
    const int64_t b = e / NF4_BLOCK, end = std::min(e0 + K, (b + 1) * NF4_BLOCK);
    acc += sc[b - bfirst] * kr.dot_pairs(W.packed.data() + (e >> 1), x + (e - e0), end - e);
    e = end;
  }
  return acc;
}

constexpr int64_t kTileRows = 8;    // forward: weight rows dequantised per tile (as qmatmul)
thread_local std::vector<float> t_tile;

float* tile_buf(size_t n) {
  if (t_tile.size() < n) t_tile.resize(n);
  return t_tile.data();
}

// dX work split: each thread owns chunks of kc columns and walks all N rows of W in tiles of `rows` x kc.
//   M >= kDxTileMinM: kc = 256 (halved while that leaves fewer than 2 chunks per thread, down to 16 or the quantized
//     block), 64-row tiles (a 64 KiB f32 tile in L2, dX kept in registers over 64 rows). Measured on 2048 x 2048 bf16,
//     M = 64, 1 thread: 111-120 GFLOP/s at kc = 128-256, 66-71 at kc = 1024.
//   M < kDxTileMinM (a token or two routed to an expert): the register block has too little reuse; stream rows
//     instead: kc = K / threads, and per row n one converted segment w = W[n, k0 : k0 + kc] and an axpy
//     dX[m, k0 : k0 + kc] += dY[m, n] * w per m (the contiguous segment keeps the prefetchers busy).
constexpr int64_t kDxTileMinM = 4;
struct DxSplit { int64_t kc, rows; };
DxSplit dx_split(int64_t K, int nt, int64_t minc, int64_t M) {
  const int64_t unit = std::max<int64_t>(minc, 16);
  if (M < kDxTileMinM) {
    const int64_t kc = (K + nt - 1) / nt;
    return {std::max(unit, (kc + unit - 1) / unit * unit), 1};
  }
  int64_t kc = std::max<int64_t>(256, unit);
  while (kc / 2 >= unit && (K + kc - 1) / kc < 2 * nt) kc /= 2;
  return {kc, 64};
}

// Tile rows are kc + 16 floats apart: with a power-of-two stride (kc = 256: 1 KiB) the 64 rows the kernel walks
// down map to 16 lines per L1 set (48 KiB, 12-way) and evict each other.
constexpr int64_t kTilePad = 16;

// dx[m, 0:w] (+)= Σ_{j < nn} dy[m, j] tile[j, 0:w] as one axpy per (m, j) (vec_axpy_f32: the dense kernels' SIMD).
void dx_axpy_rows(float* dx, int64_t lddx, const float* dy, int64_t lddy, const float* tile, int64_t ldt, int64_t M,
                  int64_t nn, int64_t w, bool acc) {
  if (!acc) for (int64_t m = 0; m < M; ++m) std::fill(dx + m * lddx, dx + m * lddx + w, 0.0f);
  for (int64_t j = 0; j < nn; ++j)
    for (int64_t m = 0; m < M; ++m) vec_axpy_f32(dx + m * lddx, dy[m * lddy + j], tile + j * ldt, w);
}

void check_dense_or_quant(DType t) {
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16 && !is_quant(t))
    throw std::invalid_argument(std::string("matmul_dx: weight dtype ") + dtype_name(t) +
                                " is not supported (expected f32, f16, bf16, q8_0, q4_0 or q4_k)");
}

}  // namespace

const char* nf4_simd_name() { return NK().name; }

void nf4_dequantize_range_fast(const NF4Tensor& W, int64_t e0, int64_t e1, float* y) {
  if (e0 < 0 || e1 > W.n || e0 > e1) throw std::invalid_argument("nf4_dequantize_range_fast: range outside the tensor");
  dequant_range(NK(), W, e0, e1, y);
}

void nf4_matmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, const NF4Tensor& W, int64_t M, bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  std::vector<float> row(size_t(std::max<int64_t>(K, 1)));
  for (int64_t n = 0; n < N; ++n) {
    nf4_dequantize_range(W, n * K, (n + 1) * K, row.data());
    for (int64_t m = 0; m < M; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(x[m * ldx + k]) * row[size_t(k)];
      y[m * ldy + n] = accumulate ? float(y[m * ldy + n] + s) : float(s);
    }
  }
}

void nf4_matmul(ThreadPool* pool, float* y, int64_t ldy, const float* x, int64_t ldx, const NF4Tensor& W, int64_t M,
                bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  if (M <= 0 || N <= 0) return;
  const NKernels& kr = NK();
  const bool threads = pool && pool->size() > 1 && N * M * K >= 2 * 65536;
  if (M == 1 && K % 2 == 0) {
    auto rows = [&](int64_t n0, int64_t n1, int) {
      for (int64_t n = n0; n < n1; ++n) {
        const float s = row_dot(kr, W, n, x);
        y[n] = accumulate ? y[n] + s : s;
      }
    };
    // ~64K weights per chunk dwarfs the cost of waking a worker (as in matmul()).
    if (threads) pool->run(N, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, K)), [&](int64_t a, int64_t b, int th) { rows(a, b, th); });
    else rows(0, N, 0);
    return;
  }
  // Tiles: kTileRows rows dequantised into f32 (contiguous elements [n K, (n + nr) K)), then the dense kernel.
  auto tiles = [&](int64_t t0, int64_t t1, int) {
    float* tile = tile_buf(size_t(kTileRows * K));
    for (int64_t n = t0 * kTileRows; n < std::min(N, t1 * kTileRows); n += kTileRows) {
      const int64_t nr = std::min(kTileRows, N - n);
      dequant_range(kr, W, n * K, (n + nr) * K, tile);
      matmul_st(y + n, ldy, x, ldx, tile, DType::F32, M, nr, K, accumulate);
    }
  };
  const int64_t nt = (N + kTileRows - 1) / kTileRows;
  if (threads && nt >= 2) pool->run(nt, 1, [&](int64_t a, int64_t b, int th) { tiles(a, b, th); });
  else tiles(0, nt, 0);
}

void nf4_matmul_dx_ref(float* dx, int64_t lddx, const float* dy, int64_t lddy, const NF4Tensor& W, int64_t M,
                       bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  std::vector<double> acc(size_t(M * K), 0.0);
  std::vector<float> row(size_t(std::max<int64_t>(K, 1)));
  for (int64_t n = 0; n < N; ++n) {
    nf4_dequantize_range(W, n * K, (n + 1) * K, row.data());
    for (int64_t m = 0; m < M; ++m) {
      const double a = dy[m * lddy + n];
      for (int64_t k = 0; k < K; ++k) acc[size_t(m * K + k)] += a * row[size_t(k)];
    }
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      float& o = dx[m * lddx + k];
      o = accumulate ? float(o + acc[size_t(m * K + k)]) : float(acc[size_t(m * K + k)]);
    }
}

void nf4_matmul_dx(ThreadPool* pool, float* dx, int64_t lddx, const float* dy, int64_t lddy, const NF4Tensor& W,
                   int64_t M, bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  if (M <= 0 || K <= 0) return;
  const NKernels& kr = NK();
  if (N <= 0) {  // an empty sum
    if (!accumulate) for (int64_t m = 0; m < M; ++m) std::fill(dx + m * lddx, dx + m * lddx + K, 0.0f);
    return;
  }
  const int nt = pool ? pool->size() : 1;
  const DxSplit sp = dx_split(K, nt, 16, M);
  const int64_t kc = sp.kc, kDxTileRows = sp.rows, nchunks = (K + kc - 1) / kc;
  auto chunks = [&](int64_t c0, int64_t c1, int) {
    float* tile = tile_buf(size_t(kDxTileRows * (kc + kTilePad)));
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k0 = c * kc, w = std::min(kc, K - k0), ldt = w + kTilePad;
      for (int64_t n0 = 0; n0 < N; n0 += kDxTileRows) {
        const int64_t nr = std::min(kDxTileRows, N - n0);
        for (int64_t r = 0; r < nr; ++r) dequant_range(kr, W, (n0 + r) * K + k0, (n0 + r) * K + k0 + w, tile + r * ldt);
        if (M < kDxTileMinM) { dx_axpy_rows(dx + k0, lddx, dy + n0, lddy, tile, ldt, M, nr, w, accumulate || n0 > 0); continue; }
        kr.dx_block(dx + k0, lddx, dy + n0, lddy, tile, DType::F32, ldt, M, nr, w, accumulate || n0 > 0);
      }
    }
  };
  if (pool && nt > 1 && nchunks > 1 && M * N * K >= 2 * 65536) pool->run(nchunks, 1, [&](int64_t a, int64_t b, int th) { chunks(a, b, th); });
  else chunks(0, nchunks, 0);
}

void matmul_dx_ref(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType t, int64_t M,
                   int64_t N, int64_t K, bool accumulate) {
  check_dense_or_quant(t);
  std::vector<double> acc(size_t(M * K), 0.0);
  std::vector<float> row(size_t(std::max<int64_t>(K, 1)));
  for (int64_t n = 0; n < N; ++n) {
    row_to_f32(row.data(), W, t, n, K);
    for (int64_t m = 0; m < M; ++m) {
      const double a = dy[m * lddy + n];
      for (int64_t k = 0; k < K; ++k) acc[size_t(m * K + k)] += a * row[size_t(k)];
    }
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      float& o = dx[m * lddx + k];
      o = accumulate ? float(o + acc[size_t(m * K + k)]) : float(acc[size_t(m * K + k)]);
    }
}

void matmul_dx(ThreadPool* pool, float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType t,
               int64_t M, int64_t N, int64_t K, bool accumulate) {
  check_dense_or_quant(t);
  const bool quant = is_quant(t);
  const int64_t qb = quant ? qblock_size(t) : 1;
  if (quant && K % qb != 0)
    throw std::invalid_argument(std::string("matmul_dx: row length ") + std::to_string(K) + " is not a multiple of the " +
                                dtype_name(t) + " block of " + std::to_string(qb));
  if (M <= 0 || K <= 0) return;
  if (N <= 0) {
    if (!accumulate) for (int64_t m = 0; m < M; ++m) std::fill(dx + m * lddx, dx + m * lddx + K, 0.0f);
    return;
  }
  const NKernels& kr = NK();
  const int nt = pool ? pool->size() : 1;
  const DxSplit sp = dx_split(K, nt, quant ? qb : 16, M);
  const int64_t kc = sp.kc, kDxTileRows = sp.rows, nchunks = (K + kc - 1) / kc;
  const uint8_t* Wb = static_cast<const uint8_t*>(W);
  auto chunks = [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k0 = c * kc, w = std::min(kc, K - k0), ldt = w + kTilePad;
      // W[n0 : n0 + rows, k0 : k0 + w] into an f32 tile (rows ldt floats apart), then the dense kernel.
      // Dense dtypes are tiled too: streaming the kernel straight down the stored rows (K elements apart: a new
      // 4 KiB-strided row per step of its inner loop) measured 1.3-1.9x slower for bf16 2048 x 2048, M = 64.
      float* tile = tile_buf(size_t(kDxTileRows * (kc + kTilePad)));
      const size_t rb = dtype_row_bytes(t, K);
      const size_t off = quant ? size_t(k0 / qb) * size_t(qblock_bytes(t)) : size_t(k0) * dtype_size(t);
      for (int64_t n0 = 0; n0 < N; n0 += kDxTileRows) {
        const int64_t nr = std::min(kDxTileRows, N - n0);
        for (int64_t r = 0; r < nr; ++r) {
          const uint8_t* src = Wb + size_t(n0 + r) * rb + off;  // whole blocks (quantized: k0, w are multiples)
          if (quant) dequantize_row(t, src, tile + r * ldt, w);
          else row_to_f32(tile + r * ldt, src, t, 0, w);
        }
        if (M < kDxTileMinM) { dx_axpy_rows(dx + k0, lddx, dy + n0, lddy, tile, ldt, M, nr, w, accumulate || n0 > 0); continue; }
        kr.dx_block(dx + k0, lddx, dy + n0, lddy, tile, DType::F32, ldt, M, nr, w, accumulate || n0 > 0);
      }
    }
  };
  if (pool && nt > 1 && nchunks > 1 && M * N * K >= 2 * 65536) pool->run(nchunks, 1, [&](int64_t a, int64_t b, int th) { chunks(a, b, th); });
  else chunks(0, nchunks, 0);
}

}  // namespace moe
