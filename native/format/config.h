// Hugging Face config.json -> ModelSpec: everything the architecture-neutral model needs to know, for every
// family in DESIGN.md's table, from either config dialect:
//   classic:         rope_theta, rope_scaling {type|rope_type, factor, ...}, torch_dtype
//   transformers-5:  rope_parameters {rope_type, rope_theta, factor, ...}, dtype
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "format/json.h"

namespace moe {

enum class QkNorm : uint8_t {
  None,
  PerHeadBeforeRope,   // qwen3, qwen3_moe: RMSNorm(head_dim) on each head, then RoPE
  FullBeforeRope,      // olmoe: RMSNorm over the whole q (H*hd) / k (Hkv*hd) projection, then head split + RoPE
  PerHeadAfterRope,    // hunyuan_v1_moe, hunyuan (Large): RoPE, then RMSNorm(head_dim) per head
};

enum class SharedExpert : uint8_t {
  None,
  SigmoidGated,        // qwen2_moe: shared_expert(x) * sigmoid(shared_expert_gate(x))
  Ungated,             // hunyuan: shared_mlp(x) added as is
};

struct RopeSpec {
  std::string type = "default";  // default | linear | dynamic | ntk_alpha | llama3 | yarn
  double theta = 10000.0;
  double factor = 1.0;
  double alpha = 0.0;                        // ntk_alpha
  double original_max_position = 0;          // llama3, yarn
  double low_freq_factor = 1, high_freq_factor = 4;  // llama3
  double beta_fast = 32, beta_slow = 1;      // yarn
  double mscale = 0, mscale_all_dim = 0;     // yarn (0 = absent)
  double attention_factor = -1;              // yarn; < 0 = derive from factor/mscale
  bool truncate = true;                      // yarn
  double partial_rotary_factor = 1.0;
};

struct LayerSpec {
  bool moe = false;        // sparse MoE block (else a dense SwiGLU MLP of intermediate_size)
  int num_experts = 0;
  int top_k = 0;
  int64_t expert_inter = 0;   // intermediate size of one routed expert
  int64_t shared_inter = 0;   // intermediate size of the shared MLP (0 = none)
  bool has_kv = true;         // false: CLA layer that reuses the k/v projections of kv_source
  int kv_slot = 0;            // KV-cache entry this layer reads/writes (CLA groups share one)
  bool renorm_topk = false;   // renormalise the top-k routing weights to sum to 1
};

struct ModelSpec {
  std::string model_type, architecture;
  int num_layers = 0;
  int64_t hidden = 0, vocab = 0, intermediate = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t max_position = 0;
  double rms_eps = 1e-6;
  bool tie_embeddings = false;
  std::string dtype;            // declared torch_dtype/dtype ("" if absent)
  RopeSpec rope;
  QkNorm qk_norm = QkNorm::None;
  SharedExpert shared = SharedExpert::None;
  int num_shared_experts = 0;
  int cla_share_factor = 1;     // Hunyuan-Large cross-layer attention (1 = off)
  double clip_qkv = 0;          // olmoe: clamp q, k (after their norms) and v to [-clip, clip]; 0 = off
  int num_kv_slots = 0;         // KV-cache entries (= layers without CLA)
  std::vector<LayerSpec> layers;
  std::vector<int> eos_ids;     // config.json eos_token_id (int or list)

  bool is_moe() const { for (auto& l : layers) if (l.moe) return true; return false; }
  int max_experts() const { int m = 0; for (auto& l : layers) if (l.num_experts > m) m = l.num_experts; return m; }
  int max_top_k() const { int m = 0; for (auto& l : layers) if (l.top_k > m) m = l.top_k; return m; }
};

// Families we run, in the order listed in error messages.
const std::vector<std::string>& supported_model_types();

// `source` names the file in errors ("config.json: missing field 'hidden_size'"). Every count and size is checked
// against format/limits.h, naming the field, the value and the allowed range.
ModelSpec parse_model_spec(const Json& config, const std::string& source = "config.json");

// eos ids from generation_config.json (int or list of token ids); empty when absent; `source` names the file.
std::vector<int> parse_generation_eos(const Json& gen, const std::string& source = "generation_config.json");

}  // namespace moe
