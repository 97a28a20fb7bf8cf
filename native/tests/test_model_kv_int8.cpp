// int8 KV cache (backend kv_quantize / attention_kv8): quantized rows dequantize within half a step; attention over the
// int8 cache equals attention over the dequantized cache (same math, only summation order differs: 1e-5), on every backend.
#include <cmath>
#include <vector>
#include "cpu/thread_pool.h"
#include "backend/backend.h"
#include "tests/test.h"
#include "tests/test_format_util.h"

using namespace moe;

TEST(kv_int8_rows_roundtrip) {
  const int hd = 64, n = 10;
  auto x = moe_test::randn(size_t(n * hd), 1, 2.0f);
  x[5] = 0; for (int i = 0; i < hd; ++i) x[size_t(3 * hd + i)] = 0;  // an all-zero row
  std::vector<int8_t> q(x.size());
  std::vector<float> s(static_cast<size_t>(n));
  make_backend("ref")->kv_quantize(int8_rows(q.data(), n, hd), mat(s.data(), n, 1), mat(x.data(), n, hd));
  CHECK(s[3] == 0.0f);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < hd; ++i) CHECK_NEAR(s[size_t(r)] * q[size_t(r * hd + i)], x[size_t(r * hd + i)], 0.5 * s[size_t(r)] + 1e-12);
}

TEST(kv_int8_attention_matches_dequantized_cache) {
  ThreadPool pool(2);
  const int Hq = 4, Hkv = 2, hd = 32;
  const int64_t ctx = 12, pos0 = 5, T = 7, kd = Hkv * hd, qd = Hq * hd;
  auto K = moe_test::randn(size_t(ctx * kd), 2, 1.0f), V = moe_test::randn(size_t(ctx * kd), 3, 1.0f), q = moe_test::randn(size_t(T * qd), 4, 1.0f);
  std::vector<int8_t> K8(K.size()), V8(V.size());
  std::vector<float> Ks(static_cast<size_t>(ctx * Hkv)), Vs(static_cast<size_t>(ctx * Hkv));
  auto ref = make_backend("ref");
  ref->kv_quantize(int8_rows(K8.data(), ctx * Hkv, hd), mat(Ks.data(), ctx * Hkv, 1), mat(K.data(), ctx * Hkv, hd));
  ref->kv_quantize(int8_rows(V8.data(), ctx * Hkv, hd), mat(Vs.data(), ctx * Hkv, 1), mat(V.data(), ctx * Hkv, hd));
  std::vector<float> Kd(K.size()), Vd(V.size());
  for (int64_t r = 0; r < ctx * Hkv; ++r)
    for (int i = 0; i < hd; ++i) { Kd[size_t(r * hd + i)] = Ks[size_t(r)] * K8[size_t(r * hd + i)]; Vd[size_t(r * hd + i)] = Vs[size_t(r)] * V8[size_t(r * hd + i)]; }
  std::vector<float> a(static_cast<size_t>(T * qd)), b(static_cast<size_t>(T * qd)), exact(static_cast<size_t>(T * qd)), sc(static_cast<size_t>(pool.size() * ctx));
  const float scale = 1.0f / std::sqrt(float(hd));
  const Tensor none, scr = mat(sc.data(), pool.size(), ctx), q3 = mat3(q.data(), T, Hq, hd);
  for (const char* name : {"ref", "cpu"}) {
    auto be = make_backend(name, &pool);
    be->attention(mat3(a.data(), T, Hq, hd), q3, mat3(Kd.data(), ctx, Hkv, hd), mat3(Vd.data(), ctx, Hkv, hd), pos0, scale, none, scr);
    be->attention_kv8(mat3(b.data(), T, Hq, hd), q3, int8_cache(K8.data(), ctx, Hkv, hd), mat(Ks.data(), ctx, Hkv),
                      int8_cache(V8.data(), ctx, Hkv, hd), mat(Vs.data(), ctx, Hkv), pos0, scale, scr);
    be->attention(mat3(exact.data(), T, Hq, hd), q3, mat3(K.data(), ctx, Hkv, hd), mat3(V.data(), ctx, Hkv, hd), pos0, scale, none, scr);
    double err_q = 0;
    for (size_t i = 0; i < a.size(); ++i) { CHECK_NEAR(a[i], b[i], 1e-5); err_q = std::max(err_q, std::fabs(double(a[i]) - exact[i])); }
  // and the int8 cache itself moves outputs (of magnitude ~1) by about a quantization step (~1/127 of absmax)
    CHECK(err_q > 0 && err_q < 0.05);
  }
}
