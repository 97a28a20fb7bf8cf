// The trainer (train/trainer.h) on the tiny fixtures:
//   1. schedules: lr per optimizer step from transformers 5's get_scheduler + torch LambdaLR (values printed by the
//      reference venv: lr=1e-5, 3 warmup of 20 steps, min_lr 1e-6), relative 1e-12 (both are double formulas);
//   2. AdamW + global-norm clip against a double re-computation from the same gradients (forward_backward of the
//      trainer's own adapter), 3 steps, each from the trainer's f32 parameters with double moments:
//      |Δ| ≤ 1e-6·lr + 2.4e-7·|p| — the update m̂/(√v̂+ε) ≈ ±1 carries f32 rounding of m, v, √ and the division
//      (a few 1e-7 of lr), and p − lr·u is rounded to f32 (½ ulp = 6e-8·|p|, twice: decay and update);
//   3. resume: 6 steps vs 3 + save + resume + 3 (with lora_dropout, so the RNG state matters): identical adapter
//      and optimizer bytes;
//   4. a NaN in the adapter: the step is refused, every byte of the adapter and the step count unchanged;
//   5. LoRA dropout's backward: the directional derivative of the loss under one fixed mask equals central finite
//      differences (relative 2e-2 at h = 1e-3 on loss ≈ 6: f32 rounding ≈ 6e-7·6/h ≈ 4e-3 of a derivative ~1).
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>
#include <atomic>
#include <cstdlib>
#include <new>
#include "model/model.h"
#include "tests/test.h"
#include "train/trainer.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  for (fs::path p : {fs::path(__FILE__).parent_path() / "../../test/fixtures/models" / name, fs::path("test/fixtures/models") / name})
    if (fs::exists(p / "config.json")) return p.string();
  return "";
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s; s << f.rdbuf(); return s.str();
}

TrainConfig base_config(const ModelSpec& S) {
  TrainConfig c;
  c.lora.r = 4; c.lora.alpha = 8;
  c.lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  if (S.max_experts() > 0 && S.model_type != "hunyuan") c.lora.target_parameters = {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"};
  c.learning_rate = 1e-2; c.total_steps = 10; c.warmup_steps = 2; c.max_seq_length = 24; c.seed = 7;
  c.schedule = Schedule::Cosine; c.weight_decay = 0.01;
  return c;
}

std::vector<TrainSeq> batch_for(const ModelSpec& S, uint32_t seed, int n = 2, int T = 16) {
  std::mt19937 g(seed);
  std::vector<TrainSeq> b{size_t(n)};
  for (auto& s : b) {
    for (int t = 0; t < T; ++t) s.ids.push_back(int32_t(g() % uint32_t(S.vocab)));
    s.labels = s.ids;
    for (int t = 0; t < T / 3; ++t) s.labels[size_t(t)] = -100;  // a prompt part without loss
  }
  return b;
}

std::vector<std::vector<float>*> pairs(Adapter& a) {
  std::vector<std::vector<float>*> v;
  a.for_each([&](const std::string&, LoraPair& p) { if (p.present()) { v.push_back(&p.A); v.push_back(&p.B); } });
  return v;
}

}  // namespace

TEST(train_schedules_match_transformers) {
  const double lr = 1e-5;
  const int64_t N = 20, W = 3;
  const int64_t steps[] = {0, 1, 2, 3, 4, 7, 11, 19, 20};
  struct Row { Schedule s; double v[9]; };
  const Row rows[] = {
    {Schedule::Linear, {0, 3.3333333333333333e-06, 6.6666666666666666e-06, 1.0000000000000001e-05, 9.4117647058823538e-06,
                        7.6470588235294111e-06, 5.2941176470588239e-06, 5.8823529411764711e-07, 0}},
    {Schedule::Cosine, {0, 3.3333333333333333e-06, 6.6666666666666666e-06, 1.0000000000000001e-05, 9.9148654984195106e-06,
                        8.6950445861032969e-06, 5.4613417973165104e-06, 8.5134501580491085e-08, 0}},
    {Schedule::CosineWithMinLr, {0, 3.3333333333333333e-06, 6.6666666666666666e-06, 1.0000000000000001e-05, 9.9233789485775596e-06,
                                 8.8255401274929664e-06, 5.915207617584859e-06, 1.0766210514224418e-06, 9.9999999999999995e-07}},
    {Schedule::ConstantWithWarmup, {0, 3.3333333333333333e-06, 6.6666666666666666e-06, 1e-05, 1e-05, 1e-05, 1e-05, 1e-05, 1e-05}},
    {Schedule::Constant, {1e-05, 1e-05, 1e-05, 1e-05, 1e-05, 1e-05, 1e-05, 1e-05, 1e-05}},
  };
  for (auto& r : rows)
    for (int i = 0; i < 9; ++i) CHECK_NEAR(lr * lr_lambda(r.s, steps[i], W, N, 1e-6 / lr), r.v[i], 1e-12 * lr);
  CHECK(warmup_steps_for(100, 0, 0.01) == 1);   // ceil(100 · 0.01)
  CHECK(warmup_steps_for(150, 0, 0.01) == 2);   // ceil(1.5)
  CHECK(warmup_steps_for(150, 5, 0.5) == 5);    // warmup_steps wins
  CHECK_THROWS(parse_schedule("polynomial"), "cosine_with_min_lr");
}

TEST(train_adamw_clip_vs_double) {
  for (const char* name : {"llama", "qwen3_moe"}) {
    const std::string dir = fixture(name);
    if (dir.empty()) { std::fprintf(stderr, "  skip %s: fixture missing\n", name); continue; }
    auto model = Model::load(dir, 1);
    TrainConfig c = base_config(model->spec());
    c.max_grad_norm = 0.05;  // small enough that clipping is active
    Trainer tr(model, c);
    const auto batch = batch_for(model->spec(), 3);
    // reference state in double
    Adapter start = tr.adapter();
    std::vector<std::vector<double>> P, M, V;
    for (auto* v : pairs(start)) { P.emplace_back(v->begin(), v->end()); M.emplace_back(v->size(), 0.0); V.emplace_back(v->size(), 0.0); }
    TrainState ts;
    model->init_train(ts, c.max_seq_length, tr.adapter());
    bool clipped = false;
    double worst = 0;
    for (int k = 1; k <= 3; ++k) {
      // the gradient the trainer will see: its adapter, the same batch, loss_scale 1/N
      Adapter cur = tr.adapter(), g = zeros_like(cur);
      int64_t N = 0;
      for (auto& s : batch) for (size_t t = 1; t < s.labels.size(); ++t) N += s.labels[t] != -100;
      double loss = 0;
      for (auto& s : batch) {
        std::vector<int32_t> tg(s.ids.size(), -100);
        for (size_t t = 0; t + 1 < s.ids.size(); ++t) tg[t] = s.labels[t + 1];
        loss += model->forward_backward(s.ids.data(), tg.data(), int64_t(s.ids.size()), cur, g, float(1.0 / double(N)), ts);
      }
      double sq = 0;
      for (auto* v : pairs(g)) for (float x : *v) sq += double(x) * x;
      const double norm = std::sqrt(sq), coef = std::min(1.0, c.max_grad_norm / (norm + 1e-6));
      clipped |= coef < 1;
      const double lr = c.learning_rate * lr_lambda(c.schedule, k - 1, c.warmup_steps, c.total_steps, 0);
      const StepResult r = tr.step(batch);
      CHECK(r.step == k);
      CHECK_NEAR(r.loss, loss / double(N), 1e-12 * std::fabs(loss));
      CHECK_NEAR(r.grad_norm, norm, 1e-12 * norm);
      CHECK_NEAR(r.lr, lr, 1e-15);
      auto G = pairs(g);
      Adapter after = tr.adapter();
      auto A = pairs(after);
      const double b1 = 0.9, b2 = 0.999, bc1 = 1 - std::pow(b1, k), bc2 = 1 - std::pow(b2, k);
      for (size_t i = 0; i < P.size(); ++i)
        for (size_t j = 0; j < P[i].size(); ++j) {
          const double gg = double((*G[i])[j]) * coef;
          M[i][j] = b1 * M[i][j] + (1 - b1) * gg;
          V[i][j] = b2 * V[i][j] + (1 - b2) * gg * gg;
          P[i][j] -= lr * (M[i][j] / bc1 / (std::sqrt(V[i][j] / bc2) + 1e-8) + c.weight_decay * P[i][j]);
          const double d = std::fabs(P[i][j] - double((*A[i])[j]));
          worst = std::max(worst, d / (1e-6 * c.learning_rate + 2.4e-7 * std::fabs(P[i][j])));
          P[i][j] = double((*A[i])[j]);  // next step starts from the trainer's f32 parameters (moments stay double)
        }
    }
    CHECK(clipped);
    CHECK(worst <= 1.0);
    std::fprintf(stderr, "  %s: AdamW vs double, worst |Δ| / tolerance = %.3g\n", name, worst);
  }
}

TEST(train_resume_bit_identical) {
  const std::string dir = fixture("qwen3_moe");
  if (dir.empty()) return;
  auto model = Model::load(dir, 1);
  TrainConfig c = base_config(model->spec());
  c.lora.dropout = 0.1;
  const fs::path tmp = fs::temp_directory_path() / ("moe_train_resume_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  std::vector<std::vector<TrainSeq>> batches;
  for (uint32_t k = 0; k < 6; ++k) batches.push_back(batch_for(model->spec(), 100 + k));
  {
    Trainer a(model, c);
    for (auto& b : batches) a.step(b);
    a.save_checkpoint((tmp / "full").string());
  }
  {
    Trainer b(model, c);
    for (int k = 0; k < 3; ++k) b.step(batches[size_t(k)]);
    b.save_checkpoint((tmp / "half").string(), "{\"epoch\": 0, \"index\": 3}");
  }
  {
    auto r = Trainer::resume(model, c, (tmp / "half").string());
    CHECK(r->steps_done() == 3);
    CHECK(Trainer::read_extra((tmp / "half").string()).find("\"index\": 3") != std::string::npos);
    for (int k = 3; k < 6; ++k) r->step(batches[size_t(k)]);
    r->save_checkpoint((tmp / "resumed").string());
  }
  {
    TrainConfig other = c;
    other.lora.alpha = 32;
    CHECK_THROWS(Trainer::resume(model, other, (tmp / "half").string()), "lora_alpha 8");
    other = c;
    other.lora.r = 8;
    CHECK_THROWS(Trainer::resume(model, other, (tmp / "half").string()), "lora_rank 4");
  }
  for (const char* f : {"adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json", "adapter_config.json"})
    CHECK(slurp(tmp / "full" / f) == slurp(tmp / "resumed" / f));
  CHECK(slurp(tmp / "full" / "adapter_model.safetensors") != slurp(tmp / "half" / "adapter_model.safetensors"));
  // no leftovers beside the checkpoints
  int n = 0;
  for (auto& e : fs::directory_iterator(tmp)) { (void)e; ++n; }
  CHECK(n == 3);
  fs::remove_all(tmp);
}

TEST(train_nan_refused) {
  const std::string dir = fixture("llama");
  if (dir.empty()) return;
  auto model = Model::load(dir, 1);
  TrainConfig c = base_config(model->spec());
  Trainer tr(model, c);
  const auto batch = batch_for(model->spec(), 5);
  tr.step(batch);
  tr.adapter_mut().layers[1].q.A[3] = std::nanf("");
  const Adapter before = tr.adapter();
  CHECK_THROWS(tr.step(batch), "not finite");
  CHECK(tr.steps_done() == 1);
  Adapter b = before, a = tr.adapter();
  auto pb = pairs(b), pa = pairs(a);
  bool same = pb.size() == pa.size();
  for (size_t i = 0; same && i < pb.size(); ++i) same = std::memcmp(pb[i]->data(), pa[i]->data(), pb[i]->size() * 4) == 0;
  CHECK(same);
  CHECK_THROWS(tr.step({}), "empty");
  TrainSeq none; none.ids = {1, 2, 3}; none.labels = {-100, -100, -100};
  CHECK_THROWS(tr.step({none}), "no token");
}

TEST(train_lora_dropout_gradient) {
  const std::string dir = fixture("qwen3_moe");
  if (dir.empty()) return;
  auto model = Model::load(dir, 1);
  TrainConfig c = base_config(model->spec());
  c.lora.dropout = 0.3;
  Trainer tr(model, c);  // sets the pair ids
  Adapter a = tr.adapter();
  std::mt19937 g(11);
  std::normal_distribution<float> n(0.0f, 0.1f);
  a.for_each([&](const std::string&, LoraPair& p) { for (auto& v : p.B) v = n(g); });  // B ≠ 0 so dA ≠ 0
  const auto seq = batch_for(model->spec(), 9, 1, 20)[0];
  std::vector<int32_t> tg(seq.ids.size(), -100);
  for (size_t t = 0; t + 1 < seq.ids.size(); ++t) tg[t] = seq.labels[t + 1];
  TrainState ts;
  model->init_train(ts, 20, a);
  auto run = [&](const Adapter& x, Adapter& gr, float p) {
    ts.s.dropout_p = p; ts.s.dropout_seed = 12345;
    const double l = model->forward_backward(seq.ids.data(), tg.data(), 20, x, gr, 1.0f, ts);
    ts.s.dropout_p = 0;
    return l;
  };
  Adapter gr = zeros_like(a);
  const double l0 = run(a, gr, 0.3f);
  Adapter g_off = zeros_like(a);
  const double l_off = run(a, g_off, 0.0f);
  CHECK(std::fabs(l0 - l_off) > 1e-6);  // the mask changes the loss
  // direction d over every A and B
  Adapter d = zeros_like(a);
  std::mt19937 g2(5);
  std::normal_distribution<float> n2(0.0f, 1.0f);
  d.for_each([&](const std::string&, LoraPair& p) { for (auto& v : p.A) v = n2(g2); for (auto& v : p.B) v = n2(g2); });
  double dot = 0;
  {
    auto G = pairs(gr), Dv = pairs(d);
    for (size_t i = 0; i < G.size(); ++i) for (size_t j = 0; j < G[i]->size(); ++j) dot += double((*G[i])[j]) * (*Dv[i])[j];
  }
  const float h = 1e-3f;
  auto shifted = [&](float sgn) {
    Adapter x = a;
    auto X = pairs(x), Dv = pairs(d);
    for (size_t i = 0; i < X.size(); ++i) for (size_t j = 0; j < X[i]->size(); ++j) (*X[i])[j] += sgn * h * (*Dv[i])[j];
    Adapter junk = zeros_like(a);
    return run(x, junk, 0.3f);
  };
  const double fd = (shifted(1) - shifted(-1)) / (2.0 * h);
  std::fprintf(stderr, "  dropout: directional derivative %.6g, finite difference %.6g\n", dot, fd);
  CHECK_NEAR(dot, fd, 2e-2 * std::fabs(fd) + 1e-4);
}

// expert_lr_scale: a factor of 0 leaves that group's pairs exactly as initialised, the others move; on qwen2_moe
// (routed + shared experts) and hunyuan_large (per-expert pairs, CLA layers without k/v).
TEST(train_group_lr_factors) {
  for (const char* name : {"qwen2_moe", "hunyuan_large"}) {
    const std::string dir = fixture(name);
    if (dir.empty()) continue;
    auto model = Model::load(dir, 1);
    TrainConfig c = base_config(model->spec());
    c.schedule = Schedule::Constant;
    c.lr_routed = 0; c.lr_shared = 1; c.lr_attention = 0.5;
    Trainer tr(model, c);
    Adapter before = tr.adapter();
    tr.step(batch_for(model->spec(), 21));
    tr.step(batch_for(model->spec(), 22));
    Adapter after = tr.adapter();
    int routed = 0, moved = 0, shared = 0;
    std::vector<std::pair<std::string, LoraPair*>> b, a;
    before.for_each([&](const std::string& s, LoraPair& p) { b.push_back({s, &p}); });
    after.for_each([&](const std::string& s, LoraPair& p) { a.push_back({s, &p}); });
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].second->present()) continue;
      const bool same = a[i].second->A == b[i].second->A && a[i].second->B == b[i].second->B;
      if (a[i].first.find(".experts.") != std::string::npos) { ++routed; CHECK(same); }
      else { CHECK(!same); ++moved; if (a[i].first.find(".shared.") != std::string::npos) ++shared; }
    }
    CHECK(routed > 0 && moved > 0);
    std::fprintf(stderr, "  %s: %d routed pairs frozen by factor 0, %d others moved (%d shared)\n", name, routed, moved, shared);
  }
}

// Once warm (the first step grows the LoRA scratch to its largest call), a step allocates nothing: every
// operator new of the process (this file replaces the global one with a counting one) is counted over later steps,
// on every thread (the pool's workers too), with dropout on.
static std::atomic<long> g_news{0};
static std::atomic<bool> g_count_news{false};
void* operator new(std::size_t n) {
  if (g_count_news.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

TEST(train_step_allocates_nothing_when_warm) {
  // Nothing of the trainer's, the model's or the backend's (moe_route_backward's buffer is thread-local since main's
  // 3d0e0ba), dense and MoE.
  for (const char* name : {"llama", "qwen3_moe"}) {
    const std::string dir = fixture(name);
    if (dir.empty()) continue;
    auto model = Model::load(dir, 2);
    TrainConfig c = base_config(model->spec());
    c.lora.dropout = 0.1;
    Trainer tr(model, c);
    const auto batch = batch_for(model->spec(), 31);
    for (int k = 0; k < 4; ++k) tr.step(batch);
    g_news = 0;
    g_count_news = true;
    for (int k = 0; k < 10; ++k) tr.step(batch);
    g_count_news = false;
    const long n = g_news.load();
    std::fprintf(stderr, "  %s: 10 warm steps, %ld allocations\n", name, n);
    // except the cpu backend's per-thread thread_buffer, which grows (monotonically, to a high-water mark) when a
    // thread first gets a larger chunk than before — which thread runs which expert's chunk is up to the scheduler
    // (measured 0-3 in 10 runs; an allocation per step would be ≥ 10)
    CHECK(n <= 8);
  }
  // the counter works: one vector is one allocation
  g_news = 0;
  g_count_news = true;
  { std::vector<float> v(10); (void)v; }
  g_count_news = false;
  CHECK(g_news.load() == 1);
}

// evaluate (forward only, chunked logits through the KV cache) equals the loss forward_backward reports for the same
// adapter: relative 1e-5 (the same f32 forward; the loss sums differ only in summation order and the CE's own rounding).
TEST(train_evaluate_matches_training_loss) {
  for (const char* name : {"llama", "qwen3_moe"}) {
    const std::string dir = fixture(name);
    if (dir.empty()) continue;
    auto model = Model::load(dir, 1);
    TrainConfig c = base_config(model->spec());
    Trainer tr(model, c);
    const auto batch = batch_for(model->spec(), 41);
    tr.step(batch);
    const auto ev = tr.evaluate(batch);
    Adapter a = tr.adapter(), g = zeros_like(a);
    TrainState ts;
    model->init_train(ts, c.max_seq_length, a);
    double sum = 0;
    int64_t N = 0;
    for (auto& s : batch) {
      std::vector<int32_t> tg(s.ids.size(), -100);
      for (size_t t = 0; t + 1 < s.ids.size(); ++t) tg[t] = s.labels[t + 1];
      int64_t n = 0;
      sum += model->forward_backward(s.ids.data(), tg.data(), int64_t(s.ids.size()), a, g, 1.0f, ts, &n);
      N += n;
    }
    CHECK(ev.second == N);
    CHECK_NEAR(ev.first, sum / double(N), 1e-5 * sum / double(N));
  }
}
