// Every CUDA kernel (kernels/*.cuh) run on the CPU under the SIMT emulation (moe::emu::*) against a plain
// double-precision reference written here. Tolerances: the kernels accumulate in f32 in a different order
// (warp butterflies), so the bound is a few f32 ulps times the sum of |terms|, stated per test.
#ifdef MOE_HAVE_SIMT_EMU  // defined by kernels/kernels.cmake where ucontext fibers exist
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <cstdint>
#include <random>
#include <vector>
#include "format/dtype.h"
#include "kernels/kernels.h"
#include "tests/test.h"

namespace {

inline size_t sz(int64_t n) { return size_t(n); }  // also dodges the vexing parse of vector<T> v(size_t(n))

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// max |a - b| / (atol + rtol*|b|) <= 1 for every element
bool close_all(const std::vector<float>& a, const std::vector<double>& b, double atol, double rtol, const char* what) {
  for (size_t i = 0; i < b.size(); ++i) {
    if (!(std::fabs(double(a[i]) - b[i]) <= atol + rtol * std::fabs(b[i]))) {
      std::fprintf(stderr, "  %s: element %zu: got %.9g want %.9g\n", what, i, double(a[i]), b[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

TEST(kernels_rmsnorm_matches_reference) {
  const int64_t T = 5, D = 1000;  // D not a multiple of the 256-thread block
  const float eps = 1e-6f;
  auto x = randn(size_t(T * D), 1, 2.0f), w = randn(size_t(D), 2);
  std::vector<float> y(sz(T * D)), rstd(sz(T));
  moe::emu::rmsnorm(y.data(), D, rstd.data(), x.data(), D, w.data(), T, D, eps);
  std::vector<double> ref(sz(T * D)), rref(sz(T));
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0; for (int64_t d = 0; d < D; ++d) ss += double(x[size_t(t * D + d)]) * x[size_t(t * D + d)];
    rref[size_t(t)] = 1.0 / std::sqrt(ss / double(D) + eps);
    for (int64_t d = 0; d < D; ++d) ref[size_t(t * D + d)] = w[size_t(d)] * x[size_t(t * D + d)] * rref[size_t(t)];
  }
  CHECK(close_all(y, ref, 1e-6, 1e-5, "rmsnorm y"));
  CHECK(close_all(rstd, rref, 0, 1e-5, "rmsnorm rstd"));
  // in place (y aliases x), no rstd
  std::vector<float> xi = x;
  moe::emu::rmsnorm(xi.data(), D, nullptr, xi.data(), D, w.data(), T, D, eps);
  CHECK(close_all(xi, ref, 1e-6, 1e-5, "rmsnorm in place"));
}

TEST(kernels_rope_neox_matches_reference) {
  for (int64_t rot : {64, 32}) {  // full and partial rotary
    const int64_t T = 3, H = 4, Dh = 64, P = 128, stride = H * Dh + 40;  // stride > H*Dh: heads inside a fused row
    const double theta = 10000.0;
    std::vector<float> cs(sz(P * rot / 2)), sn(sz(P * rot / 2));
    for (int64_t p = 0; p < P; ++p)
      for (int64_t i = 0; i < rot / 2; ++i) {
        const double a = double(p) * std::pow(theta, -2.0 * double(i) / double(rot));
        cs[size_t(p * rot / 2 + i)] = float(std::cos(a)); sn[size_t(p * rot / 2 + i)] = float(std::sin(a));
      }
    std::vector<int32_t> pos = {7, 0, 100};
    auto x = randn(size_t(T * stride), 3);
    std::vector<double> ref(x.begin(), x.end());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < rot / 2; ++i) {
          const size_t a = size_t(t * stride + h * Dh + i), b = a + size_t(rot / 2);
          const double c = cs[size_t(pos[size_t(t)] * rot / 2 + i)], s = sn[size_t(pos[size_t(t)] * rot / 2 + i)];
          ref[a] = double(x[a]) * c - double(x[b]) * s;
          ref[b] = double(x[b]) * c + double(x[a]) * s;
        }
    moe::emu::rope_neox(x.data(), cs.data(), sn.data(), pos.data(), T, H, Dh, rot, stride, Dh, false);
    CHECK(close_all(x, ref, 1e-6, 1e-6, "rope"));  // untouched tail columns compare exactly
  }
}

TEST(kernels_matvec_f32_f16_bf16_match_reference) {
  const int64_t N = 37;
  for (int64_t K : {1000, 1003, 24}) {  // 1000: vector path; 1003: rows misaligned, scalar path; 24: short rows
    auto wf = randn(size_t(N * K) + 8, 4, 0.05f), x = randn(size_t(K) + 4, 5), bias = randn(size_t(N), 6);
    for (moe::DType dt : {moe::DType::F32, moe::DType::F16, moe::DType::BF16}) {
      std::vector<uint16_t> w16(wf.size());
      std::vector<double> wref(wf.size());
      for (size_t i = 0; i < wf.size(); ++i) {
        if (dt == moe::DType::F16) { w16[i] = moe::f32_to_f16(wf[i]); wref[i] = moe::f16_to_f32(w16[i]); }
        else if (dt == moe::DType::BF16) { w16[i] = moe::f32_to_bf16(wf[i]); wref[i] = moe::bf16_to_f32(w16[i]); }
        else wref[i] = wf[i];
      }
      const void* W = dt == moe::DType::F32 ? static_cast<const void*>(wf.data()) : static_cast<const void*>(w16.data());
      for (bool with_bias : {false, true}) {
        std::vector<float> y(sz(N));
        moe::emu::matvec(y.data(), W, dt, x.data(), with_bias ? bias.data() : nullptr, N, K);
        std::vector<double> ref(sz(N));
        double worst_abs_sum = 0;
        for (int64_t n = 0; n < N; ++n) {
          double acc = with_bias ? bias[size_t(n)] : 0.0, abs_sum = 0;
          for (int64_t k = 0; k < K; ++k) { const double p = wref[size_t(n * K + k)] * x[size_t(k)]; acc += p; abs_sum += std::fabs(p); }
          ref[size_t(n)] = acc; worst_abs_sum = std::max(worst_abs_sum, abs_sum);
        }
        // f32 accumulation of K products: |err| <= ~K * 2^-24 * sum|terms|; we ask for 2e-6 * sum|terms|.
        CHECK(close_all(y, ref, 2e-6 * worst_abs_sum + 1e-6, 0, moe::dtype_name(dt)));
      }
    }
  }
  // a misaligned x (x + 1 is 4 mod 16) must still be right: falls back to scalar loads
  const int64_t K = 64;
  auto wf = randn(size_t(N * K), 7), xb = randn(size_t(K) + 1, 8);
  std::vector<float> y(sz(N));
  moe::emu::matvec(y.data(), wf.data(), moe::DType::F32, xb.data() + 1, nullptr, N, K);
  std::vector<double> ref(sz(N));
  for (int64_t n = 0; n < N; ++n) for (int64_t k = 0; k < K; ++k) ref[size_t(n)] += double(wf[size_t(n * K + k)]) * xb[size_t(k + 1)];
  CHECK(close_all(y, ref, 1e-4, 0, "matvec misaligned x"));
}

TEST(kernels_swiglu_matches_reference) {
  const int64_t n = 1000;
  auto g = randn(size_t(n), 9, 3.0f), u = randn(size_t(n), 10);
  std::vector<float> out(sz(n));
  moe::emu::swiglu(out.data(), n, g.data(), n, u.data(), n, 1, n);
  std::vector<double> ref(sz(n));
  for (size_t i = 0; i < size_t(n); ++i) ref[i] = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
  CHECK(close_all(out, ref, 1e-7, 1e-6, "swiglu"));
}

TEST(kernels_moe_route_matches_reference) {
  struct Case { int64_t T, E, k; bool renorm; };
  for (Case c : {Case{7, 60, 4, true}, Case{7, 60, 4, false}, Case{5, 16, 1, false}, Case{9, 128, 8, true}, Case{3, 8, 8, true}}) {
    auto logits = randn(size_t(c.T * c.E), uint32_t(11 + c.E + c.k), 2.0f);
    std::vector<float> w(sz(c.T * c.k));
    std::vector<int32_t> ids(sz(c.T * c.k));
    moe::emu::moe_route(w.data(), ids.data(), nullptr, logits.data(), c.T, c.E, c.k, c.renorm);
    bool ids_ok = true;
    std::vector<float> got; std::vector<double> want;
    for (int64_t t = 0; t < c.T; ++t) {
      const float* l = logits.data() + t * c.E;
      double m = l[0]; for (int64_t e = 1; e < c.E; ++e) m = std::max(m, double(l[e]));
      std::vector<double> p(sz(c.E)); double s = 0;
      for (int64_t e = 0; e < c.E; ++e) { p[size_t(e)] = std::exp(double(l[e]) - m); s += p[size_t(e)]; }
      for (auto& v : p) v /= s;
      std::vector<int> order(sz(c.E));
      for (int e = 0; e < int(c.E); ++e) order[size_t(e)] = e;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
      double sel = 0; for (int64_t j = 0; j < c.k; ++j) sel += p[size_t(order[size_t(j)])];
      for (int64_t j = 0; j < c.k; ++j) {
        ids_ok &= ids[size_t(t * c.k + j)] == order[size_t(j)];
        got.push_back(w[size_t(t * c.k + j)]);
        want.push_back(p[size_t(order[size_t(j)])] / (c.renorm ? sel : 1.0));
      }
    }
    CHECK(ids_ok);
    CHECK(close_all(got, want, 1e-7, 1e-5, "moe_route weights"));
  }
  // ties: all-equal logits pick experts 0..k-1 with weight 1/E (1/k renormalised)
  std::vector<float> flat(2 * 10, 0.5f), w(2 * 3); std::vector<int32_t> ids(2 * 3);
  moe::emu::moe_route(w.data(), ids.data(), nullptr, flat.data(), 2, 10, 3, true);
  for (int j = 0; j < 6; ++j) { CHECK(ids[size_t(j)] == j % 3); CHECK_NEAR(w[size_t(j)], 1.0 / 3.0, 1e-6); }
}

TEST(kernels_attention_decode_matches_reference) {
  struct Case { int64_t Hq, Hkv, Dh, n_ctx; };
  for (Case c : {Case{8, 2, 64, 1}, Case{8, 2, 64, 3}, Case{8, 2, 64, 37}, Case{4, 4, 128, 50}, Case{6, 1, 80, 19}, Case{2, 1, 256, 9}}) {
    const int64_t max_ctx = c.n_ctx + 5, st = c.Hkv * c.Dh, sh = c.Dh;  // cache [max_ctx, Hkv, Dh], partly filled
    auto q = randn(size_t(c.Hq * c.Dh), uint32_t(20 + c.n_ctx)), k = randn(size_t(max_ctx * st), 21), v = randn(size_t(max_ctx * st), 22);
    const float scale = 1.0f / std::sqrt(float(c.Dh));
    std::vector<float> out(sz(c.Hq * c.Dh));
    moe::emu::attention_decode(out.data(), q.data(), k.data(), v.data(), c.Hq, c.Hkv, c.Dh, c.n_ctx, st, sh, scale);
    std::vector<double> ref(sz(c.Hq * c.Dh));
    for (int64_t h = 0; h < c.Hq; ++h) {
      const int64_t kh = h / (c.Hq / c.Hkv);
      std::vector<double> s(sz(c.n_ctx)); double m = -1e300;
      for (int64_t t = 0; t < c.n_ctx; ++t) {
        double d = 0; for (int64_t i = 0; i < c.Dh; ++i) d += double(q[size_t(h * c.Dh + i)]) * k[size_t(t * st + kh * sh + i)];
        s[size_t(t)] = d * scale; m = std::max(m, s[size_t(t)]);
      }
      double z = 0; for (auto& x : s) { x = std::exp(x - m); z += x; }
      for (int64_t t = 0; t < c.n_ctx; ++t)
        for (int64_t i = 0; i < c.Dh; ++i) ref[size_t(h * c.Dh + i)] += s[size_t(t)] / z * v[size_t(t * st + kh * sh + i)];
    }
    CHECK(close_all(out, ref, 2e-6, 2e-5, "attention_decode"));
  }
}

TEST(kernels_launchers_reject_bad_shapes) {
  float f = 0; int32_t i = 0;
  CHECK_THROWS(moe::emu::matvec(&f, &f, moe::DType::F32, &f, nullptr, 1, 0), "kernel matvec: K must be > 0");
  CHECK_THROWS(moe::emu::matvec(&f, &f, moe::DType::I8, &f, nullptr, 1, 1), "weight dtype i8");
  CHECK_THROWS(moe::emu::attention_decode(&f, &f, &f, &f, 2, 1, 300, 1, 300, 300, 1.0f), "kernel attention_decode: head_dim");
  CHECK_THROWS(moe::emu::attention_decode(&f, &f, &f, &f, 3, 2, 64, 1, 128, 64, 1.0f), "multiple of n_kv_heads");
  CHECK_THROWS(moe::emu::moe_route(&f, &i, nullptr, &f, 1, 4, 5, true), "kernel moe_route: k must be in 1..E");
  CHECK_THROWS(moe::emu::rope_neox(&f, &f, &f, &i, 1, 1, 8, 7, 8, 8, false), "rot_dim must be even");
  CHECK_THROWS(moe::emu::rmsnorm(&f, 1, nullptr, &f, 1, &f, 1, 0, 1e-6f), "kernel rmsnorm: D must be > 0");
}

TEST(kernels_matmul_matches_reference) {
  // M, N not multiples of the 64x64 tile, K not a multiple of the 16-wide K-step; ldx/ldy > K/N (views into wider rows)
  const int64_t M = 70, N = 37, K = 100, ldx = K + 3, ldy = N + 5;
  auto wf = randn(sz(N * K), 30, 0.1f), x = randn(sz(M * ldx), 31), bias = randn(sz(N), 32);
  for (moe::DType dt : {moe::DType::F32, moe::DType::F16, moe::DType::BF16}) {
    std::vector<uint16_t> w16(wf.size());
    std::vector<double> wref(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) {
      if (dt == moe::DType::F16) { w16[i] = moe::f32_to_f16(wf[i]); wref[i] = moe::f16_to_f32(w16[i]); }
      else if (dt == moe::DType::BF16) { w16[i] = moe::f32_to_bf16(wf[i]); wref[i] = moe::bf16_to_f32(w16[i]); }
      else wref[i] = wf[i];
    }
    const void* W = dt == moe::DType::F32 ? static_cast<const void*>(wf.data()) : static_cast<const void*>(w16.data());
    std::vector<float> y(sz(M * ldy), -7.0f);
    moe::emu::matmul(y.data(), ldy, x.data(), ldx, W, dt, bias.data(), M, N, K, false);
    std::vector<float> got; std::vector<double> want;
    bool pad_untouched = true;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double acc = bias[sz(n)];
        for (int64_t k = 0; k < K; ++k) acc += wref[sz(n * K + k)] * x[sz(m * ldx + k)];
        got.push_back(y[sz(m * ldy + n)]); want.push_back(acc);
      }
      for (int64_t n = N; n < ldy; ++n) pad_untouched &= y[sz(m * ldy + n)] == -7.0f;
    }
    CHECK(close_all(got, want, 1e-5, 1e-5, moe::dtype_name(dt)));  // sum|terms| ~ K * 0.1 * 0.8 ~ 8
    CHECK(pad_untouched);
    // blocks spread over 2 OS threads (each with its own __shared__ tiles) give bit-identical results
    std::vector<float> y2(sz(M * ldy), -7.0f);
    moe::emu::set_workers(2);
    moe::emu::matmul(y2.data(), ldy, x.data(), ldx, W, dt, bias.data(), M, N, K, false);
    moe::emu::set_workers(1);
    CHECK(y2 == y);
  }
}

TEST(kernels_argmax_and_embedding_match_reference) {
  const int64_t T = 5, V = 1001;
  auto logits = randn(sz(T * V), 40);
  logits[sz(2 * V + 17)] = 50.0f; logits[sz(2 * V + 900)] = 50.0f;  // tie: first index wins
  std::vector<int32_t> ids(sz(T));
  moe::emu::argmax(ids.data(), logits.data(), T, V);
  for (int64_t t = 0; t < T; ++t) {
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v) if (logits[sz(t * V + v)] > logits[sz(t * V + best)]) best = v;
    CHECK(ids[sz(t)] == int32_t(best));
  }
  CHECK(ids[2] == 17);

  const int64_t vocab = 11, D = 300;
  auto table = randn(sz(vocab * D), 41);
  std::vector<uint16_t> tb(table.size());
  for (size_t i = 0; i < table.size(); ++i) tb[i] = moe::f32_to_bf16(table[i]);
  std::vector<int32_t> tok = {3, 0, 10, 3};
  std::vector<float> out(sz(4 * D)), out16(sz(4 * D));
  moe::emu::embedding(out.data(), table.data(), moe::DType::F32, tok.data(), 4, vocab, D);
  moe::emu::embedding(out16.data(), tb.data(), moe::DType::BF16, tok.data(), 4, vocab, D);
  bool ok = true;
  for (size_t t = 0; t < 4; ++t)
    for (size_t d = 0; d < size_t(D); ++d) {
      ok &= out[t * size_t(D) + d] == table[size_t(tok[t]) * size_t(D) + d];
      ok &= out16[t * size_t(D) + d] == moe::bf16_to_f32(tb[size_t(tok[t]) * size_t(D) + d]);
    }
  CHECK(ok);
  std::vector<int32_t> bad = {11};
  moe::emu::embedding(out.data(), table.data(), moe::DType::F32, bad.data(), 1, vocab, D);
  CHECK(std::isnan(out[0]) && std::isnan(out[sz(D - 1)]));
}

#endif  // MOE_HAVE_SIMT_EMU

// The tensor-core product (kernels/matmul_tc.cuh) against the double reference on the same bf16 weights and f32 x:
// x's hi + lo split leaves |x − hi − lo| ≤ 2^-16 |x|, so ~2^-17 relative per term; tolerance 1e-4 of the output's
// scale (measured below, printed). Tails: M, N not multiples of the 32-tile, K not of the 16-deep step; strided
// rows; accumulate.
TEST(kernels_matmul_tc_bf16_matches_reference) {
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{70, 37, 100}, {1, 8, 16}, {33, 64, 256}}) {
    const int64_t ldx = K + 3, ldy = N + 5;
    auto wf = randn(sz(N * K), 40, 0.1f), x = randn(sz(M * ldx), 41), y0 = randn(sz(M * ldy), 42);
    std::vector<uint16_t> w16(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = moe::f32_to_bf16(wf[i]);
    for (bool acc : {false, true}) {
      std::vector<float> y = y0;
      moe::emu::matmul_tc_bf16(y.data(), ldy, x.data(), ldx, w16.data(), M, N, K, acc);
      double worst = 0, scale = 1e-3;
      std::vector<double> want(sz(M * N));
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double s = acc ? y0[sz(m * ldy + n)] : 0.0;
          for (int64_t k = 0; k < K; ++k) s += double(moe::bf16_to_f32(w16[sz(n * K + k)])) * x[sz(m * ldx + k)];
          want[sz(m * N + n)] = s;
          scale = std::max(scale, std::fabs(s));
        }
      bool pad_untouched = true;
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) worst = std::max(worst, std::fabs(y[sz(m * ldy + n)] - want[sz(m * N + n)]) / scale);
        for (int64_t n = N; n < ldy; ++n) pad_untouched &= y[sz(m * ldy + n)] == y0[sz(m * ldy + n)];
      }
      std::printf("  matmul_tc_bf16 M%lld N%lld K%lld%s: max error %.2e of the output's scale\n", (long long)M, (long long)N, (long long)K,
                  acc ? " accumulate" : "", worst);
      CHECK(worst <= 1e-4);
      CHECK(pad_untouched);
    }
  }
}
