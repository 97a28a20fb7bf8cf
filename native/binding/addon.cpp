// The N-API addon: implements electron/engine/addon.ts exactly (NAPI_VERSION 8, node-addon-api).
// Long work never runs on the JS thread: loadModel and session.logits are AsyncWorkers; session.generate runs a
// native thread that streams ids back through a ThreadSafeFunction (one call per token) and settles a Promise.
// Every C++ exception becomes a rejected Promise / thrown JS Error carrying its message.
#define NAPI_CPP_EXCEPTIONS
#include <napi.h>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>
#include "cpu/matmul.h"
#include "format/limits.h"
#include "io/adapter.h"
#include "model/model.h"
#include "quant/quant.h"
#include "quant/writer.h"
#include "runtime/session.h"
#include "binding/handle.h"
#if __has_include("cuda/cuda_probe.h")
#include "cuda/cuda_probe.h"
#define MOE_HAVE_CUDA_PROBE 1
#endif
#ifndef _WIN32
#include <sys/resource.h>
#endif

using namespace moe;

void register_export(Napi::Env env, Napi::Object exports);  // binding/export.cpp
void register_tensors(Napi::Env env, Napi::Object exports);  // binding/tensors.cpp
void register_names(Napi::Env env, Napi::Object exports);   // binding/names.cpp

namespace {

struct AddonData {
  Napi::FunctionReference model_ctor, session_ctor;
};

std::string show_number(double d) {
  char b[40];
  std::snprintf(b, sizeof b, "%.17g", d);
  return b;
}

// Token ids from JS, each checked as an integer in [0, vocab) *before* it is narrowed: Int32Value() would turn
// 2^32+5 into 5 and 1.5 into 1, and the engine would run a token nobody asked for.
std::vector<int32_t> ids_from(const Napi::Value& v, const char* what, int64_t vocab) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array of token ids");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int32_t> ids(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    const std::string at = std::string(what) + "[" + std::to_string(i) + "]";
    if (!e.IsNumber()) throw Napi::TypeError::New(v.Env(), at + " is not a number");
    const double d = e.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d >= double(vocab) || d != std::floor(d))
      throw Napi::RangeError::New(v.Env(), at + " = " + show_number(d) + " is not a token id: it must be an integer in [0, " +
                                               std::to_string(vocab) + ") (the vocabulary size)");
    ids[i] = int32_t(d);
  }
  return ids;
}

// A number option that must be an integer in [lo, hi] (checked before any cast: int(1e300) is undefined behaviour).
int64_t int_in(Napi::Env env, const Napi::Value& x, const std::string& name, double lo, double hi) {
  if (!x.IsNumber()) throw Napi::TypeError::New(env, name + " must be a number");
  const double d = x.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != std::floor(d))
    throw Napi::RangeError::New(env, name + " = " + show_number(d) + " must be an integer in [" + show_number(lo) + ", " + show_number(hi) + "]");
  return int64_t(d);
}

int threads_from(Napi::Env env, const Napi::Value& x, const std::string& name) {
  if (!x.IsNumber()) throw Napi::TypeError::New(env, name + " must be a number");
  try { check_threads(x.As<Napi::Number>().DoubleValue(), name); }
  catch (const std::exception& e) { throw Napi::RangeError::New(env, e.what()); }
  return int(x.As<Napi::Number>().DoubleValue());
}

Napi::Array to_array(Napi::Env env, const std::vector<int32_t>& ids) {
  Napi::Array a = Napi::Array::New(env, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) a.Set(uint32_t(i), Napi::Number::New(env, ids[i]));
  return a;
}

// What ModelWrap::CreateSession hands the NativeSession constructor.
struct SessionInit {
  std::shared_ptr<ModelHandle> handle;
  int64_t ctx = 0;
  std::shared_ptr<const Adapter> adapter;  // null: the model's own adapter (if any)
};

// The adapter at `dir` for this model, read on first use and cached on the handle by canonical path. It is read on the
// JS thread: an adapter is megabytes, not the base's gigabytes, and the engine worker (not the app) is what waits.
// An adapter made for another model is refused by load_adapter with the file and tensor at fault.
std::shared_ptr<const Adapter> cached_adapter(ModelHandle& h, const std::string& dir, const std::string& model_dir) {
  std::error_code ec;
  std::filesystem::path canon = std::filesystem::weakly_canonical(std::filesystem::path(dir), ec);
  const std::string key = ec ? dir : canon.string();
  auto it = h.adapters.find(key);
  if (it != h.adapters.end()) return it->second;
  auto a = std::make_shared<const Adapter>(load_adapter(dir, h.model->spec(), model_dir));
  h.adapters.emplace(key, a);
  return a;
}

// An adapter with no pairs, for a session that must run the bare base on a model loaded with its own adapter
// (`serve --adapter`'s Compare with base): forward applies the model's adapter only when it is given none.
std::shared_ptr<const Adapter> bare_base(ModelHandle& h) {
  auto it = h.adapters.find("");
  if (it != h.adapters.end()) return it->second;
  auto a = std::make_shared<Adapter>();
  a->layers.resize(size_t(h.model->spec().num_layers));
  h.adapters.emplace("", a);
  return a;
}

// ---------------------------------------------------------------------------------------------------------
class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeSession", {
      InstanceMethod<&SessionWrap::Logits>("logits"),
      InstanceMethod<&SessionWrap::Generate>("generate"),
      InstanceMethod<&SessionWrap::Cancel>("cancel"),
      InstanceMethod<&SessionWrap::Reset>("reset"),
      InstanceMethod<&SessionWrap::CachedIds>("cachedIds"),
      InstanceMethod<&SessionWrap::Dispose>("dispose"),
      InstanceAccessor<&SessionWrap::ContextLength>("contextLength"),
    });
  }
  SessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SessionWrap>(info) {
    auto* init = info[0].As<Napi::External<SessionInit>>().Data();
    handle_ = init->handle;
    session_ = std::make_shared<Session>(handle_->model, init->ctx);
    session_->set_adapter(init->adapter);
    ctx_ = session_->context_length();
  }

  std::shared_ptr<ModelHandle> handle_;
  std::shared_ptr<Session> session_;
  std::atomic<bool> cancel_{false};
  bool busy_ = false, dispose_pending_ = false;
  int64_t ctx_ = 0;

  void usable(Napi::Env env) {
    if (!session_) throw Napi::Error::New(env, "the session was disposed");
    if (!handle_->model || handle_->model->closed()) throw Napi::Error::New(env, "the model was closed");
    if (busy_) throw Napi::Error::New(env, "the session is busy (a logits or generate call is still running)");
  }
  void begin_job() { busy_ = true; cancel_ = false; handle_->active_jobs++; Ref(); }
  void end_job() {
    busy_ = false; handle_->job_end();
    if (dispose_pending_) { dispose_pending_ = false; session_.reset(); }
    Unref();
  }

  class LogitsWorker : public Napi::AsyncWorker {
   public:
    LogitsWorker(Napi::Env env, SessionWrap* s, std::vector<int32_t> ids)
        : Napi::AsyncWorker(env, "moe-logits"), s_(s), sess_(s->session_), ids_(std::move(ids)), deferred_(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
      try { sess_->logits(ids_, out_); } catch (const std::exception& e) { SetError(e.what()); }
    }
    void OnOK() override {
      Napi::Env env = Env();
      Napi::Float32Array a = Napi::Float32Array::New(env, out_.size());
      std::copy(out_.begin(), out_.end(), a.Data());
      s_->end_job();
      deferred_.Resolve(a);
    }
    void OnError(const Napi::Error& e) override { s_->end_job(); deferred_.Reject(e.Value()); }
   private:
    SessionWrap* s_;
    std::shared_ptr<Session> sess_;
    std::vector<int32_t> ids_;
    std::vector<float> out_;
    Napi::Promise::Deferred deferred_;
  };

  Napi::Value Logits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    try {
      usable(env);
      auto ids = ids_from(info[0], "ids", handle_->model->spec().vocab);
      auto* w = new LogitsWorker(env, this, std::move(ids));
      begin_job();
      w->Queue();
      return w->promise();
    } catch (const Napi::Error& e) {
      deferred.Reject(e.Value());
      return deferred.Promise();
    }
  }

  struct GenJob {
    SessionWrap* self;
    std::shared_ptr<Session> sess;
    Napi::Promise::Deferred deferred;
    std::vector<int32_t> prompt;
    SamplingParams params;
    std::unique_ptr<JsonConstraint> constraint;  // params.constraint, null when absent
    GenerateResult result;
    std::string error;
    std::thread th;
    Napi::ThreadSafeFunction tsfn;
  };

  static SamplingParams params_from(Napi::Env env, const Napi::Value& v, int64_t vocab) {
    if (!v.IsObject()) throw Napi::TypeError::New(env, "params must be an object");
    Napi::Object o = v.As<Napi::Object>();
    auto num = [&](const char* k, double def) {
      Napi::Value x = o.Get(k);
      if (x.IsUndefined() || x.IsNull()) return def;
      if (!x.IsNumber()) throw Napi::TypeError::New(env, std::string("params.") + k + " must be a number");
      const double d = x.As<Napi::Number>().DoubleValue();
      if (!std::isfinite(d)) throw Napi::RangeError::New(env, std::string("params.") + k + " must be a finite number");
      return d;
    };
    auto integer = [&](const char* k, double def, double lo, double hi) {
      Napi::Value x = o.Get(k);
      if (x.IsUndefined() || x.IsNull()) return int64_t(def);
      return int_in(env, x, std::string("params.") + k, lo, hi);
    };
    SamplingParams p;
    p.temperature = float(num("temperature", 0));
    p.top_k = int(std::min<int64_t>(std::max<int64_t>(integer("topK", 0, -2147483648.0, 2147483647.0), -1), vocab));  // <= 0 disables
    p.top_p = float(num("topP", 1));
    p.min_p = float(num("minP", 0));
    p.repetition_penalty = float(num("repetitionPenalty", 1));
    p.presence_penalty = float(num("presencePenalty", 0));
    p.frequency_penalty = float(num("frequencyPenalty", 0));
    if (std::fabs(p.presence_penalty) > 2 || std::fabs(p.frequency_penalty) > 2)
      throw Napi::RangeError::New(env, "params.presencePenalty and params.frequencyPenalty must be in [-2, 2]");
    p.seed = uint32_t(integer("seed", 0, 0, 4294967295.0));
    p.max_tokens = int(integer("maxTokens", 16, 1, 2147483647.0));
    // logitBias: { [id]: bias } with bias in [-100, 100] (OpenAI's logit_bias, keys already checked to be ids)
    Napi::Value lb = o.Get("logitBias");
    if (!lb.IsUndefined() && !lb.IsNull()) {
      if (!lb.IsObject()) throw Napi::TypeError::New(env, "params.logitBias must be an object of token id -> bias");
      Napi::Object b = lb.As<Napi::Object>();
      Napi::Array keys = b.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); ++i) {
        const std::string k = keys.Get(i).ToString().Utf8Value();
        char* end = nullptr;
        const long id = std::strtol(k.c_str(), &end, 10);
        if (k.empty() || *end != '\0' || id < 0 || id >= vocab)
          throw Napi::RangeError::New(env, "params.logitBias: '" + k + "' is not a token id in [0, " + std::to_string(vocab) + ")");
        Napi::Value v = b.Get(keys.Get(i));
        if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()) || std::fabs(v.As<Napi::Number>().DoubleValue()) > 100)
          throw Napi::RangeError::New(env, "params.logitBias[" + k + "] must be a number in [-100, 100]");
        p.logit_bias.emplace_back(int32_t(id), float(v.As<Napi::Number>().DoubleValue()));
      }
    }
    Napi::Value eos = o.Get("eosIds");
    if (eos.IsArray()) p.eos_ids = ids_from(eos, "params.eosIds", vocab);
    if (p.max_tokens < 1) throw Napi::RangeError::New(env, "params.maxTokens must be >= 1");
    if (p.repetition_penalty <= 0) throw Napi::RangeError::New(env, "params.repetitionPenalty must be > 0");
    return p;
  }

  // params.constraint: { jsonObject: true, oneOf?: string[] } -> the JSON-object constraint over the model's token bytes.
  std::unique_ptr<JsonConstraint> constraint_from(Napi::Env env, const Napi::Value& params) {
    Napi::Value v = params.As<Napi::Object>().Get("constraint");
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    if (!v.IsObject()) throw Napi::TypeError::New(env, "params.constraint must be an object");
    Napi::Object o = v.As<Napi::Object>();
    if (!o.Get("jsonObject").IsBoolean() || !o.Get("jsonObject").As<Napi::Boolean>().Value())
      throw Napi::TypeError::New(env, "params.constraint.jsonObject must be true (the only constraint there is)");
    std::vector<std::string> one_of;
    Napi::Value oo = o.Get("oneOf");
    if (!oo.IsUndefined() && !oo.IsNull()) {
      if (!oo.IsArray()) throw Napi::TypeError::New(env, "params.constraint.oneOf must be an array of strings");
      Napi::Array a = oo.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        if (!a.Get(i).IsString()) throw Napi::TypeError::New(env, "params.constraint.oneOf[" + std::to_string(i) + "] must be a string");
        one_of.push_back(a.Get(i).As<Napi::String>().Utf8Value());
      }
    }
    if (!handle_->token_bytes) throw Napi::Error::New(env, "params.constraint needs the token bytes: call model.setTokenBytes first");
    try {
      return std::make_unique<JsonConstraint>(handle_->token_bytes, std::move(one_of));
    } catch (const std::exception& e) {
      throw Napi::RangeError::New(env, std::string("params.") + e.what());
    }
  }

  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    try {
      usable(env);
      const int64_t vocab = handle_->model->spec().vocab;
      auto* job = new GenJob{this, session_, deferred, ids_from(info[0], "ids", vocab), params_from(env, info[1], vocab), nullptr, {}, {}, {}, {}};
      try { job->constraint = constraint_from(env, info[1]); } catch (...) { delete job; throw; }
      if (job->prompt.empty()) { delete job; throw Napi::Error::New(env, "prompt is empty (need at least one token id)"); }
      Napi::Function cb = info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
      job->tsfn = Napi::ThreadSafeFunction::New(env, cb, "moe-generate", /*maxQueueSize: at most one id waits for JS, so a cancel from JS lands within one token*/ 1, 1, job, [](Napi::Env env, GenJob* job) {
        // Runs on the JS thread once the native thread released the function.
        if (job->th.joinable()) job->th.join();
        job->self->end_job();
        if (!job->error.empty()) job->deferred.Reject(Napi::Error::New(env, job->error).Value());
        else {
          Napi::Object r = Napi::Object::New(env);
          r.Set("ids", to_array(env, job->result.ids));
          const char* stop = job->result.stop == GenerateResult::Stop::Eos ? "eos" : job->result.stop == GenerateResult::Stop::Cancelled ? "cancelled" : "length";
          r.Set("stopReason", stop);
          r.Set("promptTokens", double(job->result.prompt_tokens));
          r.Set("reusedTokens", double(job->result.reused_tokens));
          r.Set("prefillMs", job->result.prefill_ms);
          r.Set("decodeMs", job->result.decode_ms);
          job->deferred.Resolve(r);
        }
        delete job;
      });
      begin_job();
      std::atomic<bool>* cancel = &cancel_;
      job->th = std::thread([job, cancel] {
        try {
          job->result = job->sess->generate(job->prompt, job->params, [&](int32_t id) {
            job->tsfn.BlockingCall(new int32_t(id), [cancel](Napi::Env env, Napi::Function fn, int32_t* p) {
              int32_t v = *p; delete p;
              try { fn.Call({Napi::Number::New(env, v)}); } catch (const Napi::Error&) { *cancel = true; }
            });
          }, *cancel, job->constraint.get());
        } catch (const std::exception& e) {
          job->error = e.what();
          if (job->error.empty()) job->error = "generate failed";
        }
        job->tsfn.Release();
      });
      return deferred.Promise();
    } catch (const Napi::Error& e) {
      deferred.Reject(e.Value());
      return deferred.Promise();
    }
  }

  Napi::Value Cancel(const Napi::CallbackInfo& info) { cancel_ = true; return info.Env().Undefined(); }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    usable(info.Env());
    session_->reset();
    return info.Env().Undefined();
  }
  Napi::Value CachedIds(const Napi::CallbackInfo& info) {
    if (!session_) return Napi::Array::New(info.Env());
    return to_array(info.Env(), session_->cached_ids());
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    cancel_ = true;
    if (busy_) dispose_pending_ = true;
    else session_.reset();
    return info.Env().Undefined();
  }
  Napi::Value ContextLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(ctx_)); }
};

// ---------------------------------------------------------------------------------------------------------
class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel", {
      InstanceMethod<&ModelWrap::Info>("info"),
      InstanceMethod<&ModelWrap::CreateSession>("createSession"),
      InstanceMethod<&ModelWrap::Close>("close"),
      InstanceMethod<&ModelWrap::Grad>("grad"),
      InstanceMethod<&ModelWrap::CreateTrainer>("createTrainer"),
      InstanceMethod<&ModelWrap::Routing>("routing"),
      InstanceMethod<&ModelWrap::SetTokenBytes>("setTokenBytes"),
    });
  }
  ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    handle_ = std::make_shared<ModelHandle>();
    handle_->model = *info[0].As<Napi::External<std::shared_ptr<Model>>>().Data();
    if (info.Length() > 1 && info[1].IsString()) model_dir_ = info[1].As<Napi::String>().Utf8Value();
  }
  std::shared_ptr<ModelHandle> handle_;
  std::string model_dir_;  // the folder it was loaded from (named in adapter errors: "the model at <dir>")

  Model& model(Napi::Env env) {
    if (!handle_->model || handle_->model->closed()) throw Napi::Error::New(env, "the model was closed");
    return *handle_->model;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env);
    const ModelSpec& S = m.spec();
    Napi::Object o = Napi::Object::New(env);
    o.Set("modelType", S.model_type);
    o.Set("architecture", S.architecture);
    o.Set("numLayers", S.num_layers);
    o.Set("hiddenSize", double(S.hidden));
    o.Set("vocabSize", double(S.vocab));
    o.Set("numHeads", S.num_heads);
    o.Set("numKvHeads", S.num_kv_heads);
    o.Set("headDim", S.head_dim);
    o.Set("numExperts", S.max_experts());
    o.Set("topK", S.max_top_k());
    o.Set("numSharedExperts", S.num_shared_experts);
    o.Set("contextLength", double(S.max_position));
    DType d = m.bulk_dtype();
    o.Set("dtype", dtype_name(d));  // f32 | f16 | bf16 | q8_0 | q4_0 | q4_k
    o.Set("paramsTotal", double(m.params_total()));
    o.Set("paramsActive", double(m.params_active()));
    o.Set("weightBytes", double(m.weight_bytes()));
    o.Set("kvBytesPerToken", double(m.kv_bytes_per_token()));
    o.Set("kvCache", kv_type_name(m.kv_type()));
    o.Set("ropeType", S.rope.type);
    o.Set("tieWordEmbeddings", S.tie_embeddings);
    o.Set("backend", m.backend().name());  // cpu | emu
    o.Set("threads", m.pool().size());
    if (const Adapter* a = m.adapter()) {
      Napi::Object ad = Napi::Object::New(env);
      ad.Set("r", double(a->config.r));
      ad.Set("loraAlpha", a->config.alpha);
      ad.Set("useRslora", a->config.use_rslora);
      ad.Set("params", double(a->numel()));
      o.Set("adapter", ad);
    } else {
      o.Set("adapter", env.Null());
    }
    return o;
  }

  // setTokenBytes(data: Uint8Array, offsets: Uint32Array [vocab + 1]): token i is data[offsets[i], offsets[i+1]) (empty:
  // never allowed under a constraint). Copied, so the JS buffers may be reused; sessions already generating keep theirs.
  Napi::Value SetTokenBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t vocab = model(env).spec().vocab;
    if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      throw Napi::TypeError::New(env, "setTokenBytes(data: Uint8Array, offsets: Uint32Array)");
    Napi::Uint8Array d = info[0].As<Napi::Uint8Array>();
    Napi::Uint32Array o = info[1].As<Napi::Uint32Array>();
    if (int64_t(o.ElementLength()) != vocab + 1)
      throw Napi::RangeError::New(env, "setTokenBytes: offsets has " + std::to_string(o.ElementLength()) + " entries, the vocabulary needs " + std::to_string(vocab + 1));
    auto tb = std::make_shared<TokenBytes>();
    tb->data.assign(d.Data(), d.Data() + d.ElementLength());
    tb->offsets.assign(o.Data(), o.Data() + o.ElementLength());
    if (tb->offsets[0] != 0) throw Napi::RangeError::New(env, "setTokenBytes: offsets[0] must be 0");
    for (int64_t i = 0; i < vocab; ++i)
      if (tb->offsets[size_t(i) + 1] < tb->offsets[size_t(i)] || tb->offsets[size_t(i) + 1] > tb->data.size())
        throw Napi::RangeError::New(env, "setTokenBytes: offsets[" + std::to_string(i + 1) + "] is out of order or past the data");
    handle_->token_bytes = std::move(tb);
    return env.Undefined();
  }

  // routing({ reset? }) -> { topK (the largest), layers: [{ layer, topK, counts: number[E_l] }] } for the MoE layers only: the (token,
  // expert) pairs each expert received since load or the last reset (Model::routing_counts). Synchronous: it reads
  // L·E atomics.
  Napi::Value Routing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env);
    bool reset = false;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Value r = info[0].As<Napi::Object>().Get("reset");
      if (!r.IsUndefined() && !r.IsBoolean()) throw Napi::TypeError::New(env, "routing: reset must be a boolean");
      reset = r.IsBoolean() && r.As<Napi::Boolean>().Value();
    }
    const ModelSpec& S = m.spec();
    const std::vector<uint64_t> c = m.routing_counts(reset);
    const int stride = S.max_experts();
    Napi::Array layers = Napi::Array::New(env);
    uint32_t n = 0;
    for (int l = 0; l < S.num_layers; ++l) {
      const LayerSpec& ls = S.layers[size_t(l)];
      if (!ls.moe || ls.num_experts <= 0) continue;
      Napi::Object o = Napi::Object::New(env);
      Napi::Array counts = Napi::Array::New(env, size_t(ls.num_experts));
      for (int e = 0; e < ls.num_experts; ++e) counts.Set(uint32_t(e), double(c[size_t(l) * size_t(stride) + size_t(e)]));
      o.Set("layer", l);
      o.Set("topK", ls.top_k);
      o.Set("counts", counts);
      layers.Set(n++, o);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("topK", S.max_top_k());
    out.Set("layers", layers);
    return out;
  }

  // One forward + backward with the model's adapter (transformers' labels: aligned with ids, -100 ignored, position t
  // predicts labels[t+1]; loss = mean over counted targets) -> { loss, nTargets, grads: { peft tensor name: Float32Array } }.
  class GradWorker : public Napi::AsyncWorker {
   public:
    GradWorker(Napi::Env env, std::shared_ptr<ModelHandle> h, std::vector<int32_t> ids, std::vector<int32_t> labels)
        : Napi::AsyncWorker(env, "moe-grad"), h_(std::move(h)), model_(h_->model), ids_(std::move(ids)), labels_(std::move(labels)),
          deferred_(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
      try {
        const Adapter& a = *model_->adapter();
        const int64_t T = int64_t(ids_.size());
        std::vector<int32_t> targets(ids_.size(), -100);
        for (int64_t t = 0; t + 1 < T; ++t) targets[size_t(t)] = labels_[size_t(t + 1)];
        int64_t n = 0;
        for (int32_t y : targets) n += y != -100;
        if (n == 0) throw std::runtime_error("no label to learn from: every label after the first is -100");
        TrainState ts;
        model_->init_train(ts, T, a);
        Adapter g = zeros_like(a);
        loss_ = model_->forward_backward(ids_.data(), targets.data(), T, a, g, float(1.0 / double(n)), ts, &n_) / double(n);
        grads_ = adapter_tensors(a, model_->spec(), &g);
      } catch (const std::exception& e) { SetError(e.what()); }
    }
    void OnOK() override {
      Napi::Env env = Env();
      Napi::Object o = Napi::Object::New(env), gr = Napi::Object::New(env);
      o.Set("loss", loss_);
      o.Set("nTargets", double(n_));
      for (auto& t : grads_) {
        Napi::Float32Array arr = Napi::Float32Array::New(env, t.data.size());
        std::copy(t.data.begin(), t.data.end(), arr.Data());
        gr.Set(t.name, arr);
      }
      o.Set("grads", gr);
      h_->job_end();
      deferred_.Resolve(o);
    }
    void OnError(const Napi::Error& e) override { h_->job_end(); deferred_.Reject(e.Value()); }
   private:
    std::shared_ptr<ModelHandle> h_;
    std::shared_ptr<Model> model_;
    std::vector<int32_t> ids_, labels_;
    double loss_ = 0;
    int64_t n_ = 0;
    std::vector<PeftTensor> grads_;
    Napi::Promise::Deferred deferred_;
  };

  Napi::Value Grad(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    try {
      Model& m = model(env);
      if (!m.adapter()) throw Napi::Error::New(env, "grad needs an adapter: load the model with { adapter: DIR }");
      const int64_t V = m.spec().vocab;
      auto ids = ids_from(info[0], "ids", V);
      if (ids.empty()) throw Napi::RangeError::New(env, "grad: ids is empty");
      std::vector<int32_t> labels;
      if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
        if (!info[1].IsArray()) throw Napi::TypeError::New(env, "labels must be an array of token ids or -100");
        Napi::Array a = info[1].As<Napi::Array>();
        if (a.Length() != ids.size())
          throw Napi::RangeError::New(env, "labels has " + std::to_string(a.Length()) + " entries, ids " + std::to_string(ids.size()));
        for (uint32_t i = 0; i < a.Length(); ++i) {
          Napi::Value e = a.Get(i);
          const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1.5;
          if (d != -100 && (!(d >= 0) || d >= double(V) || d != std::floor(d)))
            throw Napi::RangeError::New(env, "labels[" + std::to_string(i) + "] = " + show_number(d) + " is not -100 or a token id in [0, " + std::to_string(V) + ")");
          labels.push_back(int32_t(d));
        }
      } else {
        labels = ids;
      }
      handle_->active_jobs++;
      auto* w = new GradWorker(env, handle_, std::move(ids), std::move(labels));
      w->Queue();
      return w->promise();
    } catch (const Napi::Error& e) {
      deferred.Reject(e.Value());
      return deferred.Promise();
    }
  }

  // createTrainer(config, { resume?: dir }) -> NativeTrainer (binding/trainer.cpp)
  Napi::Value CreateTrainer(const Napi::CallbackInfo& info) {
    model(info.Env());
    return moe_binding::create_trainer(info, handle_);
  }

  Napi::Value CreateSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env);
    int64_t ctx = std::min<int64_t>(m.spec().max_position, 8192);
    std::shared_ptr<const Adapter> adapter;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Value ad = info[0].As<Napi::Object>().Get("adapter");
      if (ad.IsNull()) adapter = bare_base(*handle_);
      else if (!ad.IsUndefined()) {
        if (!ad.IsString() || ad.As<Napi::String>().Utf8Value().empty())
          throw Napi::TypeError::New(env, "createSession: adapter must be the path of a PEFT adapter folder");
        try { adapter = cached_adapter(*handle_, ad.As<Napi::String>().Utf8Value(), model_dir_); }
        catch (const std::exception& e) { throw Napi::Error::New(env, e.what()); }
      }
      Napi::Value c = info[0].As<Napi::Object>().Get("contextLength");
      if (c.IsNumber()) {
        const double d = c.As<Napi::Number>().DoubleValue();
        if (!(d >= 1) || d != std::floor(d) || d > double(kMaxPositions))
          throw Napi::RangeError::New(env, "contextLength = " + show_number(d) + " must be an integer in [1, " + std::to_string(kMaxPositions) + "]");
        ctx = int64_t(d);
      }
    }
    // The KV cache and scratch are allocated now: check what they take against the machine's memory first.
    try { check_session_memory(m.spec(), ctx, m.kv_type(), m.pool().size()); }
    catch (const std::exception& e) { throw Napi::RangeError::New(env, std::string("createSession: ") + e.what()); }
    SessionInit init{handle_, ctx, adapter};
    auto* data = env.GetInstanceData<AddonData>();
    try {
      return data->session_ctor.New({Napi::External<SessionInit>::New(env, &init)});
    } catch (const Napi::Error&) { throw; }
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (handle_->model) {
      handle_->model->mark_closed();
      if (handle_->active_jobs == 0) handle_->model->close();
      else handle_->close_pending = true;
    }
    return info.Env().Undefined();
  }
};

// ---------------------------------------------------------------------------------------------------------
struct Progress { int done, total; };

class LoadWorker : public Napi::AsyncProgressQueueWorker<Progress> {
 public:
  LoadWorker(Napi::Env env, Napi::Function noop, std::string dir, int threads, KvType kv, std::string adapter,
             std::string base_quant, std::string device, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<Progress>(noop, "moe-load"), dir_(std::move(dir)), adapter_(std::move(adapter)),
        base_quant_(std::move(base_quant)), device_(std::move(device)), threads_(threads), kv_(kv),
        deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute(const ExecutionProgress& progress) override {
    try {
      LoadProgress lp;
      lp.ctx = const_cast<ExecutionProgress*>(&progress);
      lp.fn = [](void* ctx, int done, int total) {
        Progress p{done, total};
        static_cast<ExecutionProgress*>(ctx)->Send(&p, 1);
      };
      model_ = Model::load(dir_, threads_, lp, kv_, base_quant_, device_);
      if (!adapter_.empty()) model_->set_adapter(std::make_shared<Adapter>(load_adapter(adapter_, model_->spec(), dir_)));
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnProgress(const Progress* data, size_t count) override {
    if (progress_.IsEmpty()) return;
    for (size_t i = 0; i < count; ++i) {
      try { progress_.Call({Napi::Number::New(Env(), data[i].done), Napi::Number::New(Env(), data[i].total)}); }
      catch (const Napi::Error&) {}
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto* data = env.GetInstanceData<AddonData>();
    try {
      Napi::Object m = data->model_ctor.New({Napi::External<std::shared_ptr<Model>>::New(env, &model_), Napi::String::New(env, dir_)});
      deferred_.Resolve(m);
    } catch (const Napi::Error& e) { deferred_.Reject(e.Value()); }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
 private:
  std::string dir_, adapter_, base_quant_, device_;
  int threads_;
  KvType kv_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference progress_;
  std::shared_ptr<Model> model_;
};

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(Napi::TypeError::New(env, "loadModel(dir): dir must be a string").Value());
    return d.Promise();
  }
  int threads = 0;
  KvType kv_type = KvType::F32;
  std::string adapter, base_quant = "none", device = "cpu";
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value t = info[1].As<Napi::Object>().Get("threads");
    if (!t.IsUndefined() && !t.IsNull()) {
      try { threads = threads_from(env, t, "loadModel: threads"); }
      catch (const Napi::Error& e) {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(e.Value());
        return d.Promise();
      }
    }
    Napi::Value kv = info[1].As<Napi::Object>().Get("kvCache");
    if (!kv.IsUndefined() && !kv.IsNull()) {
      const std::string k = kv.IsString() ? kv.As<Napi::String>().Utf8Value() : "";
      if (k != "f32" && k != "f16" && k != "int8") {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(Napi::TypeError::New(env, "loadModel: kvCache must be \"f32\", \"f16\" or \"int8\"").Value());
        return d.Promise();
      }
      kv_type = k == "int8" ? KvType::Int8 : k == "f16" ? KvType::F16 : KvType::F32;
    }
    Napi::Value ad = info[1].As<Napi::Object>().Get("adapter");
    if (!ad.IsUndefined() && !ad.IsNull()) {
      if (!ad.IsString() || ad.As<Napi::String>().Utf8Value().empty()) {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(Napi::TypeError::New(env, "loadModel: adapter must be the path of a PEFT adapter folder").Value());
        return d.Promise();
      }
      adapter = ad.As<Napi::String>().Utf8Value();
    }
    Napi::Value bq = info[1].As<Napi::Object>().Get("baseQuant");
    if (!bq.IsUndefined() && !bq.IsNull()) {
      base_quant = bq.IsString() ? bq.As<Napi::String>().Utf8Value() : "";
      if (base_quant != "none" && base_quant != "nf4") {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(Napi::TypeError::New(env, "loadModel: baseQuant must be \"none\" or \"nf4\"").Value());
        return d.Promise();
      }
    }
    Napi::Value dv = info[1].As<Napi::Object>().Get("device");
    if (!dv.IsUndefined() && !dv.IsNull()) {
      device = dv.IsString() ? dv.As<Napi::String>().Utf8Value() : "";
      if (device != "auto" && device != "cpu" && device != "cuda" && device != "emu") {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(Napi::TypeError::New(env, "loadModel: device must be \"auto\", \"cpu\", \"cuda\" or \"emu\"").Value());
        return d.Promise();
      }
    }
  }
  Napi::Function onp = (info.Length() > 2 && info[2].IsFunction()) ? info[2].As<Napi::Function>() : Napi::Function();
  Napi::Function noop = Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  auto* w = new LoadWorker(env, noop, info[0].As<Napi::String>().Utf8Value(), threads, kv_type, adapter, base_quant, device, onp);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  unsigned hc = std::thread::hardware_concurrency();
  o.Set("threads", double(hc ? hc : 1));
  o.Set("simd", simd_name());
  Napi::Object cuda = Napi::Object::New(env);
#ifdef MOE_HAVE_CUDA_PROBE
  CudaProbe pr = cuda_probe();
  cuda.Set("compiled", pr.compiled);
  cuda.Set("devices", pr.devices);
  if (!pr.error.empty()) cuda.Set("error", pr.error);
  cuda.Set("memoryBytes", double(pr.memory_bytes));
#else
  cuda.Set("compiled", false);
  cuda.Set("devices", 0);
  cuda.Set("memoryBytes", 0.0);
  cuda.Set("error", "the addon was built without the CUDA backend");
#endif
  o.Set("cuda", cuda);
  double rss = 0;
#ifndef _WIN32
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
#ifdef __APPLE__
    rss = double(ru.ru_maxrss);          // bytes on macOS
#else
    rss = double(ru.ru_maxrss) * 1024.0;  // KiB on Linux
#endif
  }
#endif
  o.Set("peakRssBytes", rss);
  return o;
}

// quantizeTensor(data: Float32Array, type) -> Uint8Array and dequantizeTensor(bytes, type, count) -> Float32Array:
// synchronous and pure (GGUF block bytes, see native/quant/quant.h). Large tensors use a short-lived pool.
DType qtype_arg(const Napi::Value& v) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "type must be \"q8_0\", \"q4_0\" or \"q4_k\"");
  try { return qtype_from_name(v.As<Napi::String>().Utf8Value()); }
  catch (const std::exception& e) { throw Napi::TypeError::New(v.Env(), e.what()); }
}

Napi::Value QuantizeTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "quantizeTensor(data, type): data must be a Float32Array");
  DType t = qtype_arg(info[1]);
  Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  const int64_t n = int64_t(x.ElementLength());
  size_t nbytes;
  try { nbytes = qbytes(t, n); } catch (const std::exception& e) { throw Napi::RangeError::New(env, std::string("quantizeTensor: ") + e.what()); }
  Napi::Uint8Array out = Napi::Uint8Array::New(env, nbytes);
  if (n >= (int64_t(1) << 20)) { ThreadPool pool(0); quantize_tensor(t, x.Data(), out.Data(), n, &pool); }
  else quantize_tensor(t, x.Data(), out.Data(), n);
  return out;
}

Napi::Value DequantizeTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, "dequantizeTensor(bytes, type, count): bytes must be a Uint8Array");
  DType t = qtype_arg(info[1]);
  if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "dequantizeTensor(bytes, type, count): count must be a number");
  const double c = info[2].As<Napi::Number>().DoubleValue();
  if (!(c >= 0) || c != std::floor(c) || c > 9.0e15) throw Napi::RangeError::New(env, "dequantizeTensor: count must be a non-negative integer");
  const int64_t n = int64_t(c);
  Napi::Uint8Array b = info[0].As<Napi::Uint8Array>();
  size_t need;
  try { need = qbytes(t, n); } catch (const std::exception& e) { throw Napi::RangeError::New(env, std::string("dequantizeTensor: ") + e.what()); }
  if (b.ByteLength() != need)
    throw Napi::RangeError::New(env, std::string("dequantizeTensor: ") + std::to_string(n) + " " + qtype_name(t) + " values take " +
                                std::to_string(need) + " bytes but " + std::to_string(b.ByteLength()) + " were given");
  Napi::Float32Array out = Napi::Float32Array::New(env, size_t(n));
  if (n >= (int64_t(1) << 20)) { ThreadPool pool(0); dequantize_tensor(t, b.Data(), out.Data(), n, &pool); }
  else dequantize_tensor(t, b.Data(), out.Data(), n);
  return out;
}

// quantizeModel(src, outDir, opts, onProgress) -> { promise, cancel }: the tensors of a model folder quantized
// into outDir on a native thread (quant/writer.h); progress (doneBytes, totalBytes, tensorName) on the JS thread.
struct QProgress { int64_t done, total; std::string name; };

class QuantizeWorker : public Napi::AsyncProgressQueueWorker<QProgress> {
 public:
  QuantizeWorker(Napi::Env env, Napi::Function noop, std::string src, std::string dst, QuantizeOptions opt, Napi::Function on_progress,
                 std::shared_ptr<std::atomic<bool>> cancel)
      : Napi::AsyncProgressQueueWorker<QProgress>(noop, "moe-quantize"), src_(std::move(src)), dst_(std::move(dst)), opt_(std::move(opt)),
        cancel_(std::move(cancel)), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute(const ExecutionProgress& progress) override {
    try {
      QuantizeProgress qp;
      qp.ctx = const_cast<ExecutionProgress*>(&progress);
      qp.fn = [](void* ctx, int64_t done, int64_t total, const std::string& name) {
        QProgress p{done, total, name};
        static_cast<ExecutionProgress*>(ctx)->Send(&p, 1);
      };
      report_ = quantize_model(src_, dst_, opt_, qp, *cancel_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnProgress(const QProgress* data, size_t count) override {
    if (progress_.IsEmpty()) return;
    for (size_t i = 0; i < count; ++i) {
      try { progress_.Call({Napi::Number::New(Env(), double(data[i].done)), Napi::Number::New(Env(), double(data[i].total)), Napi::String::New(Env(), data[i].name)}); }
      catch (const Napi::Error&) {}
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto entries = [&](const std::vector<QuantizeReport::Entry>& v) {
      Napi::Array a = Napi::Array::New(env, v.size());
      for (size_t i = 0; i < v.size(); ++i) { Napi::Object o = Napi::Object::New(env); o.Set("name", v[i].name); o.Set("type", v[i].type); a.Set(uint32_t(i), o); }
      return a;
    };
    auto strings = [&](const std::vector<std::string>& v) {
      Napi::Array a = Napi::Array::New(env, v.size());
      for (size_t i = 0; i < v.size(); ++i) a.Set(uint32_t(i), v[i]);
      return a;
    };
    Napi::Object r = Napi::Object::New(env);
    r.Set("tensors", entries(report_.tensors));
    r.Set("fallbacks", entries(report_.fallbacks));
    r.Set("notQuantized", strings(report_.not_quantized));
    r.Set("files", strings(report_.files));
    r.Set("bytesIn", double(report_.bytes_in));
    r.Set("bytesOut", double(report_.bytes_out));
    r.Set("params", double(report_.params));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
 private:
  std::string src_, dst_;
  QuantizeOptions opt_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference progress_;
  QuantizeReport report_;
};

Napi::Value QuantizeModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "quantizeModel(src, outDir, opts): src and outDir must be strings");
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "quantizeModel: opts must be an object");
  Napi::Object o = info[2].As<Napi::Object>();
  QuantizeOptions opt;
  opt.format = qtype_arg(o.Get("format"));
  Napi::Value emb = o.Get("embeddings");
  if (emb.IsString()) {
    opt.embeddings = emb.As<Napi::String>().Utf8Value();
    if (opt.embeddings != "keep") qtype_arg(emb);
  }
  Napi::Value th = o.Get("threads");
  if (!th.IsUndefined() && !th.IsNull()) opt.threads = threads_from(env, th, "quantizeModel: threads");
  Napi::Function onp = (info.Length() > 3 && info[3].IsFunction()) ? info[3].As<Napi::Function>() : Napi::Function();
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto* w = new QuantizeWorker(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), info[0].As<Napi::String>().Utf8Value(),
                               info[1].As<Napi::String>().Utf8Value(), opt, onp, cancel);
  Napi::Object job = Napi::Object::New(env);
  job.Set("promise", w->promise());
  job.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo& ci) { *cancel = true; return ci.Env().Undefined(); }, "cancel"));
  w->Queue();
  return job;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->model_ctor = Napi::Persistent(ModelWrap::Init(env));
  data->session_ctor = Napi::Persistent(SessionWrap::Init(env));
  moe_binding::register_trainer(env, exports);
  env.SetInstanceData<AddonData>(data);
  exports.Set("loadModel", Napi::Function::New<LoadModel>(env, "loadModel"));
  exports.Set("systemInfo", Napi::Function::New<SystemInfo>(env, "systemInfo"));
  exports.Set("quantizeTensor", Napi::Function::New<QuantizeTensor>(env, "quantizeTensor"));
  exports.Set("dequantizeTensor", Napi::Function::New<DequantizeTensor>(env, "dequantizeTensor"));
  exports.Set("quantizeModel", Napi::Function::New<QuantizeModel>(env, "quantizeModel"));
  register_export(env, exports);  // binding/export.cpp: mergeAdapter
  register_tensors(env, exports);  // binding/tensors.cpp: storageType, openSafetensors
  register_names(env, exports);   // binding/names.cpp: hubTensors
  return exports;
}

}  // namespace

NODE_API_MODULE(moe_engine, Init)
