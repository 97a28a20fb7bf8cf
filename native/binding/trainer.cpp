// NativeTrainer (electron/engine/addon.ts): model.createTrainer(config, { resume? }) (or { estimate: true }: the
// memory a run would need, as an object, no trainer) and its step / evaluate /
// saveCheckpoint as AsyncWorkers (one at a time per trainer; each counts as a job of the model so close() waits).
// The config holds train.json's knobs by their names (the CLI resolves epochs into max_steps).
#include <cmath>
#include <cstdio>
#include "binding/handle.h"
#include "train/trainer.h"

using namespace moe;

namespace {

Napi::FunctionReference* g_ctor = nullptr;

std::string shownum(double d) { char b[40]; std::snprintf(b, sizeof b, "%.17g", d); return b; }

double num_opt(const Napi::Object& o, const char* k, double def, double lo, double hi, bool integer = false) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(k) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || (integer && d != std::floor(d)))
    throw Napi::RangeError::New(o.Env(), std::string(k) + " = " + shownum(d) + " must be " + (integer ? "an integer " : "") + "in [" + shownum(lo) + ", " + shownum(hi) + "]");
  return d;
}

std::vector<std::string> strs_opt(const Napi::Object& o, const char* k, std::vector<std::string> def) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string(k) + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    if (!a.Get(i).IsString()) throw Napi::TypeError::New(o.Env(), std::string(k) + "[" + std::to_string(i) + "] must be a string");
    out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  }
  return out;
}

TrainConfig config_from(const Napi::Object& o, const ModelSpec& S) {
  TrainConfig c;
  Napi::Env env = o.Env();
  c.learning_rate = num_opt(o, "learning_rate", 2e-4, 1e-12, 10);
  c.min_lr = num_opt(o, "min_lr", 0, 0, 10);
  c.warmup_ratio = num_opt(o, "warmup_ratio", 0, 0, 1);
  c.warmup_steps = int64_t(num_opt(o, "warmup_steps", 0, 0, 1e12, true));
  Napi::Value st = o.Get("lr_scheduler_type");
  if (st.IsString()) {
    try { c.schedule = parse_schedule(st.As<Napi::String>().Utf8Value()); }
    catch (const std::exception& e) { throw Napi::RangeError::New(env, e.what()); }
  }
  c.total_steps = int64_t(num_opt(o, "max_steps", 1, 1, 1e12, true));
  c.lora.r = int64_t(num_opt(o, "lora_rank", 8, 1, 4096, true));
  c.lora.alpha = num_opt(o, "lora_alpha", 16, 1e-6, 1e6);
  c.lora.dropout = num_opt(o, "lora_dropout", 0, 0, 0.999);
  Napi::Value rs = o.Get("use_rslora");
  c.lora.use_rslora = rs.IsBoolean() && rs.As<Napi::Boolean>().Value();
  c.lora.target_modules = strs_opt(o, "target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"});
  // Routed experts of transformers-5 checkpoints are fused 3-D parameters that peft reaches only by
  // target_parameters: gate/up/down_proj in target_modules adapt them too, as the "all linear" recipe means
  // (Hunyuan-Large keeps per-expert modules: target_modules reach them directly).
  std::vector<std::string> tp;
  auto has = [&](const char* m) { for (auto& t : c.lora.target_modules) if (t == m) return true; return false; };
  if (S.max_experts() > 0 && S.model_type != "hunyuan") {
    if (has("gate_proj") || has("up_proj")) tp.push_back("mlp.experts.gate_up_proj");
    if (has("down_proj")) tp.push_back("mlp.experts.down_proj");
  }
  c.lora.target_parameters = strs_opt(o, "target_parameters", tp);
  c.weight_decay = num_opt(o, "weight_decay", 0, 0, 10);
  c.max_grad_norm = num_opt(o, "max_grad_norm", 1.0, 0, 1e12);
  c.max_seq_length = int64_t(num_opt(o, "max_seq_length", 1024, 2, double(S.max_position), true));
  c.seed = uint64_t(num_opt(o, "seed", 42, 0, 9007199254740991.0, true));
  Napi::Value sc = o.Get("expert_lr_scale");
  if (sc.IsObject()) {
    Napi::Object so = sc.As<Napi::Object>();
    c.lr_routed = num_opt(so, "routed", 1, 0, 1e6);
    c.lr_shared = num_opt(so, "shared", 1, 0, 1e6);
    c.lr_attention = num_opt(so, "attention", 1, 0, 1e6);
  }
  Napi::Value bn = o.Get("base_model_name_or_path");
  if (bn.IsString()) c.base_model_name_or_path = bn.As<Napi::String>().Utf8Value();
  return c;
}

std::vector<TrainSeq> batch_from(const Napi::Value& v, int64_t vocab, int64_t max_t) {
  Napi::Env env = v.Env();
  if (!v.IsArray()) throw Napi::TypeError::New(env, "batch must be an array of { ids, labels }");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<TrainSeq> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    if (!a.Get(i).IsObject()) throw Napi::TypeError::New(env, "batch[" + std::to_string(i) + "] must be { ids, labels }");
    Napi::Object o = a.Get(i).As<Napi::Object>();
    for (const char* k : {"ids", "labels"}) {
      Napi::Value x = o.Get(k);
      if (!x.IsArray()) throw Napi::TypeError::New(env, "batch[" + std::to_string(i) + "]." + k + " must be an array");
      Napi::Array xa = x.As<Napi::Array>();
      auto& dst = k[0] == 'i' ? out[i].ids : out[i].labels;
      dst.resize(xa.Length());
      for (uint32_t t = 0; t < xa.Length(); ++t) {
        Napi::Value e = xa.Get(t);
        const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1.5;
        const bool ok = d == std::floor(d) && d >= 0 && d < double(vocab);
        if (!ok && !(k[0] == 'l' && d == -100))
          throw Napi::RangeError::New(env, "batch[" + std::to_string(i) + "]." + k + "[" + std::to_string(t) + "] = " + shownum(d) +
                                               " is not a token id in [0, " + std::to_string(vocab) + ")" + (k[0] == 'l' ? " or -100" : ""));
        dst[t] = int32_t(d);
      }
    }
    if (out[i].ids.size() != out[i].labels.size())
      throw Napi::RangeError::New(env, "batch[" + std::to_string(i) + "]: ids and labels differ in length");
    if (int64_t(out[i].ids.size()) > max_t || out[i].ids.empty())
      throw Napi::RangeError::New(env, "batch[" + std::to_string(i) + "] has " + std::to_string(out[i].ids.size()) +
                                           " tokens: it must have 1 to max_seq_length = " + std::to_string(max_t));
  }
  return out;
}

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeTrainer", {
      InstanceMethod<&TrainerWrap::Step>("step"),
      InstanceMethod<&TrainerWrap::Evaluate>("evaluate"),
      InstanceMethod<&TrainerWrap::Save>("saveCheckpoint"),
      InstanceMethod<&TrainerWrap::Memory>("memory"),
      InstanceMethod<&TrainerWrap::Dispose>("dispose"),
    });
  }
  TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
    auto* p = info[0].As<Napi::External<std::pair<std::shared_ptr<ModelHandle>, std::shared_ptr<Trainer>>>>().Data();
    h_ = p->first; t_ = p->second;
  }

  std::shared_ptr<ModelHandle> h_;
  std::shared_ptr<Trainer> t_;
  bool busy_ = false;

  Trainer& trainer(Napi::Env env) {
    if (!t_) throw Napi::Error::New(env, "the trainer was disposed");
    if (!h_->model || h_->model->closed()) throw Napi::Error::New(env, "the model was closed");
    if (busy_) throw Napi::Error::New(env, "the trainer is busy: wait for the previous step, evaluate or saveCheckpoint");
    return *t_;
  }

  // One worker kind for the three jobs.
  class Job : public Napi::AsyncWorker {
   public:
    enum Kind { StepK, EvalK, SaveK };
    Job(Napi::Env env, TrainerWrap* w, Kind k) : Napi::AsyncWorker(env, "moe-train"), w_(w), self_(Napi::Persistent(w->Value())), h_(w->h_),
                                                 t_(w->t_), kind_(k), deferred_(Napi::Promise::Deferred::New(env)) {
      w->busy_ = true; h_->active_jobs++;
    }
    std::vector<TrainSeq> batch;
    std::string dir, extra;
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
      try {
        if (kind_ == StepK) r_ = t_->step(batch);
        else if (kind_ == EvalK) ev_ = t_->evaluate(batch);
        else t_->save_checkpoint(dir, extra);
      } catch (const std::exception& e) { SetError(e.what()); }
    }
    void OnOK() override {
      Napi::Env env = Env();
      done();
      Napi::Object o = Napi::Object::New(env);
      if (kind_ == StepK) {
        o.Set("step", double(r_.step)); o.Set("loss", r_.loss); o.Set("nTargets", double(r_.n_targets)); o.Set("lr", r_.lr);
        o.Set("gradNorm", r_.grad_norm); o.Set("tokens", double(r_.tokens)); o.Set("ms", r_.ms);
        deferred_.Resolve(o);
      } else if (kind_ == EvalK) {
        o.Set("loss", ev_.first); o.Set("nTargets", double(ev_.second));
        deferred_.Resolve(o);
      } else {
        deferred_.Resolve(env.Undefined());
      }
    }
    void OnError(const Napi::Error& e) override { done(); deferred_.Reject(e.Value()); }
   private:
    void done() { w_->busy_ = false; h_->job_end(); }
    TrainerWrap* w_;
    Napi::ObjectReference self_;  // keeps the wrapper alive while the job runs
    std::shared_ptr<ModelHandle> h_;
    std::shared_ptr<Trainer> t_;
    Kind kind_;
    StepResult r_;
    std::pair<double, int64_t> ev_;
    Napi::Promise::Deferred deferred_;
  };

  Napi::Value run_batch(const Napi::CallbackInfo& info, Job::Kind k) {
    Napi::Env env = info.Env();
    auto d = Napi::Promise::Deferred::New(env);
    try {
      Trainer& t = trainer(env);
      auto b = batch_from(info[0], t.model().spec().vocab, t.config().max_seq_length);
      auto* j = new Job(env, this, k);
      j->batch = std::move(b);
      j->Queue();
      return j->promise();
    } catch (const Napi::Error& e) { d.Reject(e.Value()); return d.Promise(); }
  }
  Napi::Value Step(const Napi::CallbackInfo& info) { return run_batch(info, Job::StepK); }
  Napi::Value Evaluate(const Napi::CallbackInfo& info) { return run_batch(info, Job::EvalK); }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto d = Napi::Promise::Deferred::New(env);
    try {
      trainer(env);
      if (!info[0].IsString()) throw Napi::TypeError::New(env, "saveCheckpoint(dir, extraJson?): dir must be a string");
      std::string extra = "{}";
      if (info.Length() > 1 && info[1].IsString()) extra = info[1].As<Napi::String>().Utf8Value();
      auto* j = new Job(env, this, Job::SaveK);
      j->dir = info[0].As<Napi::String>().Utf8Value();
      j->extra = extra;
      j->Queue();
      return j->promise();
    } catch (const Napi::Error& e) { d.Reject(e.Value()); return d.Promise(); }
  }

  Napi::Value Memory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!t_) throw Napi::Error::New(env, "the trainer was disposed");
    const MemoryEstimate& m = t_->memory();
    Napi::Object o = Napi::Object::New(env);
    o.Set("baseBytes", double(m.base_bytes)); o.Set("adapterBytes", double(m.adapter_bytes));
    o.Set("activationBytes", double(m.activation_bytes)); o.Set("totalBytes", double(m.total_bytes));
    o.Set("availableBytes", double(m.available_bytes)); o.Set("params", double(m.params));
    o.Set("fits", m.fits()); o.Set("summary", m.describe());
    o.Set("step", double(t_->steps_done()));
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy_) throw Napi::Error::New(info.Env(), "the trainer is busy: dispose after the running job settles");
    t_.reset();
    return info.Env().Undefined();
  }
};

}  // namespace

namespace moe_binding {

void register_trainer(Napi::Env env, Napi::Object exports) {
  g_ctor = new Napi::FunctionReference(Napi::Persistent(TrainerWrap::Init(env)));
  (void)exports;
}

Napi::Value create_trainer(const Napi::CallbackInfo& info, std::shared_ptr<ModelHandle> handle) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "createTrainer(config, { resume? }): config must be an object");
  std::shared_ptr<Model> model = handle->model;
  TrainConfig c = config_from(info[0].As<Napi::Object>(), model->spec());
  std::string resume;
  bool estimate = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value r = info[1].As<Napi::Object>().Get("resume");
    if (r.IsString()) resume = r.As<Napi::String>().Utf8Value();
    Napi::Value e = info[1].As<Napi::Object>().Get("estimate");
    estimate = e.IsBoolean() && e.As<Napi::Boolean>().Value();
  }
  // { estimate: true }: the memory a fresh run would need (Trainer::estimate), never refused; no trainer is made
  if (estimate) {
    MemoryEstimate m;
    try { m = Trainer::estimate(model, c); } catch (const std::exception& e) { throw Napi::Error::New(env, e.what()); }
    Napi::Object o = Napi::Object::New(env);
    o.Set("baseBytes", double(m.base_bytes)); o.Set("adapterBytes", double(m.adapter_bytes));
    o.Set("activationBytes", double(m.activation_bytes)); o.Set("totalBytes", double(m.total_bytes));
    o.Set("availableBytes", double(m.available_bytes)); o.Set("params", double(m.params));
    o.Set("fits", m.fits()); o.Set("summary", m.describe());
    o.Set("activationsLowerBound", m.activations_lower_bound);
    return o;
  }
  std::shared_ptr<Trainer> t;
  try {
    if (resume.empty()) t = std::make_shared<Trainer>(model, c);
    else t = std::shared_ptr<Trainer>(Trainer::resume(model, c, resume).release());
  } catch (const std::exception& e) { throw Napi::Error::New(env, e.what()); }
  std::pair<std::shared_ptr<ModelHandle>, std::shared_ptr<Trainer>> init{handle, t};
  return g_ctor->New({Napi::External<std::pair<std::shared_ptr<ModelHandle>, std::shared_ptr<Trainer>>>::New(env, &init)});
}

}  // namespace moe_binding
