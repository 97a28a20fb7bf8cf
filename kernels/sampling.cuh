// Greedy decoding on the device: ids[t] = argmax_v logits[t, v] (first index among equal maxima, as torch.argmax),
// so only 4 bytes per token cross PCIe instead of the vocab row.
//   logits: [T, V] f32   ids: [T] int32
// One block of 256 threads per row: each thread scans a strided slice, then (value, index) pairs are reduced with
// warp shuffles and across the 8 warps through shared memory. NaN never wins (comparisons with NaN are false).
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kArgmaxThreads = 256;

// (v, i) beats (bv, bi) when larger, or equal with a smaller index
__device__ __forceinline__ void argmax_merge(float& bv, int& bi, float v, int i) {
  if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
}

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(int32_t* ids, const float* logits, int V) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = logits + int64_t(blockIdx.x) * V;
  float bv = -INFINITY; int bi = 0x7fffffff;
  for (int v = threadIdx.x; v < V; v += blockDim.x) argmax_merge(bv, bi, row[v], v);
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    argmax_merge(bv, bi, ov, oi);
  }
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) { sv[wid] = bv; si[wid] = bi; }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < nw; ++w) argmax_merge(bv, bi, sv[w], si[w]);
    ids[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;  // an all-NaN/-inf row yields 0
  }
}

void argmax(int32_t* ids, const float* logits, int64_t T, int64_t V, void* stream) {
  MOE_KCHECK("argmax", T >= 0 && T < (int64_t(1) << 31), "T out of range");
  MOE_KCHECK("argmax", V > 0 && V < (int64_t(1) << 31), "V must be > 0 (got " + std::to_string(V) + ")");
  MOE_KCHECK("argmax", ids && logits, "null pointer");
  if (T == 0) return;
  MOE_LAUNCH("argmax", argmax_kernel, dim3(unsigned(T)), dim3(kArgmaxThreads), 0, stream, ids, logits, int(V));
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
