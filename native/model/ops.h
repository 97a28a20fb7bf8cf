// Transformer ops on f32 activations, llm.c style: each op is one function with its shapes in the comment and
// a name a backward can sit beside (rmsnorm_forward / rmsnorm_backward, ...). Forward ops optionally write what a
// backward needs (e.g. rstd) into caller-provided buffers (nullptr for inference).
#pragma once
#include <cstdint>
#include "cpu/thread_pool.h"

namespace moe {

// out[T, D] = x / sqrt(mean(x^2) + eps) * w        (w may be nullptr: no gain). rstd: [T] (optional, for backward)
// out may alias x.
void rmsnorm_forward(float* out, const float* x, const float* w, int64_t T, int64_t D, float eps, float* rstd = nullptr);

// out[T, I] = silu(gate) * up, silu(g) = g / (1 + exp(-g)).      out may alias gate.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t T, int64_t I);

// In-place softmax over n floats (max-subtracted, f32 like torch's softmax(dtype=float)).
void softmax_inplace(float* x, int64_t n);

// y[T, D] += x[T, D]
void residual_forward(float* y, const float* x, int64_t n);

// Causal multi-head attention with grouped KV heads over a cache.
//   q:   [T, Hq, hd]   (rows q_stride floats apart) for positions pos0 .. pos0+T-1
//   K,V: [ctx, Hkv, hd] cache rows, valid up to pos0+T-1
//   out: [T, Hq, hd]
//   att: optional [T, Hq, pos0+T] softmax probabilities kept for backward (nullptr for inference)
// score(t, h, j) = scale · q[t,h]·K[j, h / (Hq/Hkv)],  j <= pos0+t;  out = Σ_j softmax(score)_j · V[j, ...]
// scores: per-thread scratch of pool.size() * ctx floats.
void attention_forward(ThreadPool& pool, float* out, const float* q, int64_t q_stride, const float* K, const float* V,
                       int64_t pos0, int64_t T, int Hq, int Hkv, int hd, float scale, float* scores, int64_t ctx,
                       float* att = nullptr);

// int8 KV cache rows (KvCache::int8): n rows of hd floats -> q[n, hd] int8 and s[n], x ≈ s*q, s = absmax/127.
void kv_quantize_rows(int8_t* q, float* s, const float* x, int64_t n, int hd);

// attention_forward over an int8 cache: K8/V8 [ctx, Hkv, hd] int8 with scales Ks/Vs [ctx, Hkv].
//   score(t, h, j) = scale · Ks[j, kh] · (q[t,h] · K8[j, kh]);  out = Σ_j p_j Vs[j, kh] V8[j, kh]
void attention_forward_kv8(ThreadPool& pool, float* out, const float* q, int64_t q_stride, const int8_t* K8, const float* Ks,
                           const int8_t* V8, const float* Vs, int64_t pos0, int64_t T, int Hq, int Hkv, int hd, float scale,
                           float* scores, int64_t ctx);

// MoE routing, transformers semantics: probs = softmax(logits) in f32; top-k by probability (ties -> lower index);
// if renorm, weights /= Σ top-k weights.
//   logits: [T, E] -> idx: [T, k], w: [T, k]
void moe_route_forward(const float* logits, int64_t T, int E, int k, bool renorm, int32_t* idx, float* w, float* probs_scratch);

}  // namespace moe
