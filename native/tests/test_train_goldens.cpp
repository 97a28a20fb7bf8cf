// LoRA gradients against peft + torch autograd (test/fixtures/goldens/train/<name>/, made by make_train_goldens.py):
// every fixture architecture, the adapter folder peft wrote, its fixed batch:
//   loss                  |Δ| ≤ 1e-5 (loss ≈ 7; the goldens' own float32 error is ≤ 8e-7)
//   every adapter tensor  max |g − golden| ≤ 1e-4 · max |golden| + 1e-6 (float32 backward over 4 layers drifts with
//                         summation order; the goldens measured ≤ 5.4e-6 of the max against float64, so 1e-4 is
//                         ~20x room and still catches a missing scaling, a transposed A/B or a wrong expert column,
//                         which are O(1)); tensors whose golden gradient is exactly 0 (experts no token reached)
//                         must be exactly 0
//   logits with the adapter applied (forward, unmerged) ≤ 1e-4 absolute, as for inference
//   batch2 (two sequences, loss = Σ CE / 25 targets) ≤ 1e-5
// (fixtures README, "Tolerances for the engine's training tests".)
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>
#include "format/json.h"
#include "format/safetensors.h"
#include "io/adapter.h"
#include "model/model.h"
#include "tests/test.h"
#include "train/lora.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

fs::path repo_root() {
  for (fs::path p : {fs::path(__FILE__).parent_path() / "../..", fs::current_path()})
    if (fs::exists(p / "test/fixtures/goldens/train")) return p;
  return {};
}

std::vector<int32_t> ints(const Json& a) {
  std::vector<int32_t> v;
  for (size_t i = 0; i < a.size(); ++i) v.push_back(int32_t(a[i].num));
  return v;
}

// transformers' labels (aligned with ids, -100 ignored) -> what each position predicts
std::vector<int32_t> shifted(const std::vector<int32_t>& labels) {
  std::vector<int32_t> t(labels.size(), -100);
  for (size_t i = 0; i + 1 < labels.size(); ++i) t[i] = labels[i + 1];
  return t;
}

}  // namespace

// On the cpu backend, and on the kernel backend under the SIMT emulator (cuda/kernel_backend.h: the same host code and
// kernels a GPU runs), against the same goldens and tolerances.
static void check_train_goldens(const char* device) {
  const fs::path root = repo_root();
  if (root.empty()) { std::printf("  skipped: test/fixtures/goldens/train not found\n"); return; }
  int fixtures = 0;
  for (const char* name : {"llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "hunyuan_v1_moe", "hunyuan_large"}) {
    const fs::path gdir = root / "test/fixtures/goldens/train" / name;
    if (!fs::exists(gdir / "golden.json")) continue;
    ++fixtures;
    const Json g = json_parse_file((gdir / "golden.json").string());
    auto m = Model::load((root / "test/fixtures/models" / name).string(), 2, {}, KvType::F32, "none", device);
    CHECK(std::string(m->backend().name()) == device);
    const ModelSpec& S = m->spec();
    const Adapter a = load_adapter((gdir / "adapter").string(), S, name);
    const std::vector<int32_t> ids = ints(*g.find("ids")), targets = shifted(ints(*g.find("labels")));
    const int64_t T = int64_t(ids.size());
    TrainState ts;
    m->init_train(ts, 64, a);
    Adapter grads = zeros_like(a);
    int64_t n = 0;
    const double n_want = g.find("n_targets")->num;
    const double loss = m->forward_backward(ids.data(), targets.data(), T, a, grads, float(1.0 / n_want), ts, &n) / n_want;
    CHECK(double(n) == n_want);
    const double want = g.find("loss")->num;
    if (!(std::fabs(loss - want) <= 1e-5)) {
      ++moe_test::failures();
      std::fprintf(stderr, "  %s: loss %.8f, peft %.8f\n", name, loss, want);
    }
    // every gradient tensor under peft's name
    SafeTensorsFile gf((gdir / "grads.safetensors").string());
    std::map<std::string, const TensorView*> golden;
    for (auto& t : gf.tensors()) golden[t.name] = &t;
    const std::vector<PeftTensor> ours = adapter_tensors(a, S, &grads);
    CHECK(ours.size() == golden.size());
    double worst = 0;
    for (const PeftTensor& t : ours) {
      auto it = golden.find(t.name);
      if (it == golden.end()) { ++moe_test::failures(); std::fprintf(stderr, "  %s: %s has no golden\n", name, t.name.c_str()); continue; }
      const TensorView& gv = *it->second;
      CHECK(gv.shape == t.shape && gv.dtype == DType::F32);
      const float* gd = static_cast<const float*>(gv.data);
      double gmax = 0, err = 0, omax = 0;
      for (size_t i = 0; i < t.data.size(); ++i) {
        gmax = std::max(gmax, double(std::fabs(gd[i])));
        omax = std::max(omax, double(std::fabs(t.data[i])));
        err = std::max(err, std::fabs(double(t.data[i]) - gd[i]));
      }
      const bool ok = gmax == 0 ? omax == 0 : err <= 1e-4 * gmax + 1e-6;
      if (gmax > 0) worst = std::max(worst, err / gmax);
      if (!ok) {
        ++moe_test::failures();
        std::fprintf(stderr, "  %s: %s max |Δ| %.3g vs max |golden| %.3g (ours max %.3g)\n", name, t.name.c_str(), err, gmax, omax);
      }
    }
    // logits with the adapter, unmerged
    {
      const Json& gl = *g.find("logits");
      KvCache kv; Scratch s;
      const int64_t V = S.vocab;
      m->init_cache(kv, T); m->init_scratch(s, T, T);
      std::vector<float> logits(size_t(T * V));
      m->forward(ids.data(), T, 0, kv, s, logits.data(), true, &a);
      double lerr = 0;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < V && i < int64_t(gl[size_t(t)].size()); ++i)
          lerr = std::max(lerr, std::fabs(double(logits[size_t(t * V + i)]) - gl[size_t(t)][size_t(i)].num));
      if (!(lerr <= 1e-4)) { ++moe_test::failures(); std::fprintf(stderr, "  %s: logits with the adapter off by %.3g\n", name, lerr); }
    }
    // batch2: two sequences, the loss summed over both and divided by all their targets
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
        std::fprintf(stderr, "  %s: batch2 loss %.8f, peft %.8f\n", name, sum / nb, b2->find("loss")->num);
      }
    }
    std::printf("  %s %s: loss %.7f (peft %.7f), %zu tensors, worst grad error %.2e of the tensor's max\n", device, name, loss, want,
                ours.size(), worst);
  }
  CHECK(fixtures == 9);
}

TEST(train_gradients_match_peft_goldens) { check_train_goldens("cpu"); }
TEST(train_gradients_match_peft_goldens_on_emu) { check_train_goldens("emu"); }
