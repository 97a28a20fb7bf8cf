// The architecture-neutral transformer, driven by a ModelSpec. Weights are bound by family-specific tensor
// names with shape checks and stay in their stored dtype inside the mmap (zero copy); only tiny vectors (norm
// gains, biases) are widened to f32. All activations and accumulation are f32.
//
// One decoder layer (pre-norm):
//   h  = rmsnorm(x)·w_in;  q,k,v = h·Wq^T(+b), h·Wk^T(+b), h·Wv^T(+b)
//   q/k norm (per family) and RoPE;  a = attention(q, K[0..p], V[0..p]);  x += a·Wo^T
//   h  = rmsnorm(x)·w_post;  x += mlp(h)   where mlp is dense SwiGLU or MoE (routed experts [+ shared])
// logits = rmsnorm(x)·w_final · W_lm^T
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "backend/backend.h"
#include "cpu/thread_pool.h"
#include "format/config.h"
#include "format/limits.h"
#include "format/safetensors.h"
#include "model/acts.h"
#include "quant/nf4.h"
#include "train/dropout.h"
#include "train/lora.h"

namespace moe {

// A weight matrix W[out, in] in its stored dtype, pointing into the mapped checkpoint. With a Q-LoRA base (Model::load
// base_quant "nf4") a projection also has its NF4 copy, owned by the Model, which is what the ops run (t()); the
// stored weight stays mapped (stored()): an export merges into the original precision, never into the NF4 copy.
struct Linear {
  const void* w = nullptr;
  DType dtype = DType::F32;
  int64_t out = 0, in = 0;
  std::vector<float> bias;  // [out] or empty
  const NF4Tensor* nf4 = nullptr;
  const void* packed = nullptr;  // Q4_0 / Q4_K / Q8_0 on the cpu backend: the copy in its load-time layout (Model::pack_weights)
  std::string name;         // the checkpoint tensor (a stacked expert slice: "name[e] rows r0..r1")
  bool present() const { return w != nullptr; }
  Tensor t() const {
    if (nf4) return nf4_weight(nf4, out, in);
    Tensor t = weight(w, dtype, out, in);
    t.packed = packed;
    return t;
  }
  Tensor stored() const { return weight(w, dtype, out, in); }
};

struct ExpertWeights { Linear gate, up, down; };

// Memory a Model owns for its weights' load-time layout (cpu/qmatmul.h qpack): one anonymous block, with
// transparent huge pages asked for where the OS has them (fewer TLB misses as decode streams it).
class PackArena {
 public:
  PackArena() = default;
  ~PackArena() { release(); }
  PackArena(const PackArena&) = delete;
  PackArena& operator=(const PackArena&) = delete;
  uint8_t* allocate(size_t n);  // replaces what it held
  void release();
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
  bool mapped_ = false;
};

struct LayerWeights {
  std::vector<float> in_norm, post_norm;   // [D]
  Linear q, k, v, o;
  std::vector<float> q_norm, k_norm;       // [hd] (per head) or [Hq*hd]/[Hkv*hd] (olmoe), empty if none
  Linear gate, up, down;                   // dense MLP
  Linear router;                           // [E, D]
  std::vector<ExpertWeights> experts;
  Linear sh_gate, sh_up, sh_down;          // shared expert / shared MLP
  Linear sh_expert_gate;                   // qwen2_moe: [1, D]
};

// KV cache: one [ctx, Hkv*hd] K and V per KV slot (CLA layers share their group's slot, so the cache holds
// num_kv_slots entries, not num_layers), of the Model's KvType (format/limits.h):
//   f32   the values as computed (training's cache: its backward reads them)
//   f16   IEEE half, rounded to nearest even: half the bytes of f32 and what llama.cpp keeps by default; decode at long
//         context reads the cache once per token, so it is faster there (1.5x at 4096 on the bench model).
//         Relative error ≤ 2^-11 per value (transformers' own bf16 cache rounds to 2^-8).
//   int8  each (token, kv head) row of hd values as int8 q with one f32 scale s = absmax/127, x ≈ s*q
//         (per-head-per-token absmax, as Qwen's int8 KV cache does): (hd + 4) bytes instead of 4*hd, 3.8x smaller at hd 128.
struct KvCache {
  int64_t ctx = 0, row = 0;
  int head_dim = 0;
  KvType type = KvType::F32;
  std::vector<std::vector<float>> k, v;        // f32: [ctx, row]
  std::vector<std::vector<uint16_t>> k16, v16; // f16: [ctx, row] half bits
  std::vector<std::vector<int8_t>> k8, v8;     // int8: [ctx, row]
  std::vector<std::vector<float>> ks, vs;      // int8: [ctx, row / head_dim] scales
  void init(int slots, int64_t ctx_, int64_t row_, int head_dim_ = 0, KvType type_ = KvType::F32) {
    ctx = ctx_; row = row_; head_dim = head_dim_ > 0 ? head_dim_ : int(row_); type = type_;
    k.clear(); v.clear(); k16.clear(); v16.clear(); k8.clear(); v8.clear(); ks.clear(); vs.clear();
    const size_t n = size_t(ctx * row);
    switch (type) {
      case KvType::F32: k.assign(size_t(slots), std::vector<float>(n)); v.assign(size_t(slots), std::vector<float>(n)); break;
      case KvType::F16: k16.assign(size_t(slots), std::vector<uint16_t>(n)); v16.assign(size_t(slots), std::vector<uint16_t>(n)); break;
      case KvType::Int8:
        k8.assign(size_t(slots), std::vector<int8_t>(n));
        v8.assign(size_t(slots), std::vector<int8_t>(n));
        ks.assign(size_t(slots), std::vector<float>(size_t(ctx * (row / head_dim))));
        vs.assign(size_t(slots), std::vector<float>(size_t(ctx * (row / head_dim))));
        break;
    }
  }
  int64_t bytes() const {
    switch (type) {
      case KvType::F16: return int64_t(k16.size()) * 2 * ctx * row * 2;
      case KvType::Int8: return int64_t(k8.size()) * 2 * ctx * (row + (row / head_dim) * int64_t(sizeof(float)));
      default: return int64_t(k.size()) * 2 * ctx * row * int64_t(sizeof(float));
    }
  }
};

// Scratch sized once per session for at most max_t tokens per forward call: the token loop never allocates.
struct Scratch {
  int64_t max_t = 0, ctx = 0;
  std::vector<float> x, h, q, k, v, att, mlp_out, gate, up, router, probs, rw, gather, gout, cos, sin, inv_freq, scores, shg, last;
  std::vector<int32_t> ridx, offsets, slot_tok;
  std::vector<float> slot_w;
  std::vector<float> lu, lus;   // LoRA u = x·Aᵀ and s·u for inference (grown to the largest call once)
  // LoRA dropout (training only; the Trainer sets both per sequence, sessions leave p = 0): every LoRA pair sees
  // dropout(x) = x ⊙ mask / (1 − p), mask[m, j] drawn by lora_keep(seed, pair id, m·in + j), so the checkpointed
  // recompute and the backward regenerate the same mask instead of storing it.
  float dropout_p = 0;
  uint64_t dropout_seed = 0;
  // Whether this scratch's forwards add to the model's routing telemetry (Model::routing_counts). Trainer::evaluate
  // turns it off for its forwards: the run's routing shows what trained, not the validation passes.
  bool count_routing = true;
  std::vector<float> ldrop, ldx;  // dropped x [M, in] and du·A [M, in] (grown to the largest call once)
};

// The dropout mask bit: lora_keep (train/dropout.h), shared with the kernels.

// Everything one training sequence of up to max_t tokens needs, sized once (Model::init_train): the step never allocates.
struct TrainState {
  int64_t max_t = 0;
  KvCache kv;
  Scratch s;
  LayerActs acts;                                   // refilled per layer (gradient checkpointing)
  std::vector<std::vector<float>> x_ckpt;           // [L][T, D]: every layer's input
  std::vector<float> x_final, rstd_final, h_final, logits, dx, dh, dmid;
  std::vector<std::vector<float>> dK, dV;           // [slots][T, kd]: gradients into each KV slot (CLA layers add in)
  std::vector<float> bq, bI1, bI2, bD1, bD2, bE, bdw, bdl, bsig, bu, bus;  // backward scratch (backward.cpp says which is which)
};

// One decoder MLP call site: the frozen projections, the LoRA pairs on them (any may be null or absent), and where
// the LoRA intermediates are saved for backward (rows from row0 on; null: not saved).
struct MlpSite {
  const Linear *gate, *up, *down;
  const LoraPair *gate_up, *lgate, *lup, *ldown;
  std::vector<float> *save_gate, *save_up, *save_down;
  int64_t row0;
};

struct LoadProgress { void (*fn)(void* ctx, int done, int total) = nullptr; void* ctx = nullptr; };

struct ExpertGroups;  // model/experts.h

class Model {
 public:
  // Reads dir/config.json (+ generation_config.json), maps the safetensors and binds every weight.
  // kv: the KV cache its sessions keep (see KvCache; training always keeps f32).
  // base_quant: "none" (weights as stored) or "nf4" (Q-LoRA: every attention and MLP projection -- q/k/v/o, routed,
  // shared and dense gate/up/down, each expert's gate, up and down its own tensor in the hub layout -- quantized at
  // load to bitsandbytes' NF4, quant/nf4.h, streaming from the mapping on the pool; embeddings, lm_head, routers and
  // norms stay as stored). Needs f32/f16/bf16 projections. Progress counts the shards, then each quantized tensor.
  // device: "auto" | "cpu" | "emu" | "cuda" (cuda/kernel_backend.h resolve_device): the backend every op runs on.
  static std::shared_ptr<Model> load(const std::string& dir, int threads, LoadProgress progress = {}, KvType kv = KvType::F32,
                                     const std::string& base_quant = "none", const std::string& device = "cpu");

  const ModelSpec& spec() const { return spec_; }
  ThreadPool& pool() { return *pool_; }
  const TensorStore& store() const { return *store_; }
  const std::vector<int>& eos_ids() const { return eos_ids_; }

  int64_t params_total() const { return params_total_; }
  int64_t params_active() const { return params_active_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  DType bulk_dtype() const { return bulk_dtype_; }
  int64_t kv_bytes_per_token() const {
    const int64_t heads = int64_t(spec_.num_kv_slots) * 2 * spec_.num_kv_heads;
    return kv_ == KvType::Int8 ? heads * (spec_.head_dim + 4) : heads * spec_.head_dim * (kv_ == KvType::F16 ? 2 : 4);
  }
  KvType kv_type() const { return kv_; }
  // "none" or "nf4" (see load); with nf4, every quantized projection (checkpoint name, NF4 tensor) in bind order.
  const std::string& base_quant() const { return base_quant_; }
  std::vector<std::pair<std::string, const NF4Tensor*>> nf4_weights() const;

  void init_cache(KvCache& kv, int64_t ctx) const;
  void init_scratch(Scratch& s, int64_t max_t, int64_t ctx) const;

  // Runs T tokens at positions pos0.. through the model, appending their K/V to the cache.
  //   logits: [T, V] when all_logits, else [V] for the last token
  // lora: an adapter applied unmerged (y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ at every adapted site), or null.
  void forward(const int32_t* ids, int64_t T, int64_t pos0, KvCache& kv, Scratch& s, float* logits, bool all_logits,
               const Adapter* lora = nullptr);

  // Training: sizes a TrainState for sequences of up to max_t tokens with this adapter's ranks.
  void init_train(TrainState& ts, int64_t max_t, const Adapter& lora) const;
  // One sequence forward and backward with the adapter applied. targets[t] is the token position t predicts (-100:
  // no loss there; transformers' labels shifted by one). Adds loss_scale · d(Σ_t CE_t)/dθ into grads (an Adapter of
  // the same shapes whose A/B hold gradients) for every LoRA parameter; the base, router and embeddings are frozen.
  // Returns Σ_t CE_t over counted positions (n_targets receives their number).
  double forward_backward(const int32_t* ids, const int32_t* targets, int64_t T, const Adapter& lora, Adapter& grads,
                          float loss_scale, TrainState& ts, int64_t* n_targets = nullptr);

  // An adapter applied (unmerged) by every forward that is not given one: `--adapter DIR`. Null: none.
  void set_adapter(std::shared_ptr<const Adapter> a) { adapter_ = std::move(a); }
  const Adapter* adapter() const { return adapter_.get(); }

  // Expert routing telemetry: how many (token, expert) pairs each expert of each layer received since load or the
  // last reset, [num_layers][max_experts] row-major (a dense layer's row, and the experts past a layer's own count,
  // stay 0). Each routed token is counted once: forwards (chat prefill and decode, training's first forward), never
  // training's checkpointed recompute (it routes the same tokens again) nor forwards whose Scratch says
  // count_routing = false. Relaxed atomics: sessions on other threads add in; a snapshot is a consistent-enough
  // view (a forward in flight may be half in it). reset: the counters restart from 0 after the snapshot.
  std::vector<uint64_t> routing_counts(bool reset);

  // The backend every op runs on: cpu, or emu (the CUDA kernels under the SIMT emulator).
  Backend& backend() { return *backend_; }

  // Unmaps the weights; any later forward throws. mark_closed() only makes later forwards throw (used while a
  // job still runs; the binding unmaps when it ends).
  void close();
  void mark_closed() { closed_ = true; }
  bool closed() const { return closed_; }

 private:
  void bind(const std::string& dir);
  std::vector<Linear*> projections();               // every linear that base_quant "nf4" quantizes
  void quantize_base(LoadProgress progress, int done0, int total);
  void pack_weights();
  void linear(const Tensor& y, const Tensor& x, const Linear& l);
  void lora_add(const Tensor& y, const Tensor& x, const LoraPair& p, int64_t b0, float* u, bool u_ready, Scratch& s);
  static float* lora_u(Scratch& s, std::vector<float>* saved, int64_t offset_rows, int64_t M, int64_t r);
  void swiglu_mlp(const MlpSite& m, Scratch& s, const Tensor& h, const Tensor& out, float* g, float* u, float* a);
  void moe_experts_batched(const LayerWeights& L, Scratch& s, const Tensor& h, const Tensor& out, const ExpertGroups& grp, int E,
                           int64_t I);
  void moe_block(int l, const LayerSpec& ls, const LayerWeights& L, Scratch& s, const Tensor& h, const Tensor& out, LayerActs* acts,
                 const LayerLora* lora);
  void layer_forward(int l, const Tensor& x, int64_t pos0, KvCache& kv, Scratch& s, const Tensor& cos, const Tensor& sin,
                     LayerActs* acts, const LayerLora* lora);
  void rope_for(int64_t pos0, int64_t T, Scratch& s) const;
  void check_forward(int64_t T, int64_t pos0, const KvCache& kv, const Scratch& s) const;
  // backward (model/backward.cpp)
  void layer_backward(int l, TrainState& ts, const LayerLora* lora, LayerLora* grads);
  void mlp_site_backward(const MlpSite& m, LoraPair* g_gate_up, LoraPair* g_gate, LoraPair* g_up, LoraPair* g_down,
                         TrainState& ts, const Tensor& dy, const Tensor& x, const float* g, const float* u, const float* a,
                         const Tensor& dx, bool accumulate_dx);
  void lora_backward_B(const Tensor& dy, const LoraPair& p, int64_t b0, const float* u, LoraPair& gp, const Tensor& du,
                       bool accumulate_du, TrainState& ts);
  void lora_backward_A(const Tensor& du, const Tensor& x, const LoraPair& p, LoraPair& gp, const Tensor& dx, Scratch& s);
  const Tensor& lora_input(const Tensor& x, const LoraPair& p, Scratch& s, Tensor& holder);  // x, or dropout(x) when training
  void linear_backward(const Tensor& dx, bool accumulate, const Tensor& dy, const Tensor& x, const Linear& W, const LoraPair* p,
                       LoraPair* gp, const float* u, TrainState& ts);

  ModelSpec spec_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Backend> backend_;  // after pool_: destroyed first
  std::unique_ptr<TensorStore> store_;
  std::vector<int> eos_ids_;
  Linear embed_, lm_head_;
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<float> inv_freq_;
  float rope_scaling_ = 1.0f;
  int64_t params_total_ = 0, params_active_ = 0, weight_bytes_ = 0;
  DType bulk_dtype_ = DType::F32;
  std::atomic<bool> closed_{false};
  std::shared_ptr<const Adapter> adapter_;
  KvType kv_ = KvType::F32;
  std::string base_quant_ = "none";
  std::vector<std::unique_ptr<NF4Tensor>> nf4_;     // the NF4 copies the projections' Linear::nf4 point to
  PackArena packed_;                                // the load-time layout the projections' Linear::packed point into
  std::map<DType, int64_t> by_dtype_;
  std::unique_ptr<std::atomic<uint64_t>[]> route_counts_;  // routing_counts(): [num_layers][route_stride_]
  int route_stride_ = 0;                                      // spec_.max_experts(), kept out of moe_block               // parameters per dtype (bulk_dtype)
};

}  // namespace moe
