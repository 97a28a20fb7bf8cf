// PEFT adapter folders in and out: adapter_config.json + adapter_model.safetensors exactly as peft 0.21 on
// transformers 5 writes them for a LoRA, mapped to and from the engine's Adapter (train/lora.h).
//
// Names (all under "base_model.model."; tensors are <module>.lora_A.weight [r, in] and <module>.lora_B.weight [out, r]):
//   model.layers.N.self_attn.{q,k,v,o}_proj            attention (no k/v on Hunyuan-Large's CLA layers)
//   model.layers.N.mlp.{gate,up,down}_proj             dense MLP
//   model.layers.N.mlp.shared_expert.{gate,up,down}_proj   qwen2_moe's shared expert
//   model.layers.N.mlp.shared_mlp.{gate,up,down}_proj      hunyuan's shared MLP (target_modules or 2-D target_parameters)
//   model.layers.N.mlp.experts.E.{gate,up,down}_proj   routed experts, separate layout (transformers 4, Hunyuan-Large);
//   model.layers.N.block_sparse_moe.experts.E.{w1,w3,w2}   the same on Mixtral (transformers 4: gate, up, down; what
//       peft 0.21 converts onto transformers 5's fused experts). Written as the model's family names them, read
//       in either spelling.
//   fused experts (peft target_parameters on transformers 5's 3-D mlp.experts.gate_up_proj [E, 2F, H] / down_proj
//   [E, H, F]; peft's ParamWrapper, tuners/lora/layer.py):
//       lora_A [E·r, in]  expert-major: rows e·r .. e·r+r-1 are expert e's A      (A.reshape(E, r, in))
//       lora_B [out, r·E] rank-major:   column k·E + e is expert e's rank-k column (B.reshape(out, r, E))
//       ΔW_e = s · B_e · A_e in the parameter's [out, in] orientation; gate_up rows [0, F) gate, [F, 2F) up.
//     When both gate_up_proj and down_proj of a layer are targeted, peft nests the wrappers: gate_up_proj is the inner
//     one (model.layers.N.mlp.experts.base_layer), down_proj the outer (model.layers.N.mlp.experts); when only one
//     is targeted it is model.layers.N.mlp.experts. (Checked against the goldens' golden.json adapter_tensors.)
//
// peft_modules() is the one table of these names: load, save and adapter_tensors (the `grad` command) all use it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include "format/config.h"
#include "train/lora.h"

namespace moe {

enum class LoraSite : uint8_t {
  Q, K, V, O,                       // LayerLora::q k v o
  Gate, Up, Down,                   // dense MLP
  ExpertsGateUp, ExpertsDown,       // fused: one peft module over all experts -> ExpertLora::gate_up / down
  ExpertGate, ExpertUp, ExpertDown, // separate: one peft module per expert -> ExpertLora::gate / up / down
  SharedGate, SharedUp, SharedDown, // LayerLora::sh_*
};

// One peft LoRA module: a pair of tensors in adapter_model.safetensors.
struct PeftModule {
  std::string name;                  // "base_model.model.model.layers.0.self_attn.q_proj"
  std::vector<std::string> aliases;  // other names read (never written): Mixtral's block_sparse_moe.experts.E.w1 ...
  std::string adapts;                // the model parameter it adapts: "model.layers.0.mlp.experts.gate_up_proj",
                                     // "model.layers.0.self_attn.q_proj.weight" (what target_parameters match)
  std::string short_name;            // for messages: "q_proj", "experts.gate_up_proj", "experts.3.gate_proj"
  int layer = 0;
  LoraSite site = LoraSite::Q;
  int expert = -1;                   // separate layout: the expert; else -1
  int experts = 0;                   // fused: E (tensors pack E pairs); 0: a plain pair
  int64_t in = 0, out = 0;           // of one pair (fused gate_up: out = 2F)
  bool fused() const { return experts > 0; }
};

// Every module peft could adapt on this model, layer by layer: attention, dense MLP, the fused expert modules that
// target_parameters target (their names depend on the nesting, see above), the per-expert modules of the separate
// layout, the shared expert. Which layout a layer's ExpertLora::down belongs to is decided per layer: fused when the
// experts have gate_up pairs (or no gate/up pairs and the config targets the layer's fused down_proj).
std::vector<PeftModule> peft_modules(const ModelSpec& spec, const std::vector<std::string>& target_parameters);

// The pair a module fills in a layer (for fused modules, expert e's); nullptr when the layer has no such expert.
LoraPair* module_pair(LayerLora& L, const PeftModule& m, int e = 0);
const LoraPair* module_pair(const LayerLora& L, const PeftModule& m, int e = 0);

// peft's target matching: `key` == t or ends with "." + t.
bool peft_target_matches(const std::string& key, const std::string& t);

// Reads dir/adapter_config.json and dir/adapter_model.safetensors (f32, f16 or bf16; widened to f32) into an Adapter
// for `spec`, every tensor shape-checked against the model. Refuses what the engine cannot run as peft would
// (DoRA, bias, rank/alpha patterns, modules_to_save, layers_to_transform, pickle .bin files, ...). Errors name the
// file and the tensor or field; model_dir_for_messages names the model ("the model at <dir>").
Adapter load_adapter(const std::string& dir, const ModelSpec& spec, const std::string& model_dir_for_messages);

// Reads a safetensors file that holds a tensor for every tensor of `layout` under peft's names and shapes (e.g. the
// goldens' grads.safetensors: d loss / d every adapter tensor) into an Adapter with layout's pairs: the inverse of
// adapter_tensors(layout, spec, &payload). Errors name the file and the tensor or pair.
Adapter load_adapter_tensors(const std::string& safetensors_path, const Adapter& layout, const ModelSpec& spec);

// A tensor under peft's name, shape and packing.
struct PeftTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Every tensor of `layout` under peft's names, packed as peft packs them, sorted by name (peft's file order). The
// names, shapes and packing come from `layout`; the numbers from `payload`:
//   nullptr (default)   the layout's own A and B (what save_adapter writes);
//   a parallel Adapter  same pairs present with the same r/in/out, holding e.g. gradients in A/B: the `grad` command
//                       prints d loss / d every adapter tensor under peft's names (as grads.safetensors has them);
//   a PairPayload       any other storage: called with each present pair of `layout`, returns its r·in and out·r
//                       floats (row-major, as LoraPair::A / B).
struct PairData { const std::vector<float>* A = nullptr; const std::vector<float>* B = nullptr; };
using PairPayload = std::function<PairData(const LoraPair& pair)>;
std::vector<PeftTensor> adapter_tensors(const Adapter& layout, const ModelSpec& spec, const Adapter* payload = nullptr);
std::vector<PeftTensor> adapter_tensors(const Adapter& layout, const ModelSpec& spec, const PairPayload& payload);

// The config peft would write for `a` (targets derived from the adapter when a.config lists none).
LoraConfig adapter_effective_config(const Adapter& a, const ModelSpec& spec);

// adapter_config.json's text, as peft 0.21's save_pretrained writes it (json.dumps(indent=2, sort_keys=True)).
std::string adapter_config_json(const Adapter& a, const ModelSpec& spec, const std::string& base_model_name_or_path);

// safetensors bytes as the `safetensors` package writes them (sorted names, __metadata__ {"format":"pt"}, header
// padded with spaces to 8 bytes), f32.
std::string safetensors_f32_bytes(const std::vector<PeftTensor>& ts);

// Writes dir/adapter_config.json and dir/adapter_model.safetensors into a temporary folder beside dir, then renames
// it to dir (an existing dir is replaced only once the new one is complete).
void save_adapter(const std::string& dir, const Adapter& a, const ModelSpec& spec, const std::string& base_model_name_or_path);

}  // namespace moe
