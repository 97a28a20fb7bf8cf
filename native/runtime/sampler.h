// Token sampling with Hugging Face semantics, applied in transformers' order:
//   repetition_penalty -> presence/frequency penalty -> logit bias -> constraint mask -> temperature -> top_k -> top_p -> min_p
//   -> softmax -> draw
// temperature <= 0 is greedy (argmax after the penalties and the mask). The presence and frequency penalties are
// OpenAI's (not in transformers): over the ids generated so far, l_j -= c_j * frequency + (c_j > 0) * presence,
// where c_j counts id j. The mask comes before the warpers so that top_k / top_p pick among allowed tokens. The RNG is xoshiro256** seeded by splitmix64,
// with our own float conversion, so the same seed gives the same ids on every platform and standard library.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace moe {

struct SamplingParams {
  float temperature = 0.0f;      // <= 0: greedy
  int top_k = 0;                 // <= 0: off
  float top_p = 1.0f;            // >= 1: off
  float min_p = 0.0f;            // <= 0: off
  float repetition_penalty = 1.0f;  // 1: off
  float presence_penalty = 0.0f;    // 0: off; OpenAI semantics, over generated ids only
  float frequency_penalty = 0.0f;   // 0: off
  std::vector<std::pair<int32_t, float>> logit_bias;  // OpenAI's: added to those ids' logits (-100 bans one)
  uint32_t seed = 0;
  int max_tokens = 16;
  std::vector<int> eos_ids;
};

// A grammar the generated tokens must follow (constrained decoding, runtime/json_constraint.h). Before each draw
// the sampler masks what it does not allow; the session advances it with the drawn id and stops when it is done.
class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  virtual bool allows(int32_t id) const = 0;
  virtual void mask(float* logits, int64_t n) const = 0;  // logits[i] = -inf where !allows(i)
  virtual void advance(int32_t id) = 0;
  virtual bool done() const = 0;  // nothing may follow: the generation ends here
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
  // logits: [vocab], modified in place. seen: ids of prompt + generated so far (for the repetition penalty);
  // generated: the ids generated so far (presence / frequency penalties). Returns -1 when the constraint (or the
  // penalties) leave no token to draw.
  int sample(float* logits, const SamplingParams& p, const int32_t* seen, int64_t n_seen, Rng& rng,
             const int32_t* generated = nullptr, int64_t n_generated = 0, const TokenConstraint* constraint = nullptr);

  // Steps exposed for tests; each works in place on logits [n] and masks removed tokens with -inf.
  static void apply_repetition_penalty(float* logits, int64_t n, const int32_t* seen, int64_t n_seen, float penalty,
                                       std::vector<int32_t>& tmp);
  static void apply_presence_frequency(float* logits, int64_t n, const int32_t* generated, int64_t n_generated,
                                       float presence, float frequency, std::vector<int32_t>& tmp);
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
