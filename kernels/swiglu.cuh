// SwiGLU activation of the gated MLP: out = silu(g) * u, silu(v) = v * sigmoid(v) = v / (1 + e^-v).
//   g, u, out: [n] (any shape flattened; out may alias g or u). Elementwise, grid-stride loop.
// expf (not __expf) keeps it within a few ulp of the CPU reference; this kernel is memory-bound anyway.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

__global__ void swiglu_kernel(float* out, const float* g, const float* u, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float gv = g[i];
    out[i] = gv / (1.0f + expf(-gv)) * u[i];
  }
}

void swiglu(float* out, const float* g, const float* u, int64_t n, void* stream) {
  MOE_KCHECK("swiglu", n >= 0, "n must be >= 0");
  MOE_KCHECK("swiglu", out && g && u, "null pointer");
  if (n == 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 4096);
  MOE_LAUNCH("swiglu", swiglu_kernel, dim3(unsigned(blocks)), dim3(threads), 0, stream, out, g, u, n);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
