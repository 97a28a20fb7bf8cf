// AVX2 + FMA + F16C kernels for Q8_0 / Q4_0 / Q4_K weights (math in qmatmul.h, the driver in qmatmul.cpp).
// Compiled per function with target attributes; used only when cpuid says the CPU has all three.
#include "cpu/qmatmul_kernels.h"

#if MOE_QX86
#include "quant/quant.h"

#define MOE_QAVX2 __attribute__((target("avx2,fma,f16c")))

namespace moe::cpu_qmatmul {

namespace {

MOE_QAVX2 inline float h2f(uint16_t h) { return _cvtsh_ss(h); }  // F16C: one instruction, exact
MOE_QAVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// Σ u_i * s_i over 32 bytes (u unsigned <= 255 paired sums fit in i16 for our ranges) as 8 int32 lanes.
MOE_QAVX2 inline __m256i dot_u8i8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
MOE_QAVX2 inline __m256 widen8(const int8_t* p) {  // 8 int8 -> 8 floats
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
MOE_QAVX2 inline __m256 widen8u(__m128i v8) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v8)); }

MOE_QAVX2 inline __m256i load32(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

#define QROWS_TARGET MOE_QAVX2
#include "cpu/qmatmul_rows.inc"
#undef QROWS_TARGET

MOE_QAVX2 void dot_q8_rows_avx2(DType t, const uint8_t* w, const BlockQ8X* xq, const float* xds, int64_t stride, int R, int64_t K,
                                float* out) {
  rows_upto<4>(t, w, xq, xds, stride, R, K, out);
}

}  // namespace

MOE_QAVX2 float dot_f32_avx2(DType t, const uint8_t* w, const float* x, int64_t K) {
  __m256 acc = _mm256_setzero_ps();
  float corr = 0;
  if (t == DType::Q8_0) {
    const BlockQ8_0* B = reinterpret_cast<const BlockQ8_0*>(w);
    for (int64_t b = 0; b < K / 32; ++b) {
      const float* xb = x + b * 32;
      __m256 s = _mm256_mul_ps(widen8(B[b].qs), _mm256_loadu_ps(xb));
      s = _mm256_fmadd_ps(widen8(B[b].qs + 8), _mm256_loadu_ps(xb + 8), s);
      s = _mm256_fmadd_ps(widen8(B[b].qs + 16), _mm256_loadu_ps(xb + 16), s);
      s = _mm256_fmadd_ps(widen8(B[b].qs + 24), _mm256_loadu_ps(xb + 24), s);
      acc = _mm256_fmadd_ps(s, _mm256_set1_ps(h2f(B[b].d)), acc);
    }
  } else if (t == DType::Q4_0) {
    const BlockQ4_0* B = reinterpret_cast<const BlockQ4_0*>(w);
    const __m128i m4 = _mm_set1_epi8(15);
    const __m256 eight = _mm256_set1_ps(8.0f);
    for (int64_t b = 0; b < K / 32; ++b) {
      const float* xb = x + b * 32;
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(B[b].qs));
      const __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
      __m256 s = _mm256_mul_ps(_mm256_sub_ps(widen8u(lo), eight), _mm256_loadu_ps(xb));
      s = _mm256_fmadd_ps(_mm256_sub_ps(widen8u(_mm_srli_si128(lo, 8)), eight), _mm256_loadu_ps(xb + 8), s);
      s = _mm256_fmadd_ps(_mm256_sub_ps(widen8u(hi), eight), _mm256_loadu_ps(xb + 16), s);
      s = _mm256_fmadd_ps(_mm256_sub_ps(widen8u(_mm_srli_si128(hi, 8)), eight), _mm256_loadu_ps(xb + 24), s);
      acc = _mm256_fmadd_ps(s, _mm256_set1_ps(h2f(B[b].d)), acc);
    }
  } else {
    const BlockQ4_K* B = reinterpret_cast<const BlockQ4_K*>(w);
    const __m128i m4 = _mm_set1_epi8(15);
    for (int64_t b = 0; b < K / 256; ++b) {
      const float d = h2f(B[b].d), dmin = h2f(B[b].dmin);
      const float* xb = x + b * 256;
      for (int g = 0; g < 4; ++g) {
        uint8_t sc0, m0, sc1, m1;
        q4k_scale_min(2 * g, B[b].scales, sc0, m0); q4k_scale_min(2 * g + 1, B[b].scales, sc1, m1);
        const float* xa = xb + 64 * g; const float* xc = xa + 32;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, xs0 = s0, xs1 = s0;
        for (int h = 0; h < 2; ++h) {
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(B[b].qs + 32 * g + 16 * h));
          const __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
          const __m256 a0 = _mm256_loadu_ps(xa + 16 * h), a1 = _mm256_loadu_ps(xa + 16 * h + 8);
          const __m256 c0 = _mm256_loadu_ps(xc + 16 * h), c1 = _mm256_loadu_ps(xc + 16 * h + 8);
          s0 = _mm256_fmadd_ps(widen8u(lo), a0, s0); s0 = _mm256_fmadd_ps(widen8u(_mm_srli_si128(lo, 8)), a1, s0);
          s1 = _mm256_fmadd_ps(widen8u(hi), c0, s1); s1 = _mm256_fmadd_ps(widen8u(_mm_srli_si128(hi, 8)), c1, s1);
          xs0 = _mm256_add_ps(xs0, _mm256_add_ps(a0, a1)); xs1 = _mm256_add_ps(xs1, _mm256_add_ps(c0, c1));
        }
        acc = _mm256_fmadd_ps(s0, _mm256_set1_ps(d * float(sc0)), acc);
        acc = _mm256_fmadd_ps(s1, _mm256_set1_ps(d * float(sc1)), acc);
        acc = _mm256_fnmadd_ps(xs0, _mm256_set1_ps(dmin * float(m0)), acc);
        acc = _mm256_fnmadd_ps(xs1, _mm256_set1_ps(dmin * float(m1)), acc);
      }
    }
  }
  return hsum8(acc) + corr;
}

const QKernels kQAvx2{"avx2", dot_q8_rows_avx2, dot_f32_avx2, 4, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr};

}  // namespace moe::cpu_qmatmul
#endif  // MOE_QX86
