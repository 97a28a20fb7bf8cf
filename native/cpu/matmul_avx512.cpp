// AVX-512F kernels: same algorithms with 16 lanes. Prefill is compute bound, so doubling the vector width roughly
// doubles it on CPUs with two 512-bit FMA ports (Sapphire Rapids and later); decode gains on cache-resident
// experts. K tails use masked loads (x) / zero-padded tiles (weights); no reads past a row.
#include "cpu/matmul_kernels.h"
#include <algorithm>

#if MOE_HAVE_X86_DISPATCH
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 flags its own _mm*_undefined_*() (used inside several AVX-512 intrinsics) as (maybe-)uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace moe::cpu_matmul {

namespace {
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
  for (; K > kMatvecOneRowMaxK && n + 4 <= n1; n += 4) {
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
  for (; n < n1; ++n) {  // one row at a time (kMatvecOneRowMaxK), or the 1-3 rows left: the sums above, one row
    const T* w0 = W + n * K;
    __m512 a0 = _mm512_setzero_ps(), b0 = a0;
    int64_t k = 0;
    for (; k < K32; k += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), WLoad16<DT>::load(w0 + k), a0);
      b0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 16), WLoad16<DT>::load(w0 + k + 16), b0);
    }
    for (; k < K16; k += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), WLoad16<DT>::load(w0 + k), a0);
    float r = hsum8(fold512(_mm512_add_ps(a0, b0)));
    for (; k < K; ++k) r += x[k] * WLoad<DT>::one(w0 + k);
    y[n] = acc ? y[n] + r : r;
  }
}
}  // namespace

MOE_AVX512 void matvec_rows_avx512(float* y, const float* x, const void* W, DType dt, int64_t n0, int64_t n1, int64_t K, bool acc) {
  switch (dt) {
    case DType::F32: matvec_rows_avx512_t<DType::F32>(y, x, W, n0, n1, K, acc); break;
    case DType::F16: matvec_rows_avx512_t<DType::F16>(y, x, W, n0, n1, K, acc); break;
    default: matvec_rows_avx512_t<DType::BF16>(y, x, W, n0, n1, K, acc); break;
  }
}

namespace {
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

constexpr int64_t MC_AVX512 = 128;  // rows of x per chunk (a multiple of the micro-kernel's 4)

template <DType DT>
MOE_AVX512 void matmul_rows_avx512_t(float* y, int64_t ldy, const float* x, int64_t ldx, const void* Wv,
                                     int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  using T = typename WLoad<DT>::T;
  const T* W = static_cast<const T*>(Wv);
  alignas(64) float tile[4 * KB_AVX512];
  // Rows of x in chunks of MC_AVX512 (as the AVX2 kernel: a k block of the chunk, 128 x 512 floats = 256 KiB, stays
  // in L2 while the weight tiles pass over it; M x 1024 x 1024 bf16 on Zen 4, 1 thread: M = 512 85.4 -> 95-96
  // GFLOP/s, M = 128 97-99 either way; chunks of 96: 94-95 and 94); the bits are unchanged.
  for (int64_t mc = 0; mc < M; mc += MC_AVX512) {
  const int64_t M1 = M - mc < MC_AVX512 ? M - mc : MC_AVX512;
  float* const yc = y + mc * ldy;
  const float* const xc = x + mc * ldx;
  for (int64_t n = n0; n < n1; n += 4) {
    const int nr = int(n1 - n < 4 ? n1 - n : 4);
    if (!acc) for (int64_t m = 0; m < M1; ++m) for (int r = 0; r < nr; ++r) yc[m * ldy + n + r] = 0.f;
    for (int64_t k0 = 0; k0 < K; k0 += KB_AVX512) {
      const int64_t kb = K - k0 < KB_AVX512 ? K - k0 : KB_AVX512;
      const int64_t kbp = (kb + 15) & ~int64_t(15);
      for (int r = 0; r < 4; ++r) {
        float* tr = tile + r * kbp;
        if (r < nr) convert_avx512<DT>(tr, W + (n + r) * K + k0, kb);
        for (int64_t k = r < nr ? kb : 0; k < kbp; ++k) tr[k] = 0.f;
      }
      // The next tile's weights are fetched while this one is multiplied: in prefill an expert's rows come from DRAM
      // once per call, and the widening stalls on them where the hardware prefetcher has not ramped up.
      const int64_t nk0 = k0 + KB_AVX512 < K ? k0 + KB_AVX512 : 0, nn = nk0 ? n : n + 4;
      if (nn < n1) {
        const int64_t bytes = std::min<int64_t>(KB_AVX512, K - nk0) * int64_t(sizeof(T));
        for (int r = 0; r < 4 && nn + r < n1; ++r) {
          const char* p = reinterpret_cast<const char*>(W + (nn + r) * K + nk0);
          for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
        }
      }
      int64_t m = 0;
      for (; m + 4 <= M1; m += 4) micro_avx512<4>(yc + m * ldy + n, ldy, xc + m * ldx + k0, ldx, tile, kbp, kb, nr);
      switch (M1 - m) {
        case 3: micro_avx512<3>(yc + m * ldy + n, ldy, xc + m * ldx + k0, ldx, tile, kbp, kb, nr); break;
        case 2: micro_avx512<2>(yc + m * ldy + n, ldy, xc + m * ldx + k0, ldx, tile, kbp, kb, nr); break;
        case 1: micro_avx512<1>(yc + m * ldy + n, ldy, xc + m * ldx + k0, ldx, tile, kbp, kb, nr); break;
        default: break;
      }
    }
  }
  }
}
}  // namespace

MOE_AVX512 void matmul_rows_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                                   int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  switch (dt) {
    case DType::F32: matmul_rows_avx512_t<DType::F32>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
    case DType::F16: matmul_rows_avx512_t<DType::F16>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
    default: matmul_rows_avx512_t<DType::BF16>(y, ldy, x, ldx, W, M, n0, n1, K, acc); break;
  }
}

// dW[n, 0:R] (+)= Σ_m dy[m, n] · u[m, 0:R] (LoRA's dB = dYᵀ·u, R = rank) for one output row n, its R floats (NV zmm)
// in registers over all M: the rows left past the blocks below. The sum over m is in order, as theirs (the same
// product per lane), so where a thread's range starts does not change a bit. (Blocks of such rows, one broadcast of
// dy[m, n] per row and m, ran at ~50% of the FMA peak on Zen 4.)
template <int NV>
MOE_AVX512 void outer_row_avx512(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                                 int64_t n, bool acc) {
  __m512 a[NV];
  for (int v = 0; v < NV; ++v) a[v] = _mm512_setzero_ps();
  for (int64_t m = 0; m < M; ++m) {
    const __m512 b = _mm512_set1_ps(dy[m * lddy + n]);
    for (int v = 0; v < NV; ++v) a[v] = _mm512_fmadd_ps(b, _mm512_loadu_ps(u + m * ldu + 16 * v), a[v]);
  }
  for (int v = 0; v < NV; ++v) {
    float* o = dW + n * ldw + 16 * v;
    _mm512_storeu_ps(o, acc ? _mm512_add_ps(_mm512_loadu_ps(o), a[v]) : a[v]);
  }
}
// The same sums with the outputs' n as the lanes: 8 values of r at a time (broadcasts of u[m, r]) against V
// vectors of 16 n's of dy's row m: 8·V accumulators, 8 broadcasts and V loads per 8·V FMAs; the block is written out
// through a transpose on the stack.
template <int V>
MOE_AVX512 void outer_cols_avx512(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                                  int64_t n0, int64_t r0, bool acc) {
  __m512 a[8][V];
  for (int j = 0; j < 8; ++j) for (int v = 0; v < V; ++v) a[j][v] = _mm512_setzero_ps();
  for (int64_t m = 0; m < M; ++m) {
    __m512 d[V];
    for (int v = 0; v < V; ++v) d[v] = _mm512_loadu_ps(dy + m * lddy + n0 + 16 * v);
    const float* um = u + m * ldu + r0;
    for (int j = 0; j < 8; ++j) {
      const __m512 b = _mm512_set1_ps(um[j]);
      for (int v = 0; v < V; ++v) a[j][v] = _mm512_fmadd_ps(b, d[v], a[j][v]);
    }
  }
  alignas(64) float t[8][16 * V];
  for (int j = 0; j < 8; ++j) for (int v = 0; v < V; ++v) _mm512_store_ps(t[j] + 16 * v, a[j][v]);
  for (int i = 0; i < 16 * V; ++i) {
    float* o = dW + (n0 + i) * ldw + r0;
    for (int j = 0; j < 8; ++j) o[j] = acc ? o[j] + t[j][i] : t[j][i];
  }
}
template <int NV>
MOE_AVX512 void outer_rows_avx512_t(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                                    int64_t n0, int64_t n1, bool acc) {
  int64_t n = n0;
  for (; n + 48 <= n1; n += 48)
    for (int64_t r0 = 0; r0 < 16 * NV; r0 += 8) outer_cols_avx512<3>(dW, ldw, dy, lddy, u, ldu, M, n, r0, acc);
  for (; n + 16 <= n1; n += 16)
    for (int64_t r0 = 0; r0 < 16 * NV; r0 += 8) outer_cols_avx512<1>(dW, ldw, dy, lddy, u, ldu, M, n, r0, acc);
  for (; n < n1; ++n) outer_row_avx512<NV>(dW, ldw, dy, lddy, u, ldu, M, n, acc);  // (fewer than 16 left)
}
MOE_AVX512 bool outer_rows_avx512(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                                  int64_t n0, int64_t n1, int64_t R, bool acc) {
  switch (R) {
    case 16: outer_rows_avx512_t<1>(dW, ldw, dy, lddy, u, ldu, M, n0, n1, acc); return true;
    case 32: outer_rows_avx512_t<2>(dW, ldw, dy, lddy, u, ldu, M, n0, n1, acc); return true;
    case 64: outer_rows_avx512_t<4>(dW, ldw, dy, lddy, u, ldu, M, n0, n1, acc); return true;
    case 128: outer_rows_avx512_t<8>(dW, ldw, dy, lddy, u, ldu, M, n0, n1, acc); return true;
    default: return false;
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
                         row_convert_avx2, nullptr, nullptr, dot_rows_avx512, axpy_rows_avx512, outer_rows_avx512};

}  // namespace moe::cpu_matmul
#endif  // MOE_HAVE_X86_DISPATCH
