// AVX-512 VNNI kernels for Q8_0 / Q4_0 / Q4_K weights with int8 activations (math in qmatmul.h, the driver in
// qmatmul.cpp). Used only when cpuid says the CPU has AVX512F + VL + BW + VNNI (Ice Lake and later, Zen 4 and later).
//
// Decode's row dots (M = 1, and M = 2 for Q8_0): one vpdpbusd sums 32 u8·s8 products into 8 int32 lanes, where
// AVX2 needs vpmaddubsw (pairs into saturating i16) + vpmaddwd (into i32); the body is the AVX2 one
// (qmatmul_rows.inc). The blocks stay 32 wide on 256-bit registers, each 32-block having its own scale, which
// one ymm holds exactly (Zen 4 runs a 512-bit op as two 256-bit halves; on Zen 5 and Intel, full width, two
// blocks per zmm are not tried yet). Up to 8 x rows per pass (8 accumulators + the weight block + temporaries
// fit the 32 vector registers).
// Prefill (M >= gemm_min_rows_vnni) is the GEMM below, over repacked 16-row tiles; x is quantised with SIMD
// (quantize_rows_avx512).
//
// Signed × signed (Q8_0): vpdpbusd multiplies unsigned by signed bytes, so the weight's magnitude |w| is the
// unsigned operand and its sign moves onto x (vpsignb): |w| · sign(w)·x = w·x. Exact: Q8_0 weights and the
// activation blocks are in [-127, 127] (absmax / 127 scaling), so no byte is -128.
// Unsigned nibbles (Q4_0, Q4_K): q in [0, 15] is the unsigned operand as it is; the offset (Q4_0: -8 Σx) and the
// mins (Q4_K: -dmin·m·Σx) use the activation block's precomputed integer sum, as in the AVX2 kernels.
#include "cpu/qmatmul_kernels.h"

#if MOE_QX86
// GCC 12's AVX-512 headers build "undefined" registers as `__m512 __Y = __Y;` (reductions, gathers, conversions),
// which -Wmaybe-uninitialized reports at every use; nothing here reads an uninitialised value.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>
#include "quant/quant.h"

#define MOE_QVNNI __attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni,avx2,fma,f16c")))

namespace moe::cpu_qmatmul {

namespace {

MOE_QVNNI inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
MOE_QVNNI inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
MOE_QVNNI inline __m256i load32(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
// Σ over 32 bytes of u_i · s_i, as 8 int32 lanes (each lane 4 products)
MOE_QVNNI inline __m256i dot_u8i8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }

#define QROWS_TARGET MOE_QVNNI
#include "cpu/qmatmul_rows.inc"
#undef QROWS_TARGET

MOE_QVNNI void dot_q8_rows_vnni(DType t, const uint8_t* w, const BlockQ8X* xq, const float* xds, int64_t stride, int R, int64_t K,
                                float* out) {
  rows_upto<8>(t, w, xq, xds, stride, R, K, out);
}

// ---- prefill: a GEMM over 16-row tiles of weights repacked for vpdpbusd ----
//
// Row dots (above) reduce 8 int32 lanes of one (weight row, x row) pair per block, then convert and scale them:
// ~7 instructions per 32 multiply-adds, slower than the f32 tiles. Here 16 weight rows are interleaved so that one
// vpdpbusd multiplies 4 bytes of one x row (broadcast) by 4 bytes of each of the 16 rows: its 16 int32 lanes are
// 16 outputs, and a block's scale, offset and conversion are paid once per 16 outputs.
//
// Tile layout, per block b of 32 (per tile: nb blocks):
//   bytes[b][g][j][4]  g = 0..7 (4-byte groups of the block), j = 0..15 (row in the tile): 512 bytes, one zmm per g
//   sw[b][j]   f32  the row's scale for the block (Q8_0 / Q4_0: d; Q4_K: d·sc of the sub-block)
//   c[b][j]    i32  Q8_0 only: 128 · Σ w (undoes the +128 that makes x unsigned, exactly, in integers)
//   mw[b][j]   f32  Q4_0: 8·d (its offset); Q4_K: dmin·m of the sub-block (its mins); times the x block's Σq_x
// Two forms, as vpdpbusd needs one unsigned operand:
//   Q8_0 (signed weights): x_u = q_x + 128 unsigned, w signed:   Σ x_u·w = Σ q_x·w + 128 Σ w
//       y[m, n] = Σ_b  d_x[m,b] · sw[b,n] · (dp[m,n,b] − c[b,n])
//   Q4_0 / Q4_K (nibbles 0..15): w unsigned as it is, x signed (q_x): no +128, no c
//       y[m, n] = Σ_b  d_x[m,b] · ( sw[b,n] · dp[m,n,b]  −  mw[b,n] · Σq_x[m,b] )
//
// The repack reads 4-byte group g of the 16 rows into one register, lane j = row n0+j (groups4: loads and
// permutes; the scales by gather), which is exactly bytes[b][g][·]; a Q4 group yields groups g (low nibbles)
// and g+4 (high) at once. For the small expert GEMMs of prefill (~16 tokens per expert) the repack runs once per
// 16 rows and is reused by only a few x rows, so its cost is of the order of the GEMM's: as a byte-by-byte loop it
// was half the Q4_0 prefill, by gathers still ~45% (perf, native/README.md "Quantization").
constexpr int kT = 16;

// vindex for a tile's gathers: lane j = j · row_bytes
MOE_QVNNI inline __m512i row_offsets(size_t row_bytes) {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi32(int32_t(row_bytes)));
}
// lane j: the dword at p + j·row_bytes (rows past nrows: 0)
MOE_QVNNI inline __m512i gather_rows(__mmask16 live, __m512i idx, const uint8_t* p) {
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, p, 1);
}
// lane j: the f16 at p + j·row_bytes as f32 (the low half of the gathered dword)
MOE_QVNNI inline __m512 gather_f16(__mmask16 live, __m512i idx, const uint8_t* p) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(gather_rows(live, idx, p)));
}

// out[g] lane j = the g-th 4 bytes of the 16 bytes at p + j·row_bytes (g = 0..3, j = 0..15): what four gathers
// give, from 16 loads and 8 permutes (a 16-lane gather costs far more than 16 loads on the Zen 5 EPYC measured;
// with gathers the repack was ~half the GEMM's time on the expert groups of a prefill). Rows past nrows: gathers, masked.
MOE_QVNNI inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
MOE_QVNNI inline void groups4(__mmask16 live, int nrows, __m512i idx, const uint8_t* p, size_t row_bytes, __m512i out[4]) {
  if (nrows < kT) {
    for (int g = 0; g < 4; ++g) out[g] = gather_rows(live, idx, p + 4 * g);
    return;
  }
  __m512i z[4];  // z[k] lane 4i + g = dword g of row 4k + i
  for (int k = 0; k < 4; ++k) {
    const uint8_t* r = p + size_t(4 * k) * row_bytes;
    z[k] = _mm512_castsi128_si512(load16(r));
    z[k] = _mm512_inserti32x4(z[k], load16(r + row_bytes), 1);
    z[k] = _mm512_inserti32x4(z[k], load16(r + 2 * row_bytes), 2);
    z[k] = _mm512_inserti32x4(z[k], load16(r + 3 * row_bytes), 3);
  }
  // from rows 0..7 (z0, z1): lane 8h + r = dword (g0 + h) of row r, for g0 = 0 (ia) and 2 (ib)
  const __m512i ia = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i ib = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  const __m512i a01 = _mm512_permutex2var_epi32(z[0], ia, z[1]), a23 = _mm512_permutex2var_epi32(z[2], ia, z[3]);
  const __m512i b01 = _mm512_permutex2var_epi32(z[0], ib, z[1]), b23 = _mm512_permutex2var_epi32(z[2], ib, z[3]);
  // rows 0..7 from the first, 8..15 from the second
  out[0] = _mm512_shuffle_i64x2(a01, a23, _MM_SHUFFLE(1, 0, 1, 0));
  out[1] = _mm512_shuffle_i64x2(a01, a23, _MM_SHUFFLE(3, 2, 3, 2));
  out[2] = _mm512_shuffle_i64x2(b01, b23, _MM_SHUFFLE(1, 0, 1, 0));
  out[3] = _mm512_shuffle_i64x2(b01, b23, _MM_SHUFFLE(3, 2, 3, 2));
}

// group g of block b in the tile's bytes
MOE_QVNNI inline void put(int8_t* bytes, int64_t b, int g, __m512i v) { _mm512_storeu_si512(bytes + (b * 8 + g) * 64, v); }

// The 6-bit scales and mins of a Q4_K super-block for 16 rows at once (lane j = row j): d, dmin and the scale words
// a, b, c (scales[0..12) as three dwords) -> sw[sub][j] = d·sc_sub, mw[sub][j] = dmin·m_sub for the 8 sub-blocks.
// Unpacked bytewise as in q4k_scale_min: sc_0..3 = a & 63, m_0..3 = b & 63, sc_4..7 = (c & 15) | (a >> 6) << 4,
// m_4..7 = (c >> 4) | (b >> 6) << 4, where (a >> 2) & 0x30 per byte is (a >> 6) << 4.
MOE_QVNNI inline void q4k_tile_scales(__m512 d, __m512 dmin, __m512i a, __m512i bw, __m512i c, float* sw, float* mw) {
  const __m512i k3f = _mm512_set1_epi32(0x3f3f3f3f), k0f = _mm512_set1_epi32(0x0f0f0f0f), k30 = _mm512_set1_epi32(0x30303030);
  const __m512i sc4[2] = {_mm512_and_si512(a, k3f),
                          _mm512_or_si512(_mm512_and_si512(c, k0f), _mm512_and_si512(_mm512_srli_epi32(a, 2), k30))};
  const __m512i mn4[2] = {_mm512_and_si512(bw, k3f),
                          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 4), k0f),
                                          _mm512_and_si512(_mm512_srli_epi32(bw, 2), k30))};
  const __m512i ff = _mm512_set1_epi32(0xff);
  for (int sub = 0; sub < 8; ++sub) {
    const __m128i shift = _mm_cvtsi32_si128(8 * (sub % 4));
    const __m512 scf = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(sc4[sub / 4], shift), ff));
    const __m512 mnf = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(mn4[sub / 4], shift), ff));
    _mm512_storeu_ps(sw + sub * kT, _mm512_mul_ps(d, scf));
    _mm512_storeu_ps(mw + sub * kT, _mm512_mul_ps(dmin, mnf));
  }
}

MOE_QVNNI void repack_tile(DType t, const uint8_t* W, size_t row_bytes, int64_t n0, int nrows, int64_t K, int8_t* bytes, float* sw,
                           int32_t* c, float* mw) {
  const int64_t nb = K / 32;
  const __mmask16 live = __mmask16((1u << nrows) - 1);  // padding rows: zero weights and scales, outputs not stored
  const __m512i idx = row_offsets(row_bytes), m4 = _mm512_set1_epi8(15);
  const uint8_t* tile = W + size_t(n0) * row_bytes;
  if (t == DType::Q8_0) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = tile + b * sizeof(BlockQ8_0);
      __m512i sum = _mm512_setzero_si512(), v[8];
      groups4(live, nrows, idx, blk + 2, row_bytes, v);
      groups4(live, nrows, idx, blk + 18, row_bytes, v + 4);
      for (int g = 0; g < 8; ++g) {
        put(bytes, b, g, v[g]);
        sum = _mm512_dpbusd_epi32(sum, ones, v[g]);  // Σ w per row
      }
      _mm512_storeu_si512(c + b * kT, _mm512_slli_epi32(sum, 7));
      _mm512_storeu_ps(sw + b * kT, gather_f16(live, idx, blk));
    }
  } else if (t == DType::Q4_0) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = tile + b * sizeof(BlockQ4_0);
      __m512i v[4];
      groups4(live, nrows, idx, blk + 2, row_bytes, v);
      for (int g = 0; g < 4; ++g) {
        put(bytes, b, g, _mm512_and_si512(v[g], m4));
        put(bytes, b, g + 4, _mm512_and_si512(_mm512_srli_epi16(v[g], 4), m4));
      }
      const __m512 d = gather_f16(live, idx, blk);
      _mm512_storeu_ps(sw + b * kT, d);
      _mm512_storeu_ps(mw + b * kT, _mm512_mul_ps(d, _mm512_set1_ps(8.0f)));
    }
  } else {
    for (int64_t sb = 0; sb < K / 256; ++sb) {
      const uint8_t* blk = tile + sb * sizeof(BlockQ4_K);
      // sub-blocks 2p (low nibbles) and 2p+1 (high) share the 32 bytes qs[32p, 32p+32)
      for (int p = 0; p < 4; ++p) {
        __m512i v[8];
        groups4(live, nrows, idx, blk + offsetof(BlockQ4_K, qs) + 32 * p, row_bytes, v);
        groups4(live, nrows, idx, blk + offsetof(BlockQ4_K, qs) + 32 * p + 16, row_bytes, v + 4);
        for (int g = 0; g < 8; ++g) {
          put(bytes, sb * 8 + 2 * p, g, _mm512_and_si512(v[g], m4));
          put(bytes, sb * 8 + 2 * p + 1, g, _mm512_and_si512(_mm512_srli_epi16(v[g], 4), m4));
        }
      }
      const uint8_t* scales = blk + offsetof(BlockQ4_K, scales);
      q4k_tile_scales(gather_f16(live, idx, blk), gather_f16(live, idx, blk + 2), gather_rows(live, idx, scales),
                      gather_rows(live, idx, scales + 4), gather_rows(live, idx, scales + 8), sw + sb * 8 * kT, mw + sb * 8 * kT);
    }
  }
}

// One block of a tile in the nibble form (Q4_0 / Q4_K) against R rows of x: w[g] the block's 4-byte group g of the
// 16 rows (unsigned nibbles), s the rows' block scales, m their offset / min factors; x row r's block is xq[r·stride].
//   acc[r] += cvt(Σ_g dpbusd(w[g], x dword g)) · s·d_x  −  m · d_x·Σq_x
// Σ_g dpbusd(w[g], x dword g) for one x block against a block of 16 rows (w unsigned): two chains of four vpdpbusd
// (latency ~5 cycles each) instead of one of eight; integer sums, so the same value.
MOE_QVNNI inline __m512i block_dp(const __m512i* w, const BlockQ8X& X) {
  __m512i p = _mm512_setzero_si512(), p2 = p;
  for (int g = 0; g < 8; g += 2) {
    int32_t four, four2;
    std::memcpy(&four, X.q + 4 * g, 4);
    std::memcpy(&four2, X.q + 4 * g + 4, 4);
    p = _mm512_dpbusd_epi32(p, w[g], _mm512_set1_epi32(four));
    p2 = _mm512_dpbusd_epi32(p2, w[g + 1], _mm512_set1_epi32(four2));
  }
  return _mm512_add_epi32(p, p2);
}

template <int R>
MOE_QVNNI inline void q4_block_rows(__m512* acc, const __m512i* w, __m512 s, __m512 m, const BlockQ8X* xq, int64_t stride) {
  for (int r = 0; r < R; ++r) {
    const BlockQ8X& X = xq[r * stride];
    const __m512i p = block_dp(w, X);
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(s, _mm512_set1_ps(X.d)), acc[r]);
    acc[r] = _mm512_fnmadd_ps(m, _mm512_set1_ps(X.d * float(X.s)), acc[r]);
  }
}

// y[r, 0:nvalid] (+)= acc[r] for the R rows of one tile's outputs.
template <int R>
MOE_QVNNI inline void store_rows(const __m512* acc, float* y, int64_t ldy, int nvalid, bool accumulate) {
  const __mmask16 k = __mmask16((1u << nvalid) - 1);
  for (int r = 0; r < R; ++r) {
    float* o = y + r * ldy;
    __m512 v = acc[r];
    if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, o));
    _mm512_mask_storeu_ps(o, k, v);
  }
}

// y[r, 0:16] for R rows of x against one repacked tile. kQ4: the nibble form (w unsigned, x signed from xq[].q,
// the mw term); else Q8_0's (x unsigned from xu, K bytes per row; minus c).
template <int R, bool kQ4>
MOE_QVNNI void tile_rows(const int8_t* bytes, const float* sw, const int32_t* c, const float* mw, int64_t nb, const uint8_t* xu,
                         const BlockQ8X* xq, int64_t K, float* y, int64_t ldy, int nvalid, bool accumulate) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i w[8];
    for (int g = 0; g < 8; ++g) w[g] = _mm512_loadu_si512(bytes + (b * 8 + g) * 64);
    const __m512 s = _mm512_loadu_ps(sw + b * kT);
    if constexpr (kQ4) {
      q4_block_rows<R>(acc, w, s, _mm512_loadu_ps(mw + b * kT), xq + b, nb);
    } else {
      for (int r = 0; r < R; ++r) {
        const BlockQ8X& X = xq[r * nb + b];
        const uint8_t* xb = xu + r * K + b * 32;
        __m512i p = _mm512_setzero_si512();
        for (int g = 0; g < 8; ++g) {
          int32_t four;
          std::memcpy(&four, xb + 4 * g, 4);
          p = _mm512_dpbusd_epi32(p, _mm512_set1_epi32(four), w[g]);
        }
        p = _mm512_sub_epi32(p, _mm512_loadu_si512(c + b * kT));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(s, _mm512_set1_ps(X.d)), acc[r]);
      }
    }
  }
  store_rows<R>(acc, y, ldy, nvalid, accumulate);
}

// M rows of x in passes of 8 (8 accumulators + 8 weight registers + temporaries fit the 32 vector registers; each
// pass reloads its tile from L1), the rest in one pass of M % 8: pass(std::integral_constant<int, R>{}, m) for the
// pass of R rows from row m.
template <class Pass>
MOE_QVNNI inline void row_passes(int64_t M, Pass&& pass) {
  int64_t m = 0;
  for (; m + 8 <= M; m += 8) pass(std::integral_constant<int, 8>{}, m);
  switch (M - m) {
    case 7: pass(std::integral_constant<int, 7>{}, m); break;
    case 6: pass(std::integral_constant<int, 6>{}, m); break;
    case 5: pass(std::integral_constant<int, 5>{}, m); break;
    case 4: pass(std::integral_constant<int, 4>{}, m); break;
    case 3: pass(std::integral_constant<int, 3>{}, m); break;
    case 2: pass(std::integral_constant<int, 2>{}, m); break;
    case 1: pass(std::integral_constant<int, 1>{}, m); break;
    default: break;
  }
}

// All M rows of x against one repacked tile.
template <bool kQ4>
MOE_QVNNI void tile_all_rows(const int8_t* bytes, const float* sw, const int32_t* c, const float* mw, int64_t nb, const uint8_t* xu,
                             const BlockQ8X* xq, int64_t M, int64_t K, float* y, int64_t ldy, int nvalid, bool accumulate) {
  row_passes(M, [&](auto R, int64_t m) {
    tile_rows<decltype(R)::value, kQ4>(bytes, sw, c, mw, nb, xu + m * K, xq + m * nb, K, y + m * ldy, ldy, nvalid, accumulate);
  });
}

// From how many rows of x the GEMM beats the row dots, per weight type (`run_bench_matmul.sh 0.3 M 512 1024 T 1`,
// Zen 5 EPYC, weights hot, ms; rows -> GEMM): Q4_0 M=2 0.017 -> 0.017, M=4 0.019 -> 0.018 (with the repack by
// gathers, M=4 was 0.059 on the rows); Q8_0 (8 groups to repack per block, where a Q4 group yields two) M=2
// 0.022 -> 0.022, M=3 0.031 -> 0.026, M=4 0.041 -> 0.023. Decode (M = 1) stays on the row dots although hot in
// cache the GEMM is faster (Q4_0 0.020 -> 0.013): in the engine the weights come from DRAM, where the row dots
// stream each row in order and batch all experts into one parallel job (qmatmul_batch), and decode through the
// GEMM fell from 211 to 119 tok/s.
int gemm_min_rows_vnni(DType t) { return t == DType::Q8_0 ? 3 : 2; }

// ---- the load-time layout (qpack, qmatmul_kernels.h): the GEMM's tiles without a repack per call ----
//
// The kernel unpacks a block's nibbles once per pass over the tile and forms the scales as repack_tile does, so a
// product's bits are the per-call GEMM's. With no repack to pay, it takes decode too (M = 1): per block one
// vpdpbusd per 4 bytes of 16 rows, where the row dots spend ~12 instructions per block and row (Zen 4, Q4_0:
// those were compute-bound at 2 threads, 24-28 GB/s on expert-sized rows).
static_assert(kT == kPackRows);

MOE_QVNNI inline void store16(uint8_t* o, __m512i dwords) {  // the low halves of 16 dwords (f16 scales), 32 bytes
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm512_cvtepi32_epi16(dwords));
}

MOE_QVNNI void pack_vnni(DType t, const uint8_t* W, size_t row_bytes, int64_t N, int64_t K, uint8_t* out, int64_t tile0,
                         int64_t tile1) {
  const __m512i idx = row_offsets(row_bytes);
  const size_t tb = pack_tile_bytes(t, K);
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t n0 = tile * kT;
    const int nrows = int(std::min<int64_t>(kT, N - n0));
    const __mmask16 live = __mmask16((1u << nrows) - 1);  // padding rows: zero nibbles and scales
    const uint8_t* src = W + size_t(n0) * row_bytes;
    uint8_t* o = out + size_t(tile) * tb;
    if (t == DType::Q8_0) {
      const __m512i bias = _mm512_set1_epi8(char(0x80));  // u = w + 128 = w ^ 0x80; padding rows pack to 128
      for (int64_t b = 0; b < K / 32; ++b, o += kPackQ8_0) {
        const uint8_t* blk = src + b * sizeof(BlockQ8_0);
        __m512i v[8];
        groups4(live, nrows, idx, blk + offsetof(BlockQ8_0, qs), row_bytes, v);
        groups4(live, nrows, idx, blk + offsetof(BlockQ8_0, qs) + 16, row_bytes, v + 4);
        for (int g = 0; g < 8; ++g) _mm512_storeu_si512(o + 64 * g, _mm512_xor_si512(v[g], bias));
        store16(o + 512, gather_rows(live, idx, blk));
      }
    } else if (t == DType::Q4_0) {
      for (int64_t b = 0; b < K / 32; ++b, o += kPackQ4_0) {
        const uint8_t* blk = src + b * sizeof(BlockQ4_0);
        __m512i v[4];
        groups4(live, nrows, idx, blk + offsetof(BlockQ4_0, qs), row_bytes, v);
        for (int g = 0; g < 4; ++g) _mm512_storeu_si512(o + 64 * g, v[g]);
        store16(o + 256, gather_rows(live, idx, blk));
      }
    } else {
      for (int64_t sb = 0; sb < K / 256; ++sb, o += kPackQ4_K) {
        const uint8_t* blk = src + sb * sizeof(BlockQ4_K);
        for (int p = 0; p < 4; ++p) {
          __m512i v[8];
          groups4(live, nrows, idx, blk + offsetof(BlockQ4_K, qs) + 32 * p, row_bytes, v);
          groups4(live, nrows, idx, blk + offsetof(BlockQ4_K, qs) + 32 * p + 16, row_bytes, v + 4);
          for (int g = 0; g < 8; ++g) _mm512_storeu_si512(o + 512 * p + 64 * g, v[g]);
        }
        store16(o + 2048, gather_rows(live, idx, blk));       // d
        store16(o + 2080, gather_rows(live, idx, blk + 2));   // dmin
        const uint8_t* scales = blk + offsetof(BlockQ4_K, scales);
        for (int q = 0; q < 3; ++q) _mm512_storeu_si512(o + 2112 + 64 * q, gather_rows(live, idx, scales + 4 * q));
      }
    }
  }
}

MOE_QVNNI inline __m512 load_f16x16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// y[r, 0:16] for R rows of x against one packed tile P (kQ4K: Q4_K's layout, else Q4_0's). Blocks in order, as
// tile_rows: the same sums. (Q4_K loading a sub-block pair's bytes once for both was slower on Zen 4: 16 more live
// registers.)
template <int R, bool kQ4K>
MOE_QVNNI void ptile_rows(const uint8_t* P, int64_t nb, const BlockQ8X* xq, float* y, int64_t ldy, int nvalid, bool accumulate) {
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  alignas(64) float sw[8 * kT], mw[8 * kT];  // Q4_K: the current super-block's sub-block factors
  for (int64_t b = 0; b < nb; ++b) {
    __m512i w[8];
    __m512 s, m;
    if constexpr (!kQ4K) {
      const uint8_t* o = P + b * kPackQ4_0;
      for (int g = 0; g < 4; ++g) {
        const __m512i v = _mm512_loadu_si512(o + 64 * g);
        w[g] = _mm512_and_si512(v, m4);
        w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      }
      s = load_f16x16(o + 256);
      m = _mm512_mul_ps(s, _mm512_set1_ps(8.0f));  // repack_tile's mw for Q4_0
    } else {
      const int sub = int(b % 8);
      const uint8_t* o = P + (b / 8) * kPackQ4_K;
      if (sub == 0)
        q4k_tile_scales(load_f16x16(o + 2048), load_f16x16(o + 2080), _mm512_loadu_si512(o + 2112),
                        _mm512_loadu_si512(o + 2176), _mm512_loadu_si512(o + 2240), sw, mw);
      const uint8_t* raw = o + 512 * (sub / 2);
      for (int g = 0; g < 8; ++g) {
        const __m512i v = _mm512_loadu_si512(raw + 64 * g);
        w[g] = _mm512_and_si512(sub % 2 ? _mm512_srli_epi16(v, 4) : v, m4);
      }
      s = _mm512_load_ps(sw + sub * kT);
      m = _mm512_load_ps(mw + sub * kT);
    }
    q4_block_rows<R>(acc, w, s, m, xq + b, nb);
  }
  store_rows<R>(acc, y, ldy, nvalid, accumulate);
}

// y[r, 0:16] for R rows of x against one packed Q8_0 tile: u = w + 128 is the unsigned operand as it is and x the
// signed one, so no vpsignb and no x + 128: exactly in int32,
//   sum_g dpbusd(u[g], x dword g) - 128 sum q_x = sum w q_x
// the per-call GEMM's integer (sum (q_x + 128) w - 128 sum w), then its float step: the same bits.
template <int R>
MOE_QVNNI void ptile_rows_q8(const uint8_t* P, int64_t nb, const BlockQ8X* xq, float* y, int64_t ldy, int nvalid, bool accumulate) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* o = P + b * kPackQ8_0;
    __m512i u[8];
    for (int g = 0; g < 8; ++g) u[g] = _mm512_loadu_si512(o + 64 * g);
    const __m512 s = load_f16x16(o + 512);
    for (int r = 0; r < R; ++r) {
      const BlockQ8X& X = xq[r * nb + b];
      const __m512i p = _mm512_sub_epi32(block_dp(u, X), _mm512_set1_epi32(128 * X.s));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(s, _mm512_set1_ps(X.d)), acc[r]);
    }
  }
  store_rows<R>(acc, y, ldy, nvalid, accumulate);
}

// Tiles [tile0, tile1) of a packed weight against all M rows of x (8 per pass, the rest in one pass).
MOE_QVNNI void gemm_packed_vnni(DType t, const uint8_t* P, int64_t N, int64_t K, const BlockQ8X* xq, int64_t M, float* y,
                                int64_t ldy, bool accumulate, int64_t tile0, int64_t tile1) {
  const int64_t nb = K / 32;
  const size_t tb = pack_tile_bytes(t, K);
  const bool q4k = t == DType::Q4_K;
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t n0 = tile * kT;
    const int nrows = int(std::min<int64_t>(kT, N - n0));
    const uint8_t* p = P + size_t(tile) * tb;
    row_passes(M, [&](auto R, int64_t m) {
      constexpr int kR = decltype(R)::value;
      if (t == DType::Q8_0) ptile_rows_q8<kR>(p, nb, xq + m * nb, y + m * ldy + n0, ldy, nrows, accumulate);
      else if (q4k) ptile_rows<kR, true>(p, nb, xq + m * nb, y + m * ldy + n0, ldy, nrows, accumulate);
      else ptile_rows<kR, false>(p, nb, xq + m * nb, y + m * ldy + n0, ldy, nrows, accumulate);
    });
  }
}

thread_local std::vector<int8_t> t_bytes;
thread_local std::vector<float> t_sw, t_mw;
thread_local std::vector<int32_t> t_c;

// Tiles [tile0, tile1) of 16 weight rows: each repacked once (per thread, buffers that only grow) and multiplied
// with all M rows of x. xu (the unsigned bytes) is read for Q8_0 only.
MOE_QVNNI void gemm_tiles_vnni(DType t, const uint8_t* W, size_t row_bytes, int64_t N, int64_t K, const uint8_t* xu,
                               const BlockQ8X* xq, int64_t M, float* y, int64_t ldy, bool accumulate, int64_t tile0,
                               int64_t tile1) {
  const int64_t nb = K / 32;
  std::vector<int8_t>& tb = t_bytes;  // thread_local: looked up once, not per tile
  std::vector<float>& tsw = t_sw;
  std::vector<float>& tmw = t_mw;
  std::vector<int32_t>& tc = t_c;
  if (tb.size() < size_t(nb * 512)) tb.resize(size_t(nb * 512));
  if (tsw.size() < size_t(nb * kT)) { tsw.resize(size_t(nb * kT)); tmw.resize(size_t(nb * kT)); tc.resize(size_t(nb * kT)); }
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t n0 = tile * kT;
    const int nrows = int(std::min<int64_t>(kT, N - n0));
    repack_tile(t, W, row_bytes, n0, nrows, K, tb.data(), tsw.data(), tc.data(), tmw.data());
    if (t == DType::Q8_0)
      tile_all_rows<false>(tb.data(), tsw.data(), tc.data(), tmw.data(), nb, xu, xq, M, K, y + n0, ldy, nrows, accumulate);
    else
      tile_all_rows<true>(tb.data(), tsw.data(), tc.data(), tmw.data(), nb, xu, xq, M, K, y + n0, ldy, nrows, accumulate);
  }
}

// Activation rows to int8 blocks of 32: d = absmax / 127, q = round-half-even(x / d) (vcvtps2dq under the default
// rounding mode, as lrintf in the portable loop), s = Σ q; xu (optional) = q + 128 as bytes.
MOE_QVNNI void quantize_rows_avx512(const float* x, int64_t ldx, int64_t M, int64_t K, BlockQ8X* xq, uint8_t* xu) {
  const int64_t nb = K / 32;
  const __m128i flip = _mm_set1_epi8(char(0x80));
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    for (int64_t b = 0; b < nb; ++b) {
      const __m512 a = _mm512_loadu_ps(xr + b * 32), c = _mm512_loadu_ps(xr + b * 32 + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
      const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
      const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(id)));
      const __m512i qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, _mm512_set1_ps(id)));
      BlockQ8X& X = xq[m * nb + b];
      const __m128i ba = _mm512_cvtsepi32_epi8(qa), bc = _mm512_cvtsepi32_epi8(qc);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(X.q), ba);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(X.q + 16), bc);
      X.d = d;
      X.s = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
      if (xu) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(xu + m * K + b * 32), _mm_xor_si128(ba, flip));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(xu + m * K + b * 32 + 16), _mm_xor_si128(bc, flip));
      }
    }
  }
}

}  // namespace

// f32-activation dots stay the AVX2 ones (they are f32 FMAs either way).
const QKernels kQAvx512Vnni{"avx512vnni", dot_q8_rows_vnni, dot_f32_avx2, 8, gemm_tiles_vnni, kT, gemm_min_rows_vnni,
                            quantize_rows_avx512, pack_bytes_tiles, pack_vnni, gemm_packed_vnni, true};

}  // namespace moe::cpu_qmatmul
#endif  // MOE_QX86
