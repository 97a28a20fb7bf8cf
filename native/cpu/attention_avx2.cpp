// AVX2 + FMA lanes for the blocked attention (attention_tile.inc): 8 query rows per vector, 4 keys × 2 vectors of
// score accumulators and 4 head columns × 2 vectors of output accumulators (the 16 ymm registers hold them, the
// row vectors and a broadcast).
#include "cpu/attention_kernels.h"
#include "format/dtype.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <algorithm>
#include <cmath>

namespace moe::cpu_attention {
namespace {

#define ATTN_TARGET __attribute__((target("avx2,fma,f16c")))

struct Vec {
  using V = __m256;
  static constexpr const char* name = "avx2";
  static constexpr int L = 8, KB = 4, DC = 4, GV = 2;
  ATTN_TARGET static V zero() { return _mm256_setzero_ps(); }
  ATTN_TARGET static V load(const float* p) { return _mm256_loadu_ps(p); }
  ATTN_TARGET static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  ATTN_TARGET static V set1(float x) { return _mm256_set1_ps(x); }
  ATTN_TARGET static V load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  ATTN_TARGET static void store_f16(uint16_t* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
  ATTN_TARGET static V load_i8(const int8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))); }
  ATTN_TARGET static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  ATTN_TARGET static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  ATTN_TARGET static V add(V a, V b) { return _mm256_add_ps(a, b); }
  ATTN_TARGET static V max(V a, V b) { return _mm256_max_ps(a, b); }
  ATTN_TARGET static V select_le(V a, V b, V x, V fill) { return _mm256_blendv_ps(fill, x, _mm256_cmp_ps(a, b, _CMP_LE_OQ)); }
  ATTN_TARGET static float hmax(V v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
  }
  ATTN_TARGET static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  // out lane k = Σ a[k] for 8 vectors: three rounds of hadd per half, then the two 128-bit halves added
  ATTN_TARGET static V hsum_lanes(const V* a) {
    const __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
  }
  ATTN_TARGET static void hsum4(V a, V b, V c, V d, float* out) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  // As the AVX-512 exp (attention_avx512.cpp), with 2^n built in the exponent field: x is clamped to [−87.3, 88]
  // first, so n + 127 stays in 1 .. 254 (the attention's arguments are ≤ 0; 88 only guards the field).
  ATTN_TARGET static V exp(V x) {
    const V keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.0f));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    V p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
  }
};

#include "cpu/attention_tile.inc"

}  // namespace
const AttnKernels kAttnAvx2 = kTable;
}  // namespace moe::cpu_attention
#endif
