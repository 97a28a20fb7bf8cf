// Fused quantized kernels (cpu/qmatmul.cpp) against the reference (dequantise, then a double-precision dot).
//   f32 activations: only summation order differs from the reference -> relative error ~1e-6; bound 1e-4 of
//     the row's |x|·|w| scale (sum of |x_k w_k|), which no layout or indexing bug stays under.
//   q8 activations: x is rounded to int8 per 32 (relative step 1/127 of the block's absmax, uniform error
//     ±0.5 step): the error of a K-long dot is ~ sqrt(K) * 0.5/127/sqrt(3) * rms(x) * rms(w); bounded by 1e-2 of
//     the |x|·|w| scale (measured ~1e-3).
// Every path (portable, AVX2 when the CPU has it), decode (M = 1), small prefill (M = 5: per-row dots) and
// prefill (M = 9: dequantised f32 tiles through the dense kernels), threaded and not.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "cpu/matmul.h"
#include "cpu/nf4_matmul.h"
#include "cpu/qmatmul.h"
#include "quant/quant.h"
#include "tests/test.h"
#include "tests/test_format_util.h"

using namespace moe;

namespace {
struct Case { DType t; int64_t N, K; };

double max_rel(const std::vector<float>& a, const std::vector<float>& b, const std::vector<double>& scale) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]) / scale[i]);
  return m;
}

void check_case(const Case& c, int64_t M, bool q8, const char* path, ThreadPool& pool) {
  const auto w = moe_test::randn(size_t(c.N * c.K), uint32_t(c.N + c.K), 0.05f);
  const auto x = moe_test::randn(size_t(M * c.K), uint32_t(M + 3), 1.0f);
  std::vector<uint8_t> q(qbytes(c.t, c.N * c.K));
  quantize_tensor(c.t, w.data(), q.data(), c.N * c.K);
  std::vector<float> deq(size_t(c.N * c.K));
  dequantize_tensor(c.t, q.data(), deq.data(), c.N * c.K);
  std::vector<float> ref(size_t(M * c.N)), got(size_t(M * c.N), 1.0f), got_st(size_t(M * c.N));
  matmul_ref(ref.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K);
  std::vector<double> scale(ref.size());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < c.K; ++k) s += std::fabs(double(x[size_t(m * c.K + k)]) * deq[size_t(n * c.K + k)]);
      scale[size_t(m * c.N + n)] = s;
    }
  const int prev_q8 = qmatmul_act_mode(q8 ? 1 : 0);
  CHECK(qmatmul_use_path(path));
  matmul(pool, got.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K);
  matmul_st(got_st.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K);
  // accumulate: y += ...
  std::vector<float> acc(ref.size(), 2.0f);
  matmul(pool, acc.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, true);
  qmatmul_use_path(nullptr);
  qmatmul_act_mode(prev_q8);
  // q8 at M >= 8: dequantised f32 tiles (1e-4 holds), or int8 dots where the table prefills on them (VNNI)
  const double tol = q8 ? 1e-2 : 1e-4;
  const double e = max_rel(got, ref, scale), e_st = max_rel(got_st, ref, scale);
  if (std::getenv("QDEBUG") || !(e <= tol) || !(e_st <= tol))
    std::fprintf(stderr, "    %s N=%lld K=%lld M=%lld q8=%d path=%s: rel err %.3g / %.3g\n", dtype_name(c.t),
                 (long long)c.N, (long long)c.K, (long long)M, int(q8), path, e, e_st);
  CHECK(e <= tol);
  CHECK(e_st <= tol);
  for (size_t i = 0; i < acc.size(); ++i) CHECK_NEAR(acc[i] - 2.0f, got[i], 1e-5 * scale[i] + 1e-6);
}
}  // namespace

TEST(qmatmul_matches_reference_all_paths) {
  ThreadPool pool(2);
  const Case cases[] = {{DType::Q8_0, 37, 96}, {DType::Q4_0, 64, 160}, {DType::Q4_K, 19, 512}, {DType::Q8_0, 300, 1024},
                        {DType::Q4_K, 260, 1024}};
  const char* paths[4];
  const int np = qmatmul_paths(paths, 4);
  CHECK(np >= 1);
  // M: decode (1, 2: two accumulator sets, Q4_K's vector scales); per-row dots; 8 and 9 (the tiles, or VNNI's
  // 8 rows per pass and one left over); 17 (8 + 8 + 1)
  for (const Case& c : cases)
    for (int64_t M : {1, 2, 5, 8, 9, 17})
      for (bool q8 : {false, true})
        for (int p = 0; p < np; ++p) check_case(c, M, q8, paths[p], pool);
}

// MOE_SIMD's prefix rule picks the tables by name; a name this CPU lacks is refused.
TEST(qmatmul_paths_by_name) {
  const char* paths[4];
  const int np = qmatmul_paths(paths, 4);
  CHECK(std::string(paths[np - 1]) == "portable");
  for (int p = 0; p < np; ++p) {
    CHECK(qmatmul_use_path(paths[p]));
    CHECK(std::string(qmatmul_path()) == paths[p]);
  }
  CHECK(!qmatmul_use_path("sve2"));
  CHECK(qmatmul_use_path(nullptr));
}

// The int8 activation path is an integer dot: every SIMD table agrees with portable to float rounding of the
// per-block scaling, also with several rows per pass (R = 8 on VNNI).
TEST(qmatmul_q8_portable_equals_simd) {
  const char* paths[4];
  const int np = qmatmul_paths(paths, 4);
  const int64_t N = 8, K = 512;
  const auto w = moe_test::randn(size_t(N * K), 3, 0.05f);
  const auto xs = moe_test::randn(size_t(7 * K), 4, 1.0f);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    std::vector<uint8_t> q(qbytes(t, N * K));
    quantize_tensor(t, w.data(), q.data(), N * K);
    for (int64_t M : {1, 7}) {
      std::vector<float> a(static_cast<size_t>(M * N)), b(static_cast<size_t>(M * N));
      const int p8 = qmatmul_act_mode(1);
      CHECK(qmatmul_use_path("portable"));
      matmul_st(a.data(), N, xs.data(), K, q.data(), t, M, N, K);
      for (int p = 0; p < np; ++p) {
        CHECK(qmatmul_use_path(paths[p]));
        matmul_st(b.data(), N, xs.data(), K, q.data(), t, M, N, K);
        for (size_t i = 0; i < a.size(); ++i) CHECK_NEAR(a[i], b[i], 1e-5 * (std::fabs(a[i]) + 1));
      }
      qmatmul_use_path(nullptr);
      qmatmul_act_mode(p8);
    }
  }
}

// The per-call prefill GEMMs (repacked 16-row tiles; VNNI: every type from M = 2 or 3, AVX2: Q8_0 from M = 3)
// compute what the table's row dots compute on the same int8 activations: integer block dots, scaled per block;
// only the float summation order differs (1e-5 relative; a wrong byte, row or scale is off by ~1e-2 or more).
// N = 37 leaves a partial tile (and a partial half of 8 rows); M = 16..24 covers every remainder of the row passes.
TEST(qmatmul_gemm_equals_row_dots) {
  struct Table { const char* name; std::vector<DType> types; };
  for (const Table& tab : {Table{"avx512vnni", {DType::Q8_0, DType::Q4_0, DType::Q4_K}}, Table{"avx2", {DType::Q8_0}}}) {
    if (!qmatmul_use_path(tab.name)) continue;  // this CPU has no such table
    const int64_t N = 37, K = 512;
    const auto w = moe_test::randn(size_t(N * K), 5, 0.05f);
    const auto x = moe_test::randn(size_t(24 * K), 6, 1.0f);
    const int p8 = qmatmul_act_mode(1);
    for (DType t : tab.types) {
      std::vector<uint8_t> q(qbytes(t, N * K));
      quantize_tensor(t, w.data(), q.data(), N * K);
      for (int64_t M = 16; M <= 24; ++M) {
        std::vector<float> gemm(size_t(M * N)), rows(size_t(M * N)), acc(size_t(M * N), 3.0f);
        matmul_st(gemm.data(), N, x.data(), K, q.data(), t, M, N, K);
        for (int64_t m = 0; m < M; ++m) matmul_st(rows.data() + m * N, N, x.data() + m * K, K, q.data(), t, 1, N, K);
        matmul_st(acc.data(), N, x.data(), K, q.data(), t, M, N, K, true);
        for (size_t i = 0; i < gemm.size(); ++i) {
          CHECK_NEAR(gemm[i], rows[i], 1e-5 * (std::fabs(rows[i]) + 1));
          CHECK_NEAR(acc[i] - 3.0f, gemm[i], 1e-5 * (std::fabs(gemm[i]) + 1));
        }
      }
    }
    qmatmul_act_mode(p8);
    qmatmul_use_path(nullptr);
  }
}

TEST(qmatmul_rejects_bad_rows) {
  std::vector<float> x(48), y(1);
  std::vector<uint8_t> w(64);
  CHECK_THROWS(qmatmul(nullptr, y.data(), 1, x.data(), 48, w.data(), DType::Q8_0, 1, 1, 48, false), "row length 48 is not a multiple of the q8_0 block of 32");
  CHECK_THROWS(qmatmul(nullptr, y.data(), 1, x.data(), 48, w.data(), DType::BF16, 1, 1, 48, false), "bf16 is not a block-quantized type");
}

// row_to_f32 on a quantized embedding table is the reference dequantisation of that row.
TEST(qmatmul_embedding_row) {
  const int64_t V = 6, D = 256;
  const auto w = moe_test::randn(size_t(V * D), 9, 0.1f);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    std::vector<uint8_t> q(qbytes(t, V * D));
    quantize_tensor(t, w.data(), q.data(), V * D);
    std::vector<float> all(static_cast<size_t>(V * D)), row(static_cast<size_t>(D));
    dequantize_tensor(t, q.data(), all.data(), V * D);
    row_to_f32(row.data(), q.data(), t, 4, D);
    for (int64_t k = 0; k < D; ++k) CHECK(row[size_t(k)] == all[size_t(4 * D + k)]);
  }
}

// The load-time layout (qpack: Q4_0 / Q4_K / Q8_0, one layout for the VNNI and the AVX2 tables): the stored size up
// to the last tile's padding rows, the same bytes from every table that packs; from it each table's packed GEMM
// computes the same bits (the AVX2 one emulates vpdpbusd exactly and keeps VNNI's float order), which are what the
// table's per-call GEMM computes (VNNI's from M = 2, Q8_0 from 3; AVX2's, Q8_0 only, from 2) and agree with the row
// dots on the same int8 x up to the float order of the per-block scaling (1e-5 relative: the row dots sum per block
// in another order; a wrong nibble, row or scale is off by ~1e-1); threads do not change the bits, a batch of packed
// products is each product, and what cannot read the packing (a table that packs nothing, f32 activations) reads
// the weight as stored.
TEST(qmatmul_packed_is_the_gemm) {
  const char* paths[4];
  const int np = qmatmul_paths(paths, 4);
  std::vector<std::string> packers, others;  // the tables that pack, best first (each packs all three types); the rest
  for (int p = 0; p < np; ++p) {
    qmatmul_use_path(paths[p]);
    const bool packs = qpack_bytes(DType::Q4_0, 16, 32) > 0;
    (packs ? packers : others).push_back(paths[p]);
    CHECK((qpack_bytes(DType::Q4_K, 16, 256) > 0) == packs);
    CHECK((qpack_bytes(DType::Q8_0, 16, 32) > 0) == packs);
  }
  qmatmul_use_path(nullptr);
  if (packers.empty()) return;  // no x86 SIMD here
  ThreadPool pool(2);
  const int p8 = qmatmul_act_mode(1);
  struct C { DType t; int64_t N, K; };
  for (C c : {C{DType::Q4_0, 37, 96}, C{DType::Q4_0, 300, 512}, C{DType::Q4_K, 37, 256}, C{DType::Q4_K, 130, 512},
              C{DType::Q8_0, 37, 96}, C{DType::Q8_0, 300, 512}}) {
    const auto w = moe_test::randn(size_t(c.N * c.K), uint32_t(7 + c.N), 0.05f);
    const auto x = moe_test::randn(size_t(17 * c.K), uint32_t(8 + c.K), 1.0f);
    std::vector<uint8_t> q(qbytes(c.t, c.N * c.K));
    quantize_tensor(c.t, w.data(), q.data(), c.N * c.K);
    CHECK(qmatmul_use_path(packers[0].c_str()));  // (MOE_SIMD may have chosen a table that packs nothing)
    const size_t pb = qpack_bytes(c.t, c.N, c.K);
    CHECK(pb == dtype_row_bytes(c.t, c.K) * size_t((c.N + 15) / 16 * 16));
    std::vector<uint8_t> P(pb);
    std::vector<std::vector<float>> first;  // the first packing table's products, per M
    for (const std::string& name : packers) {
      CHECK(qmatmul_use_path(name.c_str()));
      std::vector<uint8_t> mine(pb, 0xee);
      qpack(&pool, c.t, q.data(), c.N, c.K, mine.data());
      if (&name == &packers[0]) P = mine;
      else CHECK(std::memcmp(mine.data(), P.data(), pb) == 0);
      // x row by row through the row dots of this table: the same int8 activations, the stored weight
      std::vector<float> dots(size_t(17 * c.N));
      for (int64_t m = 0; m < 17; ++m)
        qmatmul(nullptr, dots.data() + m * c.N, c.N, x.data() + m * c.K, c.K, q.data(), c.t, 1, c.N, c.K, false);
      // from this M the stored weight takes the table's per-call GEMM (gemm_min_rows_*; AVX2's takes Q8_0 only)
      const int64_t per_call_from = name == "avx512vnni" ? (c.t == DType::Q8_0 ? 3 : 2) : c.t == DType::Q8_0 ? 2 : 1 << 30;
      size_t k = 0;
      for (int64_t M : {1, 2, 3, 7, 8, 9, 17}) {
        const size_t n = size_t(M * c.N);
        std::vector<float> packed(n), packed_st(n), stored(n), acc(n, 3.0f);
        qmatmul(&pool, packed.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, false, P.data());
        qmatmul(nullptr, packed_st.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, false, P.data());
        qmatmul(nullptr, stored.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, false);
        qmatmul(&pool, acc.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, true, P.data());
        CHECK(std::memcmp(packed.data(), packed_st.data(), n * 4) == 0);
        if (&name == &packers[0]) first.push_back(packed);
        else CHECK(std::memcmp(packed.data(), first[k].data(), n * 4) == 0);
        ++k;
        for (size_t i = 0; i < n; ++i) {
          if (M >= per_call_from) CHECK(packed[i] == stored[i]);  // the per-call GEMM's bits
          CHECK_NEAR(packed[i], dots[i], 1e-5 * (std::fabs(dots[i]) + 1));
          CHECK_NEAR(acc[i] - 3.0f, packed[i], 1e-5 * (std::fabs(packed[i]) + 1));
        }
      }
      // a batch: decode-sized and prefill-sized products, packed and not, one parallel job
      std::vector<float> b1(size_t(c.N)), b3(size_t(3 * c.N)), s1(b1.size()), s3(b3.size()), bs(b3.size()), u3(b3.size());
      const MatmulJob jobs[] = {{b1.data(), c.N, x.data(), c.K, q.data(), c.t, 1, c.N, c.K, false, P.data()},
                                {b3.data(), c.N, x.data(), c.K, q.data(), c.t, 3, c.N, c.K, false, P.data()},
                                {bs.data(), c.N, x.data(), c.K, q.data(), c.t, 3, c.N, c.K, false, nullptr}};
      qmatmul_batch(&pool, jobs, 3);
      qmatmul(nullptr, s1.data(), c.N, x.data(), c.K, q.data(), c.t, 1, c.N, c.K, false, P.data());
      qmatmul(nullptr, s3.data(), c.N, x.data(), c.K, q.data(), c.t, 3, c.N, c.K, false, P.data());
      qmatmul(nullptr, u3.data(), c.N, x.data(), c.K, q.data(), c.t, 3, c.N, c.K, false);
      CHECK(std::memcmp(b1.data(), s1.data(), b1.size() * 4) == 0);
      CHECK(std::memcmp(b3.data(), s3.data(), b3.size() * 4) == 0);
      CHECK(std::memcmp(bs.data(), u3.data(), bs.size() * 4) == 0);
      // f32 activations read the stored weight
      qmatmul_act_mode(0);
      for (int64_t M : {1, 2}) {
        std::vector<float> a(size_t(M * c.N)), b(a.size());
        qmatmul(nullptr, a.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, false, P.data());
        qmatmul(nullptr, b.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, false);
        CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
      }
      qmatmul_act_mode(1);
    }
    // a table that packs nothing of this type reads the stored weight
    for (const std::string& name : others) {
      CHECK(qmatmul_use_path(name.c_str()));
      for (int act : {0, 1}) {
        qmatmul_act_mode(act);
        for (int64_t M : {1, 3}) {
          std::vector<float> a(size_t(M * c.N)), b(a.size());
          qmatmul(nullptr, a.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, false, P.data());
          qmatmul(nullptr, b.data(), c.N, x.data(), c.K, q.data(), c.t, M, c.N, c.K, false);
          CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
        }
      }
    }
    qmatmul_act_mode(1);
    qmatmul_use_path(nullptr);
  }
  CHECK(qmatmul_use_path("portable"));
  CHECK(qpack_bytes(DType::Q4_0, 16, 32) == 0);
  std::vector<uint8_t> q(qbytes(DType::Q4_0, 16 * 32)), P(1);
  CHECK_THROWS(qpack(nullptr, DType::Q4_0, q.data(), 16, 32, P.data()), "take no packed q4_0");
  qmatmul_use_path(nullptr);
  qmatmul_act_mode(p8);
}

// The packing read back row by row (qpack_row_blocks) is the stored bytes, for every row and block range, whichever
// table packed it; and the input gradient from the packed copy (matmul_dx's packed, what training reads once the
// stored pages are dropped) is the one from the stored weight bit for bit, on the axpy path (M < 4) and the tiles.
TEST(qmatmul_packed_rows_are_the_stored_blocks) {
  const char* paths[4];
  const int np = qmatmul_paths(paths, 4);
  ThreadPool pool(2);
  for (int p = 0; p < np; ++p) {
    CHECK(qmatmul_use_path(paths[p]));
    if (qpack_bytes(DType::Q4_0, 16, 32) == 0) continue;  // packs nothing
    struct C { DType t; int64_t N, K; };
    for (C c : {C{DType::Q8_0, 37, 320}, C{DType::Q4_0, 21, 96}, C{DType::Q4_K, 19, 512}}) {
      const auto w = moe_test::randn(size_t(c.N * c.K), uint32_t(11 + c.N), 0.05f);
      std::vector<uint8_t> q(qbytes(c.t, c.N * c.K)), P(qpack_bytes(c.t, c.N, c.K));
      quantize_tensor(c.t, w.data(), q.data(), c.N * c.K);
      qpack(&pool, c.t, q.data(), c.N, c.K, P.data());
      const int64_t qb = qblock_size(c.t);
      const size_t rb = dtype_row_bytes(c.t, c.K), bb = size_t(qblock_bytes(c.t));
      std::vector<uint8_t> got(rb);
      for (int64_t n = 0; n < c.N; ++n) {
        qpack_row_blocks(c.t, P.data(), c.K, n, 0, c.K, got.data());
        CHECK(std::memcmp(got.data(), q.data() + size_t(n) * rb, rb) == 0);
        qpack_row_blocks(c.t, P.data(), c.K, n, qb, qb, got.data());  // the second block alone
        CHECK(std::memcmp(got.data(), q.data() + size_t(n) * rb + bb, bb) == 0);
      }
      CHECK_THROWS(qpack_row_blocks(c.t, P.data(), c.K, 0, 1, qb, got.data()), "whole");
      for (int64_t M : {1, 3, 9}) {
        const auto dy = moe_test::randn(size_t(M * c.N), uint32_t(5 + M), 1.0f);
        std::vector<float> a(size_t(M * c.K), 2.0f), b = a;
        matmul_dx(&pool, a.data(), c.K, dy.data(), c.N, q.data(), c.t, M, c.N, c.K, true);
        matmul_dx(&pool, b.data(), c.K, dy.data(), c.N, q.data(), c.t, M, c.N, c.K, true, P.data());
        CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
      }
    }
  }
  qmatmul_use_path(nullptr);
}
