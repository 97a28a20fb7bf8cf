// The kernel backend (cuda/kernel_backend.h) under the SIMT emulator: every forward op against ref, on the shapes
// users hit (odd sizes, 1 token, strided rows, an expert with no tokens, repeated rows, pos0 > 0, GQA, the int8
// cache), forward and backward. The same host code and kernel text run on a GPU.
// Tolerances, relative to the output's scale (as test_backend_ops.cpp):
//   1e-4  matmul over long dots: f32 sums (the kernel) vs double (ref) over K ≤ 512 terms of widened weights;
//   1e-5  attention: f32 online softmax (expf, rescaled partial sums over 4 warps) vs ref's double softmax;
//   2e-6  norms and elementwise ops: a few ulp of expf / rsqrtf against double;
//   exact kv_quantize, embedding, gather, routing ids: the same float operations in the same order.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>
#include "backend/backend.h"
#include "quant/nf4.h"
#include "quant/quant.h"
#include "tests/test.h"
#include "tests/test_buffers.h"

using namespace moe;

namespace {

using moe_test::Buf;
using moe_test::rnd;
// (tolerances relative to the output's scale, as test_backend_ops.cpp)
void close(const std::string& what, const Buf& got, const Buf& want, double tol) { moe_test::check_close(what, got, want, tol); }

struct Pair {
  std::unique_ptr<Backend> ref = make_backend("ref"), emu = make_backend("emu");
};
Pair& B() { static Pair p; return p; }
const Tensor none;

}  // namespace

TEST(backend_kernels_matmul_every_dtype) {
  struct Shape { int64_t M, N, K; };
  for (Shape sh : {Shape{1, 7, 64}, Shape{1, 33, 256}, Shape{3, 33, 96}, Shape{70, 40, 256}, Shape{5, 13, 77}}) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
      if (is_quant(dt) && sh.K % qblock_size(dt) != 0) continue;
      const int64_t M = sh.M, N = sh.N, K = sh.K, ldx = K + 3, ldy = N + 2;
      Buf wf = rnd(size_t(N * K), 11);
      std::vector<uint8_t> wb(dtype_row_bytes(dt, K) * size_t(N));
      if (dt == DType::F32) std::memcpy(wb.data(), wf.data(), wb.size());
      else if (dt == DType::F16) for (size_t i = 0; i < wf.size(); ++i) { uint16_t h = f32_to_f16(wf[i]); std::memcpy(&wb[2 * i], &h, 2); }
      else if (dt == DType::BF16) for (size_t i = 0; i < wf.size(); ++i) { uint16_t h = f32_to_bf16(wf[i]); std::memcpy(&wb[2 * i], &h, 2); }
      else quantize_tensor(dt, wf.data(), wb.data(), N * K);
      const Tensor W = weight(wb.data(), dt, N, K);
      const Buf x = rnd(size_t(M * ldx), 12), y0 = rnd(size_t(M * ldy), 13);
      const std::string tag = std::string(dtype_name(dt)) + " M" + std::to_string(M) + " N" + std::to_string(N) + " K" + std::to_string(K);
      for (bool acc : {false, true}) {
        Buf want = y0, got = y0;
        B().ref->matmul(mat(want.data(), M, N, ldy), mat(x.data(), M, K, ldx), W, acc);
        B().emu->matmul(mat(got.data(), M, N, ldy), mat(x.data(), M, K, ldx), W, acc);
        close("emu matmul " + tag + (acc ? " accumulate" : ""), got, want, 1e-4);  // (the padding columns too: untouched)
      }
    }
  }
}

// matmul_batch as grouped launches (runs of one dtype, ≤ 16 per launch): 20 expert-like products of mixed M (1, 0,
// 3, 70), mixed dtypes breaking the runs, accumulate, a product sharing another's x; each against ref's matmul.
TEST(backend_kernels_matmul_batch_grouped) {
  struct J { DType t; int64_t M, N, K; bool acc; };
  std::vector<J> js;
  for (int i = 0; i < 20; ++i) js.push_back({i < 17 ? DType::Q4_0 : (i == 17 ? DType::BF16 : DType::Q8_0), int64_t(i % 4 == 0 ? 1 : i % 4 == 1 ? 0 : i % 4 == 2 ? 3 : 70),
                                             int64_t(20 + 3 * i), 64, i % 3 == 0});
  const size_t n = js.size();
  std::vector<std::vector<uint8_t>> wb(n);
  std::vector<Buf> xs(n), y0(n), ya(n), yb(n);
  std::vector<Backend::MatmulJob> ja, jb;
  for (size_t i = 0; i < n; ++i) {
    const J& j = js[i];
    const Buf wf = rnd(size_t(j.N * j.K), uint32_t(90 + i));
    wb[i].resize(dtype_row_bytes(j.t, j.K) * size_t(j.N));
    if (j.t == DType::BF16) for (size_t k = 0; k < wf.size(); ++k) { uint16_t h = f32_to_bf16(wf[k]); std::memcpy(&wb[i][2 * k], &h, 2); }
    else quantize_tensor(j.t, wf.data(), wb[i].data(), j.N * j.K);
    xs[i] = rnd(size_t(std::max<int64_t>(j.M, 1) * j.K), uint32_t(120 + i));
    y0[i] = rnd(size_t(std::max<int64_t>(j.M, 1) * j.N), uint32_t(150 + i));
    ya[i] = y0[i]; yb[i] = y0[i];
  }
  for (size_t i = 0; i < n; ++i) {
    const J& j = js[i];
    ja.push_back({mat(ya[i].data(), j.M, j.N), mat(xs[i].data(), j.M, j.K), weight(wb[i].data(), j.t, j.N, j.K), j.acc});
    jb.push_back({mat(yb[i].data(), j.M, j.N), mat(xs[i].data(), j.M, j.K), weight(wb[i].data(), j.t, j.N, j.K), j.acc});
  }
  for (size_t i = 0; i < n; ++i) B().ref->matmul(ja[i].y, ja[i].x, ja[i].W, ja[i].accumulate);
  B().emu->matmul_batch(jb.data(), int(n));
  for (size_t i = 0; i < n; ++i) close("emu matmul_batch job " + std::to_string(i), yb[i], ya[i], 1e-4);
}

// dx = dy·W over every weight dtype and NF4 (64-blocks straddling rows at K = 77 and 96), dW = dyᵀ·x, and NF4's forward.
TEST(backend_kernels_matmul_backward_forms_and_nf4) {
  struct Shape { int64_t M, N, K; };
  for (Shape sh : {Shape{1, 7, 64}, Shape{3, 33, 96}, Shape{70, 40, 256}, Shape{5, 13, 77}}) {
    const int64_t M = sh.M, N = sh.N, K = sh.K;
    const Buf wf = rnd(size_t(N * K), 31), dy = rnd(size_t(M * N), 32), x = rnd(size_t(M * K), 33);
    const std::string shape = " M" + std::to_string(M) + " N" + std::to_string(N) + " K" + std::to_string(K);
    for (DType dt : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_K, DType::NF4}) {
      if (is_quant(dt) && K % qblock_size(dt) != 0) continue;
      std::vector<uint8_t> wb(dt == DType::NF4 ? 0 : dtype_row_bytes(dt, K) * size_t(N));
      NF4Tensor nf4;
      if (dt == DType::F32) std::memcpy(wb.data(), wf.data(), wb.size());
      else if (dt == DType::BF16) for (size_t i = 0; i < wf.size(); ++i) { uint16_t h = f32_to_bf16(wf[i]); std::memcpy(&wb[2 * i], &h, 2); }
      else if (dt == DType::NF4) nf4 = nf4_quantize(wf.data(), N, K);
      else quantize_tensor(dt, wf.data(), wb.data(), N * K);
      const Tensor W = dt == DType::NF4 ? nf4_weight(&nf4, N, K) : weight(wb.data(), dt, N, K);
      const std::string tag = std::string(dtype_name(dt)) + shape;
      for (bool acc : {false, true}) {
        Buf a = rnd(size_t(M * K), 34), b = a;
        B().ref->matmul_dx(mat(a.data(), M, K), mat(dy.data(), M, N), W, acc);
        B().emu->matmul_dx(mat(b.data(), M, K), mat(dy.data(), M, N), W, acc);
        close("emu matmul_dx " + tag + (acc ? " accumulate" : ""), b, a, 1e-4);
      }
      if (dt == DType::NF4) {
        Buf a(size_t(M * N)), b(a.size());
        B().ref->matmul(mat(a.data(), M, N), mat(x.data(), M, K), W, false);
        B().emu->matmul(mat(b.data(), M, N), mat(x.data(), M, K), W, false);
        close("emu matmul " + tag, b, a, 1e-4);
      }
    }
    for (bool acc : {false, true}) {
      Buf a = rnd(size_t(N * K), 35), b = a;
      B().ref->matmul_dw(mat(a.data(), N, K), mat(dy.data(), M, N), mat(x.data(), M, K), acc);
      B().emu->matmul_dw(mat(b.data(), N, K), mat(dy.data(), M, N), mat(x.data(), M, K), acc);
      close("emu matmul_dw" + shape + (acc ? " accumulate" : ""), b, a, 1e-4);
    }
  }
}

TEST(backend_kernels_backward_of_norms_elementwise_routing_loss_adamw) {
  // rmsnorm: saved rstd or recomputed, gain or none, dw, dx aliasing dout
  for (bool saved : {true, false}) for (bool gain : {true, false}) {
    const int64_t R = 6, D = 37;
    const Buf x = rnd(size_t(R * D), 41, -2, 2), w = rnd(size_t(D), 42, 0.5f, 1.5f), g = rnd(size_t(R * D), 43);
    Buf out(x.size()), rstd(static_cast<size_t>(R));
    B().ref->rmsnorm(mat(out.data(), R, D), mat(x.data(), R, D), gain ? vec(w.data(), D) : none, 1e-6f, mat(rstd.data(), R, 1));
    Buf d1 = g, d2 = g, dw1(static_cast<size_t>(D), 0.5f), dw2 = dw1;
    const Tensor wt = gain ? vec(w.data(), D) : none, rt = saved ? mat(rstd.data(), R, 1) : none;
    B().ref->rmsnorm_backward(mat(d1.data(), R, D), vec(dw1.data(), D), mat(d1.data(), R, D), mat(x.data(), R, D), wt, rt);
    B().emu->rmsnorm_backward(mat(d2.data(), R, D), vec(dw2.data(), D), mat(d2.data(), R, D), mat(x.data(), R, D), wt, rt);
    const std::string tag = std::string(saved ? " rstd saved" : " rstd recomputed") + (gain ? " gain" : "");
    close("emu rmsnorm_backward dx (aliased)" + tag, d2, d1, 2e-5);
    close("emu rmsnorm_backward dw" + tag, dw2, dw1, 2e-5);
  }
  const int64_t R = 3, C = 11;
  const size_t n = size_t(R * C);
  const Buf g = rnd(n, 51, -4, 4), u = rnd(n, 52), r = rnd(n, 53);
  {
    Buf dg1 = r, dg2 = r, du1(n), du2(n);
    B().ref->swiglu_backward(mat(dg1.data(), R, C), mat(du1.data(), R, C), mat(dg1.data(), R, C), mat(g.data(), R, C), mat(u.data(), R, C));
    B().emu->swiglu_backward(mat(dg2.data(), R, C), mat(du2.data(), R, C), mat(dg2.data(), R, C), mat(g.data(), R, C), mat(u.data(), R, C));
    close("emu swiglu_backward dgate (aliased)", dg2, dg1, 2e-6);
    close("emu swiglu_backward dup", du2, du1, 2e-6);
  }
  {
    Buf y = g, d1 = r, d2 = r;
    B().ref->sigmoid(mat(y.data(), R, C));
    B().ref->sigmoid_backward(mat(d1.data(), R, C), mat(y.data(), R, C));
    B().emu->sigmoid_backward(mat(d2.data(), R, C), mat(y.data(), R, C));
    close("emu sigmoid_backward", d2, d1, 0);
    Buf c1 = r, c2 = r;
    B().ref->clamp_backward(mat(c1.data(), R, C), mat(g.data(), R, C), 1.5f);
    B().emu->clamp_backward(mat(c2.data(), R, C), mat(g.data(), R, C), 1.5f);
    CHECK(c1 == c2);
  }
  // routing backward: k 1..3, renormalised or not, E > 32
  for (int k : {1, 3}) for (bool renorm : {false, true}) {
    const int64_t T = 5, E = 40;
    const Buf logits = rnd(size_t(T * E), 61, -2, 2), dw = rnd(size_t(T * k), 62);
    std::vector<int32_t> idx(size_t(T * k));
    Buf w(size_t(T * k)), probs(logits.size()), a(logits.size()), b(logits.size());
    B().ref->moe_route(ivec(idx.data(), T * k), mat(w.data(), T, k), mat(probs.data(), T, E), mat(logits.data(), T, E), renorm);
    B().ref->moe_route_backward(mat(a.data(), T, E), mat(dw.data(), T, k), ivec(idx.data(), T * k), mat(w.data(), T, k), mat(probs.data(), T, E), renorm);
    B().emu->moe_route_backward(mat(b.data(), T, E), mat(dw.data(), T, k), ivec(idx.data(), T * k), mat(w.data(), T, k), mat(probs.data(), T, E), renorm);
    close("emu moe_route_backward k" + std::to_string(k) + (renorm ? " renorm" : ""), b, a, 1e-5);
  }
  // cross-entropy of a chunk with an ignored row; a label out of range is an error
  {
    const int64_t rows = 4, V = 300;
    const Buf logits = rnd(size_t(rows * V), 71, -3, 3);
    std::vector<int32_t> labels{5, -100, 0, 299};
    Buf a = logits, b = logits;
    const double la = B().ref->cross_entropy(mat(a.data(), rows, V), ivec(labels.data(), rows), 0.25f);
    const double lb = B().emu->cross_entropy(mat(b.data(), rows, V), ivec(labels.data(), rows), 0.25f);
    CHECK_NEAR(lb, la, 1e-5 * std::fabs(la));
    close("emu cross_entropy dlogits", b, a, 1e-6);
    labels[0] = int32_t(V);
    CHECK_THROWS(B().emu->cross_entropy(mat(b.data(), rows, V), ivec(labels.data(), rows), 0.25f), "label 300 is out of range");
  }
  // AdamW, 3 steps: the same f32 operations in the same order as ref, so the same bits
  {
    const int64_t N = 4, D = 10;
    Buf p1 = rnd(size_t(N * D), 81), m1(p1.size(), 0.0f), v1(p1.size(), 0.0f), p2 = p1, m2 = m1, v2 = v1;
    for (int64_t step = 1; step <= 3; ++step) {
      const Buf gr = rnd(p1.size(), uint32_t(82 + step));
      B().ref->adamw(mat(p1.data(), N, D), mat(gr.data(), N, D), mat(m1.data(), N, D), mat(v1.data(), N, D), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
      B().emu->adamw(mat(p2.data(), N, D), mat(gr.data(), N, D), mat(m2.data(), N, D), mat(v2.data(), N, D), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
    }
    CHECK(p1 == p2);
    CHECK(m1 == m2);
    CHECK(v1 == v2);
  }
}

TEST(backend_kernels_norms_and_elementwise) {
  const int64_t R = 5, C = 37, ld = 41;  // strided rows, C not a multiple of a warp
  const Buf x = rnd(size_t(R * ld), 21, -3, 3), u = rnd(size_t(R * ld), 22), w = rnd(size_t(C), 23, 0.5f, 1.5f);
  auto both = [&](const std::string& name, const std::function<void(Backend&, float*)>& op, const Buf& start, double tol) {
    Buf a = start, b = start;
    op(*B().ref, a.data());
    op(*B().emu, b.data());
    close("emu " + name, b, a, tol);
  };
  for (bool gain : {true, false}) {
    Buf r1(static_cast<size_t>(R)), r2(static_cast<size_t>(R)), o1(x.size()), o2(x.size());
    B().ref->rmsnorm(mat(o1.data(), R, C, ld), mat(x.data(), R, C, ld), gain ? vec(w.data(), C) : none, 1e-6f, mat(r1.data(), R, 1));
    B().emu->rmsnorm(mat(o2.data(), R, C, ld), mat(x.data(), R, C, ld), gain ? vec(w.data(), C) : none, 1e-6f, mat(r2.data(), R, 1));
    close(std::string("emu rmsnorm") + (gain ? " gain" : ""), o2, o1, 2e-6);
    close("emu rmsnorm rstd", r2, r1, 2e-6);
  }
  both("rmsnorm in place, per head (40 rows of 4)", [&](Backend& be, float* p) { be.rmsnorm(mat(p, 40, 4), mat(p, 40, 4), vec(w.data(), 4), 1e-5f, none); }, x, 2e-6);
  both("add", [&](Backend& be, float* p) { be.add(mat(p, R, C, ld), mat(u.data(), R, C, ld)); }, x, 0);
  both("copy (strided rows, padding untouched)", [&](Backend& be, float* p) { be.copy(mat(p, R, C, ld), mat(u.data(), R, C, ld)); }, x, 0);
  both("zero", [&](Backend& be, float* p) { be.zero(mat(p, R, C, ld)); }, x, 0);
  // LoRA dropout's mask: the same hash on both sides, so the same bits (forward: write; backward: accumulate)
  for (bool acc : {false, true})
    both(std::string("lora_dropout") + (acc ? " accumulate" : ""), [&](Backend& be, float* p) {
      be.lora_dropout(mat(p, R, C, ld), mat(u.data(), R, C, ld), 0x1234abcdull, 7, 0.3f, acc);
    }, x, 0);
  both("add_bias", [&](Backend& be, float* p) { be.add_bias(mat(p, R, C, ld), vec(w.data(), C)); }, x, 0);
  both("sigmoid", [&](Backend& be, float* p) { be.sigmoid(mat(p, R, C, ld)); }, x, 2e-6);
  both("mul_cols", [&](Backend& be, float* p) { be.mul_cols(mat(p, R, C, ld), vec(w.data(), C)); }, x, 0);
  both("clamp", [&](Backend& be, float* p) { be.clamp(mat(p, R, C, ld), 1.25f); }, x, 0);
  both("swiglu (out aliases gate)", [&](Backend& be, float* p) { be.swiglu(mat(p, R, C, ld), mat(p, R, C, ld), mat(u.data(), R, C, ld)); }, x, 2e-6);
}

TEST(backend_kernels_rope_and_inverse) {
  // heads packed and heads strided inside a fused row ([T, H, hd] view with a wider token stride)
  const int64_t T = 3, H = 2, hd = 8, half = hd / 2, row = H * hd + 6;
  Buf cs(size_t(T * half)), sn(size_t(T * half));
  for (int64_t t = 0; t < T; ++t) for (int64_t j = 0; j < half; ++j) {
    const double a = double(t + 5) / std::pow(100.0, double(j) / half);
    cs[size_t(t * half + j)] = float(std::cos(a)); sn[size_t(t * half + j)] = float(std::sin(a));
  }
  const Buf x = rnd(size_t(T * row), 41);
  Tensor v = mat3(nullptr, T, H, hd);
  v.nb[2] = 4 * row;
  for (bool inv : {false, true}) {
    Buf a = x, b = x;
    Tensor ta = v, tb = v; ta.data = a.data(); tb.data = b.data();
    if (inv) { B().ref->rope_backward(ta, mat(cs.data(), T, half), mat(sn.data(), T, half)); B().emu->rope_backward(tb, mat(cs.data(), T, half), mat(sn.data(), T, half)); }
    else { B().ref->rope(ta, mat(cs.data(), T, half), mat(sn.data(), T, half)); B().emu->rope(tb, mat(cs.data(), T, half), mat(sn.data(), T, half)); }
    close(inv ? "emu rope_backward" : "emu rope", b, a, 1e-6);
  }
}

TEST(backend_kernels_attention_f32_f16_int8_probs) {
  struct Case { int64_t T, pos0, Hq, Hkv, hd; };
  // (T >= 8 without probabilities: the flash-style prefill kernel; T <= 4 past 512 keys without probabilities: split-K;, query blocks of 16 ending mid-block, causal edges
  // inside and across 16-key tiles, groups of 4 and 8; the rest: the per-(head, token) kernel)
  for (Case c : {Case{1, 0, 2, 1, 4}, Case{4, 0, 4, 2, 8}, Case{3, 5, 4, 4, 6}, Case{1, 40, 6, 2, 64}, Case{9, 63, 8, 2, 80},
                 Case{2, 3, 2, 1, 256}, Case{37, 70, 16, 4, 64}, Case{70, 0, 4, 2, 128}, Case{17, 5, 2, 1, 256},
                 Case{1, 1500, 8, 2, 64}, Case{3, 1030, 4, 1, 32}}) {  // decode past 512 keys: split-K (3 splits, the last ragged)
    const int64_t n_all = c.pos0 + c.T, ctx = n_all + 3, kd = c.Hkv * c.hd;
    const float scale = 1.0f / std::sqrt(float(c.hd));
    const float qs = 6.0f / std::sqrt(float(c.hd));  // scale·q·k over about ±6: a softmax far from flat
    Buf q = rnd(size_t(c.T * c.Hq * c.hd), 61, -qs, qs), K = rnd(size_t(ctx * kd), 62), V = rnd(K.size(), 63), scr(static_cast<size_t>(ctx));
    const Tensor qt = mat3(q.data(), c.T, c.Hq, c.hd), Kt = mat3(K.data(), ctx, c.Hkv, c.hd), Vt = mat3(V.data(), ctx, c.Hkv, c.hd);
    const std::string tag = " T" + std::to_string(c.T) + " pos0 " + std::to_string(c.pos0) + " Hq" + std::to_string(c.Hq) +
                            " Hkv" + std::to_string(c.Hkv) + " hd" + std::to_string(c.hd);
    Buf o1(q.size()), o2(q.size(), 7.0f), a1(size_t(c.T * c.Hq * n_all)), a2(a1.size(), 7.0f);
    B().ref->attention(mat3(o1.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, mat(a1.data(), c.T * c.Hq, n_all), mat(scr.data(), 1, ctx));
    B().emu->attention(mat3(o2.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, mat(a2.data(), c.T * c.Hq, n_all), mat(scr.data(), 1, ctx));
    close("emu attention" + tag, o2, o1, 1e-5);
    close("emu attention probs (zero past the causal edge)" + tag, a2, a1, 1e-5);
    {
      Buf o3(q.size(), 7.0f);  // inference: no probabilities kept (the flash-style kernel where T >= 8)
      B().emu->attention(mat3(o3.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, none, mat(scr.data(), 1, ctx));
      close("emu attention (no probabilities)" + tag, o3, o1, 1e-5);
    }
    // backward from ref's probabilities: dq written, dK / dV accumulated onto what is there (grouped heads add in)
    {
      const Buf r = rnd(q.size(), 64);
      Buf dq1(q.size()), dq2(q.size(), 7.0f), dK1 = rnd(K.size(), 65), dK2 = dK1, dV1 = rnd(V.size(), 66), dV2 = dV1;
      B().ref->attention_backward(mat3(dq1.data(), c.T, c.Hq, c.hd), mat3(dK1.data(), ctx, c.Hkv, c.hd), mat3(dV1.data(), ctx, c.Hkv, c.hd),
                                  mat3(const_cast<float*>(r.data()), c.T, c.Hq, c.hd), qt, Kt, Vt, mat(a1.data(), c.T * c.Hq, n_all), c.pos0, scale);
      B().emu->attention_backward(mat3(dq2.data(), c.T, c.Hq, c.hd), mat3(dK2.data(), ctx, c.Hkv, c.hd), mat3(dV2.data(), ctx, c.Hkv, c.hd),
                                  mat3(const_cast<float*>(r.data()), c.T, c.Hq, c.hd), qt, Kt, Vt, mat(a1.data(), c.T * c.Hq, n_all), c.pos0, scale);
      close("emu attention_backward dq" + tag, dq2, dq1, 2e-5);
      close("emu attention_backward dK" + tag, dK2, dK1, 2e-5);
      close("emu attention_backward dV" + tag, dV2, dV1, 2e-5);
    }
    // the int8 cache, quantised by each backend: the same int8 rows and scales, bit for bit
    std::vector<int8_t> K8a(K.size()), K8b(K.size()), V8(V.size());
    Buf Ksa(size_t(ctx * c.Hkv)), Ksb(Ksa.size()), Vs(Ksa.size());
    B().ref->kv_quantize(int8_rows(K8a.data(), ctx * c.Hkv, c.hd), mat(Ksa.data(), ctx * c.Hkv, 1), mat(K.data(), ctx * c.Hkv, c.hd));
    B().emu->kv_quantize(int8_rows(K8b.data(), ctx * c.Hkv, c.hd), mat(Ksb.data(), ctx * c.Hkv, 1), mat(K.data(), ctx * c.Hkv, c.hd));
    CHECK(K8a == K8b);
    CHECK(Ksa == Ksb);
    B().ref->kv_quantize(int8_rows(V8.data(), ctx * c.Hkv, c.hd), mat(Vs.data(), ctx * c.Hkv, 1), mat(V.data(), ctx * c.Hkv, c.hd));
    const Tensor K8t = int8_cache(K8a.data(), ctx, c.Hkv, c.hd), V8t = int8_cache(V8.data(), ctx, c.Hkv, c.hd);
    B().ref->attention_kv8(mat3(o1.data(), c.T, c.Hq, c.hd), qt, K8t, mat(Ksa.data(), ctx, c.Hkv), V8t, mat(Vs.data(), ctx, c.Hkv), c.pos0, scale,
                           mat(scr.data(), 1, ctx));
    B().emu->attention_kv8(mat3(o2.data(), c.T, c.Hq, c.hd), qt, K8t, mat(Ksa.data(), ctx, c.Hkv), V8t, mat(Vs.data(), ctx, c.Hkv), c.pos0, scale,
                           mat(scr.data(), 1, ctx));
    close("emu attention_kv8" + tag, o2, o1, 1e-5);
    // the f16 cache, written by each backend's copy: the same half bits (round to nearest even), then attended
    std::vector<uint16_t> K16a(K.size()), K16b(K.size()), V16(V.size());
    B().ref->copy(f16_rows(K16a.data(), ctx * c.Hkv, c.hd), mat(K.data(), ctx * c.Hkv, c.hd));
    B().emu->copy(f16_rows(K16b.data(), ctx * c.Hkv, c.hd), mat(K.data(), ctx * c.Hkv, c.hd));
    CHECK(K16a == K16b);
    B().ref->copy(f16_rows(V16.data(), ctx * c.Hkv, c.hd), mat(V.data(), ctx * c.Hkv, c.hd));
    const Tensor K16t = f16_cache(K16a.data(), ctx, c.Hkv, c.hd), V16t = f16_cache(V16.data(), ctx, c.Hkv, c.hd);
    B().ref->attention(mat3(o1.data(), c.T, c.Hq, c.hd), qt, K16t, V16t, c.pos0, scale, none, mat(scr.data(), 1, ctx));
    B().emu->attention(mat3(o2.data(), c.T, c.Hq, c.hd), qt, K16t, V16t, c.pos0, scale, none, mat(scr.data(), 1, ctx));
    close("emu attention (f16 cache)" + tag, o2, o1, 1e-5);
  }
}

TEST(backend_kernels_routing_and_expert_rows) {
  const int64_t T = 7, E = 40;  // E > 32: lanes own several experts
  for (int64_t k : {1, 4}) for (bool renorm : {false, true}) {
    Buf logits = rnd(size_t(T * E), 71, -3, 3);
    logits[5] = logits[6];  // a tie: the lower expert id first
    std::vector<int32_t> i1(size_t(T * k)), i2(i1.size());
    Buf w1(size_t(T * k)), w2(w1.size()), p1(logits.size()), p2(logits.size());
    B().ref->moe_route(ivec(i1.data(), T * k), mat(w1.data(), T, k), mat(p1.data(), T, E), mat(logits.data(), T, E), renorm);
    B().emu->moe_route(ivec(i2.data(), T * k), mat(w2.data(), T, k), mat(p2.data(), T, E), mat(logits.data(), T, E), renorm);
    CHECK(i1 == i2);
    close("emu moe_route w", w2, w1, 2e-6);
    close("emu moe_route probs", p2, p1, 2e-6);
  }
  // grouping by expert: the same pairs in the same order (stable in token order), an expert with no tokens, E > 256
  for (auto [T2, k, E2] : {std::tuple<int64_t, int64_t, int>{7, 2, 5}, {33, 4, 300}, {1, 1, 3}}) {
    std::vector<int32_t> idx(size_t(T2 * k));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = int32_t((i * 7 + i / 3) % size_t(E2 > 4 ? E2 - 1 : E2));  // expert E-1 gets none
    const Buf w = rnd(idx.size(), 77);
    std::vector<int32_t> o1(size_t(E2 + 1)), o2(o1.size(), -1), t1(idx.size()), t2(idx.size(), -1), p1(idx.size()), p2(idx.size(), -1);
    Buf s1(idx.size()), s2(idx.size(), 7.0f);
    B().ref->moe_group(ivec(o1.data(), E2 + 1), ivec(t1.data(), T2 * k), vec(s1.data(), T2 * k), ivec(p1.data(), T2 * k), ivec(idx.data(), T2 * k),
                       mat(const_cast<float*>(w.data()), T2, k), E2);
    B().emu->moe_group(ivec(o2.data(), E2 + 1), ivec(t2.data(), T2 * k), vec(s2.data(), T2 * k), ivec(p2.data(), T2 * k), ivec(idx.data(), T2 * k),
                       mat(const_cast<float*>(w.data()), T2, k), E2);
    CHECK(o1 == o2); CHECK(t1 == t2); CHECK(s1 == s2); CHECK(p1 == p2);
    CHECK(o1[size_t(E2)] == int32_t(T2 * k));
  }
  const int64_t D = 300;  // more columns than one block of threads
  const Buf src = rnd(size_t(T * D), 72);
  for (std::vector<int32_t> rows : {std::vector<int32_t>{}, std::vector<int32_t>{4}, std::vector<int32_t>{0, 2, 2, 6, 2}}) {
    const int64_t n = int64_t(rows.size());
    const std::string tag = " n" + std::to_string(n);
    Buf g1(size_t(std::max<int64_t>(n, 1) * D)), g2(g1.size());
    B().ref->gather_rows(mat(g1.data(), n, D), mat(src.data(), T, D), ivec(rows.data(), n));
    B().emu->gather_rows(mat(g2.data(), n, D), mat(src.data(), T, D), ivec(rows.data(), n));
    CHECK(g1 == g2);
    const Buf y = rnd(size_t(std::max<int64_t>(n, 1) * D), 73), w = rnd(size_t(std::max<int64_t>(n, 1)), 74);
    Buf d1 = src, d2 = src;  // repeated rows: added in index order, the same bits
    B().ref->scatter_add_rows(mat(d1.data(), T, D), mat(y.data(), n, D), ivec(rows.data(), n), vec(w.data(), n));
    B().emu->scatter_add_rows(mat(d2.data(), T, D), mat(y.data(), n, D), ivec(rows.data(), n), vec(w.data(), n));
    CHECK(d1 == d2);
    Buf r1(size_t(std::max<int64_t>(n, 1))), r2(r1.size());
    B().ref->row_dots(vec(r1.data(), n), mat(src.data(), T, D), ivec(rows.data(), n), mat(y.data(), n, D));
    B().emu->row_dots(vec(r2.data(), n), mat(src.data(), T, D), ivec(rows.data(), n), mat(y.data(), n, D));
    close("emu row_dots" + tag, r2, r1, 2e-6);
  }
  // no rows: the shared expert's weighted add (dst[i] += w[i] · src[i])
  {
    const Buf y = rnd(size_t(T * D), 75), w = rnd(size_t(T), 76);
    Buf d1 = src, d2 = src;
    B().ref->scatter_add_rows(mat(d1.data(), T, D), mat(y.data(), T, D), none, vec(w.data(), T));
    B().emu->scatter_add_rows(mat(d2.data(), T, D), mat(y.data(), T, D), none, vec(w.data(), T));
    CHECK(d1 == d2);
  }
  std::vector<int32_t> bad{int32_t(T)};
  Buf g(static_cast<size_t>(D));
  CHECK_THROWS(B().emu->gather_rows(mat(g.data(), 1, D), mat(src.data(), T, D), ivec(bad.data(), 1)), "row 7 of 7");
}

TEST(backend_kernels_embedding_every_table_dtype) {
  const int64_t V = 9, D = 70;
  const Buf tf = rnd(size_t(V * D), 81);
  std::vector<uint16_t> tb(tf.size()), th(tf.size());
  for (size_t i = 0; i < tf.size(); ++i) { tb[i] = f32_to_bf16(tf[i]); th[i] = f32_to_f16(tf[i]); }
  std::vector<int32_t> ids{3, 0, 8, 3};
  for (auto [data, dt] : {std::pair<const void*, DType>{tf.data(), DType::F32}, {tb.data(), DType::BF16}, {th.data(), DType::F16}}) {
    Buf x1(size_t(4 * D)), x2(x1.size());
    B().ref->embedding(mat(x1.data(), 4, D), weight(data, dt, V, D), ivec(ids.data(), 4));
    B().emu->embedding(mat(x2.data(), 4, D), weight(data, dt, V, D), ivec(ids.data(), 4));
    CHECK(x1 == x2);
  }
  // a quantized model's embedding table (the quantizer's default keeps it at q8_0)
  for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    const int64_t Dq = 256;
    const Buf tq = rnd(size_t(V * Dq), 82);
    std::vector<uint8_t> wb(dtype_row_bytes(dt, Dq) * size_t(V));
    quantize_tensor(dt, tq.data(), wb.data(), V * Dq);
    Buf x1(size_t(4 * Dq)), x2(x1.size());
    B().ref->embedding(mat(x1.data(), 4, Dq), weight(wb.data(), dt, V, Dq), ivec(ids.data(), 4));
    B().emu->embedding(mat(x2.data(), 4, Dq), weight(wb.data(), dt, V, Dq), ivec(ids.data(), 4));
    close(std::string("emu embedding ") + dtype_name(dt), x2, x1, 1e-6);  // d·q vs ref's dequantisation (d·sc·q − dmin·m order)
  }
  ids[1] = int32_t(V);
  Buf x(size_t(4 * D));
  CHECK_THROWS(B().emu->embedding(mat(x.data(), 4, D), weight(tb.data(), DType::BF16, V, D), ivec(ids.data(), 4)), "token id 9 is out of range [0, 9)");
  CHECK(std::string(B().emu->name()) == "emu");
}
