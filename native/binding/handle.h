// What the addon's files share: a model handle (main-thread only) and the trainer binding's entry points.
#pragma once
#define NAPI_CPP_EXCEPTIONS
#include <napi.h>
#include <map>
#include <memory>
#include <string>
#include "model/model.h"
#include "runtime/json_constraint.h"

// Shared by a model object, its sessions and trainers (main-thread only): running jobs and a deferred close.
struct ModelHandle {
  std::shared_ptr<moe::Model> model;
  int active_jobs = 0;
  bool close_pending = false;
  // Adapters sessions of this model run with (createSession { adapter }), by the folder's canonical path: each is read
  // once and shared by every session that names it (the sessions hold it too, so nothing is freed under them).
  std::map<std::string, std::shared_ptr<const moe::Adapter>> adapters;
  // Each token id's bytes (model.setTokenBytes), for constrained generation (params.constraint); null until set.
  std::shared_ptr<const moe::TokenBytes> token_bytes;
  void job_end() {
    if (--active_jobs == 0 && close_pending && model) { model->close(); }
  }
};

namespace moe_binding {
// Defines the NativeTrainer class (kept in the addon's instance data through a static reference).
void register_trainer(Napi::Env env, Napi::Object exports);
// model.createTrainer(config, { resume? }) (binding/trainer.cpp).
Napi::Value create_trainer(const Napi::CallbackInfo& info, std::shared_ptr<ModelHandle> handle);
}  // namespace moe_binding
