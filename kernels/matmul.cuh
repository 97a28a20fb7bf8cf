// The three products of a linear layer (backend/backend.h), one tiled kernel:
//   matmul     y[M, N]  (+)= x[M, K] · W[N, K]^T (+ bias[N])     forward; W f32/f16/bf16, GGUF Q8_0/Q4_0/Q4_K, or NF4
//   matmul_dx  dx[M, K] (+)= dy[M, N] · W[N, K]                  the input gradient through a frozen W of those dtypes
//   matmul_dw  dW[N, K] (+)= dy[M, N]^T · x[M, K]                f32 (LoRA's A and B)
// Each is out[I, J] (+)= Σ_r A(i, r) · B(j, r) with its own loaders A, B (what differs is only which index walks
// a row), row-major out with leading dimension ldo.
// Classic shared-memory tiling (no tensor cores yet: the plain form the mma.sync one will be checked against): a
// block of 256 threads computes a 64x64 tile of out; per step of 16 along r it stages A[64, 16] and B[64, 16] into
// shared memory as [r][i] and [r][j], so each thread's 4x4 micro-tile reads two float4 per r: 8 shared loads for
// 16 FMAs. Weights are widened (or dequantised, element by element) to f32 on the way into shared memory, so the
// inner loop is dtype-free. Out-of-range elements load zeros. A weight element is read once per 64 rows of x.
#pragma once
#include "kernels/qblock.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kMmTile = 64, kMmK = 16, kMmThreads = 256, kMmPad = 4;  // pad keeps rows 16-byte aligned

// NF4 (quant/nf4.h) element e of the flattened tensor: code = the high nibble of byte e/2 for even e, the low one
// for odd e; w = NF4[code] · (DYN[absmax_q[b]] · absmax2[b / 256] + offset), b = e / 64, each product and sum
// rounded once in f32 as bitsandbytes dequantises (no fused multiply-add: __fmul_rn / __fadd_rn on the device).
__device__ __forceinline__ float nf4_at(const Nf4View& w, int64_t e) {
  const uint8_t byte = w.packed[e >> 1];
  const int64_t b = e >> 6;
  const float scale = add_rn(mul_rn(w.dyn[w.absmax_q[b]], w.absmax2[b >> 8]), w.offset);
  return mul_rn(w.code[(e & 1) ? byte & 15 : byte >> 4], scale);
}

// Loaders: element (i, r) of A and (j, r) of B as f32.
struct LdRowsF32 {        // m[i, r] = p[i·ld + r]   (x or dy, rows ld apart)
  const float* p; int64_t ld;
  __device__ __forceinline__ float operator()(int64_t i, int64_t r) const { return p[i * ld + r]; }
};
struct LdColsF32 {        // m[i, r] = p[r·ld + i]   (dyᵀ, xᵀ for matmul_dw)
  const float* p; int64_t ld;
  __device__ __forceinline__ float operator()(int64_t i, int64_t r) const { return p[r * ld + i]; }
};
template <class WL> struct LdW {     // W[j, r]: weight row j, element r (forward)
  const uint8_t* w; int64_t row_bytes;
  __device__ __forceinline__ float operator()(int64_t j, int64_t r) const { return WL::at(w + j * row_bytes, int(r)); }
};
template <class WL> struct LdWt {    // W[r, j]: weight row r, element j (dx)
  const uint8_t* w; int64_t row_bytes;
  __device__ __forceinline__ float operator()(int64_t j, int64_t r) const { return WL::at(w + r * row_bytes, int(j)); }
};
struct LdNf4 {                       // NF4 W[j, r] (forward)
  Nf4View w; int64_t cols;
  __device__ __forceinline__ float operator()(int64_t j, int64_t r) const { return nf4_at(w, j * cols + r); }
};
struct LdNf4t {                      // NF4 W[r, j] (dx)
  Nf4View w; int64_t cols;
  __device__ __forceinline__ float operator()(int64_t j, int64_t r) const { return nf4_at(w, r * cols + j); }
};

// One 64 x 64 tile of out at (i0, j0), by the whole block (every thread must call it: it has barriers).
template <class LA, class LB>
__device__ __forceinline__ void gemm_tile(float* out, int64_t ldo, const LA& A, const LB& B, const float* bias, int I, int J, int R,
                                          int accumulate, int i0, int j0) {
  __shared__ __align__(16) float as[kMmK][kMmTile + kMmPad];  // [r][i]
  __shared__ __align__(16) float bs[kMmK][kMmTile + kMmPad];  // [r][j]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;  // 16 x 16 threads, 4 x 4 outputs each
  float acc[4][4];
  for (int a = 0; a < 4; ++a) for (int b = 0; b < 4; ++b) acc[a][b] = 0.0f;
  for (int r0 = 0; r0 < R; r0 += kMmK) {
    // 64 x 16 elements per operand, 4 per thread; consecutive threads take consecutive r
    for (int q = 0; q < 4; ++q) {
      const int idx = tid + q * kMmThreads, row = idx / kMmK, c = idx % kMmK, gr = r0 + c;
      const int gi = i0 + row, gj = j0 + row;
      as[c][row] = (gi < I && gr < R) ? A(gi, gr) : 0.0f;
      bs[c][row] = (gj < J && gr < R) ? B(gj, gr) : 0.0f;
    }
    __syncthreads();
    MOE_UNROLL
    for (int kk = 0; kk < kMmK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&as[kk][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&bs[kk][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
      MOE_UNROLL
      for (int p = 0; p < 4; ++p)
        MOE_UNROLL
        for (int q = 0; q < 4; ++q) acc[p][q] += av[p] * bv[q];
    }
    __syncthreads();  // the next step overwrites the tiles
  }
  for (int p = 0; p < 4; ++p) {
    const int gi = i0 + ty * 4 + p;
    if (gi >= I) continue;
    for (int q = 0; q < 4; ++q) {
      const int gj = j0 + tx * 4 + q;
      if (gj >= J) continue;
      const float v = bias != nullptr ? acc[p][q] + bias[gj] : acc[p][q];
      float& o = out[int64_t(gi) * ldo + gj];
      o = accumulate ? o + v : v;
    }
  }
}

template <class LA, class LB>
__global__ void __launch_bounds__(kMmThreads)
gemm_kernel(float* out, int64_t ldo, LA A, LB B, const float* bias, int I, int J, int R, int accumulate) {
  gemm_tile(out, ldo, A, B, bias, I, J, R, accumulate, int(blockIdx.y) * kMmTile, int(blockIdx.x) * kMmTile);
}

// Several independent products y_g (+)= x_g · W_gᵀ of one weight dtype in one launch (the experts of a MoE layer:
// ggml's mul_mat_id): blockIdx.z picks the product, the grid covers the largest one, and blocks past a smaller
// product's edge return at once (the whole block: it has not reached a barrier). The table travels as the kernel's
// parameter (≤ 4 KiB), so nothing is copied to the device first.
template <class WL>
__global__ void __launch_bounds__(kMmThreads) gemm_group_kernel(GemmGroup g) {
  const GemmGroupJob& jb = g.job[blockIdx.z];
  const int i0 = int(blockIdx.y) * kMmTile, j0 = int(blockIdx.x) * kMmTile;
  if (i0 >= jb.M || j0 >= jb.N) return;
  gemm_tile(jb.y, jb.ldy, LdRowsF32{jb.x, jb.ldx}, LdW<WL>{static_cast<const uint8_t*>(jb.w), jb.row_bytes}, nullptr, jb.M, jb.N, jb.K,
            jb.accumulate, i0, j0);
}

template <class LA, class LB>
void launch_gemm(const char* name, float* out, int64_t ldo, const LA& A, const LB& B, const float* bias, int64_t I, int64_t J, int64_t R,
                 bool accumulate, void* stream) {
  if (I == 0 || J == 0) return;
  MOE_KCHECK(name, I <= int64_t(65535) * kMmTile, "too many rows for one launch (grid.y <= 65535)");
  const dim3 grid(unsigned((J + kMmTile - 1) / kMmTile), unsigned((I + kMmTile - 1) / kMmTile)), block(kMmThreads);
  MOE_LAUNCH(name, (gemm_kernel<LA, LB>), grid, block, 0, stream, out, ldo, A, B, bias, int(I), int(J), int(R), accumulate ? 1 : 0);
}

inline void check_gemm(const char* name, int64_t M, int64_t N, int64_t K, DType w_dtype) {
  MOE_KCHECK(name, M >= 0 && M < (int64_t(1) << 31) && N >= 0 && N < (int64_t(1) << 31), "M, N out of range");
  MOE_KCHECK(name, K > 0 && K < (int64_t(1) << 31), "K must be > 0 (got " + std::to_string(K) + ")");
  const bool blocks = w_dtype == DType::Q8_0 || w_dtype == DType::Q4_0 || w_dtype == DType::Q4_K;
  MOE_KCHECK(name, w_dtype == DType::F32 || w_dtype == DType::F16 || w_dtype == DType::BF16 || blocks,
             std::string("weight dtype ") + dtype_name(w_dtype) + " is not supported (f32, f16, bf16, q8_0, q4_0, q4_k)");
  if (blocks) {
    const int64_t bs = w_dtype == DType::Q4_K ? 256 : 32;
    MOE_KCHECK(name, K % bs == 0, "K must be a multiple of the " + std::string(dtype_name(w_dtype)) + " block of " + std::to_string(bs) +
                                      " (got " + std::to_string(K) + ")");
  }
}

// Calls f(loader type tag) with the weight loader of w_dtype: RowTyped / RowBlocks (kernels/qblock.cuh).
template <class F>
void with_weight_loader(DType w_dtype, F&& f) {
  switch (w_dtype) {
    case DType::F32: f(RowTyped<WF32>{}, "f32"); break;
    case DType::F16: f(RowTyped<WF16>{}, "f16"); break;
    case DType::BF16: f(RowTyped<WBF16>{}, "bf16"); break;
    case DType::Q8_0: f(RowBlocks<0>{}, "q8_0"); break;
    case DType::Q4_0: f(RowBlocks<1>{}, "q4_0"); break;
    default: f(RowBlocks<2>{}, "q4_k"); break;
  }
}

// The two products through a stored weight W[N, K]: forward out[M, N] = a[M, K]·Wᵀ, or dx out[M, K] = a[M, N]·W.
template <bool DX>
void weight_gemm(const char* name, float* out, int64_t ldo, const float* a, int64_t lda, const void* W, DType w_dtype, const float* bias,
                 int64_t M, int64_t N, int64_t K, bool accumulate, void* stream) {
  check_gemm(name, M, N, K, w_dtype);
  MOE_KCHECK(name, lda >= (DX ? N : K) && ldo >= (DX ? K : N), "a leading dimension is too small");
  MOE_KCHECK(name, out && a && W, "null pointer");
  const uint8_t* w = static_cast<const uint8_t*>(W);
  const int64_t rb = int64_t(dtype_row_bytes(w_dtype, K));
  with_weight_loader(w_dtype, [&](auto wl, const char*) {
    if (DX) launch_gemm(name, out, ldo, LdRowsF32{a, lda}, LdWt<decltype(wl)>{w, rb}, nullptr, M, K, N, accumulate, stream);
    else launch_gemm(name, out, ldo, LdRowsF32{a, lda}, LdW<decltype(wl)>{w, rb}, bias, M, N, K, accumulate, stream);
  });
}

void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType w_dtype, const float* bias,
            int64_t M, int64_t N, int64_t K, bool accumulate, void* stream) {
  weight_gemm<false>("matmul", y, ldy, x, ldx, W, w_dtype, bias, M, N, K, accumulate, stream);
}

void matmul_dx(float* dx, int64_t lddx, const float* dy, int64_t lddy, const void* W, DType w_dtype, int64_t M, int64_t N, int64_t K,
               bool accumulate, void* stream) {
  weight_gemm<true>("matmul_dx", dx, lddx, dy, lddy, W, w_dtype, nullptr, M, N, K, accumulate, stream);
}

void matmul_group(const GemmGroup& g, DType w_dtype, void* stream) {
  MOE_KCHECK("matmul_group", g.n >= 0 && g.n <= kGemmGroupMax, "at most " + std::to_string(kGemmGroupMax) + " products per launch");
  int maxM = 0, maxN = 0;
  for (int i = 0; i < g.n; ++i) {
    const GemmGroupJob& j = g.job[i];
    check_gemm("matmul_group", j.M, j.N, j.K, w_dtype);
    MOE_KCHECK("matmul_group", j.ldx >= j.K && j.ldy >= j.N && j.y && j.x && j.w, "a product's pointers or leading dimensions");
    MOE_KCHECK("matmul_group", j.row_bytes == int64_t(dtype_row_bytes(w_dtype, j.K)), "a product's row_bytes does not match its K");
    maxM = std::max(maxM, j.M); maxN = std::max(maxN, j.N);
  }
  if (g.n == 0 || maxM == 0 || maxN == 0) return;
  MOE_KCHECK("matmul_group", maxM <= 65535 * kMmTile, "too many rows for one launch (grid.y <= 65535)");
  const dim3 grid(unsigned((maxN + kMmTile - 1) / kMmTile), unsigned((maxM + kMmTile - 1) / kMmTile), unsigned(g.n));
  with_weight_loader(w_dtype, [&](auto wl, const char*) {
    MOE_LAUNCH("matmul_group", gemm_group_kernel<decltype(wl)>, grid, dim3(kMmThreads), 0, stream, g);
  });
}

void matmul_dw(float* dW, int64_t lddw, const float* dy, int64_t lddy, const float* x, int64_t ldx, int64_t M, int64_t N, int64_t K,
               bool accumulate, void* stream) {
  MOE_KCHECK("matmul_dw", M >= 0 && M < (int64_t(1) << 31) && N > 0 && N < (int64_t(1) << 31) && K > 0 && K < (int64_t(1) << 31),
             "M >= 0 and N, K > 0");
  MOE_KCHECK("matmul_dw", lddw >= K && lddy >= N && ldx >= K, "leading dimensions too small");
  MOE_KCHECK("matmul_dw", dW && dy && x, "null pointer");
  // M = 0: dW = 0 (or unchanged): the empty sum, which the tiles give with R = 0
  launch_gemm("matmul_dw", dW, lddw, LdColsF32{dy, lddy}, LdColsF32{x, ldx}, nullptr, N, K, M, accumulate, stream);
}

// The same two products through an NF4 W[N, K] (Q-LoRA's frozen base).
template <bool DX>
void nf4_gemm(const char* name, float* out, int64_t ldo, const float* a, int64_t lda, const Nf4View& W, int64_t M, int64_t N, int64_t K,
              bool accumulate, void* stream) {
  MOE_KCHECK(name, M >= 0 && M < (int64_t(1) << 31) && N > 0 && K > 0 && N * K < (int64_t(1) << 40), "bad shape");
  MOE_KCHECK(name, lda >= (DX ? N : K) && ldo >= (DX ? K : N) && out && a && W.packed && W.absmax_q && W.absmax2 && W.code && W.dyn,
             "bad arguments");
  if (DX) launch_gemm(name, out, ldo, LdRowsF32{a, lda}, LdNf4t{W, K}, nullptr, M, K, N, accumulate, stream);
  else launch_gemm(name, out, ldo, LdRowsF32{a, lda}, LdNf4{W, K}, nullptr, M, N, K, accumulate, stream);
}

void matmul_nf4(float* y, int64_t ldy, const float* x, int64_t ldx, const Nf4View& W, int64_t M, int64_t N, int64_t K, bool accumulate,
                void* stream) {
  nf4_gemm<false>("matmul_nf4", y, ldy, x, ldx, W, M, N, K, accumulate, stream);
}

void matmul_dx_nf4(float* dx, int64_t lddx, const float* dy, int64_t lddy, const Nf4View& W, int64_t M, int64_t N, int64_t K,
                   bool accumulate, void* stream) {
  nf4_gemm<true>("matmul_dx_nf4", dx, lddx, dy, lddy, W, M, N, K, accumulate, stream);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
