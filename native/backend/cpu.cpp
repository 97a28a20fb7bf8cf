// The cpu backend: the ops with a multi-threaded / SIMD path on the host. Every other op is RefBackend's scalar
// code (the op is cheap beside the matmuls around it, or memory-bound either way):
//   fast here: matmul (cpu/matmul.cpp + cpu/qmatmul.cpp, every ISA; NF4: cpu/nf4_matmul.cpp), matmul_batch, matmul_dx
//              (cpu/nf4_matmul.cpp, every weight dtype), matmul_dw, swiglu, attention and
//              attention_kv8 (cpu/attention.cpp), attention_backward, cross_entropy
//   from ref:  add_bias, rmsnorm(+backward), swiglu_backward, add, mul_cols, clamp(+backward), rope(+backward),
//              moe_route(+backward), gather_rows, scatter_add_rows, row_dots, embedding, adamw
// Parallel loops split work by output rows, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>
#include "backend/ref.h"
#include "cpu/attention.h"
#include "cpu/matmul.h"
#include "cpu/nf4_matmul.h"
#include "cpu/qmatmul.h"
#include "cpu/thread_pool.h"
#include "cuda/kernel_backend.h"
#include "quant/nf4.h"
#include "quant/quant.h"

namespace moe {

namespace {

// f32 [d2, d1, hd] with its d1 rows (heads) packed: the layout the attention kernels index.
bool heads_packed(const Tensor& t, int64_t hd) { return t.ne[0] == hd && t.nb[1] == 4 * hd; }

// A per-thread f32 buffer that grows to the largest size asked for and is then reused (no allocation once warm).
float* thread_buffer(int64_t n) {
  thread_local std::vector<float> buf;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

class CpuBackend final : public RefBackend {
 public:
  explicit CpuBackend(ThreadPool& pool) : pool_(pool) {}
  const char* name() const override { return "cpu"; }
  int scratch_rows() const override { return pool_.size(); }

  void matmul(const Tensor& y, const Tensor& x, const Tensor& W, bool accumulate) override {
    check_cols("matmul", x, W.cols()); check_cols("matmul", y, W.rows()); check_rows("matmul", y, x.rows());
    if (W.type == DType::NF4) { nf4_matmul(&pool_, y.f32(), y.ld(), x.f32(), x.ld(), nf4_of("matmul", W), x.rows(), accumulate); return; }
    if (is_quant(W.type)) {
      qmatmul(&pool_, y.f32(), y.ld(), x.f32(), x.ld(), W.data, W.type, x.rows(), W.rows(), W.cols(), accumulate, W.packed);
      return;
    }
    moe::matmul(pool_, y.f32(), y.ld(), x.f32(), x.ld(), W.data, W.type, x.rows(), W.rows(), W.cols(), accumulate);
  }

  // Fewer parallel jobs for several products (cpu/matmul.h matmul_batch); NF4 weights one by one.
  void matmul_batch(const MatmulJob* jobs, int n) override {
    constexpr int kMax = 64;
    moe::MatmulJob b[kMax];
    int nb = 0;
    for (int i = 0; i < n; ++i) {
      const MatmulJob& j = jobs[i];
      if (j.W.type == DType::NF4) { matmul(j.y, j.x, j.W, j.accumulate); continue; }
      check_cols("matmul", j.x, j.W.cols()); check_cols("matmul", j.y, j.W.rows()); check_rows("matmul", j.y, j.x.rows());
      b[nb++] = {j.y.f32(), j.y.ld(), j.x.f32(), j.x.ld(), j.W.data, j.W.type, j.x.rows(), j.W.rows(), j.W.cols(), j.accumulate,
                 j.W.packed};
      if (nb == kMax) { moe::matmul_batch(pool_, b, nb); nb = 0; }
    }
    if (nb) moe::matmul_batch(pool_, b, nb);
  }

  // dx[M, K] (+)= dy[M, N] · W[N, K] (cpu/nf4_matmul.h): threads own column chunks of dx and walk all of W in
  // f32 tiles (the register-blocked kernel for M >= 4, an axpy per row below). Each element's sum runs over n in the
  // same order whatever the chunking (chunks are multiples of the SIMD width, the tail is always dx's last columns),
  // so the bits do not depend on the thread count (test_backend_ops checks 1, 2 and 3 threads).
  void matmul_dx(const Tensor& dx, const Tensor& dy, const Tensor& W, bool accumulate) override {
    check_cols("matmul_dx", dy, W.rows()); check_cols("matmul_dx", dx, W.cols()); check_rows("matmul_dx", dx, dy.rows());
    if (W.type == DType::NF4) {
      nf4_matmul_dx(&pool_, dx.f32(), dx.ld(), dy.f32(), dy.ld(), nf4_of("matmul_dx", W), dy.rows(), accumulate);
      return;
    }
    if (W.nb[1] != int64_t(dtype_row_bytes(W.type, W.cols())))
      throw std::invalid_argument("matmul_dx: weight rows must be contiguous (" + shape_of(W) + ")");
    // a packed weight (Linear::packed, Model::pack_weights) is read packed: its stored pages stay dropped
    moe::matmul_dx(&pool_, dx.f32(), dx.ld(), dy.f32(), dy.ld(), W.data, W.type, dy.rows(), W.rows(), W.cols(), accumulate,
                   is_quant(W.type) ? W.packed : nullptr);
  }

  // dW[N, K] (+)= dyᵀ · x = Σ_m dy[m, :]ᵀ x[m, :]: a contraction over the rows m of both operands. It runs as the
  // input-gradient kernel (dX = dY·W, contraction over W's rows; cpu/nf4_matmul.h), with an f32 "weight" whose
  // rows are the m rows of x or dy, so only the small side is transposed:
  //   dW = dyᵀ · x            dY' = dyᵀ [N, M], W' = x [M, K]       (N small: LoRA's dA, N = rank)
  //   dWᵀ = xᵀ · dy, then ᵀ   dY' = xᵀ [K, M], W' = dy [M, N]       (K small: LoRA's dB, K = rank)
  // picking the one with fewer copied elements (N·M against K·M + K·N). A dW row per thread over axpys of K floats
  // (what this was) ran LoRA's dB at 3% of the FMA peak: one call per (n, m) of 16 floats.
  void matmul_dw(const Tensor& dW, const Tensor& dy, const Tensor& x, bool accumulate) override {
    check_rows("matmul_dw", dy, x.rows()); check_rows("matmul_dw", dW, dy.cols()); check_cols("matmul_dw", dW, x.cols());
    const int64_t M = x.rows(), N = dy.cols(), K = x.cols();
    if (M <= 0 || N <= 0 || K <= 0) {
      if (!accumulate) for (int64_t n = 0; n < N; ++n) std::fill(dW.row(n), dW.row(n) + K, 0.0f);
      return;
    }
    // narrow input side (LoRA's dB, K = rank): the outer-product kernel, no transposes (it ran dB at 41-60% of the
    // FMA peak through them: three parallel jobs for ~2 MFLOP at M = 64)
    if (K <= 128 && matmul_dw_narrow(pool_, dW.f32(), dW.ld(), dy.f32(), dy.ld(), x.f32(), x.ld(), M, N, K, accumulate)) return;
    if (N * M <= K * (M + N) && x.ld() == K) {
      float* dyT = thread_buffer(N * M);
      pool_.run(N, std::max<int64_t>(1, 4096 / M), [&](int64_t n0, int64_t n1, int) {
        for (int64_t m = 0; m < M; ++m) { const float* d = dy.row(m); for (int64_t n = n0; n < n1; ++n) dyT[n * M + m] = d[n]; }
      });
      moe::matmul_dx(&pool_, dW.f32(), dW.ld(), dyT, M, x.f32(), DType::F32, N, M, K, accumulate);
      return;
    }
    if (dy.ld() == N) {
      float* xT = thread_buffer(K * M + K * N);
      float* dWT = xT + K * M;
      pool_.run(K, std::max<int64_t>(1, 4096 / M), [&](int64_t k0, int64_t k1, int) {
        for (int64_t m = 0; m < M; ++m) { const float* r = x.row(m); for (int64_t k = k0; k < k1; ++k) xT[k * M + m] = r[k]; }
      });
      moe::matmul_dx(&pool_, dWT, N, xT, M, dy.f32(), DType::F32, K, M, N, false);
      pool_.run(N, std::max<int64_t>(1, 4096 / K), [&](int64_t n0, int64_t n1, int) {
        for (int64_t n = n0; n < n1; ++n) {
          float* o = dW.row(n);
          for (int64_t k = 0; k < K; ++k) o[k] = accumulate ? o[k] + dWT[k * N + n] : dWT[k * N + n];
        }
      });
      return;
    }
    pool_.run(N, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, M * K)), [&](int64_t n0, int64_t n1, int) {  // strided views
      for (int64_t n = n0; n < n1; ++n) {
        float* o = dW.row(n);
        if (!accumulate) std::fill(o, o + K, 0.0f);
        for (int64_t m = 0; m < M; ++m) vec_axpy_f32(o, dy.row(m)[n], x.row(m), K);
      }
    });
  }

  void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up) override {
    check_same("swiglu", out, gate); check_same("swiglu", gate, up);
    const int64_t I = gate.cols();
    for (int64_t r = 0; r < gate.rows(); ++r) {
      const float* g = gate.row(r); const float* u = up.row(r); float* o = out.row(r);
      for (int64_t i = 0; i < I; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
  }

  void attention(const Tensor& out, const Tensor& q, const Tensor& K, const Tensor& V, int64_t pos0, float scale,
                 const Tensor& att, const Tensor& scratch) override {
    const int64_t hd = q.ne[0], Hq = q.ne[1], T = q.ne[2], Hkv = K.ne[1], n_all = pos0 + T;
    const bool f16 = K.type == DType::F16;
    const int64_t es = f16 ? 2 : 4;
    if (K.ne[2] < n_all || K.ne[0] != hd || Hq % Hkv != 0 || scratch.rows() < pool_.size() || scratch.cols() < n_all ||
        !heads_packed(q, hd) || !heads_packed(out, hd) || K.nb[1] != es * hd || V.type != K.type || V.nb[1] != K.nb[1] ||
        V.nb[2] != K.nb[2] || (K.type != DType::F32 && K.type != DType::F16) || (f16 && !att.empty()))
      throw std::invalid_argument("attention: q " + shape_of(q) + ", " + dtype_name(K.type) + " cache " + shape_of(K) + ", scratch " +
                                  shape_of(scratch) + (att.empty() ? "" : " (probabilities need the f32 cache)"));
    KvCacheView kv;
    const KvRows::Type ty = f16 ? KvRows::F16 : KvRows::F32;
    kv.k = KvRows{ty, K.data, K.nb[2] / es}; kv.v = KvRows{ty, V.data, V.nb[2] / es}; kv.Hkv = Hkv;
    attention_causal(pool_, out.f32(), out.nb[2] / 4, q.f32(), q.nb[2] / 4, T, Hq, hd, kv, pos0, scale,
                     att.empty() ? nullptr : att.f32(), att.empty() ? 0 : att.ld(), scratch.f32(), scratch.ld());
  }

  // The f16 cache's append widens through F16C (attention's table); everything else is ref's copy.
  void copy(const Tensor& dst, const Tensor& src) override {
    if (dst.type != DType::F16 || src.type != DType::F32) { RefBackend::copy(dst, src); return; }
    check_same("copy", dst, src);
    for (int64_t r = 0; r < src.rows(); ++r) f32_to_f16_row(reinterpret_cast<uint16_t*>(row_of(dst, r)), row_of(src, r), src.cols());
  }

  void attention_kv8(const Tensor& out, const Tensor& q, const Tensor& K8, const Tensor& Ks, const Tensor& V8, const Tensor& Vs,
                     int64_t pos0, float scale, const Tensor& scratch) override {
    const int64_t hd = q.ne[0], Hq = q.ne[1], T = q.ne[2], Hkv = K8.ne[1];
    if (scratch.rows() < pool_.size() || scratch.cols() < pos0 + T || Hq % Hkv != 0 || K8.ne[2] < pos0 + T ||
        !heads_packed(q, hd) || !heads_packed(out, hd) || K8.nb[1] != hd || V8.nb[2] != K8.nb[2])
      throw std::invalid_argument("attention_kv8: q " + shape_of(q) + ", cache " + shape_of(K8) + ", scratch " + shape_of(scratch));
    KvCacheView kv;  // (int8: bytes = elements)
    kv.k = KvRows{KvRows::I8, K8.data, K8.nb[2], Ks.f32(), Hkv}; kv.v = KvRows{KvRows::I8, V8.data, V8.nb[2], Vs.f32(), Hkv};
    kv.Hkv = Hkv;
    attention_causal(pool_, out.f32(), out.nb[2] / 4, q.f32(), q.nb[2] / 4, T, Hq, hd, kv, pos0, scale, nullptr, 0,
                     scratch.f32(), scratch.ld());
  }

  // Split by KV head: every query head of a group and every position write only that head's dK/dV rows, so
  // threads never share an output row (deterministic, no atomics). Per head, tokens go in blocks of kTB: the block's
  // ds rows (dp_j = dout·V[j], ds = p ⊙ (dp − Σ p·dp)) and its probabilities are transposed so that each key's
  //   dK[j] += scale · Σ_t ds[t, j] q[t]    and    dV[j] += Σ_t p[t, j] dout[t]
  // is one weighted sum of the block's q (dout) rows — vec_axpy_rows_f32, the kernel attention's P·V uses —
  // instead of an axpy of hd floats per (t, j) pair (which made this ~10% of a training step).
  void attention_backward(const Tensor& dq, const Tensor& dK, const Tensor& dV, const Tensor& dout, const Tensor& q,
                          const Tensor& K, const Tensor& V, const Tensor& att, int64_t pos0, float scale) override {
    const int64_t hd = q.ne[0], Hq = q.ne[1], T = q.ne[2], Hkv = K.ne[1], group = Hq / Hkv, n_all = pos0 + T;
    check_rows("attention_backward att", att, T * Hq); check_cols("attention_backward att", att, n_all);
    const int64_t ldk = K.nb[2] / 4, ldv = V.nb[2] / 4, ldq = q.nb[2] / 4, ldo = dout.nb[2] / 4;
    constexpr int64_t kTB = 64;
    pool_.run(Hkv, 1, [&](int64_t k0, int64_t k1, int) {
      float* ds = thread_buffer(n_all + 2 * n_all * kTB);
      float* dsT = ds + n_all;        // [n_all][kTB]: scale · ds[t, j] of the block's tokens
      float* pT = dsT + n_all * kTB;  // [n_all][kTB]: p[t, j]
      for (int64_t kh = k0; kh < k1; ++kh)
        for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
          for (int64_t t0 = 0; t0 < T; t0 += kTB) {
            const int64_t tb = std::min(kTB, T - t0), n_end = pos0 + t0 + tb;
            for (int64_t t = t0; t < t0 + tb; ++t) {
              const int64_t n = pos0 + t + 1, c = t - t0;
              const float* p = att.row(t * Hq + h); const float* go = at(dout, t, h);
              vec_dot_rows_f32(ds, go, at(V, 0, kh), ldv, n, hd, 1.0f);  // dp_j = dout·V[j]
              double sum = 0;
              for (int64_t j = 0; j < n; ++j) sum += double(p[j]) * ds[j];
              for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - float(sum));
              float* g = at(dq, t, h);
              std::fill(g, g + hd, 0.0f);
              vec_axpy_rows_f32(g, ds, at(K, 0, kh), ldk, n, hd);  // dq = Σ_j ds_j K[j]
              for (int64_t i = 0; i < hd; ++i) g[i] *= scale;
              for (int64_t j = 0; j < n; ++j) { dsT[j * kTB + c] = scale * ds[j]; pT[j * kTB + c] = p[j]; }
            }
            for (int64_t j = 0; j < n_end; ++j) {
              const int64_t l0 = std::max<int64_t>(0, j - pos0 - t0);  // the first of the block's tokens that sees key j
              vec_axpy_rows_f32(at(dK, j, kh), dsT + j * kTB + l0, at(q, t0 + l0, h), ldq, tb - l0, hd);
              vec_axpy_rows_f32(at(dV, j, kh), pT + j * kTB + l0, at(dout, t0 + l0, h), ldo, tb - l0, hd);
            }
          }
    });
  }

  // Rows over threads; exp in f32, the normaliser summed in double. dlogits = scale·(softmax − onehot).
  double cross_entropy(const Tensor& logits, const Tensor& labels, float scale) override {
    const int64_t n = logits.rows(), V = logits.cols();
    const int32_t* y = static_cast<const int32_t*>(labels.data);
    for (int64_t r = 0; r < n; ++r)
      if (y[r] != -100 && (y[r] < 0 || y[r] >= V))
        throw std::out_of_range("label " + std::to_string(y[r]) + " is out of range [0, " + std::to_string(V) + ")");
    std::vector<double>& rows = row_losses_;
    rows.assign(size_t(n), 0.0);
    pool_.run(n, 1, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        float* l = logits.row(r);
        if (y[r] == -100) { std::fill(l, l + V, 0.0f); continue; }
        float m = l[0];
        for (int64_t i = 1; i < V; ++i) m = std::max(m, l[i]);
        double sum = 0;
        for (int64_t i = 0; i < V; ++i) sum += std::exp(l[i] - m);
        const float lse = m + float(std::log(sum));
        rows[size_t(r)] = double(lse) - double(l[y[r]]);
        for (int64_t i = 0; i < V; ++i) l[i] = scale * std::exp(l[i] - lse);
        l[y[r]] -= scale;
      }
    });
    double loss = 0;
    for (double v : rows) loss += v;
    return loss;
  }

 private:
  ThreadPool& pool_;
  std::vector<double> row_losses_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& name, ThreadPool* pool) {
  if (name == "ref") return std::make_unique<RefBackend>();
  if (name == "cpu") {
    if (!pool) throw std::invalid_argument("the cpu backend needs a thread pool");
    return std::make_unique<CpuBackend>(*pool);
  }
  if (name == "emu") return make_emu_backend();
  throw std::invalid_argument("unknown backend \"" + name + "\" (this build has: cpu, ref, emu)");
}

}  // namespace moe
