// Decode matrix-vector product for block-quantized weights: y[N] = W[N, K] · x[K], W in GGUF Q8_0, Q4_0 or Q4_K
// blocks (layouts in native/quant/quant.h; the CPU reference is qmatmul_ref in native/cpu/qmatmul.h).
// One warp per output row, 4 rows per block. Lane l takes blocks l, l+32, ...: neighbouring lanes read
// neighbouring blocks, so a warp streams 32 contiguous blocks (1088 / 576 / 4608 bytes) per step. Blocks are
// 34 / 18 / 144 bytes (not 16-byte aligned), so they are read bytewise; each lane dequantises its block in
// registers and dots it with x (f32, from L1/L2). Lane partials are summed with the warp butterfly.
#pragma once
#include "kernels/qblock.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kQMatvecWarps = 4;

// QT: 0 = Q8_0, 1 = Q4_0, 2 = Q4_K.   dot of one block (at blk) with its x (at xb)
template <int QT>
__device__ __forceinline__ float qblock_dot(const uint8_t* blk, const float* xb) {
  if (QT == 0) {
    float s = 0.0f;
    for (int i = 0; i < 32; ++i) s += float(int8_t(blk[2 + i])) * xb[i];
    return q_f16_at(blk) * s;
  } else if (QT == 1) {
    float s = 0.0f;
    for (int i = 0; i < 16; ++i) s += float(int(blk[2 + i] & 15) - 8) * xb[i] + float(int(blk[2 + i] >> 4) - 8) * xb[i + 16];
    return q_f16_at(blk) * s;
  } else {
    const float d = q_f16_at(blk), dmin = q_f16_at(blk + 2);
    const uint8_t* sc6 = blk + 4;
    const uint8_t* qs = blk + 16;
    float acc = 0.0f;
    for (int g = 0; g < 4; ++g) {
      int sc0, m0, sc1, m1;
      q4k_sm(2 * g, sc6, sc0, m0);
      q4k_sm(2 * g + 1, sc6, sc1, m1);
      float s0 = 0.0f, s1 = 0.0f, x0 = 0.0f, x1 = 0.0f;
      for (int l = 0; l < 32; ++l) {
        const float a = xb[64 * g + l], c = xb[64 * g + 32 + l];
        s0 += float(qs[32 * g + l] & 15) * a; x0 += a;
        s1 += float(qs[32 * g + l] >> 4) * c; x1 += c;
      }
      acc += d * float(sc0) * s0 - dmin * float(m0) * x0 + d * float(sc1) * s1 - dmin * float(m1) * x1;
    }
    return acc;
  }
}

template <int QT>
__global__ void __launch_bounds__(kQMatvecWarps * 32)
qmatvec_kernel(float* y, const uint8_t* W, const float* x, int N, int K) {
  constexpr int BS = QT == 2 ? 256 : 32, BB = QT == 0 ? 34 : QT == 1 ? 18 : 144;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kQMatvecWarps + (threadIdx.x >> 5);
  if (row >= N) return;  // whole warp leaves together
  const int nb = K / BS;
  const uint8_t* wr = W + int64_t(row) * nb * BB;
  float acc = 0.0f;
  for (int b = lane; b < nb; b += 32) acc += qblock_dot<QT>(wr + int64_t(b) * BB, x + int64_t(b) * BS);
  acc = warp_sum(acc);
  if (lane == 0) y[row] = acc;
}

void qmatvec(float* y, const void* W, DType w_dtype, const float* x, int64_t N, int64_t K, void* stream) {
  const int bs = w_dtype == DType::Q4_K ? 256 : 32;
  MOE_KCHECK("qmatvec", w_dtype == DType::Q8_0 || w_dtype == DType::Q4_0 || w_dtype == DType::Q4_K,
             std::string("weight dtype ") + dtype_name(w_dtype) + " is not a block-quantized type (q8_0, q4_0, q4_k)");
  MOE_KCHECK("qmatvec", N >= 0 && N < (int64_t(1) << 31), "N out of range (got " + std::to_string(N) + ")");
  MOE_KCHECK("qmatvec", K > 0 && K < (int64_t(1) << 31) && K % bs == 0,
             "K must be a positive multiple of the " + std::string(dtype_name(w_dtype)) + " block of " + std::to_string(bs) +
             " (got " + std::to_string(K) + ")");
  MOE_KCHECK("qmatvec", y && W && x, "null pointer");
  if (N == 0) return;
  const dim3 grid(unsigned((N + kQMatvecWarps - 1) / kQMatvecWarps)), block(kQMatvecWarps * 32);
  const uint8_t* w = static_cast<const uint8_t*>(W);
  switch (w_dtype) {
    case DType::Q8_0: MOE_LAUNCH("qmatvec<q8_0>", qmatvec_kernel<0>, grid, block, 0, stream, y, w, x, int(N), int(K)); break;
    case DType::Q4_0: MOE_LAUNCH("qmatvec<q4_0>", qmatvec_kernel<1>, grid, block, 0, stream, y, w, x, int(N), int(K)); break;
    default: MOE_LAUNCH("qmatvec<q4_k>", qmatvec_kernel<2>, grid, block, 0, stream, y, w, x, int(N), int(K)); break;
  }
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
