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
#include "format/safetensors.h"
#include "model/model.h"
#include "quant/quant.h"
#if defined(__linux__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace moe {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

enum class Role { Linear, Embedding, Float };

Role role_of(const TensorView& t) {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) return Role::Float;
  if (t.shape.size() < 2) return Role::Float;  // norms, biases, scalars
  const std::string& n = t.name;
  if (n.find("embed_tokens") != std::string::npos || n.rfind("lm_head", 0) == 0) return Role::Embedding;
  // routers: [E, D] gates whose outputs pick experts
  for (const char* r : {".mlp.gate.weight", ".block_sparse_moe.gate.weight", ".gate.wg.weight", ".router.weight",
                        "shared_expert_gate.weight", ".mlp.gate.wg"})
    if (ends_with(n, r)) return Role::Float;
  return Role::Linear;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += char(c); }
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += char(c);
  }
  return o + "\"";
}

const char* st_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32"; case DType::F16: return "F16"; case DType::BF16: return "BF16";
    case DType::I32: return "I32"; case DType::I64: return "I64"; case DType::I8: return "I8";
    case DType::BOOL: return "BOOL"; default: return "U8";
  }
}

// A file written with checked writes; the env hook simulates a full disk.
class Out {
 public:
  Out(const std::string& path, uint64_t* written_total) : path_(path), total_(written_total) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
    if (const char* e = std::getenv("MOE_QUANT_FAIL_AFTER_BYTES"); e && *e) fail_after_ = std::strtoull(e, nullptr, 10);
  }
  ~Out() { if (f_) std::fclose(f_); }
  void write(const void* p, size_t n) {
    if (fail_after_ != UINT64_MAX && *total_ + n > fail_after_)
      throw std::runtime_error(path_ + ": write failed: No space left on device (injected by MOE_QUANT_FAIL_AFTER_BYTES=" +
                               std::to_string(fail_after_) + ")");
    if (n && std::fwrite(p, 1, n, f_) != n) throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
    *total_ += n;
  }
  void close() {
    if (std::fflush(f_) != 0) throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
#if defined(__linux__) || defined(__APPLE__)
    if (::fsync(fileno(f_)) != 0) throw std::runtime_error(path_ + ": fsync failed: " + std::strerror(errno));
#endif
    int rc = std::fclose(f_); f_ = nullptr;
    if (rc != 0) throw std::runtime_error(path_ + ": close failed: " + std::strerror(errno));
  }
 private:
  std::string path_;
  FILE* f_ = nullptr;
  uint64_t* total_;
  uint64_t fail_after_ = UINT64_MAX;
};

// Drop a finished tensor's source pages from this process (they stay in the page cache).
void release_pages(const MappedFile& map, const void* p, uint64_t n) {
#if defined(__linux__)
  const long ps = sysconf(_SC_PAGESIZE);
  uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  b = b / uintptr_t(ps) * uintptr_t(ps);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(map.data());
  if (b < lo) b = lo;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
#else
  (void)map; (void)p; (void)n;
#endif
}

struct Plan { const TensorView* t; DType out; bool quant; uint64_t nbytes; std::vector<int64_t> disk_shape; };

}  // namespace

QuantizeReport quantize_model(const std::string& src_dir, const std::string& out_dir, const QuantizeOptions& opt,
                              QuantizeProgress progress, const std::atomic<bool>& cancel) {
  if (!is_quant(opt.format)) throw std::invalid_argument(std::string("unsupported quantization format '") + dtype_name(opt.format) + "'");
  DType emb = DType::F32;
  const bool emb_keep = opt.embeddings == "keep";
  if (!emb_keep) emb = qtype_from_name(opt.embeddings);
  if (!fs::is_directory(out_dir)) throw std::runtime_error(out_dir + ": not a directory");
  // The source is checked the way generate checks it before a byte is written: config.json against
  // format/limits.h, every safetensors header (sizes, offsets, overlaps, shard names), and every weight the
  // architecture needs bound with the engine's own shape rules (Model::load's binder, one thread, no session).
  // A folder the engine could not run is refused here rather than quantized into one it cannot run either.
  const std::shared_ptr<Model> model = Model::load(src_dir, 1);
  const TensorStore& store = model->store();
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
      const Role r = role_of(t);
      DType want = r == Role::Linear ? opt.format : r == Role::Embedding && !emb_keep ? emb : t.dtype;
      if (is_quant(want)) {
        const int64_t K = t.shape.back();
        DType got = want;
        if (K % qblock_size(got) != 0 && got == DType::Q4_K) got = DType::Q4_0;
        if (K % qblock_size(got) != 0) got = t.dtype;
        if (got != want) rep.fallbacks.push_back({t.name, dtype_name(got)});
        want = got;
      }
      if (is_quant(want)) {
        const int64_t K = t.shape.back();
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
    std::string h = "{\"__metadata__\":{";
    bool first = true;
    auto meta = [&](const std::string& k, const std::string& v) { h += (first ? "" : ",") + json_str(k) + ":" + json_str(v); first = false; };
    for (auto& [k, v] : f->metadata()) if (k.rfind(kQuantMetaPrefix, 0) != 0) meta(k, v);
    meta("quantized_by", "moe-studio");
    for (auto& p : plan) if (p.quant) meta(std::string(kQuantMetaPrefix) + p.t->name, dtype_name(p.out));
    h += "}";
    uint64_t off = 0;
    for (auto& p : plan) {
      h += "," + json_str(p.t->name) + ":{\"dtype\":\"" + st_dtype(p.quant ? DType::U8 : p.t->dtype) + "\",\"shape\":[";
      for (size_t i = 0; i < p.disk_shape.size(); ++i) h += (i ? "," : "") + std::to_string(p.disk_shape[i]);
      h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + p.nbytes) + "]}";
      off += p.nbytes;
      weight_map.push_back({p.t->name, fname});
    }
    h += "}";
    while ((8 + h.size()) % 8) h += ' ';  // data section 8-byte aligned (spaces are valid JSON whitespace)
    Out out((fs::path(out_dir) / fname).string(), &written);
    uint8_t len[8];
    for (int k = 0; k < 8; ++k) len[k] = uint8_t((uint64_t(h.size()) >> (8 * k)) & 0xff);
    out.write(len, 8);
    out.write(h.data(), h.size());
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
    std::string j = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) + ", \"quantized_by\": \"moe-studio\"},\n  \"weight_map\": {";
    std::sort(weight_map.begin(), weight_map.end());
    for (size_t i = 0; i < weight_map.size(); ++i)
      j += std::string(i ? "," : "") + "\n    " + json_str(weight_map[i].first) + ": " + json_str(weight_map[i].second);
    j += "\n  }\n}\n";
    Out out((fs::path(out_dir) / "model.safetensors.index.json").string(), &written);
    out.write(j.data(), j.size());
    out.close();
    rep.files.push_back("model.safetensors.index.json");
  }
  return rep;
}

}  // namespace moe
