#include "model/model.h"
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>
#include "cpu/matmul.h"
#include "format/json.h"
#include "model/ops.h"
#include "model/rope.h"
#include "quant/quant.h"

namespace moe {

namespace fs = std::filesystem;

namespace {

struct Binder {
  const TensorStore& st;
  std::string dir;

  const TensorView& get(const std::string& name) const {
    const TensorView* t = st.find(name);
    if (!t) throw std::runtime_error(name + ": missing (no such tensor in the safetensors of " + dir + ")");
    return *t;
  }
  bool has(const std::string& name) const { return st.find(name) != nullptr; }
  void check_shape(const TensorView& t, const std::vector<int64_t>& want) const {
    if (t.shape != want)
      throw std::runtime_error(t.name + " has shape " + shape_str(t.shape) + ", expected " + shape_str(want) + " (in " + *t.file + ")");
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16 && !is_quant(t.dtype))
      throw std::runtime_error(t.name + " has dtype " + dtype_name(t.dtype) + ", expected f32, f16, bf16, q8_0, q4_0 or q4_k (in " + *t.file + ")");
  }
  std::vector<float> vec(const std::string& name, int64_t n) const {
    const TensorView& t = get(name);
    check_shape(t, {n});
    std::vector<float> out(static_cast<size_t>(n));
    row_to_f32(out.data(), t.data, t.dtype, 0, n);
    return out;
  }
  // W[out, in] (+ optional bias "<base>.bias" when present)
  Linear linear(const std::string& base, int64_t out, int64_t in, bool weight_suffix = true) const {
    const std::string wn = weight_suffix ? base + ".weight" : base;
    const TensorView& t = get(wn);
    check_shape(t, {out, in});
    Linear l; l.w = t.data; l.dtype = t.dtype; l.out = out; l.in = in;
    if (weight_suffix && has(base + ".bias")) l.bias = vec(base + ".bias", out);
    return l;
  }
  // Slice `rows` rows starting at row0 of expert e of a stacked [E, R, C] tensor (zero copy).
  Linear stacked(const std::string& name, int64_t E, int64_t R, int64_t C, int64_t e, int64_t row0, int64_t rows) const {
    const TensorView& t = get(name);
    check_shape(t, {E, R, C});
    Linear l; l.dtype = t.dtype; l.out = rows; l.in = C;
    l.w = static_cast<const uint8_t*>(t.data) + size_t(e * R + row0) * dtype_row_bytes(t.dtype, C);
    return l;
  }
};

void add_bias(float* y, const std::vector<float>& b, int64_t T, int64_t N) {
  if (b.empty()) return;
  for (int64_t t = 0; t < T; ++t) for (int64_t i = 0; i < N; ++i) y[t * N + i] += b[size_t(i)];
}

void linear_forward(ThreadPool& pool, float* y, const float* x, const Linear& l, int64_t M, bool accumulate = false) {
  // y[M, out] = x[M, in] · W^T (+ b)
  matmul(pool, y, l.out, x, l.in, l.w, l.dtype, M, l.out, l.in, accumulate);
  if (!accumulate) add_bias(y, l.bias, M, l.out);
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& dir, int threads, LoadProgress progress, bool kv_int8) {
  auto m = std::shared_ptr<Model>(new Model());
  m->kv_int8_ = kv_int8;
  fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::exists(cfg)) throw std::runtime_error(cfg.string() + ": missing (is " + dir + " a Hugging Face model folder?)");
  m->spec_ = parse_model_spec(json_parse_file(cfg.string()), cfg.string());
  m->eos_ids_ = m->spec_.eos_ids;
  fs::path gen = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen)) {
    for (int id : parse_generation_eos(json_parse_file(gen.string())))
      if (std::find(m->eos_ids_.begin(), m->eos_ids_.end(), id) == m->eos_ids_.end()) m->eos_ids_.push_back(id);
  }
  m->store_ = std::make_unique<TensorStore>(dir, progress.fn, progress.ctx);
  m->bind(dir);
  m->pool_ = std::make_unique<ThreadPool>(threads);
  return m;
}

void Model::bind(const std::string& dir) {
  const ModelSpec& S = spec_;
  Binder B{*store_, dir};
  const int64_t D = S.hidden, V = S.vocab, hd = S.head_dim, qd = int64_t(S.num_heads) * hd, kd = int64_t(S.num_kv_heads) * hd;
  embed_ = B.linear("model.embed_tokens", V, D);
  final_norm_ = B.vec("model.norm.weight", D);
  // tie_word_embeddings: the output projection is the embedding table (lm_head.weight may then be absent).
  lm_head_ = S.tie_embeddings ? embed_ : B.linear("lm_head", V, D);
  layers_.resize(size_t(S.num_layers));
  for (int i = 0; i < S.num_layers; ++i) {
    const LayerSpec& ls = S.layers[size_t(i)];
    LayerWeights& L = layers_[size_t(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    L.in_norm = B.vec(p + "input_layernorm.weight", D);
    L.post_norm = B.vec(p + "post_attention_layernorm.weight", D);
    const std::string a = p + "self_attn.";
    L.q = B.linear(a + "q_proj", qd, D);
    if (ls.has_kv) { L.k = B.linear(a + "k_proj", kd, D); L.v = B.linear(a + "v_proj", kd, D); }
    L.o = B.linear(a + "o_proj", D, qd);
    switch (S.qk_norm) {
      case QkNorm::PerHeadBeforeRope: L.q_norm = B.vec(a + "q_norm.weight", hd); L.k_norm = B.vec(a + "k_norm.weight", hd); break;
      case QkNorm::FullBeforeRope: L.q_norm = B.vec(a + "q_norm.weight", qd); L.k_norm = B.vec(a + "k_norm.weight", kd); break;
      case QkNorm::PerHeadAfterRope: L.q_norm = B.vec(a + "query_layernorm.weight", hd); L.k_norm = B.vec(a + "key_layernorm.weight", hd); break;
      case QkNorm::None: break;
    }
    if (!ls.moe) {
      L.gate = B.linear(p + "mlp.gate_proj", S.intermediate, D);
      L.up = B.linear(p + "mlp.up_proj", S.intermediate, D);
      L.down = B.linear(p + "mlp.down_proj", D, S.intermediate);
      continue;
    }
    // MoE: mixtral's hub layout uses block_sparse_moe.{gate, experts.e.w1/w3/w2}; the others mlp.*.
    std::string m = p + "mlp";
    if (B.has(p + "block_sparse_moe.gate.weight")) m = p + "block_sparse_moe";
    const int64_t E = ls.num_experts, I = ls.expert_inter;
    if (B.has(m + ".gate.wg.weight")) L.router = B.linear(m + ".gate.wg", E, D);
    else if (B.has(m + ".router.weight")) L.router = B.linear(m + ".router", E, D);
    else L.router = B.linear(m + ".gate", E, D);
    L.experts.resize(size_t(E));
    const std::string x = m + ".experts.";
    for (int64_t e = 0; e < E; ++e) {
      ExpertWeights& ew = L.experts[size_t(e)];
      const std::string pe = x + std::to_string(e) + ".";
      if (B.has(x + "gate_up_proj")) {          // transformers-5 fused layout: [E, 2I, D] and [E, D, I]
        ew.gate = B.stacked(x + "gate_up_proj", E, 2 * I, D, e, 0, I);
        ew.up = B.stacked(x + "gate_up_proj", E, 2 * I, D, e, I, I);
        ew.down = B.stacked(x + "down_proj", E, D, I, e, 0, D);
      } else if (B.has(x + "gate_proj")) {      // stacked but unfused: [E, I, D] x2, [E, D, I]
        ew.gate = B.stacked(x + "gate_proj", E, I, D, e, 0, I);
        ew.up = B.stacked(x + "up_proj", E, I, D, e, 0, I);
        ew.down = B.stacked(x + "down_proj", E, D, I, e, 0, D);
      } else if (B.has(pe + "w1.weight")) {     // mixtral hub names: w1 = gate, w3 = up, w2 = down
        ew.gate = B.linear(pe + "w1", I, D); ew.up = B.linear(pe + "w3", I, D); ew.down = B.linear(pe + "w2", D, I);
      } else {
        ew.gate = B.linear(pe + "gate_proj", I, D); ew.up = B.linear(pe + "up_proj", I, D); ew.down = B.linear(pe + "down_proj", D, I);
      }
    }
    if (ls.shared_inter > 0) {
      const std::string sh = m + (S.shared == SharedExpert::SigmoidGated ? ".shared_expert." : ".shared_mlp.");
      L.sh_gate = B.linear(sh + "gate_proj", ls.shared_inter, D);
      L.sh_up = B.linear(sh + "up_proj", ls.shared_inter, D);
      L.sh_down = B.linear(sh + "down_proj", D, ls.shared_inter);
      if (S.shared == SharedExpert::SigmoidGated) L.sh_expert_gate = B.linear(m + ".shared_expert_gate", 1, D);
    }
  }
  // Sizes for info(): every parameter, those a token touches, and the bulk dtype.
  std::map<DType, int64_t> by_dtype;
  // (numel() of a quantized tensor is its logical element count, so parameter counts do not change with bits)
  for (auto& [n, t] : store_->all()) { params_total_ += t.numel(); weight_bytes_ += int64_t(t.nbytes); by_dtype[t.dtype] += t.numel(); }
  params_active_ = params_total_;
  for (auto& ls : S.layers)
    if (ls.moe) params_active_ -= int64_t(ls.num_experts - ls.top_k) * 3 * ls.expert_inter * D;
  int64_t best = -1;
  for (auto& [dt, b] : by_dtype) if (b > best) { best = b; bulk_dtype_ = dt; }
  inv_freq_.resize(size_t(hd / 2));
  rope_scaling_ = rope_inv_freq(S.rope, int(hd), S.max_position, S.max_position, inv_freq_.data());
}

void Model::init_cache(KvCache& kv, int64_t ctx) const {
  kv.init(spec_.num_kv_slots, ctx, int64_t(spec_.num_kv_heads) * spec_.head_dim, spec_.head_dim, kv_int8_);
}

void Model::init_scratch(Scratch& s, int64_t max_t, int64_t ctx) const {
  const ModelSpec& S = spec_;
  const int64_t D = S.hidden, hd = S.head_dim, qd = S.num_heads * hd, kd = S.num_kv_heads * hd;
  int64_t inter = S.intermediate;
  for (auto& l : S.layers) inter = std::max({inter, l.expert_inter, l.shared_inter});
  const int64_t E = std::max(1, S.max_experts()), K = std::max(1, S.max_top_k());
  s.max_t = max_t;
  s.x.assign(size_t(max_t * D), 0); s.h.assign(size_t(max_t * D), 0);
  s.q.assign(size_t(max_t * qd), 0); s.k.assign(size_t(max_t * kd), 0); s.v.assign(size_t(max_t * kd), 0);
  s.att.assign(size_t(max_t * qd), 0); s.mlp_out.assign(size_t(max_t * D), 0);
  s.gate.assign(size_t(max_t * inter), 0); s.up.assign(size_t(max_t * inter), 0);
  s.router.assign(size_t(max_t * E), 0); s.probs.assign(size_t(E), 0);
  s.rw.assign(size_t(max_t * K), 0); s.ridx.assign(size_t(max_t * K), 0);
  s.counts.assign(size_t(E), 0); s.offsets.assign(size_t(E + 1), 0);
  s.slot_tok.assign(size_t(max_t * K), 0); s.slot_w.assign(size_t(max_t * K), 0);
  s.gather.assign(size_t(max_t * D), 0); s.gout.assign(size_t(max_t * D), 0);
  s.cos.assign(size_t(max_t * hd / 2), 0); s.sin.assign(size_t(max_t * hd / 2), 0); s.inv_freq.assign(size_t(hd / 2), 0);
  s.scores.assign(size_t(pool_->size() * ctx), 0);
  s.shg.assign(size_t(max_t), 0); s.last.assign(size_t(D), 0);
}

// SwiGLU MLP on M rows: out[M, D] (+)= (silu(h·Wg^T) * (h·Wu^T)) · Wd^T
void Model::swiglu_mlp(const Linear& g, const Linear& u, const Linear& d, Scratch& s, const float* h, int64_t ldh, float* out,
                       int64_t M, bool accumulate) {
  const int64_t I = g.out;
  matmul(*pool_, s.gate.data(), I, h, ldh, g.w, g.dtype, M, I, g.in);
  matmul(*pool_, s.up.data(), I, h, ldh, u.w, u.dtype, M, I, u.in);
  swiglu_forward(s.gate.data(), s.gate.data(), s.up.data(), M, I);
  matmul(*pool_, out, d.out, s.gate.data(), I, d.w, d.dtype, M, d.out, I, accumulate);
}

void Model::mlp_dense(const LayerWeights& L, Scratch& s, const float* h, float* out, int64_t T) {
  swiglu_mlp(L.gate, L.up, L.down, s, h, spec_.hidden, out, T, false);
}

// Sparse MoE block. Tokens are grouped by expert so each expert's weights are streamed once per batch:
//   route: idx, w [T, k];  for each expert e with tokens S_e: Y = SwiGLU_e(h[S_e]) (one matmul with M = |S_e|);
//   out[t] += w[t, e] · Y[t]   (+ shared MLP, sigmoid-gated for qwen2_moe)
void Model::moe_block(const LayerSpec& ls, const LayerWeights& L, Scratch& s, const float* h, float* out, int64_t T, int layer,
                      ActivationStore* acts) {
  const int64_t D = spec_.hidden;
  const int E = ls.num_experts, K = ls.top_k;
  matmul(*pool_, s.router.data(), E, h, D, L.router.w, L.router.dtype, T, E, D);
  moe_route_forward(s.router.data(), T, E, K, ls.renorm_topk, s.ridx.data(), s.rw.data(), s.probs.data());
  if (acts) {
    acts->save("L" + std::to_string(layer) + ".router_logits", s.router.data(), T * E);
    acts->save("L" + std::to_string(layer) + ".route_w", s.rw.data(), T * K);
  }
  // counting sort of (token, slot) pairs by expert, stable in token order
  std::fill(s.counts.begin(), s.counts.begin() + E, 0);
  for (int64_t i = 0; i < T * K; ++i) s.counts[size_t(s.ridx[size_t(i)])]++;
  s.offsets[0] = 0;
  for (int e = 0; e < E; ++e) s.offsets[size_t(e + 1)] = s.offsets[size_t(e)] + s.counts[size_t(e)];
  std::fill(s.counts.begin(), s.counts.begin() + E, 0);
  for (int64_t i = 0; i < T * K; ++i) {
    int e = s.ridx[size_t(i)];
    int32_t pos = s.offsets[size_t(e)] + s.counts[size_t(e)]++;
    s.slot_tok[size_t(pos)] = int32_t(i / K); s.slot_w[size_t(pos)] = s.rw[size_t(i)];
  }
  std::fill(out, out + T * D, 0.0f);
  for (int e = 0; e < E; ++e) {
    const int64_t m = s.counts[size_t(e)], o0 = s.offsets[size_t(e)];
    if (m == 0) continue;
    for (int64_t r = 0; r < m; ++r) std::copy(h + s.slot_tok[size_t(o0 + r)] * D, h + (s.slot_tok[size_t(o0 + r)] + 1) * D, s.gather.data() + r * D);
    const ExpertWeights& ew = L.experts[size_t(e)];
    swiglu_mlp(ew.gate, ew.up, ew.down, s, s.gather.data(), D, s.gout.data(), m, false);
    for (int64_t r = 0; r < m; ++r) {
      float w = s.slot_w[size_t(o0 + r)];
      float* dst = out + s.slot_tok[size_t(o0 + r)] * D; const float* src = s.gout.data() + r * D;
      for (int64_t i = 0; i < D; ++i) dst[i] += w * src[i];
    }
  }
  if (L.sh_gate.present()) {
    swiglu_mlp(L.sh_gate, L.sh_up, L.sh_down, s, h, D, s.gout.data(), T, false);
    if (L.sh_expert_gate.present()) {
      matmul(*pool_, s.shg.data(), 1, h, D, L.sh_expert_gate.w, L.sh_expert_gate.dtype, T, 1, D);
      for (int64_t t = 0; t < T; ++t) {
        float g = 1.0f / (1.0f + std::exp(-s.shg[size_t(t)]));
        for (int64_t i = 0; i < D; ++i) out[t * D + i] += g * s.gout[size_t(t * D + i)];
      }
    } else {
      residual_forward(out, s.gout.data(), T * D);
    }
  }
}

void Model::forward(const int32_t* ids, int64_t T, int64_t pos0, KvCache& kv, Scratch& s, float* logits, bool all_logits,
                    ActivationStore* acts) {
  if (closed_) throw std::runtime_error("the model was closed");
  const ModelSpec& S = spec_;
  if (T <= 0) throw std::runtime_error("forward: no tokens");
  if (T > s.max_t) throw std::runtime_error("forward: " + std::to_string(T) + " tokens exceed the scratch size " + std::to_string(s.max_t));
  if (pos0 + T > kv.ctx) throw std::runtime_error("prompt has " + std::to_string(pos0 + T) + " tokens but the context is " + std::to_string(kv.ctx));
  const int64_t D = S.hidden, V = S.vocab, hd = S.head_dim, Hq = S.num_heads, Hkv = S.num_kv_heads;
  const int64_t qd = Hq * hd, kd = Hkv * hd;
  const float eps = float(S.rms_eps);
  ThreadPool& pool = *pool_;
  auto key = [&](int l, const char* n) { return "L" + std::to_string(l) + "." + n; };

  // RoPE tables for these positions (dynamic NTK recomputes inv_freq once the sequence outgrows max_position).
  const float* inv = inv_freq_.data();
  float rscale = rope_scaling_;
  if (S.rope.type == "dynamic" && pos0 + T > S.max_position) {
    rscale = rope_inv_freq(S.rope, int(hd), S.max_position, pos0 + T, s.inv_freq.data());
    inv = s.inv_freq.data();
  }
  rope_tables(inv, rscale, int(hd), pos0, T, s.cos.data(), s.sin.data());

  // x[T, D] = embed[ids]
  float* x = s.x.data();
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V) throw std::runtime_error("token id " + std::to_string(ids[t]) + " is out of range [0, " + std::to_string(V) + ")");
    row_to_f32(x + t * D, embed_.w, embed_.dtype, ids[t], D);
  }
  const float scale = 1.0f / std::sqrt(float(hd));
  for (int l = 0; l < S.num_layers; ++l) {
    const LayerSpec& ls = S.layers[size_t(l)];
    const LayerWeights& L = layers_[size_t(l)];
    if (acts) acts->save(key(l, "x_in"), x, T * D);
    // ---- attention ----
    rmsnorm_forward(s.h.data(), x, L.in_norm.data(), T, D, eps);
    linear_forward(pool, s.q.data(), s.h.data(), L.q, T);
    if (ls.has_kv) { linear_forward(pool, s.k.data(), s.h.data(), L.k, T); linear_forward(pool, s.v.data(), s.h.data(), L.v, T); }
    switch (S.qk_norm) {
      case QkNorm::PerHeadBeforeRope:
        rmsnorm_forward(s.q.data(), s.q.data(), L.q_norm.data(), T * Hq, hd, eps);
        if (ls.has_kv) rmsnorm_forward(s.k.data(), s.k.data(), L.k_norm.data(), T * Hkv, hd, eps);
        break;
      case QkNorm::FullBeforeRope:
        rmsnorm_forward(s.q.data(), s.q.data(), L.q_norm.data(), T, qd, eps);
        if (ls.has_kv) rmsnorm_forward(s.k.data(), s.k.data(), L.k_norm.data(), T, kd, eps);
        break;
      default: break;
    }
    if (S.clip_qkv > 0) {  // olmoe: q, k after their norms and v, clamped before RoPE
      const float c = float(S.clip_qkv);
      for (int64_t i = 0; i < T * qd; ++i) s.q[size_t(i)] = std::clamp(s.q[size_t(i)], -c, c);
      if (ls.has_kv) for (int64_t i = 0; i < T * kd; ++i) {
        s.k[size_t(i)] = std::clamp(s.k[size_t(i)], -c, c); s.v[size_t(i)] = std::clamp(s.v[size_t(i)], -c, c);
      }
    }
    rope_forward(s.q.data(), T, int(Hq), int(hd), qd, s.cos.data(), s.sin.data());
    if (ls.has_kv) rope_forward(s.k.data(), T, int(Hkv), int(hd), kd, s.cos.data(), s.sin.data());
    if (S.qk_norm == QkNorm::PerHeadAfterRope) {
      // k_n = g_k ⊙ rope(k)/rms(k), so q·k_n = (q ⊙ g_k)·(rope(k)/rms(k)). The cache keeps the gain-free
      // rope(k)/rms(k) (rotation preserves rms), and each layer folds its own key gain g_k into q. This is what
      // lets CLA layers share one cache entry: they reuse the raw k/v of their group's first layer, rotate them
      // identically, and differ only in g_k.
      rmsnorm_forward(s.q.data(), s.q.data(), L.q_norm.data(), T * Hq, hd, eps);
      for (int64_t r = 0; r < T * Hq; ++r) for (int64_t i = 0; i < hd; ++i) s.q[size_t(r * hd + i)] *= L.k_norm[size_t(i)];
      if (ls.has_kv) rmsnorm_forward(s.k.data(), s.k.data(), nullptr, T * Hkv, hd, eps);
    }
    if (acts) { acts->save(key(l, "q"), s.q.data(), T * qd); }
    if (!kv.int8) {
      float* Kc = kv.k[size_t(ls.kv_slot)].data(); float* Vc = kv.v[size_t(ls.kv_slot)].data();
      if (ls.has_kv) {
        std::copy(s.k.begin(), s.k.begin() + T * kd, Kc + pos0 * kd);
        std::copy(s.v.begin(), s.v.begin() + T * kd, Vc + pos0 * kd);
      }
      attention_forward(pool, s.att.data(), s.q.data(), qd, Kc, Vc, pos0, T, int(Hq), int(Hkv), int(hd), scale, s.scores.data(), kv.ctx);
    } else {
      const size_t sl = size_t(ls.kv_slot);
      if (ls.has_kv) {
        kv_quantize_rows(kv.k8[sl].data() + pos0 * kd, kv.ks[sl].data() + pos0 * Hkv, s.k.data(), T * Hkv, int(hd));
        kv_quantize_rows(kv.v8[sl].data() + pos0 * kd, kv.vs[sl].data() + pos0 * Hkv, s.v.data(), T * Hkv, int(hd));
      }
      attention_forward_kv8(pool, s.att.data(), s.q.data(), qd, kv.k8[sl].data(), kv.ks[sl].data(), kv.v8[sl].data(), kv.vs[sl].data(),
                            pos0, T, int(Hq), int(Hkv), int(hd), scale, s.scores.data(), kv.ctx);
    }
    if (acts) acts->save(key(l, "att_out"), s.att.data(), T * qd);
    linear_forward(pool, s.mlp_out.data(), s.att.data(), L.o, T);
    residual_forward(x, s.mlp_out.data(), T * D);
    // ---- MLP / MoE ----
    rmsnorm_forward(s.h.data(), x, L.post_norm.data(), T, D, eps);
    if (acts) acts->save(key(l, "mlp_in"), s.h.data(), T * D);
    if (ls.moe) moe_block(ls, L, s, s.h.data(), s.mlp_out.data(), T, l, acts);
    else mlp_dense(L, s, s.h.data(), s.mlp_out.data(), T);
    residual_forward(x, s.mlp_out.data(), T * D);
  }
  if (acts) acts->save("final_norm_in", x, T * D);
  if (all_logits) {
    rmsnorm_forward(s.h.data(), x, final_norm_.data(), T, D, eps);
    matmul(pool, logits, V, s.h.data(), D, lm_head_.w, lm_head_.dtype, T, V, D);
  } else {
    rmsnorm_forward(s.last.data(), x + (T - 1) * D, final_norm_.data(), 1, D, eps);
    matmul(pool, logits, V, s.last.data(), D, lm_head_.w, lm_head_.dtype, 1, V, D);
  }
}

void Model::close() {
  closed_ = true;
  layers_.clear();
  store_.reset();
}

}  // namespace moe
