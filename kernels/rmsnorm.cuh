// RMSNorm (HF LlamaRMSNorm), one block per row.
//   x, y: [T, D], rows ldx / ldy floats apart   w: [D] or null (no gain: y = x * rstd)
//   rstd: [T] (optional, saved for backward: dx needs rstd)
//   rstd = 1 / sqrt(mean_d(x^2) + eps);   y = w * (x * rstd)
// Per-head q/k norms are T·H rows of head_dim. y null: only rstd is written.
// Backward (x̂ = x·rstd, g = dout ⊙ w):
//   dx = rstd · (g − x̂ · mean_i(g ⊙ x̂))          one block per row, like the forward (dx may alias dout)
//   dw[i] += Σ_r dout[r, i] · x̂[r, i]             one thread per column walking the rows in order (deterministic)
// A block of 256 threads strides over the row; partial sums of squares are reduced with warp shuffles, then
// across warps through 32 floats of shared memory. The row is read twice (sum of squares, then scale): for
// D <= 8192 the second read hits L1/L2.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kRmsnormThreads = 256;

__global__ void __launch_bounds__(kRmsnormThreads)
rmsnorm_kernel(float* y, int64_t ldy, float* rstd, const float* x, int64_t ldx, const float* w, int D, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * ldx;
  float* yr = y + row * ldy;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) { const float v = xr[i]; ss += v * v; }
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / float(D) + eps);
  if (rstd != nullptr && threadIdx.x == 0) rstd[row] = r;
  if (y == nullptr) return;
  // y may alias x: each element is read then written by the same thread, after the reduction's barriers.
  for (int i = threadIdx.x; i < D; i += blockDim.x) yr[i] = w != nullptr ? w[i] * (xr[i] * r) : xr[i] * r;
}

__global__ void __launch_bounds__(kRmsnormThreads)
rmsnorm_dx_kernel(float* dx, int64_t lddx, const float* dout, int64_t ldd, const float* x, int64_t ldx, const float* w,
                  const float* rstd, int D) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * ldx;
  const float* gr = dout + row * ldd;
  const float s = rstd[row];
  float acc = 0.0f;  // Σ_i (g_i w_i) x̂_i
  for (int i = threadIdx.x; i < D; i += blockDim.x) acc += gr[i] * (w != nullptr ? w[i] : 1.0f) * (xr[i] * s);
  const float mean = block_sum(acc, scratch) / float(D);
  float* o = dx + row * lddx;
  // each thread reads dout[i] and writes dx[i] for its own i, after the reduction's barriers: dx may alias dout
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    const float gw = gr[i] * (w != nullptr ? w[i] : 1.0f);
    o[i] = s * (gw - xr[i] * s * mean);
  }
}

__global__ void __launch_bounds__(kRmsnormThreads)
rmsnorm_dw_kernel(float* dw, const float* dout, int64_t ldd, const float* x, int64_t ldx, const float* rstd, int64_t T, int D) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= D) return;
  float a = dw[i];
  for (int64_t r = 0; r < T; ++r) a += dout[r * ldd + i] * (x[r * ldx + i] * rstd[r]);
  dw[i] = a;
}

void rmsnorm_backward(float* dx, int64_t lddx, float* dw, const float* dout, int64_t ldd, const float* x, int64_t ldx, const float* w,
                      const float* rstd, int64_t T, int64_t D, void* stream) {
  MOE_KCHECK("rmsnorm_backward", T >= 0 && T < (int64_t(1) << 31) && D > 0 && D < (int64_t(1) << 31), "bad shape");
  MOE_KCHECK("rmsnorm_backward", dx && dout && x && rstd, "null pointer (rstd is required: the forward's, or recomputed by rmsnorm with y = null)");
  MOE_KCHECK("rmsnorm_backward", lddx >= D && ldd >= D && ldx >= D, "leading dimensions must be >= D");
  if (T == 0) return;
  if (dw != nullptr)  // first: dx may overwrite dout
    MOE_LAUNCH("rmsnorm_backward dw", rmsnorm_dw_kernel, dim3(unsigned((D + kRmsnormThreads - 1) / kRmsnormThreads)), dim3(kRmsnormThreads), 0,
               stream, dw, dout, ldd, x, ldx, rstd, T, int(D));
  const unsigned threads = unsigned(std::min<int64_t>(kRmsnormThreads, (D + 31) / 32 * 32));
  MOE_LAUNCH("rmsnorm_backward", rmsnorm_dx_kernel, dim3(unsigned(T)), dim3(threads), 0, stream, dx, lddx, dout, ldd, x, ldx, w, rstd, int(D));
}

void rmsnorm(float* y, int64_t ldy, float* rstd, const float* x, int64_t ldx, const float* w, int64_t T, int64_t D, float eps,
             void* stream) {
  MOE_KCHECK("rmsnorm", T >= 0 && T < (int64_t(1) << 31), "T out of range (got " + std::to_string(T) + ")");
  MOE_KCHECK("rmsnorm", D > 0 && D < (int64_t(1) << 31), "D must be > 0 (got " + std::to_string(D) + ")");
  MOE_KCHECK("rmsnorm", x && (y || rstd), "null pointer");
  MOE_KCHECK("rmsnorm", ldx >= D && ldy >= D, "ldx and ldy must be >= D");
  if (T == 0) return;
  // a warp per 32 columns up to 8 warps: a head_dim-64 row of a per-head norm gets 2 warps, not 8 idle ones
  const unsigned threads = unsigned(std::min<int64_t>(kRmsnormThreads, (D + 31) / 32 * 32));
  MOE_LAUNCH("rmsnorm", rmsnorm_kernel, dim3(unsigned(T)), dim3(threads), 0, stream, y, ldy, rstd, x, ldx, w, int(D), eps);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
