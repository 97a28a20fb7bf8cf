#include "format/config.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include "format/limits.h"

namespace moe {

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> t = {"llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe",
                                             "olmoe", "hunyuan_v1_moe", "hunyuan"};
  return t;
}

namespace {

// How a config value is shown in errors: integers as written, others as %g ("1e+300", "0.5", "nan").
std::string show(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(int64_t(d));
  char b[32];
  std::snprintf(b, sizeof b, "%g", d);
  return b;
}
std::string show(const Json& v) {
  if (v.is_number()) return show(v.num);
  if (v.is_string()) return "a string";
  if (v.is_bool()) return v.b ? "true" : "false";
  if (v.is_array()) return "a list";
  if (v.is_object()) return "an object";
  return "null";
}

struct Reader {
  const Json& j;
  const std::string& src;
  [[noreturn]] void missing(const std::string& k) const { throw std::runtime_error(src + ": missing field '" + k + "'"); }
  [[noreturn]] void bad(const std::string& k, const std::string& why) const { throw std::runtime_error(src + ": field '" + k + "' " + why); }
  // "config.json: hidden_size = 1e+300 is not an integer in [1, 1048576]"
  [[noreturn]] void out_of_range(const std::string& k, const std::string& value, int64_t lo, int64_t hi) const {
    throw std::runtime_error(src + ": " + k + " = " + value + " is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
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
  // A finite number in [lo, hi] (lo_open: > lo). Floats that feed RoPE tables and norms: NaN/inf would poison every logit.
  double finite(const std::string& k, double def, double lo, double hi, bool lo_open = false) const {
    const Json* v = get(k); if (!v) return def;
    if (!v->is_number()) bad(k, "must be a number, got " + show(*v));
    const double d = v->num;
    if (!std::isfinite(d) || (lo_open ? !(d > lo) : !(d >= lo)) || !(d <= hi))
      throw std::runtime_error(src + ": " + k + " = " + show(d) + " is not a finite number in " + (lo_open ? "(" : "[") + show(lo) + ", " + show(hi) + "]");
    return d;
  }
  static int64_t checked_int(const Json& v, int64_t lo, int64_t hi, bool& ok) {
    ok = v.is_number() && std::isfinite(v.num) && v.num == std::floor(v.num) && v.num >= double(lo) && v.num <= double(hi);
    return ok ? int64_t(v.num) : 0;
  }
  int64_t integer(const std::string& k, int64_t lo, int64_t hi) const {
    const Json* v = get(k); if (!v) missing(k);
    bool ok; int64_t n = checked_int(*v, lo, hi, ok);
    if (!ok) out_of_range(k, show(*v), lo, hi);
    return n;
  }
  int64_t integer(const std::string& k, int64_t def, int64_t lo, int64_t hi) const { return get(k) ? integer(k, lo, hi) : def; }
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
  // An int or a per-layer list of ints (Hunyuan writes num_experts/moe_topk/... either way), each in [lo, hi].
  int64_t per_layer(const std::string& k, int layer, int num_layers, int64_t lo, int64_t hi) const {
    const Json* v = get(k); if (!v) missing(k);
    const Json* e = v;
    std::string name = k;
    if (v->is_array()) {
      if (v->arr.empty()) bad(k, "is an empty list");
      if (int64_t(v->arr.size()) != num_layers && v->arr.size() != 1)
        bad(k, "has " + std::to_string(v->arr.size()) + " entries but there are " + std::to_string(num_layers) + " layers");
      const size_t at = v->arr.size() == 1 ? 0 : size_t(layer);
      e = &v->arr[at];
      name = k + "[" + std::to_string(at) + "]";
    } else if (!v->is_number()) {
      bad(k, "must be a number or a list");
    }
    bool ok; int64_t n = checked_int(*e, lo, hi, ok);
    if (!ok) out_of_range(name, show(*e), lo, hi);
    return n;
  }
  const char* first_of(std::initializer_list<const char*> ks) const {
    for (auto k : ks) if (get(k)) return k;
    return nullptr;
  }
};

void parse_rope(const Reader& r, ModelSpec& s, double default_theta) {
  RopeSpec& rope = s.rope;
  constexpr double kBig = 1e300;  // "finite": the bound that matters is the lower one
  // transformers-5 dialect: rope_parameters (holds rope_theta); classic: rope_theta + rope_scaling.
  const Json* rp = r.get("rope_parameters");
  if (!rp) rp = r.get("rope_scaling");
  rope.theta = r.finite("rope_theta", default_theta, 0, kBig, true);
  if (rp && !rp->is_object()) r.bad(r.get("rope_parameters") ? "rope_parameters" : "rope_scaling", "must be an object");
  std::string type = "default";
  if (rp) {
    const std::string where = r.get("rope_parameters") ? "rope_parameters" : "rope_scaling";
    const std::string src = r.src + ": " + where;   // errors read "config.json: rope_scaling: factor = -1 is not ..."
    Reader q{*rp, src};
    rope.theta = q.finite("rope_theta", rope.theta, 0, kBig, true);
    type = q.str("rope_type", q.str("type", "default"));
    rope.factor = q.finite("factor", 1.0, 0, kBig, true);
    rope.alpha = q.finite("alpha", 0.0, 0, kBig);
    rope.original_max_position = q.finite("original_max_position_embeddings",
                                          r.finite("original_max_position_embeddings", double(s.max_position), 0, double(kMaxPositions), true),
                                          0, double(kMaxPositions), true);
    rope.low_freq_factor = q.finite("low_freq_factor", 1.0, 0, kBig, true);
    rope.high_freq_factor = q.finite("high_freq_factor", 4.0, 0, kBig, true);
    rope.beta_fast = q.finite("beta_fast", 32.0, 0, kBig); if (rope.beta_fast == 0) rope.beta_fast = 32;
    rope.beta_slow = q.finite("beta_slow", 1.0, 0, kBig); if (rope.beta_slow == 0) rope.beta_slow = 1;
    rope.mscale = q.finite("mscale", 0.0, -kBig, kBig);
    rope.mscale_all_dim = q.finite("mscale_all_dim", 0.0, -kBig, kBig);
    rope.attention_factor = q.finite("attention_factor", -1.0, -kBig, kBig);
    rope.truncate = q.boolean("truncate", true);
    rope.partial_rotary_factor = q.finite("partial_rotary_factor", r.finite("partial_rotary_factor", 1.0, 0, 1, true), 0, 1, true);
    if (type == "dynamic" && rope.alpha > 0) type = "ntk_alpha";  // Hunyuan: {type: dynamic, alpha: ...}
    if (type == "llama3") {
      if (!q.get("factor")) r.bad("rope_scaling", "llama3 needs 'factor'");
      // the smooth ramp divides by (high - low)
      if (!(rope.high_freq_factor > rope.low_freq_factor))
        r.bad(where, "llama3 needs high_freq_factor (" + show(rope.high_freq_factor) + ") > low_freq_factor (" + show(rope.low_freq_factor) + ")");
    }
    if ((type == "linear" || type == "dynamic" || type == "yarn") && !q.get("factor"))
      r.bad(where, "type '" + type + "' needs 'factor'");
  }
  static const char* known[] = {"default", "linear", "dynamic", "ntk_alpha", "llama3", "yarn"};
  if (std::find(std::begin(known), std::end(known), type) == std::end(known))
    r.bad(r.get("rope_parameters") ? "rope_parameters" : "rope_scaling",
          "has rope type '" + type.substr(0, 40) + "'; supported: default, linear, dynamic, llama3, yarn, dynamic with alpha (NTK-alpha)");
  if (!rp) rope.partial_rotary_factor = r.finite("partial_rotary_factor", 1.0, 0, 1, true);
  if (rope.partial_rotary_factor != 1.0) r.bad("partial_rotary_factor", "is not supported (must be 1.0)");
  // NTK scaling raises the base to d/(d-2): d = 2 would divide by zero
  if ((type == "dynamic" || type == "ntk_alpha") && s.head_dim <= 2) r.bad("head_dim", "must be > 2 for dynamic / NTK-alpha RoPE");
  rope.type = type;
}

// eos_token_id: an int or a list of ints, each a token id (an int32); anything else names the field.
std::vector<int> eos_ids_of(const Json& j, const std::string& source) {
  std::vector<int> ids;
  const Json* e = j.find("eos_token_id");
  if (!e || e->is_null()) return ids;
  Reader r{j, source};
  auto one = [&](const Json& x, const std::string& name) {
    bool ok; const int64_t id = Reader::checked_int(x, 0, INT32_MAX, ok);
    if (!ok) r.out_of_range(name, show(x), 0, INT32_MAX);
    ids.push_back(int(id));
  };
  if (e->is_array()) for (size_t i = 0; i < e->arr.size(); ++i) one(e->arr[i], "eos_token_id[" + std::to_string(i) + "]");
  else one(*e, "eos_token_id");
  return ids;
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
    throw std::runtime_error(source + ": model_type '" + s.model_type.substr(0, 64) + "' is not supported; supported: " + list);
  }
  const std::string& mt = s.model_type;
  s.hidden = r.integer("hidden_size", 1, kMaxHidden);
  s.num_layers = int(r.integer("num_hidden_layers", 1, kMaxLayers));
  s.num_heads = int(r.integer("num_attention_heads", 1, kMaxHeads));
  s.vocab = r.integer("vocab_size", 1, kMaxVocab);
  // MoE families may leave intermediate_size unused (0); a layer that needs it is checked below
  s.intermediate = r.integer("intermediate_size", 0, kMaxIntermediate);
  s.num_kv_heads = int(r.integer("num_key_value_heads", s.num_heads, 1, kMaxHeads));
  s.max_position = r.integer("max_position_embeddings", 2048, 1, kMaxPositions);
  s.rms_eps = r.finite("rms_norm_eps", 1e-6, 0, 1, true);
  if (s.num_heads % s.num_kv_heads != 0)
    r.bad("num_key_value_heads", "(" + std::to_string(s.num_kv_heads) + ") must divide num_attention_heads (" + std::to_string(s.num_heads) + ")");
  // Hunyuan-Large has no head_dim field: hidden / heads.
  if (mt == "hunyuan" || !r.get("head_dim")) {
    if (s.hidden % s.num_heads != 0)
      r.bad("hidden_size", "(" + std::to_string(s.hidden) + ") must be a multiple of num_attention_heads (" + std::to_string(s.num_heads) +
                               ") when there is no head_dim");
    s.head_dim = int(s.hidden / s.num_heads);
  } else {
    s.head_dim = int(r.integer("head_dim", 2, kMaxHeadDim));
  }
  if (s.head_dim < 2 || s.head_dim > kMaxHeadDim || s.head_dim % 2)
    r.bad("head_dim", "must be an even number in [2, " + std::to_string(kMaxHeadDim) + "], got " + std::to_string(s.head_dim));
  if (int64_t(s.num_heads) * s.head_dim > kMaxAttentionWidth)
    r.bad("num_attention_heads", "(" + std::to_string(s.num_heads) + ") x head_dim (" + std::to_string(s.head_dim) + ") = " +
                                 std::to_string(int64_t(s.num_heads) * s.head_dim) + " is over the limit of " + std::to_string(kMaxAttentionWidth));
  s.tie_embeddings = r.boolean("tie_word_embeddings", mt == "hunyuan");
  s.dtype = r.str("dtype", r.str("torch_dtype", ""));
  parse_rope(r, s, mt == "mixtral" ? 1e6 : 10000.0);

  if (mt == "qwen3" || mt == "qwen3_moe") s.qk_norm = QkNorm::PerHeadBeforeRope;
  else if (mt == "olmoe") { s.qk_norm = QkNorm::FullBeforeRope; s.clip_qkv = r.finite("clip_qkv", 0.0, 0, 1e300); }
  else if (mt == "hunyuan_v1_moe") s.qk_norm = QkNorm::PerHeadAfterRope;
  else if (mt == "hunyuan") s.qk_norm = r.boolean("use_qk_norm", true) ? QkNorm::PerHeadAfterRope : QkNorm::None;

  s.eos_ids = eos_ids_of(config, source);

  s.layers.resize(size_t(s.num_layers));
  const int L = s.num_layers;
  for (int i = 0; i < L; ++i) {
    LayerSpec& l = s.layers[size_t(i)];
    if (mt == "mixtral") {
      l.moe = true;
      const char* ke = r.first_of({"num_local_experts", "num_experts"});
      l.num_experts = int(r.integer(ke ? ke : "num_local_experts", 1, kMaxExperts));
      l.top_k = int(r.integer("num_experts_per_tok", 1, kMaxExperts));
      l.expert_inter = s.intermediate;
      l.renorm_topk = true;
    } else if (mt == "qwen2_moe" || mt == "qwen3_moe") {
      int step = int(r.integer("decoder_sparse_step", 1, 0, L));
      bool only_mlp = false;
      if (const Json* m = r.get("mlp_only_layers")) {
        if (!m->is_array()) r.bad("mlp_only_layers", "must be a list");
        for (size_t k = 0; k < m->arr.size(); ++k) {
          bool ok; const int64_t at = Reader::checked_int(m->arr[k], 0, L - 1, ok);
          if (!ok) r.out_of_range("mlp_only_layers[" + std::to_string(k) + "]", show(m->arr[k]), 0, L - 1);
          if (at == i) only_mlp = true;
        }
      }
      // transformers-5 writes num_local_experts for qwen3_moe; classic configs num_experts.
      const char* ke = r.first_of({"num_experts", "num_local_experts"});
      int E = int(r.integer(ke ? ke : "num_experts", 0, kMaxExperts));  // 0: a dense model in MoE clothing
      l.moe = !only_mlp && E > 0 && step > 0 && (i + 1) % step == 0;
      if (l.moe) {
        l.num_experts = E;
        l.top_k = int(r.integer("num_experts_per_tok", 1, kMaxExperts));
        l.expert_inter = r.integer("moe_intermediate_size", 1, kMaxIntermediate);
        l.renorm_topk = r.boolean("norm_topk_prob", false);
        if (mt == "qwen2_moe") {
          l.shared_inter = r.integer("shared_expert_intermediate_size", 0, 0, kMaxIntermediate);
          if (l.shared_inter > 0) { s.shared = SharedExpert::SigmoidGated; s.num_shared_experts = 1; }
        }
      }
    } else if (mt == "olmoe") {
      l.moe = true;
      const char* ke = r.first_of({"num_experts", "num_local_experts"});
      l.num_experts = int(r.integer(ke ? ke : "num_experts", 1, kMaxExperts));
      l.top_k = int(r.integer("num_experts_per_tok", 1, kMaxExperts));
      l.expert_inter = s.intermediate;
      l.renorm_topk = r.boolean("norm_topk_prob", false);
    } else if (mt == "hunyuan_v1_moe") {
      // transformers' HunYuanMoEV1: experts and the shared MLP both use intermediate_size; always renormalises.
      l.moe = true;
      const char* ke = r.first_of({"num_experts", "num_local_experts"});
      const char* kk = r.first_of({"moe_topk", "num_experts_per_tok"});
      l.num_experts = int(r.per_layer(ke ? ke : "num_experts", i, L, 1, kMaxExperts));
      l.top_k = int(r.per_layer(kk ? kk : "moe_topk", i, L, 1, kMaxExperts));
      l.expert_inter = s.intermediate;
      l.shared_inter = s.intermediate;
      l.renorm_topk = true;
      s.shared = SharedExpert::Ungated; s.num_shared_experts = 1;
    } else if (mt == "hunyuan") {
      // Hunyuan-Large: routed experts + an ungated shared MLP of intermediate_size * num_shared_expert;
      // top-1 keeps the raw softmax probability, top-k > 1 renormalises.
      l.moe = true;
      l.num_experts = int(r.per_layer("num_experts", i, L, 1, kMaxExperts));
      l.top_k = int(r.per_layer("moe_topk", i, L, 1, kMaxExperts));
      l.expert_inter = r.get("moe_intermediate_size") ? r.per_layer("moe_intermediate_size", i, L, 1, kMaxIntermediate) : s.intermediate;
      int nsh = r.get("num_shared_expert") ? int(r.per_layer("num_shared_expert", i, L, 0, kMaxSharedExperts)) : 1;
      if (!r.boolean("use_mixed_mlp_moe", true)) nsh = 0;
      l.shared_inter = s.intermediate * nsh;
      if (nsh > 0) { s.shared = SharedExpert::Ungated; s.num_shared_experts = std::max(s.num_shared_experts, nsh); }
      l.renorm_topk = l.top_k > 1;
    }
    if (l.moe) {
      if (l.num_experts <= 0 || l.top_k <= 0 || l.top_k > l.num_experts)
        throw std::runtime_error(source + ": layer " + std::to_string(i) + " has " + std::to_string(l.num_experts) +
                                 " experts and top-k " + std::to_string(l.top_k) + " (need 1 <= top-k <= experts)");
      if (l.expert_inter <= 0) r.bad(mt == "mixtral" || mt == "olmoe" || mt == "hunyuan_v1_moe" ? "intermediate_size" : "moe_intermediate_size",
                                     "must be positive for the experts of layer " + std::to_string(i));
    } else if (s.intermediate <= 0) {
      r.out_of_range("intermediate_size", show(double(s.intermediate)), 1, kMaxIntermediate);  // layer i is a dense MLP
    }
    if (l.shared_inter > kMaxIntermediate)  // hunyuan: intermediate_size x num_shared_expert
      r.bad("intermediate_size", "x num_shared_expert = " + std::to_string(l.shared_inter) + " is over the limit of " + std::to_string(kMaxIntermediate));
  }
  // CLA (Hunyuan-Large): layers with i % f != 0 reuse the k/v of the last layer with i % f == 0.
  if (mt == "hunyuan" && r.boolean("use_cla", false)) s.cla_share_factor = int(r.integer("cla_share_factor", 1, 1, L));
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

std::vector<int> parse_generation_eos(const Json& gen, const std::string& source) { return eos_ids_of(gen, source); }

}  // namespace moe
