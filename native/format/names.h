// The one table of Hugging Face tensor names: for a parsed config.json (format/config.h), the name of every tensor
// by its role, and the inverse, a classifier name -> {role, layer, expert}. The Binder (model/), the adapter and
// merged-weights writers (io/), the quantizer (quant/writer) and, through binding/names.cpp, the GGUF exporter
// (electron/gguf/arch.ts) all ask here, so a family's naming is one row in names.cpp.
//
// Two on-disk forms of a MoE layer's routed experts are named:
//   PerExpert  the hub's layout: <block>.experts.E.<gate|up|down> [F, H] / [H, F], with the family's block prefix
//              (Mixtral's block_sparse_moe, else mlp) and projection names (Mixtral's w1/w3/w2, else *_proj);
//   Fused      transformers 5's in-memory parameters, as some tools save them: mlp.experts.gate_up_proj [E, 2F, H]
//              (gate rows first) and mlp.experts.down_proj [E, H, F], the block always under "mlp" (transformers 5
//              renames Mixtral's block_sparse_moe), or the same stacked but unfused: mlp.experts.gate_proj /
//              up_proj [E, F, H] (Stacked).
// A layer's router and shared expert live under the block of its form.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>
#include "format/config.h"

namespace moe {

enum class HubRole : uint8_t {
  Unknown,
  Embedding, FinalNorm, LmHead,
  InputNorm, PostAttnNorm,
  Q, K, V, O, QNorm, KNorm,
  MlpGate, MlpUp, MlpDown,                 // dense SwiGLU MLP
  Router,                                  // [E, H]
  ExpertGate, ExpertUp, ExpertDown,        // one routed expert, PerExpert form
  ExpertsGateUp, ExpertsGate, ExpertsUp,   // all experts of a layer: Fused [E, 2F, H] / Stacked [E, F, H]
  ExpertsDown,                             // Fused and Stacked [E, H, F]
  SharedGate, SharedUp, SharedDown,        // qwen2_moe's shared_expert, hunyuan's shared_mlp
  SharedExpertGate,                        // qwen2_moe's sigmoid gate [1, H]
};

enum class ExpertForm : uint8_t { PerExpert, Fused, Stacked };

// "q_proj", "router", "experts.gate_up_proj", ...: the role's name in messages and in the addon's answer.
const char* role_name(HubRole r);

// What a tensor name is. `bias`: the ".bias" of the role's nn.Linear (only Linear roles have one).
struct TensorRef {
  HubRole role = HubRole::Unknown;
  int layer = -1;     // -1: not in a layer
  int expert = -1;    // PerExpert experts only
  bool bias = false;
  ExpertForm form = ExpertForm::PerExpert;  // expert tensors and the router/shared expert: the form they belong to
  bool known() const { return role != HubRole::Unknown; }
};

// One tensor the model has (or may have).
struct TensorEntry {
  std::string name;
  TensorRef ref;
  bool optional = false;  // biases; lm_head of a tied model
};

class TensorNames {
 public:
  struct Family;  // one row of names.cpp's table
  explicit TensorNames(const ModelSpec& spec);

  // The name of a role ("model.layers.3.self_attn.q_proj.weight"); "" when the model (or that layer, or that form)
  // has no such tensor. Expert roles take `expert` (PerExpert) or name the whole layer's tensor (Fused/Stacked).
  std::string name(HubRole role, int layer = -1, int expert = -1, ExpertForm form = ExpertForm::PerExpert, bool bias = false) const;

  // The role of a name in any form; Unknown for a name this model has no place for.
  TensorRef classify(const std::string& name) const;

  // The form a MoE layer's experts are stored in, from what the folder holds (`has` answers for a tensor name).
  ExpertForm expert_form(int layer, const std::function<bool(const std::string&)>& has) const;

  // Every tensor of the model with layer i's experts in forms[i] (forms empty: every layer PerExpert), in order:
  // embedding, layers, final norm, lm_head.
  std::vector<TensorEntry> expected(const std::vector<ExpertForm>& forms = {}) const;

  // The spellings of a per-expert projection transformers-4 tools wrote across families, this family's first:
  // {block, gate, up, down} ({"mlp", "gate_proj", "up_proj", "down_proj"}, {"block_sparse_moe", "w1", "w3", "w2"}).
  struct ExpertSpelling { std::string block, proj[3]; };
  std::vector<ExpertSpelling> expert_spellings() const;

  // The fused form's expert parameters relative to their layer, gate_up then down ("mlp.experts.gate_up_proj",
  // "mlp.experts.down_proj"): what peft's target_parameters name on transformers 5.
  static std::vector<std::string> fused_expert_params();

  const ModelSpec& spec() const { return S_; }

 private:
  ModelSpec S_;
  const Family* fam_;
  // per layer: layer-relative name -> ref (PerExpert expert names are parsed, not listed)
  std::vector<std::unordered_map<std::string, TensorRef>> layer_names_;
  std::string layer_rel(HubRole role, int layer, ExpertForm form) const;
};

}  // namespace moe
