// Every op of every backend against the reference, forward and backward (ggml's test-backend-ops, for our table):
//   1. each backend's forward and backward equal ref's on random shapes (odd sizes, 1 token, strided rows, an
//      expert that receives no tokens, pos0 > 0), on every SIMD path this CPU has;
//   2. each ref backward equals central finite differences of ref's forward, for a scalar loss L = Σ r ⊙ out with
//      a random r (so dout = r).
// Tolerances. (1) backend vs ref: only summation order and f32 vs double accumulation differ: 2e-5 relative to the
// output's scale (1e-4 for long dot products over f16/bf16/quantized weights, which both sides widen exactly).
// (2) finite differences: forward outputs are f32 (rounding ~6e-8 relative) and L sums O(100) terms, so with
// h = 1e-3 the quotient carries ~1e-4·|L|/… of rounding noise; truncation is O(h²). We allow 2e-3 + 2e-2·|g|.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>
#include "backend/backend.h"
#include "cpu/attention.h"
#include "cpu/matmul.h"
#include "cpu/qmatmul.h"
#include "cpu/thread_pool.h"
#include "quant/nf4.h"
#include "quant/quant.h"
#include "tests/test.h"
#include "tests/test_buffers.h"

using namespace moe;

namespace {

using moe_test::Buf;
using moe_test::check_close;
using moe_test::rnd;
using moe_test::scale_of;

double dot(const Buf& a, const Buf& b) { double s = 0; for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i]; return s; }

// Central differences of f(x) = L at `n` coordinates of x (all when n == 0), against the analytic gradient g.
void check_fd(const std::string& what, Buf& x, const std::function<double()>& L, const Buf& g, size_t n = 0,
              float h = 1e-3f, double abs_tol = 2e-3, double rel_tol = 2e-2) {
  const size_t count = n == 0 ? x.size() : std::min(n, x.size());
  const size_t stride = std::max<size_t>(1, x.size() / count);
  for (size_t i = 0; i < x.size(); i += stride) {
    const float x0 = x[i];
    x[i] = x0 + h; const double lp = L();
    x[i] = x0 - h; const double lm = L();
    x[i] = x0;
    const double fd = (lp - lm) / (2.0 * double(h));
    if (!(std::fabs(fd - g[i]) <= abs_tol + rel_tol * std::fabs(fd))) {
      ++moe_test::failures();
      std::fprintf(stderr, "  %s: d/dx[%zu] finite difference %.6g vs backward %.6g\n", what.c_str(), i, fd, double(g[i]));
      return;
    }
  }
}

struct Backends {
  ThreadPool pool{3};  // 3 threads: uneven splits of odd sizes
  std::unique_ptr<Backend> ref = make_backend("ref"), cpu = make_backend("cpu", &pool);
};
Backends& B() { static Backends b; return b; }

// Runs `body(backend, tag)` for cpu on every SIMD path this CPU has.
void for_each_fast(const std::function<void(Backend&, const std::string&)>& body) {
  const char* paths[8];
  const int n = simd_paths(paths, 8);
  for (int i = 0; i < n; ++i) {
    simd_use_path(paths[i]);
    body(*B().cpu, std::string("cpu/") + paths[i]);
  }
  simd_use_path(nullptr);
}

const Tensor none;

}  // namespace

// ---- matmul: three forms, every weight dtype --------------------------------------------------------------

// NF4 weights (Tensor data = the NF4Tensor, quant/nf4.h) run through the same matmul / matmul_dx entry points:
// the cpu backend's NF4 kernels against ref's (nf4_matmul_ref / nf4_matmul_dx_ref: dequantise, double sums), on
// shapes whose 64-blocks straddle rows (K = 77, 96) and an odd element count (13 x 77 = 1001). Same tolerance as the
// other weights (only summation order differs), and the cpu result is bit-identical for 1, 2 and 3 threads.
TEST(backend_ops_matmul_forms_every_dtype) {
  struct Shape { int64_t M, N, K; };
  for (Shape sh : {Shape{1, 7, 64}, Shape{3, 33, 96}, Shape{5, 13, 77}, Shape{17, 40, 256}, Shape{64, 9, 512}}) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::NF4}) {
      if (is_quant(dt) && sh.K % qblock_size(dt) != 0) continue;
      const int64_t M = sh.M, N = sh.N, K = sh.K, ldx = K + 3;  // strided x rows
      Buf wf = rnd(size_t(N * K), 11);
      std::vector<uint8_t> wb(dtype_row_bytes(dt, K) * size_t(N));
      NF4Tensor nf4;
      if (dt == DType::F32) std::memcpy(wb.data(), wf.data(), wb.size());
      else if (dt == DType::F16) for (size_t i = 0; i < wf.size(); ++i) { uint16_t h = f32_to_f16(wf[i]); std::memcpy(&wb[2 * i], &h, 2); }
      else if (dt == DType::BF16) for (size_t i = 0; i < wf.size(); ++i) { uint16_t h = f32_to_bf16(wf[i]); std::memcpy(&wb[2 * i], &h, 2); }
      else if (dt == DType::NF4) nf4 = nf4_quantize(wf.data(), N, K);
      else quantize_tensor(dt, wf.data(), wb.data(), N * K);
      const Tensor W = dt == DType::NF4 ? nf4_weight(&nf4, N, K) : weight(wb.data(), dt, N, K);
      Buf x = rnd(size_t(M * ldx), 12), dy = rnd(size_t(M * N), 13);
      Buf y_ref(size_t(M * N)), dx_ref(size_t(M * K)), y(size_t(M * N)), dx(size_t(M * K));
      B().ref->matmul(mat(y_ref.data(), M, N), mat(x.data(), M, K, ldx), W, false);
      B().ref->matmul_dx(mat(dx_ref.data(), M, K), mat(dy.data(), M, N), W, false);
      const std::string tag = std::string(dtype_name(dt)) + " M" + std::to_string(M) + " N" + std::to_string(N) + " K" + std::to_string(K);
      // Quantized weights with M < 8 may take int8 activations (cpu/qmatmul.h, the decode default for Q4_0/Q4_K):
      // activations rounded to 8 bits move each output by ~|x|·|w|·sqrt(K)/254, so that mode gets 2e-2; f32
      // activations differ from ref only in summation order.
      for (int act : {0, 1}) {
        if (act == 1 && !is_quant(dt)) continue;
        const int prev = qmatmul_act_mode(act);
        const double tol = act == 1 ? 2e-2 : 1e-4;
        for_each_fast([&](Backend& be, const std::string& path) {
          Buf acc = rnd(size_t(M * N), 14), acc0 = acc;
          be.matmul(mat(y.data(), M, N), mat(x.data(), M, K, ldx), W, false);
          check_close(path + " matmul " + tag, y, y_ref, tol);
          be.matmul(mat(acc.data(), M, N), mat(x.data(), M, K, ldx), W, true);  // accumulate
          for (size_t i = 0; i < acc.size(); ++i) acc[i] -= acc0[i];
          check_close(path + " matmul accumulate " + tag, acc, y_ref, tol);
          be.matmul_dx(mat(dx.data(), M, K), mat(dy.data(), M, N), W, false);
          check_close(path + " matmul_dx " + tag, dx, dx_ref, 1e-4);
          Buf dacc = rnd(size_t(M * K), 15), dacc0 = dacc;
          be.matmul_dx(mat(dacc.data(), M, K), mat(dy.data(), M, N), W, true);  // accumulate
          for (size_t i = 0; i < dacc.size(); ++i) dacc[i] -= dacc0[i];
          check_close(path + " matmul_dx accumulate " + tag, dacc, dx_ref, 1e-4);
          // the thread count does not change a bit (forward and dX)
          for (int threads : {1, 2}) {
            ThreadPool p(threads);
            const auto other = make_backend("cpu", &p);
            Buf y2(y.size()), dx2(dx.size());
            other->matmul(mat(y2.data(), M, N), mat(x.data(), M, K, ldx), W, false);
            other->matmul_dx(mat(dx2.data(), M, K), mat(dy.data(), M, N), W, false);
            CHECK(std::memcmp(y2.data(), y.data(), y.size() * 4) == 0);
            CHECK(std::memcmp(dx2.data(), dx.data(), dx.size() * 4) == 0);
          }
        });
        qmatmul_act_mode(prev);
      }
      if (dt != DType::F32) continue;
      // dW and the finite-difference checks on an f32 weight
      Buf dW_ref(size_t(N * K)), dW(size_t(N * K));
      B().ref->matmul_dw(mat(dW_ref.data(), N, K), mat(dy.data(), M, N), mat(x.data(), M, K, ldx), false);
      B().cpu->matmul_dw(mat(dW.data(), N, K), mat(dy.data(), M, N), mat(x.data(), M, K, ldx), false);
      check_close("cpu matmul_dw " + tag, dW, dW_ref, 2e-5);
      if (M * N * K > 40000) continue;
      auto L = [&] {
        B().ref->matmul(mat(y.data(), M, N), mat(x.data(), M, K, ldx), weight(wf.data(), DType::F32, N, K), false);
        return dot(y, dy);
      };
      Buf dxs(size_t(M * ldx), 0.0f);
      for (int64_t m = 0; m < M; ++m) std::copy(dx_ref.begin() + m * K, dx_ref.begin() + (m + 1) * K, dxs.begin() + m * ldx);
      check_fd("ref matmul_dx " + tag, x, L, dxs, 60);
      check_fd("ref matmul_dw " + tag, wf, L, dW_ref, 60);
    }
  }
}

// matmul_batch (the experts of a MoE layer in one call) is each product's matmul, bit for bit, on every backend
// and path: quantized products on the row dots and on the GEMM (one parallel job each on cpu), products sharing
// an x, dense products of M = 1 and M > 1 (one job over their row blocks, weighted by M), one with few outputs and
// many rows (matmul splits it over M: alone), accumulate, mixed K, chunks that cut through products; and the same
// bits for 1, 2 and 3 threads. Against ref as matmul (1e-4 with f32 activations, 2e-2 with int8: see above).
TEST(backend_ops_matmul_batch_is_each_matmul) {
  // xfrom: the job whose x this one reads (the cpu backend quantises a run of products of one x once; a Q8_0
  // GEMM also needs x's unsigned bytes, which a Q4 product before it did not make)
  struct Job { DType t; int64_t M, N, K; bool acc; int xfrom; };
  const Job js[] = {{DType::Q4_0, 1, 70, 96, false, -1}, {DType::Q4_0, 1, 33, 96, false, 0}, {DType::Q4_0, 3, 17, 64, false, -1},
                    {DType::Q8_0, 3, 40, 64, true, 2}, {DType::Q8_0, 3, 18, 64, false, 2},
                    {DType::Q4_K, 2, 19, 256, false, -1}, {DType::Q4_0, 9, 21, 128, false, -1}, {DType::BF16, 1, 12, 64, false, -1},
                    {DType::F16, 1, 50, 64, true, -1}, {DType::BF16, 2, 9, 64, false, -1}, {DType::BF16, 1, 300, 512, false, -1},
                    {DType::Q4_K, 1, 300, 512, false, 10}, {DType::BF16, 5, 130, 512, false, -1},
                    {DType::F16, 16, 66, 256, true, -1}, {DType::BF16, 16, 66, 256, false, 13}, {DType::BF16, 9, 6, 512, false, -1}};
                    // the 300 x 512 ones make the work worth threads; 9 x 6 x 512 is split over M
  constexpr int n = int(sizeof(js) / sizeof(js[0]));
  std::vector<std::vector<uint8_t>> wb(n);
  std::vector<Buf> xs(n), y0(n);
  for (int i = 0; i < n; ++i) {
    const Job& j = js[i];
    Buf wf = rnd(size_t(j.N * j.K), uint32_t(20 + i));
    wb[size_t(i)].resize(dtype_row_bytes(j.t, j.K) * size_t(j.N));
    if (j.t == DType::BF16) for (size_t k = 0; k < wf.size(); ++k) { uint16_t h = f32_to_bf16(wf[k]); std::memcpy(&wb[size_t(i)][2 * k], &h, 2); }
    else if (j.t == DType::F16) for (size_t k = 0; k < wf.size(); ++k) { uint16_t h = f32_to_f16(wf[k]); std::memcpy(&wb[size_t(i)][2 * k], &h, 2); }
    else quantize_tensor(j.t, wf.data(), wb[size_t(i)].data(), j.N * j.K);
    xs[size_t(i)] = j.xfrom >= 0 ? xs[size_t(j.xfrom)] : rnd(size_t(j.M * j.K), uint32_t(40 + i));
    y0[size_t(i)] = rnd(size_t(j.M * j.N), uint32_t(60 + i));  // what accumulate adds to
  }
  auto jobs_for = [&](std::vector<Buf>& ys) {
    std::vector<Backend::MatmulJob> out;
    for (int i = 0; i < n; ++i) {
      const Job& j = js[i];
      ys[size_t(i)] = y0[size_t(i)];
      out.push_back({mat(ys[size_t(i)].data(), j.M, j.N), mat(xs[size_t(j.xfrom >= 0 ? j.xfrom : i)].data(), j.M, j.K),
                     weight(wb[size_t(i)].data(), j.t, j.N, j.K), j.acc});
    }
    return out;
  };
  for (int act : {0, 1}) {
    const int prev = qmatmul_act_mode(act);
    std::vector<Buf> ref_y(n);
    auto ref_jobs = jobs_for(ref_y);
    B().ref->matmul_batch(ref_jobs.data(), n);
    for_each_fast([&](Backend& be, const std::string& path) {
      std::vector<Buf> one(n), all(n);
      auto singles = jobs_for(one);
      for (auto& j : singles) be.matmul(j.y, j.x, j.W, j.accumulate);
      auto batch = jobs_for(all);
      be.matmul_batch(batch.data(), n);
      for (int i = 0; i < n; ++i) {
        const std::string tag = path + " matmul_batch job " + std::to_string(i) + " act " + std::to_string(act);
        CHECK(std::memcmp(one[size_t(i)].data(), all[size_t(i)].data(), all[size_t(i)].size() * 4) == 0);
        check_close(tag, all[size_t(i)], ref_y[size_t(i)], act == 1 ? 2e-2 : 1e-4);
      }
      for (int threads : {1, 2, 3}) {
        ThreadPool p(threads);
        const auto other = make_backend("cpu", &p);
        std::vector<Buf> again(n);
        auto b2 = jobs_for(again);
        other->matmul_batch(b2.data(), n);
        for (int i = 0; i < n; ++i) CHECK(std::memcmp(again[size_t(i)].data(), all[size_t(i)].data(), all[size_t(i)].size() * 4) == 0);
      }
    });
    qmatmul_act_mode(prev);
  }
}

// ---- norms and elementwise ----------------------------------------------------------------------------------

TEST(backend_ops_rmsnorm_forward_backward) {
  for (int64_t R : {1, 5}) for (int64_t D : {7, 64}) for (bool gain : {true, false}) {
    Buf x = rnd(size_t(R * D), 21, -2, 2), w = rnd(size_t(D), 22, 0.5f, 1.5f), r = rnd(size_t(R * D), 23);
    Buf out_ref(x.size()), out(x.size()), rstd(static_cast<size_t>(R)), dx_ref(x.size()), dw_ref(size_t(D), 0.0f), dx(x.size()), dw(size_t(D), 0.0f);
    const Tensor wt = gain ? vec(w.data(), D) : none;
    B().ref->rmsnorm(mat(out_ref.data(), R, D), mat(x.data(), R, D), wt, 1e-6f, mat(rstd.data(), R, 1));
    B().ref->rmsnorm_backward(mat(dx_ref.data(), R, D), gain ? vec(dw_ref.data(), D) : none, mat(r.data(), R, D),
                              mat(x.data(), R, D), wt, mat(rstd.data(), R, 1));
    const std::string tag = " R" + std::to_string(R) + " D" + std::to_string(D) + (gain ? " gain" : "");
    for_each_fast([&](Backend& be, const std::string& path) {
      be.rmsnorm(mat(out.data(), R, D), mat(x.data(), R, D), wt, 1e-6f, none);
      check_close(path + " rmsnorm" + tag, out, out_ref, 2e-6);
      std::fill(dw.begin(), dw.end(), 0.0f);
      Buf g = r;  // dx aliasing dout is allowed
      be.rmsnorm_backward(mat(g.data(), R, D), gain ? vec(dw.data(), D) : none, mat(g.data(), R, D), mat(x.data(), R, D), wt, none);
      check_close(path + " rmsnorm_backward dx (aliased, rstd recomputed)" + tag, g, dx_ref, 2e-5);
      if (gain) check_close(path + " rmsnorm_backward dw" + tag, dw, dw_ref, 2e-5);
    });
    auto L = [&] { B().ref->rmsnorm(mat(out.data(), R, D), mat(x.data(), R, D), wt, 1e-6f, none); return dot(out, r); };
    check_fd("ref rmsnorm dx" + tag, x, L, dx_ref);
    if (gain) check_fd("ref rmsnorm dw" + tag, w, L, dw_ref);
  }
}

TEST(backend_ops_elementwise_forward_backward) {
  const int64_t R = 3, C = 11;
  const size_t n = size_t(R * C);
  Buf g = rnd(n, 31, -4, 4), u = rnd(n, 32), r = rnd(n, 33);
  // swiglu
  Buf out_ref(n), dg_ref(n), du_ref(n), out(n), dg(n), du(n);
  B().ref->swiglu(mat(out_ref.data(), R, C), mat(g.data(), R, C), mat(u.data(), R, C));
  B().ref->swiglu_backward(mat(dg_ref.data(), R, C), mat(du_ref.data(), R, C), mat(r.data(), R, C), mat(g.data(), R, C), mat(u.data(), R, C));
  for_each_fast([&](Backend& be, const std::string& path) {
    be.swiglu(mat(out.data(), R, C), mat(g.data(), R, C), mat(u.data(), R, C));
    check_close(path + " swiglu", out, out_ref, 2e-6);
    Buf d = r;
    be.swiglu_backward(mat(d.data(), R, C), mat(du.data(), R, C), mat(d.data(), R, C), mat(g.data(), R, C), mat(u.data(), R, C));
    check_close(path + " swiglu_backward dgate (aliased)", d, dg_ref, 2e-6);
    check_close(path + " swiglu_backward dup", du, du_ref, 2e-6);
  });
  auto Ls = [&] { B().ref->swiglu(mat(out.data(), R, C), mat(g.data(), R, C), mat(u.data(), R, C)); return dot(out, r); };
  check_fd("ref swiglu dgate", g, Ls, dg_ref);
  check_fd("ref swiglu dup", u, Ls, du_ref);
  // sigmoid: backward from the output
  {
    Buf y = g, d = r;
    B().ref->sigmoid(mat(y.data(), R, C));
    B().ref->sigmoid_backward(mat(d.data(), R, C), mat(y.data(), R, C));
    auto L = [&] { Buf t = g; B().ref->sigmoid(mat(t.data(), R, C)); return dot(t, r); };
    check_fd("ref sigmoid", g, L, d);
  }
  // clamp: points away from the kink
  {
    Buf x = rnd(n, 34, -3, 3);
    for (auto& v : x) if (std::fabs(std::fabs(v) - 1.5f) < 0.05f) v += 0.2f;
    Buf d = r;
    B().ref->clamp_backward(mat(d.data(), R, C), mat(x.data(), R, C), 1.5f);
    auto L = [&] { Buf t = x; B().ref->clamp(mat(t.data(), R, C), 1.5f); return dot(t, r); };
    check_fd("ref clamp", x, L, d);
  }
  // mul_cols, add, add_bias (linear: their backward is the same op on dout; checked by definition)
  {
    Buf x = g, col = rnd(size_t(C), 35), y = u;
    B().ref->mul_cols(mat(x.data(), R, C), vec(col.data(), C));
    for (int64_t i = 0; i < R * C; ++i) CHECK_NEAR(x[size_t(i)], g[size_t(i)] * col[size_t(i % C)], 1e-7);
    B().ref->add(mat(y.data(), R, C), mat(g.data(), R, C));
    for (size_t i = 0; i < n; ++i) CHECK_NEAR(y[i], u[i] + g[i], 1e-6);
  }
}

TEST(backend_ops_rope_forward_backward) {
  const int64_t T = 3, H = 2, hd = 8, half = hd / 2;
  Buf x = rnd(size_t(T * H * hd), 41), r = rnd(x.size(), 42);
  Buf cs(size_t(T * half)), sn(size_t(T * half));
  for (int64_t t = 0; t < T; ++t) for (int64_t j = 0; j < half; ++j) {
    const double a = double(t + 5) / std::pow(100.0, double(j) / half);
    cs[size_t(t * half + j)] = float(std::cos(a)); sn[size_t(t * half + j)] = float(std::sin(a));
  }
  Buf y_ref = x, y = x, d_ref = r;
  B().ref->rope(mat3(y_ref.data(), T, H, hd), mat(cs.data(), T, half), mat(sn.data(), T, half));
  B().ref->rope_backward(mat3(d_ref.data(), T, H, hd), mat(cs.data(), T, half), mat(sn.data(), T, half));
  for_each_fast([&](Backend& be, const std::string& path) {
    Buf a = x, d = r;
    be.rope(mat3(a.data(), T, H, hd), mat(cs.data(), T, half), mat(sn.data(), T, half));
    check_close(path + " rope", a, y_ref, 1e-6);
    be.rope_backward(mat3(d.data(), T, H, hd), mat(cs.data(), T, half), mat(sn.data(), T, half));
    check_close(path + " rope_backward", d, d_ref, 1e-6);
  });
  auto L = [&] { y = x; B().ref->rope(mat3(y.data(), T, H, hd), mat(cs.data(), T, half), mat(sn.data(), T, half)); return dot(y, r); };
  check_fd("ref rope", x, L, d_ref);
}

// ---- attention --------------------------------------------------------------------------------------------

TEST(backend_ops_attention_forward_backward) {
  struct Case { int64_t T, pos0, Hq, Hkv, hd; };
  // (70 and 130 tokens: the cpu backward's 64-token blocks, one that ends mid-way and one past a cached prefix; the
  // finite differences check ref on the small cases only)
  for (Case c : {Case{1, 0, 2, 1, 4}, Case{4, 0, 4, 2, 8}, Case{3, 5, 4, 4, 6}, Case{1, 9, 6, 2, 16}, Case{70, 5, 4, 2, 8},
                 Case{130, 0, 2, 1, 16}}) {
    const int64_t n_all = c.pos0 + c.T, ctx = n_all + 2;
    const float scale = 1.0f / std::sqrt(float(c.hd));
    Buf q = rnd(size_t(c.T * c.Hq * c.hd), 51, -2, 2), K = rnd(size_t(ctx * c.Hkv * c.hd), 52, -2, 2), V = rnd(K.size(), 53);
    Buf r = rnd(q.size(), 54);
    Buf out_ref(q.size()), out(q.size()), att(size_t(c.T * c.Hq * n_all)), scr(size_t(3 * ctx));
    const Tensor Kt = mat3(K.data(), ctx, c.Hkv, c.hd), Vt = mat3(V.data(), ctx, c.Hkv, c.hd), qt = mat3(q.data(), c.T, c.Hq, c.hd);
    B().ref->attention(mat3(out_ref.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, mat(att.data(), c.T * c.Hq, n_all),
                       mat(scr.data(), 1, ctx));
    Buf dq_ref(q.size()), dK_ref(K.size(), 0.0f), dV_ref(V.size(), 0.0f);
    B().ref->attention_backward(mat3(dq_ref.data(), c.T, c.Hq, c.hd), mat3(dK_ref.data(), ctx, c.Hkv, c.hd),
                                mat3(dV_ref.data(), ctx, c.Hkv, c.hd), mat3(r.data(), c.T, c.Hq, c.hd), qt, Kt, Vt,
                                mat(att.data(), c.T * c.Hq, n_all), c.pos0, scale);
    const std::string tag = " T" + std::to_string(c.T) + " pos0 " + std::to_string(c.pos0) + " Hq" + std::to_string(c.Hq) + " Hkv" + std::to_string(c.Hkv);
    for_each_fast([&](Backend& be, const std::string& path) {
      Buf att2(att.size(), 7.0f), dq(q.size()), dK(K.size(), 0.0f), dV(V.size(), 0.0f);
      be.attention(mat3(out.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, mat(att2.data(), c.T * c.Hq, n_all), mat(scr.data(), 3, ctx));
      check_close(path + " attention" + tag, out, out_ref, 2e-6);
      check_close(path + " attention probs" + tag, att2, att, 2e-6);
      be.attention_backward(mat3(dq.data(), c.T, c.Hq, c.hd), mat3(dK.data(), ctx, c.Hkv, c.hd), mat3(dV.data(), ctx, c.Hkv, c.hd),
                            mat3(r.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, mat(att.data(), c.T * c.Hq, n_all), c.pos0, scale);
      check_close(path + " attention_backward dq" + tag, dq, dq_ref, 2e-5);
      check_close(path + " attention_backward dK" + tag, dK, dK_ref, 2e-5);
      check_close(path + " attention_backward dV" + tag, dV, dV_ref, 2e-5);
    });
    auto L = [&] {
      B().ref->attention(mat3(out.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, none, mat(scr.data(), 1, ctx));
      return dot(out, r);
    };
    if (c.T > 4) continue;
    check_fd("ref attention dq" + tag, q, L, dq_ref);
    check_fd("ref attention dK" + tag, K, L, dK_ref, 80);
    check_fd("ref attention dV" + tag, V, L, dV_ref, 80);
  }
}

// The inference forward (no probabilities kept) on both cpu paths, the blocked (flash-style) one forced where the
// shape alone would pick rows, over f32, f16 and int8 caches, against ref (double sums, one softmax per row). Cases: blocks
// that end mid-tile, the causal edge inside and across 64-key tiles, a group larger than a block's rows (64 query
// heads on one KV head), group sizes that do not divide the block, head dims that are not a multiple of the lanes,
// q scores spread over [−6, 6] so the softmax is far from flat. Tolerance 5e-6 of the outputs' scale (measured
// ≤ 9e-7 up to 330 keys): float sums (the ref's are double), a ~1 ulp exp, and past 2048 keys the splits' merge. Blocked results are each
// block's own arithmetic, and the row path's key splits follow the shape alone, so both must be bit-identical for
// 1, 2 and 3 threads.
TEST(backend_ops_attention_blocked_matches_ref) {
  struct Case { int64_t T, pos0, Hq, Hkv, hd; };
  ThreadPool p1(1), p2(2);
  auto cpu1 = make_backend("cpu", &p1), cpu2 = make_backend("cpu", &p2);
  for (Case c : {Case{16, 0, 8, 2, 64}, Case{37, 70, 16, 4, 64}, Case{5, 130, 4, 4, 8}, Case{3, 200, 64, 1, 16},
                 Case{9, 63, 6, 2, 80}, Case{70, 250, 4, 2, 128}, Case{1, 40, 4, 1, 32},
                 // decode past 2048 keys: the grouped row path's key splits (3 splits, the last ragged; a token whose
                 // keys end on a split's edge; a group of 6 = a chunk of 4 heads and one of 2)
                 Case{1, 4500, 8, 2, 64}, Case{2, 2047, 8, 1, 32}, Case{1, 2100, 12, 2, 16}}) {
    const int64_t n_all = c.pos0 + c.T, ctx = n_all + 3, kd = c.Hkv * c.hd;
    const float scale = 1.0f / std::sqrt(float(c.hd));
    const float qs = 6.0f * std::sqrt(float(c.hd)) / float(c.hd);  // scale·q·k over about ±6
    Buf q = rnd(size_t(c.T * c.Hq * c.hd), 61, -qs, qs), K = rnd(size_t(ctx * kd), 62, -1, 1), V = rnd(K.size(), 63);
    Buf out_ref(q.size()), out8_ref(q.size()), scr(size_t(3 * ctx));
    std::vector<int8_t> K8(K.size()), V8(V.size());
    Buf Ks(size_t(ctx * c.Hkv)), Vs(Ks.size());
    B().ref->kv_quantize(int8_rows(K8.data(), ctx * c.Hkv, c.hd), mat(Ks.data(), ctx * c.Hkv, 1), mat(K.data(), ctx * c.Hkv, c.hd));
    B().ref->kv_quantize(int8_rows(V8.data(), ctx * c.Hkv, c.hd), mat(Vs.data(), ctx * c.Hkv, 1), mat(V.data(), ctx * c.Hkv, c.hd));
    const Tensor Kt = mat3(K.data(), ctx, c.Hkv, c.hd), Vt = mat3(V.data(), ctx, c.Hkv, c.hd), qt = mat3(q.data(), c.T, c.Hq, c.hd);
    const Tensor K8t = int8_cache(K8.data(), ctx, c.Hkv, c.hd), V8t = int8_cache(V8.data(), ctx, c.Hkv, c.hd);
    const Tensor Kst = mat(Ks.data(), ctx, c.Hkv), Vst = mat(Vs.data(), ctx, c.Hkv);
    std::vector<uint16_t> K16(K.size()), V16(V.size());
    B().ref->copy(f16_rows(K16.data(), ctx * c.Hkv, c.hd), mat(K.data(), ctx * c.Hkv, c.hd));
    B().ref->copy(f16_rows(V16.data(), ctx * c.Hkv, c.hd), mat(V.data(), ctx * c.Hkv, c.hd));
    const Tensor K16t = f16_cache(K16.data(), ctx, c.Hkv, c.hd), V16t = f16_cache(V16.data(), ctx, c.Hkv, c.hd);
    Buf out16_ref(q.size());
    B().ref->attention(mat3(out16_ref.data(), c.T, c.Hq, c.hd), qt, K16t, V16t, c.pos0, scale, none, mat(scr.data(), 1, ctx));
    B().ref->attention(mat3(out_ref.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, none, mat(scr.data(), 1, ctx));
    B().ref->attention_kv8(mat3(out8_ref.data(), c.T, c.Hq, c.hd), qt, K8t, Kst, V8t, Vst, c.pos0, scale, mat(scr.data(), 1, ctx));
    const std::string tag = " T" + std::to_string(c.T) + " pos0 " + std::to_string(c.pos0) + " Hq" + std::to_string(c.Hq) +
                            " Hkv" + std::to_string(c.Hkv) + " hd" + std::to_string(c.hd);
    for (int path : {1, 2}) {
      const int prev = attention_force_path(path);
      const std::string how = path == 1 ? " rows" : " blocked";
      for_each_fast([&](Backend& be, const std::string& name) {
        Buf out(q.size(), 7.0f), out8(q.size(), 7.0f);
        be.attention(mat3(out.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, none, mat(scr.data(), 3, ctx));
        check_close(name + how + " attention" + tag, out, out_ref, 5e-6);
        be.attention_kv8(mat3(out8.data(), c.T, c.Hq, c.hd), qt, K8t, Kst, V8t, Vst, c.pos0, scale, mat(scr.data(), 3, ctx));
        check_close(name + how + " attention_kv8" + tag, out8, out8_ref, 5e-6);
        Buf out16(q.size(), 7.0f);
        be.attention(mat3(out16.data(), c.T, c.Hq, c.hd), qt, K16t, V16t, c.pos0, scale, none, mat(scr.data(), 3, ctx));
        check_close(name + how + " attention f16" + tag, out16, out16_ref, 5e-6);
        // the append: F16C's rounding (or the portable path's) gives ref's bits
        std::vector<uint16_t> K16b(K.size());
        be.copy(f16_rows(K16b.data(), ctx * c.Hkv, c.hd), mat(K.data(), ctx * c.Hkv, c.hd));
        CHECK(K16b == K16);
        for (Backend* other : {cpu1.get(), cpu2.get()}) {
          Buf o2(q.size()), o8(q.size());
          other->attention(mat3(o2.data(), c.T, c.Hq, c.hd), qt, Kt, Vt, c.pos0, scale, none, mat(scr.data(), 3, ctx));
          other->attention_kv8(mat3(o8.data(), c.T, c.Hq, c.hd), qt, K8t, Kst, V8t, Vst, c.pos0, scale, mat(scr.data(), 3, ctx));
          CHECK(std::memcmp(o2.data(), out.data(), out.size() * 4) == 0);
          CHECK(std::memcmp(o8.data(), out8.data(), out8.size() * 4) == 0);
          Buf o16(q.size());
          other->attention(mat3(o16.data(), c.T, c.Hq, c.hd), qt, K16t, V16t, c.pos0, scale, none, mat(scr.data(), 3, ctx));
          CHECK(std::memcmp(o16.data(), out16.data(), out16.size() * 4) == 0);
        }
      });
      attention_force_path(prev);
    }
  }
}

// ---- MoE routing, expert rows ---------------------------------------------------------------------------------

TEST(backend_ops_moe_route_forward_backward) {
  const int64_t T = 5, E = 6;
  for (int k : {1, 2, 3}) for (bool renorm : {false, true}) {
    // logits spread out so no two probabilities are within the finite-difference step of a tie
    Buf logits(size_t(T * E));
    std::mt19937 gen(61);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int> perm(static_cast<size_t>(E));
      for (int e = 0; e < E; ++e) perm[size_t(e)] = e;
      std::shuffle(perm.begin(), perm.end(), gen);
      for (int e = 0; e < E; ++e) logits[size_t(t * E + e)] = 0.4f * float(perm[size_t(e)]) + 0.05f * float(e % 3);
    }
    std::vector<int32_t> idx(size_t(T * k)), idx2(idx.size());
    Buf w(size_t(T * k)), w2(w.size()), probs(logits.size()), probs2(logits.size()), r = rnd(w.size(), 62);
    B().ref->moe_route(ivec(idx.data(), T * k), mat(w.data(), T, k), mat(probs.data(), T, E), mat(logits.data(), T, E), renorm);
    B().cpu->moe_route(ivec(idx2.data(), T * k), mat(w2.data(), T, k), mat(probs2.data(), T, E), mat(logits.data(), T, E), renorm);
    CHECK(idx == idx2);
    check_close("cpu moe_route w", w2, w, 1e-6);
    for (int64_t t = 0; t < T; ++t) for (int j = 1; j < k; ++j) CHECK(probs[size_t(t * E + idx[size_t(t * k + j - 1)])] >= probs[size_t(t * E + idx[size_t(t * k + j)])]);
    Buf dl(logits.size());
    B().ref->moe_route_backward(mat(dl.data(), T, E), mat(r.data(), T, k), ivec(idx.data(), T * k), mat(w.data(), T, k),
                                mat(probs.data(), T, E), renorm);
    auto L = [&] {
      B().ref->moe_route(ivec(idx2.data(), T * k), mat(w2.data(), T, k), mat(probs2.data(), T, E), mat(logits.data(), T, E), renorm);
      return dot(w2, r);
    };
    check_fd("ref moe_route k" + std::to_string(k) + (renorm ? " renorm" : ""), logits, L, dl, 0, 1e-3f, 5e-4, 1e-2);
  }
}

TEST(backend_ops_expert_rows_gather_scatter) {
  const int64_t T = 6, D = 5;
  Buf src = rnd(size_t(T * D), 71);
  // an expert with no tokens (n = 0), one token, and tokens repeated (a token routed twice)
  for (std::vector<int32_t> rows : {std::vector<int32_t>{}, std::vector<int32_t>{4}, std::vector<int32_t>{0, 2, 2, 5}}) {
    const int64_t n = int64_t(rows.size());
    Buf g(size_t(std::max<int64_t>(1, n) * D), 0.0f), w = rnd(size_t(std::max<int64_t>(1, n)), 72), y = rnd(size_t(n * D), 73);
    B().cpu->gather_rows(mat(g.data(), n, D), mat(src.data(), T, D), ivec(rows.data(), n));
    for (int64_t i = 0; i < n; ++i) for (int64_t c = 0; c < D; ++c) CHECK(g[size_t(i * D + c)] == src[size_t(rows[size_t(i)] * D + c)]);
    Buf dst(size_t(T * D), 0.0f), dst_ref(dst.size(), 0.0f);
    for (int64_t i = 0; i < n; ++i) for (int64_t c = 0; c < D; ++c) dst_ref[size_t(rows[size_t(i)] * D + c)] += w[size_t(i)] * y[size_t(i * D + c)];
    B().cpu->scatter_add_rows(mat(dst.data(), T, D), mat(y.data(), n, D), ivec(rows.data(), n), vec(w.data(), n));
    check_close("cpu scatter_add_rows n" + std::to_string(n), dst, dst_ref, 1e-6);
    // weights' gradient: d/dw_i Σ r ⊙ dst = r[rows[i]] · y[i]
    Buf r = rnd(dst.size(), 74), dw(size_t(std::max<int64_t>(1, n)));
    B().cpu->row_dots(vec(dw.data(), n), mat(r.data(), T, D), ivec(rows.data(), n), mat(y.data(), n, D));
    if (n == 0) continue;
    auto L = [&] {
      Buf d(size_t(T * D), 0.0f);
      B().ref->scatter_add_rows(mat(d.data(), T, D), mat(y.data(), n, D), ivec(rows.data(), n), vec(w.data(), n));
      return dot(d, r);
    };
    Buf wn(w.begin(), w.begin() + n), dwn(dw.begin(), dw.begin() + n);
    w.assign(wn.begin(), wn.end());
    check_fd("ref scatter_add_rows dw", w, L, dwn);
  }
  std::vector<int32_t> bad{int32_t(T)};
  Buf g(static_cast<size_t>(D));
  CHECK_THROWS(B().ref->gather_rows(mat(g.data(), 1, D), mat(src.data(), T, D), ivec(bad.data(), 1)), "row 6 of 6");
}

// ---- embedding, loss, optimizer ---------------------------------------------------------------------------------

TEST(backend_ops_embedding_cross_entropy_adamw) {
  // embedding from a bf16 table; an id out of range is an error, not a wrapped index
  {
    const int64_t V = 9, D = 6;
    Buf tf = rnd(size_t(V * D), 81);
    std::vector<uint16_t> tb(tf.size());
    for (size_t i = 0; i < tf.size(); ++i) tb[i] = f32_to_bf16(tf[i]);
    std::vector<int32_t> ids{3, 0, 8, 3};
    Buf x(size_t(4 * D));
    B().cpu->embedding(mat(x.data(), 4, D), weight(tb.data(), DType::BF16, V, D), ivec(ids.data(), 4));
    for (int t = 0; t < 4; ++t) for (int64_t c = 0; c < D; ++c) CHECK(x[size_t(t * D + c)] == bf16_to_f32(tb[size_t(ids[size_t(t)] * D + c)]));
    ids[1] = int32_t(V);
    CHECK_THROWS(B().cpu->embedding(mat(x.data(), 4, D), weight(tb.data(), DType::BF16, V, D), ivec(ids.data(), 4)), "token id 9 is out of range [0, 9)");
  }
  // cross-entropy of a chunk with an ignored row
  {
    const int64_t n = 4, V = 13;
    Buf logits = rnd(size_t(n * V), 82, -3, 3);
    std::vector<int32_t> labels{5, -100, 0, 12};
    const float scale = 1.0f / 3.0f;
    Buf d_ref = logits, d = logits;
    const double loss_ref = B().ref->cross_entropy(mat(d_ref.data(), n, V), ivec(labels.data(), n), scale);
    const double loss = B().cpu->cross_entropy(mat(d.data(), n, V), ivec(labels.data(), n), scale);
    CHECK_NEAR(loss, loss_ref, 1e-5 * std::fabs(loss_ref));
    check_close("cpu cross_entropy dlogits", d, d_ref, 1e-6);
    for (int64_t i = 0; i < V; ++i) CHECK(d_ref[size_t(V + i)] == 0.0f);
    auto L = [&] { Buf t = logits; return double(scale) * B().ref->cross_entropy(mat(t.data(), n, V), ivec(labels.data(), n), 1.0f); };
    check_fd("ref cross_entropy", logits, L, d_ref);
    labels[0] = int32_t(V);
    CHECK_THROWS(B().cpu->cross_entropy(mat(d.data(), n, V), ivec(labels.data(), n), scale), "label 13 is out of range");
  }
  // AdamW against the update written out in double from torch.optim.AdamW's definition, 3 steps
  {
    const int64_t n = 10;
    Buf p = rnd(size_t(n), 83), m(size_t(n), 0.0f), v(size_t(n), 0.0f);
    std::vector<double> pd(p.begin(), p.end()), md(size_t(n), 0.0), vd(size_t(n), 0.0);
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    for (int64_t step = 1; step <= 3; ++step) {
      Buf g = rnd(size_t(n), uint32_t(84 + step));
      for (int64_t i = 0; i < n; ++i) {
        pd[size_t(i)] *= 1 - lr * wd;
        md[size_t(i)] = b1 * md[size_t(i)] + (1 - b1) * g[size_t(i)];
        vd[size_t(i)] = b2 * vd[size_t(i)] + (1 - b2) * double(g[size_t(i)]) * g[size_t(i)];
        const double mh = md[size_t(i)] / (1 - std::pow(b1, double(step))), vh = vd[size_t(i)] / (1 - std::pow(b2, double(step)));
        pd[size_t(i)] -= lr * mh / (std::sqrt(vh) + eps);
      }
      B().cpu->adamw(vec(p.data(), n), vec(g.data(), n), vec(m.data(), n), vec(v.data(), n), float(lr), float(b1), float(b2),
                     float(eps), float(wd), step);
    }
    for (int64_t i = 0; i < n; ++i) CHECK_NEAR(p[size_t(i)], pd[size_t(i)], 1e-6);
  }
}
