#include "runtime/session.h"
#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace moe {

Session::Session(std::shared_ptr<Model> model, int64_t ctx, int64_t prefill_chunk)
    : model_(std::move(model)), chunk_(std::max<int64_t>(1, prefill_chunk)), sampler_(model_->spec().vocab) {
  const ModelSpec& S = model_->spec();
  if (ctx <= 0) ctx = S.max_position;
  model_->init_cache(kv_, ctx);
  model_->init_scratch(scratch_, std::min(chunk_, ctx), ctx);
  chunk_ = std::min(chunk_, ctx);
  ids_.reserve(size_t(ctx));
  last_logits_.assign(size_t(S.vocab), 0.0f);
}

void Session::release() {
  released_ = true;
  kv_ = KvCache(); scratch_ = Scratch(); ids_.clear(); ids_.shrink_to_fit(); last_logits_ = {};
}

void Session::check_ids(const std::vector<int32_t>& ids) const {
  if (released_) throw std::runtime_error("the session was disposed");
  if (model_->closed()) throw std::runtime_error("the model was closed");
  if (ids.empty()) throw std::runtime_error("prompt is empty (need at least one token id)");
  if (int64_t(ids.size()) > kv_.ctx)
    throw std::runtime_error("prompt has " + std::to_string(ids.size()) + " tokens but the context is " + std::to_string(kv_.ctx));
  const int64_t V = model_->spec().vocab;
  for (int32_t id : ids)
    if (id < 0 || id >= V) throw std::runtime_error("token id " + std::to_string(id) + " is out of range [0, " + std::to_string(V) + ")");
}

void Session::prefill(const std::vector<int32_t>& ids, int64_t from, float* all_logits) {
  const int64_t n = int64_t(ids.size()), V = model_->spec().vocab;
  ids_.resize(size_t(from));
  for (int64_t p = from; p < n; p += chunk_) {
    int64_t T = std::min(chunk_, n - p);
    float* out = all_logits ? all_logits + (p - from) * V : last_logits_.data();
    model_->forward(ids.data() + p, T, p, kv_, scratch_, out, all_logits != nullptr, adapter_.get());
    ids_.insert(ids_.end(), ids.begin() + p, ids.begin() + p + T);
  }
  if (all_logits) std::copy(all_logits + (n - from - 1) * V, all_logits + (n - from) * V, last_logits_.begin());
}

void Session::logits(const std::vector<int32_t>& ids, std::vector<float>& out) {
  check_ids(ids);
  out.assign(ids.size() * size_t(model_->spec().vocab), 0.0f);
  ids_.clear();
  prefill(ids, 0, out.data());
}

GenerateResult Session::generate(const std::vector<int32_t>& prompt, const SamplingParams& p,
                                 const std::function<void(int32_t)>& on_token, const std::atomic<bool>& cancel,
                                 TokenConstraint* constraint) {
  using clock = std::chrono::steady_clock;
  check_ids(prompt);
  if (p.max_tokens < 1) throw std::runtime_error("maxTokens must be >= 1");
  GenerateResult r;
  r.prompt_tokens = int64_t(prompt.size());
  r.ids.reserve(size_t(p.max_tokens));
  // Longest common prefix with the cache; keep at least one token to run so there are fresh logits.
  int64_t lcp = 0;
  while (lcp < int64_t(ids_.size()) && lcp < int64_t(prompt.size()) && ids_[size_t(lcp)] == prompt[size_t(lcp)]) ++lcp;
  if (lcp == int64_t(prompt.size())) --lcp;
  r.reused_tokens = lcp;
  auto t0 = clock::now();
  if (cancel.load()) { r.stop = GenerateResult::Stop::Cancelled; return r; }
  prefill(prompt, lcp, nullptr);
  auto t1 = clock::now();
  r.prefill_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  Rng rng(p.seed);
  r.stop = GenerateResult::Stop::Length;
  for (int i = 0; i < p.max_tokens; ++i) {
    if (cancel.load()) { r.stop = GenerateResult::Stop::Cancelled; break; }
    int32_t id = sampler_.sample(last_logits_.data(), p, ids_.data(), int64_t(ids_.size()), rng, r.ids.data(),
                                 int64_t(r.ids.size()), constraint);
    if (id < 0) break;  // the constraint allows nothing: "length"
    if (std::find(p.eos_ids.begin(), p.eos_ids.end(), id) != p.eos_ids.end()) { r.stop = GenerateResult::Stop::Eos; break; }
    if (constraint) constraint->advance(id);
    r.ids.push_back(id);
    if (on_token) on_token(id);
    // Decode: run the new id so the cache holds it (cachedIds() == prompt + generated) and its logits are next.
    if (int64_t(ids_.size()) >= kv_.ctx) break;  // context full: stop with "length"
    model_->forward(&id, 1, int64_t(ids_.size()), kv_, scratch_, last_logits_.data(), false, adapter_.get());
    ids_.push_back(id);
    if (constraint && constraint->done()) { r.stop = GenerateResult::Stop::Eos; break; }
  }
  r.decode_ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
  return r;
}

}  // namespace moe
