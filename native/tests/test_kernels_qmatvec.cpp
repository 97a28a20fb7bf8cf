// kernels/qmatvec.cuh under the SIMT emulation against the CPU reference (qmatmul_ref: dequantise, double dot).
// f32 accumulation of K products in a different order: |err| <= ~K * 2^-24 * sum|terms|; we ask 2e-6 * sum|terms|.
#ifdef MOE_HAVE_SIMT_EMU
#include <cmath>
#include <vector>
#include "cpu/qmatmul.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "tests/test.h"
#include "tests/test_format_util.h"

TEST(kernels_qmatvec_match_cpu_reference) {
  const int64_t N = 37;
  for (moe::DType t : {moe::DType::Q8_0, moe::DType::Q4_0, moe::DType::Q4_K}) {
    for (int64_t K : {256, 768, 256 * 33}) {  // 256*33: more blocks than lanes (Q4_K: 33 > 32)
      const auto w = moe_test::randn(size_t(N * K), uint32_t(K), 0.05f);
      const auto x = moe_test::randn(size_t(K), uint32_t(K + 1), 1.0f);
      std::vector<uint8_t> q(moe::qbytes(t, N * K));
      moe::quantize_tensor(t, w.data(), q.data(), N * K);
      std::vector<float> deq(size_t(N * K)), ref(static_cast<size_t>(N)), y(static_cast<size_t>(N));
      moe::dequantize_tensor(t, q.data(), deq.data(), N * K);
      moe::qmatmul_ref(ref.data(), N, x.data(), K, q.data(), t, 1, N, K, false);
      moe::emu::qmatvec(y.data(), q.data(), t, x.data(), N, K);
      for (int64_t n = 0; n < N; ++n) {
        double abs_sum = 0;
        for (int64_t k = 0; k < K; ++k) abs_sum += std::fabs(double(deq[size_t(n * K + k)]) * x[size_t(k)]);
        CHECK_NEAR(y[size_t(n)], ref[size_t(n)], 2e-6 * abs_sum + 1e-6);
      }
    }
  }
  float f = 0;
  CHECK_THROWS(moe::emu::qmatvec(&f, &f, moe::DType::Q4_K, &f, 1, 100), "K must be a positive multiple of the q4_k block of 256");
  CHECK_THROWS(moe::emu::qmatvec(&f, &f, moe::DType::BF16, &f, 1, 32), "bf16 is not a block-quantized type");
}
#endif
