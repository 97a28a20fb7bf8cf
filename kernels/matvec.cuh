// Decode matrix-vector product, the whole cost of one-token decode: y[N] = W[N, K] · x[K] (+ bias[N]).
//   W: [N, K] row-major (HF Linear weight, out_features x in_features) in f32, f16 or bf16; x: [K] f32; y: [N] f32
// One warp per output row, 4 warps (4 rows) per block. Lanes read the row in 16-byte vectors (uint4: 4 f32 or
// 8 f16/bf16), consecutive lanes reading consecutive vectors so each warp load is 512 contiguous bytes; x is
// read as float4 from L1/L2 (every warp of the grid reads the same x). A row whose address or length breaks
// 16-byte alignment, and the tail of K, take the scalar path. The lane partials are summed with a butterfly
// warp reduction; lane 0 writes y. Decode is bandwidth-bound: bytes(W) / DRAM bandwidth is the floor.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kMatvecWarps = 4;

template <class WT>
__global__ void __launch_bounds__(kMatvecWarps * 32)
matvec_kernel(float* y, const typename WT::T* W, const float* x, const float* bias, int N, int K) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kMatvecWarps + (threadIdx.x >> 5);
  if (row >= N) return;  // whole warp leaves together: no block barrier follows
  const typename WT::T* wr = W + int64_t(row) * K;
  constexpr int V = WT::kPerVec;
  float acc = 0.0f;
  int k0 = 0;
  if (((reinterpret_cast<uintptr_t>(wr) | reinterpret_cast<uintptr_t>(x)) & 15) == 0) {
    const int nvec = K / V;
    const uint4* wv = reinterpret_cast<const uint4*>(wr);
    const float4* xv = reinterpret_cast<const float4*>(x);
    for (int c = lane; c < nvec; c += 32) {
      float wf[V];
      WT::unpack(wv[c], wf);
MOE_UNROLL
      for (int q = 0; q < V / 4; ++q) {
        const float4 xq = xv[c * (V / 4) + q];
        acc += wf[4 * q] * xq.x + wf[4 * q + 1] * xq.y + wf[4 * q + 2] * xq.z + wf[4 * q + 3] * xq.w;
      }
    }
    k0 = nvec * V;
  }
  for (int k = k0 + lane; k < K; k += 32) acc += WT::get(wr[k]) * x[k];
  acc = warp_sum(acc);
  if (lane == 0) y[row] = bias != nullptr ? acc + bias[row] : acc;
}

void matvec(float* y, const void* W, DType w_dtype, const float* x, const float* bias, int64_t N, int64_t K,
            void* stream) {
  MOE_KCHECK("matvec", N >= 0 && N < (int64_t(1) << 31), "N out of range (got " + std::to_string(N) + ")");
  MOE_KCHECK("matvec", K > 0 && K < (int64_t(1) << 31), "K must be > 0 (got " + std::to_string(K) + ")");
  MOE_KCHECK("matvec", y && W && x, "null pointer");
  if (N == 0) return;
  const dim3 grid(unsigned((N + kMatvecWarps - 1) / kMatvecWarps)), block(kMatvecWarps * 32);
  switch (w_dtype) {
    case DType::F32:
      MOE_LAUNCH("matvec<f32>", matvec_kernel<WF32>, grid, block, 0, stream, y, static_cast<const float*>(W), x, bias, int(N), int(K));
      break;
    case DType::F16:
      MOE_LAUNCH("matvec<f16>", matvec_kernel<WF16>, grid, block, 0, stream, y, static_cast<const uint16_t*>(W), x, bias, int(N), int(K));
      break;
    case DType::BF16:
      MOE_LAUNCH("matvec<bf16>", matvec_kernel<WBF16>, grid, block, 0, stream, y, static_cast<const uint16_t*>(W), x, bias, int(N), int(K));
      break;
    default:
      kernel_arg_error("matvec", std::string("weight dtype ") + dtype_name(w_dtype) + " is not supported (f32, f16, bf16)");
  }
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
