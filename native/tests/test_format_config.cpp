#include "tests/test.h"
#include "format/config.h"
#include "format/limits.h"
#include "cpu/thread_pool.h"

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

// BASE with one field replaced (or added) by `field: value`.
static std::string with(const std::string& model_type, const std::string& field, const std::string& value, const std::string& extra = "") {
  std::string base = BASE;
  const std::string key = "\"" + field + "\": ";
  size_t at = base.find(key);
  if (at != std::string::npos) {
    size_t end = std::min(base.find_first_of(",}", at), base.size());
    base = base.substr(0, at) + key + value + base.substr(end);
  } else {
    base += ", " + key + value;
  }
  return "{\"model_type\": \"" + model_type + "\", " + base + extra + "}";
}

TEST(format_config_counts_name_the_field_the_value_and_the_range) {
  CHECK_THROWS(spec_of(with("llama", "num_hidden_layers", "2147483647")), "config.json: num_hidden_layers = 2147483647 is not an integer in [1, 4096]");
  CHECK_THROWS(spec_of(with("llama", "hidden_size", "1e300")), "config.json: hidden_size = 1e+300 is not an integer in [1, 1048576]");
  CHECK_THROWS(spec_of(with("llama", "hidden_size", "0")), "config.json: hidden_size = 0 is not an integer in [1, 1048576]");
  CHECK_THROWS(spec_of(with("llama", "hidden_size", "64.5")), "hidden_size = 64.5 is not an integer");
  CHECK_THROWS(spec_of(with("llama", "hidden_size", "\"64\"")), "hidden_size = a string is not an integer");
  CHECK_THROWS(spec_of(with("llama", "vocab_size", "1e10")), "config.json: vocab_size = 10000000000 is not an integer in [1, 16777216]");
  CHECK_THROWS(spec_of(with("llama", "intermediate_size", "-5")), "config.json: intermediate_size = -5 is not an integer in [0, 4194304]");
  CHECK_THROWS(spec_of(with("llama", "intermediate_size", "0")), "config.json: intermediate_size = 0 is not an integer in [1, 4194304]");
  CHECK_THROWS(spec_of(with("llama", "max_position_embeddings", "1e9")), "max_position_embeddings = 1000000000 is not an integer in [1, 16777216]");
  CHECK_THROWS(spec_of(with("llama", "num_attention_heads", "NaN")), "num_attention_heads = nan is not an integer");
  CHECK_THROWS(spec_of(with("llama", "num_key_value_heads", "0")), "num_key_value_heads = 0 is not an integer in [1, 4096]");
  // heads that do not divide, head_dim x heads over the limit, a hidden size that heads do not split
  CHECK_THROWS(spec_of(with("llama", "num_key_value_heads", "3")), "num_key_value_heads' (3) must divide num_attention_heads (4)");
  CHECK_THROWS(spec_of(with("qwen3", "num_attention_heads", "4096", ", \"num_key_value_heads\": 4096, \"head_dim\": 4096")),
               "x head_dim (4096) = 16777216 is over the limit of 1048576");
  CHECK_THROWS(spec_of(with("llama", "hidden_size", "66")), "hidden_size' (66) must be a multiple of num_attention_heads (4)");
  CHECK_THROWS(spec_of(with("qwen3", "head_dim", "7")), "head_dim' must be an even number in [2, 4096], got 7");
  CHECK_THROWS(spec_of(with("llama", "rms_norm_eps", "0")), "rms_norm_eps = 0 is not a finite number in (0, 1]");
  CHECK_THROWS(spec_of(with("llama", "eos_token_id", "1e20")), "eos_token_id = 1e+20 is not an integer in [0, 2147483647]");
  CHECK_THROWS(spec_of(with("llama", "eos_token_id", "[1, -2]")), "eos_token_id[1] = -2 is not an integer");
}

TEST(format_config_experts_and_top_k) {
  CHECK_THROWS(spec_of(with("mixtral", "num_local_experts", "0", ", \"num_experts_per_tok\": 1")), "num_local_experts = 0 is not an integer in [1, 16384]");
  CHECK_THROWS(spec_of(with("mixtral", "num_local_experts", "4", ", \"num_experts_per_tok\": 5")), "has 4 experts and top-k 5 (need 1 <= top-k <= experts)");
  CHECK_THROWS(spec_of(with("mixtral", "num_local_experts", "1e6", ", \"num_experts_per_tok\": 1")), "num_local_experts = 1000000 is not an integer in [1, 16384]");
  CHECK_THROWS(spec_of(with("qwen3_moe", "num_experts", "8", ", \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 1e300")),
               "moe_intermediate_size = 1e+300 is not an integer in [1, 4194304]");
  CHECK_THROWS(spec_of(with("qwen2_moe", "num_experts", "8", ", \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 8, \"mlp_only_layers\": [9]")),
               "mlp_only_layers[0] = 9 is not an integer in [0, 3]");
  CHECK_THROWS(spec_of(with("hunyuan_v1_moe", "num_experts", "[4, 4, 1e300, 8]", ", \"moe_topk\": 1")), "num_experts[2] = 1e+300 is not an integer in [1, 16384]");
  CHECK_THROWS(spec_of(with("hunyuan_v1_moe", "num_experts", "4", ", \"moe_topk\": [1, 1, 1, 9]")), "layer 3 has 4 experts and top-k 9");
  CHECK_THROWS(spec_of(with("hunyuan", "num_experts", "4", ", \"moe_topk\": 1, \"use_cla\": true, \"cla_share_factor\": 0")),
               "cla_share_factor = 0 is not an integer in [1, 4]");
}

TEST(format_config_rope_values_are_finite_and_positive) {
  CHECK_THROWS(spec_of(with("llama", "rope_theta", "-1")), "config.json: rope_theta = -1 is not a finite number in (0, 1e+300]");
  CHECK_THROWS(spec_of(with("llama", "rope_theta", "Infinity")), "rope_theta = inf is not a finite number");
  CHECK_THROWS(spec_of(with("olmoe", "clip_qkv", "NaN", ", \"num_experts\": 4, \"num_experts_per_tok\": 2")), "clip_qkv = nan is not a finite number in [0,");
  CHECK_THROWS(spec_of(with("llama", "rope_scaling", R"({"type": "linear", "factor": 0})")), "config.json: rope_scaling: factor = 0 is not a finite number in (0");
  CHECK_THROWS(spec_of(with("llama", "rope_scaling", R"({"type": "linear", "factor": NaN})")), "rope_scaling: factor = nan is not a finite number");
  CHECK_THROWS(spec_of(with("llama", "rope_parameters", R"({"rope_type": "default", "rope_theta": 0})")), "rope_parameters: rope_theta = 0");
  CHECK_THROWS(spec_of(with("llama", "rope_scaling", R"({"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 4})")),
               "llama3 needs high_freq_factor (4) > low_freq_factor (4)");
  CHECK_THROWS(spec_of(with("llama", "rope_scaling", R"({"type": "yarn", "factor": 4, "original_max_position_embeddings": -1})")),
               "original_max_position_embeddings = -1 is not a finite number");
}

TEST(format_config_session_memory_is_checked_before_allocating) {
  ModelSpec s = spec_of(with("llama", "max_position_embeddings", "16777216"));
  // 4 layers x 2 kv heads x 16 dims x f32 x (K and V) = 1 KiB per token
  CHECK(session_bytes(s, 1, KvType::F32, 1) > 1024);
  CHECK(session_bytes(s, 1 << 20, KvType::F32, 1) >= (uint64_t(1) << 30));
  CHECK_THROWS(check_session_memory(s, 16777216, KvType::F32, 2, 256, uint64_t(1) << 30),
               "a context of 16777216 tokens needs 17");  // ~17.2e9 bytes
  CHECK_THROWS(check_session_memory(s, 16777216, KvType::F32, 2, 256, uint64_t(1) << 30), "of memory available; use a smaller context length");
  check_session_memory(s, 256, KvType::F32, 2, 256, uint64_t(1) << 30);  // small contexts pass
  // extreme (but in-limit) shapes saturate instead of wrapping around to a small number
  ModelSpec big = spec_of(R"({"model_type": "qwen3", "hidden_size": 1048576, "num_hidden_layers": 4096, "num_attention_heads": 256,
      "num_key_value_heads": 256, "head_dim": 4096, "vocab_size": 16777216, "intermediate_size": 4194304, "max_position_embeddings": 16777216})");
  CHECK(session_bytes(big, 16777216, KvType::F32, 1024) >= (uint64_t(1) << 59));  // 4096 slots x 2 x 2^24 x 2^22 bytes
  CHECK(session_bytes(big, INT64_MAX, KvType::F32, 1024) == UINT64_MAX);
  CHECK(physical_memory_bytes() > 0 && session_memory_limit_bytes() > 0);
}

TEST(format_threads_are_bounded) {
  CHECK_THROWS(check_threads(99999999), "threads must be an integer in [0, 1024] (0 = one per core), got 99999999");
  CHECK_THROWS(check_threads(-1), "got -1");
  CHECK_THROWS(check_threads(1.5), "got 1.5");
  CHECK_THROWS(check_threads(std::nan("")), "threads must be an integer");
  check_threads(0); check_threads(1024);
  // the pool checks the count before a single thread is started (not EAGAIN after thousands of pthread_create)
  CHECK_THROWS(ThreadPool(99999999), "threads must be an integer in [0, 1024]");
  CHECK_THROWS(ThreadPool(1025), "got 1025");
  ThreadPool ok(2);
  CHECK(ok.size() == 2);
}
