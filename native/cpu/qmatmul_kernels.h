// Internal to cpu/ (not part of qmatmul.h): the quantized kernels' table and the activation block its files share.
//   qmatmul.cpp       qmatmul / qmatmul_ref, the portable kernels, the choice of a table (cpuid, MOE_SIMD), threads
//   qmatmul_avx2.cpp  kQAvx2: AVX2 + FMA + F16C (integer dots via vpmaddubsw / vpmaddwd), per-function targets
#pragma once
#include <cstdint>
#include "format/dtype.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MOE_QX86 1
#else
#define MOE_QX86 0
#endif

// Hidden: the library's insides, bound locally under -fPIC (as when they were file-static; see matmul_kernels.h).
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif
namespace moe::cpu_qmatmul {

// One quantised activation block: x_i ≈ d * q_i, s = Σ q_i (for the Q4_0 offset and the Q4_K mins).
struct BlockQ8X { float d; int32_t s; int8_t q[32]; };

struct QKernels {
  const char* name;
  // out[r] = W_row · x_r for R <= 4 quantised activation rows `stride` blocks apart
  void (*dot_q8_rows)(DType, const uint8_t*, const BlockQ8X*, int64_t stride, int R, int64_t K, float* out);
  float (*dot_f32)(DType, const uint8_t*, const float*, int64_t);
};

#if MOE_QX86
extern const QKernels kQAvx2;  // qmatmul_avx2.cpp
#endif

}  // namespace moe::cpu_qmatmul
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
