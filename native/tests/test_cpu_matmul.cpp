// matmul / matmul_st / vec_dot / axpy vs the scalar oracle matmul_ref, on every SIMD path this CPU has
// (the portable path is always tested too), every weight dtype, odd sizes, strides and the accumulate flag.
// Tolerance: 1e-5 * sum_k |x_k w_k| per output (only the summation order differs).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "cpu/matmul.h"
#include "tests/test.h"

using namespace moe;

namespace {

struct Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> f32;  // the exact values the stored dtype represents
};

Weights make_weights(DType dt, int64_t N, int64_t K, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Weights w;
  w.bytes.resize(size_t(N * K) * dtype_size(dt));
  w.f32.resize(size_t(N * K));
  for (int64_t i = 0; i < N * K; ++i) {
    float v = u(rng);
    if (dt == DType::F32) { std::memcpy(&w.bytes[size_t(i) * 4], &v, 4); w.f32[size_t(i)] = v; }
    else {
      uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(&w.bytes[size_t(i) * 2], &h, 2);
      w.f32[size_t(i)] = dt == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return w;
}

// Runs one configuration through `which` (0 = matmul with pool, 1 = matmul_st) and compares with matmul_ref.
// Returns the number of bad elements (also counts writes outside the [M, N] window of y).
int check_case(ThreadPool& pool, int which, DType dt, int64_t M, int64_t N, int64_t K, int64_t pad_x,
               int64_t pad_y, bool acc, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Weights w = make_weights(dt, N, K, rng);
  const int64_t ldx = K + pad_x, ldy = N + pad_y;
  std::vector<float> x(size_t(M * ldx)), y(size_t(M * ldy)), yref;
  for (auto& v : x) v = u(rng);
  for (auto& v : y) v = u(rng);  // accumulate base / garbage that must be overwritten; padding must survive
  yref = y;
  matmul_ref(yref.data(), ldy, x.data(), ldx, w.bytes.data(), dt, M, N, K, acc);
  if (which == 0) matmul(pool, y.data(), ldy, x.data(), ldx, w.bytes.data(), dt, M, N, K, acc);
  else matmul_st(y.data(), ldy, x.data(), ldx, w.bytes.data(), dt, M, N, K, acc);
  int bad = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < ldy; ++n) {
      const size_t i = size_t(m * ldy + n);
      if (n >= N) { bad += y[i] != yref[i]; continue; }  // padding untouched (yref keeps the original)
      double mag = 0;
      for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(x[size_t(m * ldx + k)]) * w.f32[size_t(n * K + k)]);
      double tol = 1e-5 * mag + 1e-6 * (acc ? std::fabs(yref[i]) : 0) + 1e-30;
      if (!(std::fabs(double(y[i]) - double(yref[i])) <= tol)) {
        if (bad < 3)
          std::fprintf(stderr, "    %s %s M=%lld N=%lld K=%lld acc=%d: y[%lld,%lld]=%g ref=%g tol=%g\n",
                       simd_name(), dtype_name(dt), (long long)M, (long long)N, (long long)K, int(acc),
                       (long long)m, (long long)n, y[i], yref[i], tol);
        ++bad;
      }
    }
  return bad;
}

// Calls body() once per SIMD path this CPU can run (e.g. avx512, avx2, portable).
template <class F>
void for_each_path(F&& body) {
  const char* names[8];
  int n = simd_paths(names, 8);
  for (int i = 0; i < n; ++i) {
    CHECK(simd_use_path(names[i]));
    body();
  }
  simd_use_path(nullptr);
}

const DType kDtypes[] = {DType::F32, DType::F16, DType::BF16};

}  // namespace

TEST(cpu_matmul_ref_small_exact) {
  // x [2, 3] · W[2, 3]^T with exact small integers.
  const float x[6] = {1, 2, 3, 4, 5, 6};
  const float w[6] = {1, 0, -1, 2, 1, 0};
  float y[4];
  matmul_ref(y, 2, x, 3, w, DType::F32, 2, 2, 3);
  CHECK(y[0] == -2 && y[1] == 4 && y[2] == -2 && y[3] == 13);
  matmul_ref(y, 2, x, 3, w, DType::F32, 2, 2, 3, true);
  CHECK(y[0] == -4 && y[3] == 26);
}

TEST(cpu_matmul_odd_sizes_all_dtypes) {
  ThreadPool pool(2);
  std::mt19937 rng(1234);
  for_each_path([&] {
    int bad = 0, cases = 0;
    for (DType dt : kDtypes)
      for (int64_t M : {1, 2, 3, 5, 8, 13, 70})
        for (int64_t N : {1, 3, 4, 5, 9, 17, 33})
          for (int64_t K : {1, 7, 8, 15, 16, 31, 33, 100, 517}) {
            bad += check_case(pool, cases & 1, dt, M, N, K, 0, 0, false, rng);
            ++cases;
          }
    CHECK(bad == 0);
    CHECK(cases == 3 * 7 * 7 * 9);
  });
}

TEST(cpu_matmul_strides_and_accumulate) {
  ThreadPool pool(3);
  std::mt19937 rng(99);
  for_each_path([&] {
    int bad = 0;
    for (DType dt : kDtypes)
      for (bool acc : {false, true})
        for (int which : {0, 1}) {
          bad += check_case(pool, which, dt, 1, 37, 129, 5, 3, acc, rng);
          bad += check_case(pool, which, dt, 6, 11, 67, 1, 7, acc, rng);
          bad += check_case(pool, which, dt, 70, 5, 300, 13, 1, acc, rng);
          bad += check_case(pool, which, dt, 20, 70, 100, 3, 5, acc, rng);   // parallel over N (AMX: shared packed x)
          bad += check_case(pool, which, dt, 33, 48, 64, 0, 2, acc, rng);    // AMX: K % 32 == 0, 2x16-row + 16-row blocks
          bad += check_case(pool, which, dt, 200, 9, 70, 3, 2, acc, rng);    // x in chunks of rows (AVX2 96, AVX-512 128) and a rest
        }
    CHECK(bad == 0);
  });
}

TEST(cpu_matmul_parallel_shapes) {
  // Big enough that matmul splits over N (decode and prefill shapes) and over M (few features, many tokens).
  std::mt19937 rng(7);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for_each_path([&] {
      int bad = 0;
      for (DType dt : kDtypes) {
        bad += check_case(pool, 0, dt, 1, 301, 1000, 0, 0, false, rng);
        bad += check_case(pool, 0, dt, 1, 1024, 257, 0, 0, true, rng);
        bad += check_case(pool, 0, dt, 37, 130, 300, 3, 2, false, rng);
        bad += check_case(pool, 0, dt, 64, 6, 515, 0, 0, false, rng);
      }
      CHECK(bad == 0);
    });
  }
}

TEST(cpu_matmul_rejects_bad_dtype) {
  ThreadPool pool(1);
  float x[4] = {0}, y[4] = {0};
  int32_t w[4] = {0};
  CHECK_THROWS(matmul(pool, y, 1, x, 4, w, DType::I32, 1, 1, 4), "i32");
  CHECK_THROWS(matmul_ref(y, 1, x, 4, w, DType::I8, 1, 1, 4), "matmul");
  CHECK_THROWS(row_to_f32(y, w, DType::I64, 0, 4), "row_to_f32");
}

TEST(cpu_row_to_f32_exact) {
  std::mt19937 rng(5);
  for_each_path([&] {
    for (DType dt : kDtypes)
      for (int64_t K : {1, 7, 16, 33, 100}) {
        Weights w = make_weights(dt, 3, K, rng);
        std::vector<float> out(static_cast<size_t>(K));
        row_to_f32(out.data(), w.bytes.data(), dt, 2, K);
        int bad = 0;
        for (int64_t k = 0; k < K; ++k) bad += out[size_t(k)] != w.f32[size_t(2 * K + k)];
        CHECK(bad == 0);
      }
  });
}

TEST(cpu_row_to_f32_special_values) {
  // f16 subnormals / inf and bf16 inf survive the SIMD conversions bit-exactly.
  const uint16_t h[9] = {0x0001, 0x03ff, 0x7c00, 0xfc00, 0x3c00, 0x8000, 0x7bff, 0x0400, 0xc000};
  for_each_path([&] {
    float out[9];
    row_to_f32(out, h, DType::F16, 0, 9);
    for (int i = 0; i < 9; ++i) CHECK(out[i] == f16_to_f32(h[i]));
    row_to_f32(out, h, DType::BF16, 0, 9);
    for (int i = 0; i < 9; ++i) CHECK(out[i] == bf16_to_f32(h[i]));
  });
}

TEST(cpu_vec_dot_axpy) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for_each_path([&] {
    for (int64_t n : {0, 1, 3, 7, 8, 9, 16, 31, 32, 33, 64, 100, 1001}) {
      std::vector<float> a(size_t(n) + 1), b(size_t(n) + 1);
      for (auto& v : a) v = u(rng);
      for (auto& v : b) v = u(rng);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) { ref += double(a[size_t(i)]) * b[size_t(i)]; mag += std::fabs(double(a[size_t(i)]) * b[size_t(i)]); }
      CHECK_NEAR(vec_dot_f32(a.data(), b.data(), n), ref, 1e-5 * mag + 1e-30);
      std::vector<float> y = b;
      vec_axpy_f32(y.data(), 0.75f, a.data(), n);
      int bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += std::fabs(y[size_t(i)] - (b[size_t(i)] + 0.75f * a[size_t(i)])) > 1e-6f;
      bad += y[size_t(n)] != b[size_t(n)];  // one past the end untouched
      CHECK(bad == 0);
    }
  });
}

TEST(cpu_simd_path_selected) {
  simd_use_path(nullptr);
  const char* names[8];
  int n = simd_paths(names, 8);
  CHECK(n >= 1 && std::strcmp(names[n - 1], "portable") == 0);
  CHECK(!simd_use_path("no-such-path"));
  // simd_force_portable answers whether the portable path was already in use (MOE_SIMD=portable, or no SIMD here)
  const bool was_portable = std::strcmp(simd_name(), "portable") == 0;
  CHECK(simd_force_portable(true) == was_portable);
  CHECK(std::strcmp(simd_name(), "portable") == 0);
  simd_use_path(nullptr);
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") && !std::getenv("MOE_SIMD"))
    CHECK(std::strcmp(simd_name(), "portable") != 0);
#endif
  std::printf("    simd path: %s (available:", simd_name());
  for (int i = 0; i < n; ++i) std::printf(" %s", names[i]);
  std::printf(")\n");
}

TEST(cpu_vec_dot_rows_axpy_rows) {
  // Attention helpers vs plain loops: odd head sizes (d % 8, d % 32 tails), key counts not a multiple of 4,
  // row strides larger than d.
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for_each_path([&] {
    int bad = 0;
    for (int64_t d : {1, 5, 8, 13, 16, 32, 40, 64, 100, 128, 130})
      for (int64_t n : {1, 3, 4, 7, 8, 9, 33}) {
        const int64_t ld = d + 3;
        std::vector<float> q(static_cast<size_t>(d)), K(static_cast<size_t>(n * ld)), V(static_cast<size_t>(n * ld)),
            w(static_cast<size_t>(n)), out(static_cast<size_t>(n) + 1, 7.f);
        for (auto& v : q) v = u(rng);
        for (auto& v : K) v = u(rng);
        for (auto& v : V) v = u(rng);
        for (auto& v : w) v = u(rng);
        vec_dot_rows_f32(out.data(), q.data(), K.data(), ld, n, d, 0.125f);
        for (int64_t j = 0; j < n; ++j) {
          double ref = 0, mag = 0;
          for (int64_t i = 0; i < d; ++i) { ref += double(q[size_t(i)]) * K[size_t(j * ld + i)]; mag += std::fabs(double(q[size_t(i)]) * K[size_t(j * ld + i)]); }
          bad += !(std::fabs(out[size_t(j)] - 0.125 * ref) <= 0.125 * 1e-5 * mag + 1e-30);
        }
        bad += out[size_t(n)] != 7.f;  // nothing written past n
        std::vector<float> o(size_t(d) + 1), o0(size_t(d) + 1);
        for (auto& v : o) v = u(rng);
        o0 = o;
        vec_axpy_rows_f32(o.data(), w.data(), V.data(), ld, n, d);
        for (int64_t i = 0; i < d; ++i) {
          double ref = o0[size_t(i)], mag = std::fabs(o0[size_t(i)]);
          for (int64_t j = 0; j < n; ++j) { ref += double(w[size_t(j)]) * V[size_t(j * ld + i)]; mag += std::fabs(double(w[size_t(j)]) * V[size_t(j * ld + i)]); }
          bad += !(std::fabs(o[size_t(i)] - ref) <= 1e-5 * mag + 1e-30);
        }
        bad += o[size_t(d)] != o0[size_t(d)];
      }
    CHECK(bad == 0);
  });
}

// The narrow weight gradient (LoRA's dB = dYᵀ·u, R = rank): every width a table has, odd N (a partial block of output
// rows), M = 1 / 64 / 200, strided rows, accumulate, against a double-precision sum (f32 sums of M ≤ 200 terms: 1e-5
// of the sum of |terms|); 1, 2 and 3 threads give the same bits; a width no table has returns false and writes nothing.
TEST(cpu_matmul_dw_narrow) {
  std::mt19937 rng(31);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for_each_path([&] {
    for (int64_t R : {8, 16, 32, 64, 128})
      for (int64_t M : {1, 64, 200})
        for (bool acc : {false, true}) {
          const int64_t N = 37, lddy = N + 3, ldu = R + 5, ldw = R + 2;
          std::vector<float> dy(size_t(M * lddy)), u(size_t(M * ldu)), w0(size_t(N * ldw));
          for (auto* v : {&dy, &u, &w0}) for (float& f : *v) f = nd(rng);
          std::vector<float> got = w0;
          ThreadPool pool(2);
          if (!matmul_dw_narrow(pool, got.data(), ldw, dy.data(), lddy, u.data(), ldu, M, N, R, acc)) {
            CHECK(got == w0);
            continue;
          }
          for (int64_t n = 0; n < N; ++n)
            for (int64_t r = 0; r < ldw; ++r) {
              const size_t i = size_t(n * ldw + r);
              if (r >= R) { CHECK(got[i] == w0[i]); continue; }  // the row's padding is not touched
              double s = acc ? w0[i] : 0.0, mag = std::fabs(s);
              for (int64_t m = 0; m < M; ++m) {
                const double t = double(dy[size_t(m * lddy + n)]) * u[size_t(m * ldu + r)];
                s += t;
                mag += std::fabs(t);
              }
              CHECK_NEAR(got[i], s, 1e-5 * mag + 1e-6);
            }
          for (int threads : {1, 3}) {
            ThreadPool p(threads);
            std::vector<float> other = w0;
            CHECK(matmul_dw_narrow(p, other.data(), ldw, dy.data(), lddy, u.data(), ldu, M, N, R, acc));
            CHECK(std::memcmp(other.data(), got.data(), got.size() * 4) == 0);
          }
        }
  });
}
