// Elementwise ops over row-strided f32 matrices [R, C] (row r at base + r·ld): the cheap glue between the
// matmuls. Each is one kernel over a 2-D grid: blockIdx.y strides over rows, blockIdx.x·256 + threadIdx.x over
// columns, so consecutive threads touch consecutive floats of a row (coalesced) and no thread depends on another.
//   copy_rows  y[r, c]  = x[r, c];  zero_rows  y[r, c] = 0   (the model's moves between buffers)
//   copy_rows_f16  y[r, c] = half(x[r, c]), rounded to nearest even (the f16 KV cache's append)
//   lora_dropout  y (+)= x ⊙ mask / (1 − p), the mask from train/dropout.h (the same bits as the CPU's)
//   add        y[r, c] += x[r, c]                          (residual adds)
//   add_bias   y[r, c] += b[c]
//   sigmoid    x[r, c]  = 1 / (1 + e^(−x[r, c]))           (qwen2_moe's shared-expert gate)
//   mul_cols   x[r, c] *= g[c]                             (a per-head gain folded into q)
//   clamp      x[r, c]  = min(max(x[r, c], −lim), lim)     (olmoe's clip_qkv)
//   swiglu     out[r, c] = silu(g[r, c]) · u[r, c],  silu(v) = v / (1 + e^(−v));  out may alias g or u
// and their backward halves (backend/backend.h gives the math):
//   swiglu_backward   dg = d·u·σ(g)(1 + g(1 − σ(g))),  du = d·silu(g)      (dg may alias d)
//   sigmoid_backward  dx *= y(1 − y)                          (from the forward's output y)
//   clamp_backward    dx = 0 where |x_pre| > lim
//   adamw             torch.optim.AdamW's update of p, m, v from g (the bias corrections come from the host)
// expf (not __expf) keeps sigmoid and silu within a few ulp of the CPU reference; these ops are memory-bound.
#pragma once
#include "kernels/kernel_common.cuh"
#include "train/dropout.h"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kEwThreads = 256;

struct EwCopy {
  float* y; int64_t ldy; const float* x; int64_t ldx;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { y[r * ldy + c] = x[r * ldx + c]; }
};
struct EwCopyF16 {
  uint16_t* y; int64_t ldy; const float* x; int64_t ldx;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { y[r * ldy + c] = f32_to_f16_bits(x[r * ldx + c]); }
};
struct EwZero {
  float* y; int64_t ldy;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { y[r * ldy + c] = 0.0f; }
};
struct EwDropout {  // y (+)= keep(r·cols + c) ? x / (1 − p) : 0
  float* y; int64_t ldy; const float* x; int64_t ldx; uint64_t seed; uint32_t id; float p, keep; int64_t cols; int accumulate;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const {
    const float v = lora_keep(seed, id, uint64_t(r * cols + c), p) ? x[r * ldx + c] * keep : 0.0f;
    float& o = y[r * ldy + c];
    o = accumulate ? o + v : v;
  }
};
struct EwAdd {
  float* y; int64_t ldy; const float* x; int64_t ldx;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { y[r * ldy + c] += x[r * ldx + c]; }
};
struct EwAddBias {
  float* y; int64_t ldy; const float* b;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { y[r * ldy + c] += b[c]; }
};
struct EwSigmoid {
  float* x; int64_t ldx;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { float& v = x[r * ldx + c]; v = 1.0f / (1.0f + expf(-v)); }
};
struct EwMulCols {
  float* x; int64_t ldx; const float* g;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { x[r * ldx + c] *= g[c]; }
};
struct EwClamp {
  float* x; int64_t ldx; float lim;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { float& v = x[r * ldx + c]; v = fminf(fmaxf(v, -lim), lim); }
};
struct EwSwiglu {
  float* out; int64_t ldo; const float* g; int64_t ldg; const float* u; int64_t ldu;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const {
    const float gv = g[r * ldg + c];
    out[r * ldo + c] = gv / (1.0f + expf(-gv)) * u[r * ldu + c];
  }
};

struct EwSwigluBack {
  float* dg; int64_t lddg; float* du; int64_t lddu; const float* d; int64_t ldd; const float* g; int64_t ldg; const float* u; int64_t ldu;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const {
    const float gv = g[r * ldg + c], uv = u[r * ldu + c], dv = d[r * ldd + c];
    const float sg = 1.0f / (1.0f + expf(-gv));
    du[r * lddu + c] = dv * gv * sg;
    dg[r * lddg + c] = dv * uv * sg * (1.0f + gv * (1.0f - sg));
  }
};
struct EwSigmoidBack {
  float* dx; int64_t lddx; const float* y; int64_t ldy;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const { const float a = y[r * ldy + c]; dx[r * lddx + c] *= a * (1.0f - a); }
};
struct EwClampBack {
  float* dx; int64_t lddx; const float* x; int64_t ldx; float lim;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const {
    const float a = x[r * ldx + c];
    if (a > lim || a < -lim) dx[r * lddx + c] = 0.0f;
  }
};
// p *= 1 − lr·wd;  m += (1 − β1)(g − m);  v = β2 v + (1 − β2) g²;  p −= step_size · m / (sqrt(v) / bc2_sqrt + eps)
struct EwAdamw {
  float* p; const float* g; float* m; float* v; int64_t ld; AdamwScalars k;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c) const {
    const int64_t i = r * ld + c;
    const float gv = g[i];
    float pv = p[i] * (1.0f - k.lr * k.weight_decay), mv = m[i], vv = v[i];
    mv += (1.0f - k.beta1) * (gv - mv);
    vv = k.beta2 * vv + (1.0f - k.beta2) * gv * gv;
    pv -= k.step_size * mv / (sqrtf(vv) / k.bc2_sqrt + k.eps);
    p[i] = pv; m[i] = mv; v[i] = vv;
  }
};

template <class Op>
__global__ void __launch_bounds__(kEwThreads) elementwise_kernel(Op op, int64_t R, int64_t C) {
  for (int64_t r = blockIdx.y; r < R; r += gridDim.y)
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) op(r, c);
}

// grid: enough column blocks for one row (at most 64), rows over grid.y (at most 65535, the rest strided).
template <class Op>
void launch_elementwise(const char* name, const Op& op, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK(name, R >= 0 && C >= 0, "R and C must be >= 0");
  if (R == 0 || C == 0) return;
  const dim3 grid(unsigned(std::min<int64_t>((C + kEwThreads - 1) / kEwThreads, 64)), unsigned(std::min<int64_t>(R, 65535)));
  MOE_LAUNCH(name, elementwise_kernel<Op>, grid, dim3(kEwThreads), 0, stream, op, R, C);
}

void copy_rows(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("copy_rows", y && x && ldy >= C && ldx >= C, "null pointer or a leading dimension < C");
  launch_elementwise("copy_rows", EwCopy{y, ldy, x, ldx}, R, C, stream);
}
void copy_rows_f16(uint16_t* y, int64_t ldy, const float* x, int64_t ldx, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("copy_rows_f16", y && x && ldy >= C && ldx >= C, "null pointer or a leading dimension < C");
  launch_elementwise("copy_rows_f16", EwCopyF16{y, ldy, x, ldx}, R, C, stream);
}
void zero_rows(float* y, int64_t ldy, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("zero_rows", y && ldy >= C, "null pointer or ldy < C");
  launch_elementwise("zero_rows", EwZero{y, ldy}, R, C, stream);
}
void lora_dropout(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t R, int64_t C, uint64_t seed, uint32_t id, float p,
                  bool accumulate, void* stream) {
  MOE_KCHECK("lora_dropout", y && x && ldy >= C && ldx >= C, "null pointer or a leading dimension < C");
  MOE_KCHECK("lora_dropout", p >= 0.0f && p < 1.0f, "p must be in [0, 1)");
  launch_elementwise("lora_dropout", EwDropout{y, ldy, x, ldx, seed, id, p, 1.0f / (1.0f - p), C, accumulate ? 1 : 0}, R, C, stream);
}
void add(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("add", y && x && ldy >= C && ldx >= C, "null pointer or a leading dimension < C");
  launch_elementwise("add", EwAdd{y, ldy, x, ldx}, R, C, stream);
}
void add_bias(float* y, int64_t ldy, const float* b, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("add_bias", y && b && ldy >= C, "null pointer or ldy < C");
  launch_elementwise("add_bias", EwAddBias{y, ldy, b}, R, C, stream);
}
void sigmoid(float* x, int64_t ldx, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("sigmoid", x && ldx >= C, "null pointer or ldx < C");
  launch_elementwise("sigmoid", EwSigmoid{x, ldx}, R, C, stream);
}
void mul_cols(float* x, int64_t ldx, const float* g, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("mul_cols", x && g && ldx >= C, "null pointer or ldx < C");
  launch_elementwise("mul_cols", EwMulCols{x, ldx, g}, R, C, stream);
}
void clamp(float* x, int64_t ldx, float lim, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("clamp", x && ldx >= C, "null pointer or ldx < C");
  MOE_KCHECK("clamp", lim >= 0, "the limit must be >= 0");
  launch_elementwise("clamp", EwClamp{x, ldx, lim}, R, C, stream);
}
void swiglu(float* out, int64_t ldo, const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("swiglu", out && g && u, "null pointer");
  MOE_KCHECK("swiglu", ldo >= C && ldg >= C && ldu >= C, "a leading dimension < C");
  launch_elementwise("swiglu", EwSwiglu{out, ldo, g, ldg, u, ldu}, R, C, stream);
}

void swiglu_backward(float* dg, int64_t lddg, float* du, int64_t lddu, const float* d, int64_t ldd, const float* g, int64_t ldg,
                     const float* u, int64_t ldu, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("swiglu_backward", dg && du && d && g && u, "null pointer");
  launch_elementwise("swiglu_backward", EwSwigluBack{dg, lddg, du, lddu, d, ldd, g, ldg, u, ldu}, R, C, stream);
}
void sigmoid_backward(float* dx, int64_t lddx, const float* y, int64_t ldy, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("sigmoid_backward", dx && y, "null pointer");
  launch_elementwise("sigmoid_backward", EwSigmoidBack{dx, lddx, y, ldy}, R, C, stream);
}
void clamp_backward(float* dx, int64_t lddx, const float* x_pre, int64_t ldx, float lim, int64_t R, int64_t C, void* stream) {
  MOE_KCHECK("clamp_backward", dx && x_pre, "null pointer");
  launch_elementwise("clamp_backward", EwClampBack{dx, lddx, x_pre, ldx, lim}, R, C, stream);
}
void adamw(float* p, const float* g, float* m, float* v, int64_t ld, int64_t R, int64_t C, const AdamwScalars& k, void* stream) {
  MOE_KCHECK("adamw", p && g && m && v && ld >= C, "null pointer or ld < C");
  launch_elementwise("adamw", EwAdamw{p, g, m, v, ld, k}, R, C, stream);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
