#include "quant/writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "format/json.h"
#include "format/names.h"
#include "format/safetensors.h"
#include "format/safetensors_writer.h"
#include "model/model.h"
#include "quant/plan.h"
#include "quant/quant.h"

namespace moe {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

enum class Role { Linear, Embedding, Float };

Role role_of(const TensorView& t, const TensorNames& names) {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) return Role::Float;
  if (t.shape.size() < 2) return Role::Float;  // norms, biases, scalars
  const HubRole r = names.classify(t.name).role;
  if (r == HubRole::Embedding || r == HubRole::LmHead) return Role::Embedding;
  // routers (format/names.h): [E, D] gates whose outputs pick experts, and qwen2_moe's shared-expert gate
  if (r == HubRole::Router || r == HubRole::SharedExpertGate) return Role::Float;
  return Role::Linear;
}

// role_of's answer in the shared rule's terms (quant/plan.h). Role::Float is every tensor kept float by name or shape:
// of those, a float tensor of rank >= 2 can only be a router (the names table's); the rest are 1-D gains or biases
// (or integer data, which the rule never converts).
TensorRole plan_role(const TensorView& t, Role r, const TensorNames& names) {
  if (r == Role::Linear) return TensorRole::Weight;
  if (r == Role::Embedding) return names.classify(t.name).role == HubRole::LmHead ? TensorRole::Output : TensorRole::Embedding;
  if (t.shape.size() >= 2 && (t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16)) return TensorRole::Router;
  return ends_with(t.name, ".bias") ? TensorRole::Bias : TensorRole::Norm;
}

struct Plan { const TensorView* t; DType out; bool quant; uint64_t nbytes; std::vector<int64_t> disk_shape; };

}  // namespace

QuantizeReport quantize_model(const std::string& src_dir, const std::string& out_dir, const QuantizeOptions& opt,
                              QuantizeProgress progress, const std::atomic<bool>& cancel) {
  if (!is_quant(opt.format)) throw std::invalid_argument(std::string("unsupported quantization format '") + dtype_name(opt.format) + "'");
  StorageTarget target;
  target.container = Container::Folder;
  target.format = opt.format;
  target.keep_embeddings = opt.embeddings == "keep";
  if (!target.keep_embeddings) target.embeddings = qtype_from_name(opt.embeddings);
  if (!fs::is_directory(out_dir)) throw std::runtime_error(out_dir + ": not a directory");
  // The source is checked the way generate checks it before a byte is written: config.json against
  // format/limits.h, every safetensors header (sizes, offsets, overlaps, shard names), and every weight the
  // architecture needs bound with the engine's own shape rules (Model::load's binder, one thread, no session).
  // A folder the engine could not run is refused here rather than quantized into one it cannot run either.
  const std::shared_ptr<Model> model = Model::load(src_dir, 1);
  const TensorStore& store = model->store();
  const TensorNames names(model->spec());
  QuantizeReport rep;
  for (auto& f : store.files())
    for (auto& t : f->tensors()) {
      if (is_quant(t.dtype))
        throw std::runtime_error(*t.file + ": tensor " + t.name + " is already quantized (" + dtype_name(t.dtype) +
                                 "): quantize the original float model instead");
      rep.bytes_in += t.nbytes;
    }
  ThreadPool pool(opt.threads);
  uint64_t written = 0, done = 0;
  std::vector<float> fbuf;
  std::vector<uint8_t> qbuf;
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (auto& f : store.files()) {
    const std::string fname = fs::path(f->path()).filename().string();
    // plan every tensor of this shard
    std::vector<Plan> plan;
    for (auto& t : f->tensors()) {
      Plan p{&t, t.dtype, false, t.nbytes, t.shape};
      // the one storage rule (quant/plan.h), shared with the GGUF exporter
      const TensorRole role = plan_role(t, role_of(t, names), names);
      const int rank = int(t.shape.size());
      const int64_t K = rank ? t.shape.back() : 1;
      const DType wanted = wanted_type(target, role, rank, t.dtype);
      DType want = storage_type(target, role, rank, K, t.dtype);
      if (is_quant(wanted) && want != wanted) rep.fallbacks.push_back({t.name, dtype_name(want)});
      if (is_quant(want)) {
        p.out = want; p.quant = true;
        p.nbytes = uint64_t(t.numel() / K) * dtype_row_bytes(want, K);
        p.disk_shape.back() = int64_t(dtype_row_bytes(want, K));
      } else if (rep.fallbacks.empty() || rep.fallbacks.back().name != t.name) {
        rep.not_quantized.push_back(t.name);  // float by rule (router, norm, bias, 1-D, kept embedding)
      }
      rep.tensors.push_back({t.name, dtype_name(p.out)});
      rep.params += t.numel();
      plan.push_back(std::move(p));
    }
    // header: tensors in source order, data packed back to back
    std::vector<std::pair<std::string, std::string>> meta;
    for (auto& [k, v] : f->metadata()) if (k.rfind(kQuantMetaPrefix, 0) != 0) meta.push_back({k, v});
    meta.push_back({"quantized_by", "moe-studio"});
    for (auto& p : plan) if (p.quant) meta.push_back({std::string(kQuantMetaPrefix) + p.t->name, dtype_name(p.out)});
    std::vector<StEntry> entries;
    uint64_t off = 0;
    for (auto& p : plan) {
      entries.push_back({p.t->name, p.quant ? DType::U8 : p.t->dtype, p.disk_shape, p.nbytes});
      off += p.nbytes;
      weight_map.push_back({p.t->name, fname});
    }
    const std::string h = safetensors_header(entries, meta);
    CheckedFile out((fs::path(out_dir) / fname).string(), &written, "MOE_QUANT_FAIL_AFTER_BYTES");
    out.write_header(h);
    for (auto& p : plan) {
      const TensorView& t = *p.t;
      if (cancel.load()) throw std::runtime_error("cancelled");
      if (!p.quant) {
        const uint8_t* src = static_cast<const uint8_t*>(t.data);
        for (uint64_t o = 0; o < t.nbytes; o += (8u << 20)) out.write(src + o, std::min<uint64_t>(8u << 20, t.nbytes - o));
      } else {
        const int64_t K = t.shape.back(), rows = t.numel() / K;
        const int64_t chunk = std::max<int64_t>(1, (int64_t(2) << 20) / K);  // ~8 MiB of f32 per chunk
        const size_t rb = dtype_row_bytes(p.out, K);
        fbuf.resize(size_t(std::min(chunk, rows) * K));
        qbuf.resize(size_t(std::min(chunk, rows)) * rb);
        for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
          if (cancel.load()) throw std::runtime_error("cancelled");
          const int64_t nr = std::min(chunk, rows - r0);
          for (int64_t r = 0; r < nr; ++r) row_to_f32(fbuf.data() + r * K, t.data, t.dtype, r0 + r, K);
          quantize_tensor(p.out, fbuf.data(), qbuf.data(), nr * K, &pool);
          out.write(qbuf.data(), size_t(nr) * rb);
        }
      }
      release_pages(f->map(), t.data, t.nbytes);
      done += t.nbytes;
      if (progress.fn) progress.fn(progress.ctx, int64_t(done), int64_t(rep.bytes_in), t.name);
    }
    out.close();
    rep.bytes_out += 8 + h.size() + off;
    rep.files.push_back(fname);
  }
  // sharded source: the index, same weight_map, new total size
  const fs::path index = fs::path(src_dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    uint64_t total = 0;
    for (auto& f : rep.files) total += fs::file_size(fs::path(out_dir) / f);
    const std::string j = safetensors_index_json("\"total_size\": " + std::to_string(total) + ", \"quantized_by\": \"moe-studio\"", weight_map);
    CheckedFile out((fs::path(out_dir) / "model.safetensors.index.json").string(), &written, "MOE_QUANT_FAIL_AFTER_BYTES");
    out.write(j.data(), j.size());
    out.close();
    rep.files.push_back("model.safetensors.index.json");
  }
  return rep;
}

}  // namespace moe
