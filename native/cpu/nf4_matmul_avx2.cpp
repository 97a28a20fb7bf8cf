// NF4 / dX kernels, AVX2 + FMA + F16C (decoding scheme in nf4_matmul.cpp, table in cpu/nf4_kernels.h).
// AVX2 has no 16-entry float permute: two 8-float halves (_mm256_permutevar8x32_ps uses the low 3 bits) blended on
// bit 3 of the code.
#include "cpu/nf4_kernels.h"

#if MOE_NX86
namespace moe::cpu_nf4 {

namespace {

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

}  // namespace

const NKernels kNAvx2{"avx2", dequant_pairs_avx2, dot_pairs_avx2, dot_blocks_avx2, dx_block_avx2};

}  // namespace moe::cpu_nf4
#endif  // MOE_NX86
