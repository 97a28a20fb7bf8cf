// Products with a frozen weight W[N, K] (HF layout: out_features rows of in_features) for Q-LoRA: the forward
// y = x · Wᵀ with W in NF4 (quant/nf4.h), and the input gradient dX = dY · W that the backward pass needs through
// every frozen weight (no dW: the base is frozen), for NF4 and for the stored dtypes f32/f16/bf16/Q8_0/Q4_0/Q4_K.
//
//   forward   y[M, N]  (+)= x[M, K]  · W[N, K]ᵀ      y[m, n]  = Σ_k x[m, k]  W[n, k]
//   input-grad dX[M, K] (+)= dY[M, N] · W[N, K]       dX[m, k] = Σ_n dY[m, n] W[n, k]
// Activations and gradients are f32, rows ldx / ldy / lddx / lddy floats apart; accumulation is f32.
//
// NF4 forward: M == 1 (decode) dots each weight row straight from its nibbles (one table lookup per code, the
// block's scale applied once per 64-block); M >= 2 dequantises kTileRows weight rows once into an f32 tile and hands
// it to the dense kernel matmul_st (cpu/matmul.h), which reuses it for all M rows of x.
// dX (all dtypes): threads split K into column chunks (disjoint columns of dX: no reduction between threads); each
// walks all N weight rows of its chunk, widening / dequantising a tile of 64 rows x 256 columns into f32 first, and
// runs the dense dX kernel, which keeps a 4-row x NV-vector block of dX in registers while streaming down the tile:
//   acc[r][v] += dY[m + r, n] * W[n, k + v*VW .. k + (v+1)*VW)       (VW = 16, NV <= 4 AVX-512; VW = 8, NV <= 2 AVX2)
// M < 4 has too little reuse for that: each thread takes K / threads columns and does one axpy per (m, n) row.
// Paths: portable, AVX2+FMA+F16C, AVX-512F, chosen with the dense kernels' path (simd_name(): amx/avx512 -> AVX-512,
// avx2 -> AVX2, portable -> portable), so simd_use_path / MOE_SIMD select these too. Scalar references beside them.
// No allocation per call once thread-local scratch (tiles) has reached its size.
#pragma once
#include <cstdint>
#include "cpu/thread_pool.h"
#include "format/dtype.h"
#include "quant/nf4.h"

namespace moe {

// y[M, N] (+)= x[M, K] · Wᵀ, N = W.rows, K = W.cols (any K: blocks may straddle rows).
void nf4_matmul(ThreadPool* pool, float* y, int64_t ldy, const float* x, int64_t ldx, const NF4Tensor& W, int64_t M,
                bool accumulate = false);
void nf4_matmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, const NF4Tensor& W, int64_t M,
                    bool accumulate = false);

// dX[M, K] (+)= dY[M, N] · W.
void nf4_matmul_dx(ThreadPool* pool, float* dx, int64_t lddx, const float* dy, int64_t lddy, const NF4Tensor& W,
                   int64_t M, bool accumulate = false);
void nf4_matmul_dx_ref(float* dx, int64_t lddx, const float* dy, int64_t lddy, const NF4Tensor& W, int64_t M,
                       bool accumulate = false);

// dX[M, K] (+)= dY[M, N] · W[N, K] for W stored as f32, f16, bf16 (rows of K values) or Q8_0/Q4_0/Q4_K (rows of
// K / block blocks; K % block == 0). The forward of these dtypes is matmul() / qmatmul(). packed (block types): the
// same weight in the load-time layout (cpu/qmatmul.h qpack), read instead of W (W is then not touched), the same bits.
void matmul_dx(ThreadPool* pool, float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType w_dtype,
               int64_t M, int64_t N, int64_t K, bool accumulate = false, const void* packed = nullptr);
// Scalar reference: each W row widened by row_to_f32 (the reference dequantisation), sums in double.
void matmul_dx_ref(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType w_dtype, int64_t M,
                   int64_t N, int64_t K, bool accumulate = false);

// The SIMD dequantisation the kernels use, elements [e0, e1) into y: bit-identical to nf4_dequantize_range.
void nf4_dequantize_range_fast(const NF4Tensor& W, int64_t e0, int64_t e1, float* y);
// Which of these kernels' paths is active: "avx512", "avx2" or "portable".
const char* nf4_simd_name();

}  // namespace moe
