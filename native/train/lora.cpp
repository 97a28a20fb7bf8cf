#include "train/lora.h"
#include <algorithm>
#include <random>
#include <stdexcept>
#include "format/config.h"

namespace moe {

namespace {
bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }
bool has_suffix(const std::vector<std::string>& v, const std::string& suffix, const std::string& needle) {
  for (auto& s : v)
    if (s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0 && s.find(needle) != std::string::npos) return true;
  return false;
}
}  // namespace

Adapter make_adapter(const ModelSpec& S, const LoraConfig& c) {
  if (c.r <= 0) throw std::invalid_argument("LoRA rank r must be positive (got " + std::to_string(c.r) + ")");
  Adapter a;
  a.config = c;
  const float s = c.scale();
  const int64_t D = S.hidden, hd = S.head_dim, qd = int64_t(S.num_heads) * hd, kd = int64_t(S.num_kv_heads) * hd, r = c.r;
  const auto& tm = c.target_modules;
  const auto& tp = c.target_parameters;
  const bool fused_gu = has(tp, "mlp.experts.gate_up_proj"), fused_down = has(tp, "mlp.experts.down_proj");
  auto site = [&](const char* m) { return has(tm, m); };
  // shared experts are reached through target_modules (qwen2_moe) or 2-D target_parameters (hunyuan's shared_mlp)
  auto shared_site = [&](const char* m) { return has(tm, m) || has_suffix(tp, std::string(".") + m + ".weight", "shared"); };
  a.layers.resize(size_t(S.num_layers));
  for (int l = 0; l < S.num_layers; ++l) {
    const LayerSpec& ls = S.layers[size_t(l)];
    LayerLora& L = a.layers[size_t(l)];
    if (site("q_proj")) L.q.init(r, D, qd, s);
    if (site("k_proj") && ls.has_kv) L.k.init(r, D, kd, s);
    if (site("v_proj") && ls.has_kv) L.v.init(r, D, kd, s);
    if (site("o_proj")) L.o.init(r, qd, D, s);
    if (!ls.moe) {
      if (site("gate_proj")) L.gate.init(r, D, S.intermediate, s);
      if (site("up_proj")) L.up.init(r, D, S.intermediate, s);
      if (site("down_proj")) L.down.init(r, S.intermediate, D, s);
      continue;
    }
    const int64_t F = ls.expert_inter;
    const bool separate = !fused_gu && !fused_down && (site("gate_proj") || site("up_proj") || site("down_proj"));
    if (fused_gu || fused_down || separate) {
      L.experts.resize(size_t(ls.num_experts));
      for (auto& e : L.experts) {
        if (fused_gu) e.gate_up.init(r, D, 2 * F, s);
        if (separate && site("gate_proj")) e.gate.init(r, D, F, s);
        if (separate && site("up_proj")) e.up.init(r, D, F, s);
        if (fused_down || (separate && site("down_proj"))) e.down.init(r, F, D, s);
      }
    }
    if (ls.shared_inter > 0) {
      if (shared_site("gate_proj")) L.sh_gate.init(r, D, ls.shared_inter, s);
      if (shared_site("up_proj")) L.sh_up.init(r, D, ls.shared_inter, s);
      if (shared_site("down_proj")) L.sh_down.init(r, ls.shared_inter, D, s);
    }
  }
  return a;
}

Adapter zeros_like(const Adapter& a) {
  Adapter g = a;
  g.for_each([](const std::string&, LoraPair& p) {
    std::fill(p.A.begin(), p.A.end(), 0.0f); std::fill(p.B.begin(), p.B.end(), 0.0f);
  });
  return g;
}

}  // namespace moe
