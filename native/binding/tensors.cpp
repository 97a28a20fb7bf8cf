// The engine's tensor rules for Node, so TypeScript never re-decides or re-parses what native code owns:
//   storageType({ container, format, role, rank, rowLength, stored?, embeddings? }) -> "q4_k" | "q4_0" | "f16" | ...
//     the one storage rule (quant/plan.h) that the model-folder quantizer uses, asked by the GGUF exporter;
//   openSafetensors(dir) -> { tensors(), readF32(name, start, count), readBytes(name, start, count), close() }
//     the engine's validated, memory-mapped reader (format/safetensors.h, limits in format/limits.h) for a folder
//     (model.safetensors, the shards of model.safetensors.index.json, or every *.safetensors): headers are checked
//     exactly as loadModel checks them, and errors name the file and the tensor.
// Registered by addon.cpp's Init.
#define NAPI_CPP_EXCEPTIONS
#include <napi.h>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include "format/safetensors.h"
#include "format/safetensors_writer.h"
#include "quant/plan.h"
#include "quant/quant.h"

using namespace moe;

namespace {

std::string str_arg(const Napi::Object& o, const char* key, const char* what, bool required = true) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && !required) return "";
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string(what) + ": " + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// A JS number that must be an integer in [lo, hi]; the message names the call and the field.
int64_t int_arg(const Napi::Value& v, const std::string& what, double lo, double hi) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != std::floor(d))
    throw Napi::RangeError::New(v.Env(), what + " must be an integer in [" + std::to_string(int64_t(lo)) + ", " + std::to_string(int64_t(hi)) + "]");
  return int64_t(d);
}

// Well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    size_t len;
    unsigned cp;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    i += len;
  }
  return true;
}

DType float_dtype(const Napi::Env& env, const std::string& s, const char* what) {
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  throw Napi::TypeError::New(env, std::string(what) + " must be \"f32\", \"f16\" or \"bf16\", got \"" + s.substr(0, 32) + "\"");
}

Napi::Value StorageType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* what = "storageType";
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "storageType(query): query must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  StorageTarget t;
  const std::string c = str_arg(o, "container", what);
  if (c == "folder") t.container = Container::Folder;
  else if (c == "gguf") t.container = Container::Gguf;
  else throw Napi::TypeError::New(env, "storageType: container must be \"folder\" or \"gguf\", got \"" + c.substr(0, 32) + "\"");
  const std::string f = str_arg(o, "format", what);
  try {
    t.format = f == "f16" ? DType::F16 : qtype_from_name(f);
    const std::string e = str_arg(o, "embeddings", what, false);
    if (e == "keep") t.keep_embeddings = true;
    else if (!e.empty()) t.embeddings = qtype_from_name(e);
    const TensorRole role = tensor_role_from_name(str_arg(o, "role", what));
    const int rank = int(int_arg(o.Get("rank"), "storageType: rank", 0, double(kSafetensorsMaxRank)));
    const int64_t K = int_arg(o.Get("rowLength"), "storageType: rowLength", 0, 9.0e15);
    const std::string s = str_arg(o, "stored", what, false);
    const DType stored = s.empty() ? DType::F32 : float_dtype(env, s, "storageType: stored");
    return Napi::String::New(env, dtype_name(storage_type(t, role, rank, K, stored)));
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::TypeError::New(env, std::string("storageType: ") + e.what());
  }
}

// One open folder. The mapping lives until close() (or the garbage collector); reads copy out of it, so no JS
// array ever points into an unmapped range, and the pages a read touched are released again (madvise), so
// streaming a model through it keeps the resident set flat.
class SafetensorsWrap : public Napi::ObjectWrap<SafetensorsWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeSafetensors",
                       {InstanceMethod<&SafetensorsWrap::Tensors>("tensors"), InstanceMethod<&SafetensorsWrap::ReadF32>("readF32"),
                        InstanceMethod<&SafetensorsWrap::ReadBytes>("readBytes"), InstanceMethod<&SafetensorsWrap::Close>("close")});
  }
  explicit SafetensorsWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SafetensorsWrap>(info) {
    if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "openSafetensors(dir): dir must be a string");
    try { store_ = std::make_unique<TensorStore>(info[0].As<Napi::String>().Utf8Value()); }
    catch (const std::exception& e) { throw Napi::Error::New(info.Env(), e.what()); }
    // JS strings are UTF-16: a name with invalid UTF-8 would come back as U+FFFD and never be found again, so such
    // a header is refused here (the engine itself looks names up as bytes and does not need this).
    for (auto& f : store_->files()) {
      for (auto& t : f->tensors())
        if (!valid_utf8(t.name)) {
          const std::string path = f->path();
          store_.reset();
          throw Napi::Error::New(info.Env(), path + ": corrupt safetensors header: a tensor name is not valid UTF-8");
        }
      file_of_[&f->path()] = f.get();
    }
  }

 private:
  const TensorStore& store(const Napi::Env& env) {
    if (!store_) throw Napi::Error::New(env, "safetensors folder is closed");
    return *store_;
  }
  // The tensor and the file that maps it.
  std::pair<const TensorView*, const SafeTensorsFile*> find(const Napi::Value& v, const char* what) {
    if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": name must be a string");
    const std::string name = v.As<Napi::String>().Utf8Value();
    if (const TensorView* t = store(v.Env()).find(name)) return {t, file_of_.at(t->file)};
    throw Napi::Error::New(v.Env(), std::string(what) + ": no tensor \"" + name.substr(0, 200) + "\" in the safetensors files");
  }

  Napi::Value Tensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const TensorStore& s = store(env);
    size_t n = 0;
    for (auto& f : s.files()) n += f->tensors().size();
    Napi::Array a = Napi::Array::New(env, n);
    uint32_t i = 0;
    // files in the store's order, tensors in header order
    for (auto& f : s.files())
      for (auto& t : f->tensors()) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", t.name);
        o.Set("dtype", dtype_name(t.dtype));  // q8_0/q4_0/q4_k for moe-studio's blocks (logical shape below)
        Napi::Array sh = Napi::Array::New(env, t.shape.size());
        for (size_t k = 0; k < t.shape.size(); ++k) sh.Set(uint32_t(k), double(t.shape[k]));
        o.Set("shape", sh);
        o.Set("file", f->path());
        o.Set("offset", double(static_cast<const uint8_t*>(t.data) - f->map().data()));
        o.Set("nbytes", double(t.nbytes));
        a.Set(i++, o);
      }
    return a;
  }

  // readF32(name, startElem, count): elements [start, start+count) of a bf16/f16/f32 tensor (flattened row-major),
  // widened to f32 exactly (bf16 is the top half of an f32; every f16 is an f32).
  Napi::Value ReadF32(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto [t, f] = find(info[0], "readF32");
    const std::string where = *t->file + ": tensor " + t->name;
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16)
      throw Napi::Error::New(env, where + " is " + dtype_name(t->dtype) + ": readF32 widens only bf16, f16 and f32 (read blocks with readBytes)");
    const int64_t numel = t->numel();
    const int64_t start = info[1].IsUndefined() ? 0 : int_arg(info[1], "readF32: start", 0, double(numel));
    const int64_t count = info[2].IsUndefined() ? numel - start : int_arg(info[2], "readF32: count", 0, double(numel));
    if (start + count > numel)
      throw Napi::RangeError::New(env, where + ": elements [" + std::to_string(start) + ", " + std::to_string(start + count) +
                                       ") are outside its " + std::to_string(numel));
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(count));
    float* y = out.Data();
    const size_t es = dtype_size(t->dtype);
    const uint8_t* src = static_cast<const uint8_t*>(t->data) + size_t(start) * es;
    if (t->dtype == DType::F32) std::memcpy(y, src, size_t(count) * 4);
    else {
      const bool bf = t->dtype == DType::BF16;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + size_t(i) * 2, 2);
        y[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
      }
    }
    release_pages(f->map(), src, uint64_t(count) * es);
    return out;
  }

  // readBytes(name, startByte, count): the stored bytes [start, start+count) of any tensor (blocks are copied as they are).
  Napi::Value ReadBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto [t, f] = find(info[0], "readBytes");
    const double nb = double(t->nbytes);
    const int64_t start = info[1].IsUndefined() ? 0 : int_arg(info[1], "readBytes: start", 0, nb);
    const int64_t count = info[2].IsUndefined() ? int64_t(t->nbytes) - start : int_arg(info[2], "readBytes: count", 0, nb);
    if (uint64_t(start + count) > t->nbytes)
      throw Napi::RangeError::New(env, *t->file + ": tensor " + t->name + ": bytes [" + std::to_string(start) + ", " +
                                       std::to_string(start + count) + ") are outside its " + std::to_string(t->nbytes));
    Napi::Uint8Array out = Napi::Uint8Array::New(env, size_t(count));
    const uint8_t* src = static_cast<const uint8_t*>(t->data) + start;
    std::memcpy(out.Data(), src, size_t(count));
    release_pages(f->map(), src, uint64_t(count));
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    store_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<TensorStore> store_;
  std::map<const std::string*, const SafeTensorsFile*> file_of_;  // TensorView::file -> the file that maps it
};

}  // namespace

// Called from addon.cpp's Init.
void register_tensors(Napi::Env env, Napi::Object exports) {
  exports.Set("storageType", Napi::Function::New<StorageType>(env, "storageType"));
  // The class is kept alive by a reference owned by the module (freed with the environment).
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(SafetensorsWrap::Init(env)));
  env.AddCleanupHook([ctor]() { delete ctor; });
  exports.Set("openSafetensors", Napi::Function::New(env, [ctor](const Napi::CallbackInfo& info) -> Napi::Value {
    return ctor->New({info.Length() > 0 ? info[0] : info.Env().Undefined()});
  }, "openSafetensors"));
}
