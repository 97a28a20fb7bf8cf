// hubTensors(configJson, source, present?) -> { tensors: [{ name, role, layer, expert, bias, optional, form }], unknown }:
// the names table of format/names.h for a config.json's text (`source` names the file in errors, as the engine's
// loader names it), so Node-side converters (electron/gguf/arch.ts) spell no Hugging Face tensor name themselves.
// With `present` (the folder's tensor names) each MoE layer's experts are listed in the form the folder stores them
// and `unknown` lists the names the table has no place for. Synchronous: a table, no file is read. Registered by
// addon.cpp.
#include <napi.h>
#include <unordered_set>
#include "format/config.h"
#include "format/json.h"
#include "format/names.h"

using namespace moe;

namespace {

const char* form_name(ExpertForm f) {
  switch (f) {
    case ExpertForm::PerExpert: return "per_expert";
    case ExpertForm::Fused: return "fused";
    case ExpertForm::Stacked: return "stacked";
  }
  return "per_expert";
}

Napi::Value HubTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "hubTensors(configJson, source, present?): configJson and source must be strings");
  std::vector<std::string> present;
  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsArray()) throw Napi::TypeError::New(env, "hubTensors: present must be an array of tensor names");
    Napi::Array a = info[2].As<Napi::Array>();
    present.reserve(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value v = a.Get(i);
      if (!v.IsString()) throw Napi::TypeError::New(env, "hubTensors: present[" + std::to_string(i) + "] is not a string");
      present.push_back(v.As<Napi::String>().Utf8Value());
    }
  }
  const std::string source = info[1].As<Napi::String>().Utf8Value();
  try {
    const ModelSpec spec = parse_model_spec(json_parse(info[0].As<Napi::String>().Utf8Value(), source), source);
    const TensorNames N(spec);
    std::unordered_set<std::string> has(present.begin(), present.end());
    std::vector<ExpertForm> forms;
    for (int i = 0; i < int(spec.layers.size()); ++i)
      forms.push_back(spec.layers[size_t(i)].moe ? N.expert_form(i, [&](const std::string& n) { return has.count(n) > 0; })
                                                 : ExpertForm::PerExpert);
    const std::vector<TensorEntry> es = N.expected(forms);
    Napi::Array ts = Napi::Array::New(env, es.size());
    for (size_t k = 0; k < es.size(); ++k) {
      const TensorEntry& e = es[k];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", e.name);
      o.Set("role", role_name(e.ref.role));
      o.Set("layer", e.ref.layer);
      o.Set("expert", e.ref.expert);
      o.Set("bias", e.ref.bias);
      o.Set("optional", e.optional);
      o.Set("form", form_name(e.ref.form));
      ts.Set(uint32_t(k), o);
    }
    Napi::Array unknown = Napi::Array::New(env);
    for (const std::string& n : present)
      if (!N.classify(n).known()) unknown.Set(unknown.Length(), n);
    Napi::Object out = Napi::Object::New(env);
    out.Set("tensors", ts);
    out.Set("unknown", unknown);
    return out;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace

void register_names(Napi::Env env, Napi::Object exports) {
  exports.Set("hubTensors", Napi::Function::New<HubTensors>(env, "hubTensors"));
}
