// Fused dequantise-and-dot for block-quantized weights (Q8_0, Q4_0, Q4_K; native/quant/quant.h):
//   y[M, N] (+)= x[M, K] · W[N, K]^T     W rows are K/block blocks each; K % block == 0.
// matmul() in cpu/matmul.h forwards here when the weight dtype is a block type, so the model code is unchanged.
//
// x is quantised to int8 blocks of 32 (f32 scale d = absmax/127 + the block's integer sum s), and each block dot
// is an integer dot scaled once per block:
//     Q8_0: d_w*d_x * Σ q_w q_x
//     Q4_0: d_w*d_x * (Σ q_w q_x - 8 Σ q_x)
//     Q4_K: Σ_j [ d*sc_j*d_xj * Σ q_w q_x  -  dmin*m_j*d_xj * Σ q_x ]     (sub-block j of 32)
// or, with f32 activations, each weight block is widened to floats and dotted with x (MOE_QUANT_ACT=f32|q8|auto).
//
// Paths, by M (rows of x):
//   AVX-512 VNNI, M >= 2 (Q4_0, Q4_K) or 3 (Q8_0): a GEMM over 16-row weight tiles repacked for vpdpbusd (16
//                 outputs per instruction), int8 activations (qmatmul_avx512.cpp; the crossovers are measured
//                 there); MOE_QUANT_ACT=f32 takes the paths below instead.
//   packed Q4_0 / Q4_K / Q8_0 (qpack below; VNNI and AVX2 tables), every M: the GEMM over the load-time tiles.
//   AVX2, Q8_0 not packed, M >= 2: the same GEMM, each tile packed per call.
//   other tables, M >= 8: kTileRows weight rows dequantised once into an f32 tile and multiplied by the dense
//                 f32 kernels (cpu/matmul.h), which reuse the tile for every row of x.
//   the rest (decode, small expert groups): per-row dots over up to 4 (VNNI: 8) rows of x per weight row; auto
//                 = int8 for Q4_0 / Q4_K, and for Q8_0 where x is quantised with SIMD (the VNNI and AVX2
//                 tables), f32 otherwise (measured, see native/README.md "Quantization").
// Tables: portable (both modes), AVX2 (vpmaddubsw + vpmaddwd), AVX-512 VNNI (vpdpbusd), chosen at run time;
// MOE_SIMD picks one by a prefix of its name; qmatmul_ref (dequantise, then a double dot) is the oracle.
#pragma once
#include <cstddef>
#include <cstdint>
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "format/dtype.h"

namespace moe {

// packed: the same weight in this table's load-time layout (qpack below), or null.
void qmatmul(ThreadPool* pool, float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype,
             int64_t M, int64_t N, int64_t K, bool accumulate, const void* packed = nullptr);
// Several independent products at once (the experts of a MoE layer): those on the GEMM run as ONE parallel job
// over all their 16-row tiles, those on the row dots as one over all their weight rows (one wake-up and one tail
// instead of one per product); the f32 tiles run one by one through qmatmul. Each product as qmatmul, bit for bit.
void qmatmul_batch(ThreadPool* pool, const MatmulJob* jobs, int n);
void qmatmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype, int64_t M,
                 int64_t N, int64_t K, bool accumulate);

// The load-time layout (Q4_0, Q4_K and Q8_0; the AVX-512 VNNI and AVX2 tables read the same one, qmatmul_kernels.h): a
// weight packed once, at load, into the 16-row tiles the packed GEMMs read, the same size as stored, so that no
// product repacks per call and decode (M = 1) takes the GEMM too. qpack_bytes: its size for an N x K weight of this type under the table in use, 0 when that
// table packs none (then use the weight as stored). qpack: fill `out` (qpack_bytes of it) on the pool. A product
// given `packed` (qmatmul, MatmulJob::packed) reads it while that table is in use and int8 activations are on,
// else W; W must stay valid either way.
size_t qpack_bytes(DType t, int64_t N, int64_t K);
void qpack(ThreadPool* pool, DType t, const void* W, int64_t N, int64_t K, void* out);
// The inverse, for one row: the stored blocks of row n covering columns [k0, k0 + w) (whole blocks) of an N x K
// weight packed at P, into `out` (w / block blocks). Plain copies of the layout, whichever table packed it, so
// what reads a weight as stored (training's dX) can read the packed copy and the stored pages stay dropped.
void qpack_row_blocks(DType t, const void* P, int64_t K, int64_t n, int64_t k0, int64_t w, void* out);

// Activation mode: 0 = f32, 1 = int8, 2 = auto (the default). Returns the previous mode (tests, benches).
int qmatmul_act_mode(int mode);
// Names of the quantized kernel tables this CPU can run, best first ("portable" last); returns how many.
int qmatmul_paths(const char** names, int max_names);
// Use the named table (nullptr or "": the default, the best one or MOE_SIMD's choice); false if this CPU has none.
bool qmatmul_use_path(const char* name);
// The table in use ("avx512vnni", "avx2", "portable").
const char* qmatmul_path();

}  // namespace moe
