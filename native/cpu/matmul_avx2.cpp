// AVX2 + FMA + F16C kernels (x86-64, GCC/Clang). Compiled per function with target attributes so the rest of the
// binary stays baseline x86-64; used only when cpuid says the CPU has all three.
//   bf16 -> f32: zero-extend 16 -> 32 bits and shift left 16 (bf16 is the top half of an f32).
//   f16  -> f32: vcvtph2ps (_mm256_cvtph_ps), exact for all values incl. subnormals/inf/nan.
#include "cpu/matmul_kernels.h"

#if MOE_HAVE_X86_DISPATCH
namespace moe::cpu_matmul {

namespace {
// Mask with the first r (0..8) lanes set, for loading the K tail of x without reading past its end.
MOE_AVX2 inline __m256i tail_mask(int64_t r) {
  alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - r));
}
}  // namespace

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

namespace {
template <DType DT>
MOE_AVX2 void convert_avx2(float* out, const typename WLoad<DT>::T* w, int64_t len) {
  int64_t k = 0;
  for (; k + 8 <= len; k += 8) _mm256_storeu_ps(out + k, WLoad<DT>::load(w + k));
  for (; k < len; ++k) out[k] = WLoad<DT>::one(w + k);
}
}  // namespace

MOE_AVX2 void row_convert_avx2(float* out, const void* W, DType dt, int64_t n, int64_t K, int64_t k0, int64_t len) {
  const int64_t base = n * K + k0;
  switch (dt) {
    case DType::F32: convert_avx2<DType::F32>(out, static_cast<const float*>(W) + base, len); break;
    case DType::F16: convert_avx2<DType::F16>(out, static_cast<const uint16_t*>(W) + base, len); break;
    default: convert_avx2<DType::BF16>(out, static_cast<const uint16_t*>(W) + base, len); break;
  }
}

namespace {
// Decode (M == 1): y[n] = dot(x, W[n]). Four weight rows per iteration share each x load; two 8-lane
// accumulators per row (8 in flight) hide the FMA latency, so the loop runs at the speed weights stream in.
template <DType DT>
MOE_AVX2 void matvec_rows_avx2_t(float* y, const float* x, const void* Wv, int64_t n0, int64_t n1, int64_t K, bool acc) {
  using T = typename WLoad<DT>::T;
  const T* W = static_cast<const T*>(Wv);
  const int64_t K16 = K & ~int64_t(15), K8 = K & ~int64_t(7);
  int64_t n = n0;
  for (; K > kMatvecOneRowMaxK && n + 4 <= n1; n += 4) {
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
  for (; n < n1; ++n) {  // one row at a time (kMatvecOneRowMaxK), or the 1-3 rows left: the sums above, one row
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
constexpr int64_t MC_AVX2 = 96;   // rows of x per chunk (a multiple of the micro-kernel's 3)

template <DType DT>
MOE_AVX2 void matmul_rows_avx2_t(float* y, int64_t ldy, const float* x, int64_t ldx, const void* Wv,
                                 int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  using T = typename WLoad<DT>::T;
  const T* W = static_cast<const T*>(Wv);
  alignas(32) float tile[4 * KB_AVX2];
  // Rows of x in chunks of MC_AVX2: a k block of the chunk (MC_AVX2 x 256 floats, 96 KiB) stays in L2 while every
  // 4-row weight tile passes over it; all M rows at once left L2 from M ~ 256 (Zen 4, 1 thread, M x 1024 x 1024
  // bf16, `run_bench_matmul.sh 0.3 M 1024 1024 bf16 1`: M = 128 87.5 GFLOP/s either way, M = 512 68.2 -> 78.9 in
  // chunks of 96; 48: 81.9, 192: 75.7). Each chunk converts its tiles again (one conversion per 96 rows of x); the
  // sums of an output are in the same order, so the bits are unchanged.
  for (int64_t mc = 0; mc < M; mc += MC_AVX2) {
    const int64_t M1 = M - mc < MC_AVX2 ? M - mc : MC_AVX2;
    float* yc = y + mc * ldy;
    const float* xc = x + mc * ldx;
    for (int64_t n = n0; n < n1; n += 4) {
      const int nr = int(n1 - n < 4 ? n1 - n : 4);
      if (!acc) for (int64_t m = 0; m < M1; ++m) for (int r = 0; r < nr; ++r) yc[m * ldy + n + r] = 0.f;
      for (int64_t k0 = 0; k0 < K; k0 += KB_AVX2) {
        const int64_t kb = K - k0 < KB_AVX2 ? K - k0 : KB_AVX2;
        const int64_t kbp = (kb + 7) & ~int64_t(7);
        // Convert each weight row of the block once; rows past nr and lanes past kb are zero.
        for (int r = 0; r < 4; ++r) {
          float* tr = tile + r * kbp;
          if (r < nr) convert_avx2<DT>(tr, W + (n + r) * K + k0, kb);
          for (int64_t k = r < nr ? kb : 0; k < kbp; ++k) tr[k] = 0.f;
        }
        // Rows 3 at a time; a rest of one after some threes goes as 2 + 2 (one row alone has 4 FMA chains for the
        // two FMA pipes' ~8 in flight: half rate). Each row's sums are its own, so the split does not change bits.
        const int64_t m3 = M1 % 3 == 1 && M1 >= 4 ? M1 - 4 : M1 - M1 % 3;
        int64_t m = 0;
        for (; m < m3; m += 3) micro_avx2<3>(yc + m * ldy + n, ldy, xc + m * ldx + k0, ldx, tile, kbp, kb, nr);
        for (; m + 2 <= M1; m += 2) micro_avx2<2>(yc + m * ldy + n, ldy, xc + m * ldx + k0, ldx, tile, kbp, kb, nr);
        if (m < M1) micro_avx2<1>(yc + m * ldy + n, ldy, xc + m * ldx + k0, ldx, tile, kbp, kb, nr);
      }
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
}  // namespace

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

namespace {
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
}  // namespace

namespace {
// dW[n, 0:R] (+)= Σ_m dy[m, n] · u[m, 0:R] for one output row n (the rows left past the blocks below), as the
// AVX-512 kernel (matmul_avx512.cpp): its R floats (NV ymm) in registers over all M.
template <int NV>
MOE_AVX2 void outer_row_avx2(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                             int64_t n, bool acc) {
  __m256 a[NV];
  for (int v = 0; v < NV; ++v) a[v] = _mm256_setzero_ps();
  for (int64_t m = 0; m < M; ++m) {
    const __m256 b = _mm256_broadcast_ss(dy + m * lddy + n);
    for (int v = 0; v < NV; ++v) a[v] = _mm256_fmadd_ps(b, _mm256_loadu_ps(u + m * ldu + 8 * v), a[v]);
  }
  for (int v = 0; v < NV; ++v) {
    float* o = dW + n * ldw + 8 * v;
    _mm256_storeu_ps(o, acc ? _mm256_add_ps(_mm256_loadu_ps(o), a[v]) : a[v]);
  }
}
// n as the lanes (the AVX-512 file says why): 4 values of r at a time against V (1 or 2) vectors of 8 n's. The sums
// are named variables: as an array (a[4][V]) GCC also stored every one to the stack at each step of m (store-bound,
// ~40% of the FMA peak).
// out[n0 + k][r0 .. r0+4] (+)= the 4 x 8 block (c0..c3: r = r0..r0+3, lanes: n = n0..n0+7), by a 4 x 8 transpose
MOE_AVX2 inline void store_cols4(float* dW, int64_t ldw, int64_t n0, int64_t r0, __m256 c0, __m256 c1, __m256 c2, __m256 c3, bool acc) {
  const __m256 t0 = _mm256_unpacklo_ps(c0, c1), t1 = _mm256_unpackhi_ps(c0, c1);
  const __m256 t2 = _mm256_unpacklo_ps(c2, c3), t3 = _mm256_unpackhi_ps(c2, c3);
  const __m256 q[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE), _mm256_shuffle_ps(t1, t3, 0x44),
                       _mm256_shuffle_ps(t1, t3, 0xEE)};  // lanes 0..3: n = k, lanes 4..7: n = k + 4
  for (int k = 0; k < 8; ++k) {
    const __m128 x = k < 4 ? _mm256_castps256_ps128(q[k]) : _mm256_extractf128_ps(q[k - 4], 1);
    float* o = dW + (n0 + k) * ldw + r0;
    _mm_storeu_ps(o, acc ? _mm_add_ps(_mm_loadu_ps(o), x) : x);
  }
}
template <int V>
MOE_AVX2 void outer_cols_avx2(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                              int64_t n0, int64_t r0, bool acc) {
  static_assert(V == 1 || V == 2);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (int64_t m = 0; m < M; ++m) {
    const float* dm = dy + m * lddy + n0;
    const float* um = u + m * ldu + r0;
    const __m256 d0 = _mm256_loadu_ps(dm);
    const __m256 u0 = _mm256_broadcast_ss(um), u1 = _mm256_broadcast_ss(um + 1);
    const __m256 u2 = _mm256_broadcast_ss(um + 2), u3 = _mm256_broadcast_ss(um + 3);
    a0 = _mm256_fmadd_ps(u0, d0, a0); a1 = _mm256_fmadd_ps(u1, d0, a1);
    a2 = _mm256_fmadd_ps(u2, d0, a2); a3 = _mm256_fmadd_ps(u3, d0, a3);
    if constexpr (V == 2) {
      const __m256 d1 = _mm256_loadu_ps(dm + 8);
      b0 = _mm256_fmadd_ps(u0, d1, b0); b1 = _mm256_fmadd_ps(u1, d1, b1);
      b2 = _mm256_fmadd_ps(u2, d1, b2); b3 = _mm256_fmadd_ps(u3, d1, b3);
    }
  }
  store_cols4(dW, ldw, n0, r0, a0, a1, a2, a3, acc);
  if constexpr (V == 2) store_cols4(dW, ldw, n0 + 8, r0, b0, b1, b2, b3, acc);
}
template <int NV>
MOE_AVX2 void outer_rows_avx2_t(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                                int64_t n0, int64_t n1, bool acc) {
  int64_t n = n0;
  for (; n + 16 <= n1; n += 16)  // (V = 3 needs all 16 registers; GCC then kept every sum on the stack)
    for (int64_t r0 = 0; r0 < 8 * NV; r0 += 4) outer_cols_avx2<2>(dW, ldw, dy, lddy, u, ldu, M, n, r0, acc);
  for (; n + 8 <= n1; n += 8)
    for (int64_t r0 = 0; r0 < 8 * NV; r0 += 4) outer_cols_avx2<1>(dW, ldw, dy, lddy, u, ldu, M, n, r0, acc);
  for (; n < n1; ++n) outer_row_avx2<NV>(dW, ldw, dy, lddy, u, ldu, M, n, acc);  // (fewer than 8 left)
}
MOE_AVX2 bool outer_rows_avx2(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                              int64_t n0, int64_t n1, int64_t R, bool acc) {
  switch (R) {
    case 8: outer_rows_avx2_t<1>(dW, ldw, dy, lddy, u, ldu, M, n0, n1, acc); return true;
    case 16: outer_rows_avx2_t<2>(dW, ldw, dy, lddy, u, ldu, M, n0, n1, acc); return true;
    case 32: outer_rows_avx2_t<4>(dW, ldw, dy, lddy, u, ldu, M, n0, n1, acc); return true;
    default: return false;
  }
}
}  // namespace

const Kernels kAvx2 = {"avx2+fma+f16c", matvec_rows_avx2, matmul_rows_avx2, dot_avx2, axpy_avx2, row_convert_avx2,
                       nullptr, nullptr, dot_rows_avx2, axpy_rows_avx2, outer_rows_avx2};

}  // namespace moe::cpu_matmul
#endif  // MOE_HAVE_X86_DISPATCH
