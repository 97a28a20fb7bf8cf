// Fused dequantise-and-dot for block-quantized weights (Q8_0, Q4_0, Q4_K; native/quant/quant.h):
//   y[M, N] (+)= x[M, K] · W[N, K]^T     W rows are K/block blocks each; K % block == 0.
// matmul() in cpu/matmul.h forwards here when the weight dtype is a block type, so the model code is unchanged.
//
// M >= 8 (prefill, expert groups of >= 8 tokens): kTileRows weight rows are dequantised once into an f32 tile
// and multiplied by the dense f32 kernels (cpu/matmul.h), which reuse the tile for every row of x.
// M < 8 (decode, small expert groups), two activation modes (MOE_QUANT_ACT=f32|q8|auto; default auto = q8 for Q4_0/Q4_K weights, f32 for Q8_0 weights,
// chosen by measurement, see native/README.md "Quantization"):
//   f32  each weight block is widened to 32 floats in registers and dotted with the f32 activations.
//   q8   the activation row is quantised once per call to int8 blocks of 32 (f32 scale + the block's integer
//        sum), and each block dot is an integer dot (AVX2: vpmaddubsw + vpmaddwd), scaled once per block:
//          Q8_0: d_w*d_x * Σ q_w q_x
//          Q4_0: d_w*d_x * (Σ q_w q_x - 8 Σ q_x)
//          Q4_K: Σ_j [ d*sc_j*d_xj * Σ q_w q_x  -  dmin*m_j*d_xj * Σ q_x ]     (sub-block j of 32)
// Paths: scalar reference (qmatmul_ref, dequantise then double dot), portable (both modes), AVX2 (both modes),
// chosen with the dense kernels' dispatch (MOE_SIMD).
#pragma once
#include <cstdint>
#include "cpu/thread_pool.h"
#include "format/dtype.h"

namespace moe {

void qmatmul(ThreadPool* pool, float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype,
             int64_t M, int64_t N, int64_t K, bool accumulate);
void qmatmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype, int64_t M,
                 int64_t N, int64_t K, bool accumulate);

// Activation mode: 0 = f32, 1 = int8, 2 = auto (the default). Returns the previous mode (tests, benches).
int qmatmul_act_mode(int mode);
// Force the portable (true) or the best SIMD (false) quantized kernels; returns the previous setting.
bool qmatmul_force_portable(bool on);

}  // namespace moe
