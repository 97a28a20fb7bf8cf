#include "train/trainer.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include "format/json.h"
#include "format/safetensors.h"
#include "io/adapter.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

namespace fs = std::filesystem;

namespace moe {

// ---- schedules ------------------------------------------------------------------------------------------------

Schedule parse_schedule(const std::string& n) {
  if (n == "constant") return Schedule::Constant;
  if (n == "constant_with_warmup") return Schedule::ConstantWithWarmup;
  if (n == "linear") return Schedule::Linear;
  if (n == "cosine") return Schedule::Cosine;
  if (n == "cosine_with_min_lr") return Schedule::CosineWithMinLr;
  throw std::invalid_argument("lr_scheduler_type \"" + n + "\" is not one of constant, constant_with_warmup, linear, cosine, cosine_with_min_lr");
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Constant: return "constant";
    case Schedule::ConstantWithWarmup: return "constant_with_warmup";
    case Schedule::Linear: return "linear";
    case Schedule::Cosine: return "cosine";
    case Schedule::CosineWithMinLr: return "cosine_with_min_lr";
  }
  return "?";
}

// transformers/optimization.py, line by line (see trainer.h for the formulas).
double lr_lambda(Schedule s, int64_t step, int64_t W, int64_t N, double min_lr_rate) {
  const double cur = double(step);
  if (s == Schedule::Constant) return 1.0;
  if (step < W) return cur / double(std::max<int64_t>(1, W));
  switch (s) {
    case Schedule::ConstantWithWarmup: return 1.0;
    case Schedule::Linear: return std::max(0.0, double(N - step) / double(std::max<int64_t>(1, N - W)));
    case Schedule::Cosine: {
      const double progress = double(step - W) / double(std::max<int64_t>(1, N - W));
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress)));
    }
    case Schedule::CosineWithMinLr: {
      const double progress = double(step - W) / double(std::max<int64_t>(1, N - W));
      double f = 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress));
      f = f * (1 - min_lr_rate) + min_lr_rate;
      return std::max(0.0, f);
    }
    default: return 1.0;
  }
}

int64_t warmup_steps_for(int64_t total, int64_t warmup_steps, double warmup_ratio) {
  if (warmup_steps > 0) return warmup_steps;
  return int64_t(std::ceil(double(total) * warmup_ratio));
}

// ---- RNG ------------------------------------------------------------------------------------------------------

void TrainRng::seed(uint64_t x) {
  for (auto& w : s) {  // splitmix64
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    w = z ^ (z >> 31);
  }
}
uint64_t TrainRng::next() {
  auto rotl = [](uint64_t v, int k) { return (v << k) | (v >> (64 - k)); };
  const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
  return result;
}
double TrainRng::uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }

// ---- memory ---------------------------------------------------------------------------------------------------

int64_t available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return -1;
}

namespace {
std::string mib(int64_t b) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / 1048576.0);
  return buf;
}
int64_t heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return int64_t(mi.uordblks + mi.hblkhd);
#else
  return 0;
#endif
}
}  // namespace

std::string MemoryEstimate::describe() const {
  std::string s = "training needs ~" + mib(total_bytes) + " (base weights " + mib(base_bytes) + ", adapter + gradients + 2 AdamW moments " +
                  mib(adapter_bytes) + " for " + std::to_string(params) + " LoRA parameters, activations " + (activations_lower_bound ? "at least " : "") +
                  mib(activation_bytes) + (activations_lower_bound ? " (attention probabilities alone)" : "") + ")";
  if (available_bytes >= 0) s += " against " + mib(available_bytes) + " available";
  if (!fits()) s += ": lower max_seq_length (activations grow with it, attention with its square), lora_rank or target_modules, or use a quantized base";
  return s;
}

// ---- trainer --------------------------------------------------------------------------------------------------

namespace { std::string num_text(double x) { char b[40]; std::snprintf(b, sizeof b, "%g", x); return b; } }

Trainer::Trainer(std::shared_ptr<Model> model, const TrainConfig& cfg, Resume) : model_(std::move(model)), cfg_(cfg) {
  if (!model_) throw std::invalid_argument("Trainer: no model");
  if (!(cfg_.learning_rate > 0) || !std::isfinite(cfg_.learning_rate)) throw std::invalid_argument("learning_rate must be a positive number");
  if (cfg_.max_seq_length < 2) throw std::invalid_argument("max_seq_length must be at least 2");
  if (cfg_.total_steps < 1) throw std::invalid_argument("the run must have at least one optimizer step");
  if (!(cfg_.lora.dropout >= 0 && cfg_.lora.dropout < 1)) throw std::invalid_argument("lora_dropout must be in [0, 1)");
  if (!(cfg_.min_lr >= 0)) throw std::invalid_argument("min_lr must be >= 0");
  lora_ = make_adapter(model_->spec(), cfg_.lora);
}

Trainer::Trainer(std::shared_ptr<Model> model, const TrainConfig& cfg) : Trainer(std::move(model), cfg, Resume{}) {
  rng_.seed(cfg_.seed);
  // peft reset_lora_parameters: nn.init.kaiming_uniform_(lora_A, a=√5): gain = √(2 / (1 + a²)) = √(1/3),
  // bound = √3 · gain / √fan_in = 1 / √in (fan_in = in, dim 1 of [r, in], also of fused [E·r, in]); lora_B zeros.
  lora_.for_each([&](const std::string&, LoraPair& p) {
    if (!p.present()) return;
    const double bound = 1.0 / std::sqrt(double(p.in));
    for (float& a : p.A) a = float((2.0 * rng_.uniform() - 1.0) * bound);
    std::fill(p.B.begin(), p.B.end(), 0.0f);
  });
  setup();
}

std::unique_ptr<Trainer> Trainer::resume(std::shared_ptr<Model> model, const TrainConfig& cfg, const std::string& dir) {
  std::unique_ptr<Trainer> t(new Trainer(std::move(model), cfg, Resume{}));
  const ModelSpec& S = t->model_->spec();
  const Adapter loaded = load_adapter(dir, S, "the model");
  if (loaded.config.r != cfg.lora.r || loaded.config.use_rslora != cfg.lora.use_rslora || std::fabs(loaded.config.alpha - cfg.lora.alpha) > 1e-9 * cfg.lora.alpha)
    throw std::runtime_error(dir + ": the checkpoint has lora_rank " + std::to_string(loaded.config.r) + ", lora_alpha " + num_text(loaded.config.alpha) +
                             (loaded.config.use_rslora ? ", use_rslora" : "") + "; this run's config says lora_rank " + std::to_string(cfg.lora.r) +
                             ", lora_alpha " + num_text(cfg.lora.alpha) + (cfg.lora.use_rslora ? ", use_rslora" : ""));
  // copy pair by pair (same for_each order), checking every shape against this run's config
  std::vector<const LoraPair*> src;
  const_cast<Adapter&>(loaded).for_each([&](const std::string&, LoraPair& p) { src.push_back(&p); });
  size_t i = 0;
  t->lora_.for_each([&](const std::string& site, LoraPair& p) {
    const LoraPair* q = i < src.size() ? src[i] : nullptr;
    ++i;
    if (!q || q->present() != p.present() || q->r != p.r || q->in != p.in || q->out != p.out)
      throw std::runtime_error(dir + ": the checkpoint's adapter does not match this run's LoRA config at " + site + " (rank, target_modules)");
    p.A = q->A; p.B = q->B;
  });
  t->setup();
  // moments and state
  SafeTensorsFile opt((fs::path(dir) / "optimizer.safetensors").string());
  std::map<std::string, const TensorView*> by;
  for (auto& v : opt.tensors()) by[v.name] = &v;
  auto fill = [&](const std::string& name, std::vector<float>& dst) {
    auto it = by.find(name);
    if (it == by.end() || it->second->dtype != DType::F32 || it->second->numel() != int64_t(dst.size()))
      throw std::runtime_error(opt.path() + ": tensor " + name + " is missing or has the wrong shape");
    std::memcpy(dst.data(), it->second->data, dst.size() * sizeof(float));
  };
  t->m_.for_each([&](const std::string& site, LoraPair& p) { if (p.present()) { fill("m." + site + ".A", p.A); fill("m." + site + ".B", p.B); } });
  t->v_.for_each([&](const std::string& site, LoraPair& p) { if (p.present()) { fill("v." + site + ".A", p.A); fill("v." + site + ".B", p.B); } });
  const Json st = json_parse_file((fs::path(dir) / "trainer_state.json").string());
  const Json* step = st.find("step");
  const Json* rng = st.find("rng");
  if (!step || !step->is_number() || !rng || !rng->is_array() || rng->size() != 4)
    throw std::runtime_error(dir + "/trainer_state.json: step or rng missing");
  t->step_ = int64_t(step->num);
  for (size_t k = 0; k < 4; ++k) {
    if (!(*rng)[k].is_string()) throw std::runtime_error(dir + "/trainer_state.json: rng must hold 4 decimal strings");
    t->rng_.s[k] = std::stoull((*rng)[k].str);
  }
  return t;
}

MemoryEstimate Trainer::estimate(std::shared_ptr<Model> model, const TrainConfig& cfg) {
  Trainer t(std::move(model), cfg, Resume{});
  t.estimate_only_ = true;
  t.setup();
  return t.mem_;
}

void Trainer::setup() {
  Model& m = *model_;
  grads_ = zeros_like(lora_);
  m_ = zeros_like(lora_);
  v_ = zeros_like(lora_);
  factors_.clear();
  P_.clear(); G_.clear(); M_.clear(); V_.clear();
  lora_.for_each([&](const std::string&, LoraPair& p) { P_.push_back(&p); });
  grads_.for_each([&](const std::string&, LoraPair& p) { G_.push_back(&p); });
  m_.for_each([&](const std::string&, LoraPair& p) { M_.push_back(&p); });
  v_.for_each([&](const std::string&, LoraPair& p) { V_.push_back(&p); });
  uint32_t id = 0;
  lora_.for_each([&](const std::string& site, LoraPair& p) {
    p.id = id++;
    const std::string tail = site.substr(site.find('.', 7) + 1);  // after "layers.N."
    float f = 1.0f;
    if (tail == "q" || tail == "k" || tail == "v" || tail == "o") f = float(cfg_.lr_attention);
    else if (tail.rfind("experts.", 0) == 0) f = float(cfg_.lr_routed);
    else if (tail.rfind("shared.", 0) == 0) f = float(cfg_.lr_shared);
    factors_.push_back(f);
  });
  // memory: base + 16 bytes per LoRA parameter before allocating the activations; then the TrainState itself,
  // measured as the heap bytes init_train allocates (its own sizes, no second formula)
  mem_ = {};
  mem_.params = lora_.numel();
  mem_.base_bytes = m.weight_bytes();
  mem_.adapter_bytes = 16 * mem_.params;
  // available: MemAvailable plus what this trainer already holds (its adapters are allocated by now, the
  // activations after init_train), or MOE_TRAIN_MEMORY_LIMIT=<bytes>, a budget for the whole run (a shared machine,
  // or the tests)
  int64_t limit = -1;
  if (const char* lim = std::getenv("MOE_TRAIN_MEMORY_LIMIT")) {
    char* end = nullptr;
    const double v = std::strtod(lim, &end);
    if (end == lim || *end != 0 || !(v > 0)) throw std::invalid_argument(std::string("MOE_TRAIN_MEMORY_LIMIT=\"") + lim + "\" is not a positive number of bytes");
    limit = int64_t(v);
  }
  const int64_t free0 = available_memory_bytes();
  auto available = [&](int64_t held) { return limit > 0 ? limit : free0 < 0 ? -1 : free0 + held; };
  const int64_t T = cfg_.max_seq_length;
  // the one quadratic buffer (attention probabilities [T·Hq, T]) is checked first so a hopeless max_seq_length is
  // refused before it is allocated; the whole TrainState is then measured as the heap bytes init_train allocates
  // (its own sizes, no second formula)
  mem_.activation_bytes = T * T * int64_t(m.spec().num_heads) * 4;
  mem_.activations_lower_bound = true;
  mem_.total_bytes = mem_.base_bytes + mem_.adapter_bytes + mem_.activation_bytes;
  mem_.available_bytes = available(mem_.adapter_bytes);
  if (!mem_.fits()) {
    if (estimate_only_) return;
    throw std::runtime_error(mem_.describe());
  }
  const int64_t h0 = heap_in_use();
  m.init_train(ts_, T, lora_);
  // evaluate's logits: a chunk of rows at a time (≤ 8 MiB, as the training loss chunks them)
  const int64_t V = m.spec().vocab;
  eval_rows_ = std::clamp<int64_t>((int64_t(2) << 20) / std::max<int64_t>(V, 1), 1, T);
  eval_logits_.assign(size_t(eval_rows_ * V), 0.0f);
  const int64_t h1 = heap_in_use();
  if (h1 > h0) { mem_.activation_bytes = h1 - h0; mem_.activations_lower_bound = false; }
  mem_.total_bytes = mem_.base_bytes + mem_.adapter_bytes + mem_.activation_bytes;
  mem_.available_bytes = available(mem_.adapter_bytes + mem_.activation_bytes);
  if (!mem_.fits() && !estimate_only_) throw std::runtime_error(mem_.describe());
  targets_.assign(size_t(T), -100);
}

double Trainer::lr_at(int64_t s) const {
  const int64_t W = warmup_steps_for(cfg_.total_steps, cfg_.warmup_steps, cfg_.warmup_ratio);
  const double rho = cfg_.min_lr / cfg_.learning_rate;
  return cfg_.learning_rate * lr_lambda(cfg_.schedule, s, W, cfg_.total_steps, rho);
}

// targets[t] = labels[t + 1] (the shift transformers' loss does), -100 at the end.
int64_t Trainer::count_targets(const TrainSeq& s, std::vector<int32_t>& targets) const {
  const int64_t T = int64_t(s.ids.size());
  if (T < 1) throw std::invalid_argument("a training sequence is empty");
  if (T > cfg_.max_seq_length)
    throw std::invalid_argument("a training sequence has " + std::to_string(T) + " tokens, over max_seq_length " + std::to_string(cfg_.max_seq_length));
  if (s.labels.size() != s.ids.size()) throw std::invalid_argument("labels and ids differ in length");
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) {
    targets[size_t(t)] = t + 1 < T ? s.labels[size_t(t + 1)] : -100;
    n += targets[size_t(t)] != -100;
  }
  return n;
}

StepResult Trainer::step(const std::vector<TrainSeq>& batch) {
  const auto t0 = std::chrono::steady_clock::now();
  if (batch.empty()) throw std::invalid_argument("step: the batch is empty");
  int64_t N = 0, tokens = 0;
  for (auto& s : batch) { N += count_targets(s, targets_); tokens += int64_t(s.ids.size()); }
  if (N == 0) throw std::invalid_argument("step: no token of the batch is a target (every label is -100)");
  // (the pair lists, not Adapter::for_each: that builds each site's name, an allocation per pair)
  for (LoraPair* p : G_) { std::fill(p->A.begin(), p->A.end(), 0.0f); std::fill(p->B.begin(), p->B.end(), 0.0f); }
  // loss_scale 1/N: the mean over every counted target of the accumulated batch (transformers' num_items_in_batch)
  const float scale = float(1.0 / double(N));
  double loss_sum = 0;
  for (auto& s : batch) {
    count_targets(s, targets_);
    ts_.s.dropout_p = float(cfg_.lora.dropout);
    ts_.s.dropout_seed = cfg_.lora.dropout > 0 ? rng_.next() : 0;
    loss_sum += model_->forward_backward(s.ids.data(), targets_.data(), int64_t(s.ids.size()), lora_, grads_, scale, ts_);
    ts_.s.dropout_p = 0;
  }
  const double loss = loss_sum / double(N);
  if (!std::isfinite(loss))
    throw std::runtime_error("step " + std::to_string(step_ + 1) + " refused: the loss is " + std::to_string(loss) + " (not finite); the adapter and optimizer are unchanged");
  double sq = 0;
  for (const LoraPair* p : G_) {
    for (float g : p->A) sq += double(g) * double(g);
    for (float g : p->B) sq += double(g) * double(g);
  }
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm))
    throw std::runtime_error("step " + std::to_string(step_ + 1) + " refused: the gradient norm is not finite (loss " + std::to_string(loss) + "); the adapter and optimizer are unchanged");
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1, grads *= coef
  if (cfg_.max_grad_norm > 0) {
    const float coef = float(std::min(1.0, cfg_.max_grad_norm / (norm + 1e-6)));
    if (coef < 1.0f)
      for (LoraPair* p : G_) {
        for (float& g : p->A) g *= coef;
        for (float& g : p->B) g *= coef;
      }
  }
  const double lr = lr_at(step_);  // LambdaLR: optimizer step k (1-based) uses λ(k − 1)
  Backend& be = model_->backend();
  const auto &P = P_, &G = G_, &M = M_, &V = V_;  // the four adapters' pairs in for_each order (set up once)
  for (size_t i = 0; i < P.size(); ++i) {
    if (!P[i]->present()) continue;
    const float plr = float(lr * factors_[i]);
    auto run = [&](std::vector<float>& p, std::vector<float>& g, std::vector<float>& m, std::vector<float>& v) {
      const int64_t n = int64_t(p.size());
      be.adamw(vec(p.data(), n), vec(g.data(), n), vec(m.data(), n), vec(v.data(), n), plr, float(cfg_.beta1), float(cfg_.beta2),
               float(cfg_.eps), float(cfg_.weight_decay), step_ + 1);
    };
    run(P[i]->A, G[i]->A, M[i]->A, V[i]->A);
    run(P[i]->B, G[i]->B, M[i]->B, V[i]->B);
  }
  ++step_;
  StepResult r;
  r.step = step_; r.loss = loss; r.n_targets = N; r.lr = lr; r.grad_norm = norm; r.tokens = tokens;
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// Forward only, in chunks of eval_rows_ positions (the KV cache carries the earlier ones), dropout off; each counted
// position's −log softmax(logits)[target] summed in double.
std::pair<double, int64_t> Trainer::evaluate(const std::vector<TrainSeq>& batch) {
  int64_t N = 0;
  double sum = 0;
  const int64_t V = model_->spec().vocab;
  // validation forwards stay out of the routing telemetry (the run's heatmap is what trained)
  struct NoCount { Scratch& s; ~NoCount() { s.count_routing = true; } } no_count{ts_.s};
  ts_.s.count_routing = false;
  for (auto& s : batch) {
    const int64_t n = count_targets(s, targets_);
    if (n == 0) continue;
    ts_.s.dropout_p = 0;
    const int64_t T = int64_t(s.ids.size());
    for (int64_t c0 = 0; c0 < T; c0 += eval_rows_) {
      const int64_t rows = std::min(eval_rows_, T - c0);
      model_->forward(s.ids.data() + c0, rows, c0, ts_.kv, ts_.s, eval_logits_.data(), true, &lora_);
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t y = targets_[size_t(c0 + r)];
        if (y == -100) continue;
        const float* l = eval_logits_.data() + r * V;
        double mx = l[0];
        for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(l[i]));
        double z = 0;
        for (int64_t i = 0; i < V; ++i) z += std::exp(double(l[i]) - mx);
        sum += mx + std::log(z) - double(l[y]);
      }
    }
    N += n;
  }
  if (N == 0) throw std::invalid_argument("evaluate: no token of the batch is a target");
  return {sum / double(N), N};
}

// ---- checkpoints ----------------------------------------------------------------------------------------------

namespace {
void write_synced(const fs::path& p, const std::string& bytes) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error(tmp.string() + ": cannot create (" + std::strerror(errno) + ")");
    f.write(bytes.data(), std::streamsize(bytes.size()));
    f.flush();
    if (!f) throw std::runtime_error(tmp.string() + ": write failed (disk full?)");
  }
#ifndef _WIN32
  int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) { ::fsync(fd); ::close(fd); }
#endif
  fs::rename(tmp, p);
}
void sync_folder(const fs::path& d) {
#ifndef _WIN32
  int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) { ::fsync(fd); ::close(fd); }
#endif
}
std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (uint8_t(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return o + "\"";
}
std::string num(double x) { char b[40]; std::snprintf(b, sizeof b, "%.17g", x); return b; }
}  // namespace

void Trainer::save_checkpoint(const std::string& dir_s, const std::string& extra_json) const {
  json_parse(extra_json, "the checkpoint's extra state");  // must be JSON (throws before anything is written)
  const fs::path dir = fs::path(dir_s).lexically_normal();
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  fs::create_directories(parent);
  const fs::path tmp = parent / ("." + dir.filename().string() + ".partial-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  try {
    save_adapter(tmp.string(), lora_, model_->spec(), cfg_.base_model_name_or_path);
    std::vector<PeftTensor> ts;
    auto add = [&](const char* pre, Adapter& a) {
      a.for_each([&](const std::string& site, LoraPair& p) {
        if (!p.present()) return;
        ts.push_back({std::string(pre) + site + ".A", {p.r, p.in}, p.A});
        ts.push_back({std::string(pre) + site + ".B", {p.out, p.r}, p.B});
      });
    };
    add("m.", const_cast<Adapter&>(m_));
    add("v.", const_cast<Adapter&>(v_));
    std::sort(ts.begin(), ts.end(), [](const PeftTensor& a, const PeftTensor& b) { return a.name < b.name; });
    write_synced(tmp / "optimizer.safetensors", safetensors_f32_bytes(ts));
    std::string st = "{\n  \"format\": \"moe-studio-trainer-1\",\n  \"step\": " + std::to_string(step_) + ",\n  \"rng\": [";
    for (int k = 0; k < 4; ++k) st += (k ? ", " : "") + jstr(std::to_string(rng_.s[k]));
    st += "],\n  \"scheduler\": {\"type\": " + jstr(schedule_name(cfg_.schedule)) + ", \"total_steps\": " + std::to_string(cfg_.total_steps) +
          ", \"warmup_steps\": " + std::to_string(warmup_steps_for(cfg_.total_steps, cfg_.warmup_steps, cfg_.warmup_ratio)) +
          ", \"learning_rate\": " + num(cfg_.learning_rate) + ", \"min_lr\": " + num(cfg_.min_lr) + ", \"last_lr\": " + num(lr_at(step_)) + "},\n" +
          "  \"seed\": " + jstr(std::to_string(cfg_.seed)) + "\n}\n";
    write_synced(tmp / "trainer_state.json", st);
    write_synced(tmp / "trainer_extra.json", extra_json);
    sync_folder(tmp);
    if (fs::exists(dir)) {
      const fs::path old = parent / ("." + dir.filename().string() + ".old-" + std::to_string(::getpid()));
      fs::remove_all(old, ec);
      fs::rename(dir, old);
      try { fs::rename(tmp, dir); } catch (...) { fs::rename(old, dir, ec); throw; }
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp, dir);
    }
    sync_folder(parent);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::string Trainer::read_extra(const std::string& dir) {
  const std::string p = (fs::path(dir) / "trainer_extra.json").string();
  std::string s = read_text_file(p);
  json_parse(s, p);
  return s;
}

}  // namespace moe
