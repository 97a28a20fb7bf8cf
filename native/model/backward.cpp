// Training: one sequence forward with its LoRA, the loss over vocab chunks, and the backward in reverse layer order,
// every op through the backend. Gradient checkpointing: the forward keeps only each layer's input; the backward
// recomputes layer l's forward from it (saving what its backward needs in one LayerActs) and then runs the
// layer's backward. The base weights, routers, norms and embeddings are frozen: gradients flow through them
// (dx = dy·W, through the routing weights into the router logits and on through the router into h) but only the LoRA
// pairs receive gradients.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include "backend/backend.h"
#include "model/experts.h"
#include "model/model.h"
#include "model/rope.h"

namespace moe {

namespace {

void size_to(std::vector<float>& v, int64_t n) { v.assign(size_t(std::max<int64_t>(n, 1)), 0.0f); }
void size_to(std::vector<int32_t>& v, int64_t n) { v.assign(size_t(std::max<int64_t>(n, 1)), 0); }

int64_t max_rank(const Adapter& a) {
  int64_t r = 1;
  for (auto& L : a.layers) {
    for (const LoraPair* p : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.sh_gate, &L.sh_up, &L.sh_down}) r = std::max(r, p->r);
    for (auto& e : L.experts) for (const LoraPair* p : {&e.gate_up, &e.gate, &e.up, &e.down}) r = std::max(r, p->r);
  }
  return r;
}

// Vocabulary chunk: rows of logits computed at once, so [T, V] logits never exist (≤ 8 MiB of f32 per chunk).
int64_t ce_rows(int64_t V, int64_t T) { return std::clamp<int64_t>((int64_t(2) << 20) / std::max<int64_t>(V, 1), 1, T); }

}  // namespace

void Model::init_train(TrainState& ts, int64_t max_t, const Adapter& lora) const {
  const ModelSpec& S = spec_;
  if (max_t <= 0) throw std::invalid_argument("init_train: max_t must be positive");
  if (int64_t(lora.layers.size()) != S.num_layers)
    throw std::invalid_argument("the adapter has " + std::to_string(lora.layers.size()) + " layers, the model " + std::to_string(S.num_layers));
  const int64_t T = max_t, D = S.hidden, hd = S.head_dim, qd = S.num_heads * hd, kd = S.num_kv_heads * hd;
  int64_t I = S.intermediate, K = 1, E = 1;
  for (auto& l : S.layers) {
    I = std::max({I, l.expert_inter, l.shared_inter});
    K = std::max<int64_t>(K, l.top_k); E = std::max<int64_t>(E, l.num_experts);
  }
  const int64_t r = max_rank(lora), P = T * K;  // routed (token, slot) pairs
  ts.max_t = T;
  init_cache(ts.kv, T);
  if (ts.kv.type != KvType::F32) ts.kv.init(S.num_kv_slots, T, kd, int(hd), KvType::F32);  // training keeps an f32 cache
  init_scratch(ts.s, T, T);
  LayerActs& a = ts.acts;
  a.T = T;
  for (auto* v : {&a.x_in, &a.h1, &a.x_mid, &a.h2}) size_to(*v, T * D);
  for (auto* v : {&a.rstd1, &a.rstd2}) size_to(*v, T);
  for (auto* v : {&a.q0, &a.q1, &a.q3, &a.q4, &a.ao}) size_to(*v, T * qd);
  for (auto* v : {&a.k0, &a.k1, &a.k3, &a.v0}) size_to(*v, T * kd);
  for (auto* v : {&a.qn_rstd, &a.qa_rstd}) size_to(*v, T * S.num_heads);
  for (auto* v : {&a.kn_rstd, &a.ka_rstd}) size_to(*v, T * S.num_heads);
  size_to(a.att, T * S.num_heads * T);
  for (auto* v : {&a.g, &a.u, &a.a}) size_to(*v, P * I);
  size_to(a.probs, T * E); size_to(a.w, P); size_to(a.slot_w, P); size_to(a.y, P * D);
  size_to(a.idx, P); size_to(a.slot_tok, P); size_to(a.slot_pair, P); size_to(a.offsets, E + 1);
  for (auto* v : {&a.sg, &a.su, &a.sa}) size_to(*v, T * I);
  size_to(a.sy, T * D); size_to(a.sig, T);
  for (auto* v : {&a.lq, &a.lk, &a.lv, &a.lo, &a.lsg, &a.lsu, &a.lsd}) size_to(*v, T * r);
  for (auto* v : {&a.lgate, &a.lup, &a.ldown}) size_to(*v, P * r);
  ts.x_ckpt.assign(size_t(S.num_layers), std::vector<float>(size_t(T * D)));
  for (auto* v : {&ts.x_final, &ts.h_final, &ts.dx, &ts.dh, &ts.bD1, &ts.bD2}) size_to(*v, T * D);
  size_to(ts.dmid, T * std::max(D, qd));
  size_to(ts.rstd_final, T);
  size_to(ts.logits, ce_rows(S.vocab, T) * S.vocab);
  ts.dK.assign(size_t(S.num_kv_slots), std::vector<float>(size_t(T * kd)));
  ts.dV.assign(size_t(S.num_kv_slots), std::vector<float>(size_t(T * kd)));
  size_to(ts.bq, T * qd);
  size_to(ts.bI1, P * I); size_to(ts.bI2, P * I); size_to(ts.bE, P * D);
  size_to(ts.bdw, P); size_to(ts.bdl, T * E); size_to(ts.bsig, T);
  size_to(ts.bu, P * r); size_to(ts.bus, P * r);
}

// ---- LoRA backward ------------------------------------------------------------------------------------------------
// For y_rows = s·u·B[b0 : b0+n]ᵀ with u = x·Aᵀ:   dB[b0:] += s·dyᵀ·u ;  du (+)= s·dy·B[b0:]   (then A's part below)
void Model::lora_backward_B(const Tensor& dy, const LoraPair& p, int64_t b0, const float* u, LoraPair& gp, const Tensor& du,
                            bool accumulate_du, TrainState& ts) {
  const int64_t M = dy.rows(), n = dy.cols(), r = p.r;
  float* us = ts.bus.data();
  for (int64_t i = 0; i < M * r; ++i) us[i] = p.scale * u[i];
  backend_->matmul_dw(mat(gp.B.data() + b0 * r, n, r), dy, mat(us, M, r), true);
  // du (+)= s·(dy·B[b0:]): the form dx = dy·W with W = B[b0:] [n, r], into bu, then scaled into du
  float* tmp = ts.bu.data();
  backend_->matmul_dx(mat(tmp, M, r), dy, weight(p.B.data() + b0 * r, DType::F32, n, r), false);
  for (int64_t m = 0; m < M; ++m) {
    float* d = du.row(m);
    for (int64_t j = 0; j < r; ++j) d[j] = (accumulate_du ? d[j] : 0.0f) + p.scale * tmp[m * r + j];
  }
}

//   dA += duᵀ·x ;  dx += du·A
// With LoRA dropout (s.dropout_p > 0): x̃ = x ⊙ mask / (1 − p) (the forward's mask, regenerated):
//   dA += duᵀ·x̃ ;  dx += (du·A) ⊙ mask / (1 − p)
void Model::lora_backward_A(const Tensor& du, const Tensor& x, const LoraPair& p, LoraPair& gp, const Tensor& dx, Scratch& s) {
  Tensor holder;
  backend_->matmul_dw(mat(gp.A.data(), p.r, p.in), du, lora_input(x, p, s, holder), true);
  if (!(s.dropout_p > 0)) {
    backend_->matmul_dx(dx, du, weight(p.A.data(), DType::F32, p.r, p.in), true);
    return;
  }
  const int64_t M = du.rows(), K = p.in;
  if (int64_t(s.ldx.size()) < M * K) s.ldx.resize(size_t(M * K));
  backend_->matmul_dx(mat(s.ldx.data(), M, K), du, weight(p.A.data(), DType::F32, p.r, p.in), false);
  backend_->lora_dropout(dx, mat(s.ldx.data(), M, K), s.dropout_seed, p.id, s.dropout_p, true);
}

// y = x·Wᵀ (+ b) + LoRA:  dx (+)= dy·W (+ LoRA's part); LoRA gradients into gp.
void Model::linear_backward(const Tensor& dx, bool accumulate, const Tensor& dy, const Tensor& x, const Linear& W, const LoraPair* p,
                            LoraPair* gp, const float* u, TrainState& ts) {
  backend_->matmul_dx(dx, dy, W.t(), accumulate);
  if (!p || !p->present()) return;
  // du = s·dy·B into bu (bus holds s·u meanwhile), then A's part
  const int64_t M = dy.rows(), r = p->r;
  float* us = ts.bus.data();
  float* du = ts.bu.data();
  for (int64_t i = 0; i < M * r; ++i) us[i] = p->scale * u[i];
  backend_->matmul_dw(mat(gp->B.data(), p->out, r), dy, mat(us, M, r), true);
  backend_->matmul_dx(mat(du, M, r), dy, weight(p->B.data(), DType::F32, p->out, r), false);
  for (int64_t i = 0; i < M * r; ++i) du[i] *= p->scale;
  lora_backward_A(mat(du, M, r), x, *p, *gp, dx, ts.s);
}

// One SwiGLU site (dense MLP, one expert's rows, or the shared expert):
//   a = silu(g) ⊙ u,  y = a·Wdᵀ (+ LoRA)   with g = x·Wgᵀ (+ LoRA), u = x·Wuᵀ (+ LoRA)
void Model::mlp_site_backward(const MlpSite& m, LoraPair* g_gate_up, LoraPair* g_gate, LoraPair* g_up, LoraPair* g_down,
                              TrainState& ts, const Tensor& dy, const Tensor& x, const float* g, const float* u, const float* a,
                              const Tensor& dx, bool accumulate_dx) {
  const int64_t M = x.rows(), I = m.gate->out;
  const Tensor dA = mat(ts.bI1.data(), M, I), dU = mat(ts.bI2.data(), M, I);
  const Tensor A = mat(const_cast<float*>(a), M, I);
  // down: da = dy·Wd (+ LoRA)
  linear_backward(dA, false, dy, A, *m.down, m.ldown, g_down, m.save_down ? m.save_down->data() + m.row0 * (m.ldown ? m.ldown->r : 0) : nullptr, ts);
  // swiglu: dg (in place of da), du
  backend_->swiglu_backward(dA, dU, dA, mat(const_cast<float*>(g), M, I), mat(const_cast<float*>(u), M, I));
  const Tensor& dG = dA;
  backend_->matmul_dx(dx, dG, m.gate->t(), accumulate_dx);
  backend_->matmul_dx(dx, dU, m.up->t(), true);
  if (m.gate_up && m.gate_up->present()) {
    // fused pair: one u = x·Aᵀ feeds the gate rows [0, I) and the up rows [I, 2I) of B
    const float* ug = m.save_gate->data() + m.row0 * m.gate_up->r;
    const Tensor du = mat(ts.bE.data(), M, m.gate_up->r);  // bE is free here (expert outputs' gradient lives in bD*)
    lora_backward_B(dG, *m.gate_up, 0, ug, *g_gate_up, du, false, ts);
    lora_backward_B(dU, *m.gate_up, I, ug, *g_gate_up, du, true, ts);
    lora_backward_A(du, x, *m.gate_up, *g_gate_up, dx, ts.s);
  }
  if (m.lgate && m.lgate->present()) {
    const Tensor du = mat(ts.bE.data(), M, m.lgate->r);
    lora_backward_B(dG, *m.lgate, 0, m.save_gate->data() + m.row0 * m.lgate->r, *g_gate, du, false, ts);
    lora_backward_A(du, x, *m.lgate, *g_gate, dx, ts.s);
  }
  if (m.lup && m.lup->present()) {
    const Tensor du = mat(ts.bE.data(), M, m.lup->r);
    lora_backward_B(dU, *m.lup, 0, m.save_up->data() + m.row0 * m.lup->r, *g_up, du, false, ts);
    lora_backward_A(du, x, *m.lup, *g_up, dx, ts.s);
  }
}

void Model::layer_backward(int l, TrainState& ts, const LayerLora* lora, LayerLora* grads) {
  const ModelSpec& S = spec_;
  const LayerSpec& ls = S.layers[size_t(l)];
  const LayerWeights& L = layers_[size_t(l)];
  LayerActs& a = ts.acts;
  Backend& be = *backend_;
  const Tensor none;
  const int64_t T = a.T, D = S.hidden, hd = S.head_dim, Hq = S.num_heads, Hkv = S.num_kv_heads, qd = Hq * hd, kd = Hkv * hd;
  const Tensor dx = mat(ts.dx.data(), T, D);   // in: dL/d(layer output); out: dL/d(layer input)
  const Tensor dh = mat(ts.dh.data(), T, D);
  const Tensor h2 = mat(a.h2.data(), T, D), h1 = mat(a.h1.data(), T, D);
  const LayerLora* lz = lora;

  // ---- MLP: x_out = x_mid + mlp(h2),  h2 = rmsnorm(x_mid) ----
  if (!ls.moe) {
    MlpSite site{&L.gate, &L.up, &L.down, nullptr, lz ? &lz->gate : nullptr, lz ? &lz->up : nullptr, lz ? &lz->down : nullptr,
                 &a.lgate, &a.lup, &a.ldown, 0};
    mlp_site_backward(site, nullptr, grads ? &grads->gate : nullptr, grads ? &grads->up : nullptr, grads ? &grads->down : nullptr,
                      ts, dx, h2, a.g.data(), a.u.data(), a.a.data(), dh, false);
  } else {
    const int E = ls.num_experts, K = ls.top_k;
    const int64_t I = ls.expert_inter;
    be.zero(dh);
    const ExpertGroups grp{a.offsets.data(), a.slot_tok.data(), a.slot_w.data()};
    float* dslot_w = ts.bdw.data();
    for (int e = 0; e < E; ++e) {
      const int64_t m = grp.count(e), o0 = grp.offsets[e];
      if (m == 0) continue;
      const Tensor rows = ivec(grp.slot_tok + o0, m);
      const Tensor y = mat(a.y.data() + o0 * D, m, D);
      // dy_e[i] = w_i · dout[tok_i];  dw_i = dout[tok_i] · y_e[i]
      const Tensor gathered = mat(ts.bD1.data(), m, D), dy = mat(ts.bD2.data(), m, D), xe = mat(ts.s.gather.data(), m, D);
      be.gather_rows(gathered, dx, rows);
      be.zero(dy);
      be.scatter_add_rows(dy, gathered, Tensor{}, vec(grp.slot_w + o0, m));
      be.row_dots(vec(dslot_w + o0, m), dx, rows, y);
      be.gather_rows(xe, h2, rows);
      const ExpertWeights& ew = L.experts[size_t(e)];
      const ExpertLora* el = lz && !lz->experts.empty() ? &lz->experts[size_t(e)] : nullptr;
      ExpertLora* ge = grads && !grads->experts.empty() ? &grads->experts[size_t(e)] : nullptr;
      MlpSite site{&ew.gate, &ew.up, &ew.down, el ? &el->gate_up : nullptr, el ? &el->gate : nullptr, el ? &el->up : nullptr,
                   el ? &el->down : nullptr, &a.lgate, &a.lup, &a.ldown, o0};
      const Tensor dxe = mat(ts.dmid.data(), m, D);  // dmid is free until the MLP's norm backward
      mlp_site_backward(site, ge ? &ge->gate_up : nullptr, ge ? &ge->gate : nullptr, ge ? &ge->up : nullptr,
                        ge ? &ge->down : nullptr, ts, dy, xe, a.g.data() + o0 * I, a.u.data() + o0 * I, a.a.data() + o0 * I, dxe, false);
      be.scatter_add_rows(dh, dxe, rows, Tensor{});
    }
    // routing weights: dw [T, K] from the sorted pairs, then through the softmax/top-k into the router logits and on
    // through the frozen router into h2
    float* dw = ts.bdl.data();          // dlogits [T, E]
    std::vector<float>& dwv = ts.bus;   // dw [T, K] (bus is free between LoRA calls)
    for (int64_t i = 0; i < T * K; ++i) dwv[size_t(i)] = 0.0f;
    for (int64_t pos = 0; pos < T * K; ++pos) dwv[size_t(a.slot_pair[size_t(pos)])] = dslot_w[pos];
    be.moe_route_backward(mat(dw, T, E), mat(dwv.data(), T, K), ivec(a.idx.data(), T * K), mat(a.w.data(), T, K),
                          mat(a.probs.data(), T, E), ls.renorm_topk);
    be.matmul_dx(dh, mat(dw, T, E), L.router.t(), true);
    if (L.sh_gate.present()) {
      const Tensor sy = mat(a.sy.data(), T, D), dsy = mat(ts.bD2.data(), T, D);
      if (L.sh_expert_gate.present()) {
        // out += σ(h·w_g) ⊙ sy:  dσ_t = dout_t·sy_t;  dgl = dσ σ(1−σ);  dh += dgl·w_g;  dsy = σ ⊙ dout
        const Tensor dsig = mat(ts.bsig.data(), T, 1);
        be.row_dots(vec(ts.bsig.data(), T), dx, Tensor{}, sy);
        be.sigmoid_backward(dsig, mat(a.sig.data(), T, 1));
        be.matmul_dx(dh, dsig, L.sh_expert_gate.t(), true);
        be.zero(dsy);
        be.scatter_add_rows(dsy, dx, Tensor{}, vec(a.sig.data(), T));
      } else {
        be.copy(dsy, dx);
      }
      MlpSite site{&L.sh_gate, &L.sh_up, &L.sh_down, nullptr, lz ? &lz->sh_gate : nullptr, lz ? &lz->sh_up : nullptr,
                   lz ? &lz->sh_down : nullptr, &a.lsg, &a.lsu, &a.lsd, 0};
      mlp_site_backward(site, nullptr, grads ? &grads->sh_gate : nullptr, grads ? &grads->sh_up : nullptr,
                        grads ? &grads->sh_down : nullptr, ts, dsy, h2, a.sg.data(), a.su.data(), a.sa.data(), dh, true);
    }
  }
  // dx_mid = dx + rmsnorm_backward(dh)
  const Tensor dmid = mat(ts.dmid.data(), T, D);
  be.rmsnorm_backward(dmid, none, dh, mat(a.x_mid.data(), T, D), vec(L.post_norm.data(), D), mat(a.rstd2.data(), T, 1));
  be.add(dx, dmid);  // dx now holds dL/dx_mid

  // ---- attention: x_mid = x_in + o(attention(q4, K, V)) ----
  const Tensor dao = mat(ts.bq.data(), T, qd);
  linear_backward(dao, false, dx, mat(a.ao.data(), T, qd), L.o, lz ? &lz->o : nullptr, grads ? &grads->o : nullptr, a.lo.data(), ts);
  const size_t sl = size_t(ls.kv_slot);
  const Tensor Kc = mat3(ts.kv.k[sl].data(), T, Hkv, hd), Vc = mat3(ts.kv.v[sl].data(), T, Hkv, hd);
  const Tensor dq = mat(ts.dmid.data(), T, qd);  // dmid (sized for max(D, qd) columns) is free again
  const float scale = 1.0f / std::sqrt(float(hd));
  be.attention_backward(mat3(dq.f32(), T, Hq, hd), mat3(ts.dK[sl].data(), T, Hkv, hd), mat3(ts.dV[sl].data(), T, Hkv, hd),
                        mat3(dao.f32(), T, Hq, hd), mat3(a.q4.data(), T, Hq, hd), Kc, Vc, mat(a.att.data(), T * Hq, T), 0, scale);
  const Tensor cos = mat(ts.s.cos.data(), T, hd / 2), sin = mat(ts.s.sin.data(), T, hd / 2);
  const float eps = float(S.rms_eps);
  // q: q4 <- [after-RoPE norm (gain q_norm) and key gain] q3 <- rope q2 <- clamp q1 <- [before-RoPE norm] q0
  const Tensor dqh = mat(dq.f32(), T * Hq, hd);
  if (S.qk_norm == QkNorm::PerHeadAfterRope) {
    be.mul_cols(dqh, vec(L.k_norm.data(), hd));
    be.rmsnorm_backward(dqh, none, dqh, mat(a.q3.data(), T * Hq, hd), vec(L.q_norm.data(), hd), mat(a.qa_rstd.data(), T * Hq, 1));
  }
  be.rope_backward(mat3(dq.f32(), T, Hq, hd), cos, sin);
  if (S.clip_qkv > 0) be.clamp_backward(dq, mat(a.q1.data(), T, qd), float(S.clip_qkv));
  if (S.qk_norm == QkNorm::PerHeadBeforeRope)
    be.rmsnorm_backward(dqh, none, dqh, mat(a.q0.data(), T * Hq, hd), vec(L.q_norm.data(), hd), mat(a.qn_rstd.data(), T * Hq, 1));
  else if (S.qk_norm == QkNorm::FullBeforeRope)
    be.rmsnorm_backward(dq, none, dq, mat(a.q0.data(), T, qd), vec(L.q_norm.data(), qd), mat(a.qn_rstd.data(), T, 1));
  // dh1 = dq·Wq (+ LoRA) (+ k, v when this layer owns its KV slot: every CLA layer reading it came later, so the
  // slot's gradient is complete here)
  linear_backward(dh, false, dq, h1, L.q, lz ? &lz->q : nullptr, grads ? &grads->q : nullptr, a.lq.data(), ts);
  if (ls.has_kv) {
    const Tensor dk = mat(ts.dK[sl].data(), T, kd), dv = mat(ts.dV[sl].data(), T, kd), dkh = mat(ts.dK[sl].data(), T * Hkv, hd);
    if (S.qk_norm == QkNorm::PerHeadAfterRope)
      be.rmsnorm_backward(dkh, none, dkh, mat(a.k3.data(), T * Hkv, hd), none, mat(a.ka_rstd.data(), T * Hkv, 1));
    be.rope_backward(mat3(dk.f32(), T, Hkv, hd), cos, sin);
    if (S.clip_qkv > 0) {
      be.clamp_backward(dk, mat(a.k1.data(), T, kd), float(S.clip_qkv));
      be.clamp_backward(dv, mat(a.v0.data(), T, kd), float(S.clip_qkv));
    }
    if (S.qk_norm == QkNorm::PerHeadBeforeRope)
      be.rmsnorm_backward(dkh, none, dkh, mat(a.k0.data(), T * Hkv, hd), vec(L.k_norm.data(), hd), mat(a.kn_rstd.data(), T * Hkv, 1));
    else if (S.qk_norm == QkNorm::FullBeforeRope)
      be.rmsnorm_backward(dk, none, dk, mat(a.k0.data(), T, kd), vec(L.k_norm.data(), kd), mat(a.kn_rstd.data(), T, 1));
    linear_backward(dh, true, dk, h1, L.k, lz ? &lz->k : nullptr, grads ? &grads->k : nullptr, a.lk.data(), ts);
    linear_backward(dh, true, dv, h1, L.v, lz ? &lz->v : nullptr, grads ? &grads->v : nullptr, a.lv.data(), ts);
  }
  // dx_in = dx_mid + rmsnorm_backward(dh1)
  be.rmsnorm_backward(dmid, none, dh, mat(a.x_in.data(), T, D), vec(L.in_norm.data(), D), mat(a.rstd1.data(), T, 1));
  be.add(dx, dmid);
}

double Model::forward_backward(const int32_t* ids, const int32_t* targets, int64_t T, const Adapter& lora, Adapter& grads,
                               float loss_scale, TrainState& ts, int64_t* n_targets) {
  const ModelSpec& S = spec_;
  if (closed_) throw std::runtime_error("the model was closed");
  if (T <= 0 || T > ts.max_t)
    throw std::runtime_error("training sequence of " + std::to_string(T) + " tokens (this run holds at most " + std::to_string(ts.max_t) + ")");
  if (int64_t(lora.layers.size()) != S.num_layers || grads.layers.size() != lora.layers.size())
    throw std::runtime_error("the adapter was made for another model");
  const int64_t D = S.hidden, V = S.vocab, hd = S.head_dim;
  Backend& be = *backend_;
  Scratch& s = ts.s;
  rope_for(0, T, s);
  const Tensor cos = mat(s.cos.data(), T, hd / 2), sin = mat(s.sin.data(), T, hd / 2);
  const Tensor x = mat(s.x.data(), T, D);
  be.embedding(x, embed_.t(), ivec(ids, T));
  // forward, keeping each layer's input
  for (int l = 0; l < S.num_layers; ++l) {
    be.copy(mat(ts.x_ckpt[size_t(l)].data(), T, D), x);
    layer_forward(l, x, 0, ts.kv, s, cos, sin, nullptr, &lora.layers[size_t(l)]);
  }
  // loss over vocab chunks: logits_c = h_final[c]·W_lmᵀ -> dlogits in place -> dh_final[c] = dlogits·W_lm
  be.copy(mat(ts.x_final.data(), T, D), x);
  const Tensor hf = mat(ts.h_final.data(), T, D), dhf = mat(ts.dh.data(), T, D);
  be.rmsnorm(hf, x, vec(final_norm_.data(), D), float(S.rms_eps), mat(ts.rstd_final.data(), T, 1));
  int64_t counted = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] == -100) continue;
    if (targets[t] < 0 || targets[t] >= V)
      throw std::runtime_error("label " + std::to_string(targets[t]) + " at position " + std::to_string(t) + " is out of range [0, " + std::to_string(V) + ")");
    ++counted;
  }
  double loss = 0;
  const int64_t C = ce_rows(V, T);
  for (int64_t c0 = 0; c0 < T; c0 += C) {
    const int64_t n = std::min(C, T - c0);
    const Tensor lg = mat(ts.logits.data(), n, V);
    be.matmul(lg, hf.rows_view(c0, n), lm_head_.t(), false);
    loss += be.cross_entropy(lg, ivec(targets + c0, n), loss_scale);
    be.matmul_dx(dhf.rows_view(c0, n), lg, lm_head_.t(), false);
  }
  if (n_targets) *n_targets = counted;
  const Tensor dx = mat(ts.dx.data(), T, D);
  be.rmsnorm_backward(dx, Tensor{}, dhf, mat(ts.x_final.data(), T, D), vec(final_norm_.data(), D), mat(ts.rstd_final.data(), T, 1));
  for (auto& v : ts.dK) be.zero(vec(v.data(), int64_t(v.size())));
  for (auto& v : ts.dV) be.zero(vec(v.data(), int64_t(v.size())));
  // backward, recomputing each layer's forward from its input
  for (int l = S.num_layers - 1; l >= 0; --l) {
    be.copy(x, mat(ts.x_ckpt[size_t(l)].data(), T, D));
    ts.acts.T = T;
    layer_forward(l, x, 0, ts.kv, s, cos, sin, &ts.acts, &lora.layers[size_t(l)]);
    layer_backward(l, ts, &lora.layers[size_t(l)], &grads.layers[size_t(l)]);
  }
  return loss;
}

}  // namespace moe
