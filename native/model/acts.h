// What the backward of one decoder layer needs, kept by its forward (typed, one struct per layer; under gradient
// checkpointing a single LayerActs is refilled by recomputing each layer's forward from its saved input).
// Shapes for T tokens; I = the largest MLP width, K = top-k, r = the largest LoRA rank.
//
//   attention  x_in [T, D] -> h1 = rmsnorm(x_in) [T, D] (rstd1 [T])
//              q0/k0/v0  the projections (+ bias)                 [T, qd] / [T, kd] / [T, kd]
//              q1/k1     after a q/k norm before RoPE (rstd per row in qn/kn_rstd)
//              q3/k3     after olmoe's clamp and RoPE (RoPE's backward needs no input; the clamp's needs q1/k1/v0)
//              q4        after Hunyuan's per-head norm after RoPE and the folded key gain = what attention saw (k's
//                        final form is the KV cache row)
//              att [T·Hq, T] softmax probabilities, ao [T, qd] attention output (the o_proj input)
//   MLP        x_mid [T, D] -> h2 = rmsnorm(x_mid) (rstd2 [T])
//              dense: g/u/a [T, I] (gate and up projections, a = silu(g)·u)
//              MoE:   probs [T, E], idx/w [T, K], per (token, slot) pair grouped by expert: g/u/a [T·K, I], y [T·K, D]
//              shared: sg/su/sa [T, I], sy [T, D], sig [T] (qwen2_moe's gate σ)
//   LoRA u = x·Aᵀ of every adapted linear, [rows, r] (per site; experts in grouped-pair order)
#pragma once
#include <cstdint>
#include <vector>

namespace moe {

struct LayerActs {
  int64_t T = 0;
  std::vector<float> x_in, h1, rstd1;
  std::vector<float> q0, q1, q3, q4, k0, k1, k3, v0, qn_rstd, kn_rstd, qa_rstd, ka_rstd;
  std::vector<float> att, ao;
  std::vector<float> x_mid, h2, rstd2;
  std::vector<float> g, u, a;                    // dense MLP, or the routed pairs [T·K, I]
  std::vector<float> probs, w, y;                // routing and the routed pairs' outputs
  std::vector<int32_t> idx, offsets, slot_tok, slot_pair;
  std::vector<float> slot_w;
  std::vector<float> sg, su, sa, sy, sig;        // shared expert
  // LoRA intermediates u = x·Aᵀ per site
  std::vector<float> lq, lk, lv, lo, lgate, lup, ldown, lsg, lsu, lsd;
};

}  // namespace moe
