// Tensor-core product over bf16 weights: y[M, N] (+)= x[M, K] · W[N, K]^T, W bf16, x f32, with mma.sync m16n8k16
// (bf16 inputs, f32 accumulation; sm_80+). x is split into two bf16 parts, hi = bf16(x) and lo = bf16(x − hi), and
// both are multiplied (two mma per tile): hi + lo carries 16 bits of x's 24-bit mantissa, so the product's relative
// error is ~2^-17 per term (|x − hi − lo| ≤ 2^-16 |x|), instead of 2^-9 with x rounded to bf16 once. Products of
// bf16 values are exact in f32; accumulation is f32 in the tensor core's order.
// Tiling: a block of 4 warps owns a 32 x 32 tile of y; warp w computes rows 16·(w / 2) .. +16 and columns
// 16·(w % 2) .. +16 as two 16 x 8 mma tiles. Per 16-deep K step the block stages x[32 × 16] (as hi and lo bf16) and
// W[32 × 16] into shared memory; each lane then reads its fragments (kernels/simt/simt.h gives the layouts).
// Out-of-range rows, columns and K load zeros. This is the first tensor-core kernel: the grouped expert GEMM and the
// int8 (Q8_0) form build on it; the backend does not call it yet (the f32 tiles of matmul.cuh keep the engine's
// parity with transformers at 1e-4 of a logit; this one is tested against the double reference at 1e-4 of the
// output's scale, measured ~1e-5).
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kTcTile = 32, kTcK = 16, kTcThreads = 128;

__device__ __forceinline__ uint32_t pack_bf16(uint32_t lo_elem, uint32_t hi_elem) { return (lo_elem & 0xffffu) | (hi_elem << 16); }

__global__ void __launch_bounds__(kTcThreads)
matmul_tc_bf16_kernel(float* y, int64_t ldy, const float* x, int64_t ldx, const uint16_t* W, int M, int N, int K, int accumulate) {
  __shared__ uint16_t xh[kTcTile][kTcK + 2], xl[kTcTile][kTcK + 2], ws[kTcTile][kTcK + 2];  // +2: fewer bank conflicts
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * kTcTile, n0 = blockIdx.x * kTcTile;
  const int wm = (warp >> 1) * 16, wn = (warp & 1) * 16;  // the warp's 16 x 16 inside the block tile
  const int g = lane >> 2, t = lane & 3;
  float acc[2][4];
  for (int j = 0; j < 2; ++j) for (int i = 0; i < 4; ++i) acc[j][i] = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kTcK) {
    // 32 x 16 of x and of W: 512 elements each, 4 per thread, consecutive threads along k
    for (int q = 0; q < 4; ++q) {
      const int idx = tid + q * kTcThreads, r = idx / kTcK, c = idx % kTcK, gk = k0 + c;
      const float xv = (m0 + r < M && gk < K) ? x[int64_t(m0 + r) * ldx + gk] : 0.0f;
      const uint32_t h = f32_to_bf16_bits(xv);
      xh[r][c] = uint16_t(h);
      xl[r][c] = uint16_t(f32_to_bf16_bits(xv - bf16_bits_to_f32(h)));
      ws[r][c] = (n0 + r < N && gk < K) ? W[int64_t(n0 + r) * K + gk] : uint16_t(0);
    }
    __syncthreads();
    uint32_t ah[4], al[4];
    const int r0 = wm + g, r1 = wm + g + 8, c0 = 2 * t, c1 = 2 * t + 8;
    ah[0] = pack_bf16(xh[r0][c0], xh[r0][c0 + 1]); ah[1] = pack_bf16(xh[r1][c0], xh[r1][c0 + 1]);
    ah[2] = pack_bf16(xh[r0][c1], xh[r0][c1 + 1]); ah[3] = pack_bf16(xh[r1][c1], xh[r1][c1 + 1]);
    al[0] = pack_bf16(xl[r0][c0], xl[r0][c0 + 1]); al[1] = pack_bf16(xl[r1][c0], xl[r1][c0 + 1]);
    al[2] = pack_bf16(xl[r0][c1], xl[r0][c1 + 1]); al[3] = pack_bf16(xl[r1][c1], xl[r1][c1 + 1]);
    for (int j = 0; j < 2; ++j) {
      const int n = wn + 8 * j + g;  // B = Wᵀ: B[k][n] = W[n][k], so a "col" B fragment is a row of W
      const uint32_t b[2] = {pack_bf16(ws[n][c0], ws[n][c0 + 1]), pack_bf16(ws[n][c1], ws[n][c1 + 1])};
      mma_bf16_16816(acc[j], al, b, acc[j]);  // the small part first: it adds less rounding to the large one
      mma_bf16_16816(acc[j], ah, b, acc[j]);
    }
    __syncthreads();  // the next step overwrites the tiles
  }
  for (int j = 0; j < 2; ++j)
    for (int i = 0; i < 4; ++i) {
      const int m = m0 + wm + g + (i >= 2 ? 8 : 0), n = n0 + wn + 8 * j + 2 * t + (i & 1);
      if (m >= M || n >= N) continue;
      float& o = y[int64_t(m) * ldy + n];
      o = accumulate ? o + acc[j][i] : acc[j][i];
    }
}

void matmul_tc_bf16(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, int64_t M, int64_t N, int64_t K, bool accumulate,
                    void* stream) {
  MOE_KCHECK("matmul_tc_bf16", M >= 0 && M <= int64_t(65535) * kTcTile && N >= 0 && N < (int64_t(1) << 31) && K > 0 && K < (int64_t(1) << 31),
             "bad shape");
  MOE_KCHECK("matmul_tc_bf16", ldx >= K && ldy >= N && y && x && W, "null pointer or a leading dimension too small");
  if (M == 0 || N == 0) return;
  const dim3 grid(unsigned((N + kTcTile - 1) / kTcTile), unsigned((M + kTcTile - 1) / kTcTile));
  MOE_LAUNCH("matmul_tc_bf16", matmul_tc_bf16_kernel, grid, dim3(kTcThreads), 0, stream, y, ldy, x, ldx, static_cast<const uint16_t*>(W),
             int(M), int(N), int(K), accumulate ? 1 : 0);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
