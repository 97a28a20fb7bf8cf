// What the addon's files share: a model handle (main-thread only) and the trainer binding's entry points.
#pragma once
#define NAPI_CPP_EXCEPTIONS
#include <napi.h>
#include <memory>
#include "model/model.h"

// Shared by a model object, its sessions and trainers (main-thread only): running jobs and a deferred close.
struct ModelHandle {
  std::shared_ptr<moe::Model> model;
  int active_jobs = 0;
  bool close_pending = false;
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
