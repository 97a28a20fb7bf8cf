// AVX2 + FMA + F16C kernels for Q8_0 / Q4_0 / Q4_K weights (math in qmatmul.h, the driver in qmatmul.cpp).
// Compiled per function with target attributes; used only when cpuid says the CPU has all three.
#include "cpu/qmatmul_kernels.h"

#if MOE_QX86
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>
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

// ---- the load-time layout (qmatmul_kernels.h), packed and read with AVX2 ----
//
// The packing is plain copies (it runs once, at load): per row of a tile, its 4-byte groups to their slots. The
// VNNI table's packing (gathers and permutes) writes the same bytes (qmatmul_packed_is_the_gemm).
void pack_q4(DType t, const uint8_t* W, size_t row_bytes, int64_t N, int64_t K, uint8_t* out, int64_t tile0, int64_t tile1) {
  const size_t tb = pack_tile_bytes(t, K);
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t n0 = tile * kPackRows;
    const int nrows = int(std::min<int64_t>(kPackRows, N - n0));
    uint8_t* o = out + size_t(tile) * tb;
    std::memset(o, 0, tb);  // padding rows: zero nibbles and scales
    for (int j = 0; j < nrows; ++j) {
      const uint8_t* row = W + size_t(n0 + j) * row_bytes;
      if (t == DType::Q4_0) {
        for (int64_t b = 0; b < K / 32; ++b) {
          const uint8_t* blk = row + b * sizeof(BlockQ4_0);
          uint8_t* ob = o + size_t(b) * kPackQ4_0;
          for (int g = 0; g < 4; ++g) std::memcpy(ob + 64 * g + 4 * j, blk + offsetof(BlockQ4_0, qs) + 4 * g, 4);
          std::memcpy(ob + 256 + 2 * j, blk + offsetof(BlockQ4_0, d), 2);
        }
      } else {
        for (int64_t sb = 0; sb < K / 256; ++sb) {
          const uint8_t* blk = row + sb * sizeof(BlockQ4_K);
          uint8_t* ob = o + size_t(sb) * kPackQ4_K;
          for (int p = 0; p < 4; ++p)
            for (int g = 0; g < 8; ++g) std::memcpy(ob + 512 * p + 64 * g + 4 * j, blk + offsetof(BlockQ4_K, qs) + 32 * p + 4 * g, 4);
          std::memcpy(ob + 2048 + 2 * j, blk + offsetof(BlockQ4_K, d), 2);
          std::memcpy(ob + 2080 + 2 * j, blk + offsetof(BlockQ4_K, dmin), 2);
          for (int q = 0; q < 3; ++q) std::memcpy(ob + 2112 + 64 * q + 4 * j, blk + offsetof(BlockQ4_K, scales) + 4 * q, 4);
        }
      }
    }
  }
}

// AVX2 reads a tile as two halves of 8 rows: bytes [32h, 32h + 32) of each 64-byte group, the f16 scales from 16h,
// the scale dwords from 32h. vpdpbusd becomes vpmaddubsw (nibble u8 x activation s8, pairs into i16, |pair| <= 2 x 15
// x 127 = 3810) summed in i16 over the block's 8 groups (|sum| <= 30480 < 2^15: exact), then one vpmaddwd by 1 into
// the 8 int32 lanes: the integer VNNI's dpbusd chain gives. The float steps are VNNI's ptile_rows, in its order
// (scale, offset or min, accumulate, store), so the two tables' packed products are the same bits.
//   acc[r] += cvt(dp) * (s * d_x)  -  m * (d_x * sum q_x),   s, m = d, 8d (Q4_0) or d*sc, dmin*m (Q4_K sub-block)
constexpr int kHalf = 8;

// Q4_K's sub-block factors for 8 rows (lane j = row j): VNNI's q4k_tile_scales on 8 lanes (the unpacking is
// q4k_scale_min's, bytewise: sc_0..3 = a & 63, m_0..3 = b & 63, sc_4..7 = (c & 15) | (a >> 6) << 4, m_4..7 =
// (c >> 4) | (b >> 6) << 4) -> sw[sub][j] = d*sc_sub, mw[sub][j] = dmin*m_sub.
MOE_QAVX2 inline void q4k_half_scales(__m256 d, __m256 dmin, __m256i a, __m256i bw, __m256i c, float* sw, float* mw) {
  const __m256i k3f = _mm256_set1_epi32(0x3f3f3f3f), k0f = _mm256_set1_epi32(0x0f0f0f0f), k30 = _mm256_set1_epi32(0x30303030);
  const __m256i sc4[2] = {_mm256_and_si256(a, k3f),
                          _mm256_or_si256(_mm256_and_si256(c, k0f), _mm256_and_si256(_mm256_srli_epi32(a, 2), k30))};
  const __m256i mn4[2] = {_mm256_and_si256(bw, k3f),
                          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(c, 4), k0f),
                                          _mm256_and_si256(_mm256_srli_epi32(bw, 2), k30))};
  const __m256i ff = _mm256_set1_epi32(0xff);
  for (int sub = 0; sub < 8; ++sub) {
    const __m128i shift = _mm_cvtsi32_si128(8 * (sub % 4));
    const __m256 scf = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(sc4[sub / 4], shift), ff));
    const __m256 mnf = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(mn4[sub / 4], shift), ff));
    _mm256_store_ps(sw + sub * kHalf, _mm256_mul_ps(d, scf));
    _mm256_store_ps(mw + sub * kHalf, _mm256_mul_ps(dmin, mnf));
  }
}

// An empty asm that "changes" v: GCC otherwise reassociates the i16 sums of a block, computes every product first
// and spills them (the R = 4 pass ran 30% slower so).
MOE_QAVX2 inline void keep(__m256i& v) { __asm__("" : "+x"(v)); }
MOE_QAVX2 inline __m256i bcast4(const int8_t* q) {  // 4 activation bytes to every dword lane
  int32_t four;
  std::memcpy(&four, q, 4);
  return _mm256_set1_epi32(four);
}
MOE_QAVX2 inline __m256 load_f16x8(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// y[r, 0:nvalid] (+)= acc[r] for the R x rows of one half tile (nvalid <= 8 outputs).
template <int R>
MOE_QAVX2 inline void store_half(const __m256* acc, float* y, int64_t ldy, int nvalid, bool accumulate) {
  const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(nvalid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (int r = 0; r < R; ++r) {
    float* o = y + r * ldy;
    __m256 v = acc[r];
    if (nvalid == kHalf) {
      if (accumulate) v = _mm256_add_ps(v, _mm256_loadu_ps(o));
      _mm256_storeu_ps(o, v);
    } else {
      if (accumulate) v = _mm256_add_ps(v, _mm256_maskload_ps(o, live));
      _mm256_maskstore_ps(o, live, v);
    }
  }
}

// y[r, 0:nvalid] (+)= the R x rows against half h of one packed tile (nvalid <= 8 of its rows).
template <int R, bool kQ4K>
MOE_QAVX2 void ptile_half(const uint8_t* P, int64_t nb, int h, const BlockQ8X* xq, float* y, int64_t ldy, int nvalid, bool accumulate) {
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  alignas(32) float sw[8 * kHalf], mw[8 * kHalf];  // Q4_K: the current super-block's sub-block factors
  // Per block: groups outer, x rows inner, so that one group's unpacked nibbles (two registers) serve all R rows
  // and the R i16 sums and R accumulators stay in registers (with the 8 groups unpacked first, R = 4 spilled).
  for (int64_t b = 0; b < nb; ++b) {
    __m256i t[R];
    for (int r = 0; r < R; ++r) t[r] = _mm256_setzero_si256();
    __m256 s, m;
    if constexpr (!kQ4K) {
      const uint8_t* o = P + b * kPackQ4_0;
      for (int g = 0; g < 4; ++g) {
        const __m256i v = load32(o + 64 * g + 32 * h);
        const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        for (int r = 0; r < R; ++r) {
          const int8_t* q = xq[r * nb + b].q;
          t[r] = _mm256_add_epi16(t[r], _mm256_maddubs_epi16(lo, bcast4(q + 4 * g)));
          t[r] = _mm256_add_epi16(t[r], _mm256_maddubs_epi16(hi, bcast4(q + 16 + 4 * g)));
          keep(t[r]);
        }
      }
      s = load_f16x8(o + 256 + 16 * h);
      m = _mm256_mul_ps(s, _mm256_set1_ps(8.0f));
    } else {
      const int sub = int(b % 8);
      const uint8_t* o = P + (b / 8) * kPackQ4_K;
      if (sub == 0)
        q4k_half_scales(load_f16x8(o + 2048 + 16 * h), load_f16x8(o + 2080 + 16 * h), load32(o + 2112 + 32 * h),
                        load32(o + 2176 + 32 * h), load32(o + 2240 + 32 * h), sw, mw);
      const uint8_t* raw = o + 512 * (sub / 2) + 32 * h;
      for (int g = 0; g < 8; ++g) {
        const __m256i v = load32(raw + 64 * g);
        const __m256i w = _mm256_and_si256(sub % 2 ? _mm256_srli_epi16(v, 4) : v, m4);
        for (int r = 0; r < R; ++r) {
          t[r] = _mm256_add_epi16(t[r], _mm256_maddubs_epi16(w, bcast4(xq[r * nb + b].q + 4 * g)));
          keep(t[r]);
        }
      }
      s = _mm256_load_ps(sw + sub * kHalf);
      m = _mm256_load_ps(mw + sub * kHalf);
    }
    for (int r = 0; r < R; ++r) {
      const BlockQ8X& X = xq[r * nb + b];
      const __m256i p = _mm256_madd_epi16(t[r], ones);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(s, _mm256_set1_ps(X.d)), acc[r]);
      acc[r] = _mm256_fnmadd_ps(m, _mm256_set1_ps(X.d * float(X.s)), acc[r]);
    }
  }
  store_half<R>(acc, y, ldy, nvalid, accumulate);
}

// M rows of x 4 at a time, the rest in one pass: pass(std::integral_constant<int, R>{}, m).
template <class Pass>
MOE_QAVX2 inline void row_passes4(int64_t M, Pass&& pass) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) pass(std::integral_constant<int, 4>{}, m);
  switch (M - m) {
    case 3: pass(std::integral_constant<int, 3>{}, m); break;
    case 2: pass(std::integral_constant<int, 2>{}, m); break;
    case 1: pass(std::integral_constant<int, 1>{}, m); break;
    default: break;
  }
}

// Tiles [tile0, tile1) of a packed Q4 weight against all M rows of x: per tile and half, the rows of x 4 at a time
// (4 i16 sums and 4 accumulators beside one unpacked group), the rest in one pass.
MOE_QAVX2 void gemm_packed_q4(DType t, const uint8_t* P, int64_t N, int64_t K, const BlockQ8X* xq, int64_t M, float* y,
                                int64_t ldy, bool accumulate, int64_t tile0, int64_t tile1) {
  const int64_t nb = K / 32;
  const size_t tb = pack_tile_bytes(t, K);
  const bool q4k = t == DType::Q4_K;
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t n0 = tile * kPackRows;
    const int nrows = int(std::min<int64_t>(kPackRows, N - n0));
    const uint8_t* p = P + size_t(tile) * tb;
    for (int h = 0; h * kHalf < nrows; ++h) {
      const int nv = std::min(kHalf, nrows - h * kHalf);
      row_passes4(M, [&](auto R, int64_t m) {
        constexpr int kR = decltype(R)::value;
        float* yo = y + m * ldy + n0 + h * kHalf;
        if (q4k) ptile_half<kR, true>(p, nb, h, xq + m * nb, yo, ldy, nv, accumulate);
        else ptile_half<kR, false>(p, nb, h, xq + m * nb, yo, ldy, nv, accumulate);
      });
    }
  }
}

// ---- Q8_0: the same GEMM over 16-row tiles, packed at load or per call ----
//
// A tile in the packed layout (qmatmul_kernels.h: per block 8 groups of 64 bytes, group g lane j = dword g of row
// j's weights as u = w + 128, then the rows' f16 scales) is read as two halves of 8 rows, like the Q4 tiles. Signed x
// signed has no single exact instruction on AVX2 (vpmaddubsw takes one unsigned operand), and two forms give the same
// int32 sum:
//   |w| x sign(w)·x (vpsignb; no byte is -128): a vpsignb, a vpmaddubsw and a vpmaddwd per 32 products (a pair
//       reaches 2·127², so each group goes to int32 at once), all three on the same two of Zen 4's four vector pipes
//       (any mix of them issues 2 per cycle, measured);
//   the nibbles of u = 16 hi + lo as two Q4-like unsigned planes: vpmaddubsw pairs reach 2 x 15 x 128 = 3840, summed
//       in i16 over the block's 8 groups (<= 30720 < 2^15: exact), two multiplies per 32 products, the adds on the
//       other pipes and one vpmaddwd per plane per block; then sum w x = 16 sum hi x + sum lo x - 128 sum x.
// Rows of x 2..4 at a time take the nibbles (the nibble split is shared by them), one row the sign form (Zen 4 under
// MOE_SIMD=avx2, one thread, 512 x 1024, ms, sign -> nibbles: M=1 0.011 -> 0.014, M=16 0.132 -> 0.129, M=128 1.062
// -> 1.018). The float step is the row dots' and VNNI's: acc += cvt(dp) * (d_w * d_x).
constexpr int64_t kQ8Groups = 512;  // bytes of a packed Q8_0 block's weights (then its 32 bytes of scales)

// r[j] = the 8 dwords of row j  ->  r[g] lane j = dword g of row j
MOE_QAVX2 inline void transpose8x8(__m256i r[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);      // rows 2i, 2i+1: dwords 0, 1 | 4, 5
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);  // dwords 2, 3 | 6, 7
  }
  for (int i = 0; i < 2; ++i) {  // rows 4i .. 4i+3
    u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);          // dword 0 | 4
    u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);      // 1 | 5
    u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);  // 2 | 6
    u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);  // 3 | 7
  }
  for (int g = 0; g < 4; ++g) {
    r[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
    r[g + 4] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
  }
}

// Rows [n0, n0 + nrows) of a stored Q8_0 weight (nrows <= 16) into one tile of the packed layout at `out`.
MOE_QAVX2 void pack_q8_tile(const uint8_t* W, size_t row_bytes, int64_t n0, int nrows, int64_t nb, uint8_t* out) {
  const uint8_t* tile = W + size_t(n0) * row_bytes;
  const __m256i bias = _mm256_set1_epi8(char(0x80));  // w + 128 = w ^ 0x80 for a byte; a zero row packs to 128
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* o = out + size_t(b) * kPackQ8_0;
    for (int h = 0; h < 2; ++h) {
      __m256i r[8];
      for (int j = 0; j < 8; ++j) {
        const int row = 8 * h + j;
        r[j] = row < nrows ? load32(tile + size_t(row) * row_bytes + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs))
                           : _mm256_setzero_si256();
      }
      transpose8x8(r);
      for (int g = 0; g < 8; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 64 * g + 32 * h), _mm256_xor_si256(r[g], bias));
    }
    for (int j = 0; j < kPackRows; ++j) {
      uint16_t d = 0;
      if (j < nrows) std::memcpy(&d, tile + size_t(j) * row_bytes + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, d), 2);
      std::memcpy(o + kQ8Groups + 2 * j, &d, 2);
    }
  }
}

// y[r, 0:nvalid] (+)= the R x rows against half h of one packed Q8_0 tile at P (nvalid <= 8 of its rows).
template <int R>
MOE_QAVX2 void q8tile_half(const uint8_t* P, int64_t nb, int h, const BlockQ8X* xq, float* y, int64_t ldy, int nvalid, bool accumulate) {
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), sixteens = _mm256_set1_epi16(16);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* o = P + size_t(b) * kPackQ8_0;
    __m256i tl[R], th[R];  // R = 1: tl is the int32 sum of |w| x sign(w)·x
    for (int r = 0; r < R; ++r) tl[r] = th[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m256i u = load32(o + 64 * g + 32 * h);
      if constexpr (R == 1) {
        const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8(char(0x80)));
        const __m256i sx = _mm256_sign_epi8(bcast4(xq[b].q + 4 * g), w);
        tl[0] = _mm256_add_epi32(tl[0], _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), sx), ones));
        keep(tl[0]);
      } else {
        const __m256i lo = _mm256_and_si256(u, m4), hi = _mm256_and_si256(_mm256_srli_epi16(u, 4), m4);
        for (int r = 0; r < R; ++r) {
          const __m256i xb = bcast4(xq[r * nb + b].q + 4 * g);
          tl[r] = _mm256_add_epi16(tl[r], _mm256_maddubs_epi16(lo, xb));
          th[r] = _mm256_add_epi16(th[r], _mm256_maddubs_epi16(hi, xb));
          keep(tl[r]);
          keep(th[r]);
        }
      }
    }
    const __m256 s = load_f16x8(o + kQ8Groups + 16 * h);
    for (int r = 0; r < R; ++r) {
      const BlockQ8X& X = xq[r * nb + b];
      const __m256i dp = R == 1 ? tl[0]
                                : _mm256_sub_epi32(_mm256_add_epi32(_mm256_madd_epi16(th[r], sixteens), _mm256_madd_epi16(tl[r], ones)),
                                                   _mm256_set1_epi32(128 * X.s));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_mul_ps(s, _mm256_set1_ps(X.d)), acc[r]);
    }
  }
  store_half<R>(acc, y, ldy, nvalid, accumulate);
}

// Tiles [tile0, tile1) of a packed Q8_0 weight at P (tile stride: pack_tile_bytes) against all M rows of x.
MOE_QAVX2 void q8_tiles(const uint8_t* P, size_t tile_stride, int64_t N, int64_t nb, const BlockQ8X* xq, int64_t M, float* y,
                        int64_t ldy, bool accumulate, int64_t tile0, int64_t tile1) {
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t n0 = tile * kPackRows;
    const int nrows = int(std::min<int64_t>(kPackRows, N - n0));
    const uint8_t* p = P + size_t(tile) * tile_stride;
    for (int h = 0; h * kHalf < nrows; ++h) {
      const int nv = std::min(kHalf, nrows - h * kHalf);
      row_passes4(M, [&](auto R, int64_t m) {
        q8tile_half<decltype(R)::value>(p, nb, h, xq + m * nb, y + m * ldy + n0 + h * kHalf, ldy, nv, accumulate);
      });
    }
  }
}

thread_local std::vector<uint8_t> t_q8tile;

// Q8_0 stored as is (the only type this table's per-call GEMM takes; gemm_min_rows_avx2): each 16-row tile packed
// once per call (per thread, into a buffer that only grows), then as packed. The signed blocks of x; xu is not read.
MOE_QAVX2 void gemm_tiles_avx2(DType, const uint8_t* W, size_t row_bytes, int64_t N, int64_t K, const uint8_t*, const BlockQ8X* xq,
                               int64_t M, float* y, int64_t ldy, bool accumulate, int64_t tile0, int64_t tile1) {
  const int64_t nb = K / 32;
  std::vector<uint8_t>& tb = t_q8tile;  // thread_local: looked up once, not per tile
  if (tb.size() < size_t(nb) * kPackQ8_0) tb.resize(size_t(nb) * kPackQ8_0);
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t n0 = tile * kPackRows;
    pack_q8_tile(W, row_bytes, n0, int(std::min<int64_t>(kPackRows, N - n0)), nb, tb.data());
    q8_tiles(tb.data(), 0, N - n0, nb, xq, M, y + n0, ldy, accumulate, 0, 1);
  }
}

// The load-time layout (qmatmul_kernels.h), VNNI's bytes: the Q4 types' packing and Q8_0's.
void pack_avx2(DType t, const uint8_t* W, size_t row_bytes, int64_t N, int64_t K, uint8_t* out, int64_t tile0, int64_t tile1) {
  if (t != DType::Q8_0) return pack_q4(t, W, row_bytes, N, K, out, tile0, tile1);
  for (int64_t tile = tile0; tile < tile1; ++tile)
    pack_q8_tile(W, row_bytes, tile * kPackRows, int(std::min<int64_t>(kPackRows, N - tile * kPackRows)), K / 32,
                 out + size_t(tile) * pack_tile_bytes(t, K));
}
MOE_QAVX2 void gemm_packed_avx2(DType t, const uint8_t* P, int64_t N, int64_t K, const BlockQ8X* xq, int64_t M, float* y,
                                int64_t ldy, bool accumulate, int64_t tile0, int64_t tile1) {
  if (t != DType::Q8_0) return gemm_packed_q4(t, P, N, K, xq, M, y, ldy, accumulate, tile0, tile1);
  q8_tiles(P, pack_tile_bytes(t, K), N, K / 32, xq, M, y, ldy, accumulate, tile0, tile1);
}

// From how many rows of x the per-call GEMM beats the row dots: Q8_0 only (the Q4 types take the packed GEMM when
// packed, else the f32 tiles or the row dots). Zen 4 under MOE_SIMD=avx2, 1 thread, M x 512 x 1024, ms, rows ->
// GEMM: M=2 0.033 -> 0.029, M=3 0.046 -> 0.039, M=4 0.059 -> 0.046; M=16 (f32 tiles ->) 0.294 -> 0.138; packed at
// load, no repack: M=1 0.013 (rows 0.020), M=2 0.019, M=4 0.032, M=16 0.127 (`run_bench_matmul.sh 0.3 M 512 1024
// q8_0 1`).
int gemm_min_rows_avx2(DType t) { return t == DType::Q8_0 ? 2 : std::numeric_limits<int>::max(); }

// Activation rows to int8 blocks of 32, VNNI's quantize_rows_avx512 on 8 lanes (the same bits: d = absmax / 127,
// q = round-half-even(x / d) by vcvtps2dq, s = sum q; xu = q + 128).
MOE_QAVX2 void quantize_rows_avx2(const float* x, int64_t ldx, int64_t M, int64_t K, BlockQ8X* xq, uint8_t* xu) {
  const int64_t nb = K / 32;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    for (int64_t b = 0; b < nb; ++b) {
      __m256 v[4], mx = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(xr + b * 32 + 8 * i);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float amax = _mm_cvtss_f32(m4);
      const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
      __m256i q[4];
      for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
      // i32 -> i16 -> i8 with saturation; packs interleave 128-bit lanes, the permute puts them back in order
      const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
      const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      BlockQ8X& X = xq[m * nb + b];
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(X.q), bytes);
      X.d = d;
      const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
      X.s = _mm_cvtsi128_si32(s4);
      if (xu) _mm256_storeu_si256(reinterpret_cast<__m256i*>(xu + m * K + b * 32), _mm256_xor_si256(bytes, _mm256_set1_epi8(char(0x80))));
    }
  }
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

const QKernels kQAvx2{"avx2", dot_q8_rows_avx2, dot_f32_avx2, 4, gemm_tiles_avx2, kPackRows, gemm_min_rows_avx2, quantize_rows_avx2,
                      pack_bytes_tiles, pack_avx2, gemm_packed_avx2, false};

}  // namespace moe::cpu_qmatmul
#endif  // MOE_QX86
