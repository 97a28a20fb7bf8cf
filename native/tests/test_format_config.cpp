#include "tests/test.h"
#include "format/config.h"

using namespace moe;

static ModelSpec spec_of(const std::string& js) { return parse_model_spec(json_parse(js, "config.json"), "config.json"); }

static const char* BASE = R"("hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
  "vocab_size": 100, "intermediate_size": 128, "max_position_embeddings": 256, "rms_norm_eps": 1e-5)";

TEST(format_config_dialects) {
  // classic: rope_theta + rope_scaling{type}, torch_dtype
  ModelSpec a = spec_of(std::string("{\"model_type\": \"llama\", ") + BASE +
                        R"(, "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0}, "torch_dtype": "bfloat16"})");
  CHECK(a.rope.type == "linear" && a.rope.theta == 500000.0 && a.rope.factor == 2.0 && a.dtype == "bfloat16");
  CHECK(a.head_dim == 16 && a.num_kv_heads == 2 && a.qk_norm == QkNorm::None && !a.is_moe());
  // transformers-5: rope_parameters{rope_type, rope_theta}, dtype
  ModelSpec b = spec_of(std::string("{\"model_type\": \"qwen3\", \"head_dim\": 32, ") + BASE +
                        R"(, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 64}, "dtype": "float32"})");
  CHECK(b.rope.type == "yarn" && b.rope.theta == 1e6 && b.rope.original_max_position == 64 && b.dtype == "float32");
  CHECK(b.head_dim == 32 && b.qk_norm == QkNorm::PerHeadBeforeRope);
  ModelSpec c = spec_of(std::string("{\"model_type\": \"qwen2\", ") + BASE + "}");
  CHECK(c.rope.type == "default" && c.rope.theta == 10000.0);
}

TEST(format_config_errors) {
  CHECK_THROWS(spec_of(R"({"model_type": "llama", "num_hidden_layers": 2})"), "config.json: missing field 'hidden_size'");
  CHECK_THROWS(spec_of(R"({"hidden_size": 8})"), "config.json: missing field 'model_type'");
  CHECK_THROWS(spec_of(std::string("{\"model_type\": \"foo\", ") + BASE + "}"),
               "config.json: model_type 'foo' is not supported; supported: llama, qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe, olmoe, hunyuan_v1_moe, hunyuan");
  CHECK_THROWS(spec_of(std::string("{\"model_type\": \"mixtral\", ") + BASE + "}"), "missing field 'num_local_experts'");
  CHECK_THROWS(spec_of(std::string("{\"model_type\": \"llama\", ") + BASE + R"(, "rope_scaling": {"type": "longrope"}})"), "rope type 'longrope'");
  CHECK_THROWS(spec_of(std::string("{\"model_type\": \"llama\", \"num_key_value_heads\": 3, ") +
                       R"("hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 8})"),
               "num_key_value_heads");
}

TEST(format_config_moe_families) {
  ModelSpec q = spec_of(std::string("{\"model_type\": \"qwen2_moe\", ") + BASE +
                        R"(, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 96,
                            "decoder_sparse_step": 2, "mlp_only_layers": [3], "norm_topk_prob": false})");
  CHECK(!q.layers[0].moe && q.layers[1].moe && !q.layers[2].moe && !q.layers[3].moe);
  CHECK(q.layers[1].num_experts == 8 && q.layers[1].top_k == 2 && q.layers[1].expert_inter == 32 && q.layers[1].shared_inter == 96);
  CHECK(q.shared == SharedExpert::SigmoidGated && !q.layers[1].renorm_topk);
  ModelSpec o = spec_of(std::string("{\"model_type\": \"olmoe\", ") + BASE + R"(, "num_experts": 8, "num_experts_per_tok": 2})");
  CHECK(o.qk_norm == QkNorm::FullBeforeRope && !o.layers[0].renorm_topk && o.layers[0].expert_inter == 128);
  ModelSpec h = spec_of(std::string("{\"model_type\": \"hunyuan_v1_moe\", ") + BASE +
                        R"(, "num_experts": [4, 4, 8, 8], "moe_topk": [1, 1, 2, 2], "rope_scaling": {"type": "dynamic", "alpha": 1000.0}})");
  CHECK(h.layers[0].num_experts == 4 && h.layers[3].num_experts == 8 && h.layers[3].top_k == 2);
  CHECK(h.rope.type == "ntk_alpha" && h.rope.alpha == 1000.0 && h.qk_norm == QkNorm::PerHeadAfterRope && h.shared == SharedExpert::Ungated);
}

TEST(format_config_hunyuan_large_cla) {
  ModelSpec h = spec_of(R"({"model_type": "hunyuan", "architectures": ["HunYuanForCausalLM"], "hidden_size": 64, "num_hidden_layers": 5,
      "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "intermediate_size": 32, "head_dim": 99,
      "num_experts": 16, "moe_topk": 1, "num_shared_expert": 1, "use_cla": true, "cla_share_factor": 2, "use_qk_norm": true,
      "rope_scaling": {"type": "dynamic", "alpha": 1000.0, "factor": 1.0}})");
  CHECK(h.architecture == "HunYuanForCausalLM");
  CHECK(h.head_dim == 16);            // hidden / heads: Hunyuan-Large ignores head_dim
  CHECK(h.tie_embeddings);            // released configs tie
  CHECK(h.num_kv_slots == 3);         // layers 0,2,4 own k/v; 1 and 3 reuse
  CHECK(h.layers[1].has_kv == false && h.layers[1].kv_slot == 0 && h.layers[2].kv_slot == 1 && h.layers[4].kv_slot == 2);
  CHECK(!h.layers[0].renorm_topk && h.layers[0].shared_inter == 32);
  CHECK(h.rope.type == "ntk_alpha");
}

TEST(format_config_generation_eos) {
  CHECK(parse_generation_eos(json_parse(R"({"eos_token_id": [1, 7]})", "g")) == std::vector<int>({1, 7}));
  CHECK(parse_generation_eos(json_parse(R"({"eos_token_id": 3})", "g")) == std::vector<int>({3}));
  CHECK(parse_generation_eos(json_parse(R"({})", "g")).empty());
}
