// io/merge.h: LoRA adapters folded into the base weights, written in the hub's per-expert layout.
//   1. every weight equals f32(W) + s·B·A computed here from adapter_model.safetensors itself (peft's packing of
//      fused experts undone by hand: A.reshape(E, r, in), B.reshape(out, r, E)), the others are unchanged;
//   2. a transformers-5 fused-layout copy of qwen3_moe ([E, 2F, H] gate_up_proj) merges to the same bytes, under
//      the same per-expert names, as the hub-layout fixture; Mixtral keeps block_sparse_moe.experts.E.w1/w3/w2;
//   3. shards as save_pretrained cuts them (index total_size = tensor bytes), bf16 rounding once (round-to-odd
//      step), refusals (quantized source, adapter of another model, unknown dtype) write nothing, cancel throws.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include "format/dtype.h"
#include "format/json.h"
#include "format/safetensors.h"
#include "format/safetensors_writer.h"
#include "io/merge.h"
#include "cpu/matmul.h"
#include "tests/test.h"
#include "tests/test_format_util.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

struct Scratch {
  std::vector<std::string> dirs;
  ~Scratch() { for (auto& d : dirs) { std::error_code ec; fs::remove_all(d, ec); } }
};
std::string scratch(const std::string& name) {
  static Scratch s;
  s.dirs.push_back(moe_test::temp_dir("merge-" + name));
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

std::vector<float> f32_of(const TensorView& t) {
  const int64_t K = t.shape.empty() ? 1 : t.shape.back(), rows = t.numel() / std::max<int64_t>(1, K);
  std::vector<float> v(size_t(t.numel()));
  for (int64_t r = 0; r < rows; ++r) row_to_f32(v.data() + r * K, t.data, t.dtype, r, K);
  return v;
}

std::atomic<bool> no_cancel{false};

MergeReport merge(const fs::path& root, const std::string& model, const std::string& out, DType dt = DType::F32,
                  uint64_t shard = 5000000000ull, const std::string& model_dir = "") {
  MergeOptions o; o.dtype = dt; o.max_shard_bytes = shard;
  return merge_adapter(model_dir.empty() ? (root / "models" / model).string() : model_dir,
                       (root / "goldens/train" / model / "adapter").string(), out, o, {}, no_cancel);
}

// ΔW from the peft tensors: plain pairs, and fused experts' (expert e, row block [o0, o0 + rows)).
struct PeftPair { std::vector<float> A, B; int64_t r, in, out, E; };

// A transformers-5 fused copy of a hub-layout model folder: <moe>.experts.E.{gate,up,down} -> mlp.experts.gate_up_proj
// [E, 2F, H] (gate rows first) and mlp.experts.down_proj [E, H, F]; <moe>.gate -> mlp.gate (Mixtral's block_sparse_moe).
void write_fused_copy(const fs::path& srcdir, const std::string& dst, const std::string& moe, const std::vector<std::string>& hub) {
  for (auto& e : fs::directory_iterator(srcdir))
    if (e.path().filename() != "model.safetensors") fs::copy_file(e.path(), fs::path(dst) / e.path().filename());
  TensorStore st(srcdir.string());
  std::vector<StEntry> entries;
  std::vector<std::vector<uint8_t>> data;
  std::set<std::string> done;
  const std::string ex = "." + moe + ".experts.", gate = "." + moe + ".gate.weight";
  for (auto& [n, t] : st.all()) {
    const auto pos = n.find(ex);
    if (pos == std::string::npos) {
      std::string name = n;
      if (const auto g = n.find(gate); g != std::string::npos) name = n.substr(0, g) + ".mlp.gate.weight";
      entries.push_back({name, t.dtype, t.shape, t.nbytes});
      const uint8_t* p = static_cast<const uint8_t*>(t.data);
      data.emplace_back(p, p + t.nbytes);
      continue;
    }
    const std::string base = n.substr(0, pos) + ex.substr(0, ex.size() - 1), out = n.substr(0, pos) + ".mlp.experts";
    if (!done.insert(base).second) continue;
    auto find = [&](int64_t e, int k) { return st.find(base + "." + std::to_string(e) + "." + hub[size_t(k)] + ".weight"); };
    int64_t E = 0;
    while (find(E, 0)) ++E;
    const TensorView& g0 = *find(0, 0);
    const TensorView& d0 = *find(0, 2);
    const int64_t F = g0.shape[0], H = g0.shape[1];
    std::vector<uint8_t> gu, dn;
    for (int64_t e = 0; e < E; ++e) {
      for (int k : {0, 1}) { const TensorView& t2 = *find(e, k); const uint8_t* p = static_cast<const uint8_t*>(t2.data); gu.insert(gu.end(), p, p + t2.nbytes); }
      const TensorView& t3 = *find(e, 2);
      const uint8_t* p = static_cast<const uint8_t*>(t3.data); dn.insert(dn.end(), p, p + t3.nbytes);
    }
    entries.push_back({out + ".gate_up_proj", g0.dtype, {E, 2 * F, H}, gu.size()});
    data.push_back(std::move(gu));
    entries.push_back({out + ".down_proj", d0.dtype, {E, H, F}, dn.size()});
    data.push_back(std::move(dn));
  }
  uint64_t w = 0;
  CheckedFile f((fs::path(dst) / "model.safetensors").string(), &w, nullptr);
  f.write_header(safetensors_header(entries, {{"format", "pt"}}));
  for (auto& d : data) f.write(d.data(), d.size());
  f.close();
}

}  // namespace

TEST(merge_weights_equal_base_plus_scaled_BA_from_peft_tensors) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: fixtures absent\n"); return; }
  for (const char* name : {"llama", "qwen2_moe", "qwen3_moe", "hunyuan_large"}) {
    const std::string out = scratch(std::string("exact-") + name);
    const MergeReport rep = merge(root, name, out);
    CHECK(rep.merged_pairs > 0);
    const Json cfg = json_parse_file((root / "goldens/train" / name / "adapter/adapter_config.json").string());
    const double r = cfg.find("r")->num, alpha = cfg.find("lora_alpha")->num;
    const bool rs = cfg.find("use_rslora") && cfg.find("use_rslora")->b;
    const double s = rs ? alpha / std::sqrt(r) : alpha / r;
    TensorStore src((root / "models" / name).string()), dst(out);
    SafeTensorsFile ad((root / "goldens/train" / name / "adapter/adapter_model.safetensors").string());
    std::map<std::string, const TensorView*> at;
    for (auto& t : ad.tensors()) at[t.name] = &t;
    // expected ΔW for every destination weight, from peft's names
    std::map<std::string, std::vector<double>> delta;
    auto add = [&](const std::string& w, const std::vector<float>& A, const std::vector<float>& B, int64_t rr, int64_t in,
                   int64_t out_rows, int64_t o0, int64_t e, int64_t E, int64_t Bcols) {
      auto& d = delta[w];
      if (d.empty()) d.assign(size_t(out_rows * in), 0.0);
      for (int64_t o = 0; o < out_rows; ++o)
        for (int64_t k = 0; k < rr; ++k) {
          const double b = B[size_t((o0 + o) * Bcols + (E ? k * E + e : k))];
          for (int64_t i = 0; i < in; ++i) d[size_t(o * in + i)] += s * b * A[size_t(((E ? e * rr : 0) + k) * in + i)];
        }
    };
    for (auto& [an, tv] : at) {
      if (an.find(".lora_A.weight") == std::string::npos) continue;
      const std::string mod = an.substr(0, an.size() - std::strlen(".lora_A.weight"));
      const TensorView& A = *tv; const TensorView& B = *at.at(mod + ".lora_B.weight");
      const std::vector<float> a = f32_of(A), b = f32_of(B);
      std::string base = mod.substr(std::strlen("base_model.model."));
      if (base.size() > 11 && base.compare(base.size() - 11, 11, ".base_layer") == 0) base = base.substr(0, base.size() - 11);
      const int64_t in = A.shape[1];
      if (base.size() > 12 && base.compare(base.size() - 12, 12, ".mlp.experts") == 0) {
        // fused: which parameter? gate_up has B rows 2F, down has B rows H
        const TensorView* gu = src.find(base + ".0.gate_proj.weight");
        const int64_t F = gu->shape[0], rows = B.shape[0];
        const int64_t E = int64_t(B.shape[1]) / int64_t(r);
        for (int64_t e = 0; e < E; ++e) {
          const std::string p = base + "." + std::to_string(e) + ".";
          if (rows == 2 * F && in == gu->shape[1]) {  // gate_up (B rows 2F, A over H); else down (B rows H, A over F)
            add(p + "gate_proj.weight", a, b, int64_t(r), in, F, 0, e, E, B.shape[1]);
            add(p + "up_proj.weight", a, b, int64_t(r), in, F, F, e, E, B.shape[1]);
          } else {
            add(p + "down_proj.weight", a, b, int64_t(r), in, rows, 0, e, E, B.shape[1]);
          }
        }
      } else {
        add(base + ".weight", a, b, int64_t(r), in, B.shape[0], 0, 0, 0, B.shape[1]);
      }
    }
    CHECK(int64_t(delta.size()) > 0);
    // every destination tensor: hub name of the source, same shape, W + ΔW
    CHECK(dst.all().size() == src.all().size());
    double worst = 0;
    for (auto& [n, t] : src.all()) {
      const TensorView* o = dst.find(n);
      CHECK(o != nullptr);
      if (!o) continue;
      CHECK(o->shape == t.shape);
      CHECK(o->dtype == DType::F32);
      const std::vector<float> w = f32_of(t), m = f32_of(*o);
      auto it = delta.find(n);
      for (size_t i = 0; i < w.size(); ++i) {
        const double want = double(w[i]) + (it == delta.end() ? 0.0 : it->second[i]);
        worst = std::max(worst, std::fabs(double(m[i]) - want));
      }
      if (it == delta.end()) CHECK(std::memcmp(w.data(), m.data(), w.size() * 4) == 0);
    }
    CHECK(worst < 1e-6);
    for (auto& [n, d] : delta) CHECK(dst.find(n) != nullptr);
  }
}

TEST(merge_splits_fused_experts_into_the_hub_layout) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: fixtures absent\n"); return; }
  // a transformers-5 fused copy of qwen3_moe: mlp.experts.gate_up_proj [E, 2F, H], mlp.experts.down_proj [E, H, F]
  const fs::path srcdir = root / "models/qwen3_moe";
  const std::string fused = scratch("fused-src");
  write_fused_copy(srcdir, fused, "mlp", {"gate_proj", "up_proj", "down_proj"});
  const std::string a = scratch("fused-hub"), b = scratch("fused-fused");
  merge(root, "qwen3_moe", a, DType::BF16);
  const MergeReport rb = merge(root, "qwen3_moe", b, DType::BF16, 5000000000ull, fused);
  TensorStore A(a), B(b), S(srcdir.string());
  CHECK(A.all().size() == B.all().size());
  CHECK(A.all().size() == S.all().size());
  for (auto& [n, t] : A.all()) {
    const TensorView* u = B.find(n);
    CHECK(u != nullptr && S.find(n) != nullptr);
    if (!u) continue;
    CHECK(u->shape == t.shape && u->dtype == t.dtype && u->nbytes == t.nbytes);
    CHECK(std::memcmp(u->data, t.data, t.nbytes) == 0);
  }
  int split = 0;
  for (auto& e : rb.tensors) if (e.source.find("gate_up_proj") != std::string::npos) ++split;
  CHECK(split == 4 * 8 * 2);  // 4 MoE layers x 8 experts x (gate, up)
  // Mixtral: the hub's block_sparse_moe.experts.E.w1/w3/w2 names stay; a fused transformers-5 copy (mlp.gate,
  // mlp.experts.gate_up_proj) is written back under them, to the same bytes
  const std::string mx = scratch("mixtral"), mxf = scratch("mixtral-fused-src"), mxo = scratch("mixtral-fused");
  merge(root, "mixtral", mx, DType::F16);
  write_fused_copy(root / "models/mixtral", mxf, "block_sparse_moe", {"w1", "w3", "w2"});
  {
    TensorStore F(mxf);
    CHECK(F.find("model.layers.1.mlp.experts.gate_up_proj") != nullptr && F.find("model.layers.1.mlp.gate.weight") != nullptr);
  }
  merge(root, "mixtral", mxo, DType::F16, 5000000000ull, mxf);
  TensorStore M(mx), MS((root / "models/mixtral").string()), MF(mxo);
  std::set<std::string> n1, n2;
  for (auto& [n, t] : M.all()) {
    n1.insert(n);
    CHECK(t.dtype == DType::F16);
    const TensorView* u = MF.find(n);
    CHECK(u != nullptr && u->nbytes == t.nbytes && std::memcmp(u->data, t.data, t.nbytes) == 0);
  }
  for (auto& [n, t] : MS.all()) n2.insert(n);
  CHECK(n1 == n2);
  CHECK(MF.all().size() == M.all().size());
  CHECK(M.find("model.layers.1.block_sparse_moe.experts.7.w3.weight") != nullptr);
}

TEST(merge_shards_like_save_pretrained_and_rounds_once) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: fixtures absent\n"); return; }
  const std::string one = scratch("shard-one"), many = scratch("shard-many");
  merge(root, "llama", one);
  const MergeReport r = merge(root, "llama", many, DType::F32, 200000);
  CHECK(r.files.size() > 2);
  CHECK(r.files.back() == "model.safetensors.index.json");
  CHECK(fs::exists(fs::path(one) / "model.safetensors") && !fs::exists(fs::path(one) / "model.safetensors.index.json"));
  char want[64]; std::snprintf(want, sizeof want, "model-00001-of-%05zu.safetensors", r.files.size() - 1);
  CHECK(r.files[0] == want);
  for (size_t i = 0; i + 1 < r.files.size(); ++i) {
    SafeTensorsFile f((fs::path(many) / r.files[i]).string());
    uint64_t n = 0; for (auto& t : f.tensors()) n += t.nbytes;
    CHECK(n <= 200000 || f.tensors().size() == 1);
    CHECK(f.metadata().at("format") == "pt");
  }
  const Json idx = json_parse_file((fs::path(many) / "model.safetensors.index.json").string());
  CHECK(uint64_t(idx.find("metadata")->find("total_size")->num) == r.bytes_out);
  TensorStore a(one), b(many);
  CHECK(a.all().size() == b.all().size());
  for (auto& [n, t] : a.all()) { const TensorView* u = b.find(n); CHECK(u && u->nbytes == t.nbytes && std::memcmp(u->data, t.data, t.nbytes) == 0); }
  // one rounding: f64 -> f32 by rounding to odd, then to bf16 by nearest even, is the correctly rounded f64 -> bf16
  const double tie_above = double(bf16_to_f32(0x3f80)) + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);  // just above a bf16 tie
  CHECK(f32_to_bf16(float(tie_above)) == 0x3f80);                       // plain double rounding loses it
  CHECK(f32_to_bf16(f64_to_f32_round_odd(tie_above)) == 0x3f81);        // round-to-odd keeps it
  CHECK(f64_to_f32_round_odd(1.5) == 1.5f);
  CHECK(f32_to_bf16(f64_to_f32_round_odd(-tie_above)) == 0xbf81);
}

TEST(merge_refusals_write_nothing) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: fixtures absent\n"); return; }
  const std::string out = scratch("refuse");
  MergeOptions o; o.dtype = DType::F32;
  // an adapter of another model: shapes do not fit
  CHECK_THROWS(merge_adapter((root / "models/llama").string(), (root / "goldens/train/qwen3/adapter").string(), out, o, {}, no_cancel), "");
  CHECK(fs::is_empty(out));
  CHECK_THROWS(merge_adapter((root / "models/llama").string(), (root / "models/llama").string(), out, o, {}, no_cancel), "adapter_");
  CHECK(fs::is_empty(out));
  o.dtype = DType::Q8_0;
  CHECK_THROWS(merge_adapter((root / "models/llama").string(), (root / "goldens/train/llama/adapter").string(), out, o, {}, no_cancel), "unsupported output dtype");
  CHECK(fs::is_empty(out));
  o.dtype = DType::BF16;
  std::atomic<bool> cancelled{true};
  CHECK_THROWS(merge_adapter((root / "models/llama").string(), (root / "goldens/train/llama/adapter").string(), out, o, {}, cancelled), "cancelled");
}

TEST(merge_refuses_values_beyond_fp16) {
  const fs::path root = fixtures_root();
  if (root.empty()) { std::printf("  skipped: fixtures absent\n"); return; }
  // llama (f32) with one norm gain of 1e5: fine as bf16 / fp32, not representable in fp16
  const fs::path srcdir = root / "models/llama";
  const std::string big = scratch("f16-src");
  for (auto& e : fs::directory_iterator(srcdir))
    if (e.path().filename() != "model.safetensors") fs::copy_file(e.path(), fs::path(big) / e.path().filename());
  {
    TensorStore st(srcdir.string());
    std::vector<StEntry> entries;
    std::vector<std::vector<uint8_t>> data;
    for (auto& [n, t] : st.all()) {
      entries.push_back({n, t.dtype, t.shape, t.nbytes});
      const uint8_t* p = static_cast<const uint8_t*>(t.data);
      data.emplace_back(p, p + t.nbytes);
      if (n == "model.norm.weight") { const float v = 1e5f; std::memcpy(data.back().data(), &v, 4); }
    }
    uint64_t w = 0;
    CheckedFile f((fs::path(big) / "model.safetensors").string(), &w, nullptr);
    f.write_header(safetensors_header(entries, {{"format", "pt"}}));
    for (auto& d : data) f.write(d.data(), d.size());
    f.close();
  }
  const std::string out = scratch("f16-out"), ok = scratch("f16-bf16");
  CHECK_THROWS(merge(root, "llama", out, DType::F16, 5000000000ull, big), "beyond fp16's range");
  merge(root, "llama", ok, DType::BF16, 5000000000ull, big);
  CHECK(fs::exists(fs::path(ok) / "model.safetensors"));
}
