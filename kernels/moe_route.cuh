// MoE router: softmax over E experts, top-k, optional renormalisation (transformers' Mixtral / Qwen-MoE / OLMoE
// routing; Hunyuan-Large top-1 without renormalisation is k = 1, renormalize = false).
//   logits: [T, E]  ->  weights: [T, k] f32, ids: [T, k] int32, in descending order of probability;
//   probs: [T, E] the softmax (kept for the router's backward), or null
//   p_e = exp(l_e - max l) / sum_e' exp(l_e' - max l)       (f32, as transformers' softmax(dtype=float))
//   top-k: k rounds of a warp argmax; ties go to the lower expert id
//   renormalize: w_j = p_j / sum_{selected} p
// One warp per token, 4 tokens per block. Lane L owns experts L, L+32, ...: it keeps their probabilities in its
// slice of dynamic shared memory [4][E], and only it reads or writes them, so no barrier is needed between rounds
// beyond the shuffles of the argmax. A selected expert's probability is set to -1 (all live ones are >= 0).
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kRouteWarps = 4;

__global__ void __launch_bounds__(kRouteWarps * 32)
moe_route_kernel(float* weights, int32_t* ids, float* probs, const float* logits, int T, int E, int k, int renormalize) {
  SIMT_DYNAMIC_SHARED(float, smem);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int t = blockIdx.x * kRouteWarps + wid;
  if (t >= T) return;  // whole warp leaves together: the kernel has no block barrier
  const float* l = logits + int64_t(t) * E;
  float* p = smem + wid * E;
  float m = -INFINITY;
  for (int e = lane; e < E; e += 32) m = fmaxf(m, l[e]);
  m = warp_max(m);
  float s = 0.0f;
  for (int e = lane; e < E; e += 32) { const float v = expf(l[e] - m); p[e] = v; s += v; }
  const float inv = 1.0f / warp_sum(s);
  for (int e = lane; e < E; e += 32) p[e] *= inv;
  if (probs != nullptr) for (int e = lane; e < E; e += 32) probs[int64_t(t) * E + e] = p[e];
  float* wt = weights + int64_t(t) * k;
  int32_t* it = ids + int64_t(t) * k;
  float picked = 0.0f;
  for (int j = 0; j < k; ++j) {
    float best = -2.0f; int bi = 0x7fffffff;
    for (int e = lane; e < E; e += 32)
      if (p[e] > best) { best = p[e]; bi = e; }  // ascending e: a tie keeps the lower id
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ob > best || (ob == best && oi < bi)) { best = ob; bi = oi; }
    }
    if ((bi & 31) == lane) p[bi] = -1.0f;  // the owner lane retires the winner
    if (lane == 0) { wt[j] = best; it[j] = bi; }
    picked += best;
  }
  // Lane 0 wrote every weight, so lane 0 rescales them: another lane reading wt[] here would race with lane 0's
  // stores (the emulation's tests caught exactly that in an earlier version that spread this loop over lanes).
  if (renormalize && lane == 0) {
    const float inv_picked = 1.0f / picked;
    for (int j = 0; j < k; ++j) wt[j] *= inv_picked;
  }
}

// Backward (the router is frozen; this carries the loss into what feeds it), one warp per token:
//   renorm: dp_sel = (dw − Σ_k dw·w) / Σ_k p_sel;  else dp_sel = dw;  dp = scatter(dp_sel) over idx (repeats add)
//   dlogits = p ⊙ (dp − Σ_e p·dp)
__global__ void __launch_bounds__(kRouteWarps * 32)
moe_route_backward_kernel(float* dlogits, const float* dw, const int32_t* idx, const float* w, const float* probs, int T, int E, int k,
                          int renormalize) {
  const int lane = threadIdx.x & 31;
  const int t = blockIdx.x * kRouteWarps + (threadIdx.x >> 5);
  if (t >= T) return;  // whole warp
  const float* p = probs + int64_t(t) * E;
  const float* g = dw + int64_t(t) * k;
  const float* wt = w + int64_t(t) * k;
  const int32_t* it = idx + int64_t(t) * k;
  float S = 0.0f, gw = 0.0f;  // every lane the same: k is small
  for (int j = 0; j < k; ++j) { S += p[it[j]]; gw += g[j] * wt[j]; }
  auto dp_of = [&](int e) {
    float a = 0.0f;
    for (int j = 0; j < k; ++j) if (it[j] == e) a += renormalize ? (g[j] - gw) / S : g[j];
    return a;
  };
  float pd = 0.0f;
  for (int e = lane; e < E; e += 32) pd += p[e] * dp_of(e);
  pd = warp_sum(pd);
  float* o = dlogits + int64_t(t) * E;
  for (int e = lane; e < E; e += 32) o[e] = p[e] * (dp_of(e) - pd);
}

void moe_route_backward(float* dlogits, const float* dw, const int32_t* ids, const float* weights, const float* probs, int64_t T, int64_t E,
                        int64_t k, bool renormalize, void* stream) {
  MOE_KCHECK("moe_route_backward", T >= 0 && T < (int64_t(1) << 31) && E >= 1 && E <= 4096 && k >= 1 && k <= E, "bad shape");
  MOE_KCHECK("moe_route_backward", dlogits && dw && ids && weights && probs, "null pointer");
  if (T == 0) return;
  MOE_LAUNCH("moe_route_backward", moe_route_backward_kernel, dim3(unsigned((T + kRouteWarps - 1) / kRouteWarps)), dim3(kRouteWarps * 32), 0,
             stream, dlogits, dw, ids, weights, probs, int(T), int(E), int(k), int(renormalize));
}

// Grouping by expert, one block: thread e counts expert e's pairs (scanning idx in order), thread 0 turns the counts
// into offsets, then thread e places its pairs in index order: stable, deterministic, no atomics. O(E·T·k / threads)
// reads of idx, cached; the fast form (ballot ranks per warp) comes with the grouped GEMM.
__global__ void __launch_bounds__(256)
moe_group_kernel(int32_t* offsets, int32_t* slot_tok, float* slot_w, int32_t* slot_pair, const int32_t* idx, const float* w, int n, int k,
                 int E) {
  SIMT_DYNAMIC_SHARED(int32_t, off);  // [E + 1]
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int c = 0;
    for (int i = 0; i < n; ++i) c += idx[i] == e ? 1 : 0;
    off[e + 1] = c;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    off[0] = 0;
    for (int e = 0; e < E; ++e) off[e + 1] += off[e];
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= E; e += blockDim.x) offsets[e] = off[e];
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int pos = off[e];
    for (int i = 0; i < n; ++i)
      if (idx[i] == e) {
        slot_tok[pos] = i / k;
        slot_w[pos] = w[i];
        if (slot_pair != nullptr) slot_pair[pos] = i;
        ++pos;
      }
  }
}

void moe_group(int32_t* offsets, int32_t* slot_tok, float* slot_w, int32_t* slot_pair, const int32_t* ids, const float* weights, int64_t T,
               int64_t k, int64_t E, void* stream) {
  MOE_KCHECK("moe_group", T >= 0 && k >= 1 && T * k < (int64_t(1) << 31) && E >= 1 && E <= 4096, "bad shape");
  MOE_KCHECK("moe_group", offsets && (T == 0 || (slot_tok && slot_w && ids && weights)), "null pointer");
  MOE_LAUNCH("moe_group", moe_group_kernel, dim3(1), dim3(256), sizeof(int32_t) * size_t(E + 1), stream, offsets, slot_tok, slot_w, slot_pair,
             ids, weights, int(T * k), int(k), int(E));
}

void moe_route(float* weights, int32_t* ids, float* probs, const float* logits, int64_t T, int64_t E, int64_t k, bool renormalize,
               void* stream) {
  MOE_KCHECK("moe_route", T >= 0 && T < (int64_t(1) << 31), "T out of range");
  MOE_KCHECK("moe_route", E >= 1 && E <= 4096, "E must be in 1..4096 (got " + std::to_string(E) + ")");
  MOE_KCHECK("moe_route", k >= 1 && k <= E, "k must be in 1..E (got k=" + std::to_string(k) + ", E=" + std::to_string(E) + ")");
  MOE_KCHECK("moe_route", weights && ids && logits, "null pointer");
  if (T == 0) return;
  const size_t smem = sizeof(float) * size_t(kRouteWarps) * size_t(E);
  MOE_LAUNCH("moe_route", moe_route_kernel, dim3(unsigned((T + kRouteWarps - 1) / kRouteWarps)), dim3(kRouteWarps * 32),
             smem, stream, weights, ids, probs, logits, int(T), int(E), int(k), int(renormalize));
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
