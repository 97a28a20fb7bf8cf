// NF4 (4-bit NormalFloat) with double-quantized statistics, byte for byte as bitsandbytes stores a frozen Q-LoRA
// base weight (quantize_4bit(A, blocksize=64, compress_statistics=True, quant_type="nf4"), semantics of its
// pure-torch "default" backend at the commit named in test/fixtures/goldens/nf4_blocks.json, which its CPU and CUDA
// kernels follow up to corner cases listed in nf4.cpp).
//
// A tensor of n values (an nn.Linear weight W[rows = out, cols = in], flattened row-major: element e = r*cols + c)
// is cut into blocks of 64 consecutive elements; with cols % 64 != 0 a block straddles rows, exactly as
// bitsandbytes does (it quantizes the flattened tensor). The last block may be partial (n % 64 values).
//
//   absmax_b = max |x_e| over block b                                    (f32; nblocks = ceil(n / 64))
//   s_e      = clamp(x_e * (1 / max(absmax_b, 1e-38)), -1, 1)            (f32: reciprocal, then multiply)
//   q_e      = #{j : !(s_e <= mid_j)},  mid_j = (NF4[j] + NF4[j+1]) / 2   (torch.bucketize on the f32 midpoints: a
//              value on a midpoint keeps the lower code)
//   packed   = (n + 1) / 2 bytes, byte i = q_{2i} << 4 | q_{2i+1}        (first element in the HIGH nibble; an odd n
//              pads one element with s = 0, i.e. code 7)
// A short last block (n % 64 values) divides instead: s_e = clamp(x_e / a, -1, 1) with a = max(absmax_b, 1e-38),
// and a is the absmax it stores. An all-zero block gets codes 7 (exact zeros), as bitsandbytes' torch backend writes
// (its CUDA kernel writes code 0 there). Non-finite weights are refused (std::invalid_argument).
//
// Double quantization of the statistics (compress_statistics=True, 8-bit "dynamic" map, blocks of 256 absmaxes):
//   offset   = absmax.mean()                                              (torch's f32 mean: its CPU summation
//                                                                          order, reproduced in nf4.cpp)
//   a_b      = absmax_b - offset
//   absmax2_g = max |a_b| over group g of 256 blocks                      (f32; ngroups = ceil(nblocks / 256))
//   absmax_q_b = #{j : !(clamp(a_b * (1 / max(absmax2_g, 1e-38)), -1, 1) <= dmid_j)}   (uint8; dmid: DYN midpoints;
//              a short last group divides by, and stores, max(absmax2_g, 1e-38), as the 4-bit level does)
// Dequantization (both levels in f32, two roundings each, no fused multiply-add):
//   absmax'_b = DYN[absmax_q_b] * absmax2_g + offset
//   w_e       = NF4[q_e] * absmax'_b
// bitsandbytes then casts w to the source dtype (bf16/f16); we keep the f32 w (the kernels compute in f32).
//
// Bytes: (n+1)/2 + nblocks + 4*ngroups + 4 (offset) = ~0.516 bytes per weight for large n (4.13 bits).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>
#include "format/dtype.h"

namespace moe {

class ThreadPool;

constexpr int NF4_BLOCK = 64;          // weights per absmax (bitsandbytes' default blocksize on CUDA and CPU)
constexpr int NF4_ABSMAX_GROUP = 256;  // absmaxes per f32 second-level scale (the nested blocksize)

// The 16 NF4 values, ascending (code j -> value), as bitsandbytes publishes them (create_normal_map(0.9677083,
// use_extra_value=True) de-duplicated: 7 negative, 0, 8 positive; the test recomputes them from the normal quantiles).
const float* nf4_code();
// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)): 256
// ascending values in [-0.99296874, 1], computed once from its definition with torch's float32 linspace rounding.
const float* nf4_dynamic_code();

// One NF4 tensor (a frozen base weight).
struct NF4Tensor {
  int64_t rows = 0, cols = 0;     // logical shape [rows, cols] (a 1-D tensor of n values is [1, n])
  int64_t n = 0;                  // rows * cols
  std::vector<uint8_t> packed;    // [(n + 1) / 2] two codes per byte, element 2i in the high nibble
  std::vector<uint8_t> absmax_q;  // [nblocks()] dynamic-map index of (absmax_b - offset) / absmax2_g
  std::vector<float> absmax2;     // [ngroups()] f32 scale of each group of 256 absmaxes
  float offset = 0;               // mean of the f32 absmaxes

  int64_t nblocks() const { return (n + NF4_BLOCK - 1) / NF4_BLOCK; }
  int64_t ngroups() const { return (nblocks() + NF4_ABSMAX_GROUP - 1) / NF4_ABSMAX_GROUP; }
};

// Bytes an NF4 tensor of n values occupies (packed codes + 8-bit absmaxes + f32 group scales + the f32 offset).
size_t nf4_bytes(int64_t n);

// Quantize x[n] (shape [1, n]) or x[rows * cols] (shape [rows, cols]); parallel over blocks when a pool is given
// (the result is identical to the serial one: blocks are independent and the mean is summed in a fixed order).
NF4Tensor nf4_quantize(const float* x, int64_t n, ThreadPool* pool = nullptr);
NF4Tensor nf4_quantize(const float* x, int64_t rows, int64_t cols, ThreadPool* pool = nullptr);

// Quantize straight from a checkpoint's rows (f32, f16 or bf16, e.g. the mmapped safetensors data) without an f32
// copy of the whole tensor: feed consecutive row ranges in order; memory is the output plus one f32 absmax per block
// and a 64-value carry for a block that straddles two chunks. Values are widened exactly (bf16/f16 -> f32), so the
// result equals nf4_quantize of the widened tensor.
//   NF4Quantizer q(rows, cols);
//   for (r = 0; r < rows; r += chunk) q.add_rows(src + r * cols * elsize, DType::BF16, std::min(chunk, rows - r), pool);
//   NF4Tensor t = q.finish();
class NF4Quantizer {
 public:
  NF4Quantizer(int64_t rows, int64_t cols);
  // Rows [next_row(), next_row() + nrows) of the tensor, row-major, `cols` values each, in dtype `dt`.
  void add_rows(const void* src, DType dt, int64_t nrows, ThreadPool* pool = nullptr);
  int64_t next_row() const { return next_row_; }
  // All rows must have been added (throws otherwise). Double-quantizes the absmaxes; the quantizer is spent.
  NF4Tensor finish();

 private:
  NF4Tensor t_;
  std::vector<float> absmax_;  // [nblocks] f32 absmax of each block, until finish()
  float carry_[NF4_BLOCK];     // the leading values of a block whose end is in a later chunk
  int64_t carry_n_ = 0, next_row_ = 0;
  bool done_ = false;
};

// f32 dequantized absmax of blocks [b0, b1): out[b - b0] = DYN[absmax_q_b] * absmax2_{b/256} + offset (exact, the
// order of the two f32 roundings above). Compiled without FMA so that every caller, SIMD or not, gets the same bits.
void nf4_block_scales(const NF4Tensor& t, int64_t b0, int64_t b1, float* out);
// Reference dequantization of elements [e0, e1) (any range, e.g. one row or part of one) into y[e1 - e0].
void nf4_dequantize_range(const NF4Tensor& t, int64_t e0, int64_t e1, float* y);
// Whole tensor: y[n].
void nf4_dequantize(const NF4Tensor& t, float* y);

}  // namespace moe
