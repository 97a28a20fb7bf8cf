// Decode attention: one query token per head over n_ctx cached positions, grouped-query (GQA), online softmax.
//   q, out: [Hq, Dh]     K, V: element (t, kh, d) at base + t*stride_t + kh*stride_h + d, t < n_ctx
//   head h reads kv head kh = h / (Hq / Hkv)
//   out[h] = sum_t a_t V[t],   a = softmax_t(s),   s_t = scale * q[h]·K[t]
// One block (4 warps) per query head. Warp w takes positions t = w, w+4, ...: its lanes split Dh (lane L owns
// dims L, L+32, ..., at most 8, so Dh <= 256), a warp_sum gives s_t to all lanes, and the warp keeps a running
// (max m, denominator l, accumulator acc[Dh]) updated flash-attention style:
//   m' = max(m, s);  l' = l*e^(m-m') + e^(s-m');  acc' = acc*e^(m-m') + e^(s-m') V[t]
// The 4 partial states are merged through shared memory: M = max m_w, out = sum_w e^(m_w-M) acc_w / sum_w e^(m_w-M) l_w.
// Long contexts would want the positions split over several blocks too (flash-decoding); not yet needed.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kAttnWarps = 4;
constexpr int kAttnMaxDimsPerLane = 8;  // head_dim <= 32 * 8 = 256

__global__ void __launch_bounds__(kAttnWarps * 32)
attention_decode_kernel(float* out, const float* q, const float* kc, const float* vc, int group, int Dh, int n_ctx,
                        int64_t stride_t, int64_t stride_h, float scale) {
  __shared__ float sm_m[kAttnWarps], sm_l[kAttnWarps];
  __shared__ float sm_acc[kAttnWarps][32 * kAttnMaxDimsPerLane];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int h = blockIdx.x, kh = h / group;
  float qr[kAttnMaxDimsPerLane], acc[kAttnMaxDimsPerLane];
MOE_UNROLL
  for (int j = 0; j < kAttnMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    qr[j] = d < Dh ? q[int64_t(h) * Dh + d] * scale : 0.0f;
    acc[j] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const float* kb = kc + int64_t(kh) * stride_h;
  const float* vb = vc + int64_t(kh) * stride_h;
  for (int t = wid; t < n_ctx; t += kAttnWarps) {
    const float* kt = kb + int64_t(t) * stride_t;
    float s = 0.0f;
MOE_UNROLL
    for (int j = 0; j < kAttnMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < Dh) s += qr[j] * kt[d];
    }
    s = warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // first step: e^(-inf) = 0
    const float pt = expf(s - m_new);
    l = l * corr + pt;
    const float* vt = vb + int64_t(t) * stride_t;
MOE_UNROLL
    for (int j = 0; j < kAttnMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < Dh) acc[j] = acc[j] * corr + pt * vt[d];
    }
    m = m_new;
  }
  if (lane == 0) { sm_m[wid] = m; sm_l[wid] = l; }
MOE_UNROLL
  for (int j = 0; j < kAttnMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < Dh) sm_acc[wid][d] = acc[j];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, sm_m[w]);
  float L = 0.0f, c[kAttnWarps];
  for (int w = 0; w < kAttnWarps; ++w) { c[w] = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M); L += c[w] * sm_l[w]; }
  const float invL = 1.0f / L;
  for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) o += c[w] * sm_acc[w][d];
    out[int64_t(h) * Dh + d] = o * invL;
  }
}

void attention_decode(float* out, const float* q, const float* k_cache, const float* v_cache, int64_t n_heads,
                      int64_t n_kv_heads, int64_t head_dim, int64_t n_ctx, int64_t kv_stride_t, int64_t kv_stride_h,
                      float scale, void* stream) {
  MOE_KCHECK("attention_decode", n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0,
             "n_heads (" + std::to_string(n_heads) + ") must be a positive multiple of n_kv_heads (" + std::to_string(n_kv_heads) + ")");
  MOE_KCHECK("attention_decode", head_dim > 0 && head_dim <= 32 * kAttnMaxDimsPerLane,
             "head_dim must be in 1..256 (got " + std::to_string(head_dim) + ")");
  MOE_KCHECK("attention_decode", n_ctx >= 1 && n_ctx < (int64_t(1) << 31), "n_ctx must be >= 1 (got " + std::to_string(n_ctx) + ")");
  MOE_KCHECK("attention_decode", kv_stride_h >= head_dim && kv_stride_t >= kv_stride_h * n_kv_heads,
             "kv strides too small for [n_ctx, n_kv_heads, head_dim]");
  MOE_KCHECK("attention_decode", out && q && k_cache && v_cache, "null pointer");
  MOE_LAUNCH("attention_decode", attention_decode_kernel, dim3(unsigned(n_heads)), dim3(kAttnWarps * 32), 0, stream, out,
             q, k_cache, v_cache, int(n_heads / n_kv_heads), int(head_dim), int(n_ctx), kv_stride_t, kv_stride_h, scale);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
