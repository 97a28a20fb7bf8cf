// Cross-entropy of a chunk of rows, in place (the training loss; the caller chunks tokens so [T, V] logits never
// exist at once):
//   label y ≠ −100:  loss_r = lse − l_y,  lse = m + log Σ_i e^(l_i − m),  m = max_i l_i
//                    dl_i = scale · (e^(l_i − lse) − [i = y])
//   label −100:      loss_r = 0, dl = 0 (an ignored position)
// One block per row: max and sum are block reductions; each row's loss goes to losses[r] (the host adds them in
// double, in row order). Labels are checked by the caller; one out of range here gives a NaN loss.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kLossThreads = 256;

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : -INFINITY;
  v = warp_max(v);
  __syncthreads();
  return v;
}

__global__ void __launch_bounds__(kLossThreads)
cross_entropy_kernel(float* logits, int64_t ld, const int32_t* labels, float* losses, int V, float scale) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float* l = logits + r * ld;
  const int y = labels[r];
  if (y == -100) {
    for (int i = threadIdx.x; i < V; i += blockDim.x) l[i] = 0.0f;
    if (threadIdx.x == 0) losses[r] = 0.0f;
    return;  // the whole block: y is the same for every thread
  }
  float m = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, l[i]);
  m = block_max(m, scratch);
  float s = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(l[i] - m);
  s = block_sum(s, scratch);
  const float lse = m + logf(s);
  const bool ok = y >= 0 && y < V;
  if (threadIdx.x == 0) losses[r] = ok ? lse - l[y] : NAN;
  __syncthreads();  // l[y] is read above before any thread overwrites it
  for (int i = threadIdx.x; i < V; i += blockDim.x) l[i] = scale * (expf(l[i] - lse) - (i == y ? 1.0f : 0.0f));
}

void cross_entropy(float* logits, int64_t ld, const int32_t* labels, float* losses, int64_t n, int64_t V, float scale, void* stream) {
  MOE_KCHECK("cross_entropy", n >= 0 && n < (int64_t(1) << 31) && V > 0 && V < (int64_t(1) << 31) && ld >= V, "bad shape");
  if (n == 0) return;
  MOE_KCHECK("cross_entropy", logits && labels && losses, "null pointer");
  MOE_LAUNCH("cross_entropy", cross_entropy_kernel, dim3(unsigned(n)), dim3(kLossThreads), 0, stream, logits, ld, labels, losses, int(V), scale);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
