#include "io/merge.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "format/names.h"
#include "format/safetensors.h"
#include "format/safetensors_writer.h"
#include "io/adapter.h"
#include "model/model.h"
#include "quant/quant.h"

namespace moe {

namespace fs = std::filesystem;

float f64_to_f32_round_odd(double d) {
  if (!std::isfinite(d)) return float(d);
  float f = float(d);                                                  // nearest
  if (double(f) == d) return f;
  if (std::fabs(double(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);  // toward zero (truncated)
  if (std::isinf(f)) return f;
  uint32_t u; std::memcpy(&u, &f, 4);
  u |= 1u;                                                             // inexact: odd
  std::memcpy(&f, &u, 4);
  return f;
}

namespace {

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// One adapter pair's rows [b0, b0 + rows) folded into an output tensor.
struct Add { const LoraPair* p; int64_t b0; };

// One output tensor: `rows` rows of length K starting at row `row0` of the source tensor.
struct Item {
  std::string name;
  const TensorView* src = nullptr;
  const SafeTensorsFile* file = nullptr;
  std::vector<int64_t> shape;
  int64_t row0 = 0, rows = 0, K = 0;
  DType out = DType::F32;
  std::vector<Add> adds;
  bool last_of_src = true;  // the source's pages can be dropped after this one
  uint64_t nbytes() const { return uint64_t(rows) * uint64_t(K) * dtype_size(out); }
};

struct Planner {
  const ModelSpec& S;
  Adapter& A;
  std::set<std::pair<const LoraPair*, int64_t>> used;

  void add(Item& it, const LoraPair& p, int64_t b0) {
    if (!p.present()) return;
    if (p.in != it.K || b0 + it.rows > p.out)
      throw std::runtime_error(it.name + ": the adapter's pair [out " + std::to_string(p.out) + ", in " + std::to_string(p.in) +
                               "] does not fit the weight " + shape_str(it.shape));
    if (!used.insert({&p, b0}).second) throw std::runtime_error(it.name + ": an adapter pair would be merged twice");
    it.adds.push_back({&p, b0});
  }
  LayerLora* layer(int l) { return l >= 0 && size_t(l) < A.layers.size() ? &A.layers[size_t(l)] : nullptr; }
  ExpertLora* expert(int l, int64_t e) {
    LayerLora* L = layer(l);
    return L && e >= 0 && size_t(e) < L->experts.size() ? &L->experts[size_t(e)] : nullptr;
  }
  // kind: 0 gate, 1 up, 2 down
  void expert_adds(Item& it, int l, int64_t e, int kind) {
    ExpertLora* x = expert(l, e);
    if (!x) return;
    const int64_t I = S.layers[size_t(l)].expert_inter;
    if (kind == 0) { add(it, x->gate_up, 0); add(it, x->gate, 0); }
    if (kind == 1) { add(it, x->gate_up, I); add(it, x->up, 0); }
    if (kind == 2) add(it, x->down, 0);
  }
};


}  // namespace

MergeReport merge_adapter(const std::string& src_dir, const std::string& adapter_dir, const std::string& out_dir,
                          const MergeOptions& opt, MergeProgress progress, const std::atomic<bool>& cancel) {
  if (!is_float(opt.dtype)) throw std::invalid_argument(std::string("unsupported output dtype '") + dtype_name(opt.dtype) + "' (f32, f16 or bf16)");
  if (opt.max_shard_bytes == 0) throw std::invalid_argument("max_shard_bytes must be > 0");
  if (!fs::is_directory(out_dir)) throw std::runtime_error(out_dir + ": not a directory");
  // Validated as generate loads it (config, headers, every weight bound with the engine's shape rules), and the
  // adapter as --adapter loads it: nothing is written for a pair the engine could not run.
  const std::shared_ptr<Model> model = Model::load(src_dir, 1);
  const ModelSpec& S = model->spec();
  const TensorStore& store = model->store();
  for (auto& f : store.files())
    for (auto& t : f->tensors())
      if (is_quant(t.dtype))
        throw std::runtime_error(*t.file + ": tensor " + t.name + " is quantized (" + dtype_name(t.dtype) +
                                 "): merge the adapter into the original float checkpoint instead");
  Adapter adapter = load_adapter(adapter_dir, S, src_dir);
  const TensorNames N(S);

  // ---- plan: every output tensor, its source rows and the pairs it gets ----
  Planner P{S, adapter, {}};
  MergeReport rep;
  std::vector<Item> items;
  using R = HubRole;
  for (auto& f : store.files())
    for (auto& t : f->tensors()) {
      rep.bytes_in += t.nbytes;
      rep.params += t.numel();
      Item it;
      it.name = t.name; it.src = &t; it.file = f.get(); it.shape = t.shape;
      it.K = t.shape.empty() ? 1 : t.shape.back();
      it.rows = it.K > 0 ? t.numel() / it.K : 0;
      it.out = is_float(t.dtype) ? opt.dtype : t.dtype;
      // Every tensor is written under its hub name (format/names.h): a transformers-5 Mixtral's mlp.gate becomes the
      // hub's block_sparse_moe.gate, fused experts become per-expert tensors; names the table does not know pass as they are.
      const TensorRef ref = N.classify(t.name);
      if (!ref.known() || ref.layer < 0) { items.push_back(std::move(it)); continue; }
      const int l = ref.layer;
      if (ref.role == R::ExpertsGateUp || ref.role == R::ExpertsGate || ref.role == R::ExpertsUp || ref.role == R::ExpertsDown) {
        if (t.shape.size() != 3) throw std::runtime_error(t.name + " has shape " + shape_str(t.shape) + ", expected [experts, rows, cols] (in " + *t.file + ")");
        const int64_t E = t.shape[0], Rw = t.shape[1], C = t.shape[2];
        const int64_t I = S.layers[size_t(l)].expert_inter;
        // (kind, row offset inside the expert's block, rows)
        std::vector<std::tuple<int, int64_t, int64_t>> parts;
        if (ref.role == R::ExpertsGateUp) parts = {{0, 0, I}, {1, I, Rw - I}};
        else parts = {{ref.role == R::ExpertsGate ? 0 : ref.role == R::ExpertsUp ? 1 : 2, 0, Rw}};
        static const R per[3] = {R::ExpertGate, R::ExpertUp, R::ExpertDown};
        for (int64_t e = 0; e < E; ++e)
          for (auto& [k, r0, nr] : parts) {
            Item s;
            s.name = N.name(per[k], l, int(e));
            if (s.name.empty()) throw std::runtime_error(t.name + " has " + std::to_string(E) + " experts, the config " + std::to_string(S.layers[size_t(l)].num_experts) + " (in " + *t.file + ")");
            s.src = &t; s.file = f.get(); s.shape = {nr, C}; s.K = C; s.rows = nr; s.row0 = e * Rw + r0;
            s.out = it.out; s.last_of_src = false;
            P.expert_adds(s, l, e, k);
            items.push_back(std::move(s));
          }
        items.back().last_of_src = true;
        continue;
      }
      it.name = N.name(ref.role, l, ref.expert, ExpertForm::PerExpert, ref.bias);
      LayerLora* L = P.layer(l);
      if (!ref.bias) {
        switch (ref.role) {
          case R::Q: if (L) P.add(it, L->q, 0); break;
          case R::K: if (L) P.add(it, L->k, 0); break;
          case R::V: if (L) P.add(it, L->v, 0); break;
          case R::O: if (L) P.add(it, L->o, 0); break;
          case R::MlpGate: if (L) P.add(it, L->gate, 0); break;
          case R::MlpUp: if (L) P.add(it, L->up, 0); break;
          case R::MlpDown: if (L) P.add(it, L->down, 0); break;
          case R::SharedGate: if (L) P.add(it, L->sh_gate, 0); break;
          case R::SharedUp: if (L) P.add(it, L->sh_up, 0); break;
          case R::SharedDown: if (L) P.add(it, L->sh_down, 0); break;
          case R::ExpertGate: P.expert_adds(it, l, ref.expert, 0); break;
          case R::ExpertUp: P.expert_adds(it, l, ref.expert, 1); break;
          case R::ExpertDown: P.expert_adds(it, l, ref.expert, 2); break;
          default: break;
        }
      }
      items.push_back(std::move(it));
    }
  // every present pair must have landed on a weight (a fused gate_up pair on both halves)
  adapter.for_each([&](const std::string& site, LoraPair& p) {
    if (!p.present()) return;
    bool ok = P.used.count({&p, 0}) > 0;
    if (site.size() > 8 && site.compare(site.size() - 8, 8, ".gate_up") == 0) {
      const int l = std::stoi(site.substr(7));
      ok = ok && P.used.count({&p, S.layers[size_t(l)].expert_inter}) > 0;
    }
    if (!ok) throw std::runtime_error(adapter_dir + ": the adapter's pair " + site + " adapts no weight of " + src_dir + " (nothing was written)");
  });
  {
    std::set<std::string> seen;
    for (auto& it : items)
      if (!seen.insert(it.name).second) throw std::runtime_error(src_dir + ": tensor " + it.name + " would be written twice (the folder holds both layouts?)");
  }
  for (auto& it : items) rep.merged_pairs += int64_t(it.adds.size());

  // ---- shards, as save_pretrained cuts them ----
  std::vector<std::vector<size_t>> shards;
  uint64_t cur = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const uint64_t n = items[i].nbytes();
    if (shards.empty() || (cur > 0 && cur + n > opt.max_shard_bytes)) { shards.emplace_back(); cur = 0; }
    shards.back().push_back(i);
    cur += n;
  }
  if (shards.empty()) shards.emplace_back();
  auto shard_name = [&](size_t s) {
    if (shards.size() == 1) return std::string("model.safetensors");
    char b[64];
    std::snprintf(b, sizeof b, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    return std::string(b);
  };

  // ---- write ----
  uint64_t written = 0;
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::vector<float> fbuf;
  ThreadPool pool(opt.threads);
  std::vector<std::vector<double>> accs(size_t(pool.size()));
  std::vector<uint8_t> obuf;
  int64_t done = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string fname = shard_name(s);
    std::vector<StEntry> entries;
    for (size_t i : shards[s]) {
      entries.push_back({items[i].name, items[i].out, items[i].shape, items[i].nbytes()});
      weight_map.push_back({items[i].name, fname});
    }
    CheckedFile out((fs::path(out_dir) / fname).string(), &written, "MOE_EXPORT_FAIL_AFTER_BYTES");
    out.write_header(safetensors_header(entries, {{"format", "pt"}}));
    for (size_t i : shards[s]) {
      const Item& it = items[i];
      const TensorView& t = *it.src;
      if (cancel.load()) throw std::runtime_error("cancelled");
      const size_t osz = dtype_size(it.out);
      if (!is_float(t.dtype) || (t.dtype == it.out && it.adds.empty())) {
        // unchanged bytes (integer tensors; float ones already in the output dtype)
        const size_t rb = size_t(it.K) * dtype_size(t.dtype);
        const uint8_t* src = static_cast<const uint8_t*>(t.data) + size_t(it.row0) * rb;
        const uint64_t n = uint64_t(it.rows) * rb;
        for (uint64_t o = 0; o < n; o += (8u << 20)) out.write(src + o, std::min<uint64_t>(8u << 20, n - o));
      } else {
        const int64_t K = it.K;
        const int64_t chunk = std::max<int64_t>(1, (int64_t(2) << 20) / std::max<int64_t>(1, K));  // ~8 MiB of f32
        const int64_t cr = std::min(chunk, it.rows);
        fbuf.resize(size_t(cr * K));
        obuf.resize(size_t(cr * K) * osz);
        for (int64_t r0 = 0; r0 < it.rows; r0 += chunk) {
          if (cancel.load()) throw std::runtime_error("cancelled");
          const int64_t nr = std::min(chunk, it.rows - r0);
          for (int64_t r = 0; r < nr; ++r) row_to_f32(fbuf.data() + r * K, t.data, t.dtype, it.row0 + r0 + r, K);
          std::atomic<int64_t> bad_row{-1}, f16_overflow_row{-1};
          pool.run(nr, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, K)), [&](int64_t rb, int64_t re, int ti) {
            std::vector<double>& acc = accs[size_t(ti)];
            if (!it.adds.empty() && int64_t(acc.size()) < K) acc.resize(size_t(K));
            for (int64_t r = rb; r < re; ++r) {
              float* w = fbuf.data() + r * K;
              uint8_t* o = obuf.data() + size_t(r * K) * osz;
              if (it.adds.empty()) {
                if (it.out == DType::F32) std::memcpy(o, w, size_t(K) * 4);
                else if (it.out == DType::BF16) for (int64_t i = 0; i < K; ++i) { uint16_t h = f32_to_bf16(w[i]); std::memcpy(o + 2 * i, &h, 2); }
                else for (int64_t i = 0; i < K; ++i) {
                  const uint16_t h = f32_to_f16(w[i]);
                  if ((h & 0x7c00u) == 0x7c00u && std::isfinite(w[i])) f16_overflow_row = r0 + r;
                  std::memcpy(o + 2 * i, &h, 2);
                }
                continue;
              }
              for (int64_t i = 0; i < K; ++i) acc[size_t(i)] = double(w[i]);
              for (const Add& a : it.adds) {
                const LoraPair& p = *a.p;
                const float* B = p.B.data() + size_t(a.b0 + r0 + r) * size_t(p.r);
                for (int64_t k = 0; k < p.r; ++k) {
                  const double c = double(p.scale) * double(B[k]);
                  if (c == 0.0) continue;
                  const float* Ak = p.A.data() + size_t(k) * size_t(p.in);
                  for (int64_t i = 0; i < K; ++i) acc[size_t(i)] += c * double(Ak[i]);
                }
              }
              for (int64_t i = 0; i < K; ++i)
                if (!std::isfinite(acc[size_t(i)])) { bad_row = r0 + r; break; }
              if (it.out == DType::F32) for (int64_t i = 0; i < K; ++i) { float v = float(acc[size_t(i)]); std::memcpy(o + 4 * i, &v, 4); }
              else if (it.out == DType::BF16) for (int64_t i = 0; i < K; ++i) { uint16_t h = f32_to_bf16(f64_to_f32_round_odd(acc[size_t(i)])); std::memcpy(o + 2 * i, &h, 2); }
              else for (int64_t i = 0; i < K; ++i) {
                const uint16_t h = f32_to_f16(f64_to_f32_round_odd(acc[size_t(i)]));
                if ((h & 0x7c00u) == 0x7c00u && std::isfinite(acc[size_t(i)])) f16_overflow_row = r0 + r;
                std::memcpy(o + 2 * i, &h, 2);
              }
            }
          });
          if (bad_row.load() >= 0)
            throw std::runtime_error(it.name + ": the merged weight is not finite in row " + std::to_string(bad_row.load()) +
                                     " (the base or the adapter holds values too large for their sum)");
          if (f16_overflow_row.load() >= 0)
            throw std::runtime_error(it.name + ": row " + std::to_string(f16_overflow_row.load()) +
                                     " holds a value beyond fp16's range (|x| > 65504): export as bf16 or fp32");
          out.write(obuf.data(), size_t(nr * K) * osz);
        }
      }
      if (it.last_of_src) release_pages(it.file->map(), t.data, t.nbytes);
      rep.tensors.push_back({it.name, t.name, it.shape, !it.adds.empty()});
      rep.bytes_out += it.nbytes();
      ++done;
      if (progress.fn) progress.fn(progress.ctx, done, int64_t(items.size()), it.name);
    }
    out.close();
    rep.files.push_back(fname);
  }
  if (shards.size() > 1) {
    const std::string j = safetensors_index_json("\"total_size\": " + std::to_string(rep.bytes_out), weight_map);
    CheckedFile out((fs::path(out_dir) / "model.safetensors.index.json").string(), &written, "MOE_EXPORT_FAIL_AFTER_BYTES");
    out.write(j.data(), j.size());
    out.close();
    rep.files.push_back("model.safetensors.index.json");
  }
  return rep;
}

}  // namespace moe
