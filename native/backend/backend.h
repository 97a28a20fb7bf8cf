// The backend seam: every op the models run, forward and backward, over one tensor type (tensor/tensor.h).
//
// `Model` binds its weights once and calls only these; the trainer calls the backward halves. Implementations:
//   ref   plain scalar loops, single-threaded, written for obviousness: the oracle every fast path is tested against
//         (native/tests/test_backend_ops.cpp runs every op of every backend against it, forward and backward, and
//         every backward of ref against finite differences of its forward);
//   cpu   multi-threaded, SIMD (cpu/: matmul per ISA, quantized kernels, thread pool);
//   cuda  the same table on the GPU (kernels/), a later issue; its host code also runs under the SIMT emulator.
//
// Conventions. Shapes are written in PyTorch order ([T, D] = T rows of D); tensors are f32 unless named otherwise,
// rows may be strided (nb[1]); weights W[N, K] are in their stored dtype (f32, f16, bf16, Q8_0, Q4_0, Q4_K, with
// contiguous rows) or NF4 (a Q-LoRA base quantized at load: the Tensor points to the NF4Tensor, tensor/tensor.h) and
// frozen.
// Backward ops take the forward's inputs (and what it saved) and the output gradient, and write (or, where the
// comment says so, accumulate) the input gradients. Every op is deterministic: the same inputs give the same bits
// whatever the thread count (reductions are split by output element, never by summation order across threads).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include "tensor/tensor.h"

namespace moe {

class ThreadPool;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- linear algebra: the three forms of y = x·Wᵀ ----------------------------------------------------------
  // y[M, N] (+)= x[M, K] · W[N, K]ᵀ                      W: any stored dtype
  virtual void matmul(const Tensor& y, const Tensor& x, const Tensor& W, bool accumulate) = 0;
  // dx[M, K] (+)= dy[M, N] · W[N, K]                     the input gradient through a frozen W of any dtype
  virtual void matmul_dx(const Tensor& dx, const Tensor& dy, const Tensor& W, bool accumulate) = 0;
  // dW[N, K] (+)= dy[M, N]ᵀ · x[M, K]                    f32 (LoRA's A and B; never a base weight)
  virtual void matmul_dw(const Tensor& dW, const Tensor& dy, const Tensor& x, bool accumulate) = 0;
  // Several independent products y_i (+)= x_i · W_iᵀ, each with matmul's contract (the experts of a MoE layer,
  // ggml's mul_mat_id): a backend may run them as one parallel job instead of one per product. Default: in order.
  struct MatmulJob { Tensor y, x, W; bool accumulate; };
  virtual void matmul_batch(const MatmulJob* jobs, int n) {
    for (int i = 0; i < n; ++i) matmul(jobs[i].y, jobs[i].x, jobs[i].W, jobs[i].accumulate);
  }
  // y[M, N] += b[N]
  virtual void add_bias(const Tensor& y, const Tensor& b) = 0;

  // ---- normalisation ----------------------------------------------------------------------------------------
  // out[R, D] = x̂ ⊙ w,  x̂ = x · rstd,  rstd[r] = 1 / sqrt(mean_i x[r,i]² + eps)    (w empty: no gain)
  // rstd: [R], written when non-empty (for backward). out may alias x. Per-head q/k norms are R = T·H rows of hd.
  virtual void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps, const Tensor& rstd) = 0;
  // g = dout ⊙ w;  dx = rstd · (g − x̂ · mean_i(g ⊙ x̂));   dw[D] += Σ_r dout ⊙ x̂  (only when dw is non-empty)
  // dx may alias dout.
  virtual void rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                                const Tensor& rstd) = 0;

  // ---- memory: the model's moves between its buffers go through the backend (on a device they are device copies) ----
  // dst = src (same shape; rows of either may be strided);  x = 0. src is f32; dst f32, or f16 (rounded to nearest
  // even: the f16 KV cache's append; values past ±65504 become ±inf, as in every f16 cache).
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void zero(const Tensor& x) = 0;

  // ---- elementwise ------------------------------------------------------------------------------------------
  // out = silu(gate) ⊙ up,  silu(g) = g·σ(g).   out may alias gate.
  virtual void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up) = 0;
  // dgate = dout ⊙ up ⊙ σ(g)(1 + g(1 − σ(g))),  dup = dout ⊙ silu(g).   dgate may alias dout (not gate or up).
  virtual void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate,
                               const Tensor& up) = 0;
  // y += x   (same shape)
  virtual void add(const Tensor& y, const Tensor& x) = 0;
  // x = σ(x) = 1 / (1 + e^−x) in place (qwen2_moe's shared-expert gate); backward from the output y: dx *= y(1 − y)
  virtual void sigmoid(const Tensor& x) = 0;
  virtual void sigmoid_backward(const Tensor& dx, const Tensor& y) = 0;
  // LoRA dropout (train/dropout.h): y[m, j] (+)= keep(m·cols + j) ? x[m, j] / (1 − p) : 0,  keep = lora_keep(seed, id, ·, p).
  // The forward writes x̃ = dropout(x); the backward accumulates dx += dx̃ ⊙ mask / (1 − p) with the same mask.
  virtual void lora_dropout(const Tensor& y, const Tensor& x, uint64_t seed, uint32_t id, float p, bool accumulate) = 0;
  // x[r, i] *= g[i]      (g: [D]; folds a per-head gain into q)
  virtual void mul_cols(const Tensor& x, const Tensor& g) = 0;
  // x = clamp(x, −c, c)  (olmoe's clip_qkv); backward: dx[i] = 0 where |x_pre[i]| > c
  virtual void clamp(const Tensor& x, float c) = 0;
  virtual void clamp_backward(const Tensor& dx, const Tensor& x_pre, float c) = 0;

  // ---- rotary position embedding (rotate_half convention) ---------------------------------------------------
  // x: [T, H, hd] (rows per token nb[2] apart, heads nb[1] apart), rotated in place by the angles in cos/sin [T, hd/2]:
  //   (x_j, x_{j+hd/2}) -> (x_j·c − x_{j+hd/2}·s, x_{j+hd/2}·c + x_j·s)
  virtual void rope(const Tensor& x, const Tensor& cos, const Tensor& sin) = 0;
  // The rotation is orthogonal, so its backward is the inverse rotation (s -> −s), applied in place to dx.
  virtual void rope_backward(const Tensor& dx, const Tensor& cos, const Tensor& sin) = 0;

  // ---- attention: causal, grouped KV heads ------------------------------------------------------------------
  // q: [T, Hq, hd] for positions pos0 .. pos0+T-1;  K, V: [≥pos0+T, Hkv, hd] (the cache, f32 or f16);  out: [T, Hq, hd]
  //   p(t,h,·) = softmax_j(scale · q[t,h]·K[j, h/(Hq/Hkv)]), j ≤ pos0+t;   out[t,h] = Σ_j p_j V[j, ·]
  // att: [T·Hq, pos0+T] softmax probabilities, written when non-empty (for backward, f32 cache only; zero past the
  // causal edge).
  // scratch: [threads, ≥ pos0+T] f32 (one row per worker thread of a cpu backend; 1 row for ref).
  virtual void attention(const Tensor& out, const Tensor& q, const Tensor& K, const Tensor& V, int64_t pos0, float scale,
                         const Tensor& att, const Tensor& scratch) = 0;
  // From att (saved by the forward):
  //   dp = dout·Vᵀ;  ds = p ⊙ (dp − Σ_j p_j dp_j);  dq = scale·ds·K;  dK += scale·dsᵀ·q;  dV += pᵀ·dout
  // dK, dV: [pos0+T, Hkv, hd], accumulated (grouped heads sum into their KV head); dq written.
  virtual void attention_backward(const Tensor& dq, const Tensor& dK, const Tensor& dV, const Tensor& dout, const Tensor& q,
                                  const Tensor& K, const Tensor& V, const Tensor& att, int64_t pos0, float scale) = 0;
  // The same forward over an int8 cache: K8, V8 [ctx, Hkv, hd] int8 with scales Ks, Vs [ctx, Hkv] (x ≈ s·q).
  virtual void attention_kv8(const Tensor& out, const Tensor& q, const Tensor& K8, const Tensor& Ks, const Tensor& V8,
                             const Tensor& Vs, int64_t pos0, float scale, const Tensor& scratch) = 0;

  // int8 KV cache rows: x [R, hd] -> q [R, hd] int8, s [R] with x ≈ s·q, s = absmax/127 (rounded to nearest).
  virtual void kv_quantize(const Tensor& q, const Tensor& s, const Tensor& x) = 0;

  // ---- mixture of experts -----------------------------------------------------------------------------------
  // logits [T, E] -> probs = softmax(logits) in f32 [T, E] (written), top-k by probability (ties: lower index)
  // idx [T, k] i32, w [T, k] = probs[idx], divided by Σ_k w when renorm.
  virtual void moe_route(const Tensor& idx, const Tensor& w, const Tensor& probs, const Tensor& logits, bool renorm) = 0;
  // dlogits [T, E] from dw [T, k] (the router is frozen, but this carries the loss into whatever feeds it):
  //   renorm: dp_sel = (dw − Σ_k dw·w) / Σ_k p_sel ;  else dp_sel = dw;  dp = scatter(dp_sel) over idx
  //   dlogits = p ⊙ (dp − Σ_e p·dp)
  virtual void moe_route_backward(const Tensor& dlogits, const Tensor& dw, const Tensor& idx, const Tensor& w,
                                  const Tensor& probs, bool renorm) = 0;
  // Token-to-expert grouping (ggml's mul_mat_id bookkeeping): the pairs (t, j) of idx [T, k] sorted by expert, stable in
  // token order, so each expert's rows, and every sum over them, come in a fixed order:
  //   offsets [E + 1] i32: expert e's pairs are [offsets[e], offsets[e+1]);  slot_tok [T·k] i32: each pair's token t;
  //   slot_w [T·k] f32: its routing weight w[t, j];  slot_pair [T·k] i32 (empty: not written): its index t·k + j.
  virtual void moe_group(const Tensor& offsets, const Tensor& slot_tok, const Tensor& slot_w, const Tensor& slot_pair,
                         const Tensor& idx, const Tensor& w, int E) = 0;
  // dst[i, :] = src[rows[i], :]           dst [n, D], src [T, D], rows [n] i32
  virtual void gather_rows(const Tensor& dst, const Tensor& src, const Tensor& rows) = 0;
  // dst[rows[i], :] += w[i] · src[i, :]   dst [T, D], src [n, D], rows [n] i32 (empty: i), w [n] (empty: 1)
  // Rows may repeat (several experts of one token): the sum is taken in index order i, so it is deterministic.
  virtual void scatter_add_rows(const Tensor& dst, const Tensor& src, const Tensor& rows, const Tensor& w) = 0;
  // out[i] = a[rows[i], :] · b[i, :]      (the gradient of scatter_add_rows' weights)   rows empty: i
  virtual void row_dots(const Tensor& out, const Tensor& a, const Tensor& rows, const Tensor& b) = 0;

  // ---- embedding --------------------------------------------------------------------------------------------
  // x[T, D] = table[ids[t], :]             table [V, D] in any float stored dtype; ids checked against V
  virtual void embedding(const Tensor& x, const Tensor& table, const Tensor& ids) = 0;

  // ---- loss -------------------------------------------------------------------------------------------------
  // Cross-entropy of one chunk of rows, in place: logits [n, V] -> dlogits = scale · (softmax(logits) − onehot(label))
  // for rows whose label ≠ -100 (ignored rows get 0). Returns Σ over counted rows of −log softmax(logits)[label]
  // (double). The caller chunks tokens so [T, V] logits never exist at once, and sets scale = 1 / (counted targets).
  virtual double cross_entropy(const Tensor& logits, const Tensor& labels, float scale) = 0;

  // ---- optimizer --------------------------------------------------------------------------------------------
  // AdamW (decoupled decay, as torch.optim.AdamW), step t ≥ 1, over f32 p, g, m, v of one shape:
  //   m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;  p -= lr·(m/(1−β1ᵗ) / (sqrt(v/(1−β2ᵗ)) + eps) + wd·p)
  virtual void adamw(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, float lr, float beta1, float beta2,
                     float eps, float weight_decay, int64_t step) = 0;

  // Rows of per-thread attention scratch this backend wants (see attention's `scratch`).
  virtual int scratch_rows() const { return 1; }
};

// "ref" or "cpu". cpu runs on `pool` (not owned; must outlive the backend). Throws for an unknown name.
std::unique_ptr<Backend> make_backend(const std::string& name, ThreadPool* pool = nullptr);

}  // namespace moe
