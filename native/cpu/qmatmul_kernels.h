// Internal to cpu/ (not part of qmatmul.h): the quantized kernels' table and the activation block its files share.
//   qmatmul.cpp       qmatmul / qmatmul_ref, the portable kernels, the choice of a table (cpuid, MOE_SIMD), threads
//   qmatmul_avx2.cpp  kQAvx2: AVX2 + FMA + F16C (integer dots via vpmaddubsw / vpmaddwd), per-function targets
//   qmatmul_avx512.cpp kQAvx512Vnni: AVX-512 VNNI (vpdpbusd: 32 u8·s8 products summed into 8 int32 in one op)
#pragma once
#include <cstddef>
#include <cstdint>
#include "format/dtype.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MOE_QX86 1
#else
#define MOE_QX86 0
#endif

// Hidden: the library's insides, bound locally under -fPIC (as when they were file-static; see matmul_kernels.h).
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif
namespace moe::cpu_qmatmul {

// One quantised activation block: x_i ≈ d * q_i, s = Σ q_i (for the Q4_0 offset and the Q4_K mins).
struct BlockQ8X { float d; int32_t s; int8_t q[32]; };

struct QKernels {
  const char* name;
  // out[r] = W_row · x_r for R <= max_rows quantised activation rows `stride` blocks apart. xds (Q4_K only, else
  // may be null): per x row, 2·stride floats: its blocks' d, then their d·s (x_scales in qmatmul.cpp)
  void (*dot_q8_rows)(DType, const uint8_t*, const BlockQ8X*, const float* xds, int64_t stride, int R, int64_t K, float* out);
  float (*dot_f32)(DType, const uint8_t*, const float*, int64_t);
  int max_rows;
  // Prefill (M >= gemm_min_rows) on int8 activations, or null (dequantised f32 tiles through the dense kernels): y[:, tiles
  // [tile0, tile1) of gemm_rows weight rows] for all M rows. xq: the activation blocks (scale, integer sum, q),
  // K/32 per row; xu (Q8_0 weights only, else null): the activations as unsigned bytes (q + 128, K per row).
  void (*gemm)(DType, const uint8_t* W, size_t row_bytes, int64_t N, int64_t K, const uint8_t* xu, const BlockQ8X* xq,
               int64_t M, float* y, int64_t ldy, bool accumulate, int64_t tile0, int64_t tile1);
  int gemm_rows;
  // the gemm takes products of this weight type with M >= this many rows of x (fewer: the row dots)
  int (*gemm_min_rows)(DType);
  // x rows → int8 blocks (and, with xu, the unsigned bytes q + 128 the GEMM reads); null: the portable loop
  void (*quantize)(const float* x, int64_t ldx, int64_t M, int64_t K, BlockQ8X* xq, uint8_t* xu);
  // The load-time layout (qmatmul.h qpack), or null: its bytes for an N x K weight of a type (0: the type is not
  // packed), the packing of tiles [tile0, tile1) of gemm_rows rows, and the GEMM over packed tiles (every M >= 1,
  // int8 activations, no xu).
  size_t (*pack_bytes)(DType, int64_t N, int64_t K);
  void (*pack)(DType, const uint8_t* W, size_t row_bytes, int64_t N, int64_t K, uint8_t* out, int64_t tile0, int64_t tile1);
  void (*gemm_packed)(DType, const uint8_t* P, int64_t N, int64_t K, const BlockQ8X* xq, int64_t M, float* y, int64_t ldy,
                      bool accumulate, int64_t tile0, int64_t tile1);
  // the per-call GEMM reads Q8_0's x as unsigned bytes (xu; VNNI's x + 128 form), else only the signed blocks
  bool gemm_reads_xu;
};

// The load-time layout (qpack) of Q4_0 / Q4_K / Q8_0, one for every table that reads it (AVX-512 VNNI, AVX2): 16-row
// tiles in the order the packed GEMMs read them, the same size as stored (the mapping's pages of a packed weight can
// then be dropped):
//   Q4_0, per tile and block b (288 B = 16 x 18): raw[g][j][4], g = 0..3 (64 B each: dword g of row j's 16 qs bytes;
//         its low nibbles are group g of the block, its high nibbles group g + 4), then d[j] (f16, 32 B)
//   Q4_K, per tile and super-block (2304 B = 16 x 144): for each sub-block pair p = 0..3, raw[p][g][j][4], g = 0..7
//         (row j's qs[32p, 32p + 32): low nibbles sub-block 2p, high 2p + 1), then d[j], dmin[j] (f16) and the
//         three scale dwords a[j], b[j], c[j]
//   Q8_0, per tile and block b (544 B = 16 x 34): u[g][j][4], g = 0..7 (64 B each: dword g of row j's 32 weights,
//         each byte w + 128, unsigned: its high nibble times 16 plus its low nibble, less 128, is w), then d[j] (f16)
// Rows past N in the last tile are zero (weights and scales; Q8_0's w + 128 = 128). A 64-byte group is one zmm of 16
// rows (VNNI) or two ymm of 8 (AVX2: rows 0..7, then 8..15).
constexpr int kPackRows = 16;
constexpr size_t kPackQ4_0 = 288, kPackQ4_K = 2304, kPackQ8_0 = 544;
inline size_t pack_tile_bytes(DType t, int64_t K) {
  switch (t) {
    case DType::Q4_0: return size_t(K / 32) * kPackQ4_0;
    case DType::Q4_K: return size_t(K / 256) * kPackQ4_K;
    case DType::Q8_0: return size_t(K / 32) * kPackQ8_0;
    default: return 0;
  }
}
inline size_t pack_bytes_tiles(DType t, int64_t N, int64_t K) {
  return pack_tile_bytes(t, K) * size_t((N + kPackRows - 1) / kPackRows);
}

#if MOE_QX86
extern const QKernels kQAvx2;        // qmatmul_avx2.cpp
extern const QKernels kQAvx512Vnni;  // qmatmul_avx512.cpp
float dot_f32_avx2(DType t, const uint8_t* w, const float* x, int64_t K);  // shared by both tables
#endif

}  // namespace moe::cpu_qmatmul
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
