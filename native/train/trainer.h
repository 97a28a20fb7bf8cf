// The LoRA trainer over a Model (issue 12 §3): peft's initialisation, one optimizer step over an (accumulated) batch,
// global grad-norm clipping, AdamW through the backend's adamw op, transformers' learning-rate schedules, checkpoints
// that resume bit-identically, and the memory a run needs.
//
// One optimizer step (Trainer::step):
//   grads = 0
//   for every sequence b of the batch (all micro-batches of one gradient-accumulation window):
//       grads += d/dθ [ Σ_t CE_bt ] / N          N = Σ_b (counted targets of b)
//   This is transformers' convention since 4.46 (num_items_in_batch): the loss is the mean over every counted target
//   of the whole accumulated batch, not a mean of per-micro-batch means. The reported loss is Σ CE / N.
//   norm = ||grads||₂ over every LoRA parameter (accumulated in double);  refused (nothing changes) if not finite
//   grads *= min(1, max_grad_norm / (norm + 1e-6))                 torch.nn.utils.clip_grad_norm_
//   lr_k = learning_rate · λ(k − 1) · group factor                  LambdaLR: optimizer step k uses λ(k − 1)
//   AdamW (backend adamw, fp32 m and v, torch.optim.AdamW's formula) on every A and B
//
// Schedules λ(s) (s = optimizer steps done, W warmup steps, N total steps), as transformers/optimization.py:
//   constant:            1                                  (transformers' "constant" ignores warmup)
//   constant_with_warmup s < W: s / max(1, W);  else 1
//   linear:              s < W: s / max(1, W);  else max(0, (N − s) / max(1, N − W))
//   cosine:              s < W: s / max(1, W);  else p = (s − W) / max(1, N − W), max(0, ½(1 + cos(π · 2 · 0.5 · p)))
//   cosine_with_min_lr:  as cosine, then f·(1 − ρ) + ρ with ρ = min_lr / learning_rate (min_lr absolute, as
//                        transformers' lr_scheduler_kwargs {"min_lr": x} is), max(0, ·)
//   W = warmup_steps when > 0, else ceil(N · warmup_ratio)       (TrainingArguments.get_warmup_steps)
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include "model/model.h"
#include "train/lora.h"

namespace moe {

enum class Schedule { Constant, ConstantWithWarmup, Linear, Cosine, CosineWithMinLr };
Schedule parse_schedule(const std::string& name);  // throws naming the known ones
const char* schedule_name(Schedule s);
// λ(step) exactly as transformers computes it (double).
double lr_lambda(Schedule s, int64_t step, int64_t warmup, int64_t total, double min_lr_rate);
// warmup_steps > 0 wins, else ceil(total · warmup_ratio).
int64_t warmup_steps_for(int64_t total, int64_t warmup_steps, double warmup_ratio);

struct TrainConfig {
  LoraConfig lora;                 // r, alpha, use_rslora, dropout, target_modules / target_parameters
  double learning_rate = 2e-4;
  double min_lr = 0;               // cosine_with_min_lr only (absolute)
  Schedule schedule = Schedule::Linear;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0;
  int64_t total_steps = 1;         // optimizer steps of the whole run (the schedule's N)
  double weight_decay = 0;
  double max_grad_norm = 1.0;      // <= 0: no clipping (the norm is still computed and reported)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t max_seq_length = 1024;
  uint64_t seed = 42;
  std::string base_model_name_or_path;  // written into adapter_config.json
  double lr_routed = 1, lr_shared = 1, lr_attention = 1;  // factors on the lr of routed-expert / shared-expert / q k v o pairs
};

// xoshiro256** seeded by splitmix64 with its state exposed (checkpointed, so a resumed run draws the same numbers).
struct TrainRng {
  uint64_t s[4] = {0, 0, 0, 0};
  void seed(uint64_t x);
  uint64_t next();
  double uniform();  // [0, 1), 53 bits
};

// One sequence: ids and transformers-style labels (aligned with ids, -100 ignored; position t is trained to
// predict labels[t + 1]).
struct TrainSeq {
  std::vector<int32_t> ids, labels;
};

struct StepResult {
  int64_t step = 0;        // optimizer steps done after this one
  double loss = 0;         // Σ CE / N
  int64_t n_targets = 0;   // N
  double lr = 0;           // the base lr this step used (factor 1 groups)
  double grad_norm = 0;    // before clipping
  int64_t tokens = 0;      // Σ sequence lengths
  double ms = 0;
};

struct MemoryEstimate {
  int64_t base_bytes = 0;       // mapped weight bytes
  int64_t adapter_bytes = 0;    // params + grads + 2 moments: 16 bytes per parameter
  int64_t activation_bytes = 0; // the TrainState init_train allocates for max_seq_length (checkpointed activations)
  int64_t total_bytes = 0;
  int64_t available_bytes = -1; // MemAvailable (+ this process' mapped base, counted once); -1 unknown
  int64_t params = 0;
  bool activations_lower_bound = false;  // before init_train: only the attention probabilities are counted
  bool fits() const { return available_bytes < 0 || total_bytes <= available_bytes; }
  std::string describe() const;  // one line with the numbers and what to change
};

// MemAvailable from /proc/meminfo in bytes (-1 when unknown). The Trainer also honours MOE_TRAIN_MEMORY_LIMIT=<bytes>
// (a budget below the machine's free memory).
int64_t available_memory_bytes();

class Trainer {
 public:
  // A fresh run: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in) (peft's reset_lora_parameters; fan_in = in, also for
  // fused experts' [E·r, in] lora_A), B = 0, from TrainRng(seed). Sizes the TrainState once for max_seq_length and
  // refuses (throws, with the numbers) when the estimate exceeds the free memory.
  Trainer(std::shared_ptr<Model> model, const TrainConfig& cfg);
  Trainer(const Trainer&) = delete;             // holds pointers into its own adapters
  Trainer& operator=(const Trainer&) = delete;
  // Resume from a checkpoint folder written by save_checkpoint (adapter, moments, step, RNG): bit-identical
  // continuation. The config's LoRA shape must match the checkpoint's.
  static std::unique_ptr<Trainer> resume(std::shared_ptr<Model> model, const TrainConfig& cfg, const std::string& dir);
  // The memory a fresh run of this config would need, without refusing when it does not fit (a planner asks before it
  // starts anything): the same sizing as the constructor (the TrainState init_train allocates, measured), except that
  // when even the lower bound (base + adapters + attention probabilities) exceeds the budget, nothing more is
  // allocated and the lower bound is answered (activations_lower_bound).
  static MemoryEstimate estimate(std::shared_ptr<Model> model, const TrainConfig& cfg);

  StepResult step(const std::vector<TrainSeq>& batch);
  // Mean CE over the batch's counted targets, forward only (dropout off, no update). Returns {Σ CE / N, N}.
  std::pair<double, int64_t> evaluate(const std::vector<TrainSeq>& batch);

  // dir/adapter_config.json + adapter_model.safetensors (peft), dir/optimizer.safetensors (m.*, v.* f32),
  // dir/trainer_state.json (step, RNG, config echo, extra_json verbatim under "extra"): written to a temporary
  // folder beside dir, fsynced, then renamed onto dir (a previous dir is replaced only once the new one is complete).
  void save_checkpoint(const std::string& dir, const std::string& extra_json = "{}") const;
  // The "extra" object saved with a checkpoint (the CLI's data position), as JSON text.
  static std::string read_extra(const std::string& dir);

  const Adapter& adapter() const { return lora_; }
  Adapter& adapter_mut() { return lora_; }
  int64_t steps_done() const { return step_; }
  const TrainConfig& config() const { return cfg_; }
  const MemoryEstimate& memory() const { return mem_; }
  Model& model() { return *model_; }
  double lr_at(int64_t steps_done) const;  // learning_rate · λ(steps_done)

 private:
  struct Resume {};
  Trainer(std::shared_ptr<Model> model, const TrainConfig& cfg, Resume);
  void setup();
  bool estimate_only_ = false;  // setup() measures and returns instead of refusing (Trainer::estimate)
  int64_t count_targets(const TrainSeq& s, std::vector<int32_t>& targets) const;

  std::shared_ptr<Model> model_;
  TrainConfig cfg_;
  Adapter lora_, grads_, m_, v_;
  std::vector<float> factors_;  // per pair in for_each order
  std::vector<LoraPair*> P_, G_, M_, V_;  // lora_, grads_, m_, v_ pairs in for_each order (the step allocates nothing)
  TrainState ts_;
  TrainRng rng_;
  int64_t step_ = 0;
  MemoryEstimate mem_;
  std::vector<int32_t> targets_;  // sized to max_seq_length once
  std::vector<float> eval_logits_;  // [eval_rows_, V]
  int64_t eval_rows_ = 1;
};

}  // namespace moe
