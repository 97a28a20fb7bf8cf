// NF4 / dX kernels, AVX-512F (same structure as AVX2's, 16 lanes; the whole NF4 table fits one register:
// vpermps, _mm512_permutexvar_ps, decodes 16 codes per instruction). Table in cpu/nf4_kernels.h.
#include "cpu/nf4_kernels.h"

#if MOE_NX86
// GCC 12 flags its own _mm512_undefined_*() (inside cvtepu8/16, permutexvar, cvtph) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define MOE_NAVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

namespace moe::cpu_nf4 {

namespace {

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

}  // namespace

const NKernels kNAvx512{"avx512", dequant_pairs_avx512, dot_pairs_avx512, dot_blocks_avx512, dx_block_avx512};

}  // namespace moe::cpu_nf4
#endif  // MOE_NX86
