// The model's LoRA backward on every fixture architecture, against the model's own forward:
//   1. the loss forward_backward reports equals the cross-entropy of forward()'s logits with the adapter applied
//      (the inference path with --adapter), computed here in double: 2e-5 relative;
//   2. every kind of LoRA parameter's gradient equals central finite differences of that loss (a few entries per
//      pair kind: q/k/v/o, dense and shared gate/up/down, fused expert gate_up and down, per-expert gate/up/down).
//      Tolerance: f32 forward, loss ≈ ln V ≈ 6, rounding noise ≈ 1e-6·6/(2h) ≈ 3e-4 at h = 1e-2; truncation O(h²)·L''' is
//      smaller for A, B of scale 0.1. Routing can flip at a step: entries where the two one-sided differences disagree
//      by more than 10x the tolerance are skipped (counted; at most a few).
// The gradients against peft + torch autograd are test_train_goldens.cpp.
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>
#include "model/model.h"
#include "tests/test.h"
#include "train/lora.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  for (fs::path p : {fs::path(__FILE__).parent_path() / "../../test/fixtures/models" / name, fs::path("test/fixtures/models") / name})
    if (fs::exists(p / "config.json")) return p.string();
  return "";
}

Adapter random_adapter(const ModelSpec& spec, bool rslora, uint32_t seed) {
  LoraConfig c;
  c.r = 3; c.alpha = 6; c.use_rslora = rslora;
  c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  if (spec.model_type != "hunyuan") c.target_parameters = {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"};
  Adapter a = make_adapter(spec, c);
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.0f, 0.15f);
  a.for_each([&](const std::string&, LoraPair& p) { for (auto& v : p.A) v = n(g); for (auto& v : p.B) v = n(g); });
  return a;
}

double ce_of_forward(Model& m, const std::vector<int32_t>& ids, const std::vector<int32_t>& tg, const Adapter& a) {
  KvCache kv; Scratch s;
  const int64_t T = int64_t(ids.size()), V = m.spec().vocab;
  m.init_cache(kv, T); m.init_scratch(s, T, T);
  std::vector<float> logits(size_t(T * V));
  m.forward(ids.data(), T, 0, kv, s, logits.data(), true, &a);
  double loss = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (tg[size_t(t)] < 0) continue;
    const float* l = logits.data() + t * V;
    double mx = l[0]; for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(l[i]));
    double sum = 0; for (int64_t i = 0; i < V; ++i) sum += std::exp(double(l[i]) - mx);
    loss += mx + std::log(sum) - l[tg[size_t(t)]];
  }
  return loss;
}

}  // namespace

TEST(train_backward_matches_forward_and_finite_differences) {
  for (const char* name : {"llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "hunyuan_v1_moe", "hunyuan_large"}) {
    const std::string dir = fixture(name);
    if (dir.empty()) { std::printf("  skipped %s: fixture not found\n", name); continue; }
    auto m = Model::load(dir, 2);
    const ModelSpec& S = m->spec();
    Adapter a = random_adapter(S, std::string(name) == "qwen3", 7);
    Adapter g = zeros_like(a);
    const int64_t T = 11;
    std::vector<int32_t> ids(static_cast<size_t>(T)), tg(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) ids[size_t(t)] = int32_t((t * 37 + 5) % (S.vocab - 1));
    for (int64_t t = 0; t < T; ++t) tg[size_t(t)] = t < 3 || t == T - 1 ? -100 : ids[size_t(t + 1)];
    TrainState ts;
    m->init_train(ts, T, a);
    int64_t n = 0;
    const double loss = m->forward_backward(ids.data(), tg.data(), T, a, g, 1.0f, ts, &n);
    CHECK(n == T - 4);
    const double want = ce_of_forward(*m, ids, tg, a);
    if (!(std::fabs(loss - want) <= 2e-5 * std::fabs(want))) {
      ++moe_test::failures();
      std::fprintf(stderr, "  %s: forward_backward loss %.8g vs forward logits' CE %.8g\n", name, loss, want);
    }
    // finite differences on a few entries of every pair
    Adapter grads = g;
    int checked = 0, skipped = 0;
    TrainState ts2; m->init_train(ts2, T, a);
    Adapter scratch_g = zeros_like(a);
    auto L = [&] { return m->forward_backward(ids.data(), tg.data(), T, a, scratch_g, 1.0f, ts2); };
    std::vector<std::pair<std::string, LoraPair*>> pairs;
    a.for_each([&](const std::string& site, LoraPair& p) { if (p.present()) pairs.push_back({site, &p}); });
    std::vector<LoraPair*> gpairs;
    grads.for_each([&](const std::string&, LoraPair& p) { if (p.present()) gpairs.push_back(&p); });
    std::mt19937 pick(3);
    for (size_t i = 0; i < pairs.size(); i += std::max<size_t>(1, pairs.size() / 24)) {
      LoraPair& p = *pairs[i].second; LoraPair& gp = *gpairs[i];
      for (int which = 0; which < 2; ++which) {
        std::vector<float>& w = which ? p.B : p.A;
        std::vector<float>& gw = which ? gp.B : gp.A;
        const size_t j = pick() % w.size();
        const float h = 1e-2f, w0 = w[j];
        const double l0 = L();
        w[j] = w0 + h; const double lp = L();
        w[j] = w0 - h; const double lm = L();
        w[j] = w0;
        const double fd = (lp - lm) / (2 * h), fwd = (lp - l0) / h, bwd = (l0 - lm) / h;
        const double tol = 1e-3 + 3e-2 * std::fabs(fd);
        if (std::fabs(fwd - bwd) > 10 * tol + 0.5 * std::fabs(fd)) { ++skipped; continue; }  // a routing flip inside the step
        ++checked;
        if (!(std::fabs(fd - gw[j]) <= tol)) {
          ++moe_test::failures();
          std::fprintf(stderr, "  %s %s.%s[%zu]: finite difference %.6g vs backward %.6g\n", name, pairs[i].first.c_str(),
                       which ? "B" : "A", j, fd, double(gw[j]));
        }
      }
    }
    CHECK(checked >= 8);
    CHECK(skipped <= 2);
    std::printf("  %s: loss %.6f, %d gradient entries checked by finite differences (%d skipped at a routing flip)\n", name, loss, checked, skipped);
  }
}
