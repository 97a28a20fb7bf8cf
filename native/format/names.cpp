#include "format/names.h"
#include <stdexcept>

namespace moe {

// One row per family: how its hub checkpoints spell what differs between families. Everything else (attention,
// norms, dense MLP, embedding, the fused form) is spelled alike by every family transformers writes.
struct TensorNames::Family {
  const char* model_type;
  const char* block;        // the MoE block under a layer, hub form
  const char* router;       // under the block
  const char* expert[3];    // one routed expert's gate, up, down (hub form)
  const char* shared;       // the shared MLP under the block (nullptr: none)
  const char* shared_gate;  // its sigmoid gate under the block (nullptr: ungated)
  const char* q_norm;       // under self_attn
  const char* k_norm;
};

namespace {

using Family = TensorNames::Family;

// (classic transformers names; Hunyuan's from Tencent's modeling_hunyuan.py: mlp.gate.wg, shared_mlp,
// query_layernorm / key_layernorm)
const Family kFamilies[] = {
    {"llama", "mlp", "gate", {"gate_proj", "up_proj", "down_proj"}, nullptr, nullptr, "q_norm", "k_norm"},
    {"qwen2", "mlp", "gate", {"gate_proj", "up_proj", "down_proj"}, nullptr, nullptr, "q_norm", "k_norm"},
    {"qwen3", "mlp", "gate", {"gate_proj", "up_proj", "down_proj"}, nullptr, nullptr, "q_norm", "k_norm"},
    {"mixtral", "block_sparse_moe", "gate", {"w1", "w3", "w2"}, nullptr, nullptr, "q_norm", "k_norm"},
    {"qwen2_moe", "mlp", "gate", {"gate_proj", "up_proj", "down_proj"}, "shared_expert", "shared_expert_gate", "q_norm", "k_norm"},
    {"qwen3_moe", "mlp", "gate", {"gate_proj", "up_proj", "down_proj"}, nullptr, nullptr, "q_norm", "k_norm"},
    {"olmoe", "mlp", "gate", {"gate_proj", "up_proj", "down_proj"}, nullptr, nullptr, "q_norm", "k_norm"},
    {"hunyuan_v1_moe", "mlp", "gate.wg", {"gate_proj", "up_proj", "down_proj"}, "shared_mlp", nullptr, "query_layernorm", "key_layernorm"},
    {"hunyuan", "mlp", "gate.wg", {"gate_proj", "up_proj", "down_proj"}, "shared_mlp", nullptr, "query_layernorm", "key_layernorm"},
};

// transformers 5 keeps every family's MoE block as "mlp" and names the stacked expert parameters alike.
const char* kFusedBlock = "mlp";
const char* kFusedGateUp = "experts.gate_up_proj";
const char* kFusedDown = "experts.down_proj";

bool is_linear(HubRole r) {
  switch (r) {
    case HubRole::LmHead: case HubRole::Q: case HubRole::K: case HubRole::V: case HubRole::O:
    case HubRole::MlpGate: case HubRole::MlpUp: case HubRole::MlpDown: case HubRole::Router:
    case HubRole::ExpertGate: case HubRole::ExpertUp: case HubRole::ExpertDown:
    case HubRole::SharedGate: case HubRole::SharedUp: case HubRole::SharedDown: case HubRole::SharedExpertGate:
      return true;
    default:
      return false;
  }
}

// A canonical non-negative decimal below `limit` ("07" and "+7" are not names transformers writes).
int parse_index(const std::string& s, size_t b, size_t e, int limit) {
  if (b >= e || e - b > 9 || (s[b] == '0' && e - b > 1)) return -1;
  int v = 0;
  for (size_t k = b; k < e; ++k) {
    if (s[k] < '0' || s[k] > '9') return -1;
    v = v * 10 + (s[k] - '0');
  }
  return v < limit ? v : -1;
}

const char* kLayerPrefix = "model.layers.";

}  // namespace

const char* role_name(HubRole r) {
  switch (r) {
    case HubRole::Unknown: return "unknown";
    case HubRole::Embedding: return "embedding";
    case HubRole::FinalNorm: return "final_norm";
    case HubRole::LmHead: return "lm_head";
    case HubRole::InputNorm: return "input_norm";
    case HubRole::PostAttnNorm: return "post_attention_norm";
    case HubRole::Q: return "q_proj";
    case HubRole::K: return "k_proj";
    case HubRole::V: return "v_proj";
    case HubRole::O: return "o_proj";
    case HubRole::QNorm: return "q_norm";
    case HubRole::KNorm: return "k_norm";
    case HubRole::MlpGate: return "gate_proj";
    case HubRole::MlpUp: return "up_proj";
    case HubRole::MlpDown: return "down_proj";
    case HubRole::Router: return "router";
    case HubRole::ExpertGate: return "expert.gate_proj";
    case HubRole::ExpertUp: return "expert.up_proj";
    case HubRole::ExpertDown: return "expert.down_proj";
    case HubRole::ExpertsGateUp: return "experts.gate_up_proj";
    case HubRole::ExpertsGate: return "experts.gate_proj";
    case HubRole::ExpertsUp: return "experts.up_proj";
    case HubRole::ExpertsDown: return "experts.down_proj";
    case HubRole::SharedGate: return "shared.gate_proj";
    case HubRole::SharedUp: return "shared.up_proj";
    case HubRole::SharedDown: return "shared.down_proj";
    case HubRole::SharedExpertGate: return "shared_expert_gate";
  }
  return "unknown";
}

TensorNames::TensorNames(const ModelSpec& spec) : S_(spec), fam_(nullptr) {
  for (const Family& f : kFamilies)
    if (S_.model_type == f.model_type) fam_ = &f;
  if (!fam_) throw std::invalid_argument("no tensor names for model_type \"" + S_.model_type + "\"");
  layer_names_.resize(S_.layers.size());
  for (int i = 0; i < int(S_.layers.size()); ++i) {
    auto& m = layer_names_[size_t(i)];
    auto put = [&](HubRole role, ExpertForm form) {
      const std::string rel = layer_rel(role, i, form);
      if (rel.empty()) return;
      TensorRef r{role, i, -1, false, form};
      const bool weight = rel.size() > 7 && rel.compare(rel.size() - 7, 7, ".weight") == 0;
      m.emplace(rel, r);  // a name two forms share (mlp.gate.weight) keeps the first: PerExpert
      if (weight && is_linear(role)) { r.bias = true; m.emplace(rel.substr(0, rel.size() - 7) + ".bias", r); }
    };
    for (HubRole r : {HubRole::InputNorm, HubRole::PostAttnNorm, HubRole::Q, HubRole::K, HubRole::V, HubRole::O,
                         HubRole::QNorm, HubRole::KNorm, HubRole::MlpGate, HubRole::MlpUp, HubRole::MlpDown})
      put(r, ExpertForm::PerExpert);
    for (ExpertForm f : {ExpertForm::PerExpert, ExpertForm::Fused, ExpertForm::Stacked})
      for (HubRole r : {HubRole::Router, HubRole::ExpertsGateUp, HubRole::ExpertsGate, HubRole::ExpertsUp, HubRole::ExpertsDown,
                           HubRole::SharedGate, HubRole::SharedUp, HubRole::SharedDown, HubRole::SharedExpertGate})
        put(r, f);
  }
}

// A layer's tensor relative to "model.layers.N.", "" when that layer has none in that form.
std::string TensorNames::layer_rel(HubRole role, int layer, ExpertForm form) const {
  if (layer < 0 || size_t(layer) >= S_.layers.size()) return "";
  const LayerSpec& ls = S_.layers[size_t(layer)];
  const std::string a = "self_attn.";
  switch (role) {
    case HubRole::InputNorm: return "input_layernorm.weight";
    case HubRole::PostAttnNorm: return "post_attention_layernorm.weight";
    case HubRole::Q: return a + "q_proj.weight";
    case HubRole::K: return ls.has_kv ? a + "k_proj.weight" : "";   // CLA layers reuse another layer's k/v
    case HubRole::V: return ls.has_kv ? a + "v_proj.weight" : "";
    case HubRole::O: return a + "o_proj.weight";
    case HubRole::QNorm: return S_.qk_norm == QkNorm::None ? "" : a + fam_->q_norm + ".weight";
    case HubRole::KNorm: return S_.qk_norm == QkNorm::None ? "" : a + fam_->k_norm + ".weight";
    case HubRole::MlpGate: return ls.moe ? "" : "mlp.gate_proj.weight";
    case HubRole::MlpUp: return ls.moe ? "" : "mlp.up_proj.weight";
    case HubRole::MlpDown: return ls.moe ? "" : "mlp.down_proj.weight";
    default: break;
  }
  if (!ls.moe) return "";
  const std::string b = std::string(form == ExpertForm::PerExpert ? fam_->block : kFusedBlock) + ".";
  const bool shared = fam_->shared && S_.shared != SharedExpert::None && ls.shared_inter > 0;
  switch (role) {
    case HubRole::Router: return b + fam_->router + ".weight";
    case HubRole::ExpertsGateUp: return form == ExpertForm::Fused ? b + kFusedGateUp : "";
    case HubRole::ExpertsGate: return form == ExpertForm::Stacked ? b + "experts.gate_proj" : "";
    case HubRole::ExpertsUp: return form == ExpertForm::Stacked ? b + "experts.up_proj" : "";
    case HubRole::ExpertsDown: return form != ExpertForm::PerExpert ? b + kFusedDown : "";
    case HubRole::SharedGate: return shared ? b + fam_->shared + ".gate_proj.weight" : "";
    case HubRole::SharedUp: return shared ? b + fam_->shared + ".up_proj.weight" : "";
    case HubRole::SharedDown: return shared ? b + fam_->shared + ".down_proj.weight" : "";
    case HubRole::SharedExpertGate:
      return shared && fam_->shared_gate && S_.shared == SharedExpert::SigmoidGated ? b + fam_->shared_gate + ".weight" : "";
    default: return "";
  }
}

std::string TensorNames::name(HubRole role, int layer, int expert, ExpertForm form, bool bias) const {
  std::string n;
  switch (role) {
    case HubRole::Unknown: return "";
    case HubRole::Embedding: return bias ? "" : "model.embed_tokens.weight";
    case HubRole::FinalNorm: return bias ? "" : "model.norm.weight";
    case HubRole::LmHead: n = "lm_head.weight"; break;
    case HubRole::ExpertGate: case HubRole::ExpertUp: case HubRole::ExpertDown: {
      if (form != ExpertForm::PerExpert || layer < 0 || size_t(layer) >= S_.layers.size()) return "";
      const LayerSpec& ls = S_.layers[size_t(layer)];
      if (!ls.moe || expert < 0 || expert >= ls.num_experts) return "";
      const int k = role == HubRole::ExpertGate ? 0 : role == HubRole::ExpertUp ? 1 : 2;
      n = kLayerPrefix + std::to_string(layer) + "." + fam_->block + ".experts." + std::to_string(expert) + "." + fam_->expert[k] + ".weight";
      break;
    }
    default: {
      const std::string rel = layer_rel(role, layer, form);
      if (rel.empty()) return "";
      n = kLayerPrefix + std::to_string(layer) + "." + rel;
    }
  }
  if (!bias) return n;
  if (!is_linear(role) || n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) return "";
  return n.substr(0, n.size() - 7) + ".bias";
}

TensorRef TensorNames::classify(const std::string& n) const {
  TensorRef r;
  if (n == "model.embed_tokens.weight") { r.role = HubRole::Embedding; return r; }
  if (n == "model.norm.weight") { r.role = HubRole::FinalNorm; return r; }
  if (n == "lm_head.weight" || n == "lm_head.bias") { r.role = HubRole::LmHead; r.bias = n.back() == 's'; return r; }
  const size_t lp = std::char_traits<char>::length(kLayerPrefix);
  if (n.compare(0, lp, kLayerPrefix) != 0) return r;
  const size_t dot = n.find('.', lp);
  if (dot == std::string::npos) return r;
  const int layer = parse_index(n, lp, dot, int(S_.layers.size()));
  if (layer < 0) return r;
  const std::string rest = n.substr(dot + 1);
  const auto& m = layer_names_[size_t(layer)];
  if (auto it = m.find(rest); it != m.end()) return it->second;
  // PerExpert: <block>.experts.E.<proj>.weight|bias
  const LayerSpec& ls = S_.layers[size_t(layer)];
  const std::string x = std::string(fam_->block) + ".experts.";
  if (!ls.moe || rest.compare(0, x.size(), x) != 0) return r;
  const size_t ed = rest.find('.', x.size());
  if (ed == std::string::npos) return r;
  const int e = parse_index(rest, x.size(), ed, ls.num_experts);
  if (e < 0) return r;
  const std::string tail = rest.substr(ed + 1);
  static const HubRole roles[3] = {HubRole::ExpertGate, HubRole::ExpertUp, HubRole::ExpertDown};
  for (int k = 0; k < 3; ++k) {
    const std::string p = fam_->expert[k];
    if (tail == p + ".weight" || tail == p + ".bias") return TensorRef{roles[k], layer, e, tail.back() == 's', ExpertForm::PerExpert};
  }
  return r;
}

ExpertForm TensorNames::expert_form(int layer, const std::function<bool(const std::string&)>& has) const {
  if (has(name(HubRole::ExpertsGateUp, layer, -1, ExpertForm::Fused))) return ExpertForm::Fused;
  const std::string g = name(HubRole::ExpertsGate, layer, -1, ExpertForm::Stacked);
  if (!g.empty() && has(g)) return ExpertForm::Stacked;
  return ExpertForm::PerExpert;
}

std::vector<TensorEntry> TensorNames::expected(const std::vector<ExpertForm>& forms) const {
  std::vector<TensorEntry> out;
  auto add = [&](HubRole role, int layer, int expert, ExpertForm form, bool optional) {
    const std::string n = name(role, layer, expert, form);
    if (n.empty()) return;
    out.push_back({n, TensorRef{role, layer, expert, false, form}, optional});
    const std::string b = name(role, layer, expert, form, true);
    if (!b.empty()) out.push_back({b, TensorRef{role, layer, expert, true, form}, true});
  };
  add(HubRole::Embedding, -1, -1, ExpertForm::PerExpert, false);
  for (int i = 0; i < int(S_.layers.size()); ++i) {
    const ExpertForm f = size_t(i) < forms.size() ? forms[size_t(i)] : ExpertForm::PerExpert;
    for (HubRole r : {HubRole::InputNorm, HubRole::PostAttnNorm, HubRole::Q, HubRole::K, HubRole::V, HubRole::O,
                         HubRole::QNorm, HubRole::KNorm, HubRole::MlpGate, HubRole::MlpUp, HubRole::MlpDown})
      add(r, i, -1, ExpertForm::PerExpert, false);  // (the form only concerns the MoE block)
    add(HubRole::Router, i, -1, f, false);
    const LayerSpec& ls = S_.layers[size_t(i)];
    if (ls.moe && f == ExpertForm::PerExpert)
      for (int e = 0; e < ls.num_experts; ++e)
        for (HubRole r : {HubRole::ExpertGate, HubRole::ExpertUp, HubRole::ExpertDown}) add(r, i, e, f, false);
    for (HubRole r : {HubRole::ExpertsGateUp, HubRole::ExpertsGate, HubRole::ExpertsUp, HubRole::ExpertsDown,
                         HubRole::SharedGate, HubRole::SharedUp, HubRole::SharedDown, HubRole::SharedExpertGate})
      add(r, i, -1, f, false);
  }
  add(HubRole::FinalNorm, -1, -1, ExpertForm::PerExpert, false);
  add(HubRole::LmHead, -1, -1, ExpertForm::PerExpert, S_.tie_embeddings);  // a tied model may still store a copy
  return out;
}

std::vector<std::string> TensorNames::fused_expert_params() {
  return {std::string(kFusedBlock) + "." + kFusedGateUp, std::string(kFusedBlock) + "." + kFusedDown};
}

std::vector<TensorNames::ExpertSpelling> TensorNames::expert_spellings() const {
  std::vector<ExpertSpelling> out;
  auto add = [&](const Family& f) {
    ExpertSpelling s{f.block, {f.expert[0], f.expert[1], f.expert[2]}};
    for (auto& o : out)
      if (o.block == s.block && o.proj[0] == s.proj[0] && o.proj[1] == s.proj[1] && o.proj[2] == s.proj[2]) return;
    out.push_back(s);
  };
  add(*fam_);
  for (const Family& f : kFamilies) add(f);
  return out;
}

}  // namespace moe
