// Neox-style rotary position embedding (rotate-half), in place. HF: x*cos + rotate_half(x)*sin with
// rotate_half(x) = cat(-x2, x1) and cos/sin tables duplicated over both halves, i.e. for i < R/2 (R = rot_dim):
//   x[i]       = x[i] * c_i - x[i + R/2] * s_i
//   x[i + R/2] = x[i + R/2] * c_i + x[i] * s_i         c_i = cos[pos, i], s_i = sin[pos, i]
// Dims R..head_dim-1 (partial rotary) pass through.
//   x: token t, head h at x + t*x_stride_t + h*x_stride_h   cos, sin: [P, R/2]   pos: [T], or null: token t at row t
// inverse: rotate by −angle (s -> −s), the backward of the rotation (it is orthogonal, so its inverse is its transpose).
// One block per token; its threads stride over the H * R/2 rotation pairs. Every pair is independent.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

__global__ void rope_neox_kernel(float* x, const float* cosv, const float* sinv, const int32_t* pos, int H,
                                 int rot_dim, int64_t x_stride_t, int64_t x_stride_h, float sign) {
  const int64_t t = blockIdx.x;
  const int half = rot_dim / 2;
  const int64_t p = pos != nullptr ? int64_t(pos[t]) : t;
  const float* c = cosv + p * half;
  const float* s = sinv + p * half;
  float* xt = x + t * x_stride_t;
  for (int j = threadIdx.x; j < H * half; j += blockDim.x) {
    const int h = j / half, i = j - h * half;
    float* xh = xt + int64_t(h) * x_stride_h;
    const float x1 = xh[i], x2 = xh[i + half], ci = c[i], si = sign * s[i];
    xh[i] = x1 * ci - x2 * si;
    xh[i + half] = x2 * ci + x1 * si;
  }
}

void rope_neox(float* x, const float* cos, const float* sin, const int32_t* pos, int64_t T, int64_t H,
               int64_t head_dim, int64_t rot_dim, int64_t x_stride_t, int64_t x_stride_h, bool inverse, void* stream) {
  MOE_KCHECK("rope_neox", T >= 0 && T < (int64_t(1) << 31), "T out of range");
  MOE_KCHECK("rope_neox", H > 0 && head_dim > 0 && H * head_dim < (int64_t(1) << 31), "H and head_dim must be > 0");
  MOE_KCHECK("rope_neox", rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_dim,
             "rot_dim must be even and in 2..head_dim (got " + std::to_string(rot_dim) + ")");
  MOE_KCHECK("rope_neox", x_stride_h >= head_dim && x_stride_t >= H * x_stride_h, "x_stride_h must be >= head_dim and x_stride_t >= H*x_stride_h");
  MOE_KCHECK("rope_neox", x && cos && sin, "null pointer");
  if (T == 0) return;
  const int64_t pairs = H * (rot_dim / 2);
  const unsigned threads = unsigned(std::min<int64_t>(256, (pairs + 31) / 32 * 32));
  MOE_LAUNCH("rope_neox", rope_neox_kernel, dim3(unsigned(T)), dim3(threads), 0, stream, x, cos, sin, pos, int(H),
             int(rot_dim), x_stride_t, x_stride_h, inverse ? -1.0f : 1.0f);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
