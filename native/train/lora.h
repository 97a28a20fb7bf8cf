// LoRA adapters as the engine holds them: one f32 (A, B) pair beside each adapted frozen weight W[out, in].
//
//   y = x·Wᵀ + s · (x·Aᵀ)·Bᵀ          A [r, in], B [out, r], s = lora_alpha / r  (use_rslora: lora_alpha / sqrt(r))
//
// Backward (W frozen), with u = x·Aᵀ [M, r] kept from the forward:
//   dB = s · dyᵀ·u        du = s · dy·B        dA = duᵀ·x        dx = dy·W + du·A
//
// Routed experts come in two layouts, as the checkpoints and peft have them:
//   fused    (transformers 5, peft target_parameters on mlp.experts.gate_up_proj [E, 2F, H] and down_proj [E, H, F]):
//            one pair on gate_up per expert — a single A_e [r, H] shared by the gate and up rows, B_e [2F, r] with the
//            gate rows first — and one pair on down;
//   separate (transformers 4 / Tencent's Hunyuan-Large code, per-expert nn.Linear): a pair on each of gate, up, down.
// Everything here is in the engine's own order (per expert, per site); native/io/adapter.* maps it to and from the
// tensor names and packings peft writes (lora_A [E·r, in] expert-major, lora_B [out, r·E] rank-major for fused experts).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct LoraPair {
  int64_t r = 0, in = 0, out = 0;
  float scale = 0;             // s
  uint32_t id = 0;             // the pair's index in Adapter::for_each order (the Trainer sets it; keys the dropout mask)
  std::vector<float> A, B;     // [r, in], [out, r] row-major
  bool present() const { return r > 0; }
  void init(int64_t r_, int64_t in_, int64_t out_, float scale_) {
    r = r_; in = in_; out = out_; scale = scale_;
    A.assign(size_t(r * in), 0.0f); B.assign(size_t(out * r), 0.0f);
  }
  int64_t numel() const { return r * (in + out); }
};

struct ExpertLora {
  LoraPair gate_up;            // fused layout: out = 2F, rows [0, F) gate, [F, 2F) up
  LoraPair gate, up;           // separate layout
  LoraPair down;
};

struct LayerLora {
  LoraPair q, k, v, o;               // attention (k/v absent on CLA layers that reuse another layer's cache)
  LoraPair gate, up, down;           // dense MLP
  std::vector<ExpertLora> experts;   // routed experts (empty: none adapted)
  LoraPair sh_gate, sh_up, sh_down;  // shared expert / shared MLP
};

struct LoraConfig {
  int64_t r = 0;
  double alpha = 0;
  bool use_rslora = false;
  double dropout = 0;                       // what the run trained with (peft's file says 0 for target_parameters)
  std::vector<std::string> target_modules;  // as peft lists them (q_proj, ...)
  std::vector<std::string> target_parameters;
  float scale() const;                      // alpha / r, or alpha / sqrt(r)
};

struct Adapter {
  LoraConfig config;
  std::vector<LayerLora> layers;
  int64_t numel() const;
  // Every pair in a fixed order (layer, then q k v o gate up down, experts in order, shared) — the order of the
  // optimizer's state and of checkpoints. fn(const std::string& site, LoraPair&).
  template <class F> void for_each(F&& fn);
};

struct ModelSpec;
// The pairs an adapter with this config has on a model (A and B zero): q/k/v/o and the dense/shared MLP's
// gate/up/down by peft's module names (target_modules), fused routed experts by target_parameters
// ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"), per-expert pairs when gate/up/down_proj are target_modules
// of a model whose experts are adapted module by module (Hunyuan-Large, transformers-4 checkpoints). CLA layers
// without k/v projections get no k/v pair.
Adapter make_adapter(const ModelSpec& spec, const LoraConfig& config);
// Same shapes, every value 0 (gradient accumulators).
Adapter zeros_like(const Adapter& a);

// ---- inline ----

inline float LoraConfig::scale() const {
  return float(use_rslora ? alpha / std::sqrt(double(r)) : alpha / double(r));
}

inline int64_t Adapter::numel() const {
  int64_t n = 0;
  for (auto& L : layers) {
    for (const LoraPair* p : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.sh_gate, &L.sh_up, &L.sh_down}) n += p->numel();
    for (auto& e : L.experts) for (const LoraPair* p : {&e.gate_up, &e.gate, &e.up, &e.down}) n += p->numel();
  }
  return n;
}

template <class F> void Adapter::for_each(F&& fn) {
  for (size_t l = 0; l < layers.size(); ++l) {
    LayerLora& L = layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    fn(p + "q", L.q); fn(p + "k", L.k); fn(p + "v", L.v); fn(p + "o", L.o);
    fn(p + "gate", L.gate); fn(p + "up", L.up); fn(p + "down", L.down);
    for (size_t e = 0; e < L.experts.size(); ++e) {
      const std::string x = p + "experts." + std::to_string(e) + ".";
      ExpertLora& E = L.experts[e];
      fn(x + "gate_up", E.gate_up); fn(x + "gate", E.gate); fn(x + "up", E.up); fn(x + "down", E.down);
    }
    fn(p + "shared.gate", L.sh_gate); fn(p + "shared.up", L.sh_up); fn(p + "shared.down", L.sh_down);
  }
}

}  // namespace moe
