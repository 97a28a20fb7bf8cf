// AMX (Sapphire Rapids and later) for prefill with bf16 weights. TDPBF16PS multiplies bf16 pairs and accumulates
// in f32 at ~16x the rate of AVX-512 FMA. The weights are bf16 already (exact); the f32 activations are split
// into three bf16 parts x = hi + mid + lo (each the round-to-nearest bf16 of what is left; |x - hi - mid - lo| <=
// 2^-26 |x|), and each part is multiplied exactly (8x8-bit mantissas fit in f32), so the result is f32-accurate:
// the same tolerance as the FMA paths, at 3 tile products per block.
// Roles are swapped so that the weights need no repacking: C^T[n, m] = sum_k W[n, k] x[m, k]
//   A tile = W[n0:n0+16, k0:k0+32]   loaded straight from the (mmapped) weights, row stride 2K bytes
//   B tile = x parts in VNNI layout   B[kp][m] = (x[m, 2kp], x[m, 2kp+1]) as one 32-bit pair, packed per call
//   C tile = 16 weight rows x 16 x rows of f32, transposed into y at the end of the K loop.
// K % 32 tail columns, N % 16 tail rows and small M fall back to the AVX-512 code.
#include "cpu/matmul_kernels.h"

#if MOE_HAVE_X86_DISPATCH
#include <cpuid.h>
#include <vector>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 flags its own _mm*_undefined_*() (used inside several AVX-512 intrinsics) as (maybe-)uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace moe::cpu_matmul {

#define MOE_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16,avx512bw,avx512vl,avx2,fma,f16c")))

namespace {
constexpr int64_t kAmxMinM = 4;

struct alignas(64) AmxTileConfig {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

}  // namespace

// Linux: a process must ask for the AMX tile data state before its first tile instruction.
bool amx_usable() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  if (!amx_bf16 || !amx_tile) return false;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return false;  // AVX512_BF16
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl"))
    return false;
#if defined(__linux__)
  constexpr long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return false;
#endif
}

namespace {
// Packed activations for this thread's current call: [3 parts][MB m-blocks][KP = K32/2 pairs][16 m] uint32.
// Grows to the largest prefill seen, then is reused (decode never comes here).
thread_local std::vector<uint32_t> t_amx_pack;

// In-register transpose of a 16x16 matrix of 32-bit elements (rows r[0..15]). Four shuffle stages; the result
// has rows 1,2 (mod 4) swapped, which amx_pack_x undoes when storing.
MOE_AMX inline void transpose16x16_epi32(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) {
      r[4 * i + j] = _mm512_unpacklo_epi64(t[4 * i + j], t[4 * i + j + 2]);
      r[4 * i + j + 2] = _mm512_unpackhi_epi64(t[4 * i + j], t[4 * i + j + 2]);
    }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}

MOE_AMX inline __m512 bf16_widen(__m256bh h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h), 16));
}

// x[M, K32] -> buf[part][mb][kp][mi] = (part of x[16 mb + mi, 2 kp], part of x[16 mb + mi, 2 kp + 1]).
// Per 16 rows x 32 columns: each row's 32 values become, per part, one vector of 16 bf16 pairs (row-major
// [mi][kp]); a 16x16 transpose turns that into the 16 B-tile rows [kp][mi]. Rows m >= M are zero.
MOE_AMX void amx_pack_x(uint32_t* buf, const float* x, int64_t ldx, int64_t M, int64_t K32, int64_t MB) {
  const int64_t KP = K32 / 2, part_stride = MB * KP * 16;
  __m512i R[3][16];
  for (int64_t mb = 0; mb < MB; ++mb) {
    const int64_t rows = M - mb * 16 < 16 ? M - mb * 16 : 16;
    for (int64_t k0 = 0; k0 < K32; k0 += 32) {
      for (int i = 0; i < 16; ++i) {
        if (i >= rows) { R[0][i] = R[1][i] = R[2][i] = _mm512_setzero_si512(); continue; }
        const float* xr = x + (mb * 16 + i) * ldx + k0;
        __m256bh parts[3][2];
        for (int h = 0; h < 2; ++h) {
          const __m512 v = _mm512_loadu_ps(xr + 16 * h);
          parts[0][h] = _mm512_cvtneps_pbh(v);
          const __m512 r1 = _mm512_sub_ps(v, bf16_widen(parts[0][h]));
          parts[1][h] = _mm512_cvtneps_pbh(r1);
          const __m512 r2 = _mm512_sub_ps(r1, bf16_widen(parts[1][h]));
          parts[2][h] = _mm512_cvtneps_pbh(r2);
        }
        for (int p = 0; p < 3; ++p)
          R[p][i] = _mm512_inserti64x4(_mm512_castsi256_si512((__m256i)parts[p][0]), (__m256i)parts[p][1], 1);
      }
      for (int p = 0; p < 3; ++p) {
        transpose16x16_epi32(R[p]);
        uint32_t* dst = buf + p * part_stride + (mb * KP + k0 / 2) * 16;
        for (int i = 0; i < 16; ++i) {
          const int row = (i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1);  // undo the 1<->2 swap
          _mm512_storeu_si512(dst + row * 16, R[p][i]);
        }
      }
    }
  }
}

// y[m, n+r] (+)= c[r][mi] + the K % 32 tail, for the valid x rows of m-block mb. c is transposed in registers
// (16x16 f32) so each x row gets one 16-wide store.
MOE_AMX inline void amx_store(float (*c)[16], float* y, int64_t ldy, const float* x, int64_t ldx, const uint16_t* wn,
                              int64_t n, int64_t mb, int64_t M, int64_t K, int64_t K32, bool acc) {
  const int64_t m_end = M - mb * 16 < 16 ? M - mb * 16 : 16;
  __m512i t[16];
  for (int r = 0; r < 16; ++r) t[r] = _mm512_load_si512(c[r]);
  transpose16x16_epi32(t);  // t[i] holds column ((i & ~3) | (i & 1) << 1 | (i >> 1) & 1) of c
  for (int i = 0; i < 16; ++i) {
    const int64_t mi = (i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1);
    if (mi >= m_end) continue;
    const int64_t m = mb * 16 + mi;
    float* yr = y + m * ldy + n;
    __m512 v = _mm512_castsi512_ps(t[i]);
    if (K32 < K) {  // K % 32 tail: scalar, rare (hidden sizes are multiples of 32)
      alignas(64) float tail[16];
      const float* xr = x + m * ldx;
      for (int r = 0; r < 16; ++r) {
        float s = 0.f;
        for (int64_t k = K32; k < K; ++k) s += xr[k] * bf16_to_f32(wn[r * K + k]);
        tail[r] = s;
      }
      v = _mm512_add_ps(v, _mm512_load_ps(tail));
    }
    if (acc) v = _mm512_add_ps(v, _mm512_loadu_ps(yr));
    _mm512_storeu_ps(yr, v);
  }
}

// NB (1|2) blocks of 16 weight rows x MBK (1|2) blocks of 16 x rows, over all of K32. Tiles: 0..3 = C[nb][mb]
// (0 = n0/mb0, 1 = n0/mb1, 2 = n1/mb0, 3 = n1/mb1), 4..5 = A (weights), 6..7 = B (x parts). Per 32-wide k step:
// NB + 3*MBK tile loads feed 3*NB*MBK tile products.
template <int NB, int MBK>
MOE_AMX inline void amx_block(float* y, int64_t ldy, const float* x, int64_t ldx, const uint16_t* W, int64_t n,
                              int64_t mb, const uint32_t* buf, int64_t part_stride, int64_t M, int64_t K, int64_t K32,
                              bool acc) {
  const int64_t KP = K32 / 2;
  const uint16_t* wn = W + n * K;
  const uint32_t* b0 = buf + mb * KP * 16;
  const uint32_t* b1 = b0 + KP * 16;
  _tile_zero(0);
  if (MBK > 1) _tile_zero(1);
  if (NB > 1) _tile_zero(2);
  if (NB > 1 && MBK > 1) _tile_zero(3);
  for (int64_t kp = 0; kp < KP; kp += 16) {
    _tile_loadd(4, wn + 2 * kp, K * 2);
    if (NB > 1) _tile_loadd(5, wn + 16 * K + 2 * kp, K * 2);
    for (int p = 2; p >= 0; --p) {  // lo, mid, hi: smallest part first
      _tile_loadd(6, b0 + p * part_stride + kp * 16, 64);
      if (MBK > 1) _tile_loadd(7, b1 + p * part_stride + kp * 16, 64);
      _tile_dpbf16ps(0, 4, 6);
      if (NB > 1) _tile_dpbf16ps(2, 5, 6);
      if (MBK > 1) _tile_dpbf16ps(1, 4, 7);
      if (NB > 1 && MBK > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  alignas(64) float c[16][16];
  _tile_stored(0, c, 64);
  amx_store(c, y, ldy, x, ldx, wn, n, mb, M, K, K32, acc);
  if (MBK > 1) { _tile_stored(1, c, 64); amx_store(c, y, ldy, x, ldx, wn, n, mb + 1, M, K, K32, acc); }
  if (NB > 1) { _tile_stored(2, c, 64); amx_store(c, y, ldy, x, ldx, wn + 16 * K, n + 16, mb, M, K, K32, acc); }
  if (NB > 1 && MBK > 1) { _tile_stored(3, c, 64); amx_store(c, y, ldy, x, ldx, wn + 16 * K, n + 16, mb + 1, M, K, K32, acc); }
}

// Packs x into this thread's buffer if the AMX path applies to (dt, M, K), else returns nullptr.
MOE_AMX const void* amx_prepack(const float* x, int64_t ldx, DType dt, int64_t M, int64_t K) {
  const int64_t K32 = K & ~int64_t(31);
  if (dt != DType::BF16 || M < kAmxMinM || K32 == 0) return nullptr;
  const int64_t MB = (M + 15) / 16, part_stride = MB * (K32 / 2) * 16;
  if (t_amx_pack.size() < size_t(3 * part_stride)) t_amx_pack.resize(size_t(3 * part_stride));
  amx_pack_x(t_amx_pack.data(), x, ldx, M, K32, MB);
  return t_amx_pack.data();
}

MOE_AMX void matmul_rows_amx_packed(float* y, int64_t ldy, const float* x, int64_t ldx, const void* Wv, DType dt,
                                    int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc, const void* packed) {
  const uint16_t* W = static_cast<const uint16_t*>(Wv);
  const uint32_t* buf = static_cast<const uint32_t*>(packed);
  const int64_t K32 = K & ~int64_t(31), MB = (M + 15) / 16, part_stride = MB * (K32 / 2) * 16;
  int64_t n = n0;
  if (n1 - n0 >= 16) {
    AmxTileConfig cfg{};
    cfg.palette_id = 1;
    for (int t = 0; t < 8; ++t) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
    for (; n + 32 <= n1; n += 32) {
      int64_t mb = 0;
      for (; mb + 2 <= MB; mb += 2) amx_block<2, 2>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
      if (mb < MB) amx_block<2, 1>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
    }
    if (n + 16 <= n1) {
      int64_t mb = 0;
      for (; mb + 2 <= MB; mb += 2) amx_block<1, 2>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
      if (mb < MB) amx_block<1, 1>(y, ldy, x, ldx, W, n, mb, buf, part_stride, M, K, K32, acc);
      n += 16;
    }
    _tile_release();
  }
  if (n < n1) matmul_rows_avx512(y, ldy, x, ldx, Wv, dt, M, n, n1, K, acc);
}

MOE_AMX void matmul_rows_amx(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                             int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc) {
  const void* packed = n1 - n0 >= 16 ? amx_prepack(x, ldx, dt, M, K) : nullptr;
  if (!packed) matmul_rows_avx512(y, ldy, x, ldx, W, dt, M, n0, n1, K, acc);
  else matmul_rows_amx_packed(y, ldy, x, ldx, W, dt, M, n0, n1, K, acc, packed);
}
}  // namespace

const Kernels kAmx = {"amx-bf16+avx512f", matvec_rows_avx512, matmul_rows_amx, dot_avx2, axpy_avx2, row_convert_avx2,
                      amx_prepack, matmul_rows_amx_packed, dot_rows_avx512, axpy_rows_avx512, outer_rows_avx512};

}  // namespace moe::cpu_matmul
#endif  // MOE_HAVE_X86_DISPATCH
