// Batched matrix product for prefill: y[M, N] (+)= x[M, K] · W[N, K]^T (+ bias[N]), weights in f32/f16/bf16 or the
// GGUF blocks Q8_0/Q4_0/Q4_K (kernels/qblock.cuh).
//   x: [M, K] f32, rows ldx floats apart   W: [N, K] row-major (HF Linear layout)   y: [M, N], rows ldy apart
//   accumulate: y += (the product) instead of y = (the product)
// Classic shared-memory tiling (no tensor cores yet): a block of 256 threads computes a 64x64 tile of y; per
// K-step of 16 it stages x[64 rows, 16] and W[64 rows, 16] into shared memory, transposed to [k][m] and [k][n] so
// that each thread's 4x4 micro-tile reads two float4 per k: 8 shared loads for 16 FMAs. Weights are widened to
// f32 on the way into shared memory, so the inner loop is dtype-free. Out-of-range rows/cols load zeros.
// Each weight element is read from DRAM once per 64 rows of x (vs once per row for matvec).
#pragma once
#include "kernels/qblock.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kMmTile = 64, kMmK = 16, kMmThreads = 256, kMmPad = 4;  // pad keeps rows 16-byte aligned

template <class WL>
__global__ void __launch_bounds__(kMmThreads)
matmul_kernel(float* y, int64_t ldy, const float* x, int64_t ldx, const uint8_t* W, int64_t row_bytes, const float* bias, int M,
              int N, int K, int accumulate) {
  __shared__ __align__(16) float xs[kMmK][kMmTile + kMmPad];  // [k][m]
  __shared__ __align__(16) float ws[kMmK][kMmTile + kMmPad];  // [k][n]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;  // 16 x 16 threads, 4 x 4 outputs each
  const int m0 = blockIdx.y * kMmTile, n0 = blockIdx.x * kMmTile;
  float acc[4][4];
  for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kMmK) {
    // 64 x 16 elements per operand, 4 per thread; consecutive threads read consecutive k (coalesced 64-byte rows)
    for (int i = 0; i < 4; ++i) {
      const int idx = tid + i * kMmThreads, r = idx / kMmK, c = idx % kMmK, gk = k0 + c;
      const int gm = m0 + r, gn = n0 + r;
      xs[c][r] = (gm < M && gk < K) ? x[int64_t(gm) * ldx + gk] : 0.0f;
      ws[c][r] = (gn < N && gk < K) ? WL::at(W + int64_t(gn) * row_bytes, gk) : 0.0f;
    }
    __syncthreads();
    MOE_UNROLL
    for (int kk = 0; kk < kMmK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&xs[kk][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&ws[kk][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
      MOE_UNROLL
      for (int i = 0; i < 4; ++i)
        MOE_UNROLL
        for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();  // the next K-step overwrites the tiles
  }
  for (int i = 0; i < 4; ++i) {
    const int gm = m0 + ty * 4 + i;
    if (gm >= M) continue;
    for (int j = 0; j < 4; ++j) {
      const int gn = n0 + tx * 4 + j;
      if (gn >= N) continue;
      const float v = bias != nullptr ? acc[i][j] + bias[gn] : acc[i][j];
      float& o = y[int64_t(gm) * ldy + gn];
      o = accumulate ? o + v : v;
    }
  }
}

void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype, const float* bias,
            int64_t M, int64_t N, int64_t K, bool accumulate, void* stream) {
  MOE_KCHECK("matmul", M >= 0 && M < (int64_t(1) << 31) && N >= 0 && N < (int64_t(1) << 31), "M, N out of range");
  MOE_KCHECK("matmul", K > 0 && K < (int64_t(1) << 31), "K must be > 0 (got " + std::to_string(K) + ")");
  MOE_KCHECK("matmul", ldx >= K && ldy >= N, "ldx must be >= K and ldy >= N");
  MOE_KCHECK("matmul", y && x && W, "null pointer");
  const bool blocks = w_dtype == DType::Q8_0 || w_dtype == DType::Q4_0 || w_dtype == DType::Q4_K;
  MOE_KCHECK("matmul", w_dtype == DType::F32 || w_dtype == DType::F16 || w_dtype == DType::BF16 || blocks,
             std::string("weight dtype ") + dtype_name(w_dtype) + " is not supported (f32, f16, bf16, q8_0, q4_0, q4_k)");
  if (blocks) {
    const int64_t bs = w_dtype == DType::Q4_K ? 256 : 32;
    MOE_KCHECK("matmul", K % bs == 0, "K must be a multiple of the " + std::string(dtype_name(w_dtype)) + " block of " + std::to_string(bs) +
                                          " (got " + std::to_string(K) + ")");
  }
  if (M == 0 || N == 0) return;
  const dim3 grid(unsigned((N + kMmTile - 1) / kMmTile), unsigned((M + kMmTile - 1) / kMmTile)), block(kMmThreads);
  MOE_KCHECK("matmul", M <= int64_t(65535) * kMmTile, "M too large for one launch (grid.y <= 65535)");
  const uint8_t* w = static_cast<const uint8_t*>(W);
  const int64_t rb = int64_t(dtype_row_bytes(w_dtype, K));
  const int acc = accumulate ? 1 : 0;
#define MOE_MM(name, WL) MOE_LAUNCH(name, matmul_kernel<WL>, grid, block, 0, stream, y, ldy, x, ldx, w, rb, bias, int(M), int(N), int(K), acc)
  switch (w_dtype) {
    case DType::F32: MOE_MM("matmul<f32>", RowTyped<WF32>); break;
    case DType::F16: MOE_MM("matmul<f16>", RowTyped<WF16>); break;
    case DType::BF16: MOE_MM("matmul<bf16>", RowTyped<WBF16>); break;
    case DType::Q8_0: MOE_MM("matmul<q8_0>", RowBlocks<0>); break;
    case DType::Q4_0: MOE_MM("matmul<q4_0>", RowBlocks<1>); break;
    default: MOE_MM("matmul<q4_k>", RowBlocks<2>); break;
  }
#undef MOE_MM
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
