#include "runtime/sampler.h"
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace moe {

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void Rng::seed(uint64_t s) {
  for (auto& w : s_) {  // splitmix64
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    w = z ^ (z >> 31);
  }
}
uint64_t Rng::next() {  // xoshiro256**
  const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
  s_[2] ^= s_[0]; s_[3] ^= s_[1]; s_[1] ^= s_[2]; s_[0] ^= s_[3]; s_[2] ^= t; s_[3] = rotl(s_[3], 45);
  return r;
}
double Rng::uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }

static const float NEG_INF = -std::numeric_limits<float>::infinity();

// HF RepetitionPenaltyLogitsProcessor: for each distinct id seen, logit = logit > 0 ? logit / r : logit * r.
void Sampler::apply_repetition_penalty(float* logits, int64_t n, const int32_t* seen, int64_t n_seen, float r,
                                       std::vector<int32_t>& ids) {
  if (r == 1.0f || n_seen == 0) return;
  // Distinct ids, each penalised once (torch gather/scatter semantics). `ids` keeps its capacity between calls.
  ids.assign(seen, seen + n_seen);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (int32_t id : ids) {
    if (id < 0 || id >= n) continue;
    float& l = logits[id];
    l = l > 0 ? l / r : l * r;
  }
}

// OpenAI's presence / frequency penalties: l_j -= c_j * frequency + (c_j > 0) * presence, c_j = count of j among
// the generated ids. Sorting a copy counts runs without a vocab-sized table.
void Sampler::apply_presence_frequency(float* logits, int64_t n, const int32_t* gen, int64_t n_gen, float presence,
                                       float frequency, std::vector<int32_t>& ids) {
  if ((presence == 0.0f && frequency == 0.0f) || n_gen == 0) return;
  ids.assign(gen, gen + n_gen);
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j < ids.size() && ids[j] == ids[i]) ++j;
    const int32_t id = ids[i];
    if (id >= 0 && id < n) logits[id] -= float(j - i) * frequency + presence;
    i = j;
  }
}

// HF TopKLogitsWarper: remove tokens whose logit < the k-th largest logit (ties at the threshold are kept).
void Sampler::apply_top_k(float* logits, int64_t n, int k, std::vector<float>& work) {
  if (k <= 0 || k >= n) return;
  work.assign(logits, logits + n);
  std::nth_element(work.begin(), work.begin() + (k - 1), work.end(), std::greater<float>());
  const float kth = work[size_t(k - 1)];
  for (int64_t i = 0; i < n; ++i) if (logits[i] < kth) logits[i] = NEG_INF;
}

// HF TopPLogitsWarper: sort ascending, cumulative softmax; drop tokens with cumulative prob <= 1 - top_p,
// always keeping the most likely token.
void Sampler::apply_top_p(float* logits, int64_t n, float top_p, std::vector<int32_t>& order, std::vector<float>& work) {
  if (top_p >= 1.0f) return;
  order.resize(size_t(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] < logits[b]; });
  float mx = logits[order[size_t(n - 1)]];
  work.resize(size_t(n));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) { float e = logits[i] == NEG_INF ? 0.0f : std::exp(logits[i] - mx); work[size_t(i)] = e; sum += e; }
  double cum = 0;
  const double thr = 1.0 - double(top_p);
  for (int64_t j = 0; j < n - 1; ++j) {  // the last (largest) is always kept
    int32_t id = order[size_t(j)];
    cum += work[size_t(id)] / sum;
    if (cum <= thr) logits[id] = NEG_INF;
    else break;
  }
}

// HF MinPLogitsWarper: drop tokens with prob < min_p * max prob.
void Sampler::apply_min_p(float* logits, int64_t n, float min_p) {
  if (min_p <= 0.0f) return;
  float mx = NEG_INF;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[i]);
  // p_i / p_max = exp(l_i - l_max)
  const float thr = std::log(min_p);
  for (int64_t i = 0; i < n; ++i) if (logits[i] - mx < thr) logits[i] = NEG_INF;
}

int Sampler::argmax(const float* logits, int64_t n) {
  int best = 0;
  for (int64_t i = 1; i < n; ++i) if (logits[i] > logits[best]) best = int(i);
  return best;
}

int Sampler::sample(float* logits, const SamplingParams& p, const int32_t* seen, int64_t n_seen, Rng& rng,
                    const int32_t* generated, int64_t n_generated, const TokenConstraint* constraint) {
  const int64_t n = vocab_;
  apply_repetition_penalty(logits, n, seen, n_seen, p.repetition_penalty, seen_tmp_);
  apply_presence_frequency(logits, n, generated, n_generated, p.presence_penalty, p.frequency_penalty, seen_tmp_);
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= 0 && id < n) logits[id] += bias;
  if (p.temperature <= 0.0f) {
    if (constraint) {
      // Greedy: the best allowed token. Try the leaders first (usually the first is allowed), then mask all.
      for (int tries = 0; tries < 8; ++tries) {
        const int id = argmax(logits, n);
        if (logits[id] == NEG_INF) return -1;
        if (constraint->allows(id)) return id;
        logits[id] = NEG_INF;
      }
      constraint->mask(logits, n);
    }
    const int id = argmax(logits, n);
    return constraint && logits[id] == NEG_INF ? -1 : id;
  }
  if (constraint) constraint->mask(logits, n);
  for (int64_t i = 0; i < n; ++i) logits[i] /= p.temperature;
  apply_top_k(logits, n, p.top_k, work_);
  apply_top_p(logits, n, p.top_p, order_, work_);
  apply_min_p(logits, n, p.min_p);
  float mx = NEG_INF;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) { double e = logits[i] == NEG_INF ? 0.0 : std::exp(double(logits[i] - mx)); work_[size_t(i)] = float(e); sum += e; }
  if (!(sum > 0)) return -1;  // everything masked
  double u = rng.uniform() * sum, c = 0;
  int last = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (work_[size_t(i)] <= 0) continue;
    c += work_[size_t(i)]; last = int(i);
    if (u < c) return int(i);
  }
  return last;
}

}  // namespace moe
