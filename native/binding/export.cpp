// mergeAdapter(src, adapterDir, outDir, { dtype: "f32"|"f16"|"bf16", maxShardBytes? }, onProgress?)
//   -> { promise, cancel }: the merged tensors of `moe-studio export` written into outDir on a native thread
// (io/merge.h); progress (doneTensors, totalTensors, tensorName) on the JS thread. Registered by addon.cpp.
#include <napi.h>
#include <atomic>
#include <cmath>
#include <memory>
#include "io/merge.h"

using namespace moe;

namespace {

struct MProgress { int64_t done, total; std::string name; };

class MergeWorker : public Napi::AsyncProgressQueueWorker<MProgress> {
 public:
  MergeWorker(Napi::Env env, Napi::Function noop, std::string src, std::string adapter, std::string dst, MergeOptions opt,
              Napi::Function on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : Napi::AsyncProgressQueueWorker<MProgress>(noop, "moe-export"), src_(std::move(src)), adapter_(std::move(adapter)),
        dst_(std::move(dst)), opt_(opt), cancel_(std::move(cancel)), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute(const ExecutionProgress& progress) override {
    try {
      MergeProgress mp;
      mp.ctx = const_cast<ExecutionProgress*>(&progress);
      mp.fn = [](void* ctx, int64_t done, int64_t total, const std::string& name) {
        MProgress p{done, total, name};
        static_cast<ExecutionProgress*>(ctx)->Send(&p, 1);
      };
      report_ = merge_adapter(src_, adapter_, dst_, opt_, mp, *cancel_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnProgress(const MProgress* data, size_t count) override {
    if (progress_.IsEmpty()) return;
    for (size_t i = 0; i < count; ++i) {
      try { progress_.Call({Napi::Number::New(Env(), double(data[i].done)), Napi::Number::New(Env(), double(data[i].total)), Napi::String::New(Env(), data[i].name)}); }
      catch (const Napi::Error&) {}
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array ts = Napi::Array::New(env, report_.tensors.size());
    for (size_t i = 0; i < report_.tensors.size(); ++i) {
      const auto& e = report_.tensors[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", e.name); o.Set("source", e.source); o.Set("merged", e.merged);
      Napi::Array sh = Napi::Array::New(env, e.shape.size());
      for (size_t k = 0; k < e.shape.size(); ++k) sh.Set(uint32_t(k), double(e.shape[k]));
      o.Set("shape", sh);
      ts.Set(uint32_t(i), o);
    }
    Napi::Array files = Napi::Array::New(env, report_.files.size());
    for (size_t i = 0; i < report_.files.size(); ++i) files.Set(uint32_t(i), report_.files[i]);
    Napi::Object r = Napi::Object::New(env);
    r.Set("tensors", ts);
    r.Set("files", files);
    r.Set("mergedPairs", double(report_.merged_pairs));
    r.Set("bytesIn", double(report_.bytes_in));
    r.Set("bytesOut", double(report_.bytes_out));
    r.Set("params", double(report_.params));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
 private:
  std::string src_, adapter_, dst_;
  MergeOptions opt_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference progress_;
  MergeReport report_;
};

Napi::Value MergeAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString())
    throw Napi::TypeError::New(env, "mergeAdapter(src, adapterDir, outDir, opts): src, adapterDir and outDir must be strings");
  if (!info[3].IsObject()) throw Napi::TypeError::New(env, "mergeAdapter: opts must be an object");
  Napi::Object o = info[3].As<Napi::Object>();
  MergeOptions opt;
  Napi::Value dt = o.Get("dtype");
  const std::string d = dt.IsString() ? dt.As<Napi::String>().Utf8Value() : "";
  if (d == "f32" || d == "fp32") opt.dtype = DType::F32;
  else if (d == "f16" || d == "fp16") opt.dtype = DType::F16;
  else if (d == "bf16") opt.dtype = DType::BF16;
  else throw Napi::TypeError::New(env, "mergeAdapter: opts.dtype must be \"f32\", \"f16\" or \"bf16\"");
  Napi::Value ms = o.Get("maxShardBytes");
  if (!ms.IsUndefined() && !ms.IsNull()) {
    const double v = ms.IsNumber() ? ms.As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 1) || v != std::floor(v) || v > 9.0e15) throw Napi::RangeError::New(env, "mergeAdapter: opts.maxShardBytes must be a positive integer");
    opt.max_shard_bytes = uint64_t(v);
  }
  Napi::Value th = o.Get("threads");
  if (!th.IsUndefined() && !th.IsNull()) {
    const double v = th.IsNumber() ? th.As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 0) || v != std::floor(v) || v > 1024) throw Napi::RangeError::New(env, "mergeAdapter: opts.threads must be an integer in [0, 1024]");
    opt.threads = int(v);
  }
  Napi::Function onp = (info.Length() > 4 && info[4].IsFunction()) ? info[4].As<Napi::Function>() : Napi::Function();
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto* w = new MergeWorker(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), info[0].As<Napi::String>().Utf8Value(),
                            info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::String>().Utf8Value(), opt, onp, cancel);
  Napi::Object job = Napi::Object::New(env);
  job.Set("promise", w->promise());
  job.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo& ci) { *cancel = true; return ci.Env().Undefined(); }, "cancel"));
  w->Queue();
  return job;
}

}  // namespace

void register_export(Napi::Env env, Napi::Object exports) {
  exports.Set("mergeAdapter", Napi::Function::New<MergeAdapter>(env, "mergeAdapter"));
}
