// GGUF block layouts (native/quant/quant.h) as device functions, shared by qmatvec (decode) and matmul (prefill):
//   Q8_0  34 bytes / 32 values:  f16 d, int8 q[32]                        x_i = d·q_i
//   Q4_0  18 bytes / 32 values:  f16 d, 16 bytes of nibbles               x_i = d·(nib_i − 8); low nibbles are 0..15, high 16..31
//   Q4_K 144 bytes / 256 values: f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) for 8 sub-blocks of 32, 128 bytes of nibbles
//                                x_i = d·sc_j·nib_i − dmin·m_j,  j = i / 32; 64-value groups g take the low then high nibbles of qs[32g ..]
// Blocks are not 16-byte aligned, so they are read bytewise.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

__device__ __forceinline__ float q_f16_at(const uint8_t* p) { return f16_bits_to_f32(uint32_t(p[0]) | (uint32_t(p[1]) << 8)); }

// 6-bit scale and min of Q4_K sub-block j (GGUF's get_scale_min_k4).
__device__ __forceinline__ void q4k_sm(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) { sc = s[j] & 63; m = s[j + 4] & 63; }
  else { sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4); m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4); }
}

// Element k of a row of blocks (QT: 0 = Q8_0, 1 = Q4_0, 2 = Q4_K).
template <int QT>
__device__ __forceinline__ float qblock_at(const uint8_t* row, int k) {
  if (QT == 0) {
    const uint8_t* b = row + (k >> 5) * 34;
    return q_f16_at(b) * float(int8_t(b[2 + (k & 31)]));
  } else if (QT == 1) {
    const uint8_t* b = row + (k >> 5) * 18;
    const int i = k & 31;
    const int nib = i < 16 ? (b[2 + i] & 15) : (b[2 + i - 16] >> 4);
    return q_f16_at(b) * float(nib - 8);
  } else {
    const uint8_t* b = row + (k >> 8) * 144;
    const int i = k & 255, g = i >> 6, l = i & 63, j = 2 * g + (l >> 5);
    int sc, m;
    q4k_sm(j, b + 4, sc, m);
    const int nib = l < 32 ? (b[16 + 32 * g + l] & 15) : (b[16 + 32 * g + l - 32] >> 4);
    return q_f16_at(b) * float(sc) * float(nib) - q_f16_at(b + 2) * float(m);
  }
}

// Element k of a weight row (`row` points at its first byte) as f32: a stored float type (WF32 / WF16 / WBF16 of
// kernel_common.cuh) or a block type. Lets one kernel body serve every dtype (matmul's tiles, embedding rows).
template <class WT> struct RowTyped {
  __device__ __forceinline__ static float at(const uint8_t* row, int k) { return WT::get(reinterpret_cast<const typename WT::T*>(row)[k]); }
};
template <int QT> struct RowBlocks {
  __device__ __forceinline__ static float at(const uint8_t* row, int k) { return qblock_at<QT>(row, k); }
};

}  // namespace MOE_KERNEL_NS
}  // namespace moe
