// NF4 (quant/nf4.h) and the NF4 / dX kernels (cpu/nf4_matmul.h).
//
// 1. The code table is bitsandbytes' create_normal_map(offset=0.9677083, use_extra_value=True), recomputed here from
//    its definition: normal quantiles Φ⁻¹(p) at p = linspace(0.9677083, 0.5, 9)[:-1] (8 positive values) and
//    -Φ⁻¹(p) at linspace(0.9677083, 0.5, 8)[:-1] (7 negative), plus 0, each rounded to f32, sorted, divided by the
//    largest. Φ⁻¹ is implemented here (Acklam's rational approximation + one Halley step on erfc: double precision).
// 2. Round trips against an independent, deliberately plain implementation of the published algorithm (bitsandbytes'
//    torch backend: a linear count of the f32 midpoints below each scaled value, absmax double quantization), field
//    by field and value by value (exact: the same f32 operations in the same order), plus error bounds that follow
//    from the code spacing:
//      |x - w| <= (g4 / 2) * absmax + |absmax - absmax'|,   |absmax - absmax'| <= (g8 / 2) * absmax2
//    with g4, g8 the largest gaps of the NF4 and dynamic maps (the dynamic map's -1 end counts as a gap to -1).
// 3. bitsandbytes goldens (test/fixtures/goldens/nf4_blocks.json, written by test/fixtures/make_train_goldens.py with
//    torch): every byte and float equal, read in the file's own layout (its `layout` object documents each field).
// 4. Every kernel, every SIMD path, against its scalar reference on odd shapes (tolerances at each test).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>
#include "cpu/matmul.h"
#include "cpu/nf4_matmul.h"
#include "cpu/qmatmul.h"
#include "cpu/thread_pool.h"
#include "format/json.h"
#include "quant/nf4.h"
#include "quant/quant.h"
#include "tests/test.h"
#include "tests/sha256.h"
#include "tests/test_format_util.h"

using namespace moe;

namespace {

// ---- the published definitions, written out independently of nf4.cpp ----

// Φ⁻¹(p) for 0 < p < 1 (P. J. Acklam's algorithm, relative error 1.15e-9, refined by one Halley step, which takes it
// to double precision).
double inv_norm_cdf(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00};
  const double lo = 0.02425, hi = 1 - lo;
  double x;
  if (p < lo) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= hi) {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;  // Φ(x) - p
  const double u = e * 2.5066282746310002 * std::exp(x * x / 2);  // e / φ(x), sqrt(2π) = 2.50662827463...
  return x - u / (1 + x * u / 2);
}

// torch.linspace in f32 on the CPU: one fused multiply-add per value, from the start for the first half and from
// the end for the second (verified against torch 2.13 for every linspace these maps use).
std::vector<float> torch_linspace(float start, float end, int steps) {
  std::vector<float> v(static_cast<size_t>(steps));
  const float step = (end - start) / float(steps - 1);
  for (int i = 0; i < steps; ++i)
    v[size_t(i)] = i < steps / 2 ? std::fma(step, float(i), start) : std::fma(-step, float(steps - 1 - i), end);
  return v;
}

std::vector<float> published_normal_map() {
  std::vector<float> v;
  auto p9 = torch_linspace(0.9677083f, 0.5f, 9), p8 = torch_linspace(0.9677083f, 0.5f, 8);
  for (int i = 0; i < 8; ++i) v.push_back(float(inv_norm_cdf(double(p9[size_t(i)]))));
  for (int i = 0; i < 256 - 15; ++i) v.push_back(0.0f);
  for (int i = 0; i < 7; ++i) v.push_back(float(-inv_norm_cdf(double(p8[size_t(i)]))));
  std::sort(v.begin(), v.end());
  const float mx = v.back();
  for (float& x : v) x /= mx;
  v.erase(std::unique(v.begin(), v.end()), v.end());  // the 241 zeros are one code
  return v;
}

std::vector<float> published_dynamic_map() {
  std::vector<float> v;
  for (int i = 0; i < 7; ++i) {
    auto bnd = torch_linspace(0.1f, 1.0f, (1 << i) + 1);
    const float scale = float(std::pow(10.0, double(-6 + i)));
    for (size_t j = 0; j + 1 < bnd.size(); ++j) {
      const float mean = (bnd[j] + bnd[j + 1]) / 2.0f;
      v.push_back(scale * mean);
      v.push_back(-scale * mean);
    }
  }
  v.push_back(0.0f);
  v.push_back(1.0f);
  std::sort(v.begin(), v.end());
  return v;
}

// torch.bucketize(s, mids) as bitsandbytes' torch backend rounds (mids_j = (code_j + code_{j+1}) / 2 in f32): the
// number of midpoints strictly below s, counted one by one (a value on a midpoint keeps the lower code).
uint8_t bucketize_code(const std::vector<float>& code, float s) {
  int c = 0;
  for (size_t j = 0; j + 1 < code.size(); ++j) c += (code[j] + code[j + 1]) / 2.0f < s;
  return uint8_t(c);
}
// That it is the nearest code (up to exact f32 ties of the two distances) is what makes it NF4; checked on the ties.
uint8_t argmin_code(const std::vector<float>& code, float s) {
  size_t best = 0;
  float bd = std::fabs(s - code[0]);
  for (size_t j = 1; j < code.size(); ++j) {
    const float d = std::fabs(s - code[j]);
    if (d < bd) { bd = d; best = j; }
  }
  return uint8_t(best);
}
float clampf(float v) { return v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v; }  // NaN passes through

struct Plain {
  std::vector<uint8_t> packed, absmax_q;
  std::vector<float> absmax, absmax2, deq;
  float offset = 0;
};

// quantize_4bit(x, blocksize=64, compress_statistics=True, quant_type="nf4") and dequantize_4bit, as bitsandbytes'
// backends/default/ops.py computes them: full blocks scale by the reciprocal of max(absmax, 1e-38); a short last
// block (or group) divides by max(absmax, 1e-38) and stores that clamped value.
// The offset is the mean of the absmaxes; torch's f32 summation order (which nf4.cpp reproduces, checked by the
// goldens) is not part of the published algorithm, so the plain version takes the library's offset for the second
// level after checking it against the double-precision mean (within 4 f32 ulps).
Plain plain_nf4(const std::vector<float>& x, const float* use_offset = nullptr) {
  static const std::vector<float> c4 = published_normal_map(), c8 = published_dynamic_map();
  Plain P;
  const int64_t n = int64_t(x.size()), nb = (n + 63) / 64, ng = (nb + 255) / 256;
  std::vector<uint8_t> q(size_t(n + 1));
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t e0 = b * 64, e1 = std::min(n, e0 + 64);
    float a = 0;
    for (int64_t e = e0; e < e1; ++e) a = std::max(a, std::fabs(x[size_t(e)]));
    const bool full = e1 - e0 == 64;
    if (!full) a = std::max(a, 1e-38f);
    P.absmax.push_back(a);
    const float inv = 1.0f / std::max(a, 1e-38f);
    for (int64_t e = e0; e < e1; ++e)
      q[size_t(e)] = bucketize_code(c4, clampf(full ? x[size_t(e)] * inv : x[size_t(e)] / a));
  }
  if (n % 2) q[size_t(n)] = bucketize_code(c4, 0.0f);  // the pad value 0
  for (int64_t i = 0; i < (n + 1) / 2; ++i) P.packed.push_back(uint8_t(q[size_t(2 * i)] << 4 | q[size_t(2 * i + 1)]));
  double sum = 0;
  for (float a : P.absmax) sum += a;
  P.offset = nb ? float(sum / double(nb)) : 0.0f;
  if (use_offset) {
    CHECK(std::fabs(double(*use_offset) - P.offset) <= 4 * 6e-8 * P.offset);
    P.offset = *use_offset;
  }
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t b0 = g * 256, b1 = std::min(nb, b0 + 256);
    float m = 0;
    for (int64_t b = b0; b < b1; ++b) m = std::max(m, std::fabs(P.absmax[size_t(b)] - P.offset));
    const bool full = b1 - b0 == 256;
    if (!full) m = std::max(m, 1e-38f);
    P.absmax2.push_back(m);
    const float inv = 1.0f / std::max(m, 1e-38f);
    for (int64_t b = b0; b < b1; ++b) {
      const float d = P.absmax[size_t(b)] - P.offset;
      P.absmax_q.push_back(bucketize_code(c8, clampf(full ? d * inv : d / m)));
    }
  }
  for (int64_t e = 0; e < n; ++e) {
    const int64_t b = e / 64;
    const float prod = c8[P.absmax_q[size_t(b)]] * P.absmax2[size_t(b / 256)];
    const float A = prod + P.offset;
    const uint8_t byte = P.packed[size_t(e / 2)];
    P.deq.push_back(c4[(e % 2) ? byte & 15 : byte >> 4] * A);
  }
  return P;
}

float max_gap(const std::vector<float>& c) {
  float g = 0;
  for (size_t i = 1; i < c.size(); ++i) g = std::max(g, c[i] - c[i - 1]);
  return g;
}

bool same_bits(float a, float b) { uint32_t x, y; std::memcpy(&x, &a, 4); std::memcpy(&y, &b, 4); return x == y; }

// Quantize x as [rows, cols]; compare with the plain implementation exactly and check the error bounds.
void check_round_trip(const char* what, const std::vector<float>& x, int64_t rows, int64_t cols, ThreadPool* pool) {
  const NF4Tensor t = nf4_quantize(x.data(), rows, cols, pool);
  const Plain P = plain_nf4(x, &t.offset);
  bool ok = t.n == int64_t(x.size()) && t.rows == rows && t.cols == cols && t.packed == P.packed &&
            t.absmax_q == P.absmax_q && t.absmax2 == P.absmax2 && same_bits(t.offset, P.offset);
  std::vector<float> y(x.size());
  nf4_dequantize(t, y.data());
  int bad_deq = 0, bad_bound = 0;
  static const float g4 = max_gap(published_normal_map());
  static const std::vector<float> c8 = published_dynamic_map();
  static const float g8 = std::max(max_gap(c8), 2.0f * (1.0f + c8[0]));  // -1 maps to c8[0] = -0.99297
  for (size_t e = 0; e < x.size(); ++e) {
    bad_deq += !same_bits(y[e], P.deq[e]);
    const size_t b = e / 64;
    const float A = P.absmax[b];
    float scale;  // absmax' of this block
    nf4_block_scales(t, int64_t(b), int64_t(b) + 1, &scale);
    const double dA = std::fabs(double(A) - scale);
    const double tolA = g8 / 2 * t.absmax2[b / 256] * (1 + 1e-6) + 1e-6 * A;
    const double tol = g4 / 2 * A + dA + 1e-6 * A;
    if (!(dA <= tolA) || !(std::fabs(double(x[e]) - y[e]) <= tol)) ++bad_bound;
  }
  if (!ok || bad_deq || bad_bound)
    std::fprintf(stderr, "    %s [%lld x %lld]: fields %s, %d values differ from the plain dequantization, %d out of bounds\n",
                 what, (long long)rows, (long long)cols, ok ? "equal" : "DIFFER", bad_deq, bad_bound);
  CHECK(ok);
  CHECK(bad_deq == 0);
  CHECK(bad_bound == 0);
  CHECK(t.packed.size() + t.absmax_q.size() + 4 * t.absmax2.size() + 4 == nf4_bytes(t.n));
}

// Runs body(path) on every SIMD path this CPU has (the NF4 quantizer and kernels follow the dense kernels' path).
template <class F>
void for_each_path(F&& body) {
  const char* names[8];
  const int n = simd_paths(names, 8);
  for (int i = 0; i < n; ++i) {
    CHECK(simd_use_path(names[i]));
    body(names[i]);
  }
  simd_use_path(nullptr);
}

std::vector<float> uniform(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 g(seed); std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n); for (auto& x : v) x = d(g); return v;
}

}  // namespace

TEST(nf4_code_table_is_the_normal_map) {
  const std::vector<float> v = published_normal_map();
  CHECK(v.size() == 16);
  for (int j = 0; j < 16 && v.size() == 16; ++j) CHECK_NEAR(nf4_code()[j], v[size_t(j)], 1e-7);
  CHECK(nf4_code()[0] == -1.0f && nf4_code()[7] == 0.0f && nf4_code()[15] == 1.0f);
  // Φ⁻¹ itself: Φ⁻¹(0.975) = 1.959963984540054 (to the digits printed in tables).
  CHECK_NEAR(inv_norm_cdf(0.975), 1.959963984540054, 1e-14);
  CHECK_NEAR(inv_norm_cdf(0.5), 0.0, 1e-15);
}

TEST(nf4_dynamic_map_is_bitsandbytes) {
  const std::vector<float> v = published_dynamic_map();
  CHECK(v.size() == 256);
  int diff = 0;
  for (size_t j = 0; j < 256; ++j) diff += !same_bits(nf4_dynamic_code()[j], v[j]);
  CHECK(diff == 0);
  for (size_t j = 1; j < 256; ++j) CHECK(nf4_dynamic_code()[j - 1] < nf4_dynamic_code()[j]);  // sorted, distinct
  // values torch prints for create_dynamic_map(): ends, and the two smallest magnitudes
  CHECK(nf4_dynamic_code()[0] == -0.99296874f && nf4_dynamic_code()[255] == 1.0f && nf4_dynamic_code()[127] == 0.0f);
  CHECK(nf4_dynamic_code()[128] == float(float(1e-6) * 0.55f));
}

TEST(nf4_round_trips_match_the_published_algorithm) {
  ThreadPool pool(2);
  for_each_path([&](const char*) {
  // exact ties and near-ties: with absmax 1 the scaled value is x itself, so put x at the f32 midpoints of adjacent
  // codes and one ulp either side (the tie keeps the lower code), plus -1, +-0, a denormal, 1
  {
    const float* c = nf4_code();
    std::vector<float> x = {1.0f, -1.0f, 0.0f, -0.0f, 1e-40f, -1e-40f};
    for (int j = 0; j < 15; ++j) {
      const float mid = (c[j] + c[j + 1]) / 2.0f;
      x.insert(x.end(), {mid, std::nextafter(mid, 2.0f), std::nextafter(mid, -2.0f)});
    }
    x.resize(128, 0.5f);
    x[64] = -1.0f;  // the second block's absmax is 1 too
    for (int i = 0; i < 51; ++i) x[size_t(65 + i)] = x[size_t(6 + i)];
    check_round_trip("ties", x, 2, 64, nullptr);
    // the midpoint rule is the nearest code (what makes it NF4) except within a couple of ulps of a midpoint, where
    // the rounded f32 midpoint and the rounded f32 distances may decide differently (the goldens keep their values
    // 4 ulps away from any midpoint for that reason): check it on values farther than 4 ulps
    static const std::vector<float> c4 = published_normal_map();
    int far = 0, near = 0;
    for (float v : uniform(20000, 9, -1.0f, 1.0f)) {
      bool close = false;
      for (int j = 0; j < 15; ++j) close |= std::fabs(v - (c4[size_t(j)] + c4[size_t(j) + 1]) / 2.0f) <= 4 * 1.2e-7f * std::max(std::fabs(v), 1e-3f);
      near += close;
      if (!close) far += bucketize_code(c4, v) != argmin_code(c4, v);
    }
    CHECK(far == 0 && near < 20);
  }
  // normal weights, blocks aligned with rows
  check_round_trip("normal", moe_test::randn(37 * 64, 1, 0.02f), 37, 64, nullptr);
  // uniform, cols % 64 != 0: blocks straddle rows; n % 64 != 0: a partial last block
  check_round_trip("uniform", uniform(8 * 125, 2, -3.0f, 1.0f), 8, 125, &pool);
  // outliers: a few values 100x the rest (their blocks' other values collapse towards code 7)
  {
    auto x = moe_test::randn(16 * 192, 3, 1.0f);
    for (size_t i = 5; i < x.size(); i += 611) x[i] *= 100.0f;
    check_round_trip("outliers", x, 16, 192, &pool);
  }
  // an all-zero block (block 3) and an all-zero partial last block of odd length (n = 327 = 5*64 + 7): bitsandbytes'
  // torch backend clamps the absmax to 1e-38, so both get code 7 (exact zeros); the short one stores 1e-38
  {
    auto x = moe_test::randn(3 * 109, 4, 0.5f);
    std::fill(x.begin() + 3 * 64, x.begin() + 4 * 64, 0.0f);
    std::fill(x.begin() + 5 * 64, x.end(), 0.0f);
    check_round_trip("zero blocks", x, 3, 109, nullptr);
    const NF4Tensor t = nf4_quantize(x.data(), 3, 109);
    for (int i = 3 * 32; i < 4 * 32; ++i) CHECK(t.packed[size_t(i)] == 0x77);
    CHECK(t.packed.back() == 0x77);  // the last code 7, then the pad code 7
    std::vector<float> y(x.size());
    nf4_dequantize(t, y.data());
    for (int64_t e = 3 * 64; e < 4 * 64; ++e) CHECK(y[size_t(e)] == 0.0f);
    for (int64_t e = 5 * 64; e < 327; ++e) CHECK(y[size_t(e)] == 0.0f);
  }
  // n < 64, odd and even; one value; many groups of 256 blocks (nblocks = 601)
  check_round_trip("n=37", moe_test::randn(37, 5, 1.0f), 1, 37, nullptr);
  check_round_trip("n=2", {0.25f, -3.0f}, 1, 2, nullptr);
  check_round_trip("n=1", {-7.0f}, 1, 1, nullptr);
  check_round_trip("601 blocks", moe_test::randn(2 * 19205, 6, 0.05f), 2, 19205, &pool);
  // all zeros: one absmax 0, mean 0, group scale 0 -> everything dequantizes to -0 * 0
  {
    std::vector<float> z(100, 0.0f), y(100);
    const NF4Tensor t = nf4_quantize(z.data(), 100);
    nf4_dequantize(t, y.data());
    for (float v : y) CHECK(v == 0.0f);
  }
  });
  CHECK(nf4_bytes(0) == 4);
  CHECK(nf4_bytes(4096 * 4096) == size_t(4096 * 4096 / 2 + 4096 * 64 + 4 * 1024 + 4));
}

// Feeding rows in chunks from bf16 / f16 / f32 gives exactly what the whole widened tensor gives.
TEST(nf4_quantizer_chunks_and_dtypes) {
  ThreadPool pool(3);
  // 13 x 100: blocks straddle rows, a partial last block of 20; 13 x 77: chunks end at odd elements, odd n = 1001
  for (int64_t cols : {100, 77})
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    const int64_t rows = 13;
    const auto x = moe_test::randn(size_t(rows * cols), uint32_t(7 + cols), 0.1f);
    std::vector<uint8_t> src(size_t(rows * cols) * dtype_size(dt));
    std::vector<float> wide(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      if (dt == DType::F32) { std::memcpy(&src[i * 4], &x[i], 4); wide[i] = x[i]; continue; }
      const uint16_t h = dt == DType::BF16 ? f32_to_bf16(x[i]) : f32_to_f16(x[i]);
      std::memcpy(&src[i * 2], &h, 2);
      wide[i] = dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
    const NF4Tensor whole = nf4_quantize(wide.data(), rows, cols);
    for (int64_t chunk : {1, 2, 5, 13}) {
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        NF4Quantizer q(rows, cols);
        for (int64_t r = 0; r < rows; r += chunk)
          q.add_rows(src.data() + size_t(r * cols) * dtype_size(dt), dt, std::min(chunk, rows - r), p);
        const NF4Tensor t = q.finish();
        CHECK(t.packed == whole.packed && t.absmax_q == whole.absmax_q && t.absmax2 == whole.absmax2 &&
              same_bits(t.offset, whole.offset));
      }
    }
  }
  // big enough for the pool to split a chunk's blocks (>= 64 whole blocks), bf16
  {
    const int64_t R = 64, C = 320;
    const auto w = moe_test::randn(size_t(R * C), 8, 0.02f);
    std::vector<uint16_t> b(w.size());
    std::vector<float> wide(w.size());
    for (size_t i = 0; i < w.size(); ++i) { b[i] = f32_to_bf16(w[i]); wide[i] = bf16_to_f32(b[i]); }
    NF4Quantizer q(R, C);
    for (int64_t r = 0; r < R; r += 27) q.add_rows(b.data() + r * C, DType::BF16, std::min<int64_t>(27, R - r), &pool);
    const NF4Tensor t = q.finish(), whole = nf4_quantize(wide.data(), R, C);
    CHECK(t.packed == whole.packed && t.absmax_q == whole.absmax_q && t.absmax2 == whole.absmax2);
  }
  NF4Quantizer q(2, 10);
  std::vector<float> one(10, 1.0f);
  CHECK_THROWS(q.finish(), "finish after 0 of 2 rows");
  CHECK_THROWS(q.add_rows(one.data(), DType::F32, 3), "exceed the 2 rows");
  CHECK_THROWS(q.add_rows(one.data(), DType::I32, 1), "source dtype i32");
  // non-finite weights are refused (in a whole block, a short last block and a block straddling two chunks)
  for (int64_t at : {5, 70, 130}) {
    std::vector<float> w(2 * 70, 0.5f);
    w[size_t(at)] = at == 70 ? NAN : INFINITY;
    NF4Quantizer z(2, 70);
    CHECK_THROWS({ z.add_rows(w.data(), DType::F32, 1); z.add_rows(w.data() + 70, DType::F32, 1); }, "non-finite weight");
  }
}

// Goldens of bitsandbytes' quantize_4bit / dequantize_4bit (nf4, blocksize 64, compress_statistics=True) made in
// torch by test/fixtures/make_train_goldens.py, read in the file's own layout (its "layout" object says each field):
//   {"nf4_code_f32_hex", "dynamic_code_f32_hex": the two maps (f32 little-endian hex),
//    "tensors": [{"name", "shape": [rows, cols] or [n], "n", "input_dtype": "float32" | "bfloat16",
//                 "input_hex" (the input in its dtype), "nblocks", "packed_hex" (uint8 codes, first value in the high
//                 nibble), "qabsmax_hex" (uint8 per block), "absmax2_f32_hex" (per 256 blocks), "offset_f32_hex",
//                 "absmax_deq_f32_hex" (dequantized absmax per block), "dequant_sha256" (sha256 of the f32
//                 dequantized values), "dequant_f32_hex" (those values, for n <= 256), "cuda_packed_hex" (what the
//                 CUDA kernel writes instead, only where it differs: an all-zero block)}]}
// Everything is compared exactly (bytes and float bits): the file's offset is torch's f32 absmax.mean(), which is what
// bitsandbytes computes and what nf4.cpp reproduces (ATen's summation order).
TEST(nf4_matches_bitsandbytes_goldens) {
  namespace fs = std::filesystem;
  // SHA-256 itself, on the FIPS 180-2 vectors
  CHECK(moe_test::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(moe_test::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  {
    const char* m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(moe_test::sha256_hex(m, std::strlen(m)) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  }
  std::vector<fs::path> cands;
  if (const char* g = std::getenv("MOE_GOLDENS")) cands.push_back(fs::path(g) / "nf4_blocks.json");
  cands.push_back(fs::path(__FILE__).parent_path() / "../../test/fixtures/goldens/nf4_blocks.json");
  cands.push_back("test/fixtures/goldens/nf4_blocks.json");
  fs::path file;
  for (const auto& c : cands) if (fs::exists(c)) { file = c; break; }
  CHECK(!file.empty());  // committed with the repository
  if (file.empty()) return;
  const Json j = json_parse_file(file.string());
  auto hex = [](const Json* s) {
    std::vector<uint8_t> out;
    if (!s || !s->is_string()) return out;
    for (size_t i = 0; i + 1 < s->str.size(); i += 2) out.push_back(uint8_t(std::stoul(s->str.substr(i, 2), nullptr, 16)));
    return out;
  };
  auto floats = [](const std::vector<uint8_t>& b) {
    std::vector<float> f(b.size() / 4);
    if (!f.empty()) std::memcpy(f.data(), b.data(), f.size() * 4);
    return f;
  };
  auto bits_equal = [](const std::vector<float>& a, const float* b, size_t n) {
    return a.size() == n && (n == 0 || std::memcmp(a.data(), b, n * 4) == 0);
  };
  CHECK(j.find("layout") && j.find("layout")->find("offset"));
  // the maps
  CHECK(bits_equal(floats(hex(j.find("nf4_code_f32_hex"))), nf4_code(), 16));
  CHECK(bits_equal(floats(hex(j.find("dynamic_code_f32_hex"))), nf4_dynamic_code(), 256));
  const Json* tensors = j.find("tensors");
  CHECK(tensors && tensors->is_array() && tensors->size() >= 4);
  if (!tensors || !tensors->is_array()) return;
  int cuda_differs = 0;
  for (const Json& c : tensors->arr) {
    const std::string name = c.find("name") ? c.find("name")->str : "?";
    const Json* shape = c.find("shape");
    CHECK(shape && (shape->size() == 1 || shape->size() == 2));
    if (!shape) continue;
    const int64_t rows = shape->size() == 2 ? int64_t((*shape)[0].num) : 1;
    const int64_t cols = shape->size() == 2 ? int64_t((*shape)[1].num) : int64_t((*shape)[0].num);
    CHECK(c.find("n") && int64_t(c.find("n")->num) == rows * cols);
    const std::string dts = c.find("input_dtype") ? c.find("input_dtype")->str : "";
    CHECK(dts == "float32" || dts == "bfloat16" || dts == "float16");
    const DType dt = dts == "bfloat16" ? DType::BF16 : dts == "float16" ? DType::F16 : DType::F32;
    const std::vector<uint8_t> in = hex(c.find("input_hex"));
    CHECK(in.size() == size_t(rows * cols) * dtype_size(dt));
    if (in.size() != size_t(rows * cols) * dtype_size(dt)) continue;
    // fed in chunks of 3 rows, so the streaming path is what is checked
    NF4Quantizer q(rows, cols);
    for (int64_t r = 0; r < rows; r += 3) q.add_rows(in.data() + size_t(r * cols) * dtype_size(dt), dt, std::min<int64_t>(3, rows - r));
    const NF4Tensor t = q.finish();
    CHECK(c.find("nblocks") && int64_t(c.find("nblocks")->num) == t.nblocks());
    const bool pk = t.packed == hex(c.find("packed_hex")), aq = t.absmax_q == hex(c.find("qabsmax_hex"));
    const bool a2ok = bits_equal(floats(hex(c.find("absmax2_f32_hex"))), t.absmax2.data(), t.absmax2.size());
    const bool offok = bits_equal(floats(hex(c.find("offset_f32_hex"))), &t.offset, 1);
    std::vector<float> scales(size_t(t.nblocks()));
    nf4_block_scales(t, 0, t.nblocks(), scales.data());
    const bool amdok = bits_equal(floats(hex(c.find("absmax_deq_f32_hex"))), scales.data(), scales.size());
    std::vector<float> y(size_t(t.n));
    nf4_dequantize(t, y.data());
    const bool shaok = c.find("dequant_sha256") && moe_test::sha256_hex(y.data(), y.size() * 4) == c.find("dequant_sha256")->str;
    const bool deqok = !c.find("dequant_f32_hex") || bits_equal(floats(hex(c.find("dequant_f32_hex"))), y.data(), y.size());
    if (c.find("cuda_packed_hex")) cuda_differs += hex(c.find("cuda_packed_hex")) != t.packed;  // we follow torch's backend
    if (!pk || !aq || !a2ok || !offok || !amdok || !shaok || !deqok)
      std::fprintf(stderr, "    golden %s: packed %d qabsmax %d absmax2 %d offset %d absmax_deq %d sha256 %d dequant %d\n",
                   name.c_str(), int(pk), int(aq), int(a2ok), int(offok), int(amdok), int(shaok), int(deqok));
    CHECK(pk && aq && a2ok && offok && amdok && shaok && deqok);
  }
  CHECK(cuda_differs == 1);  // zero_block_192: the CUDA kernel writes code 0 for the all-zero block, torch code 7
}

// ---------------------------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------------------------
namespace {


// Compare y (M rows of `cols`, ld apart) with the reference; `mag[m*cols + c]` is Σ|terms| of that output. Also
// checks the padding between rows is untouched (pad holds the initial value 7).
int compare(const char* what, const char* path, const std::vector<float>& got, const std::vector<float>& ref,
            const std::vector<double>& mag, int64_t M, int64_t cols, int64_t ld, double rel, bool acc) {
  int bad = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < ld; ++c) {
      const size_t i = size_t(m * ld + c);
      if (c >= cols) { bad += got[i] != 7.0f; continue; }
      const double tol = rel * mag[size_t(m * cols + c)] + (acc ? 1e-6 * std::fabs(ref[i]) : 0) + 1e-30;
      if (!(std::fabs(double(got[i]) - ref[i]) <= tol)) {
        if (bad < 3)
          std::fprintf(stderr, "    %s [%s] M=%lld cols=%lld acc=%d: [%lld,%lld] = %g, ref %g, tol %g\n", what, path,
                       (long long)M, (long long)cols, int(acc), (long long)m, (long long)c, got[i], ref[i], tol);
        ++bad;
      }
    }
  return bad;
}

}  // namespace

// The SIMD dequantisation is bit-identical to the reference on any range (odd starts and ends, straddling rows).
TEST(nf4_fast_dequant_is_exact) {
  const auto x = moe_test::randn(7 * 77, 11, 0.3f);
  const NF4Tensor t = nf4_quantize(x.data(), 7, 77);
  std::vector<float> ref(x.size());
  nf4_dequantize(t, ref.data());
  for_each_path([&](const char* path) {
    // the NF4 kernels follow the dense path: amx / avx512 -> avx512, avx2 -> avx2, portable -> portable
    const std::string p = path, want = p.rfind("amx", 0) == 0 || p.rfind("avx512", 0) == 0 ? "avx512" : p.rfind("avx2", 0) == 0 ? "avx2" : "portable";
    CHECK(want == nf4_simd_name());
    int bad = 0;
    for (int64_t e0 : {0, 1, 2, 63, 64, 65, 77, 100, 250})
      for (int64_t len : {0, 1, 2, 31, 32, 33, 64, 129, 200}) {
        const int64_t e1 = std::min<int64_t>(t.n, e0 + len);
        std::vector<float> y(size_t(e1 - e0) + 1, 5.0f);
        nf4_dequantize_range_fast(t, e0, e1, y.data());
        for (int64_t e = e0; e < e1; ++e) bad += !same_bits(y[size_t(e - e0)], ref[size_t(e)]);
        bad += y.back() != 5.0f;  // nothing written past the range
      }
    if (bad) std::fprintf(stderr, "    [%s] %d mismatches\n", path, bad);
    CHECK(bad == 0);
  });
}

// Forward: y = x · Wᵀ with NF4 W against nf4_matmul_ref (dequantise, double dot). Only the f32 summation order
// differs (blocks summed in f32, then scaled): relative error ~ K * 2^-24 worst case, ~1e-6 for these K; the bound
// 2e-5 of Σ_k |x_k w_k| catches any wrong code, nibble, scale or row offset (each moves the result by >= ~1e-2).
TEST(nf4_matmul_matches_reference_all_paths) {
  ThreadPool pool(2);
  struct S { int64_t N, K; };
  const S shapes[] = {{37, 96}, {19, 100}, {13, 77}, {70, 130}, {8, 64}, {300, 256}};
  for_each_path([&](const char* path) {
    int bad = 0;
    for (const S& s : shapes) {
      const auto w = moe_test::randn(size_t(s.N * s.K), uint32_t(s.N * 7 + s.K), 0.05f);
      const NF4Tensor W = nf4_quantize(w.data(), s.N, s.K);
      std::vector<float> deq(size_t(s.N * s.K));
      nf4_dequantize(W, deq.data());
      for (int64_t M : {1, 3, 17, 64}) {
        if (s.N == 300 && M == 64) continue;  // keep the suite fast
        const int64_t ldx = s.K + 3, ldy = s.N + 2;
        const auto x = moe_test::randn(size_t(M * ldx), uint32_t(M + s.K), 1.0f);
        std::vector<double> mag(size_t(M * s.N));
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < s.N; ++n) {
            double a = 0;
            for (int64_t k = 0; k < s.K; ++k) a += std::fabs(double(x[size_t(m * ldx + k)]) * deq[size_t(n * s.K + k)]);
            mag[size_t(m * s.N + n)] = a;
          }
        for (bool acc : {false, true})
          for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
            std::vector<float> ref(size_t(M * ldy), 7.0f), got(size_t(M * ldy), 7.0f);
            if (acc) for (int64_t m = 0; m < M; ++m) for (int64_t n = 0; n < s.N; ++n) ref[size_t(m * ldy + n)] = got[size_t(m * ldy + n)] = 0.5f;
            nf4_matmul_ref(ref.data(), ldy, x.data(), ldx, W, M, acc);
            nf4_matmul(p, got.data(), ldy, x.data(), ldx, W, M, acc);
            bad += compare("nf4_matmul", path, got, ref, mag, M, s.N, ldy, 2e-5, acc);
          }
      }
    }
    CHECK(bad == 0);
  });
}

// dX = dY · W through a frozen NF4 weight against nf4_matmul_dx_ref; same reasoning and bound (Σ over N in f32).
TEST(nf4_matmul_dx_matches_reference_all_paths) {
  ThreadPool pool(3);
  struct S { int64_t N, K; };
  const S shapes[] = {{37, 96}, {19, 100}, {13, 77}, {70, 130}, {5, 33}, {260, 1000}};
  for_each_path([&](const char* path) {
    int bad = 0;
    for (const S& s : shapes) {
      const auto w = moe_test::randn(size_t(s.N * s.K), uint32_t(s.N * 5 + s.K), 0.05f);
      const NF4Tensor W = nf4_quantize(w.data(), s.N, s.K);
      std::vector<float> deq(size_t(s.N * s.K));
      nf4_dequantize(W, deq.data());
      for (int64_t M : {1, 3, 17, 64}) {
        if (s.N == 260 && M != 17) continue;  // the big one exercises the K split across threads
        const int64_t lddy = s.N + 1, lddx = s.K + 4;
        const auto dy = moe_test::randn(size_t(M * lddy), uint32_t(M * 3 + s.N), 1.0f);
        std::vector<double> mag(size_t(M * s.K), 0.0);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < s.N; ++n)
            for (int64_t k = 0; k < s.K; ++k) mag[size_t(m * s.K + k)] += std::fabs(double(dy[size_t(m * lddy + n)]) * deq[size_t(n * s.K + k)]);
        for (bool acc : {false, true})
          for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
            std::vector<float> ref(size_t(M * lddx), 7.0f), got(size_t(M * lddx), 7.0f);
            if (acc) for (int64_t m = 0; m < M; ++m) for (int64_t k = 0; k < s.K; ++k) ref[size_t(m * lddx + k)] = got[size_t(m * lddx + k)] = -0.25f;
            nf4_matmul_dx_ref(ref.data(), lddx, dy.data(), lddy, W, M, acc);
            nf4_matmul_dx(p, got.data(), lddx, dy.data(), lddy, W, M, acc);
            bad += compare("nf4_matmul_dx", path, got, ref, mag, M, s.K, lddx, 2e-5, acc);
          }
      }
    }
    CHECK(bad == 0);
  });
}

// dX through f32 / f16 / bf16 / Q8_0 / Q4_0 / Q4_K weights against matmul_dx_ref (row_to_f32 rows, double sums).
TEST(nf4_matmul_dx_dense_and_blocks_all_paths) {
  ThreadPool pool(2);
  struct S { DType t; int64_t N, K; };
  const S shapes[] = {{DType::F32, 37, 100}, {DType::F16, 70, 33}, {DType::BF16, 5, 517}, {DType::BF16, 130, 64},
                      {DType::Q8_0, 37, 96},  {DType::Q4_0, 19, 160}, {DType::Q4_K, 9, 512}, {DType::Q4_K, 70, 1024}};
  for_each_path([&](const char* path) {
    int bad = 0;
    for (const S& s : shapes) {
      const auto wf = moe_test::randn(size_t(s.N * s.K), uint32_t(s.N + 3 * s.K), 0.05f);
      std::vector<uint8_t> W;
      if (is_quant(s.t)) { W.resize(qbytes(s.t, s.N * s.K)); quantize_tensor(s.t, wf.data(), W.data(), s.N * s.K); }
      else {
        W.resize(size_t(s.N * s.K) * dtype_size(s.t));
        for (size_t i = 0; i < wf.size(); ++i) {
          if (s.t == DType::F32) std::memcpy(&W[i * 4], &wf[i], 4);
          else { const uint16_t h = s.t == DType::F16 ? f32_to_f16(wf[i]) : f32_to_bf16(wf[i]); std::memcpy(&W[i * 2], &h, 2); }
        }
      }
      std::vector<float> row(size_t(s.K)), deq(size_t(s.N * s.K));
      for (int64_t n = 0; n < s.N; ++n) { row_to_f32(row.data(), W.data(), s.t, n, s.K); std::copy(row.begin(), row.end(), deq.begin() + n * s.K); }
      for (int64_t M : {1, 3, 17, 64}) {
        if (s.N == 70 && s.t == DType::Q4_K && M != 17) continue;
        const int64_t lddy = s.N + 2, lddx = s.K + 1;
        const auto dy = moe_test::randn(size_t(M * lddy), uint32_t(M + 9 * s.N), 1.0f);
        std::vector<double> mag(size_t(M * s.K), 0.0);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < s.N; ++n)
            for (int64_t k = 0; k < s.K; ++k) mag[size_t(m * s.K + k)] += std::fabs(double(dy[size_t(m * lddy + n)]) * deq[size_t(n * s.K + k)]);
        for (bool acc : {false, true})
          for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
            std::vector<float> ref(size_t(M * lddx), 7.0f), got(size_t(M * lddx), 7.0f);
            if (acc) for (int64_t m = 0; m < M; ++m) for (int64_t k = 0; k < s.K; ++k) ref[size_t(m * lddx + k)] = got[size_t(m * lddx + k)] = 1.5f;
            matmul_dx_ref(ref.data(), lddx, dy.data(), lddy, W.data(), s.t, M, s.N, s.K, acc);
            matmul_dx(p, got.data(), lddx, dy.data(), lddy, W.data(), s.t, M, s.N, s.K, acc);
            bad += compare(dtype_name(s.t), path, got, ref, mag, M, s.K, lddx, 2e-5, acc);
          }
      }
    }
    CHECK(bad == 0);
  });
  std::vector<float> a(64), b(64);
  std::vector<uint8_t> w(64);
  CHECK_THROWS(matmul_dx(nullptr, a.data(), 48, b.data(), 1, w.data(), DType::Q8_0, 1, 1, 48), "row length 48 is not a multiple of the q8_0 block of 32");
  CHECK_THROWS(matmul_dx(nullptr, a.data(), 8, b.data(), 1, w.data(), DType::I32, 1, 1, 8), "weight dtype i32 is not supported");
}

// A quick measurement, off by default (MOE_NF4_BENCH=1 native/build/Release/moe_native_tests nf4_bench): NF4 vs bf16
// on a 2048 x 2048 weight, GEMV (M = 1), GEMM (M = 64) and dX (M = 64), 2 threads, best of a few runs.
TEST(nf4_bench) {
  if (!std::getenv("MOE_NF4_BENCH")) return;
  const int64_t N = 2048, K = 2048;
  ThreadPool pool(2);
  const auto w = moe_test::randn(size_t(N * K), 1, 0.02f);
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]);
  auto t0 = std::chrono::steady_clock::now();
  NF4Quantizer q(N, K);
  q.add_rows(wb.data(), DType::BF16, N, &pool);
  const NF4Tensor W = q.finish();
  const double tq = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  simd %s / %s; quantize 2048x2048 from bf16: %.1f ms (%.0f Mweights/s)\n", simd_name(), nf4_simd_name(),
              tq * 1e3, double(N * K) / tq / 1e6);
  // Decode reads each weight once per token from DRAM; a single 8 MiB bf16 weight stays in this CPU's L3 between
  // runs, so also time a GEMV that cycles through 8 copies (64 MiB of bf16, 17 MiB of NF4).
  {
    const int C = 8;
    std::vector<std::vector<uint16_t>> wbs(C, wb);
    std::vector<NF4Tensor> ws;
    for (int c = 0; c < C; ++c) ws.push_back(W);
    const auto x = moe_test::randn(size_t(K), 2, 1.0f);
    std::vector<float> y(static_cast<size_t>(N));
    auto best = [&](auto&& fn) {
      double b = 1e30;
      for (int r = 0; r < 5; ++r) {
        const auto s = std::chrono::steady_clock::now();
        for (int c = 0; c < C; ++c) fn(c);
        b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count() / C);
      }
      return b;
    };
    const double flop = 2.0 * double(N * K);
    const double t_nf4 = best([&](int c) { nf4_matmul(&pool, y.data(), N, x.data(), K, ws[size_t(c)], 1); });
    const double t_bf16 = best([&](int c) { matmul(pool, y.data(), N, x.data(), K, wbs[size_t(c)].data(), DType::BF16, 1, N, K); });
    std::printf("  forward M=1, 8 weights in turn (from DRAM): nf4 %.2f GFLOP/s (%.3f ms), bf16 %.2f GFLOP/s (%.3f ms)\n",
                flop / t_nf4 / 1e9, t_nf4 * 1e3, flop / t_bf16 / 1e9, t_bf16 * 1e3);
  }
  for (int64_t M : {1, 64}) {
    const auto x = moe_test::randn(size_t(M * K), 2, 1.0f);
    std::vector<float> y(size_t(M * N)), dx(size_t(M * K));
    auto best = [&](auto&& fn) {
      double b = 1e30;
      for (int r = 0; r < (M == 1 ? 20 : 5); ++r) {
        const auto s = std::chrono::steady_clock::now();
        fn();
        b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count());
      }
      return b;
    };
    const double flop = 2.0 * double(M * N * K);
    const double t_nf4 = best([&] { nf4_matmul(&pool, y.data(), N, x.data(), K, W, M); });
    const double t_bf16 = best([&] { matmul(pool, y.data(), N, x.data(), K, wb.data(), DType::BF16, M, N, K); });
    std::printf("  forward M=%lld: nf4 %.2f GFLOP/s (%.3f ms), bf16 %.2f GFLOP/s (%.3f ms)\n", (long long)M,
                flop / t_nf4 / 1e9, t_nf4 * 1e3, flop / t_bf16 / 1e9, t_bf16 * 1e3);
    // One thread, timed by its CPU time: far less disturbed by other processes on a shared machine.
    auto best_cpu = [&](auto&& fn) {
      double b = 1e30;
      for (int r = 0; r < 5; ++r) {
        timespec t0c, t1c;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0c);
        fn();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1c);
        b = std::min(b, double(t1c.tv_sec - t0c.tv_sec) + 1e-9 * double(t1c.tv_nsec - t0c.tv_nsec));
      }
      return b;
    };
    const double c_nf4 = best_cpu([&] { nf4_matmul(nullptr, y.data(), N, x.data(), K, W, M); });
    const double c_bf16 = best_cpu([&] { matmul_st(y.data(), N, x.data(), K, wb.data(), DType::BF16, M, N, K); });
    std::printf("  forward M=%lld, 1 thread (CPU time): nf4 %.2f GFLOP/s, bf16 %.2f GFLOP/s\n", (long long)M,
                flop / c_nf4 / 1e9, flop / c_bf16 / 1e9);
    if (M == 64) {
      const double e_nf4 = best_cpu([&] { nf4_matmul_dx(nullptr, dx.data(), K, x.data(), N, W, M); });
      const double e_bf16 = best_cpu([&] { matmul_dx(nullptr, dx.data(), K, x.data(), N, wb.data(), DType::BF16, M, N, K); });
      std::printf("  dX      M=%lld, 1 thread (CPU time): nf4 %.2f GFLOP/s, bf16 %.2f GFLOP/s\n", (long long)M,
                  flop / e_nf4 / 1e9, flop / e_bf16 / 1e9);
      const double d_nf4 = best([&] { nf4_matmul_dx(&pool, dx.data(), K, x.data(), N, W, M); });
      const double d_bf16 = best([&] { matmul_dx(&pool, dx.data(), K, x.data(), N, wb.data(), DType::BF16, M, N, K); });
      std::printf("  dX      M=%lld: nf4 %.2f GFLOP/s (%.3f ms), bf16 %.2f GFLOP/s (%.3f ms)\n", (long long)M,
                  flop / d_nf4 / 1e9, d_nf4 * 1e3, flop / d_bf16 / 1e9, d_bf16 * 1e3);
    }
  }
}
