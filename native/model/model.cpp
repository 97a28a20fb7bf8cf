#include "model/model.h"
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <stdexcept>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#include "backend/backend.h"
#include "cpu/matmul.h"
#include "cpu/qmatmul.h"
#include "cuda/kernel_backend.h"
#include "format/json.h"
#include "format/names.h"
#include "model/experts.h"
#include "train/lora.h"
#include "model/rope.h"
#include "quant/quant.h"

namespace moe {

namespace fs = std::filesystem;

namespace {

struct Binder {
  const TensorStore& st;
  std::string dir;
  const TensorNames& N;

  const TensorView& get(const std::string& name) const {
    // a role the spec asks for but format/names.cpp's row for the family does not spell: a table bug, not the folder's
    if (name.empty()) throw std::logic_error("format/names: no tensor name for a weight " + N.spec().model_type + " needs");
    const TensorView* t = st.find(name);
    if (!t) throw std::runtime_error(name + ": missing (no such tensor in the safetensors of " + dir + ")");
    return *t;
  }
  bool has(const std::string& name) const { return st.find(name) != nullptr; }
  void check_shape(const TensorView& t, const std::vector<int64_t>& want) const {
    if (t.shape != want)
      throw std::runtime_error(t.name + " has shape " + shape_str(t.shape) + ", expected " + shape_str(want) + " (in " + *t.file + ")");
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16 && !is_quant(t.dtype))
      throw std::runtime_error(t.name + " has dtype " + dtype_name(t.dtype) + ", expected f32, f16, bf16, q8_0, q4_0 or q4_k (in " + *t.file + ")");
  }
  std::vector<float> vec(const std::string& name, int64_t n) const {
    const TensorView& t = get(name);
    check_shape(t, {n});
    std::vector<float> out(static_cast<size_t>(n));
    row_to_f32(out.data(), t.data, t.dtype, 0, n);
    return out;
  }
  // W[out, in] (+ its bias when the folder has one; `bias` "" for tensors without)
  Linear linear(const std::string& wn, const std::string& bias, int64_t out, int64_t in) const {
    const TensorView& t = get(wn);
    check_shape(t, {out, in});
    Linear l; l.w = t.data; l.dtype = t.dtype; l.out = out; l.in = in; l.name = wn;
    if (!bias.empty() && has(bias)) l.bias = vec(bias, out);
    return l;
  }
  // The weight of a role from the names table (format/names.h), with its bias when present.
  Linear linear(HubRole r, int layer, int64_t out, int64_t in, int expert = -1) const {
    return linear(N.name(r, layer, expert), N.name(r, layer, expert, ExpertForm::PerExpert, true), out, in);
  }
  std::vector<float> vec(HubRole r, int layer, int64_t n) const { return vec(N.name(r, layer), n); }
  // Slice `rows` rows starting at row0 of expert e of a stacked [E, R, C] tensor (zero copy).
  Linear stacked(const std::string& name, int64_t E, int64_t R, int64_t C, int64_t e, int64_t row0, int64_t rows) const {
    const TensorView& t = get(name);
    check_shape(t, {E, R, C});
    Linear l; l.dtype = t.dtype; l.out = rows; l.in = C;
    l.name = name + "[" + std::to_string(e) + "] rows " + std::to_string(row0) + ".." + std::to_string(row0 + rows);
    l.w = static_cast<const uint8_t*>(t.data) + size_t(e * R + row0) * dtype_row_bytes(t.dtype, C);
    return l;
  }
};

// Projections base_quant "nf4" quantizes, counted from the spec (for the progress total before anything is bound).
int count_projections(const ModelSpec& S) {
  int n = 0;
  for (const LayerSpec& ls : S.layers) {
    n += 2 + (ls.has_kv ? 2 : 0);
    n += ls.moe ? 3 * ls.num_experts + (ls.shared_inter > 0 ? 3 : 0) : 3;
  }
  return n;
}

// Progress over the shards (the store's callback) and then the quantized tensors, as one (done, total).
struct LoadTotals {
  LoadProgress outer;
  int extra = 0, shards = 0;
  static void on_shard(void* ctx, int done, int total) {
    auto* t = static_cast<LoadTotals*>(ctx);
    t->shards = total;
    if (t->outer.fn) t->outer.fn(t->outer.ctx, done, total + t->extra);
  }
};

// Drop a quantized tensor's source pages from this process once its NF4 copy exists (they stay in the page cache and
// fault back in if an export reads them): the f32/bf16 original would otherwise stay resident beside its NF4 copy.
void release_source(const void* p, size_t n) {
#if defined(__linux__)
  const uintptr_t ps = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + ps - 1) / ps * ps, e = (reinterpret_cast<uintptr_t>(p) + n) / ps * ps;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // whole pages inside the tensor only
#else
  (void)p; (void)n;
#endif
}

// Map every page of the weights in at load, when they fit in the memory the system has available (80% of
// /proc/meminfo's MemAvailable), as llama.cpp does (MAP_POPULATE): otherwise each page faults in the first time a
// token is routed to its expert, and with random routing that is spread over the first several prompts (q4_0
// test/bench model, 2 threads: prefill 609, 870, 988, 1157 tok/s in prompts 1-4 of one process, RSS still
// growing). The pages are the page cache's (shared, clean, reclaimable); a model bigger than that stays lazily
// mapped. MOE_MMAP_POPULATE=0 never populates, =1 always does.
void populate_weights(const TensorStore& store) {
#if defined(__linux__)
  const char* env = std::getenv("MOE_MMAP_POPULATE");
  if (env && std::strcmp(env, "0") == 0) return;
  uint64_t total = 0;
  for (const auto& f : store.files()) total += f->map().size();
  if (!(env && std::strcmp(env, "1") == 0)) {
    uint64_t avail_kb = 0;
    if (FILE* mi = std::fopen("/proc/meminfo", "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, mi))
        if (std::sscanf(line, "MemAvailable: %" SCNu64 " kB", &avail_kb) == 1) break;
      std::fclose(mi);
    }
    if (total / 1024 > avail_kb / 10 * 8) return;
  }
  const size_t ps = size_t(sysconf(_SC_PAGESIZE));
  for (const auto& f : store.files()) {
    const MappedFile& m = f->map();
    if (m.size() == 0) continue;
    // MADV_POPULATE_READ (Linux 5.14); older kernels: read one byte per page
    if (madvise(const_cast<uint8_t*>(m.data()), m.size(), 22 /* MADV_POPULATE_READ */) == 0) continue;
    volatile uint8_t sink = 0;
    for (size_t o = 0; o < m.size(); o += ps) sink = sink + m.data()[o];
  }
#else
  (void)store;
#endif
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& dir, int threads, LoadProgress progress, KvType kv,
                                   const std::string& base_quant, const std::string& device) {
  if (base_quant != "none" && base_quant != "nf4")
    throw std::invalid_argument("base_quant must be \"none\" or \"nf4\", not \"" + base_quant + "\"");
  const std::string dev = resolve_device(device);
  auto m = std::shared_ptr<Model>(new Model());
  m->kv_ = kv;
  m->base_quant_ = base_quant;
  fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::exists(cfg)) throw std::runtime_error(cfg.string() + ": missing (is " + dir + " a Hugging Face model folder?)");
  m->spec_ = parse_model_spec(json_parse_file(cfg.string()), cfg.string());
  m->eos_ids_ = m->spec_.eos_ids;
  fs::path gen = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen)) {
    for (int id : parse_generation_eos(json_parse_file(gen.string())))
      if (std::find(m->eos_ids_.begin(), m->eos_ids_.end(), id) == m->eos_ids_.end()) m->eos_ids_.push_back(id);
  }
  LoadTotals totals{progress, base_quant == "nf4" ? count_projections(m->spec_) : 0, 0};
  m->store_ = std::make_unique<TensorStore>(dir, progress.fn ? &LoadTotals::on_shard : nullptr, &totals);
  m->bind(dir);
  if (base_quant != "nf4") populate_weights(*m->store_);  // an NF4 base reads each source once and drops it
  m->pool_ = std::make_unique<ThreadPool>(threads);
  m->backend_ = make_backend(dev, m->pool_.get());
  if (base_quant == "nf4") m->quantize_base(progress, totals.shards, totals.shards + totals.extra);
  else if (dev == "cpu") m->pack_weights();
  return m;
}

uint8_t* PackArena::allocate(size_t n) {
  release();
#if defined(__linux__)
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("cannot allocate " + std::to_string(n >> 20) + " MiB for the packed weights");
  // A hint: without THP it is 4 KiB pages. Asked for before the writes, so the first touches fault huge pages in:
  // under THP defrag=madvise (the kernel's default) that may compact memory synchronously, and the Q4_0 bench
  // model's load takes 0.2-1.5 s from run to run (Zen 4). Asked for after the writes (khugepaged collapsing later)
  // the load held 0.33-0.44 s but steady decode lost ~10% (173-223 vs 197-251 tok/s in three A/B pairs), so decode wins.
  madvise(p, n, MADV_HUGEPAGE);
  mapped_ = true;
#else
  void* p = ::operator new(n, std::align_val_t(64));
  mapped_ = false;
#endif
  p_ = p;
  n_ = n;
  return static_cast<uint8_t*>(p);
}

void PackArena::release() {
  if (!p_) return;
#if defined(__linux__)
  if (mapped_) munmap(p_, n_);
#else
  ::operator delete(p_, std::align_val_t(64));
#endif
  p_ = nullptr;
  n_ = 0;
}

// Q4_0 / Q4_K / Q8_0 projections in the cpu kernels' load-time layout (cpu/qmatmul.h qpack; CPUs with AVX-512
// VNNI or AVX2): decode then takes the tile GEMM instead of the row dots, and prefill no longer repacks each
// expert's tiles per call. Each weight is packed on the pool into one arena and its mapped pages are dropped (they
// stay in the page cache), so the process holds one copy, the stored size; training's dX reads the packed copy too.
// The stored weight stays mapped for what reads it as stored (exports, f32 activations, another SIMD table or
// backend), faulting back in if it is read. MOE_QPACK=0: as stored.
void Model::pack_weights() {
  if (const char* env = std::getenv("MOE_QPACK"); env && std::strcmp(env, "0") == 0) return;
  std::vector<Linear*> ps = projections();
  // lm_head too (8000 x 1024 Q8_0 of the bench model: 0.149 -> 0.054 ms per token hot, 2 threads), unless it is the
  // embedding table, whose rows the embedding gather reads as stored
  if (lm_head_.present() && lm_head_.w != embed_.w) ps.push_back(&lm_head_);
  std::vector<size_t> at(ps.size());
  size_t total = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    at[i] = total;
    total += (qpack_bytes(ps[i]->dtype, ps[i]->out, ps[i]->in) + 63) / 64 * 64;
  }
  if (total == 0) return;
  uint8_t* arena = packed_.allocate(total);
  for (size_t i = 0; i < ps.size(); ++i) {
    Linear* l = ps[i];
    if (qpack_bytes(l->dtype, l->out, l->in) == 0) continue;
    qpack(pool_.get(), l->dtype, l->w, l->out, l->in, arena + at[i]);
    l->packed = arena + at[i];
    release_source(l->w, dtype_row_bytes(l->dtype, l->in) * size_t(l->out));
  }
}

std::vector<Linear*> Model::projections() {
  std::vector<Linear*> v;
  for (LayerWeights& L : layers_) {
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) if (l->present()) v.push_back(l);
    for (ExpertWeights& e : L.experts) for (Linear* l : {&e.gate, &e.up, &e.down}) v.push_back(l);
    for (Linear* l : {&L.sh_gate, &L.sh_up, &L.sh_down}) if (l->present()) v.push_back(l);
  }
  return v;
}

// Each projection on its own, exactly as bitsandbytes quantizes an nn.Linear weight W[out, in] (flattened row-major;
// a stacked expert's gate / up / down slice is that expert's hub-layout weight): rows streamed from the mapping in
// chunks of ~64K values (no f32 copy of the tensor), blocks quantized on the pool.
void Model::quantize_base(LoadProgress progress, int done0, int total) {
  const std::vector<Linear*> ps = projections();
  if (done0 + int(ps.size()) != total)
    throw std::logic_error("quantize_base: " + std::to_string(ps.size()) + " projections, " + std::to_string(total - done0) + " expected");
  nf4_.reserve(ps.size());
  int done = done0;
  for (Linear* l : ps) {
    if (l->dtype != DType::F32 && l->dtype != DType::F16 && l->dtype != DType::BF16)
      throw std::runtime_error(l->name + " is " + dtype_name(l->dtype) + ": an NF4 (Q-LoRA) base needs f32, f16 or bf16 weights (load the "
                               "original checkpoint, not a quantized one)");
    const size_t es = dtype_size(l->dtype), row = size_t(l->in) * es;
    const int64_t chunk = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, l->in));
    NF4Quantizer q(l->out, l->in);
    try {
      for (int64_t r = 0; r < l->out; r += chunk)
        q.add_rows(static_cast<const uint8_t*>(l->w) + size_t(r) * row, l->dtype, std::min(chunk, l->out - r), pool_.get());
    } catch (const std::exception& e) {
      throw std::runtime_error(l->name + ": " + e.what());
    }
    nf4_.push_back(std::make_unique<NF4Tensor>(q.finish()));
    l->nf4 = nf4_.back().get();
    release_source(l->w, size_t(l->out) * row);
    // sizes for info(): the NF4 copy replaces the stored bytes
    weight_bytes_ += int64_t(nf4_bytes(l->nf4->n)) - int64_t(size_t(l->out) * row);
    by_dtype_[l->dtype] -= l->out * l->in;
    by_dtype_[DType::NF4] += l->out * l->in;
    if (progress.fn) progress.fn(progress.ctx, ++done, total);
  }
  int64_t best = -1;
  for (auto& [dt, b] : by_dtype_) if (b > best) { best = b; bulk_dtype_ = dt; }
}

std::vector<std::pair<std::string, const NF4Tensor*>> Model::nf4_weights() const {
  std::vector<std::pair<std::string, const NF4Tensor*>> v;
  for (Linear* l : const_cast<Model*>(this)->projections()) if (l->nf4) v.emplace_back(l->name, l->nf4);
  return v;
}

void Model::bind(const std::string& dir) {
  const ModelSpec& S = spec_;
  const TensorNames N(S);
  Binder B{*store_, dir, N};
  const int64_t D = S.hidden, V = S.vocab, hd = S.head_dim, qd = int64_t(S.num_heads) * hd, kd = int64_t(S.num_kv_heads) * hd;
  using R = HubRole;
  embed_ = B.linear(N.name(R::Embedding), "", V, D);
  final_norm_ = B.vec(R::FinalNorm, -1, D);
  // tie_word_embeddings: the output projection is the embedding table (lm_head.weight may then be absent).
  lm_head_ = S.tie_embeddings ? embed_ : B.linear(R::LmHead, -1, V, D);
  layers_.resize(size_t(S.num_layers));
  route_stride_ = S.max_experts();  // make_unique<T[]> value-initialises: every counter starts at 0
  route_counts_ = std::make_unique<std::atomic<uint64_t>[]>(size_t(S.num_layers) * size_t(route_stride_));
  for (int i = 0; i < S.num_layers; ++i) {
    const LayerSpec& ls = S.layers[size_t(i)];
    LayerWeights& L = layers_[size_t(i)];
    L.in_norm = B.vec(R::InputNorm, i, D);
    L.post_norm = B.vec(R::PostAttnNorm, i, D);
    L.q = B.linear(R::Q, i, qd, D);
    if (ls.has_kv) { L.k = B.linear(R::K, i, kd, D); L.v = B.linear(R::V, i, kd, D); }
    L.o = B.linear(R::O, i, D, qd);
    switch (S.qk_norm) {
      case QkNorm::PerHeadBeforeRope: case QkNorm::PerHeadAfterRope: L.q_norm = B.vec(R::QNorm, i, hd); L.k_norm = B.vec(R::KNorm, i, hd); break;
      case QkNorm::FullBeforeRope: L.q_norm = B.vec(R::QNorm, i, qd); L.k_norm = B.vec(R::KNorm, i, kd); break;
      case QkNorm::None: break;
    }
    if (!ls.moe) {
      L.gate = B.linear(R::MlpGate, i, S.intermediate, D);
      L.up = B.linear(R::MlpUp, i, S.intermediate, D);
      L.down = B.linear(R::MlpDown, i, D, S.intermediate);
      continue;
    }
    // MoE: the hub's per-expert layout (Mixtral's block_sparse_moe.experts.e.w1/w3/w2, the others' mlp.experts.e.*_proj)
    // or transformers 5's stacked experts under mlp; the router and shared expert sit in the block of that form.
    const ExpertForm form = N.expert_form(i, [&](const std::string& n) { return B.has(n); });
    const int64_t E = ls.num_experts, I = ls.expert_inter;
    auto lin = [&](R r, int64_t out, int64_t in) {
      return B.linear(N.name(r, i, -1, form), N.name(r, i, -1, form, true), out, in);
    };
    L.router = lin(R::Router, E, D);
    L.experts.resize(size_t(E));
    const std::string gu = N.name(R::ExpertsGateUp, i, -1, form), g = N.name(R::ExpertsGate, i, -1, form),
                      u = N.name(R::ExpertsUp, i, -1, form), dn = N.name(R::ExpertsDown, i, -1, form);
    for (int64_t e = 0; e < E; ++e) {
      ExpertWeights& ew = L.experts[size_t(e)];
      if (form == ExpertForm::Fused) {           // [E, 2I, D] and [E, D, I]
        ew.gate = B.stacked(gu, E, 2 * I, D, e, 0, I);
        ew.up = B.stacked(gu, E, 2 * I, D, e, I, I);
        ew.down = B.stacked(dn, E, D, I, e, 0, D);
      } else if (form == ExpertForm::Stacked) {  // stacked but unfused: [E, I, D] x2, [E, D, I]
        ew.gate = B.stacked(g, E, I, D, e, 0, I);
        ew.up = B.stacked(u, E, I, D, e, 0, I);
        ew.down = B.stacked(dn, E, D, I, e, 0, D);
      } else {
        ew.gate = B.linear(R::ExpertGate, i, I, D, int(e));
        ew.up = B.linear(R::ExpertUp, i, I, D, int(e));
        ew.down = B.linear(R::ExpertDown, i, D, I, int(e));
      }
    }
    if (ls.shared_inter > 0) {
      L.sh_gate = lin(R::SharedGate, ls.shared_inter, D);
      L.sh_up = lin(R::SharedUp, ls.shared_inter, D);
      L.sh_down = lin(R::SharedDown, D, ls.shared_inter);
      if (S.shared == SharedExpert::SigmoidGated) L.sh_expert_gate = lin(R::SharedExpertGate, 1, D);
    }
  }
  // Sizes for info(): every parameter, those a token touches, and the bulk dtype.
  std::map<DType, int64_t>& by_dtype = by_dtype_;
  // (numel() of a quantized tensor is its logical element count, so parameter counts do not change with bits)
  for (auto& [n, t] : store_->all()) { params_total_ += t.numel(); weight_bytes_ += int64_t(t.nbytes); by_dtype[t.dtype] += t.numel(); }
  params_active_ = params_total_;
  for (auto& ls : S.layers)
    if (ls.moe) params_active_ -= int64_t(ls.num_experts - ls.top_k) * 3 * ls.expert_inter * D;
  int64_t best = -1;
  for (auto& [dt, b] : by_dtype) if (b > best) { best = b; bulk_dtype_ = dt; }
  inv_freq_.resize(size_t(hd / 2));
  rope_scaling_ = rope_inv_freq(S.rope, int(hd), S.max_position, S.max_position, inv_freq_.data());
}

void Model::init_cache(KvCache& kv, int64_t ctx) const {
  kv.init(spec_.num_kv_slots, ctx, int64_t(spec_.num_kv_heads) * spec_.head_dim, spec_.head_dim, kv_);
}

void Model::init_scratch(Scratch& s, int64_t max_t, int64_t ctx) const {
  const ModelSpec& S = spec_;
  const int64_t D = S.hidden, hd = S.head_dim, qd = S.num_heads * hd, kd = S.num_kv_heads * hd;
  int64_t inter = S.intermediate;
  for (auto& l : S.layers) inter = std::max({inter, l.expert_inter, l.shared_inter});
  const int64_t E = std::max(1, S.max_experts()), K = std::max(1, S.max_top_k());
  s.max_t = max_t;
  s.x.assign(size_t(max_t * D), 0); s.h.assign(size_t(max_t * D), 0);
  s.q.assign(size_t(max_t * qd), 0); s.k.assign(size_t(max_t * kd), 0); s.v.assign(size_t(max_t * kd), 0);
  s.att.assign(size_t(max_t * qd), 0); s.mlp_out.assign(size_t(max_t * D), 0);
  s.gate.assign(size_t(max_t * inter), 0); s.up.assign(size_t(max_t * inter), 0);
  s.router.assign(size_t(max_t * E), 0); s.probs.assign(size_t(max_t * E), 0);
  s.rw.assign(size_t(max_t * K), 0); s.ridx.assign(size_t(max_t * K), 0);
  s.offsets.assign(size_t(E + 1), 0);
  s.slot_tok.assign(size_t(max_t * K), 0); s.slot_w.assign(size_t(max_t * K), 0);
  s.gather.assign(size_t(max_t * D), 0); s.gout.assign(size_t(max_t * D), 0);
  s.cos.assign(size_t(max_t * hd / 2), 0); s.sin.assign(size_t(max_t * hd / 2), 0); s.inv_freq.assign(size_t(hd / 2), 0);
  s.scores.assign(size_t(backend_->scratch_rows() * ctx), 0); s.ctx = ctx;
  s.shg.assign(size_t(max_t), 0); s.last.assign(size_t(D), 0);
}

// y[M, out] = x[M, in] · Wᵀ (+ b)
void Model::linear(const Tensor& y, const Tensor& x, const Linear& l) {
  backend_->matmul(y, x, l.t(), false);
  if (!l.bias.empty()) backend_->add_bias(y, vec(l.bias.data(), l.out));
}

// y += s · (x·Aᵀ)·B_rowsᵀ for rows [b0, b0 + y.cols()) of B (all rows of a plain pair; the gate or up half of a fused
// gate_up pair). u = x·Aᵀ [M, r] is written to `u` (the caller's buffer: saved for backward, or scratch); when
// `u_ready`, u already holds it (the second half of a fused pair reuses the first's).
void Model::lora_add(const Tensor& y, const Tensor& x, const LoraPair& p, int64_t b0, float* u, bool u_ready, Scratch& s) {
  const int64_t M = x.rows(), r = p.r;
  Tensor holder;
  if (!u_ready) backend_->matmul(mat(u, M, r), lora_input(x, p, s, holder), weight(p.A.data(), DType::F32, r, p.in), false);
  if (int64_t(s.lus.size()) < M * r) s.lus.resize(size_t(M * r));  // grows to the largest call once, then reused
  for (int64_t i = 0; i < M * r; ++i) s.lus[size_t(i)] = p.scale * u[i];
  backend_->matmul(y, mat(s.lus.data(), M, r), weight(p.B.data() + b0 * r, DType::F32, y.cols(), r), true);
}

// Training with LoRA dropout: holder = x ⊙ mask / (1 − p) in s.ldrop (see Scratch); otherwise x itself.
const Tensor& Model::lora_input(const Tensor& x, const LoraPair& p, Scratch& s, Tensor& holder) {
  if (!(s.dropout_p > 0)) return x;
  const int64_t M = x.rows(), K = p.in;
  if (int64_t(s.ldrop.size()) < M * K) s.ldrop.resize(size_t(M * K));
  holder = mat(s.ldrop.data(), M, K);
  backend_->lora_dropout(holder, x, s.dropout_seed, p.id, s.dropout_p, false);
  return holder;
}

float* Model::lora_u(Scratch& s, std::vector<float>* saved, int64_t offset_rows, int64_t M, int64_t r) {
  if (saved) return saved->data() + offset_rows * r;
  if (int64_t(s.lu.size()) < M * r) s.lu.resize(size_t(M * r));
  return s.lu.data();
}

// SwiGLU MLP on M rows: out[M, D] = (silu(h·Wgᵀ) ⊙ (h·Wuᵀ)) · Wdᵀ, each projection with its LoRA when adapted.
// g, u, a: [M, I] buffers for the gate and up projections and the activation (a may alias g for inference).
void Model::swiglu_mlp(const MlpSite& m, Scratch& s, const Tensor& h, const Tensor& out, float* g, float* u, float* a) {
  const int64_t M = h.rows(), I = m.gate->out;
  const Tensor G = mat(g, M, I), U = mat(u, M, I), A = mat(a, M, I);
  backend_->matmul(G, h, m.gate->t(), false);
  backend_->matmul(U, h, m.up->t(), false);
  if (m.gate_up && m.gate_up->present()) {
    float* ug = lora_u(s, m.save_gate, m.row0, M, m.gate_up->r);
    lora_add(G, h, *m.gate_up, 0, ug, false, s);
    lora_add(U, h, *m.gate_up, I, ug, true, s);
  }
  if (m.lgate && m.lgate->present()) lora_add(G, h, *m.lgate, 0, lora_u(s, m.save_gate, m.row0, M, m.lgate->r), false, s);
  if (m.lup && m.lup->present()) lora_add(U, h, *m.lup, 0, lora_u(s, m.save_up, m.row0, M, m.lup->r), false, s);
  backend_->swiglu(A, G, U);
  backend_->matmul(out, A, m.down->t(), false);
  if (m.ldown && m.ldown->present()) lora_add(out, A, *m.ldown, 0, lora_u(s, m.save_down, m.row0, M, m.ldown->r), false, s);
}

// Inference over the routed pairs (no backward, no expert LoRA): the experts in batches of at most max_t pairs (the
// scratch's rows) and kBatch experts: the batch's rows gathered once, every gate and up projection of the batch in
// one matmul_batch, one SwiGLU over all its rows, every down projection in one matmul_batch, one scatter. The same
// products, sums and order as one expert at a time (out[t] gets its experts' terms in expert order), so the same
// bits; what changes is the number of parallel jobs: decode's top-k experts were 3k jobs of ~15 us each, each with
// a wake-up and a tail, and are 2.
void Model::moe_experts_batched(const LayerWeights& L, Scratch& s, const Tensor& h, const Tensor& out, const ExpertGroups& grp,
                                int E, int64_t I) {
  const int64_t D = spec_.hidden, cap = s.max_t;
  constexpr int kBatch = 64;
  Backend::MatmulJob gu[2 * kBatch], dn[kBatch];
  for (int e = 0; e < E;) {
    const int64_t p0 = grp.offsets[e];
    int e1 = e + 1, n = grp.count(e) > 0;  // an expert has at most T <= max_t pairs, so one always fits
    while (e1 < E && grp.offsets[e1 + 1] - p0 <= cap && n + (grp.count(e1) > 0) <= kBatch) n += grp.count(e1++) > 0;
    const int64_t P = grp.offsets[e1] - p0;
    if (P > 0) {
      const Tensor rows = ivec(grp.slot_tok + p0, P), X = mat(s.gather.data(), P, D), G = mat(s.gate.data(), P, I),
                   U = mat(s.up.data(), P, I), Y = mat(s.gout.data(), P, D);
      backend_->gather_rows(X, h, rows);
      int nj = 0, nd = 0;
      for (int x = e; x < e1; ++x) {
        const int64_t m = grp.count(x), o = grp.offsets[x] - p0;
        if (m == 0) continue;
        const ExpertWeights& ew = L.experts[size_t(x)];
        const Tensor xe = mat(X.f32() + o * D, m, D), ge = mat(G.f32() + o * I, m, I);
        gu[nj++] = {ge, xe, ew.gate.t(), false};
        gu[nj++] = {mat(U.f32() + o * I, m, I), xe, ew.up.t(), false};
        dn[nd++] = {mat(Y.f32() + o * D, m, D), ge, ew.down.t(), false};  // ge holds the SwiGLU by then
      }
      backend_->matmul_batch(gu, nj);
      backend_->swiglu(G, G, U);
      backend_->matmul_batch(dn, nd);
      backend_->scatter_add_rows(out, Y, rows, vec(grp.slot_w + p0, P));
    }
    e = e1;
  }
}

// Sparse MoE block. Tokens are grouped by expert so each expert's weights are streamed once per batch:
//   route: idx, w [T, k];  for each expert e with tokens S_e: Y = SwiGLU_e(h[S_e]) (one matmul with M = |S_e|);
//   out[t] += w[t, e] · Y[t]   (+ shared MLP, sigmoid-gated for qwen2_moe)
// With acts, the routing, the grouped pairs' projections and outputs, and the shared MLP's are kept for backward.
void Model::moe_block(int l, const LayerSpec& ls, const LayerWeights& L, Scratch& s, const Tensor& h, const Tensor& out,
                      LayerActs* acts, const LayerLora* lora) {
  const int64_t T = h.rows(), D = spec_.hidden;
  const int E = ls.num_experts, K = ls.top_k;
  const int64_t I = ls.expert_inter;
  int32_t* idx = acts ? acts->idx.data() : s.ridx.data();
  float* rw = acts ? acts->w.data() : s.rw.data();
  float* probs = acts ? acts->probs.data() : s.probs.data();
  int32_t* offsets = acts ? acts->offsets.data() : s.offsets.data();
  int32_t* slot_tok = acts ? acts->slot_tok.data() : s.slot_tok.data();
  float* slot_w = acts ? acts->slot_w.data() : s.slot_w.data();
  const Tensor logits = mat(s.router.data(), T, E), w = mat(rw, T, K);
  backend_->matmul(logits, h, L.router.t(), false);
  backend_->moe_route(ivec(idx, T * K), w, mat(probs, T, E), logits, ls.renorm_topk);
  backend_->moe_group(ivec(offsets, E + 1), ivec(slot_tok, T * K), vec(slot_w, T * K), acts ? ivec(acts->slot_pair.data(), T * K) : Tensor{},
                      ivec(idx, T * K), w, E);
  const ExpertGroups grp{offsets, slot_tok, slot_w};  // (read on the host: the per-expert row counts drive the loop below)
  if (!acts && s.count_routing) {  // telemetry (routing_counts): with acts this is backward's recompute
    std::atomic<uint64_t>* c = route_counts_.get() + int64_t(l) * route_stride_;
    for (int e = 0; e < E; ++e) if (grp.count(e)) c[e].fetch_add(uint64_t(grp.count(e)), std::memory_order_relaxed);
  }
  backend_->zero(out);
  if (!acts && !(lora && !lora->experts.empty())) moe_experts_batched(L, s, h, out, grp, E, I);
  else for (int e = 0; e < E; ++e) {
    const int64_t m = grp.count(e), o0 = grp.offsets[e];
    if (m == 0) continue;
    const Tensor rows = ivec(grp.slot_tok + o0, m), x = mat(s.gather.data(), m, D);
    const Tensor y = mat(acts ? acts->y.data() + o0 * D : s.gout.data(), m, D);
    backend_->gather_rows(x, h, rows);
    const ExpertWeights& ew = L.experts[size_t(e)];
    const ExpertLora* el = lora && !lora->experts.empty() ? &lora->experts[size_t(e)] : nullptr;
    MlpSite site{&ew.gate, &ew.up, &ew.down, el ? &el->gate_up : nullptr, el ? &el->gate : nullptr, el ? &el->up : nullptr,
                 el ? &el->down : nullptr, acts ? &acts->lgate : nullptr, acts ? &acts->lup : nullptr,
                 acts ? &acts->ldown : nullptr, o0};
    if (acts) swiglu_mlp(site, s, x, y, acts->g.data() + o0 * I, acts->u.data() + o0 * I, acts->a.data() + o0 * I);
    else swiglu_mlp(site, s, x, y, s.gate.data(), s.up.data(), s.gate.data());
    backend_->scatter_add_rows(out, y, rows, vec(grp.slot_w + o0, m));
  }
  if (L.sh_gate.present()) {
    const Tensor y = mat(acts ? acts->sy.data() : s.gout.data(), T, D);
    MlpSite site{&L.sh_gate, &L.sh_up, &L.sh_down, nullptr, lora ? &lora->sh_gate : nullptr, lora ? &lora->sh_up : nullptr,
                 lora ? &lora->sh_down : nullptr, acts ? &acts->lsg : nullptr, acts ? &acts->lsu : nullptr,
                 acts ? &acts->lsd : nullptr, 0};
    if (acts) swiglu_mlp(site, s, h, y, acts->sg.data(), acts->su.data(), acts->sa.data());
    else swiglu_mlp(site, s, h, y, s.gate.data(), s.up.data(), s.gate.data());
    if (L.sh_expert_gate.present()) {
      // out[t] += σ(h[t]·w_g) · y[t]
      float* sig = acts ? acts->sig.data() : s.shg.data();
      const Tensor gl = mat(sig, T, 1);
      backend_->matmul(gl, h, L.sh_expert_gate.t(), false);
      backend_->sigmoid(gl);
      backend_->scatter_add_rows(out, y, Tensor{}, vec(sig, T));
    } else {
      backend_->add(out, y);
    }
  }
}

namespace {
// Saves n floats of an activation for backward (training's acts), through the backend: its buffers may be a device's.
inline void keep(Backend& be, std::vector<float>& dst, const float* src, int64_t n) { be.copy(vec(dst.data(), n), vec(src, n)); }
}  // namespace

void Model::layer_forward(int l, const Tensor& x, int64_t pos0, KvCache& kv, Scratch& s, const Tensor& cos, const Tensor& sin,
                          LayerActs* acts, const LayerLora* lora) {
  const ModelSpec& S = spec_;
  const LayerSpec& ls = S.layers[size_t(l)];
  const LayerWeights& L = layers_[size_t(l)];
  const int64_t T = x.rows(), D = S.hidden, hd = S.head_dim, Hq = S.num_heads, Hkv = S.num_kv_heads;
  const int64_t qd = Hq * hd, kd = Hkv * hd;
  const float eps = float(S.rms_eps);
  Backend& be = *backend_;
  const Tensor none;
  const Tensor h = mat(s.h.data(), T, D), mlp_out = mat(s.mlp_out.data(), T, D);
  const Tensor q = mat(s.q.data(), T, qd), k = mat(s.k.data(), T, kd), v = mat(s.v.data(), T, kd);
  const Tensor q3 = mat3(s.q.data(), T, Hq, hd), k3 = mat3(s.k.data(), T, Hkv, hd), att = mat3(s.att.data(), T, Hq, hd);
  const Tensor qh = mat(s.q.data(), T * Hq, hd), kh = mat(s.k.data(), T * Hkv, hd);  // one row per head
  const Tensor scores = mat(s.scores.data(), be.scratch_rows(), s.ctx);
  const float scale = 1.0f / std::sqrt(float(hd));
  auto rstd = [&](std::vector<float>& v) { return acts ? mat(v.data(), int64_t(v.size()), 1) : none; };
  // ---- attention ----
  if (acts) keep(be, acts->x_in, x.f32(), T * D);
  be.rmsnorm(h, x, vec(L.in_norm.data(), D), eps, rstd(acts ? acts->rstd1 : s.last));
  if (acts) keep(be, acts->h1, h.f32(), T * D);
  // q, k and v read the same h: one matmul_batch (one parallel job and one quantisation of h on the cpu backend)
  if (ls.has_kv) {
    const Backend::MatmulJob qkv[3] = {{q, h, L.q.t(), false}, {k, h, L.k.t(), false}, {v, h, L.v.t(), false}};
    be.matmul_batch(qkv, 3);
    for (auto [y, l] : {std::pair{&q, &L.q}, {&k, &L.k}, {&v, &L.v}})
      if (!l->bias.empty()) be.add_bias(*y, vec(l->bias.data(), l->out));
  } else {
    linear(q, h, L.q);
  }
  if (lora && lora->q.present()) lora_add(q, h, lora->q, 0, lora_u(s, acts ? &acts->lq : nullptr, 0, T, lora->q.r), false, s);
  if (ls.has_kv) {
    if (lora && lora->k.present()) lora_add(k, h, lora->k, 0, lora_u(s, acts ? &acts->lk : nullptr, 0, T, lora->k.r), false, s);
    if (lora && lora->v.present()) lora_add(v, h, lora->v, 0, lora_u(s, acts ? &acts->lv : nullptr, 0, T, lora->v.r), false, s);
  }
  if (acts) { keep(be, acts->q0, q.f32(), T * qd); if (ls.has_kv) { keep(be, acts->k0, k.f32(), T * kd); keep(be, acts->v0, v.f32(), T * kd); } }
  switch (S.qk_norm) {
    case QkNorm::PerHeadBeforeRope:
      be.rmsnorm(qh, qh, vec(L.q_norm.data(), hd), eps, acts ? mat(acts->qn_rstd.data(), T * Hq, 1) : none);
      if (ls.has_kv) be.rmsnorm(kh, kh, vec(L.k_norm.data(), hd), eps, acts ? mat(acts->kn_rstd.data(), T * Hkv, 1) : none);
      break;
    case QkNorm::FullBeforeRope:
      be.rmsnorm(q, q, vec(L.q_norm.data(), qd), eps, acts ? mat(acts->qn_rstd.data(), T, 1) : none);
      if (ls.has_kv) be.rmsnorm(k, k, vec(L.k_norm.data(), kd), eps, acts ? mat(acts->kn_rstd.data(), T, 1) : none);
      break;
    default: break;
  }
  if (acts) { keep(be, acts->q1, q.f32(), T * qd); if (ls.has_kv) keep(be, acts->k1, k.f32(), T * kd); }
  if (S.clip_qkv > 0) {  // olmoe: q, k after their norms and v, clamped before RoPE
    be.clamp(q, float(S.clip_qkv));
    if (ls.has_kv) { be.clamp(k, float(S.clip_qkv)); be.clamp(v, float(S.clip_qkv)); }
  }
  be.rope(q3, cos, sin);
  if (ls.has_kv) be.rope(k3, cos, sin);
  if (acts) { keep(be, acts->q3, q.f32(), T * qd); if (ls.has_kv) keep(be, acts->k3, k.f32(), T * kd); }
  if (S.qk_norm == QkNorm::PerHeadAfterRope) {
    // k_n = g_k ⊙ rope(k)/rms(k), so q·k_n = (q ⊙ g_k)·(rope(k)/rms(k)). The cache keeps the gain-free
    // rope(k)/rms(k) (rotation preserves rms), and each layer folds its own key gain g_k into q. This is what
    // lets CLA layers share one cache entry: they reuse the raw k/v of their group's first layer, rotate them
    // identically, and differ only in g_k.
    be.rmsnorm(qh, qh, vec(L.q_norm.data(), hd), eps, acts ? mat(acts->qa_rstd.data(), T * Hq, 1) : none);
    be.mul_cols(qh, vec(L.k_norm.data(), hd));
    if (ls.has_kv) be.rmsnorm(kh, kh, none, eps, acts ? mat(acts->ka_rstd.data(), T * Hkv, 1) : none);
  }
  if (acts) keep(be, acts->q4, q.f32(), T * qd);  // (k's final form is in the cache)
  const size_t sl = size_t(ls.kv_slot);
  const int64_t n_ctx = kv.ctx;
  if (kv.type == KvType::F16) {
    if (acts) throw std::runtime_error("training needs the f32 KV cache");
    if (ls.has_kv) {
      be.copy(f16_rows(kv.k16[sl].data() + pos0 * kd, T, kd), k);  // rounded to nearest even
      be.copy(f16_rows(kv.v16[sl].data() + pos0 * kd, T, kd), v);
    }
    be.attention(att, q3, f16_cache(kv.k16[sl].data(), n_ctx, Hkv, hd), f16_cache(kv.v16[sl].data(), n_ctx, Hkv, hd), pos0, scale,
                 none, scores);
  } else if (kv.type == KvType::F32) {
    const Tensor Kc = mat3(kv.k[sl].data(), n_ctx, Hkv, hd), Vc = mat3(kv.v[sl].data(), n_ctx, Hkv, hd);
    if (ls.has_kv) {
      be.copy(mat(kv.k[sl].data() + pos0 * kd, T, kd), k);
      be.copy(mat(kv.v[sl].data() + pos0 * kd, T, kd), v);
    }
    be.attention(att, q3, Kc, Vc, pos0, scale, acts ? mat(acts->att.data(), T * Hq, pos0 + T) : none, scores);
  } else {
    if (acts) throw std::runtime_error("training needs the f32 KV cache");
    if (ls.has_kv) {
      be.kv_quantize(int8_rows(kv.k8[sl].data() + pos0 * kd, T * Hkv, hd), mat(kv.ks[sl].data() + pos0 * Hkv, T * Hkv, 1), kh);
      be.kv_quantize(int8_rows(kv.v8[sl].data() + pos0 * kd, T * Hkv, hd), mat(kv.vs[sl].data() + pos0 * Hkv, T * Hkv, 1),
                     mat(s.v.data(), T * Hkv, hd));
    }
    be.attention_kv8(att, q3, int8_cache(kv.k8[sl].data(), n_ctx, Hkv, hd), mat(kv.ks[sl].data(), n_ctx, Hkv),
                     int8_cache(kv.v8[sl].data(), n_ctx, Hkv, hd), mat(kv.vs[sl].data(), n_ctx, Hkv), pos0, scale, scores);
  }
  const Tensor ao = mat(s.att.data(), T, qd);
  if (acts) keep(be, acts->ao, ao.f32(), T * qd);
  linear(mlp_out, ao, L.o);
  if (lora && lora->o.present()) lora_add(mlp_out, ao, lora->o, 0, lora_u(s, acts ? &acts->lo : nullptr, 0, T, lora->o.r), false, s);
  be.add(x, mlp_out);
  // ---- MLP / MoE ----
  if (acts) keep(be, acts->x_mid, x.f32(), T * D);
  be.rmsnorm(h, x, vec(L.post_norm.data(), D), eps, rstd(acts ? acts->rstd2 : s.last));
  if (acts) keep(be, acts->h2, h.f32(), T * D);
  if (ls.moe) {
    moe_block(l, ls, L, s, h, mlp_out, acts, lora);
  } else {
    MlpSite site{&L.gate, &L.up, &L.down, nullptr, lora ? &lora->gate : nullptr, lora ? &lora->up : nullptr,
                 lora ? &lora->down : nullptr, acts ? &acts->lgate : nullptr, acts ? &acts->lup : nullptr,
                 acts ? &acts->ldown : nullptr, 0};
    if (acts) swiglu_mlp(site, s, h, mlp_out, acts->g.data(), acts->u.data(), acts->a.data());
    else swiglu_mlp(site, s, h, mlp_out, s.gate.data(), s.up.data(), s.gate.data());
  }
  be.add(x, mlp_out);
}

std::vector<uint64_t> Model::routing_counts(bool reset) {
  const size_t n = size_t(spec_.num_layers) * size_t(route_stride_);
  std::vector<uint64_t> out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = reset ? route_counts_[i].exchange(0, std::memory_order_relaxed) : route_counts_[i].load(std::memory_order_relaxed);
  return out;
}

void Model::rope_for(int64_t pos0, int64_t T, Scratch& s) const {
  const ModelSpec& S = spec_;
  const int64_t hd = S.head_dim;
  // RoPE tables for these positions (dynamic NTK recomputes inv_freq once the sequence outgrows max_position).
  const float* inv = inv_freq_.data();
  float rscale = rope_scaling_;
  if (S.rope.type == "dynamic" && pos0 + T > S.max_position) {
    rscale = rope_inv_freq(S.rope, int(hd), S.max_position, pos0 + T, s.inv_freq.data());
    inv = s.inv_freq.data();
  }
  rope_tables(inv, rscale, int(hd), pos0, T, s.cos.data(), s.sin.data());
}

void Model::check_forward(int64_t T, int64_t pos0, const KvCache& kv, const Scratch& s) const {
  if (closed_) throw std::runtime_error("the model was closed");
  if (T <= 0) throw std::runtime_error("forward: no tokens");
  if (T > s.max_t) throw std::runtime_error("forward: " + std::to_string(T) + " tokens exceed the scratch size " + std::to_string(s.max_t));
  if (pos0 + T > kv.ctx) throw std::runtime_error("prompt has " + std::to_string(pos0 + T) + " tokens but the context is " + std::to_string(kv.ctx));
}

void Model::forward(const int32_t* ids, int64_t T, int64_t pos0, KvCache& kv, Scratch& s, float* logits, bool all_logits,
                    const Adapter* lora) {
  check_forward(T, pos0, kv, s);
  const ModelSpec& S = spec_;
  const int64_t D = S.hidden, V = S.vocab, hd = S.head_dim;
  if (!lora) lora = adapter_.get();
  if (lora && int64_t(lora->layers.size()) != S.num_layers) throw std::runtime_error("the adapter was made for another model");
  rope_for(pos0, T, s);
  const Tensor cos = mat(s.cos.data(), T, hd / 2), sin = mat(s.sin.data(), T, hd / 2);
  const Tensor x = mat(s.x.data(), T, D), h = mat(s.h.data(), T, D);
  backend_->embedding(x, embed_.t(), ivec(ids, T));
  for (int l = 0; l < S.num_layers; ++l) layer_forward(l, x, pos0, kv, s, cos, sin, nullptr, lora ? &lora->layers[size_t(l)] : nullptr);
  // logits = rmsnorm(x)·w_final · W_lmᵀ, for every position or only the last
  const Tensor xs = all_logits ? x : x.rows_view(T - 1, 1), hs = all_logits ? h : mat(s.last.data(), 1, D);
  backend_->rmsnorm(hs, xs, vec(final_norm_.data(), D), float(S.rms_eps), Tensor{});
  backend_->matmul(mat(logits, hs.rows(), V), hs, lm_head_.t(), false);
}

void Model::close() {
  closed_ = true;
  layers_.clear();
  nf4_.clear();
  packed_.release();
  store_.reset();
}

}  // namespace moe
