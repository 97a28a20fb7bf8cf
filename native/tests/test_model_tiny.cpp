// A tiny llama written by the test: weight binding errors, and session behaviour (prefix reuse, decode equals
// prefill, seeded sampling, context overflow, empty prompt).
#include "tests/test.h"
#include "tests/test_format_util.h"
#include <atomic>
#include "model/model.h"
#include "runtime/session.h"

using namespace moe;
using namespace moe_test;

static const int V = 32, D = 16, H = 4, KV = 2, HD = 4, I = 24, L = 2;

static std::vector<StTensor> tiny_llama(uint32_t seed) {
  std::vector<StTensor> t;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, float scale, bool ones = false) {
    int64_t k = 1; for (auto d : shape) k *= d;
    t.push_back({n, shape, ones ? std::vector<float>(size_t(k), 1.0f) : randn(size_t(k), seed++, scale)});
  };
  add("model.embed_tokens.weight", {V, D}, 1.0f);
  add("model.norm.weight", {D}, 0, true);
  add("lm_head.weight", {V, D}, 0.25f);
  for (int l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {D}, 0, true);
    add(p + "post_attention_layernorm.weight", {D}, 0, true);
    add(p + "self_attn.q_proj.weight", {H * HD, D}, 0.25f);
    add(p + "self_attn.k_proj.weight", {KV * HD, D}, 0.25f);
    add(p + "self_attn.v_proj.weight", {KV * HD, D}, 0.25f);
    add(p + "self_attn.o_proj.weight", {D, H * HD}, 0.25f);
    add(p + "mlp.gate_proj.weight", {I, D}, 0.25f);
    add(p + "mlp.up_proj.weight", {I, D}, 0.25f);
    add(p + "mlp.down_proj.weight", {D, I}, 0.2f);
  }
  return t;
}

static std::string write_tiny(const std::string& name, std::vector<StTensor> ts) {
  std::string d = temp_dir(name);
  write_file(d + "/config.json", R"({"model_type": "llama", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 32, "intermediate_size": 24, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "eos_token_id": 31})");
  write_file(d + "/model.safetensors", safetensors_bytes(ts));
  return d;
}

TEST(model_binding_errors) {
  auto ts = tiny_llama(1);
  ts.erase(ts.begin() + 3);  // model.layers.0.input_layernorm.weight
  CHECK_THROWS(Model::load(write_tiny("missing", ts), 1), "model.layers.0.input_layernorm.weight: missing");
  ts = tiny_llama(1);
  for (auto& t : ts) if (t.name == "model.layers.1.mlp.gate_proj.weight") t.shape = {D, I};
  CHECK_THROWS(Model::load(write_tiny("shape", ts), 1), "model.layers.1.mlp.gate_proj.weight has shape [16,24], expected [24,16]");
  std::string d = temp_dir("noconfig");
  CHECK_THROWS(Model::load(d, 1), "config.json: missing");
}

TEST(runtime_session_prefill_decode_prefix_reuse) {
  auto m = Model::load(write_tiny("session", tiny_llama(7)), 2);
  CHECK(m->eos_ids() == std::vector<int>({31}));
  Session s(m, 64, 4);  // chunk 4 so prefill spans several forward calls
  std::vector<int32_t> prompt = {1, 5, 9, 2, 7, 3, 11};
  std::vector<float> all;
  s.logits(prompt, all);
  // Decode path: prefill the first 6 ids, then one token at a time must equal the batched logits.
  std::atomic<bool> cancel{false};
  SamplingParams p; p.temperature = 0; p.max_tokens = 6;
  GenerateResult r1 = s.generate(prompt, p, nullptr, cancel);
  CHECK(r1.ids.size() == 6 && r1.reused_tokens == 6);  // whole prompt cached by logits(): re-run the last token
  CHECK(int64_t(s.cached_ids().size()) == int64_t(prompt.size() + 6));
  // greedy first token = argmax of the batched logits' last row
  int best = 0; for (int j = 1; j < V; ++j) if (all[size_t(6 * V + j)] > all[size_t(6 * V + best)]) best = j;
  CHECK(r1.ids[0] == best);
  // extend the conversation: only the new tokens are prefilled, and the result equals a fresh session's
  std::vector<int32_t> next = prompt; next.insert(next.end(), r1.ids.begin(), r1.ids.end()); next.push_back(4); next.push_back(8);
  GenerateResult r2 = s.generate(next, p, nullptr, cancel);
  CHECK(r2.reused_tokens == int64_t(prompt.size() + 6));
  Session fresh(m, 64, 64);
  GenerateResult r3 = fresh.generate(next, p, nullptr, cancel);
  CHECK(r3.reused_tokens == 0 && r2.ids == r3.ids);
  // seeded sampling reproducible across sessions
  SamplingParams q; q.temperature = 1.0f; q.top_p = 0.95f; q.seed = 5; q.max_tokens = 8;
  s.reset(); fresh.reset();
  CHECK(s.generate(prompt, q, nullptr, cancel).ids == fresh.generate(prompt, q, nullptr, cancel).ids);
  // cancel before the first token
  cancel = true;
  CHECK(s.generate(prompt, q, nullptr, cancel).stop == GenerateResult::Stop::Cancelled);
  cancel = false;
  // errors
  CHECK_THROWS(s.generate({}, p, nullptr, cancel), "prompt is empty");
  Session small(m, 5, 4);
  CHECK_THROWS(small.generate(prompt, p, nullptr, cancel), "prompt has 7 tokens but the context is 5");
  CHECK_THROWS(s.generate({1, 99}, p, nullptr, cancel), "token id 99 is out of range");
  m->close();
  CHECK_THROWS(s.generate(prompt, p, nullptr, cancel), "closed");
}
