// Dense linear algebra on the CPU: the weight-times-activation products that are ~all of inference time.
// Weights are in Hugging Face layout W[N, K] (out_features rows, in_features columns, row-major) and in their
// stored dtype (f32, f16, bf16); activations are f32; accumulation is f32.
#pragma once
#include <cstdint>
#include "format/dtype.h"
#include "cpu/thread_pool.h"

namespace moe {

// y[M, N] = x[M, K] · W[N, K]^T        (accumulate: y += ...)
// x rows are ldx floats apart, y rows ldy floats apart (ldx >= K, ldy >= N). Parallel over N (and M when M is
// large); M == 1 is the decode matrix-vector case. Each weight row is read once per call, for all M rows of x.
void matmul(ThreadPool& pool, float* y, int64_t ldy, const float* x, int64_t ldx,
            const void* W, DType w_dtype, int64_t M, int64_t N, int64_t K, bool accumulate = false);

// One product of a batch: y[M, N] (+)= x[M, K] · W[N, K]^T, as matmul's arguments.
// packed: W in the quantized kernels' load-time layout (cpu/qmatmul.h qpack), or null.
struct MatmulJob {
  float* y; int64_t ldy; const float* x; int64_t ldx; const void* W; DType t; int64_t M, N, K; bool accumulate;
  const void* packed = nullptr;
};
// Several independent products at once (a MoE layer's experts, q/k/v of one x), each as matmul bit for bit, in
// fewer parallel jobs: block-quantized ones through qmatmul_batch (cpu/qmatmul.h), dense ones with M = 1
// (decode) as one job over all their weight rows, the rest one by one.
void matmul_batch(ThreadPool& pool, const MatmulJob* jobs, int n);
// Single-threaded variant (same math) for callers already inside a parallel region.
void matmul_st(float* y, int64_t ldy, const float* x, int64_t ldx,
               const void* W, DType w_dtype, int64_t M, int64_t N, int64_t K, bool accumulate = false);

// Plain scalar reference implementation (the oracle for the fast paths; used in tests).
void matmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx,
                const void* W, DType w_dtype, int64_t M, int64_t N, int64_t K, bool accumulate = false);

// Gather one row of a (vocab, hidden) embedding table in any float dtype into f32.
void row_to_f32(float* out, const void* W, DType w_dtype, int64_t row, int64_t K);

// f32 vector primitives used by attention and norms, dispatched like matmul.
float vec_dot_f32(const float* a, const float* b, int64_t n);
void vec_axpy_f32(float* y, float a, const float* x, int64_t n);   // y += a * x
// dW[N, R] (+)= dyᵀ · u for dy [M, N], u [M, R] (rows lddy / ldu floats apart): a weight gradient whose input side
// is narrow (LoRA's dB, R = its rank), each output row held in registers over all M. Returns false (nothing done)
// where the SIMD table has no kernel for this R (AVX-512: 16, 32, 64, 128; AVX2: 8, 16, 32); then transpose and
// use matmul_dx. Parallel over N; the bits do not depend on the thread count.
bool matmul_dw_narrow(ThreadPool& pool, float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu,
                      int64_t M, int64_t N, int64_t R, bool accumulate);
// Attention inner loops, one call per query row (head_dim is small: per-key calls would be mostly overhead):
//   out[j] = scale * dot(q[0:d], K[j*ldk : j*ldk+d])   for j in [0, n)
void vec_dot_rows_f32(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale);
//   o[0:d] += sum_j w[j] * V[j*ldv : j*ldv+d]
void vec_axpy_rows_f32(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d);

// Which SIMD path was selected at run time: "amx-bf16+avx512f" (AMX tiles for bf16-weight prefill, AVX-512
// otherwise), "avx512f+fma+f16c", "avx2+fma+f16c" or "portable". The MOE_SIMD environment variable (a name or
// prefix, e.g. MOE_SIMD=avx2) picks another path this CPU supports, for comparisons.
const char* simd_name();

// Tests and benchmarks: force the portable path (true) or go back to the best path for this CPU (false).
// Returns the previous setting. Not for use while another thread is inside a matmul.
bool simd_force_portable(bool on);
// Names of the SIMD paths this CPU can run, best first ("portable" last); returns how many (<= 4).
int simd_paths(const char** names, int max_names);
// Use the named path (nullptr or "": the default, i.e. the best one or the MOE_SIMD environment variable's
// choice). Returns false if this CPU cannot run it.
bool simd_use_path(const char* name);

}  // namespace moe
