// The int8 KV cache's rows (native/model/model.h KvCache): each row of hd values (one token, one KV head) as int8
// with one f32 scale, x ≈ s·q:
//   s = absmax(x) / 127,   q_i = round_half_even(x_i / s)   (s = 0, q = 0 for a zero row)
// One warp per row, 4 rows per block: lanes stride over hd, the absmax is a warp_max.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

__global__ void __launch_bounds__(128)
kv_quantize_kernel(int8_t* q, int64_t ldq, float* s, const float* x, int64_t ldx, int64_t R, int hd) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * 4 + (threadIdx.x >> 5);
  if (r >= R) return;  // whole warp
  const float* xr = x + r * ldx;
  float amax = 0.0f;
  for (int i = lane; i < hd; i += 32) amax = fmaxf(amax, fabsf(xr[i]));
  amax = warp_max(amax);
  const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
  int8_t* qr = q + r * ldq;
  for (int i = lane; i < hd; i += 32) qr[i] = int8_t(int(rintf(xr[i] * id)));
  if (lane == 0) s[r] = d;
}

void kv_quantize(int8_t* q, int64_t ldq, float* s, const float* x, int64_t ldx, int64_t R, int64_t hd, void* stream) {
  MOE_KCHECK("kv_quantize", R >= 0 && hd > 0 && hd < (int64_t(1) << 31) && ldq >= hd && ldx >= hd,
             "bad shape (R >= 0, hd > 0, leading dimensions >= hd)");
  if (R == 0) return;
  MOE_KCHECK("kv_quantize", q && s && x, "null pointer");
  MOE_KCHECK("kv_quantize", (R + 3) / 4 < (int64_t(1) << 31), "R too large for one launch");
  MOE_LAUNCH("kv_quantize", kv_quantize_kernel, dim3(unsigned((R + 3) / 4)), dim3(128), 0, stream, q, ldq, s, x, ldx, R, int(hd));
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
