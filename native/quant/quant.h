// Weight-only block quantization with GGUF's byte layouts, so the same bytes serve our engine and a GGUF file.
//
//   Q8_0  32 weights / 34 bytes:  f16 d | int8 qs[32]                       w_i = d * qs[i]
//   Q4_0  32 weights / 18 bytes:  f16 d | uint8 qs[16]                      w_i = d * (q_i - 8)
//         q_i = qs[i] & 15 for i < 16, qs[i-16] >> 4 for i >= 16 (weights 0..15 in the low nibbles)
//   Q4_K 256 weights / 144 bytes: f16 d | f16 dmin | uint8 scales[12] | uint8 qs[128]
//         8 sub-blocks j of 32 weights, each with a 6-bit scale sc_j and 6-bit min m_j:
//           w = d*sc_j * q - dmin*m_j,  q in 0..15
//         scales[12] packs (sc_j, m_j) as GGUF does (get_scale_min_k4):
//           j < 4:  sc_j = scales[j] & 63,               m_j = scales[j+4] & 63
//           j >= 4: sc_j = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4
//                   m_j  = (scales[j+4] >> 4) | (scales[j]   >> 6) << 4
//         qs: four 32-byte groups; group g holds sub-block 2g in its low nibbles and 2g+1 in its high nibbles.
// All multi-byte fields are little-endian (as GGUF writes them on every platform llama.cpp supports).
//
// quantize_*: scales are chosen by an error-minimising search, not plain absmax (see quant.cpp for the math).
// dequantize_*: the plain reference, the oracle for every fused kernel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include "format/dtype.h"

namespace moe {

class ThreadPool;

constexpr int QK8_0 = 32, QK4_0 = 32, QK_K = 256;

#pragma pack(push, 1)
struct BlockQ8_0 { uint16_t d; int8_t qs[QK8_0]; };
struct BlockQ4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; };
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; };
#pragma pack(pop)
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144, "GGUF block sizes");

// Is this one of the block types (Q8_0, Q4_0, Q4_K)?
inline bool is_quant(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K; }
// Weights per block (32, 32, 256) and bytes per block (34, 18, 144). Throw for non-block types.
int qblock_size(DType t);
int qblock_bytes(DType t);
// Bytes of `count` weights (count % block == 0 else throws, naming the type and the count).
size_t qbytes(DType t, int64_t count);
// "q8_0" | "q4_0" | "q4_k" -> DType; throws listing the valid names otherwise.
DType qtype_from_name(const std::string& name);
const char* qtype_name(DType t);

// One row (count % block == 0): x[count] -> blocks.
void quantize_row(DType t, const float* x, void* out, int64_t count);
// Reference dequantisation: blocks -> y[count].
void dequantize_row(DType t, const void* in, float* y, int64_t count);

// Whole tensors, parallel over blocks when a pool is given (results identical to the serial path: blocks
// are independent). Throw std::invalid_argument if count is not a multiple of the block.
void quantize_tensor(DType t, const float* x, void* out, int64_t count, ThreadPool* pool = nullptr);
void dequantize_tensor(DType t, const void* in, float* y, int64_t count, ThreadPool* pool = nullptr);

// Q4_K helper shared with the kernels: 6-bit scale and min of sub-block j (0..7).
inline void q4k_scale_min(int j, const uint8_t* s, uint8_t& sc, uint8_t& m) {
  if (j < 4) { sc = s[j] & 63; m = s[j + 4] & 63; }
  else { sc = uint8_t((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4)); m = uint8_t((s[j + 4] >> 4) | ((s[j] >> 6) << 4)); }
}

}  // namespace moe
