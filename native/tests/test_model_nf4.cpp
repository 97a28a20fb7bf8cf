// Model::load with base_quant "nf4" (the Q-LoRA base) on every fixture architecture, against the NF4 goldens of
// test/fixtures/make_train_goldens.py (goldens/train/<name>/nf4/golden.json):
//   1. exactly the projections the goldens quantized (q/k/v/o, dense / routed / shared gate, up, down; not the
//      embeddings, lm_head, routers, shared-expert gates or norms) are NF4, and the sha256 of each one's dequantized
//      f32 values is the golden's nf4.dequant_sha256_16 (so the engine's NF4 base is torch's bit for bit);
//   2. forward() logits equal those of a reference model: a folder whose quantized tensors are replaced by their
//      dequantized f32 values (every other tensor widened to f32 exactly), loaded with base_quant "none". Both run
//      the same f32 weight values; only the kernels' summation order differs (NF4: 8-row f32 tiles + the dense
//      kernel; reference: the dense f32 kernel), ~1e-7 relative per dot product of these 64-128 wide rows, so 1e-5
//      absolute on logits of magnitude <= ~5 is ~10x room, while a wrong nibble or block scale moves logits by ~1e-2;
//   3. the loss of those logits without adapter equals the golden's base_loss (torch, float32, on the NF4-dequantized
//      base) within 1e-5 (the goldens' stated loss tolerance; their float32 error is <= 8e-7);
//   4. sizes (weight_bytes counts the NF4 bytes, bulk dtype), load progress over shards and quantization, errors.
//   5. the real check: peft's adapter (goldens/train/<name>/adapter, io/adapter.h) trained one step on the NF4 base:
//      loss, batch2 loss and every LoRA gradient equal goldens/train/<name>/nf4/ (peft + torch autograd on the same
//      NF4-dequantized base, the hashes of 1. pin its weights), with the training goldens' tolerances (fixtures
//      README): loss 1e-5, per tensor max |g - golden| <= 1e-4 * max |golden| + 1e-6, exact zeros stay exact,
//      grad_norm relative 1e-5.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>
#include "cpu/matmul.h"
#include "format/json.h"
#include "format/safetensors.h"
#include "io/adapter.h"
#include "model/model.h"
#include "quant/nf4.h"
#include "tests/sha256.h"
#include "tests/test.h"
#include "tests/test_format_util.h"
#include "train/lora.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

const char* kFixtures[] = {"llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "hunyuan_v1_moe", "hunyuan_large"};

fs::path repo_path(const std::string& rel) {
  for (fs::path p : {fs::path(__FILE__).parent_path() / "../.." / rel, fs::path(rel)})
    if (fs::exists(p)) return p;
  return {};
}

// Σ over counted positions of CE(logits[t], labels[t + 1]) / count (transformers' shifted labels), in double.
double shifted_ce(const std::vector<float>& logits, const std::vector<int32_t>& labels, int64_t V) {
  double loss = 0; int n = 0;
  for (size_t t = 0; t + 1 < labels.size(); ++t) {
    const int32_t y = labels[t + 1];
    if (y < 0) continue;
    const float* l = logits.data() + t * size_t(V);
    double mx = l[0]; for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(l[i]));
    double s = 0; for (int64_t i = 0; i < V; ++i) s += std::exp(double(l[i]) - mx);
    loss += mx + std::log(s) - l[y]; ++n;
  }
  return loss / n;
}

std::vector<float> logits_of(Model& m, const std::vector<int32_t>& ids) {
  const int64_t T = int64_t(ids.size()), V = m.spec().vocab;
  KvCache kv; Scratch s;
  m.init_cache(kv, T); m.init_scratch(s, T, T);
  std::vector<float> out(size_t(T * V));
  m.forward(ids.data(), T, 0, kv, s, out.data(), true);
  return out;
}

std::string dequant_sha16(const NF4Tensor& t) {
  std::vector<float> y(size_t(t.n));
  nf4_dequantize(t, y.data());
  return moe_test::sha256_hex(y.data(), y.size() * 4).substr(0, 16);
}

struct Progress { std::vector<std::pair<int, int>> calls; };
void on_progress(void* ctx, int done, int total) { static_cast<Progress*>(ctx)->calls.emplace_back(done, total); }

}  // namespace

TEST(model_nf4_base_matches_goldens) {
  const fs::path models = repo_path("test/fixtures/models"), goldens = repo_path("test/fixtures/goldens/train");
  CHECK(!models.empty() && !goldens.empty());
  if (models.empty() || goldens.empty()) return;
  for (const char* name : kFixtures) {
    const std::string dir = (models / name).string();
    const Json g = json_parse_file((goldens / name / "nf4" / "golden.json").string());
    const Json* hashes = g.find("nf4") ? g.find("nf4")->find("dequant_sha256_16") : nullptr;
    CHECK(hashes && hashes->is_object());
    if (!hashes) continue;
    Progress prog;
    auto m = Model::load(dir, 2, LoadProgress{on_progress, &prog}, KvType::F32, "nf4");
    CHECK(m->base_quant() == "nf4");
    // 1. the quantized set and its bits
    const auto nf4 = m->nf4_weights();
    int bad_hash = 0, missing = 0;
    for (const auto& [wn, t] : nf4) {
      const Json* h = hashes->find(wn);
      if (!h) { ++missing; std::fprintf(stderr, "    %s: %s is NF4 here, not in the goldens\n", name, wn.c_str()); continue; }
      if (dequant_sha16(*t) != h->str) { ++bad_hash; if (bad_hash < 3) std::fprintf(stderr, "    %s: %s dequantizes differently\n", name, wn.c_str()); }
    }
    CHECK(missing == 0 && bad_hash == 0);
    CHECK(nf4.size() == hashes->obj.size());  // and every golden tensor is NF4 here
    // 4. progress: shards, then one call per quantized tensor, ending at total
    CHECK(!prog.calls.empty() && prog.calls.back().first == prog.calls.back().second);
    const int shards = int(m->store().files().size());
    CHECK(!prog.calls.empty() && prog.calls.front().second == shards + int(nf4.size()));
    CHECK(int(prog.calls.size()) == shards + int(nf4.size()));
    for (size_t i = 1; i < prog.calls.size(); ++i) CHECK(prog.calls[i].first == prog.calls[i - 1].first + 1);

    // 2. the reference folder: every tensor f32, the quantized ones replaced by their dequantized values
    std::map<std::string, const NF4Tensor*> qmap(nf4.begin(), nf4.end());
    std::vector<moe_test::StTensor> ts;
    int64_t stored_bytes = 0, stored_quant_bytes = 0, nf4_total = 0;
    for (const auto& [tn, tv] : m->store().all()) {
      moe_test::StTensor st{tn, tv.shape, std::vector<float>(size_t(tv.numel()))};
      stored_bytes += int64_t(tv.nbytes);
      auto q = qmap.find(tn);
      if (q != qmap.end()) {
        nf4_dequantize(*q->second, st.values.data());
        stored_quant_bytes += int64_t(tv.nbytes);
        nf4_total += int64_t(nf4_bytes(q->second->n));
      } else {
        row_to_f32(st.values.data(), tv.data, tv.dtype, 0, tv.numel());
      }
      ts.push_back(std::move(st));
    }
    const std::string ref_dir = moe_test::temp_dir(std::string("nf4-ref-") + name);
    fs::copy_file(models / name / "config.json", fs::path(ref_dir) / "config.json");
    moe_test::write_file(ref_dir + "/model.safetensors", moe_test::safetensors_bytes(ts));
    auto ref = Model::load(ref_dir, 2);
    CHECK(ref->nf4_weights().empty() && ref->base_quant() == "none");

    std::vector<int32_t> ids, labels;
    for (const Json& v : g.find("ids")->arr) ids.push_back(int32_t(v.num));
    for (const Json& v : g.find("labels")->arr) labels.push_back(int32_t(v.num));
    const std::vector<float> lq = logits_of(*m, ids), lr = logits_of(*ref, ids);
    double worst = 0, mag = 0;
    for (size_t i = 0; i < lq.size(); ++i) { worst = std::max(worst, double(std::fabs(lq[i] - lr[i]))); mag = std::max(mag, double(std::fabs(lr[i]))); }
    // 3. against torch on the same base
    const double loss = shifted_ce(lq, labels, m->spec().vocab), want = g.find("base_loss")->num;
    std::printf("  %s: %zu NF4 tensors, logits vs dequantized-f32 reference max |diff| %.2e (|logit| <= %.2f), base loss %.7f (golden %.7f)\n",
                name, nf4.size(), worst, mag, loss, want);
    CHECK(worst <= 1e-5);
    CHECK(std::fabs(loss - want) <= 1e-5);
    // 4. sizes: the NF4 copies replace the stored bytes of what they quantize
    CHECK(m->weight_bytes() == stored_bytes - stored_quant_bytes + nf4_total);
    CHECK(m->weight_bytes() < stored_bytes);
    CHECK(m->params_total() == ref->params_total());
    fs::remove_all(ref_dir);
  }
}

TEST(model_nf4_base_errors) {
  const fs::path models = repo_path("test/fixtures/models");
  if (models.empty()) return;
  CHECK_THROWS(Model::load((models / "llama").string(), 1, {}, KvType::F32, "int4"), "base_quant must be \"none\" or \"nf4\"");
  // bulk dtype of a dense model whose projections are most of its parameters; an unquantized load has no NF4
  auto m = Model::load((models / "qwen3_moe").string(), 1, {}, KvType::F32, "nf4");
  CHECK(m->bulk_dtype() == DType::NF4);
  CHECK(std::string(dtype_name(m->bulk_dtype())) == "nf4");
  // the stored weights stay mapped and readable (what an export merges into), unchanged by the quantization
  const TensorView* t = m->store().find("model.layers.0.self_attn.q_proj.weight");
  CHECK(t && t->dtype == DType::BF16);
  auto plain = Model::load((models / "qwen3_moe").string(), 1);
  CHECK(plain->nf4_weights().empty() && plain->bulk_dtype() == DType::BF16);
  const TensorView* u = plain->store().find("model.layers.0.self_attn.q_proj.weight");
  CHECK(t && u && t->nbytes == u->nbytes && std::memcmp(t->data, u->data, t->nbytes) == 0);
}

// Q-LoRA's step on the cpu backend and on the kernel backend under the SIMT emulator (the NF4 GEMMs of kernels/matmul.cuh).
static void check_nf4_goldens(const char* device) {
  const fs::path models = repo_path("test/fixtures/models"), goldens = repo_path("test/fixtures/goldens/train");
  CHECK(!models.empty() && !goldens.empty());
  if (models.empty() || goldens.empty()) return;
  auto ints = [](const Json& a) { std::vector<int32_t> v; for (const Json& x : a.arr) v.push_back(int32_t(x.num)); return v; };
  auto shifted = [](const std::vector<int32_t>& l) {  // transformers' labels -> what each position predicts
    std::vector<int32_t> t(l.size(), -100);
    for (size_t i = 0; i + 1 < l.size(); ++i) t[i] = l[i + 1];
    return t;
  };
  for (const char* name : kFixtures) {
    const fs::path gdir = goldens / name;
    const Json g = json_parse_file((gdir / "nf4" / "golden.json").string());
    auto m = Model::load((models / name).string(), 2, {}, KvType::F32, "nf4", device);
    CHECK(std::string(m->backend().name()) == device);
    const ModelSpec& S = m->spec();
    const Adapter a = load_adapter((gdir / "adapter").string(), S, name);
    const std::vector<int32_t> ids = ints(*g.find("ids")), targets = shifted(ints(*g.find("labels")));
    TrainState ts;
    m->init_train(ts, 64, a);
    Adapter grads = zeros_like(a);
    int64_t n = 0;
    const double n_want = g.find("n_targets")->num;
    const double loss = m->forward_backward(ids.data(), targets.data(), int64_t(ids.size()), a, grads, float(1.0 / n_want), ts, &n) / n_want;
    CHECK(double(n) == n_want);
    const double want = g.find("loss")->num;
    if (!(std::fabs(loss - want) <= 1e-5)) { ++moe_test::failures(); std::fprintf(stderr, "  %s: nf4 loss %.8f, peft %.8f\n", name, loss, want); }
    SafeTensorsFile gf((gdir / "nf4" / "grads.safetensors").string());
    std::map<std::string, const TensorView*> golden;
    for (auto& t : gf.tensors()) golden[t.name] = &t;
    const std::vector<PeftTensor> ours = adapter_tensors(a, S, &grads);
    CHECK(ours.size() == golden.size());
    double worst = 0, norm2 = 0;
    int zeros = 0;
    for (const PeftTensor& t : ours) {
      auto it = golden.find(t.name);
      if (it == golden.end()) { ++moe_test::failures(); std::fprintf(stderr, "  %s: %s has no nf4 golden\n", name, t.name.c_str()); continue; }
      const TensorView& gv = *it->second;
      CHECK(gv.shape == t.shape && gv.dtype == DType::F32);
      const float* gd = static_cast<const float*>(gv.data);
      double gmax = 0, err = 0, omax = 0;
      for (size_t i = 0; i < t.data.size(); ++i) {
        gmax = std::max(gmax, double(std::fabs(gd[i])));
        omax = std::max(omax, double(std::fabs(t.data[i])));
        err = std::max(err, std::fabs(double(t.data[i]) - gd[i]));
        norm2 += double(t.data[i]) * t.data[i];
      }
      zeros += gmax == 0;
      const bool ok = gmax == 0 ? omax == 0 : err <= 1e-4 * gmax + 1e-6;
      if (gmax > 0) worst = std::max(worst, err / gmax);
      if (!ok) {
        ++moe_test::failures();
        std::fprintf(stderr, "  %s: nf4 %s max |d| %.3g vs max |golden| %.3g (ours max %.3g)\n", name, t.name.c_str(), err, gmax, omax);
      }
    }
    if (const Json* z = g.find("zero_grad_tensors")) CHECK(zeros == int(z->size()));
    const double gn = std::sqrt(norm2), gn_want = g.find("grad_norm")->num;
    if (!(std::fabs(gn - gn_want) <= 1e-5 * gn_want)) { ++moe_test::failures(); std::fprintf(stderr, "  %s: nf4 grad norm %.8f, peft %.8f\n", name, gn, gn_want); }
    if (const Json* b2 = g.find("batch2")) {
      const Json& bi = *b2->find("ids"); const Json& bl = *b2->find("labels");
      const double nb = b2->find("n_targets")->num;
      double sum = 0;
      Adapter g2 = zeros_like(a);
      for (size_t row = 0; row < bi.size(); ++row) {
        const std::vector<int32_t> ri = ints(bi[row]), rt = shifted(ints(bl[row]));
        sum += m->forward_backward(ri.data(), rt.data(), int64_t(ri.size()), a, g2, float(1.0 / nb), ts);
      }
      if (!(std::fabs(sum / nb - b2->find("loss")->num) <= 1e-5)) {
        ++moe_test::failures();
        std::fprintf(stderr, "  %s: nf4 batch2 loss %.8f, peft %.8f\n", name, sum / nb, b2->find("loss")->num);
      }
    }
    std::printf("  %s %s: nf4 loss %.7f (peft %.7f), %zu tensors (%d exactly 0), worst grad error %.2e of the tensor's max, |g| %.6f (peft %.6f)\n",
                device, name, loss, want, ours.size(), zeros, worst, gn, gn_want);
  }
}

TEST(model_nf4_lora_gradients_match_peft_goldens) { check_nf4_goldens("cpu"); }
TEST(model_nf4_lora_gradients_match_peft_goldens_on_emu) { check_nf4_goldens("emu"); }

// The fused transformers-5 expert layout ([E, 2I, D] gate_up_proj, [E, D, I] down_proj): each expert's gate rows,
// up rows and down slice is quantized as its own hub-layout nn.Linear weight, so a fused copy of qwen3_moe gives the
// goldens' per-expert hashes and the hub-layout NF4 model's logits bit for bit.
TEST(model_nf4_fused_experts_quantize_per_expert) {
  const fs::path models = repo_path("test/fixtures/models"), goldens = repo_path("test/fixtures/goldens/train");
  if (models.empty() || goldens.empty()) return;
  const std::string name = "qwen3_moe";
  auto hub = Model::load((models / name).string(), 1, {}, KvType::F32, "nf4");
  const ModelSpec& S = hub->spec();
  std::vector<moe_test::StTensor> ts;
  std::map<std::string, std::vector<float>> widened;
  for (const auto& [tn, tv] : hub->store().all()) {
    std::vector<float> v(size_t(tv.numel()));
    row_to_f32(v.data(), tv.data, tv.dtype, 0, tv.numel());
    widened[tn] = std::move(v);
  }
  for (auto& [tn, v] : widened)
    if (tn.find(".mlp.experts.") == std::string::npos) ts.push_back({tn, hub->store().find(tn)->shape, v});
  for (int l = 0; l < S.num_layers; ++l) {
    const LayerSpec& ls = S.layers[size_t(l)];
    if (!ls.moe) continue;
    const int64_t E = ls.num_experts, I = ls.expert_inter, D = S.hidden;
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.experts.";
    moe_test::StTensor gu{p + "gate_up_proj", {E, 2 * I, D}, {}}, dn{p + "down_proj", {E, D, I}, {}};
    for (int64_t e = 0; e < E; ++e) {
      const std::string pe = p + std::to_string(e) + ".";
      for (const char* part : {"gate_proj", "up_proj"}) { auto& w = widened.at(pe + part + ".weight"); gu.values.insert(gu.values.end(), w.begin(), w.end()); }
      auto& w = widened.at(pe + "down_proj.weight");
      dn.values.insert(dn.values.end(), w.begin(), w.end());
    }
    ts.push_back(std::move(gu)); ts.push_back(std::move(dn));
  }
  const std::string dir = moe_test::temp_dir("nf4-fused");
  fs::copy_file(models / name / "config.json", fs::path(dir) / "config.json");
  moe_test::write_file(dir + "/model.safetensors", moe_test::safetensors_bytes(ts));
  auto fused = Model::load(dir, 1, {}, KvType::F32, "nf4");
  CHECK(fused->store().find("model.layers.0.mlp.experts.gate_up_proj") != nullptr);
  const Json g = json_parse_file((goldens / name / "nf4" / "golden.json").string());
  const Json& hashes = *g.find("nf4")->find("dequant_sha256_16");
  const auto nf4 = fused->nf4_weights();
  CHECK(nf4.size() == hashes.obj.size());
  int bad = 0, checked = 0;
  for (const auto& [wn, t] : nf4) {
    // "model.layers.L.mlp.experts.gate_up_proj[e] rows r0..r1" -> the hub name of that slice
    std::string hub_name = wn;
    const size_t br = wn.find('[');
    if (br != std::string::npos) {
      const std::string base = wn.substr(0, br), pre = base.substr(0, base.rfind('.') + 1);
      const int64_t e = std::stoll(wn.substr(br + 1));
      const bool first = wn.find("rows 0..") != std::string::npos;
      const std::string part = base.ends_with("down_proj") ? "down_proj" : first ? "gate_proj" : "up_proj";
      hub_name = pre + std::to_string(e) + "." + part + ".weight";
    }
    const Json* h = hashes.find(hub_name);
    ++checked;
    if (!h || dequant_sha16(*t) != h->str) { ++bad; std::fprintf(stderr, "    fused %s (%s) differs\n", wn.c_str(), hub_name.c_str()); }
  }
  CHECK(bad == 0 && checked == int(hashes.obj.size()));
  std::vector<int32_t> ids;
  for (const Json& v : g.find("ids")->arr) ids.push_back(int32_t(v.num));
  const std::vector<float> a = logits_of(*hub, ids), b = logits_of(*fused, ids);
  CHECK(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
  fs::remove_all(dir);
}
