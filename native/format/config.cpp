#include "format/config.h"
#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace moe {

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> t = {"llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe",
                                             "olmoe", "hunyuan_v1_moe", "hunyuan"};
  return t;
}

namespace {

struct Reader {
  const Json& j;
  const std::string& src;
  [[noreturn]] void missing(const std::string& k) const { throw std::runtime_error(src + ": missing field '" + k + "'"); }
  [[noreturn]] void bad(const std::string& k, const std::string& why) const { throw std::runtime_error(src + ": field '" + k + "' " + why); }
  const Json* get(const std::string& k) const { const Json* v = j.find(k); return (v && !v->is_null()) ? v : nullptr; }
  double num(const std::string& k) const {
    const Json* v = get(k); if (!v) missing(k);
    if (!v->is_number()) bad(k, "must be a number");
    return v->num;
  }
  double num(const std::string& k, double def) const {
    const Json* v = get(k); if (!v) return def;
    if (!v->is_number()) bad(k, "must be a number");
    return v->num;
  }
  int64_t integer(const std::string& k) const {
    double d = num(k);
    if (d != std::floor(d) || d < 0) bad(k, "must be a non-negative integer");
    return int64_t(d);
  }
  int64_t integer(const std::string& k, int64_t def) const { return get(k) ? integer(k) : def; }
  bool boolean(const std::string& k, bool def) const {
    const Json* v = get(k); if (!v) return def;
    if (!v->is_bool()) bad(k, "must be true or false");
    return v->b;
  }
  std::string str(const std::string& k, const std::string& def) const {
    const Json* v = get(k); if (!v) return def;
    if (!v->is_string()) bad(k, "must be a string");
    return v->str;
  }
  // An int or a per-layer list of ints (Hunyuan writes num_experts/moe_topk/... either way).
  int64_t per_layer(const std::string& k, int layer, int num_layers) const {
    const Json* v = get(k); if (!v) missing(k);
    if (v->is_number()) return int64_t(v->num);
    if (!v->is_array()) bad(k, "must be a number or a list");
    if (v->arr.empty()) bad(k, "is an empty list");
    if (int(v->arr.size()) != num_layers && v->arr.size() != 1)
      bad(k, "has " + std::to_string(v->arr.size()) + " entries but there are " + std::to_string(num_layers) + " layers");
    const Json& e = v->arr.size() == 1 ? v->arr[0] : v->arr[size_t(layer)];
    if (!e.is_number()) bad(k, "entries must be numbers");
    return int64_t(e.num);
  }
  const char* first_of(std::initializer_list<const char*> ks) const {
    for (auto k : ks) if (get(k)) return k;
    return nullptr;
  }
};

void parse_rope(const Reader& r, ModelSpec& s, double default_theta) {
  RopeSpec& rope = s.rope;
  // transformers-5 dialect: rope_parameters (holds rope_theta); classic: rope_theta + rope_scaling.
  const Json* rp = r.get("rope_parameters");
  if (!rp) rp = r.get("rope_scaling");
  rope.theta = r.num("rope_theta", default_theta);
  if (rp && !rp->is_object()) r.bad(r.get("rope_parameters") ? "rope_parameters" : "rope_scaling", "must be an object");
  std::string type = "default";
  if (rp) {
    Reader q{*rp, r.src};
    rope.theta = q.num("rope_theta", rope.theta);
    type = q.str("rope_type", q.str("type", "default"));
    rope.factor = q.num("factor", 1.0);
    rope.alpha = q.num("alpha", 0.0);
    rope.original_max_position = q.num("original_max_position_embeddings", r.num("original_max_position_embeddings", double(s.max_position)));
    rope.low_freq_factor = q.num("low_freq_factor", 1.0);
    rope.high_freq_factor = q.num("high_freq_factor", 4.0);
    rope.beta_fast = q.num("beta_fast", 32.0); if (rope.beta_fast == 0) rope.beta_fast = 32;
    rope.beta_slow = q.num("beta_slow", 1.0); if (rope.beta_slow == 0) rope.beta_slow = 1;
    rope.mscale = q.num("mscale", 0.0);
    rope.mscale_all_dim = q.num("mscale_all_dim", 0.0);
    rope.attention_factor = q.num("attention_factor", -1.0);
    rope.truncate = q.boolean("truncate", true);
    rope.partial_rotary_factor = q.num("partial_rotary_factor", r.num("partial_rotary_factor", 1.0));
    if (type == "dynamic" && rope.alpha > 0) type = "ntk_alpha";  // Hunyuan: {type: dynamic, alpha: ...}
    if (type == "llama3") {
      if (!q.get("factor")) r.bad("rope_scaling", "llama3 needs 'factor'");
    }
    if ((type == "linear" || type == "dynamic" || type == "yarn") && !q.get("factor"))
      r.bad(r.get("rope_parameters") ? "rope_parameters" : "rope_scaling", "type '" + type + "' needs 'factor'");
  }
  static const char* known[] = {"default", "linear", "dynamic", "ntk_alpha", "llama3", "yarn"};
  if (std::find(std::begin(known), std::end(known), type) == std::end(known))
    r.bad(r.get("rope_parameters") ? "rope_parameters" : "rope_scaling",
          "has rope type '" + type + "'; supported: default, linear, dynamic, llama3, yarn, dynamic with alpha (NTK-alpha)");
  if (rope.partial_rotary_factor != 1.0) r.bad("partial_rotary_factor", "is not supported (must be 1.0)");
  rope.type = type;
}

}  // namespace

ModelSpec parse_model_spec(const Json& config, const std::string& source) {
  if (!config.is_object()) throw std::runtime_error(source + ": not a JSON object");
  Reader r{config, source};
  ModelSpec s;
  if (!r.get("model_type")) r.missing("model_type");
  s.model_type = r.str("model_type", "");
  const Json* arch = r.get("architectures");
  s.architecture = (arch && arch->is_array() && !arch->arr.empty() && arch->arr[0].is_string()) ? arch->arr[0].str : s.model_type;
  const auto& sup = supported_model_types();
  if (std::find(sup.begin(), sup.end(), s.model_type) == sup.end()) {
    std::string list;
    for (auto& t : sup) list += (list.empty() ? "" : ", ") + t;
    throw std::runtime_error(source + ": model_type '" + s.model_type + "' is not supported; supported: " + list);
  }
  const std::string& mt = s.model_type;
  s.hidden = r.integer("hidden_size");
  s.num_layers = int(r.integer("num_hidden_layers"));
  s.num_heads = int(r.integer("num_attention_heads"));
  s.vocab = r.integer("vocab_size");
  s.intermediate = r.integer("intermediate_size");
  s.num_kv_heads = int(r.integer("num_key_value_heads", s.num_heads));
  s.max_position = r.integer("max_position_embeddings", 2048);
  s.rms_eps = r.num("rms_norm_eps", 1e-6);
  if (s.hidden <= 0 || s.num_layers <= 0 || s.num_heads <= 0 || s.vocab <= 0) r.bad("hidden_size", "and layer/head/vocab counts must be positive");
  if (s.num_kv_heads <= 0 || s.num_heads % s.num_kv_heads != 0)
    r.bad("num_key_value_heads", "(" + std::to_string(s.num_kv_heads) + ") must divide num_attention_heads (" + std::to_string(s.num_heads) + ")");
  // Hunyuan-Large has no head_dim field: hidden / heads.
  s.head_dim = (mt == "hunyuan") ? int(s.hidden / s.num_heads) : int(r.integer("head_dim", s.hidden / s.num_heads));
  if (s.head_dim <= 0 || s.head_dim % 2) r.bad("head_dim", "must be a positive even number");
  s.tie_embeddings = r.boolean("tie_word_embeddings", mt == "hunyuan");
  s.dtype = r.str("dtype", r.str("torch_dtype", ""));
  parse_rope(r, s, mt == "mixtral" ? 1e6 : 10000.0);

  if (mt == "qwen3" || mt == "qwen3_moe") s.qk_norm = QkNorm::PerHeadBeforeRope;
  else if (mt == "olmoe") { s.qk_norm = QkNorm::FullBeforeRope; s.clip_qkv = r.num("clip_qkv", 0.0); }
  else if (mt == "hunyuan_v1_moe") s.qk_norm = QkNorm::PerHeadAfterRope;
  else if (mt == "hunyuan") s.qk_norm = r.boolean("use_qk_norm", true) ? QkNorm::PerHeadAfterRope : QkNorm::None;

  if (const Json* e = r.get("eos_token_id")) {
    if (e->is_number()) s.eos_ids.push_back(int(e->num));
    else if (e->is_array()) for (auto& x : e->arr) if (x.is_number()) s.eos_ids.push_back(int(x.num));
  }

  s.layers.resize(size_t(s.num_layers));
  const int L = s.num_layers;
  for (int i = 0; i < L; ++i) {
    LayerSpec& l = s.layers[size_t(i)];
    if (mt == "mixtral") {
      l.moe = true;
      const char* ke = r.first_of({"num_local_experts", "num_experts"});
      l.num_experts = int(r.integer(ke ? ke : "num_local_experts"));
      l.top_k = int(r.integer("num_experts_per_tok"));
      l.expert_inter = s.intermediate;
      l.renorm_topk = true;
    } else if (mt == "qwen2_moe" || mt == "qwen3_moe") {
      int step = int(r.integer("decoder_sparse_step", 1));
      bool only_mlp = false;
      if (const Json* m = r.get("mlp_only_layers")) {
        if (!m->is_array()) r.bad("mlp_only_layers", "must be a list");
        for (auto& x : m->arr) if (x.is_number() && int(x.num) == i) only_mlp = true;
      }
      // transformers-5 writes num_local_experts for qwen3_moe; classic configs num_experts.
      const char* ke = r.first_of({"num_experts", "num_local_experts"});
      int E = int(r.integer(ke ? ke : "num_experts"));
      l.moe = !only_mlp && E > 0 && step > 0 && (i + 1) % step == 0;
      if (l.moe) {
        l.num_experts = E;
        l.top_k = int(r.integer("num_experts_per_tok"));
        l.expert_inter = r.integer("moe_intermediate_size");
        l.renorm_topk = r.boolean("norm_topk_prob", false);
        if (mt == "qwen2_moe") {
          l.shared_inter = r.integer("shared_expert_intermediate_size", 0);
          if (l.shared_inter > 0) { s.shared = SharedExpert::SigmoidGated; s.num_shared_experts = 1; }
        }
      }
    } else if (mt == "olmoe") {
      l.moe = true;
      const char* ke = r.first_of({"num_experts", "num_local_experts"});
      l.num_experts = int(r.integer(ke ? ke : "num_experts"));
      l.top_k = int(r.integer("num_experts_per_tok"));
      l.expert_inter = s.intermediate;
      l.renorm_topk = r.boolean("norm_topk_prob", false);
    } else if (mt == "hunyuan_v1_moe") {
      // transformers' HunYuanMoEV1: experts and the shared MLP both use intermediate_size; always renormalises.
      l.moe = true;
      const char* ke = r.first_of({"num_experts", "num_local_experts"});
      const char* kk = r.first_of({"moe_topk", "num_experts_per_tok"});
      l.num_experts = int(r.per_layer(ke ? ke : "num_experts", i, L));
      l.top_k = int(r.per_layer(kk ? kk : "moe_topk", i, L));
      l.expert_inter = s.intermediate;
      l.shared_inter = s.intermediate;
      l.renorm_topk = true;
      s.shared = SharedExpert::Ungated; s.num_shared_experts = 1;
    } else if (mt == "hunyuan") {
      // Hunyuan-Large: routed experts + an ungated shared MLP of intermediate_size * num_shared_expert;
      // top-1 keeps the raw softmax probability, top-k > 1 renormalises.
      l.moe = true;
      l.num_experts = int(r.per_layer("num_experts", i, L));
      l.top_k = int(r.per_layer("moe_topk", i, L));
      l.expert_inter = r.get("moe_intermediate_size") ? r.per_layer("moe_intermediate_size", i, L) : s.intermediate;
      int nsh = r.get("num_shared_expert") ? int(r.per_layer("num_shared_expert", i, L)) : 1;
      if (!r.boolean("use_mixed_mlp_moe", true)) nsh = 0;
      l.shared_inter = s.intermediate * nsh;
      if (nsh > 0) { s.shared = SharedExpert::Ungated; s.num_shared_experts = std::max(s.num_shared_experts, nsh); }
      l.renorm_topk = l.top_k > 1;
    }
    if (l.moe) {
      if (l.num_experts <= 0 || l.top_k <= 0 || l.top_k > l.num_experts)
        throw std::runtime_error(source + ": layer " + std::to_string(i) + " has " + std::to_string(l.num_experts) +
                                 " experts and top-k " + std::to_string(l.top_k) + " (need 1 <= top-k <= experts)");
      if (l.expert_inter <= 0) r.bad("moe_intermediate_size", "must be positive");
    }
  }
  // CLA (Hunyuan-Large): layers with i % f != 0 reuse the k/v of the last layer with i % f == 0.
  if (mt == "hunyuan" && r.boolean("use_cla", false)) s.cla_share_factor = int(r.integer("cla_share_factor", 1));
  if (s.cla_share_factor < 1) r.bad("cla_share_factor", "must be >= 1");
  int slot = -1;
  for (int i = 0; i < L; ++i) {
    LayerSpec& l = s.layers[size_t(i)];
    l.has_kv = (i % s.cla_share_factor) == 0;
    if (l.has_kv) ++slot;
    l.kv_slot = slot;
  }
  s.num_kv_slots = slot + 1;
  return s;
}

std::vector<int> parse_generation_eos(const Json& gen) {
  std::vector<int> ids;
  if (const Json* e = gen.find("eos_token_id")) {
    if (e->is_number()) ids.push_back(int(e->num));
    else if (e->is_array()) for (auto& x : e->arr) if (x.is_number()) ids.push_back(int(x.num));
  }
  return ids;
}

}  // namespace moe
