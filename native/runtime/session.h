// A generation session: KV cache + the ids it holds + scratch, all sized once at creation.
// Prefix reuse: a new prompt is compared with the cached ids; the cache is truncated to the longest common
// prefix and only the rest is prefilled (if the whole prompt is cached, its last token is re-run for logits).
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <vector>
#include "model/model.h"
#include "runtime/sampler.h"

namespace moe {

struct GenerateResult {
  std::vector<int32_t> ids;
  enum class Stop { Eos, Length, Cancelled } stop = Stop::Length;
  int64_t prompt_tokens = 0, reused_tokens = 0;
  double prefill_ms = 0, decode_ms = 0;
};

class Session {
 public:
  // ctx <= 0: the model's max_position_embeddings. prefill_chunk: tokens per forward call in prefill.
  Session(std::shared_ptr<Model> model, int64_t ctx = 0, int64_t prefill_chunk = 256);

  int64_t context_length() const { return kv_.ctx; }
  const std::vector<int32_t>& cached_ids() const { return ids_; }
  void reset() { ids_.clear(); }
  void release();  // frees the KV cache and scratch now
  Model& model() { return *model_; }
  // The LoRA adapter this session's forwards apply unmerged (null: the model's own, set_adapter / `--adapter`), so one
  // mapped base serves the base and any number of adapters side by side. Set it before generating.
  void set_adapter(std::shared_ptr<const Adapter> a) { adapter_ = std::move(a); }
  const Adapter* adapter() const { return adapter_.get(); }

  // Logits for every position of ids, prefilled from an empty cache: out [n, vocab].
  void logits(const std::vector<int32_t>& ids, std::vector<float>& out);

  // Generate up to p.max_tokens ids after `prompt`. on_token is called for each new id (not for the eos).
  // cancel is checked before every token. constraint (optional): only tokens it allows are drawn; the generation
  // stops with Eos once it is done, and with Length when it allows nothing.
  GenerateResult generate(const std::vector<int32_t>& prompt, const SamplingParams& p,
                          const std::function<void(int32_t)>& on_token, const std::atomic<bool>& cancel,
                          TokenConstraint* constraint = nullptr);

 private:
  void check_ids(const std::vector<int32_t>& ids) const;
  // Runs ids[from..] at positions from.., appending to the cache; leaves the last token's logits in last_logits_.
  void prefill(const std::vector<int32_t>& ids, int64_t from, float* all_logits);

  std::shared_ptr<Model> model_;
  std::shared_ptr<const Adapter> adapter_;
  KvCache kv_;
  Scratch scratch_;
  int64_t chunk_;
  std::vector<int32_t> ids_;
  std::vector<float> last_logits_;
  Sampler sampler_;
  bool released_ = false;
};

}  // namespace moe
