#include "tests/test.h"
#include <cmath>
#include <limits>
#include "runtime/sampler.h"

using namespace moe;
static const float NINF = -std::numeric_limits<float>::infinity();

TEST(runtime_sampler_repetition_penalty_hf_semantics) {
  float l[4] = {2.0f, -2.0f, 1.0f, 0.5f};
  int32_t seen[] = {0, 1, 1};  // id 1 twice: penalised once
  std::vector<int32_t> tmp;
  Sampler::apply_repetition_penalty(l, 4, seen, 3, 2.0f, tmp);
  CHECK(l[0] == 1.0f && l[1] == -4.0f && l[2] == 1.0f && l[3] == 0.5f);
}

TEST(runtime_sampler_top_k_keeps_ties) {
  float l[5] = {1, 5, 3, 5, 2};
  std::vector<float> w;
  Sampler::apply_top_k(l, 5, 2, w);
  CHECK(l[1] == 5 && l[3] == 5 && l[0] == NINF && l[2] == NINF && l[4] == NINF);
  float m[5] = {1, 5, 3, 4, 2};
  Sampler::apply_top_k(m, 5, 3, w);
  CHECK(m[0] == NINF && m[4] == NINF && m[2] == 3 && m[3] == 4 && m[1] == 5);
}

TEST(runtime_sampler_top_p) {
  // probs 0.5, 0.25, 0.125, 0.125 -> top_p 0.7 keeps {0.5, 0.25}; ascending cumsum 0.125, 0.25 <= 0.3 removed
  float l[4] = {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.125f)};
  std::vector<int32_t> order; std::vector<float> w;
  Sampler::apply_top_p(l, 4, 0.7f, order, w);
  CHECK(l[0] != NINF && l[1] != NINF && l[2] == NINF && l[3] == NINF);
  float k[3] = {0.0f, -1.0f, -2.0f};
  Sampler::apply_top_p(k, 3, 0.01f, order, w);  // always keeps the top token
  CHECK(k[0] == 0.0f && k[1] == NINF && k[2] == NINF);
}

TEST(runtime_sampler_min_p) {
  float l[3] = {0.0f, std::log(0.2f), std::log(0.05f)};  // relative to max prob: 1, 0.2, 0.05
  Sampler::apply_min_p(l, 3, 0.1f);
  CHECK(l[0] == 0.0f && l[1] != NINF && l[2] == NINF);
}

TEST(runtime_sampler_seed_reproducible_and_greedy) {
  const int V = 50;
  auto run = [&](uint32_t seed) {
    Sampler s(V); Rng rng(seed);
    SamplingParams p; p.temperature = 0.9f; p.top_k = 20; p.top_p = 0.9f; p.min_p = 0.01f; p.repetition_penalty = 1.1f; p.seed = seed;
    std::vector<int32_t> seen = {1, 2, 3}, out;
    for (int i = 0; i < 40; ++i) {
      float l[V]; for (int j = 0; j < V; ++j) l[j] = std::sin(float(j * 7 + i));
      int id = s.sample(l, p, seen.data(), int64_t(seen.size()), rng);
      CHECK(id >= 0 && id < V);
      out.push_back(id); seen.push_back(id);
    }
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
  Sampler g(4); Rng r(0); SamplingParams p; p.temperature = 0;
  float l[4] = {0.1f, 3.0f, 2.0f, -1.0f};
  CHECK(g.sample(l, p, nullptr, 0, r) == 1);
  // xoshiro256** seeded by splitmix64 gives fixed numbers everywhere
  Rng a(1), b(1); CHECK(a.next() == b.next()); double u = a.uniform(); CHECK(u >= 0 && u < 1);
}

TEST(runtime_sampler_presence_frequency_openai_semantics) {
  // OpenAI: l_j -= c_j * frequency + (c_j > 0) * presence over the generated ids.
  float l[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  int32_t gen[] = {2, 1, 2, 2, 9};  // id 2 three times, id 1 once; 9 is out of range and ignored
  std::vector<int32_t> tmp;
  Sampler::apply_presence_frequency(l, 4, gen, 5, 0.5f, 0.25f, tmp);
  CHECK(l[0] == 1.0f && l[1] == 1.0f - 0.25f - 0.5f && l[2] == 1.0f - 0.75f - 0.5f && l[3] == 1.0f);
  float m[2] = {1.0f, 2.0f};
  int32_t g2[] = {1};
  Sampler::apply_presence_frequency(m, 2, g2, 1, -1.0f, 0.0f, tmp);  // a negative presence penalty favours repeats
  CHECK(m[1] == 3.0f);
  // In sample(): greedy switches away from a token generated often enough.
  Sampler s(3); Rng r(0); SamplingParams p; p.frequency_penalty = 1.0f;
  float k[3] = {2.0f, 1.5f, 0.0f};
  int32_t g3[] = {0};
  CHECK(s.sample(k, p, g3, 1, r, g3, 1) == 1);  // 2 - 1 < 1.5
}
