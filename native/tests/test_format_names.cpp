// native/format/names.*: the one table of Hugging Face tensor names.
//
// 1. Every fixture model folder (test/fixtures/models/*): each tensor of its safetensors is classified exactly once
//    (no unknown name, no two names on one {role, layer, expert, bias}), and every tensor the table expects exists.
// 2. The name a classified tensor maps back to is the tensor's own name (classify and name are inverses).
// 3. The transformers-5 fused form (mlp.experts.gate_up_proj, Mixtral's block under mlp) is classified as such, and its
//    per-expert (hub) names are the fixture's; names the model has no place for are reported unknown.
// 4. The peft names io/adapter derives from the table are unchanged: every training golden's adapter
//    (test/fixtures/goldens/train/*/adapter, written by peft 0.21) loads and packs back under exactly its file's names.
#include <filesystem>
#include <map>
#include <set>
#include <tuple>
#include "format/config.h"
#include "format/json.h"
#include "format/names.h"
#include "format/safetensors.h"
#include "io/adapter.h"
#include "tests/test.h"
#include "tests/test_format_util.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

ModelSpec spec_of(const fs::path& dir) { return parse_model_spec(json_parse_file((dir / "config.json").string())); }

std::vector<fs::path> fixture_models() {
  std::vector<fs::path> v;
  for (auto& e : fs::directory_iterator(moe_test::fixture_models_dir()))
    if (e.is_directory() && fs::exists(e.path() / "config.json")) v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST(names_classify_every_fixture_tensor_once_and_expect_only_what_exists) {
  const std::vector<fs::path> models = fixture_models();
  CHECK(models.size() >= 9);
  for (const fs::path& dir : models) {
    const ModelSpec S = spec_of(dir);
    const TensorNames N(S);
    const TensorStore st(dir.string());
    std::set<std::tuple<int, int, int, bool>> seen;
    int unknown = 0, twice = 0, back = 0;
    for (auto& [name, t] : st.all()) {
      const TensorRef r = N.classify(name);
      if (!r.known()) { ++unknown; std::fprintf(stderr, "    %s: unknown %s\n", dir.filename().c_str(), name.c_str()); continue; }
      if (!seen.insert({int(r.role), r.layer, r.expert, r.bias}).second) { ++twice; std::fprintf(stderr, "    %s: twice %s\n", dir.filename().c_str(), name.c_str()); }
      if (N.name(r.role, r.layer, r.expert, r.form, r.bias) != name) { ++back; std::fprintf(stderr, "    %s: %s names back as %s\n", dir.filename().c_str(), name.c_str(), N.name(r.role, r.layer, r.expert, r.form, r.bias).c_str()); }
    }
    CHECK(unknown == 0);
    CHECK(twice == 0);
    CHECK(back == 0);
    // every required tensor exists, and every stored tensor is one the table lists
    std::set<std::string> listed;
    int missing = 0;
    for (const TensorEntry& e : N.expected()) {
      listed.insert(e.name);
      CHECK(N.classify(e.name).role == e.ref.role);
      if (!e.optional && !st.find(e.name)) { ++missing; std::fprintf(stderr, "    %s: missing %s\n", dir.filename().c_str(), e.name.c_str()); }
    }
    CHECK(missing == 0);
    for (auto& [name, t] : st.all()) CHECK(listed.count(name) == 1);
    // the per-expert form is what the hub folders hold
    for (int i = 0; i < S.num_layers; ++i)
      if (S.layers[size_t(i)].moe) CHECK(N.expert_form(i, [&](const std::string& n) { return st.find(n) != nullptr; }) == ExpertForm::PerExpert);
  }
}

TEST(names_per_family_spellings_and_the_fused_form) {
  const fs::path root = moe_test::fixture_models_dir();
  {
    const ModelSpec S = spec_of(root / "mixtral");
    const TensorNames N(S);
    CHECK(N.name(HubRole::Router, 1) == "model.layers.1.block_sparse_moe.gate.weight");
    CHECK(N.name(HubRole::ExpertUp, 1, 7) == "model.layers.1.block_sparse_moe.experts.7.w3.weight");
    // transformers 5 moves Mixtral's block to mlp and fuses the experts
    CHECK(N.name(HubRole::Router, 1, -1, ExpertForm::Fused) == "model.layers.1.mlp.gate.weight");
    const TensorRef gu = N.classify("model.layers.1.mlp.experts.gate_up_proj");
    CHECK(gu.role == HubRole::ExpertsGateUp && gu.layer == 1 && gu.form == ExpertForm::Fused);
    CHECK(N.classify("model.layers.1.mlp.gate.weight").role == HubRole::Router);
    CHECK(N.expert_form(1, [](const std::string& n) { return n == "model.layers.1.mlp.experts.gate_up_proj"; }) == ExpertForm::Fused);
    // another family's spelling, an expert past the config's count, a layer past the last, a non-canonical index
    CHECK(!N.classify("model.layers.1.mlp.experts.0.gate_proj.weight").known());
    CHECK(!N.classify("model.layers.1.block_sparse_moe.experts." + std::to_string(S.layers[1].num_experts) + ".w1.weight").known());
    CHECK(!N.classify("model.layers." + std::to_string(S.num_layers) + ".input_layernorm.weight").known());
    CHECK(!N.classify("model.layers.01.input_layernorm.weight").known());
    CHECK(!N.classify("model.layers.1.self_attn.q_norm.weight").known());  // mixtral has no q/k norms
    CHECK(N.expert_spellings().size() == 2 && N.expert_spellings()[0].proj[0] == "w1");
  }
  {
    const ModelSpec S = spec_of(root / "qwen2_moe");
    const TensorNames N(S);
    int dense = -1, moe = -1;
    for (int i = 0; i < S.num_layers; ++i) (S.layers[size_t(i)].moe ? moe : dense) = i;
    CHECK(dense >= 0 && moe >= 0);
    CHECK(N.name(HubRole::SharedExpertGate, moe) == "model.layers." + std::to_string(moe) + ".mlp.shared_expert_gate.weight");
    CHECK(N.name(HubRole::SharedExpertGate, dense).empty());
    CHECK(N.classify("model.layers." + std::to_string(dense) + ".mlp.gate_proj.weight").role == HubRole::MlpGate);
    CHECK(!N.classify("model.layers." + std::to_string(moe) + ".mlp.gate_proj.weight").known());  // not in a MoE layer
    CHECK(N.classify("model.layers." + std::to_string(moe) + ".mlp.gate.weight").role == HubRole::Router);
    CHECK(N.expert_spellings()[0].block == "mlp");
  }
  {
    const ModelSpec S = spec_of(root / "hunyuan_large");
    const TensorNames N(S);
    CHECK(N.name(HubRole::Router, 0) == "model.layers.0.mlp.gate.wg.weight");
    CHECK(N.name(HubRole::SharedDown, 0) == "model.layers.0.mlp.shared_mlp.down_proj.weight");
    CHECK(N.name(HubRole::QNorm, 0) == "model.layers.0.self_attn.query_layernorm.weight");
    // CLA: layers that reuse another layer's k/v have no k_proj / v_proj of their own
    int cla = -1;
    for (int i = 0; i < S.num_layers; ++i) if (!S.layers[size_t(i)].has_kv) cla = i;
    CHECK(cla > 0);
    if (cla > 0) {
      CHECK(N.name(HubRole::K, cla).empty() && N.name(HubRole::V, cla).empty());
      CHECK(!N.classify("model.layers." + std::to_string(cla) + ".self_attn.k_proj.weight").known());
      CHECK(N.name(HubRole::KNorm, cla) == "model.layers." + std::to_string(cla) + ".self_attn.key_layernorm.weight");
    }
    // tied: lm_head is listed, but optional
    bool lm = false;
    for (auto& e : N.expected()) if (e.ref.role == HubRole::LmHead && !e.ref.bias) lm = e.optional;
    CHECK(S.tie_embeddings && lm);
  }
  {
    const ModelSpec S = spec_of(root / "qwen2");
    const TensorNames N(S);
    const TensorRef b = N.classify("model.layers.0.self_attn.q_proj.bias");
    CHECK(b.role == HubRole::Q && b.bias && b.layer == 0);
    CHECK(!N.classify("model.embed_tokens.bias").known());
    CHECK(!N.classify("model.layers.0.self_attn.q_norm.weight").known());
    CHECK(!N.classify("transformer.h.0.attn.c_attn.weight").known());
  }
  CHECK_THROWS(TensorNames([] { ModelSpec s; s.model_type = "gpt2"; return s; }()), "no tensor names for model_type \"gpt2\"");
}

TEST(names_peft_names_of_every_golden_adapter_are_unchanged) {
  const fs::path root = moe_test::fixture_models_dir().parent_path() / "goldens" / "train";
  int n = 0;
  for (auto& e : fs::directory_iterator(root)) {
    const fs::path ad = e.path() / "adapter";
    if (!fs::exists(ad / "adapter_model.safetensors")) continue;
    const fs::path model = moe_test::fixture_models_dir() / e.path().filename();
    const ModelSpec S = spec_of(model);
    const Adapter a = load_adapter(ad.string(), S, model.string());
    std::vector<std::string> ours, peft;
    for (const PeftTensor& t : adapter_tensors(a, S)) ours.push_back(t.name);
    const SafeTensorsFile f((ad / "adapter_model.safetensors").string());
    for (const TensorView& t : f.tensors()) peft.push_back(t.name);
    std::sort(ours.begin(), ours.end());
    std::sort(peft.begin(), peft.end());
    CHECK(!peft.empty());
    if (ours != peft) std::fprintf(stderr, "    %s: peft names differ\n", e.path().filename().c_str());
    CHECK(ours == peft);
    // every module adapts a weight the table knows under the role of its site
    const TensorNames N(S);
    for (const PeftModule& m : peft_modules(S, a.config.target_parameters)) CHECK(N.classify(m.adapts).known());
    ++n;
  }
  CHECK(n >= 9);
}
