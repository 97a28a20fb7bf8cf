// native/io/adapter.*: peft adapter folders in and out.
//
// 1. Every training golden's adapter/ (written by peft 0.21's save_pretrained, test/fixtures/goldens/train/*/) loads
//    against its fixture model and saves back byte for byte (adapter_model.safetensors and adapter_config.json).
// 2. The fused-expert packing is peft's, not just self-consistent: expert 5's ΔW on mixtral layer 2, from the loaded
//    Adapter, equals numbers printed by peft itself (ParamWrapper.get_delta_weight on the golden adapter).
// 3. Gradients print under the same names: grads.safetensors (d loss / d every adapter tensor) read as a payload
//    and packed by adapter_tensors gives the file back.
// 4. Hostile or mismatched folders are refused with the file and the tensor/field named.
// 5. transformers-4 per-expert names (mlp.experts.N.*_proj, Mixtral's block_sparse_moe.experts.N.w1/w3/w2) load
//    into the separate layout with the numbers in the right expert and site.
// 6. The trainer's make_adapter pairs save under the golden's names; and end to end, the golden adapter through the
//    engine's forward/backward gives peft's loss and, packed by adapter_tensors, grads.safetensors (to 1.2e-5 of
//    each tensor's max: float32 noise).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include "format/config.h"
#include "format/dtype.h"
#include "format/json.h"
#include "format/safetensors.h"
#include "io/adapter.h"
#include "model/model.h"
#include "tests/test.h"
#include "tests/test_format_util.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

const char* kGoldens[] = {"llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "hunyuan_v1_moe", "hunyuan_large"};

// Temp folders of these tests, removed when the test binary exits.
struct Scratch {
  std::vector<std::string> dirs;
  ~Scratch() { for (auto& d : dirs) { std::error_code ec; fs::remove_all(d, ec); } }
};
std::string scratch(const std::string& name) {
  static Scratch s;
  s.dirs.push_back(moe_test::temp_dir(name));
  return s.dirs.back();
}

fs::path fixtures_root() {
  std::vector<fs::path> c;
  if (const char* e = std::getenv("MOE_FIXTURES")) c.push_back(e);
  c.push_back(fs::path(__FILE__).parent_path() / "../../test/fixtures");
  c.push_back("test/fixtures");
  for (auto& p : c) if (fs::exists(p / "goldens/train/llama/adapter/adapter_config.json")) return p;
  return {};
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss; ss << f.rdbuf(); return ss.str();
}

ModelSpec spec_of(const fs::path& root, const std::string& name) {
  const fs::path p = root / "models" / name / "config.json";
  return parse_model_spec(json_parse_file(p.string()), p.string());
}

bool json_equal(const Json& a, const Json& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case Json::Type::Null: return true;
    case Json::Type::Bool: return a.b == b.b;
    case Json::Type::Number: return a.num == b.num && a.is_int == b.is_int;
    case Json::Type::String: return a.str == b.str;
    case Json::Type::Array:
      if (a.arr.size() != b.arr.size()) return false;
      for (size_t i = 0; i < a.arr.size(); ++i) if (!json_equal(a.arr[i], b.arr[i])) return false;
      return true;
    case Json::Type::Object:
      if (a.obj.size() != b.obj.size()) return false;
      for (auto& [k, v] : a.obj) { const Json* w = b.find(k); if (!w || !json_equal(v, *w)) return false; }
      return true;
  }
  return false;
}

// A copy of a golden adapter folder to tamper with.
std::string copy_adapter(const fs::path& root, const std::string& name, const std::string& tag) {
  const std::string d = scratch("adapter-" + tag);
  for (auto* f : {"adapter_config.json", "adapter_model.safetensors"})
    fs::copy_file(root / "goldens/train" / name / "adapter" / f, fs::path(d) / f, fs::copy_options::overwrite_existing);
  return d;
}

void replace_in_file(const fs::path& p, const std::string& from, const std::string& to) {
  std::string s = slurp(p);
  const size_t at = s.find(from);
  CHECK(at != std::string::npos);
  if (at != std::string::npos) s.replace(at, from.size(), to);
  moe_test::write_file(p.string(), s);
}

// The golden's tensors as f32 PeftTensors (all goldens are f32).
std::vector<PeftTensor> read_tensors(const fs::path& file) {
  SafeTensorsFile f(file.string());
  std::vector<PeftTensor> out;
  for (auto& t : f.tensors()) {
    PeftTensor p{t.name, t.shape, std::vector<float>(size_t(t.numel()))};
    std::memcpy(p.data.data(), t.data, t.nbytes);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

TEST(adapter_goldens_round_trip_byte_for_byte) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  for (const char* name : kGoldens) {
    const fs::path gdir = root / "goldens/train" / name / "adapter";
    const ModelSpec spec = spec_of(root, name);
    const Adapter a = load_adapter(gdir.string(), spec, (root / "models" / name).string());
    CHECK(a.layers.size() == size_t(spec.num_layers));
    CHECK(a.config.r == 4 && a.config.alpha == 8);
    const std::string out = scratch(std::string("adapter-rt-") + name) + "/adapter";
    save_adapter(out, a, spec, "test/fixtures/models/" + std::string(name));
    // safetensors: same names, shapes, bytes, and the same file
    SafeTensorsFile want((gdir / "adapter_model.safetensors").string()), got(out + "/adapter_model.safetensors");
    CHECK(want.tensors().size() == got.tensors().size());
    for (size_t i = 0; i < want.tensors().size() && i < got.tensors().size(); ++i) {
      const TensorView &w = want.tensors()[i], &g = got.tensors()[i];
      CHECK(w.name == g.name);
      CHECK(w.shape == g.shape);
      CHECK(g.dtype == DType::F32);
      CHECK(w.nbytes == g.nbytes && std::memcmp(w.data, g.data, w.nbytes) == 0);
    }
    CHECK(got.metadata().size() == 1 && got.metadata().at("format") == "pt");
    const bool same_file = slurp(gdir / "adapter_model.safetensors") == slurp(out + "/adapter_model.safetensors");
    if (!same_file) std::fprintf(stderr, "  %s: adapter_model.safetensors differs from peft's\n", name);
    CHECK(same_file);
    // adapter_config.json: the same JSON (and the same text: peft's json.dumps(indent=2, sort_keys=True))
    const Json jw = json_parse_file((gdir / "adapter_config.json").string()), jg = json_parse_file(out + "/adapter_config.json");
    const bool same_json = json_equal(jw, jg);
    if (!same_json) std::fprintf(stderr, "  %s: adapter_config.json differs from peft's\n", name);
    CHECK(same_json);
    CHECK(slurp(gdir / "adapter_config.json") == slurp(out + "/adapter_config.json"));
    // and what was saved loads again to the same numbers
    const Adapter b = load_adapter(out, spec, name);
    CHECK(b.numel() == a.numel());
  }
}

TEST(adapter_fused_expert_packing_is_peft_s) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  const ModelSpec spec = spec_of(root, "mixtral");
  const fs::path gdir = root / "goldens/train/mixtral/adapter";
  const Adapter a = load_adapter(gdir.string(), spec, "mixtral");
  const int l = 2, e = 5, E = 8, r = 4;
  const int64_t H = 64, F = 48;
  const ExpertLora& X = a.layers[l].experts.at(e);
  CHECK(X.gate_up.present() && X.down.present() && !X.gate.present() && !X.up.present());
  CHECK(X.gate_up.in == H && X.gate_up.out == 2 * F && X.down.in == F && X.down.out == H);
  CHECK_NEAR(X.gate_up.scale, 2.0, 0);
  auto dw = [&](const LoraPair& p, int64_t o, int64_t i) {
    double s = 0;
    for (int64_t k = 0; k < p.r; ++k) s += double(p.B[size_t(o * p.r + k)]) * double(p.A[size_t(k * p.in + i)]);
    return s * p.scale;
  };
  // Printed by peft 0.21 (PeftModel.from_pretrained(mixtral fixture, this adapter); the module
  // base_model.model.model.layers.2.mlp.experts.base_layer is the ParamWrapper of gate_up_proj, .experts of down_proj;
  // get_delta_weight("default")[5] — "o r e, e r i -> e o i" — in the [E, out, in] layout of the parameter).
  const double gate_r7[4] = {0.021234167739748955, -0.007010807748883963, -0.06332148611545563, -0.029419375583529472};
  const double up_r3[4] = {-0.0007143104448914528, -0.005645951721817255, -0.034706804901361465, 0.0055107432417571545};
  const double down_r60[4] = {-0.009261609986424446, -0.0143455034121871, -0.008572420105338097, 0.0048412540927529335};
  for (int j = 0; j < 4; ++j) {
    CHECK_NEAR(dw(X.gate_up, 7, j), gate_r7[j], 1e-8);
    CHECK_NEAR(dw(X.gate_up, F + 3, 10 + j), up_r3[j], 1e-8);
    CHECK_NEAR(dw(X.down, 60, 40 + j), down_r60[j], 1e-8);
  }
  // And the unpacking written out from peft's reshapes of the raw tensors, for every expert of layer 2:
  // A.reshape(E, r, in)[e] and B.reshape(out, r, E)[:, :, e].
  SafeTensorsFile f((gdir / "adapter_model.safetensors").string());
  const float *gA = nullptr, *gB = nullptr;
  for (auto& t : f.tensors()) {
    if (t.name == "base_model.model.model.layers.2.mlp.experts.base_layer.lora_A.weight") gA = static_cast<const float*>(t.data);
    if (t.name == "base_model.model.model.layers.2.mlp.experts.base_layer.lora_B.weight") gB = static_cast<const float*>(t.data);
  }
  CHECK(gA && gB);
  if (!gA || !gB) return;
  bool ok = true;
  for (int x = 0; x < E; ++x) {
    const LoraPair& p = a.layers[l].experts[size_t(x)].gate_up;
    for (int k = 0; k < r; ++k)
      for (int64_t i = 0; i < H; ++i) ok &= p.A[size_t(k * H + i)] == gA[(x * r + k) * H + i];
    for (int64_t o = 0; o < 2 * F; ++o)
      for (int k = 0; k < r; ++k) ok &= p.B[size_t(o * r + k)] == gB[o * (r * E) + k * E + x];
  }
  CHECK(ok);
}

TEST(adapter_gradients_print_under_peft_names) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  for (const char* name : {"qwen2_moe", "hunyuan_v1_moe", "hunyuan_large"}) {
    const ModelSpec spec = spec_of(root, name);
    const fs::path g = root / "goldens/train" / name;
    const Adapter a = load_adapter((g / "adapter").string(), spec, name);
    // grads.safetensors has the adapter's names and shapes: read it as a parallel Adapter holding d loss / d A, B.
    const std::string d = copy_adapter(root, name, std::string("grads-") + name);
    fs::copy_file(g / "grads.safetensors", fs::path(d) / "adapter_model.safetensors", fs::copy_options::overwrite_existing);
    const Adapter grads = load_adapter(d, spec, name);
    const std::vector<PeftTensor> out = adapter_tensors(a, spec, &grads);
    const std::vector<PeftTensor> want = read_tensors(g / "grads.safetensors");
    CHECK(out.size() == want.size());
    bool same = out.size() == want.size();
    for (size_t i = 0; same && i < out.size(); ++i)
      same = out[i].name == want[i].name && out[i].shape == want[i].shape &&
             std::memcmp(out[i].data.data(), want[i].data.data(), out[i].data.size() * 4) == 0;
    CHECK(same);
    // load_adapter_tensors reads the file straight into the layout's pairs, the same numbers.
    const Adapter g2 = load_adapter_tensors((g / "grads.safetensors").string(), a, spec);
    const auto out2 = adapter_tensors(a, spec, &g2);
    bool same2 = out2.size() == want.size();
    for (size_t i = 0; same2 && i < out2.size(); ++i) same2 = out2[i].name == want[i].name && out2[i].data == want[i].data;
    CHECK(same2);
    // ... and refuses a file with pairs the layout lacks (or lacking some)
    auto partial = want;
    std::erase_if(partial, [](const PeftTensor& t) { return t.name.find("layers.2.self_attn.o_proj") != std::string::npos; });
    moe_test::write_file(d + "/partial.safetensors", safetensors_f32_bytes(partial));
    CHECK_THROWS(load_adapter_tensors(d + "/partial.safetensors", a, spec), "partial.safetensors: has no tensors for the adapter's pair layers.2.o");
    Adapter fewer = a;
    fewer.layers[0].q = LoraPair{};
    CHECK_THROWS(load_adapter_tensors((g / "grads.safetensors").string(), fewer, spec), "which the adapter does not have");
    // The same through a callback (gradients kept elsewhere): here each pair's numbers negated.
    std::map<const LoraPair*, std::pair<std::vector<float>, std::vector<float>>> neg;
    const_cast<Adapter&>(a).for_each([&](const std::string&, LoraPair& p) {
      if (!p.present()) return;
      auto& [A, B] = neg[&p];
      for (float x : p.A) A.push_back(-x);
      for (float x : p.B) B.push_back(-x);
    });
    const auto viaf = adapter_tensors(a, spec, [&](const LoraPair& p) { auto& v = neg.at(&p); return PairData{&v.first, &v.second}; });
    const auto plain = adapter_tensors(a, spec);
    bool negated = viaf.size() == plain.size();
    for (size_t i = 0; negated && i < viaf.size(); ++i) {
      negated = viaf[i].name == plain[i].name && viaf[i].shape == plain[i].shape;
      for (size_t k = 0; negated && k < viaf[i].data.size(); ++k) negated = viaf[i].data[k] == -plain[i].data[k];
    }
    CHECK(negated);
    // A payload that does not match the adapter is refused.
    Adapter short_g = grads;
    short_g.layers[0].q.init(2, short_g.layers[0].q.in, short_g.layers[0].q.out, 1.0f);
    CHECK_THROWS(adapter_tensors(a, spec, &short_g), "adapter payload has no pair layers.0.q of the adapter's r = 4");
  }
}

TEST(adapter_refuses_hostile_and_mismatched_folders) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  const ModelSpec llama = spec_of(root, "llama"), qwen3 = spec_of(root, "qwen3"), mixtral = spec_of(root, "mixtral");
  const std::string gl = (root / "goldens/train/llama/adapter").string();
  // an adapter for another model: llama's (q_proj [64 -> 64]) on qwen3 (q_proj 64 -> 128, o_proj takes 128)
  CHECK_THROWS(load_adapter(gl, qwen3, "models/qwen3"), "adapter_model.safetensors: base_model.model.model.layers.0.self_attn.");
  CHECK_THROWS(load_adapter(gl, qwen3, "models/qwen3"), "the model at models/qwen3");
  CHECK_THROWS(load_adapter(gl, qwen3, "models/qwen3"), "/adapter_model.safetensors: base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight "
                                                       "has shape [64,4], the model's q_proj (layer 0) gives 128 outputs");
  // llama's o_proj takes 64 inputs, qwen3's 128 (an o_proj-only adapter)
  {
    const std::string d = copy_adapter(root, "llama", "other-model");
    auto ts = read_tensors(fs::path(d) / "adapter_model.safetensors");
    std::erase_if(ts, [](const PeftTensor& t) { return t.name.find("o_proj") == std::string::npos; });
    replace_in_file(fs::path(d) / "adapter_config.json", "\"target_modules\": [", "\"target_modules\": [\"o_proj\"], \"x\": [");
    moe_test::write_file(d + "/adapter_model.safetensors", safetensors_f32_bytes(ts));
    CHECK_THROWS(load_adapter(d, qwen3, "models/qwen3"), "layers.0.self_attn.o_proj.lora_A.weight has shape [4,64], the model's o_proj (layer 0) takes 128 inputs");
  }
  // k/v on Hunyuan-Large's CLA layers (1, 3 reuse 0, 2's)
  {
    const ModelSpec hl = spec_of(root, "hunyuan_large");
    const std::string d = copy_adapter(root, "hunyuan_large", "cla");
    auto ts = read_tensors(fs::path(d) / "adapter_model.safetensors");
    ts.push_back({"base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight", {4, 64}, std::vector<float>(256)});
    moe_test::write_file(d + "/adapter_model.safetensors", safetensors_f32_bytes(ts));
    CHECK_THROWS(load_adapter(d, hl, "hunyuan_large"), "layers.1.self_attn.k_proj.lora_A.weight: layer 1 of the model at hunyuan_large (hunyuan) has no k/v projections");
  }
  // a missing B
  {
    const std::string d = copy_adapter(root, "llama", "missing-b");
    auto ts = read_tensors(fs::path(d) / "adapter_model.safetensors");
    std::erase_if(ts, [](const PeftTensor& t) { return t.name == "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"; });
    moe_test::write_file(d + "/adapter_model.safetensors", safetensors_f32_bytes(ts));
    CHECK_THROWS(load_adapter(d, llama, "llama"), "layers.1.self_attn.v_proj.lora_A.weight has no base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
  }
  // unknown tensors (a module the model lacks, a layer past the last)
  {
    const std::string d = copy_adapter(root, "llama", "unknown");
    auto ts = read_tensors(fs::path(d) / "adapter_model.safetensors");
    ts.push_back({"base_model.model.model.layers.0.self_attn.rotary_emb.lora_A.weight", {4, 64}, std::vector<float>(256)});
    ts.push_back({"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight", {4, 64}, std::vector<float>(256)});
    moe_test::write_file(d + "/adapter_model.safetensors", safetensors_f32_bytes(ts));
    CHECK_THROWS(load_adapter(d, llama, "llama"), "adapter_model.safetensors: 2 tensor(s) that the model at llama (llama) has no place for: "
                                                  "base_model.model.model.layers.0.self_attn.rotary_emb.lora_A.weight, "
                                                  "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight");
  }
  // a rank that is not the config's r
  {
    const std::string d = copy_adapter(root, "llama", "rank");
    replace_in_file(fs::path(d) / "adapter_config.json", "\"r\": 4,", "\"r\": 8,");
    CHECK_THROWS(load_adapter(d, llama, "llama"), "layers.0.self_attn.q_proj.lora_A.weight has shape [4,64], expected 8 rows (r = 8 in adapter_config.json)");
  }
  // config fields the engine refuses
  const std::vector<std::pair<std::pair<std::string, std::string>, std::string>> fields = {
      {{"\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 8}"}, "adapter_config.json: rank_pattern is not empty (q_proj, ...)"},
      {{"\"alpha_pattern\": {}", "\"alpha_pattern\": {\"v_proj\": 16}"}, "adapter_config.json: alpha_pattern is not empty"},
      {{"\"use_dora\": false", "\"use_dora\": true"}, "adapter_config.json: use_dora is set: DoRA"},
      {{"\"bias\": \"none\"", "\"bias\": \"lora_only\""}, "adapter_config.json: bias is \"lora_only\""},
      {{"\"modules_to_save\": null", "\"modules_to_save\": [\"lm_head\"]"}, "adapter_config.json: modules_to_save is set"},
      {{"\"layers_to_transform\": null", "\"layers_to_transform\": [0, 1]"}, "adapter_config.json: layers_to_transform is set"},
      {{"\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\""}, "adapter_config.json: peft_type is \"IA3\"; only LORA"},
      {{"\"r\": 4,", "\"r\": 0,"}, "adapter_config.json: r must be a positive integer"},
      {{"\"target_modules\": [", "\"target_modules\": \".*_proj\", \"x\": ["}, "adapter_config.json: target_modules is the pattern"},
      {{"\"gate_proj\",", "\"gate_proj\", \"lm_head\","}, "adapter_config.json: target_modules lists \"lm_head\" but"},
      {{"\"v_proj\",", ""}, "layers.0.self_attn.v_proj.lora_A.weight adapts model.layers.0.self_attn.v_proj.weight, which neither target_modules"},
  };
  int n = 0;
  for (auto& [edit, msg] : fields) {
    const std::string d = copy_adapter(root, "llama", "field-" + std::to_string(n++));
    replace_in_file(fs::path(d) / "adapter_config.json", edit.first, edit.second);
    CHECK_THROWS(load_adapter(d, llama, "llama"), msg.c_str());
  }
  // a truncated safetensors, a pickle-only folder, no folder, no config
  {
    const std::string d = copy_adapter(root, "llama", "truncated");
    const std::string s = slurp(fs::path(d) / "adapter_model.safetensors");
    moe_test::write_file(d + "/adapter_model.safetensors", s.substr(0, s.size() - 100));
    CHECK_THROWS(load_adapter(d, llama, "llama"), "adapter_model.safetensors: tensor base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight needs bytes");
    moe_test::write_file(d + "/adapter_model.safetensors", s.substr(0, 5));
    CHECK_THROWS(load_adapter(d, llama, "llama"), "adapter_model.safetensors: not a safetensors file");
  }
  {
    const std::string d = scratch("adapter-pickle");
    fs::copy_file(fs::path(gl) / "adapter_config.json", fs::path(d) / "adapter_config.json");
    moe_test::write_file(d + "/adapter_model.bin", "PK\x03\x04");
    CHECK_THROWS(load_adapter(d, llama, "llama"), "adapter_model.bin: pickle adapters are not supported; convert with peft to safetensors");
    CHECK_THROWS(load_adapter(d + "/nope", llama, "llama"), "nope: not a folder");
    fs::remove(fs::path(d) / "adapter_config.json");
    fs::remove(fs::path(d) / "adapter_model.bin");
    fs::copy_file(fs::path(gl) / "adapter_model.safetensors", fs::path(d) / "adapter_model.safetensors");
    CHECK_THROWS(load_adapter(d, llama, "llama"), "adapter_config.json: missing");
  }
  // fused expert tensors without target_parameters; a target_parameters entry with no tensors
  {
    const std::string d = copy_adapter(root, "mixtral", "no-tp");
    replace_in_file(fs::path(d) / "adapter_config.json", "\"mlp.experts.gate_up_proj\",\n    \"mlp.experts.down_proj\"", "");
    CHECK_THROWS(load_adapter(d, mixtral, "mixtral"), "need mlp.experts.gate_up_proj / mlp.experts.down_proj in adapter_config.json's target_parameters");
    const std::string d2 = copy_adapter(root, "llama", "tp-empty");
    replace_in_file(fs::path(d2) / "adapter_config.json", "\"target_parameters\": null", "\"target_parameters\": [\"mlp.experts.down_proj\"]");
    CHECK_THROWS(load_adapter(d2, llama, "llama"), "target_parameters lists \"mlp.experts.down_proj\" but");
  }
  // a non-finite number (a diverged run's adapter)
  {
    const std::string d = copy_adapter(root, "llama", "nan");
    auto ts = read_tensors(fs::path(d) / "adapter_model.safetensors");
    ts[5].data[3] = std::nanf("");
    moe_test::write_file(d + "/adapter_model.safetensors", safetensors_f32_bytes(ts));
    CHECK_THROWS(load_adapter(d, llama, "llama"), (ts[5].name + " holds nan at element 3").c_str());
  }
  // a tensor in an integer dtype
  {
    const std::string d = copy_adapter(root, "llama", "dtype");
    std::string s = slurp(fs::path(d) / "adapter_model.safetensors");
    const size_t at = s.find("{\"dtype\":\"F32\",\"shape\":[4,128]");
    s.replace(at, 15, "{\"dtype\":\"I32\",");
    moe_test::write_file(d + "/adapter_model.safetensors", s);
    CHECK_THROWS(load_adapter(d, llama, "llama"), "layers.0.mlp.down_proj.lora_A.weight is i32; LoRA tensors must be f32, f16 or bf16");
  }
}

// Only one fused parameter targeted: peft does not nest, the wrapper is mlp.experts either way (checked with peft 0.21
// get_peft_model_state_dict on the olmoe fixture: gate_up only -> mlp.experts.lora_A [32,64]; down only ->
// mlp.experts.lora_A [32,48]; both, in either list order -> gate_up in mlp.experts.base_layer, down in mlp.experts).
TEST(adapter_fused_single_target_is_not_nested) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  const ModelSpec spec = spec_of(root, "olmoe");
  const Adapter full = load_adapter((root / "goldens/train/olmoe/adapter").string(), spec, "olmoe");
  // down_proj only: the golden's outer wrapper (mlp.experts) as is, the gate_up tensors dropped
  const std::string d = copy_adapter(root, "olmoe", "down-only");
  auto ts = read_tensors(fs::path(d) / "adapter_model.safetensors");
  std::erase_if(ts, [](const PeftTensor& t) { return t.name.find("experts.base_layer") != std::string::npos; });
  moe_test::write_file(d + "/adapter_model.safetensors", safetensors_f32_bytes(ts));
  replace_in_file(fs::path(d) / "adapter_config.json", "\"mlp.experts.gate_up_proj\",\n", "");
  const Adapter down = load_adapter(d, spec, "olmoe");
  CHECK(!down.layers[2].experts[3].gate_up.present() && down.layers[2].experts[3].down.B == full.layers[2].experts[3].down.B);
  const std::string out = scratch("adapter-down-only-save") + "/a";
  save_adapter(out, down, spec, "x");
  CHECK(slurp(out + "/adapter_model.safetensors") == slurp(fs::path(d) / "adapter_model.safetensors"));
  // gate_up only: its tensors are then mlp.experts.lora_{A,B}.weight
  Adapter gu = full;
  for (auto& L : gu.layers) for (auto& e : L.experts) e.down = LoraPair{};
  gu.config.target_parameters = {"mlp.experts.gate_up_proj"};
  bool renamed = false;
  for (auto& t : adapter_tensors(gu, spec))
    if (t.name == "base_model.model.model.layers.0.mlp.experts.lora_B.weight") renamed = t.shape == std::vector<int64_t>{2 * 48, 4 * 8};
  CHECK(renamed);
  const std::string out2 = scratch("adapter-gu-only-save") + "/a";
  save_adapter(out2, gu, spec, "x");
  const Adapter back = load_adapter(out2, spec, "olmoe");
  CHECK(back.layers[3].experts[7].gate_up.A == full.layers[3].experts[7].gate_up.A && !back.layers[3].experts[7].down.present());
}

TEST(adapter_reads_f16_and_bf16_tensors) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  const ModelSpec spec = spec_of(root, "qwen3");
  const Adapter ref = load_adapter((root / "goldens/train/qwen3/adapter").string(), spec, "qwen3");
  for (const char* dt : {"F16", "BF16"}) {
    const std::string d = copy_adapter(root, "qwen3", std::string("half-") + dt);
    const auto ts = read_tensors(fs::path(d) / "adapter_model.safetensors");
    std::string header = "{", data;
    for (auto& t : ts) {
      const size_t b = data.size();
      for (float x : t.data) {
        const uint16_t h = std::strcmp(dt, "BF16") == 0 ? f32_to_bf16(x) : f32_to_f16(x);
        data.append(reinterpret_cast<const char*>(&h), 2);
      }
      if (header.size() > 1) header += ',';
      header += std::string("\"") + t.name + "\":{\"dtype\":\"" + dt + "\",\"shape\":[" +
                std::to_string(t.shape[0]) + "," + std::to_string(t.shape[1]) + "],\"data_offsets\":[" + std::to_string(b) + "," +
                std::to_string(data.size()) + "]}";
    }
    header += "}";
    std::string out(8, '\0');
    for (int k = 0; k < 8; ++k) out[size_t(k)] = char((uint64_t(header.size()) >> (8 * k)) & 0xff);
    moe_test::write_file(d + "/adapter_model.safetensors", out + header + data);
    const Adapter a = load_adapter(d, spec, "qwen3");
    const LoraPair &p = a.layers[3].q, &q = ref.layers[3].q;
    CHECK(p.r == 4 && p.in == 64 && p.out == 128);
    CHECK_NEAR(p.scale, 4.0, 0);  // use_rslora: 8 / sqrt(4)
    double worst = 0;
    for (size_t i = 0; i < p.B.size(); ++i) worst = std::max(worst, std::fabs(double(p.B[i]) - double(q.B[i])) / (std::fabs(q.B[i]) + 1e-3));
    CHECK(worst < (std::strcmp(dt, "BF16") == 0 ? 8e-3 : 1e-3));
    const float x = q.A[5];
    CHECK(p.A[5] == (std::strcmp(dt, "BF16") == 0 ? bf16_to_f32(f32_to_bf16(x)) : f16_to_f32(f32_to_f16(x))));
  }
}

TEST(adapter_reads_transformers4_per_expert_names) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  // Mixtral's block_sparse_moe.experts.N.w1/w3/w2 (gate, up, down) and the mlp.experts.N.*_proj of others, built
  // from the fused golden: w1/w3 take the shared A and the gate/up rows of B; w2 the down pair.
  struct Case { const char* model; const char* gate; const char* up; const char* down; const char* mlp; };
  for (const Case& c : {Case{"mixtral", "w1", "w3", "w2", "block_sparse_moe"}, Case{"qwen3_moe", "gate_proj", "up_proj", "down_proj", "mlp"}}) {
    const ModelSpec spec = spec_of(root, c.model);
    const Adapter fused = load_adapter((root / "goldens/train" / c.model / "adapter").string(), spec, c.model);
    const std::string d = copy_adapter(root, c.model, std::string("tf4-") + c.model);
    std::vector<PeftTensor> ts;
    for (auto& t : read_tensors(fs::path(d) / "adapter_model.safetensors"))
      if (t.name.find(".mlp.experts.") == std::string::npos) ts.push_back(t);
    for (int l = 0; l < spec.num_layers; ++l)
      for (size_t e = 0; e < fused.layers[size_t(l)].experts.size(); ++e) {
        const ExpertLora& X = fused.layers[size_t(l)].experts[e];
        const int64_t F = X.down.in, r = X.gate_up.r;
        const std::string p = "base_model.model.model.layers." + std::to_string(l) + "." + c.mlp + ".experts." + std::to_string(e) + ".";
        const std::vector<float> gB(X.gate_up.B.begin(), X.gate_up.B.begin() + F * r), uB(X.gate_up.B.begin() + F * r, X.gate_up.B.end());
        ts.push_back({p + c.gate + ".lora_A.weight", {r, X.gate_up.in}, X.gate_up.A});
        ts.push_back({p + c.gate + ".lora_B.weight", {F, r}, gB});
        ts.push_back({p + c.up + ".lora_A.weight", {r, X.gate_up.in}, X.gate_up.A});
        ts.push_back({p + c.up + ".lora_B.weight", {F, r}, uB});
        ts.push_back({p + c.down + ".lora_A.weight", {r, F}, X.down.A});
        ts.push_back({p + c.down + ".lora_B.weight", {X.down.out, r}, X.down.B});
      }
    moe_test::write_file(d + "/adapter_model.safetensors", safetensors_f32_bytes(ts));
    replace_in_file(fs::path(d) / "adapter_config.json", "\"target_modules\": [", std::string("\"target_modules\": [\"") + c.gate + "\", \"" + c.up + "\", \"" + c.down + "\",");
    replace_in_file(fs::path(d) / "adapter_config.json", "\"mlp.experts.gate_up_proj\",\n    \"mlp.experts.down_proj\"", "");
    const Adapter sep = load_adapter(d, spec, c.model);
    bool ok = true;
    for (int l = 0; l < spec.num_layers; ++l) {
      const LayerLora &S = sep.layers[size_t(l)], &Fz = fused.layers[size_t(l)];
      ok &= S.q.A == Fz.q.A && S.o.B == Fz.o.B && S.experts.size() == Fz.experts.size();
      for (size_t e = 0; ok && e < S.experts.size(); ++e) {
        const ExpertLora &x = S.experts[e], &y = Fz.experts[e];
        const int64_t F = y.down.in, r = y.gate_up.r;
        ok &= !x.gate_up.present() && x.gate.present() && x.up.present() && x.down.present();
        ok &= x.gate.out == F && x.up.out == F && x.gate.in == spec.hidden && x.down.in == F;
        ok &= x.gate.A == y.gate_up.A && x.up.A == y.gate_up.A && x.down.A == y.down.A && x.down.B == y.down.B;
        for (int64_t i = 0; ok && i < F * r; ++i) ok &= x.gate.B[size_t(i)] == y.gate_up.B[size_t(i)] && x.up.B[size_t(i)] == y.gate_up.B[size_t(F * r + i)];
      }
    }
    CHECK(ok);
    // Saved, the separate layout is written under the names it was read from (Mixtral's w1/w3/w2: what peft 0.21
    // converts onto transformers 5's fused experts) and reads back the same.
    const std::string out = scratch(std::string("tf4-save-") + c.model) + "/a";
    save_adapter(out, sep, spec, c.model);
    CHECK(slurp(out + "/adapter_model.safetensors") == slurp(fs::path(d) / "adapter_model.safetensors"));
    const auto saved = read_tensors(out + "/adapter_model.safetensors");
    bool named = false;
    for (auto& t : saved) named |= t.name == "base_model.model.model.layers.1." + std::string(c.mlp) + ".experts.7." + c.up + ".lora_B.weight";
    CHECK(named);
    const Adapter back = load_adapter(out, spec, c.model);
    CHECK(back.layers[1].experts[7].up.B == sep.layers[1].experts[7].up.B);
  }
}

TEST(adapter_save_derives_targets_and_replaces_atomically) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  const ModelSpec spec = spec_of(root, "qwen2_moe");
  Adapter a = load_adapter((root / "goldens/train/qwen2_moe/adapter").string(), spec, "qwen2_moe");
  // A trainer's adapter with no target lists: derived as peft would list them (module names; fused parameters).
  a.config.target_modules.clear();
  a.config.target_parameters.clear();
  a.config.dropout = 0.1;
  const LoraConfig c = adapter_effective_config(a, spec);
  CHECK((c.target_modules == std::vector<std::string>{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}));
  CHECK((c.target_parameters == std::vector<std::string>{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}));
  const std::string base = scratch("adapter-atomic");
  const std::string dir = base + "/run1";
  fs::create_directories(dir);
  moe_test::write_file(dir + "/stale.txt", "old");
  save_adapter(dir, a, spec, "Qwen/Qwen1.5-MoE-A2.7B");
  CHECK(!fs::exists(dir + "/stale.txt"));
  CHECK(fs::exists(dir + "/adapter_model.safetensors"));
  int entries = 0;
  for (auto& e : fs::directory_iterator(base)) { (void)e; ++entries; }
  CHECK(entries == 1);  // no .tmp- / .old- folder left beside it
  const Json j = json_parse_file(dir + "/adapter_config.json");
  CHECK(j.find("lora_dropout")->num == 0.0);  // target_parameters: peft refuses dropout
  CHECK(j.find("base_model_name_or_path")->str == "Qwen/Qwen1.5-MoE-A2.7B");
  CHECK(j.find("auto_mapping")->find("base_model_class")->str == "Qwen2MoeForCausalLM");
  const Adapter b = load_adapter(dir, spec, "qwen2_moe");
  CHECK(b.numel() == a.numel() && b.layers[1].experts[3].gate_up.B == a.layers[1].experts[3].gate_up.B);
  // An adapter that does not fit the model is refused before the disk is touched: the old folder stays.
  Adapter bad = a;
  bad.layers[0].q.init(4, 64, 99, 2.0f);
  CHECK_THROWS(save_adapter(dir, bad, spec, "x"), "adapter pair layer 0 q_proj is [99 x 64], the model's weight is [64 x 64]");
  CHECK(fs::exists(dir + "/adapter_model.safetensors"));
  // Pairs the model has no weight for (k on a layer without it, a partial fused layer) are refused, not dropped.
  Adapter part = a;
  part.layers[1].experts[2].gate_up = LoraPair{};
  CHECK_THROWS(adapter_tensors(part, spec), "experts.gate_up_proj: 7 of 8 experts have a pair");
  // hunyuan_v1_moe: the shared MLP goes into target_parameters as 2-D parameters (peft would rewrite gate_proj etc. in
  // target_modules into expert targets), giving the golden's target sets and, saved, peft's tensors.
  {
    const ModelSpec hs = spec_of(root, "hunyuan_v1_moe");
    const fs::path g = root / "goldens/train/hunyuan_v1_moe/adapter";
    Adapter h = load_adapter(g.string(), hs, "hunyuan_v1_moe");
    const LoraConfig want = h.config;
    h.config.target_modules.clear();
    h.config.target_parameters.clear();
    const LoraConfig got = adapter_effective_config(h, hs);
    auto sorted = [](std::vector<std::string> v) { std::sort(v.begin(), v.end()); return v; };
    CHECK(sorted(got.target_modules) == sorted(want.target_modules));
    CHECK(sorted(got.target_parameters) == sorted(want.target_parameters));
    const std::string out = base + "/hunyuan";
    save_adapter(out, h, hs, "x");
    CHECK(slurp(out + "/adapter_model.safetensors") == slurp(g / "adapter_model.safetensors"));
    CHECK(load_adapter(out, hs, "hunyuan_v1_moe").numel() == h.numel());
  }
  Adapter mixed = a;
  mixed.layers[1].experts[4].gate.init(4, 64, 48, 2.0f);
  CHECK_THROWS(adapter_tensors(mixed, spec), "adapter layer 1 mixes fused gate_up pairs and separate gate/up pairs");
  // A dense llama adapter keeps its trained dropout.
  const ModelSpec ls = spec_of(root, "llama");
  Adapter la = load_adapter((root / "goldens/train/llama/adapter").string(), ls, "llama");
  la.config.dropout = 0.05;
  CHECK(adapter_config_json(la, ls, "x").find("\"lora_dropout\": 0.05,") != std::string::npos);
}

// What the trainer builds (train/lora.h make_adapter from the run's LoraConfig) saves under exactly the names and
// shapes peft wrote for that config, on every golden: the two sides agree on which pairs a config means.
TEST(adapter_make_adapter_saves_under_peft_names) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train is absent\n"); return; }
  for (const char* name : kGoldens) {
    const ModelSpec spec = spec_of(root, name);
    const fs::path g = root / "goldens/train" / name / "adapter";
    const Adapter golden = load_adapter(g.string(), spec, name);
    const Adapter made = make_adapter(spec, golden.config);
    const auto want = read_tensors(g / "adapter_model.safetensors");
    const auto got = adapter_tensors(made, spec);
    bool same = want.size() == got.size();
    for (size_t i = 0; same && i < got.size(); ++i) same = want[i].name == got[i].name && want[i].shape == got[i].shape;
    if (!same) std::fprintf(stderr, "  %s: make_adapter's pairs (%zu tensors) are not peft's (%zu)\n", name, got.size(), want.size());
    CHECK(same);
    const std::string cfg = adapter_config_json(made, spec, "test/fixtures/models/" + std::string(name));
    CHECK(json_equal(json_parse(cfg, "made"), json_parse_file((g / "adapter_config.json").string())));
  }
}

// The golden adapters through the engine's forward/backward against peft's loss and gradients: test_train_goldens.cpp.
