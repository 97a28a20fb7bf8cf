// Token sampling with Hugging Face semantics, applied in transformers' order:
//   repetition_penalty -> temperature -> top_k -> top_p -> min_p -> softmax -> draw
// temperature <= 0 is greedy (argmax after the repetition penalty). The RNG is xoshiro256** seeded by splitmix64,
// with our own float conversion, so the same seed gives the same ids on every platform and standard library.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace moe {

struct SamplingParams {
  float temperature = 0.0f;      // <= 0: greedy
  int top_k = 0;                 // <= 0: off
  float top_p = 1.0f;            // >= 1: off
  float min_p = 0.0f;            // <= 0: off
  float repetition_penalty = 1.0f;  // 1: off
  uint32_t seed = 0;
  int max_tokens = 16;
  std::vector<int> eos_ids;
};

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { this->seed(seed); }
  void seed(uint64_t s);
  uint64_t next();
  double uniform();  // [0, 1), 53 random bits
 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  explicit Sampler(int64_t vocab) : vocab_(vocab), work_(size_t(vocab)), order_(size_t(vocab)) {}
  // logits: [vocab], modified in place. seen: ids of prompt + generated so far (for the repetition penalty).
  int sample(float* logits, const SamplingParams& p, const int32_t* seen, int64_t n_seen, Rng& rng);

  // Steps exposed for tests; each works in place on logits [n] and masks removed tokens with -inf.
  static void apply_repetition_penalty(float* logits, int64_t n, const int32_t* seen, int64_t n_seen, float penalty,
                                       std::vector<int32_t>& tmp);
  static void apply_top_k(float* logits, int64_t n, int k, std::vector<float>& work);
  static void apply_top_p(float* logits, int64_t n, float top_p, std::vector<int32_t>& order, std::vector<float>& work);
  static void apply_min_p(float* logits, int64_t n, float min_p);
  static int argmax(const float* logits, int64_t n);
 private:
  int64_t vocab_;
  std::vector<float> work_;
  std::vector<int32_t> order_, seen_tmp_;
};

}  // namespace moe
