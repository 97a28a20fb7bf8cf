// AVX-512F lanes for the blocked attention (attention_tile.inc): 16 query rows per vector, 8 keys × 2 vectors of
// score accumulators and 8 head columns × 2 vectors of output accumulators (16 of the 32 zmm registers each).
#include "cpu/attention_kernels.h"
#include "format/dtype.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace moe::cpu_attention {
namespace {

#define ATTN_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))

struct Vec {
  using V = __m512;
  static constexpr const char* name = "avx512";
  static constexpr int L = 16, KB = 8, DC = 8, GV = 4;
  ATTN_TARGET static V zero() { return _mm512_setzero_ps(); }
  ATTN_TARGET static V load(const float* p) { return _mm512_loadu_ps(p); }
  ATTN_TARGET static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  ATTN_TARGET static V set1(float x) { return _mm512_set1_ps(x); }
  ATTN_TARGET static V load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  ATTN_TARGET static void store_f16(uint16_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
  ATTN_TARGET static V load_i8(const int8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))); }
  ATTN_TARGET static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  ATTN_TARGET static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  ATTN_TARGET static V add(V a, V b) { return _mm512_add_ps(a, b); }
  ATTN_TARGET static V max(V a, V b) { return _mm512_max_ps(a, b); }
  ATTN_TARGET static V select_le(V a, V b, V x, V fill) { return _mm512_mask_mov_ps(fill, _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ), x); }
  ATTN_TARGET static float hmax(V v) { return _mm512_reduce_max_ps(v); }
  ATTN_TARGET static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  ATTN_TARGET static __m256 fold(V v) {  // 16 lanes -> 8 (pairwise sums of the halves)
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }
  // [Σa, Σb, Σc, Σd] to out[0..3]: halves folded, then three rounds of pairwise adds for all four at once
  ATTN_TARGET static void hsum4(V a, V b, V c, V d, float* out) {
    const __m256 ab = _mm256_hadd_ps(fold(a), fold(b)), cd = _mm256_hadd_ps(fold(c), fold(d));
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  // out lane k = Σ a[k] for 16 vectors: pairs summed within 128-bit blocks twice (shuffle_ps), then across the
  // blocks twice (shuffle_f32x4): 45 instructions for 16 sums, a[0..15] in lane order
  ATTN_TARGET static V hsum_lanes(const V* a) {
    V b[8], c[4];
    for (int i = 0; i < 8; ++i)
      b[i] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_ps(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int i = 0; i < 4; ++i)
      c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    // c[i] block q = the block-q sums of a[4i .. 4i + 3]
    const V d0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const V d1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(c[2], c[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(d0, d1, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  // e^x = 2^n · e^r, n = round(x·log2 e), r = x − n·ln 2 in two parts (|r| ≤ ln2/2), e^r by Cephes' expf polynomial
  // (~1 ulp); vscalefps applies 2^n. Inputs under −87.3 (e^x below FLT_MIN, −inf included) give 0.
  ATTN_TARGET static V exp(V x) {
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_GE_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    V p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n));
  }
};

#include "cpu/attention_tile.inc"

}  // namespace
const AttnKernels kAttnAvx512 = kTable;
}  // namespace moe::cpu_attention
#endif
