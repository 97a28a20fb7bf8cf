// Internal to cpu/ (not part of nf4_matmul.h): the NF4 / dX kernels' table and what its per-ISA files share.
//   nf4_matmul.cpp         the drivers (forward, dX, work split, scratch), the scalar references, the portable
//                          table and the choice of a table (it follows the dense kernels' simd_name())
//   nf4_matmul_avx2.cpp    kNAvx2: AVX2 + FMA + F16C
//   nf4_matmul_avx512.cpp  kNAvx512: AVX-512F (with AVX2's nibble split)
// SIMD functions carry their own target attributes (no per-file -m flags), so one binary runs on every CPU.
#pragma once
#include <cstdint>
#include "format/dtype.h"
#include "quant/nf4.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MOE_NX86 1
#else
#define MOE_NX86 0
#endif

// Hidden: the library's insides, bound locally under -fPIC (as when they were file-static; see matmul_kernels.h).
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif
namespace moe::cpu_nf4 {

struct NKernels {
  const char* name;
  void (*dequant_pairs)(const uint8_t* p, float scale, int64_t len, float* y);
  float (*dot_pairs)(const uint8_t* p, const float* x, int64_t len);
  float (*dot_blocks)(const uint8_t* p, const float* x, const float* scales, int64_t nb);
  // dx[M, kc] (+)= dy[M, nn] · W[nn, kc]
  void (*dx_block)(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt, int64_t ldw,
                   int64_t M, int64_t nn, int64_t kc, bool acc);
};

#if MOE_NX86
extern const NKernels kNAvx2, kNAvx512;  // nf4_matmul_avx2.cpp, nf4_matmul_avx512.cpp
#endif

// ---------------------------------------------------------------------------------------------------------------
// Portable kernels that are also the tails of the SIMD ones. File-local (an unnamed namespace): each file compiles
// its own copy, as when they all shared one file. dx_cols_portable stays an out-of-line baseline function, as it
// was there: inlined into an AVX2 function, its `d[k] += a * w` could be contracted into FMAs (GCC's default
// -ffp-contract=fast) and round differently from the portable path's.
// ---------------------------------------------------------------------------------------------------------------
#if defined(__GNUC__)
#define MOE_NF4_NOINLINE __attribute__((noinline))
#else
#define MOE_NF4_NOINLINE  // (no SIMD files there: nothing to keep it out of)
#endif
namespace {
// [[maybe_unused]]: an ISA file compiled without the x86 dispatch (MOE_NX86 0) includes them and uses none.

// y[0, len) = NF4[q] * scale for `len` (even) elements starting at an even element: bytes p[0, len/2).
[[maybe_unused]] void dequant_pairs_portable(const uint8_t* p, float scale, int64_t len, float* y) {
  const float* c = nf4_code();
  for (int64_t i = 0; i < len / 2; ++i) { y[2 * i] = c[p[i] >> 4] * scale; y[2 * i + 1] = c[p[i] & 15] * scale; }
}
// Σ NF4[q_i] x_i over `len` (even) elements starting at an even element (unscaled).
[[maybe_unused]] float dot_pairs_portable(const uint8_t* p, const float* x, int64_t len) {
  const float* c = nf4_code();
  float s0 = 0, s1 = 0;
  for (int64_t i = 0; i < len / 2; ++i) { s0 += c[p[i] >> 4] * x[2 * i]; s1 += c[p[i] & 15] * x[2 * i + 1]; }
  return s0 + s1;
}

inline float w_load(const void* W, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(W)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(W)[i]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(W)[i]);
  }
}

// dx[m, k] (+)= Σ_{j < nn} dy[m, j] W[j, k]  for m < M, k in [k0, kc): W rows ldw elements apart, dtype f32/f16/bf16.
[[maybe_unused]] MOE_NF4_NOINLINE void dx_cols_portable(float* dx, int64_t lddx, const float* dy, int64_t lddy,
                                                        const void* W, DType dt, int64_t ldw, int64_t M, int64_t nn,
                                                        int64_t k0, int64_t kc, bool acc) {
  for (int64_t m = 0; m < M; ++m) {
    float* d = dx + m * lddx;
    if (!acc) for (int64_t k = k0; k < kc; ++k) d[k] = 0;
    for (int64_t j = 0; j < nn; ++j) {
      const float a = dy[m * lddy + j];
      for (int64_t k = k0; k < kc; ++k) d[k] += a * w_load(W, dt, j * ldw + k);
    }
  }
}

}  // namespace

#if MOE_NX86
#define MOE_NAVX2 __attribute__((target("avx2,fma,f16c")))

// 16 packed bytes -> codes of elements 0..15 (first) and 16..31 (second), one byte each, in element order.
// (The AVX2 and the AVX-512 kernels both decode with it.)
MOE_NAVX2 inline void split16(const uint8_t* p, __m128i& first, __m128i& second) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m4 = _mm_set1_epi8(15);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4), lo = _mm_and_si128(v, m4);
  first = _mm_unpacklo_epi8(hi, lo);
  second = _mm_unpackhi_epi8(hi, lo);
}
#endif  // MOE_NX86

}  // namespace moe::cpu_nf4
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
