#include "io/adapter.h"
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include "format/dtype.h"
#include "format/json.h"
#include "format/names.h"
#include "format/safetensors.h"
#ifdef _WIN32
#include <process.h>
#else
#include <cerrno>
#include <fcntl.h>
#include <unistd.h>
#endif

namespace fs = std::filesystem;

namespace moe {

namespace {

const char* kRoot = "base_model.model.";
const char* kSuffixA = ".lora_A.weight";
const char* kSuffixB = ".lora_B.weight";

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

bool any_match(const std::string& key, const std::vector<std::string>& ts) {
  for (auto& t : ts) if (peft_target_matches(key, t)) return true;
  return false;
}

// The module path peft's target_modules are matched against ("model.layers.0.self_attn.q_proj").
std::string module_path(const std::string& name) {
  const size_t n = std::strlen(kRoot);
  return name.compare(0, n, kRoot) == 0 ? name.substr(n) : name;
}

std::string last_component(const std::string& s) {
  const size_t p = s.rfind('.');
  return p == std::string::npos ? s : s.substr(p + 1);
}

}  // namespace

bool peft_target_matches(const std::string& key, const std::string& t) {
  return !t.empty() && (key == t || ends_with(key, "." + t));
}

// ---- the one table ----

std::vector<PeftModule> peft_modules(const ModelSpec& S, const std::vector<std::string>& target_parameters) {
  std::vector<PeftModule> out;
  // peft's module paths are the model's parameter names (format/names.h) less ".weight"; a fused parameter's module is
  // its parent, mlp.experts.
  const TensorNames N(S);
  using R = HubRole;
  auto module_of = [](const std::string& weight) { return weight.substr(0, weight.size() - std::strlen(".weight")); };
  auto parent_of = [](const std::string& param) { return param.substr(0, param.rfind('.')); };
  const int64_t D = S.hidden, hd = S.head_dim, qd = int64_t(S.num_heads) * hd, kd = int64_t(S.num_kv_heads) * hd;
  for (int i = 0; i < S.num_layers && size_t(i) < S.layers.size(); ++i) {
    const LayerSpec& ls = S.layers[size_t(i)];
    auto add = [&](LoraSite site, const std::string& path, const std::string& short_name, int64_t in, int64_t o,
                   int expert = -1, int experts = 0, const std::string& adapts = "", const std::vector<std::string>& aliases = {}) {
      PeftModule m;
      m.name = kRoot + path;
      for (auto& a : aliases) m.aliases.push_back(kRoot + a);
      m.adapts = adapts.empty() ? path + ".weight" : adapts;
      m.short_name = short_name;
      m.layer = i; m.site = site; m.expert = expert; m.experts = experts; m.in = in; m.out = o;
      out.push_back(std::move(m));
    };
    add(LoraSite::Q, module_of(N.name(R::Q, i)), "q_proj", D, qd);
    if (ls.has_kv) {
      add(LoraSite::K, module_of(N.name(R::K, i)), "k_proj", D, kd);
      add(LoraSite::V, module_of(N.name(R::V, i)), "v_proj", D, kd);
    }
    add(LoraSite::O, module_of(N.name(R::O, i)), "o_proj", qd, D);
    if (!ls.moe) {
      add(LoraSite::Gate, module_of(N.name(R::MlpGate, i)), "gate_proj", D, S.intermediate);
      add(LoraSite::Up, module_of(N.name(R::MlpUp, i)), "up_proj", D, S.intermediate);
      add(LoraSite::Down, module_of(N.name(R::MlpDown, i)), "down_proj", S.intermediate, D);
      continue;
    }
    const int E = ls.num_experts;
    const int64_t F = ls.expert_inter;
    // Fused experts (peft ParamWrapper): listed only when targeted, since the module name depends on the nesting.
    const std::string gu = N.name(R::ExpertsGateUp, i, -1, ExpertForm::Fused), dn = N.name(R::ExpertsDown, i, -1, ExpertForm::Fused);
    const bool tgu = any_match(gu, target_parameters), tdn = any_match(dn, target_parameters);
    if (tgu) add(LoraSite::ExpertsGateUp, parent_of(gu) + (tdn ? ".base_layer" : ""), "experts.gate_up_proj", D, 2 * F, -1, E, gu);
    if (tdn) add(LoraSite::ExpertsDown, parent_of(dn), "experts.down_proj", F, D, -1, E, dn);
    // Separate layout: transformers 4's per-expert Linear names, written as the family spells them (Mixtral's
    // block_sparse_moe.experts.E.w1/w3/w2, which peft 0.21 converts onto transformers 5's fused experts; the others'
    // mlp.experts.E.gate/up/down_proj). Every other family's spelling is read on any model.
    const std::vector<TensorNames::ExpertSpelling> sp = N.expert_spellings();
    const std::string layer_prefix = "model.layers." + std::to_string(i) + ".";
    const LoraSite sites[3] = {LoraSite::ExpertGate, LoraSite::ExpertUp, LoraSite::ExpertDown};
    const R roles[3] = {R::ExpertGate, R::ExpertUp, R::ExpertDown};
    for (int e = 0; e < E; ++e) {
      const std::string xs = "experts." + std::to_string(e) + ".";
      for (int k = 0; k < 3; ++k) {
        std::vector<std::string> aliases;
        for (size_t a = 1; a < sp.size(); ++a) aliases.push_back(layer_prefix + sp[a].block + "." + xs + sp[a].proj[k]);
        add(sites[k], module_of(N.name(roles[k], i, e)), xs + sp[0].proj[k], k == 2 ? F : D, k == 2 ? D : F, e, 0, "", aliases);
      }
    }
    if (ls.shared_inter > 0 && !N.name(R::SharedGate, i).empty()) {
      // short names "shared_expert.gate_proj", "shared_mlp.gate_proj": the last two components of the module path
      auto short_of = [](const std::string& m) { return m.substr(m.rfind('.', m.rfind('.') - 1) + 1); };
      const LoraSite ss[3] = {LoraSite::SharedGate, LoraSite::SharedUp, LoraSite::SharedDown};
      const R sr[3] = {R::SharedGate, R::SharedUp, R::SharedDown};
      for (int k = 0; k < 3; ++k) {
        const std::string m = module_of(N.name(sr[k], i));
        add(ss[k], m, short_of(m), k == 2 ? ls.shared_inter : D, k == 2 ? D : ls.shared_inter);
      }
    }
  }
  return out;
}

const LoraPair* module_pair(const LayerLora& L, const PeftModule& m, int e) {
  auto ex = [&](int k) -> const ExpertLora* { return k >= 0 && size_t(k) < L.experts.size() ? &L.experts[size_t(k)] : nullptr; };
  switch (m.site) {
    case LoraSite::Q: return &L.q;
    case LoraSite::K: return &L.k;
    case LoraSite::V: return &L.v;
    case LoraSite::O: return &L.o;
    case LoraSite::Gate: return &L.gate;
    case LoraSite::Up: return &L.up;
    case LoraSite::Down: return &L.down;
    case LoraSite::ExpertsGateUp: return ex(e) ? &ex(e)->gate_up : nullptr;
    case LoraSite::ExpertsDown: return ex(e) ? &ex(e)->down : nullptr;
    case LoraSite::ExpertGate: return ex(m.expert) ? &ex(m.expert)->gate : nullptr;
    case LoraSite::ExpertUp: return ex(m.expert) ? &ex(m.expert)->up : nullptr;
    case LoraSite::ExpertDown: return ex(m.expert) ? &ex(m.expert)->down : nullptr;
    case LoraSite::SharedGate: return &L.sh_gate;
    case LoraSite::SharedUp: return &L.sh_up;
    case LoraSite::SharedDown: return &L.sh_down;
  }
  return nullptr;
}

LoraPair* module_pair(LayerLora& L, const PeftModule& m, int e) {
  return const_cast<LoraPair*>(module_pair(static_cast<const LayerLora&>(L), m, e));
}

// ---- adapter_config.json in ----

namespace {

struct ConfigReader {
  const Json& j;
  std::string src;
  [[noreturn]] void bad(const std::string& key, const std::string& why) const { throw std::runtime_error(src + ": " + key + " " + why); }
  const Json* get(const char* k) const { const Json* v = j.find(k); return v && !v->is_null() ? v : nullptr; }
  bool truthy(const Json* v) const {
    if (!v) return false;
    if (v->is_bool()) return v->b;
    if (v->is_number()) return v->num != 0;
    if (v->is_string()) return !v->str.empty();
    return v->size() > 0;
  }
  void refuse_if_set(const char* k, const std::string& why) const {
    if (truthy(get(k))) throw std::runtime_error(src + ": " + k + " is set: " + why);
  }
  std::vector<std::string> string_list(const char* k) const {
    std::vector<std::string> out;
    const Json* v = get(k);
    if (!v) return out;
    if (v->is_string())
      bad(k, "is the pattern \"" + v->str + "\"; only a list of module names is supported (save the adapter with target_modules as a list)");
    if (!v->is_array()) bad(k, "must be a list of strings or null");
    for (auto& s : v->arr) {
      if (!s.is_string()) bad(k, "must be a list of strings or null");
      out.push_back(s.str);
    }
    return out;
  }
};

LoraConfig parse_lora_config(const Json& j, const std::string& src) {
  if (!j.is_object()) throw std::runtime_error(src + ": not a JSON object");
  ConfigReader r{j, src};
  const Json* pt = r.get("peft_type");
  if (!pt || !pt->is_string()) r.bad("peft_type", "is missing (not a peft adapter_config.json?)");
  if (pt->str != "LORA") throw std::runtime_error(src + ": peft_type is \"" + pt->str + "\"; only LORA adapters are supported");
  LoraConfig c;
  const Json* rv = r.get("r");
  if (!rv || !rv->is_number() || !rv->is_int || rv->num < 1 || rv->num > 65536) r.bad("r", "must be a positive integer");
  c.r = int64_t(rv->num);
  const Json* a = r.get("lora_alpha");
  if (a && !a->is_number()) r.bad("lora_alpha", "must be a number");
  c.alpha = a ? a->num : 8.0;  // peft's default
  const Json* rs = r.get("use_rslora");
  if (rs && !rs->is_bool()) r.bad("use_rslora", "must be true or false");
  c.use_rslora = rs && rs->b;
  const Json* dr = r.get("lora_dropout");
  if (dr && (!dr->is_number() || dr->num < 0 || dr->num >= 1)) r.bad("lora_dropout", "must be a number in [0, 1)");
  c.dropout = dr ? dr->num : 0.0;
  c.target_modules = r.string_list("target_modules");
  c.target_parameters = r.string_list("target_parameters");
  for (const char* k : {"rank_pattern", "alpha_pattern"}) {
    const Json* v = r.get(k);
    if (v && !v->is_object()) r.bad(k, "must be an object");
    if (v && v->size() > 0)
      throw std::runtime_error(src + ": " + k + " is not empty (" + v->obj[0].first +
                               ", ...): per-module ranks and alphas are not supported; every module must use r and lora_alpha");
  }
  const Json* bias = r.get("bias");
  if (bias && !(bias->is_string() && bias->str == "none"))
    throw std::runtime_error(src + ": bias is \"" + (bias->is_string() ? bias->str : std::string("?")) +
                             "\": only bias \"none\" is supported (the adapter would carry trained biases)");
  r.refuse_if_set("use_dora", "DoRA adapters are not supported (plain LoRA only)");
  r.refuse_if_set("lora_bias", "LoRA biases on lora_B are not supported");
  r.refuse_if_set("modules_to_save", "fully trained modules saved beside the adapter are not supported");
  r.refuse_if_set("layers_to_transform", "adapters on a subset of layers by layer index are not supported");
  r.refuse_if_set("layer_replication", "layer replication is not supported");
  r.refuse_if_set("fan_in_fan_out", "transposed (Conv1D) weights are not supported");
  r.refuse_if_set("trainable_token_indices", "trainable token embeddings are not supported");
  r.refuse_if_set("use_qalora", "QA-LoRA is not supported");
  r.refuse_if_set("alora_invocation_tokens", "activated LoRA (aLoRA) is not supported");
  r.refuse_if_set("use_bdlora", "BD-LoRA is not supported");
  for (const char* k : {"arrow_config", "kasa_config", "velora_config", "monteclora_config", "megatron_config"})
    r.refuse_if_set(k, "this LoRA variant is not supported");
  return c;
}

std::vector<float> widen(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  switch (t.dtype) {
    case DType::F32: std::memcpy(v.data(), p, v.size() * 4); break;
    case DType::F16: for (size_t i = 0; i < v.size(); ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); v[i] = f16_to_f32(h); } break;
    case DType::BF16: for (size_t i = 0; i < v.size(); ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); v[i] = bf16_to_f32(h); } break;
    default: break;
  }
  return v;
}

}  // namespace

namespace {

std::string model_words(const ModelSpec& spec, const std::string& model_dir) {
  return "the model at " + (model_dir.empty() ? spec.model_type : model_dir) + " (" + spec.model_type + ")";
}

// The tensors of one safetensors file under peft's names -> a.layers, for a.config; every tensor placed and
// shape-checked, every target of the config present (cfg_path names the config in messages).
void read_adapter_tensors(const std::string& st_path, const std::string& cfg_path, const ModelSpec& spec, const std::string& model,
                          Adapter& a) {
  const LoraConfig& cfg = a.config;
  SafeTensorsFile f(st_path);

  const std::vector<PeftModule> mods = peft_modules(spec, cfg.target_parameters);
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < mods.size(); ++i) {
    by_name[mods[i].name] = i;
    for (auto& al : mods[i].aliases) by_name[al] = i;
  }
  struct Found { const TensorView* A = nullptr; const TensorView* B = nullptr; std::string name; };
  std::vector<Found> found(mods.size());
  std::vector<std::string> unknown;
  bool fused_hint = false;
  for (const TensorView& t : f.tensors()) {
    const bool isA = ends_with(t.name, kSuffixA), isB = ends_with(t.name, kSuffixB);
    if (!isA && !isB) { unknown.push_back(t.name); continue; }
    const std::string mod = t.name.substr(0, t.name.size() - std::strlen(kSuffixA));
    auto it = by_name.find(mod);
    if (it == by_name.end()) {
      // k/v on a Hunyuan-Large CLA layer: say why rather than just "unknown".
      for (int l = 0; l < spec.num_layers && size_t(l) < spec.layers.size(); ++l) {
        const std::string p = std::string(kRoot) + "model.layers." + std::to_string(l) + ".self_attn.";
        if (!spec.layers[size_t(l)].has_kv && (mod == p + "k_proj" || mod == p + "v_proj"))
          throw std::runtime_error(st_path + ": " + t.name + ": layer " + std::to_string(l) + " of " + model +
                                   " has no k/v projections (cross-layer attention reuses another layer's); an adapter for another model?");
      }
      unknown.push_back(t.name);
      if (ends_with(mod, ".mlp.experts") || ends_with(mod, ".mlp.experts.base_layer")) fused_hint = true;
      continue;
    }
    Found& fd = found[it->second];
    if (!fd.name.empty() && fd.name != mod)
      throw std::runtime_error(st_path + ": " + t.name + " and " + fd.name + (isA ? kSuffixA : kSuffixB) +
                               " adapt the same weight (" + mods[it->second].adapts + ")");
    fd.name = mod;
    (isA ? fd.A : fd.B) = &t;
  }
  if (!unknown.empty()) {
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 4; ++i) list += (i ? ", " : "") + unknown[i];
    if (unknown.size() > 4) list += " (and " + std::to_string(unknown.size() - 4) + " more)";
    throw std::runtime_error(st_path + ": " + std::to_string(unknown.size()) + " tensor(s) that " + model + " has no place for: " + list +
                             (fused_hint ? "; fused expert tensors (mlp.experts[.base_layer].lora_A.weight) need mlp.experts.gate_up_proj / "
                                           "mlp.experts.down_proj in adapter_config.json's target_parameters"
                                         : "; expected names like base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  }

  a.layers.resize(size_t(spec.num_layers));
  const float s = cfg.scale();
  std::vector<int> layout(size_t(spec.num_layers), 0);  // 1 fused, 2 separate
  for (size_t i = 0; i < mods.size(); ++i) {
    const PeftModule& m = mods[i];
    const Found& fd = found[i];
    if (!fd.A && !fd.B) continue;
    const std::string nA = fd.name + kSuffixA, nB = fd.name + kSuffixB;
    if (!fd.B) throw std::runtime_error(st_path + ": " + nA + " has no " + nB + " (every lora_A needs its lora_B)");
    if (!fd.A) throw std::runtime_error(st_path + ": " + nB + " has no " + nA + " (every lora_B needs its lora_A)");
    for (const TensorView* t : {fd.A, fd.B})
      if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16)
        throw std::runtime_error(st_path + ": " + t->name + " is " + dtype_name(t->dtype) + "; LoRA tensors must be f32, f16 or bf16");
    const int64_t E = m.fused() ? m.experts : 1, rE = cfg.r * E;
    const std::string what = "the model's " + m.short_name + " (layer " + std::to_string(m.layer) + ")";
    const std::string rank_note = m.fused() ? " (" + std::to_string(E) + " experts x r = " + std::to_string(cfg.r) + " from adapter_config.json)"
                                            : " (r = " + std::to_string(cfg.r) + " in adapter_config.json)";
    const TensorView& A = *fd.A; const TensorView& B = *fd.B;
    if (A.shape.size() != 2) throw std::runtime_error(st_path + ": " + nA + " has shape " + shape_str(A.shape) + "; lora_A must be 2-D");
    if (B.shape.size() != 2) throw std::runtime_error(st_path + ": " + nB + " has shape " + shape_str(B.shape) + "; lora_B must be 2-D");
    if (A.shape[1] != m.in)
      throw std::runtime_error(st_path + ": " + nA + " has shape " + shape_str(A.shape) + ", " + what + " takes " + std::to_string(m.in) +
                               " inputs (" + model + "; an adapter for another model?)");
    if (B.shape[0] != m.out)
      throw std::runtime_error(st_path + ": " + nB + " has shape " + shape_str(B.shape) + ", " + what + " gives " + std::to_string(m.out) +
                               " outputs (" + model + "; an adapter for another model?)");
    if (A.shape[0] != rE)
      throw std::runtime_error(st_path + ": " + nA + " has shape " + shape_str(A.shape) + ", expected " + std::to_string(rE) + " rows" + rank_note);
    if (B.shape[1] != rE)
      throw std::runtime_error(st_path + ": " + nB + " has shape " + shape_str(B.shape) + ", expected " + std::to_string(rE) + " columns" + rank_note);
    const bool fused_site = m.fused(), sep_site = m.expert >= 0;
    if (fused_site || sep_site) {
      int& l = layout[size_t(m.layer)];
      const int want = fused_site ? 1 : 2;
      if (l && l != want)
        throw std::runtime_error(st_path + ": layer " + std::to_string(m.layer) + " has both fused (mlp.experts.lora_A) and per-expert "
                                 "(mlp.experts.N.*_proj) expert tensors; an adapter uses one layout");
      l = want;
    }
    LayerLora& L = a.layers[size_t(m.layer)];
    if ((fused_site || sep_site) && L.experts.empty()) L.experts.resize(size_t(spec.layers[size_t(m.layer)].num_experts));
    const std::vector<float> va = widen(A), vb = widen(B);
    for (const auto* v : {&va, &vb})
      for (size_t k = 0; k < v->size(); ++k)
        if (!std::isfinite((*v)[k]))
          throw std::runtime_error(st_path + ": " + (v == &va ? nA : nB) + " holds " + std::to_string((*v)[k]) + " at element " +
                                   std::to_string(k) + " (a diverged run?); refusing a non-finite adapter");
    const int64_t r = cfg.r;
    if (!fused_site) {
      LoraPair* p = module_pair(L, m);
      p->init(r, m.in, m.out, s);
      p->A = va; p->B = vb;
      continue;
    }
    for (int64_t e = 0; e < E; ++e) {
      LoraPair* p = module_pair(L, m, int(e));
      p->init(r, m.in, m.out, s);
      // A [E·r, in] expert-major: row e·r + k is expert e's row k.
      std::memcpy(p->A.data(), va.data() + size_t(e * r * m.in), size_t(r * m.in) * 4);
      // B [out, r·E] rank-major: column k·E + e is expert e's column k.
      for (int64_t o = 0; o < m.out; ++o)
        for (int64_t k = 0; k < r; ++k) p->B[size_t(o * r + k)] = vb[size_t(o * rE + k * E + e)];
    }
  }

  // Every tensor must be one the config targets, and every target must have tensors (peft would silently skip both).
  std::vector<bool> tm_hit(cfg.target_modules.size()), tp_hit(cfg.target_parameters.size());
  for (size_t i = 0; i < mods.size(); ++i) {
    if (!found[i].A) continue;
    const PeftModule& m = mods[i];
    const std::string path = module_path(found[i].name);
    bool covered = false;
    for (size_t t = 0; t < cfg.target_parameters.size(); ++t)
      if (peft_target_matches(m.adapts, cfg.target_parameters[t])) covered = tp_hit[t] = true;
    if (!m.fused())
      for (size_t t = 0; t < cfg.target_modules.size(); ++t)
        if (peft_target_matches(path, cfg.target_modules[t])) covered = tm_hit[t] = true;
    if (!covered)
      throw std::runtime_error(st_path + ": " + found[i].name + kSuffixA + " adapts " + m.adapts + ", which neither target_modules nor "
                               "target_parameters in " + cfg_path + " lists");
  }
  for (size_t t = 0; t < tm_hit.size(); ++t)
    if (!tm_hit[t])
      throw std::runtime_error(cfg_path + ": target_modules lists \"" + cfg.target_modules[t] + "\" but " + st_path +
                               " has no tensors for it on " + model);
  for (size_t t = 0; t < tp_hit.size(); ++t)
    if (!tp_hit[t])
      throw std::runtime_error(cfg_path + ": target_parameters lists \"" + cfg.target_parameters[t] + "\" but " + st_path +
                               " has no tensors for it on " + model);
}

}  // namespace

Adapter load_adapter(const std::string& dir, const ModelSpec& spec, const std::string& model_dir_for_messages) {
  const fs::path d(dir);
  const std::string model = model_words(spec, model_dir_for_messages);
  if (!fs::is_directory(d))
    throw std::runtime_error(dir + ": not a folder (a peft adapter is a folder with adapter_config.json and adapter_model.safetensors)");
  const std::string cfg_path = (d / "adapter_config.json").string(), st_path = (d / "adapter_model.safetensors").string();
  if (!fs::exists(st_path)) {
    if (fs::exists(d / "adapter_model.bin"))
      throw std::runtime_error((d / "adapter_model.bin").string() + ": pickle adapters are not supported; convert with peft to safetensors");
    throw std::runtime_error(st_path + ": missing (a peft adapter folder holds adapter_model.safetensors)");
  }
  if (!fs::exists(cfg_path)) throw std::runtime_error(cfg_path + ": missing (a peft adapter folder holds adapter_config.json)");
  Adapter a;
  a.config = parse_lora_config(json_parse_file(cfg_path), cfg_path);
  read_adapter_tensors(st_path, cfg_path, spec, model, a);
  return a;
}

Adapter load_adapter_tensors(const std::string& safetensors_path, const Adapter& layout, const ModelSpec& spec) {
  Adapter b;
  b.config = adapter_effective_config(layout, spec);
  read_adapter_tensors(safetensors_path, "the adapter's config", spec, model_words(spec, ""), b);
  // The same pairs as the layout's, no more, no fewer.
  std::map<std::string, const LoraPair*> x, y;
  const_cast<Adapter&>(layout).for_each([&](const std::string& n, LoraPair& p) { if (p.present()) x[n] = &p; });
  b.for_each([&](const std::string& n, LoraPair& p) { if (p.present()) y[n] = &p; });
  for (auto& [n, p] : x) {
    auto it = y.find(n);
    if (it == y.end()) throw std::runtime_error(safetensors_path + ": has no tensors for the adapter's pair " + n);
    if (it->second->r != p->r) throw std::runtime_error(safetensors_path + ": pair " + n + " has rank " + std::to_string(it->second->r) +
                                                        ", the adapter's " + std::to_string(p->r));
  }
  for (auto& [n, p] : y)
    if (!x.count(n)) throw std::runtime_error(safetensors_path + ": has tensors for pair " + n + ", which the adapter does not have");
  return b;
}

// ---- out ----

namespace {

// ExpertLora::down serves both layouts: on a layer it is the fused down_proj's when the experts have a gate_up pair,
// or when they have no separate gate/up pair and the adapter's config targets the layer's fused down_proj; else
// each expert's own down_proj. One decision, used for the config and the tensors alike.
bool down_is_fused(const Adapter& a, const TensorNames& N, int layer) {
  if (layer < 0 || size_t(layer) >= a.layers.size()) return false;
  const LayerLora& L = a.layers[size_t(layer)];
  bool separate = false;
  for (const ExpertLora& e : L.experts) {
    if (e.gate_up.present()) return true;
    separate |= e.gate.present() || e.up.present();
  }
  return !separate && any_match(N.name(HubRole::ExpertsDown, layer, -1, ExpertForm::Fused), a.config.target_parameters);
}

}  // namespace

LoraConfig adapter_effective_config(const Adapter& a, const ModelSpec& spec) {
  LoraConfig c = a.config;
  // Every module with both fused targets in place, to see which pairs the adapter has.
  const TensorNames N(spec);
  const std::vector<std::string> fused_targets = TensorNames::fused_expert_params();
  const std::vector<PeftModule> all = peft_modules(spec, fused_targets);
  std::vector<const PeftModule*> present;
  for (const PeftModule& m : all) {
    if (size_t(m.layer) >= a.layers.size()) continue;
    const LayerLora& L = a.layers[size_t(m.layer)];
    const LoraPair* p = module_pair(L, m, 0);
    if (!p || !p->present()) continue;
    const bool fd = down_is_fused(a, N, m.layer);
    if ((m.site == LoraSite::ExpertsDown && !fd) || (m.site == LoraSite::ExpertDown && fd)) continue;
    present.push_back(&m);
  }
  // target_parameters: as given, less entries that match no pair; derived (gate_up, down) when none are given.
  if (c.target_parameters.empty()) {
    for (const std::string& t : fused_targets)
      for (const PeftModule* m : present)
        if (m->fused() && peft_target_matches(m->adapts, t)) { c.target_parameters.push_back(t); break; }
  } else {
    std::vector<std::string> kept;
    for (auto& t : c.target_parameters)
      for (const PeftModule* m : present)
        if (peft_target_matches(m->adapts, t)) { kept.push_back(t); break; }
    c.target_parameters = kept;
  }
  // target_modules: as given, less entries that match no written module, plus the names of modules nothing covers
  // (sorted; e.g. a transformers-4 Mixtral adapter's w1/w3/w2 become gate_proj/up_proj/down_proj when saved).
  // On qwen3_moe, olmoe and hunyuan_v1_moe peft 0.21 maps the model onto transformers' qwen2_moe conversion and
  // rewrites gate_proj/up_proj/down_proj in target_modules into fused expert targets of rank 2r
  // (peft/utils/transformers_weight_conversion.py, _convert_peft_config_moe): there, dense and shared MLP
  // projections are targeted as 2-D parameters ("mlp.shared_mlp.gate_proj.weight"), as the goldens do.
  const bool mlp_as_parameters = spec.model_type == "qwen3_moe" || spec.model_type == "olmoe" || spec.model_type == "hunyuan_v1_moe";
  std::vector<bool> used(c.target_modules.size(), false);
  std::set<std::string> extra;
  for (const PeftModule* m : present) {
    if (m->fused()) continue;
    const std::string path = module_path(m->name);
    bool covered = any_match(m->adapts, c.target_parameters);
    const bool mlp = m->site == LoraSite::Gate || m->site == LoraSite::Up || m->site == LoraSite::Down ||
                     m->site == LoraSite::SharedGate || m->site == LoraSite::SharedUp || m->site == LoraSite::SharedDown;
    if (mlp && mlp_as_parameters) {
      if (!covered) {
        const std::string layer_prefix = "model.layers." + std::to_string(m->layer) + ".";
        c.target_parameters.push_back(m->adapts.substr(layer_prefix.size()));
      }
      continue;
    }
    for (size_t t = 0; t < c.target_modules.size(); ++t)
      if (peft_target_matches(path, c.target_modules[t])) covered = used[t] = true;
    if (!covered) extra.insert(last_component(path));
  }
  std::vector<std::string> tm;
  for (size_t t = 0; t < c.target_modules.size(); ++t) if (used[t]) tm.push_back(c.target_modules[t]);
  for (auto& e : extra) if (std::find(tm.begin(), tm.end(), e) == tm.end()) tm.push_back(e);
  c.target_modules = tm;
  return c;
}

namespace {

// What adapter_tensors writes, without the numbers: every tensor's name and shape (sorted by name) and where its
// numbers come from. Everything about the layout is checked here, before a byte is packed or written.
struct PackItem {
  std::string name;
  std::vector<int64_t> shape;
  size_t module;   // index into PackPlan::mods
  bool is_B;
};
struct PackPlan {
  std::vector<PeftModule> mods;
  std::vector<PackItem> items;
};

PackPlan make_plan(const Adapter& layout, const ModelSpec& spec) {
  if (layout.layers.size() != size_t(spec.num_layers))
    throw std::runtime_error("adapter has " + std::to_string(layout.layers.size()) + " layers, the model (" + spec.model_type + ") has " +
                             std::to_string(spec.num_layers));
  for (size_t l = 0; l < layout.layers.size(); ++l) {
    bool fused = false, separate = false;
    for (const ExpertLora& e : layout.layers[l].experts) { fused |= e.gate_up.present(); separate |= e.gate.present() || e.up.present(); }
    if (fused && separate)
      throw std::runtime_error("adapter layer " + std::to_string(l) + " mixes fused gate_up pairs and separate gate/up pairs; peft's files use one layout per layer");
  }
  PackPlan plan;
  plan.mods = peft_modules(spec, adapter_effective_config(layout, spec).target_parameters);
  const TensorNames N(spec);
  std::set<const LoraPair*> emitted;
  auto check = [&](const PeftModule& m, const LoraPair& p, int e) {
    const std::string where = "layer " + std::to_string(m.layer) + " " + m.short_name + (m.fused() ? " expert " + std::to_string(e) : "");
    if (p.in != m.in || p.out != m.out)
      throw std::runtime_error("adapter pair " + where + " is [" + std::to_string(p.out) + " x " + std::to_string(p.in) +
                               "], the model's weight is [" + std::to_string(m.out) + " x " + std::to_string(m.in) + "]");
    emitted.insert(&p);
  };
  for (size_t i = 0; i < plan.mods.size(); ++i) {
    const PeftModule& m = plan.mods[i];
    const LayerLora& L = layout.layers[size_t(m.layer)];
    if (!m.fused()) {
      if (m.site == LoraSite::ExpertDown && down_is_fused(layout, N, m.layer)) continue;
      const LoraPair* p = module_pair(L, m);
      if (!p || !p->present()) continue;
      check(m, *p, 0);
      plan.items.push_back({m.name + kSuffixA, {p->r, p->in}, i, false});
      plan.items.push_back({m.name + kSuffixB, {p->out, p->r}, i, true});
      continue;
    }
    if (m.site == LoraSite::ExpertsDown && !down_is_fused(layout, N, m.layer)) continue;
    const int E = m.experts;
    int present = 0;
    for (int e = 0; e < E; ++e) { const LoraPair* p = module_pair(L, m, e); present += p && p->present(); }
    if (!present) continue;
    if (present != E || L.experts.size() != size_t(E))
      throw std::runtime_error("adapter layer " + std::to_string(m.layer) + " " + m.short_name + ": " + std::to_string(present) + " of " +
                               std::to_string(E) + " experts have a pair; peft's fused layout needs all of them");
    const int64_t r = module_pair(L, m, 0)->r;
    for (int e = 0; e < E; ++e) {
      const LoraPair* p = module_pair(L, m, e);
      if (p->r != r) throw std::runtime_error("adapter layer " + std::to_string(m.layer) + " " + m.short_name + ": experts have different ranks");
      check(m, *p, e);
    }
    plan.items.push_back({m.name + kSuffixA, {r * E, m.in}, i, false});
    plan.items.push_back({m.name + kSuffixB, {m.out, r * E}, i, true});
  }
  // A pair the table did not take (k on a CLA layer, a fused pair target_parameters does not list) must not vanish.
  const_cast<Adapter&>(layout).for_each([&](const std::string& site, LoraPair& p) {
    if (p.present() && !emitted.count(&p))
      throw std::runtime_error("adapter pair " + site + " has no peft name on the model (" + spec.model_type +
                               "): not a weight of this layer, or not in target_parameters");
  });
  std::sort(plan.items.begin(), plan.items.end(), [](const PackItem& x, const PackItem& y) { return x.name < y.name; });
  return plan;
}

// One tensor's numbers in peft's packing: a pair's A or B as is; fused A [E·r, in] expert-major (rows e·r .. e·r+r-1
// are expert e's A), fused B [out, r·E] rank-major (column k·E + e is expert e's column k).
void pack(const PackPlan& plan, const PackItem& it, const Adapter& layout, const PairPayload& payload, std::vector<float>& out) {
  const PeftModule& m = plan.mods[it.module];
  const LayerLora& L = layout.layers[size_t(m.layer)];
  auto numbers = [&](const LoraPair& p, int e) {
    const PairData d = payload(p);
    const std::vector<float>* v = it.is_B ? d.B : d.A;
    const size_t want = size_t(it.is_B ? p.out * p.r : p.r * p.in);
    if (!v || v->size() != want)
      throw std::runtime_error("adapter pair layer " + std::to_string(m.layer) + " " + m.short_name + (m.fused() ? " expert " + std::to_string(e) : "") +
                               ": the numbers to write for " + (it.is_B ? "B" : "A") + " are not " + std::to_string(want) + " floats (r = " +
                               std::to_string(p.r) + ")");
    return v;
  };
  out.resize(size_t(it.shape[0] * it.shape[1]));
  if (!m.fused()) {
    const std::vector<float>* v = numbers(*module_pair(L, m), 0);
    std::memcpy(out.data(), v->data(), out.size() * 4);
    return;
  }
  const int64_t E = m.experts, rE = it.is_B ? it.shape[1] : it.shape[0], r = rE / E;
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<float>& v = *numbers(*module_pair(L, m, int(e)), int(e));
    if (!it.is_B) {
      std::memcpy(out.data() + size_t(e * r * m.in), v.data(), size_t(r * m.in) * 4);
    } else {
      for (int64_t o = 0; o < m.out; ++o)
        for (int64_t k = 0; k < r; ++k) out[size_t(o * rE + k * E + e)] = v[size_t(o * r + k)];
    }
  }
}

}  // namespace

std::vector<PeftTensor> adapter_tensors(const Adapter& layout, const ModelSpec& spec, const PairPayload& payload) {
  const PackPlan plan = make_plan(layout, spec);
  std::vector<PeftTensor> out;
  out.reserve(plan.items.size());
  for (const PackItem& it : plan.items) {
    out.push_back({it.name, it.shape, {}});
    pack(plan, it, layout, payload, out.back().data);
  }
  return out;
}

std::vector<PeftTensor> adapter_tensors(const Adapter& layout, const ModelSpec& spec, const Adapter* payload) {
  if (!payload) return adapter_tensors(layout, spec, [](const LoraPair& p) { return PairData{&p.A, &p.B}; });
  // The parallel adapter's pairs, matched to the layout's in Adapter::for_each order.
  std::vector<std::pair<std::string, const LoraPair*>> a, b;
  const_cast<Adapter&>(layout).for_each([&](const std::string& s, LoraPair& p) { a.emplace_back(s, &p); });
  const_cast<Adapter&>(*payload).for_each([&](const std::string& s, LoraPair& p) { b.emplace_back(s, &p); });
  std::unordered_map<const LoraPair*, const LoraPair*> twin;
  for (size_t i = 0; i < a.size(); ++i) {
    const LoraPair& p = *a[i].second;
    if (!p.present()) continue;
    const LoraPair* q = i < b.size() && b[i].first == a[i].first ? b[i].second : nullptr;
    if (!q || q->r != p.r || q->in != p.in || q->out != p.out)
      throw std::runtime_error("adapter payload has no pair " + a[i].first + " of the adapter's r = " + std::to_string(p.r) + ", in = " +
                               std::to_string(p.in) + ", out = " + std::to_string(p.out));
    twin[&p] = q;
  }
  return adapter_tensors(layout, spec, [&](const LoraPair& p) {
    const LoraPair* q = twin.at(&p);
    return PairData{&q->A, &q->B};
  });
}

// ---- writers ----

namespace {

// Python's repr(float).
std::string py_float(double x) {
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // d[.ddd]e[+-]XX
  const size_t epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  const int exp = std::stoi(sci.substr(epos + 1));
  std::string sign;
  if (mant[0] == '-') { sign = "-"; mant.erase(0, 1); }
  std::string digits;
  for (char c : mant) if (c != '.') digits += c;
  if (exp < -4 || exp >= 16) {
    std::string m = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
    std::string e = std::to_string(std::abs(exp));
    if (e.size() < 2) e = "0" + e;
    return sign + m + "e" + (exp < 0 ? "-" : "+") + e;
  }
  if (exp < 0) return sign + "0." + std::string(size_t(-exp - 1), '0') + digits;
  const size_t ip = size_t(exp) + 1;
  if (digits.size() <= ip) return sign + digits + std::string(ip - digits.size(), '0') + ".0";
  return sign + digits.substr(0, ip) + "." + digits.substr(ip);
}

// json.dumps(ensure_ascii=True) string escaping.
std::string py_str(const std::string& s) {
  std::string o = "\"";
  auto u = [&](uint32_t c) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; };
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': o += "\\\""; break;
        case '\\': o += "\\\\"; break;
        case '\n': o += "\\n"; break;
        case '\r': o += "\\r"; break;
        case '\t': o += "\\t"; break;
        case '\b': o += "\\b"; break;
        case '\f': o += "\\f"; break;
        default: if (c < 0x20) u(c); else o += char(c);
      }
      ++i;
      continue;
    }
    int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
    uint32_t cp = c & (0x3f >> n);
    for (int k = 1; k <= n && i + size_t(k) < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + size_t(k)]) & 0x3f);
    i += size_t(n) + 1;
    if (cp >= 0x10000) { cp -= 0x10000; u(0xd800 + (cp >> 10)); u(0xdc00 + (cp & 0x3ff)); }
    else u(cp);
  }
  return o + "\"";
}

// json.dumps(indent=2, sort_keys=True).
void py_dump(const Json& v, int indent, std::string& o) {
  const std::string pad(size_t(indent + 2), ' '), end_pad(size_t(indent), ' ');
  switch (v.type) {
    case Json::Type::Null: o += "null"; break;
    case Json::Type::Bool: o += v.b ? "true" : "false"; break;
    case Json::Type::Number:
      if (v.is_int) { char b[32]; std::snprintf(b, sizeof b, "%lld", static_cast<long long>(v.num)); o += b; }
      else o += py_float(v.num);
      break;
    case Json::Type::String: o += py_str(v.str); break;
    case Json::Type::Array:
      if (v.arr.empty()) { o += "[]"; break; }
      o += "[\n";
      for (size_t i = 0; i < v.arr.size(); ++i) { o += pad; py_dump(v.arr[i], indent + 2, o); o += i + 1 < v.arr.size() ? ",\n" : "\n"; }
      o += end_pad + "]";
      break;
    case Json::Type::Object: {
      if (v.obj.empty()) { o += "{}"; break; }
      std::vector<const std::pair<std::string, Json>*> kv;
      for (auto& p : v.obj) kv.push_back(&p);
      std::sort(kv.begin(), kv.end(), [](auto* x, auto* y) { return x->first < y->first; });
      o += "{\n";
      for (size_t i = 0; i < kv.size(); ++i) {
        o += pad + py_str(kv[i]->first) + ": ";
        py_dump(kv[i]->second, indent + 2, o);
        o += i + 1 < kv.size() ? ",\n" : "\n";
      }
      o += end_pad + "}";
      break;
    }
  }
}

Json jnull() { return Json{}; }
Json jbool(bool b) { Json j; j.type = Json::Type::Bool; j.b = b; return j; }
Json jstr(const std::string& s) { Json j; j.type = Json::Type::String; j.str = s; return j; }
Json jnum(double x, bool as_int) { Json j; j.type = Json::Type::Number; j.num = x; j.is_int = as_int; return j; }
Json jobj() { Json j; j.type = Json::Type::Object; return j; }
Json jlist(const std::vector<std::string>& v) {
  if (v.empty()) return jnull();
  Json j; j.type = Json::Type::Array;
  for (auto& s : v) j.arr.push_back(jstr(s));
  return j;
}

// peft writes auto_mapping (the base model's class and module) when the PeftModel has no task_type.
std::string parent_library(const ModelSpec& s) {
  if (s.model_type == "hunyuan") return "modeling_hunyuan";  // Tencent's remote code (config.json auto_map)
  return "transformers.models." + s.model_type + ".modeling_" + s.model_type;
}

// A file written in pieces and flushed to the disk (fsync on POSIX) before the folder is renamed into place.
class FileOut {
 public:
  explicit FileOut(const fs::path& p) : path_(p) {
#ifdef _WIN32
    f_.open(p, std::ios::binary | std::ios::trunc);
    if (!f_) throw std::runtime_error(p.string() + ": cannot create");
#else
    fd_ = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(p.string() + ": cannot create: " + std::strerror(errno));
#endif
  }
  ~FileOut() {
#ifndef _WIN32
    if (fd_ >= 0) ::close(fd_);
#endif
  }
  FileOut(const FileOut&) = delete;
  FileOut& operator=(const FileOut&) = delete;
  void write(const void* data, size_t n) {
#ifdef _WIN32
    f_.write(static_cast<const char*>(data), std::streamsize(n));
    if (!f_) throw std::runtime_error(path_.string() + ": write failed (disk full?)");
#else
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t k = ::write(fd_, p, n);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) throw std::runtime_error(path_.string() + ": write failed: " + std::strerror(errno));
      p += k; n -= size_t(k);
    }
#endif
  }
  void finish() {
#ifdef _WIN32
    f_.flush();
    if (!f_) throw std::runtime_error(path_.string() + ": write failed (disk full?)");
    f_.close();
#else
    if (::fsync(fd_) != 0) throw std::runtime_error(path_.string() + ": fsync failed: " + std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw std::runtime_error(path_.string() + ": close failed: " + std::strerror(errno));
#endif
  }
 private:
  fs::path path_;
#ifdef _WIN32
  std::ofstream f_;
#else
  int fd_ = -1;
#endif
};

void write_file_checked(const fs::path& p, const std::string& bytes) {
  FileOut f(p);
  f.write(bytes.data(), bytes.size());
  f.finish();
}

void sync_dir(const fs::path& d) {
#ifndef _WIN32
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) { ::fsync(fd); ::close(fd); }
#else
  (void)d;
#endif
}

int pid_now() {
#ifdef _WIN32
  return _getpid();
#else
  return int(getpid());
#endif
}

}  // namespace

std::string adapter_config_json(const Adapter& a, const ModelSpec& spec, const std::string& base_model_name_or_path) {
  const LoraConfig c = adapter_effective_config(a, spec);
  Json j = jobj();
  auto set = [&](const char* k, Json v) { j.obj.emplace_back(k, std::move(v)); };
  Json am = jobj();
  am.obj.emplace_back("base_model_class", jstr(spec.architecture));
  am.obj.emplace_back("parent_library", jstr(parent_library(spec)));
  for (const char* k : {"alora_invocation_tokens", "arrow_config", "corda_config", "eva_config", "exclude_modules", "kasa_config",
                        "layer_replication", "layers_pattern", "layers_to_transform", "lora_ga_config", "megatron_config",
                        "modules_to_save", "monteclora_config", "revision", "task_type", "trainable_token_indices", "use_bdlora",
                        "velora_config"})
    set(k, jnull());
  set("alpha_pattern", jobj());
  set("rank_pattern", jobj());
  set("loftq_config", jobj());
  set("auto_mapping", am);
  set("base_model_name_or_path", jstr(base_model_name_or_path));
  set("bias", jstr("none"));
  for (const char* k : {"ensure_weight_tying", "fan_in_fan_out", "lora_bias", "use_dora", "use_qalora"}) set(k, jbool(false));
  set("inference_mode", jbool(true));
  set("init_lora_weights", jbool(true));
  set("lora_alpha", jnum(c.alpha, c.alpha == double(int64_t(c.alpha))));
  // peft refuses lora_dropout != 0 on target_parameters; the run's own metadata keeps what it trained with.
  set("lora_dropout", jnum(c.target_parameters.empty() ? c.dropout : 0.0, false));
  set("megatron_core", jstr("megatron.core"));
  set("peft_type", jstr("LORA"));
  set("peft_version", jstr("0.21.0"));
  set("qalora_group_size", jnum(16, true));
  set("r", jnum(double(c.r), true));
  set("target_modules", jlist(c.target_modules));
  set("target_parameters", jlist(c.target_parameters));
  set("use_rslora", jbool(c.use_rslora));
  std::string o;
  py_dump(j, 0, o);
  return o;
}

namespace {

// The `safetensors` package's header for f32 tensors in this order: 8-byte little-endian length, then
// {"__metadata__":{"format":"pt"},"name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},...} padded with spaces
// to a multiple of 8.
std::string safetensors_f32_header(const std::vector<std::pair<const std::string*, const std::vector<int64_t>*>>& ts) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t off = 0;
  for (auto& [name, shape] : ts) {
    int64_t n = 1;
    std::string sh;
    for (size_t k = 0; k < shape->size(); ++k) {
      if (k) sh += ',';
      sh += std::to_string((*shape)[k]);
      n *= (*shape)[k];
    }
    header += ",\"" + *name + "\":{\"dtype\":\"F32\",\"shape\":[" + sh + "],\"data_offsets\":[" + std::to_string(off) + "," +
              std::to_string(off + uint64_t(n) * 4) + "]}";
    off += uint64_t(n) * 4;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t hn = header.size();
  for (int k = 0; k < 8; ++k) out[size_t(k)] = char((hn >> (8 * k)) & 0xff);
  return out + header;
}

}  // namespace

std::string safetensors_f32_bytes(const std::vector<PeftTensor>& ts) {
  std::vector<const PeftTensor*> order;
  for (auto& t : ts) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* x, auto* y) { return x->name < y->name; });
  std::vector<std::pair<const std::string*, const std::vector<int64_t>*>> hs;
  for (const PeftTensor* t : order) {
    int64_t n = 1;
    for (auto d : t->shape) n *= d;
    if (size_t(n) != t->data.size()) throw std::runtime_error("tensor " + t->name + ": shape " + shape_str(t->shape) + " does not match its data");
    hs.emplace_back(&t->name, &t->shape);
  }
  std::string out = safetensors_f32_header(hs);
  for (const PeftTensor* t : order) out.append(reinterpret_cast<const char*>(t->data.data()), t->data.size() * 4);
  return out;
}

void save_adapter(const std::string& dir, const Adapter& a, const ModelSpec& spec, const std::string& base_model_name_or_path) {
  // Everything is validated before the disk is touched; the tensors are then packed and written one at a time (an
  // adapter of a large MoE is gigabytes: never a second copy of all of it in memory).
  const PackPlan plan = make_plan(a, spec);
  const std::string cfg = adapter_config_json(a, spec, base_model_name_or_path);
  const PairPayload own = [](const LoraPair& p) { return PairData{&p.A, &p.B}; };
  for (const PackItem& it : plan.items) {  // the numbers are there (sizes), so writing cannot fail half-way on them
    const PeftModule& m = plan.mods[it.module];
    const LayerLora& L = a.layers[size_t(m.layer)];
    for (int e = 0; e < std::max(1, m.experts); ++e) {
      const LoraPair& p = *module_pair(L, m, e);
      if (p.A.size() != size_t(p.r * p.in) || p.B.size() != size_t(p.out * p.r))
        throw std::runtime_error("adapter pair layer " + std::to_string(m.layer) + " " + m.short_name + ": A/B sizes do not match r = " + std::to_string(p.r));
    }
  }
  fs::path target = fs::path(dir);
  if (target.filename().empty()) target = target.parent_path();  // "out/adapter/"
  fs::path parent = target.parent_path();
  if (parent.empty()) parent = ".";
  static std::atomic<int> counter{0};
  const std::string tag = std::to_string(pid_now()) + "-" + std::to_string(counter++);
  const fs::path tmp = parent / ("." + target.filename().string() + ".tmp-" + tag);
  const fs::path old = parent / ("." + target.filename().string() + ".old-" + tag);
  try {
    fs::create_directories(parent);
    fs::remove_all(tmp);
    fs::create_directory(tmp);
    {
      FileOut f(tmp / "adapter_model.safetensors");
      std::vector<std::pair<const std::string*, const std::vector<int64_t>*>> hs;
      for (const PackItem& it : plan.items) hs.emplace_back(&it.name, &it.shape);
      const std::string header = safetensors_f32_header(hs);
      f.write(header.data(), header.size());
      std::vector<float> buf;
      for (const PackItem& it : plan.items) {
        pack(plan, it, a, own, buf);
        f.write(buf.data(), buf.size() * 4);
      }
      f.finish();
    }
    write_file_checked(tmp / "adapter_config.json", cfg);
    sync_dir(tmp);
    if (fs::exists(target)) {
      fs::rename(target, old);
      try {
        fs::rename(tmp, target);
      } catch (...) {
        std::error_code ec;
        fs::rename(old, target, ec);  // put the previous adapter back
        throw;
      }
      std::error_code ec;
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp, target);
    }
    sync_dir(parent);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw std::runtime_error(dir + ": cannot write the adapter: " + e.what());
  }
}

}  // namespace moe
