// NF4 forward and the dX = dY · W kernels (interface, math and work split in nf4_matmul.h).
//
// Decoding 4-bit codes with SIMD: 16 packed bytes hold 32 codes, element 2i in the high nibble of byte i. Split
// into hi = byte >> 4 and lo = byte & 15 (bytes), then unpacklo/hi_epi8(hi, lo) interleave them back into element
// order (h0 l0 h1 l1 ... = codes of elements 0, 1, 2, 3, ...). Each code indexes the 16-entry NF4 table:
//   AVX-512: vpermps with a 16-float table register (_mm512_permutexvar_ps) — one instruction per 16 codes;
//   AVX2:    two 8-float halves (_mm256_permutevar8x32_ps uses the low 3 bits) blended on bit 3 of the code.
// A dequantised value is NF4[q] * scale with one f32 multiply (exactly the reference's), so tiles are bit-exact.
// The SIMD kernels are in nf4_matmul_avx2.cpp / nf4_matmul_avx512.cpp (table and shared parts: cpu/nf4_kernels.h).
#include "cpu/nf4_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include "cpu/matmul.h"
#include "cpu/nf4_kernels.h"
#include "cpu/qmatmul.h"
#include "quant/quant.h"

namespace moe {

namespace {

using cpu_nf4::NKernels;
#if MOE_NX86
using cpu_nf4::kNAvx2;
using cpu_nf4::kNAvx512;
#endif
using cpu_nf4::dequant_pairs_portable;
using cpu_nf4::dot_pairs_portable;
using cpu_nf4::dx_cols_portable;

// ---------------------------------------------------------------------------------------------------------------
// Portable kernels (the ones that are also the tails of the SIMD ones are in cpu/nf4_kernels.h).
// ---------------------------------------------------------------------------------------------------------------

// Σ_b scale_b Σ_{i<64} NF4[q_{64b+i}] x_{64b+i} over nb whole blocks (a row that starts on a block boundary).
float dot_blocks_portable(const uint8_t* p, const float* x, const float* scales, int64_t nb) {
  float acc = 0;
  for (int64_t b = 0; b < nb; ++b) acc += scales[b] * dot_pairs_portable(p + 32 * b, x + 64 * b, 64);
  return acc;
}

void dx_block_portable(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType dt, int64_t ldw,
                       int64_t M, int64_t nn, int64_t kc, bool acc) {
  dx_cols_portable(dx, lddx, dy, lddy, W, dt, ldw, M, nn, 0, kc, acc);
}

const NKernels kNPortable{"portable", dequant_pairs_portable, dot_pairs_portable, dot_blocks_portable, dx_block_portable};

// Follow the dense kernels' choice (simd_use_path / MOE_SIMD): the names there are "amx-bf16+avx512f",
// "avx512f+fma+f16c", "avx2+fma+f16c", "portable" — each implies the CPU has what the matching path here needs.
const NKernels& NK() {
#if MOE_NX86
  const char* s = simd_name();
  if (std::strncmp(s, "amx", 3) == 0 || std::strncmp(s, "avx512", 6) == 0) return kNAvx512;
  if (std::strncmp(s, "avx2", 4) == 0) return kNAvx2;
#endif
  return kNPortable;
}

// f32 scales of blocks [b0, b1) in thread-local scratch (one call per row or tile: a call per block was ~40% of
// the decode time).
thread_local std::vector<float> t_scales;
const float* block_scales(const NF4Tensor& W, int64_t b0, int64_t b1) {
  if (t_scales.size() < size_t(b1 - b0)) t_scales.resize(size_t(b1 - b0));
  nf4_block_scales(W, b0, b1, t_scales.data());
  return t_scales.data();
}

// Elements [e0, e1) of W into y: per block segment, an odd head / tail nibble scalar, the even-aligned pairs SIMD.
void dequant_range(const NKernels& kr, const NF4Tensor& W, int64_t e0, int64_t e1, float* y) {
  if (e0 >= e1) return;
  const float* c = nf4_code();
  const uint8_t* p = W.packed.data();
  const int64_t bfirst = e0 / NF4_BLOCK;
  const float* sc = block_scales(W, bfirst, (e1 - 1) / NF4_BLOCK + 1);
  for (int64_t e = e0; e < e1;) {
    const int64_t b = e / NF4_BLOCK, end = std::min(e1, (b + 1) * NF4_BLOCK);
    const float s = sc[b - bfirst];
    if (e & 1) { y[e - e0] = c[p[e >> 1] & 15] * s; ++e; }
    const int64_t len = (end - e) & ~int64_t(1);
    kr.dequant_pairs(p + (e >> 1), s, len, y + (e - e0));
    e += len;
    if (e < end) { y[e - e0] = c[p[e >> 1] >> 4] * s; ++e; }
  }
}

// W row n · x, fused (K even: the row starts on a byte and every block segment has even length).
float row_dot(const NKernels& kr, const NF4Tensor& W, int64_t n, const float* x) {
  const int64_t K = W.cols, e0 = n * K;
  if (K == 0) return 0;
  const int64_t bfirst = e0 / NF4_BLOCK;
  const float* sc = block_scales(W, bfirst, (e0 + K - 1) / NF4_BLOCK + 1);
  if (e0 % NF4_BLOCK == 0 && K % NF4_BLOCK == 0) return kr.dot_blocks(W.packed.data() + e0 / 2, x, sc, K / NF4_BLOCK);
  float acc = 0;
  for (int64_t e = e0; e < e0 + K;) {
    const int64_t b = e / NF4_BLOCK, end = std::min(e0 + K, (b + 1) * NF4_BLOCK);
    acc += sc[b - bfirst] * kr.dot_pairs(W.packed.data() + (e >> 1), x + (e - e0), end - e);
    e = end;
  }
  return acc;
}

constexpr int64_t kTileRows = 8;    // forward: weight rows dequantised per tile (as qmatmul)
thread_local std::vector<float> t_tile;
thread_local std::vector<uint8_t> t_blocks;  // matmul_dx from a packed weight: one row's blocks of a column chunk

float* tile_buf(size_t n) {
  if (t_tile.size() < n) t_tile.resize(n);
  return t_tile.data();
}
uint8_t* block_buf(size_t n) {
  if (t_blocks.size() < n) t_blocks.resize(n);
  return t_blocks.data();
}

// dX work split: each thread owns chunks of kc columns and walks all N rows of W in tiles of `rows` x kc.
//   M >= kDxTileMinM: kc = 256 (halved while that leaves fewer than 2 chunks per thread, down to 16 or the quantized
//     block), 64-row tiles (a 64 KiB f32 tile in L2, dX kept in registers over 64 rows). Measured on 2048 x 2048 bf16,
//     M = 64, 1 thread: 111-120 GFLOP/s at kc = 128-256, 66-71 at kc = 1024.
//   M < kDxTileMinM (a token or two routed to an expert): the register block has too little reuse; stream rows
//     instead: kc = K / threads, and per row n one converted segment w = W[n, k0 : k0 + kc] and an axpy
//     dX[m, k0 : k0 + kc] += dY[m, n] * w per m (the contiguous segment keeps the prefetchers busy).
constexpr int64_t kDxTileMinM = 4;
struct DxSplit { int64_t kc, rows; };
DxSplit dx_split(int64_t K, int nt, int64_t minc, int64_t M) {
  const int64_t unit = std::max<int64_t>(minc, 16);
  if (M < kDxTileMinM) {
    const int64_t kc = (K + nt - 1) / nt;
    return {std::max(unit, (kc + unit - 1) / unit * unit), 1};
  }
  int64_t kc = std::max<int64_t>(256, unit);
  while (kc / 2 >= unit && (K + kc - 1) / kc < 2 * nt) kc /= 2;
  return {kc, 64};
}

// Tile rows are kc + 16 floats apart: with a power-of-two stride (kc = 256: 1 KiB) the 64 rows the kernel walks
// down map to 16 lines per L1 set (48 KiB, 12-way) and evict each other.
constexpr int64_t kTilePad = 16;

// dx[m, 0:w] (+)= Σ_{j < nn} dy[m, j] tile[j, 0:w] as one axpy per (m, j) (vec_axpy_f32: the dense kernels' SIMD).
void dx_axpy_rows(float* dx, int64_t lddx, const float* dy, int64_t lddy, const float* tile, int64_t ldt, int64_t M,
                  int64_t nn, int64_t w, bool acc) {
  if (!acc) for (int64_t m = 0; m < M; ++m) std::fill(dx + m * lddx, dx + m * lddx + w, 0.0f);
  for (int64_t j = 0; j < nn; ++j)
    for (int64_t m = 0; m < M; ++m) vec_axpy_f32(dx + m * lddx, dy[m * lddy + j], tile + j * ldt, w);
}

void check_dense_or_quant(DType t) {
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16 && !is_quant(t))
    throw std::invalid_argument(std::string("matmul_dx: weight dtype ") + dtype_name(t) +
                                " is not supported (expected f32, f16, bf16, q8_0, q4_0 or q4_k)");
}

}  // namespace

const char* nf4_simd_name() { return NK().name; }

void nf4_dequantize_range_fast(const NF4Tensor& W, int64_t e0, int64_t e1, float* y) {
  if (e0 < 0 || e1 > W.n || e0 > e1) throw std::invalid_argument("nf4_dequantize_range_fast: range outside the tensor");
  dequant_range(NK(), W, e0, e1, y);
}

void nf4_matmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, const NF4Tensor& W, int64_t M, bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  std::vector<float> row(size_t(std::max<int64_t>(K, 1)));
  for (int64_t n = 0; n < N; ++n) {
    nf4_dequantize_range(W, n * K, (n + 1) * K, row.data());
    for (int64_t m = 0; m < M; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(x[m * ldx + k]) * row[size_t(k)];
      y[m * ldy + n] = accumulate ? float(y[m * ldy + n] + s) : float(s);
    }
  }
}

void nf4_matmul(ThreadPool* pool, float* y, int64_t ldy, const float* x, int64_t ldx, const NF4Tensor& W, int64_t M,
                bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  if (M <= 0 || N <= 0) return;
  const NKernels& kr = NK();
  const bool threads = pool && pool->size() > 1 && N * M * K >= 2 * 65536;
  if (M == 1 && K % 2 == 0) {
    auto rows = [&](int64_t n0, int64_t n1, int) {
      for (int64_t n = n0; n < n1; ++n) {
        const float s = row_dot(kr, W, n, x);
        y[n] = accumulate ? y[n] + s : s;
      }
    };
    // ~64K weights per chunk dwarfs the cost of waking a worker (as in matmul()).
    if (threads) pool->run(N, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, K)), [&](int64_t a, int64_t b, int th) { rows(a, b, th); });
    else rows(0, N, 0);
    return;
  }
  // Tiles: kTileRows rows dequantised into f32 (contiguous elements [n K, (n + nr) K)), then the dense kernel.
  auto tiles = [&](int64_t t0, int64_t t1, int) {
    float* tile = tile_buf(size_t(kTileRows * K));
    for (int64_t n = t0 * kTileRows; n < std::min(N, t1 * kTileRows); n += kTileRows) {
      const int64_t nr = std::min(kTileRows, N - n);
      dequant_range(kr, W, n * K, (n + nr) * K, tile);
      matmul_st(y + n, ldy, x, ldx, tile, DType::F32, M, nr, K, accumulate);
    }
  };
  const int64_t nt = (N + kTileRows - 1) / kTileRows;
  if (threads && nt >= 2) pool->run(nt, 1, [&](int64_t a, int64_t b, int th) { tiles(a, b, th); });
  else tiles(0, nt, 0);
}

void nf4_matmul_dx_ref(float* dx, int64_t lddx, const float* dy, int64_t lddy, const NF4Tensor& W, int64_t M,
                       bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  std::vector<double> acc(size_t(M * K), 0.0);
  std::vector<float> row(size_t(std::max<int64_t>(K, 1)));
  for (int64_t n = 0; n < N; ++n) {
    nf4_dequantize_range(W, n * K, (n + 1) * K, row.data());
    for (int64_t m = 0; m < M; ++m) {
      const double a = dy[m * lddy + n];
      for (int64_t k = 0; k < K; ++k) acc[size_t(m * K + k)] += a * row[size_t(k)];
    }
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      float& o = dx[m * lddx + k];
      o = accumulate ? float(o + acc[size_t(m * K + k)]) : float(acc[size_t(m * K + k)]);
    }
}

void nf4_matmul_dx(ThreadPool* pool, float* dx, int64_t lddx, const float* dy, int64_t lddy, const NF4Tensor& W,
                   int64_t M, bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  if (M <= 0 || K <= 0) return;
  const NKernels& kr = NK();
  if (N <= 0) {  // an empty sum
    if (!accumulate) for (int64_t m = 0; m < M; ++m) std::fill(dx + m * lddx, dx + m * lddx + K, 0.0f);
    return;
  }
  const int nt = pool ? pool->size() : 1;
  const DxSplit sp = dx_split(K, nt, 16, M);
  const int64_t kc = sp.kc, kDxTileRows = sp.rows, nchunks = (K + kc - 1) / kc;
  auto chunks = [&](int64_t c0, int64_t c1, int) {
    float* tile = tile_buf(size_t(kDxTileRows * (kc + kTilePad)));
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k0 = c * kc, w = std::min(kc, K - k0), ldt = w + kTilePad;
      for (int64_t n0 = 0; n0 < N; n0 += kDxTileRows) {
        const int64_t nr = std::min(kDxTileRows, N - n0);
        for (int64_t r = 0; r < nr; ++r) dequant_range(kr, W, (n0 + r) * K + k0, (n0 + r) * K + k0 + w, tile + r * ldt);
        if (M < kDxTileMinM) { dx_axpy_rows(dx + k0, lddx, dy + n0, lddy, tile, ldt, M, nr, w, accumulate || n0 > 0); continue; }
        kr.dx_block(dx + k0, lddx, dy + n0, lddy, tile, DType::F32, ldt, M, nr, w, accumulate || n0 > 0);
      }
    }
  };
  if (pool && nt > 1 && nchunks > 1 && M * N * K >= 2 * 65536) pool->run(nchunks, 1, [&](int64_t a, int64_t b, int th) { chunks(a, b, th); });
  else chunks(0, nchunks, 0);
}

void matmul_dx_ref(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType t, int64_t M,
                   int64_t N, int64_t K, bool accumulate) {
  check_dense_or_quant(t);
  std::vector<double> acc(size_t(M * K), 0.0);
  std::vector<float> row(size_t(std::max<int64_t>(K, 1)));
  for (int64_t n = 0; n < N; ++n) {
    row_to_f32(row.data(), W, t, n, K);
    for (int64_t m = 0; m < M; ++m) {
      const double a = dy[m * lddy + n];
      for (int64_t k = 0; k < K; ++k) acc[size_t(m * K + k)] += a * row[size_t(k)];
    }
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      float& o = dx[m * lddx + k];
      o = accumulate ? float(o + acc[size_t(m * K + k)]) : float(acc[size_t(m * K + k)]);
    }
}

void matmul_dx(ThreadPool* pool, float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType t,
               int64_t M, int64_t N, int64_t K, bool accumulate, const void* packed) {
  check_dense_or_quant(t);
  const bool quant = is_quant(t);
  const int64_t qb = quant ? qblock_size(t) : 1;
  if (quant && K % qb != 0)
    throw std::invalid_argument(std::string("matmul_dx: row length ") + std::to_string(K) + " is not a multiple of the " +
                                dtype_name(t) + " block of " + std::to_string(qb));
  if (M <= 0 || K <= 0) return;
  if (N <= 0) {
    if (!accumulate) for (int64_t m = 0; m < M; ++m) std::fill(dx + m * lddx, dx + m * lddx + K, 0.0f);
    return;
  }
  const NKernels& kr = NK();
  const int nt = pool ? pool->size() : 1;
  const DxSplit sp = dx_split(K, nt, quant ? qb : 16, M);
  const int64_t kc = sp.kc, kDxTileRows = sp.rows, nchunks = (K + kc - 1) / kc;
  const uint8_t* Wb = static_cast<const uint8_t*>(W);
  auto chunks = [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k0 = c * kc, w = std::min(kc, K - k0), ldt = w + kTilePad;
      // W[n0 : n0 + rows, k0 : k0 + w] into an f32 tile (rows ldt floats apart), then the dense kernel.
      // Dense dtypes are tiled too: streaming the kernel straight down the stored rows (K elements apart: a new
      // 4 KiB-strided row per step of its inner loop) measured 1.3-1.9x slower for bf16 2048 x 2048, M = 64.
      float* tile = tile_buf(size_t(kDxTileRows * (kc + kTilePad)));
      const size_t rb = dtype_row_bytes(t, K);
      const size_t off = quant ? size_t(k0 / qb) * size_t(qblock_bytes(t)) : size_t(k0) * dtype_size(t);
      uint8_t* blocks = packed && quant ? block_buf(size_t(w / qb) * size_t(qblock_bytes(t))) : nullptr;
      for (int64_t n0 = 0; n0 < N; n0 += kDxTileRows) {
        const int64_t nr = std::min(kDxTileRows, N - n0);
        for (int64_t r = 0; r < nr; ++r) {
          const uint8_t* src = Wb + size_t(n0 + r) * rb + off;  // whole blocks (quantized: k0, w are multiples)
          if (blocks) {  // the row's stored blocks, copied back out of its tile
            qpack_row_blocks(t, packed, K, n0 + r, k0, w, blocks);
            src = blocks;
          }
          if (quant) dequantize_row(t, src, tile + r * ldt, w);
          else row_to_f32(tile + r * ldt, src, t, 0, w);
        }
        if (M < kDxTileMinM) { dx_axpy_rows(dx + k0, lddx, dy + n0, lddy, tile, ldt, M, nr, w, accumulate || n0 > 0); continue; }
        kr.dx_block(dx + k0, lddx, dy + n0, lddy, tile, DType::F32, ldt, M, nr, w, accumulate || n0 > 0);
      }
    }
  };
  if (pool && nt > 1 && nchunks > 1 && M * N * K >= 2 * 65536) pool->run(nchunks, 1, [&](int64_t a, int64_t b, int th) { chunks(a, b, th); });
  else chunks(0, nchunks, 0);
}

}  // namespace moe
