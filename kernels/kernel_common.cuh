// Shared by every kernels/*.cuh body. A kernel body is written once and compiled two ways:
//   nvcc    (kernels/<family>.cu, MOE_KERNEL_NS = cuda): real __global__ kernels, launched with <<<>>>
//   g++     (kernels/emu/kernels_emu.cpp, MOE_KERNEL_NS = emu): the same text under kernels/simt/simt.h
// Everything a body needs that differs between the two lives here: launch, launch check, f16/bf16 widening.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include "format/dtype.h"

#ifndef MOE_KERNEL_NS
#error "define MOE_KERNEL_NS (cuda or emu) before including kernels/*.cuh"
#endif

#ifdef __CUDACC__
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define SIMT_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) unsigned char name##_raw[]; T* name = reinterpret_cast<T*>(name##_raw)
// kernel<<<grid, block, smem, stream>>>(args...) then a launch check that names the kernel.
#define MOE_UNROLL _Pragma("unroll")
#define MOE_LAUNCH(name, kernel, grid, block, smem, stream, ...)                                  \
  do {                                                                                            \
    kernel<<<(grid), (block), (smem), static_cast<cudaStream_t>(stream)>>>(__VA_ARGS__);          \
    ::moe::MOE_KERNEL_NS::check_launch(name);                                                     \
  } while (0)
#else
#include "kernels/simt/simt.h"
#define MOE_UNROLL
#define MOE_LAUNCH(name, kernel, grid, block, smem, stream, ...) ::simt::launch((grid), (block), (smem), kernel, __VA_ARGS__)
#endif

namespace moe {
namespace MOE_KERNEL_NS {

// Argument errors name the kernel, e.g. "kernel matvec: K must be > 0 (got 0)".
[[noreturn]] inline void kernel_arg_error(const char* kernel, const std::string& what) {
  throw std::invalid_argument(std::string("kernel ") + kernel + ": " + what);
}
#define MOE_KCHECK(kernel, cond, msg) do { if (!(cond)) ::moe::MOE_KERNEL_NS::kernel_arg_error(kernel, msg); } while (0)

#ifdef __CUDACC__
inline void check_launch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA kernel ") + kernel + " failed to launch: " + cudaGetErrorName(e) +
                             " (" + cudaGetErrorString(e) + ")");
}
__device__ __forceinline__ float f16_bits_to_f32(uint32_t h) { return __half2float(__ushort_as_half((unsigned short)h)); }
__device__ __forceinline__ float bf16_bits_to_f32(uint32_t h) { return __uint_as_float(h << 16); }
__device__ __forceinline__ float bits_to_f32(uint32_t u) { return __uint_as_float(u); }
// f32 -> IEEE half bits, round to nearest even (the f16 KV cache's append)
__device__ __forceinline__ uint16_t f32_to_f16_bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
// One rounding per operation, never fused into an FMA (nvcc contracts a*b+c by default).
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
#else
inline float f16_bits_to_f32(uint32_t h) { return ::moe::f16_to_f32(uint16_t(h)); }
inline float bf16_bits_to_f32(uint32_t h) { return ::moe::bf16_to_f32(uint16_t(h)); }
inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint16_t f32_to_f16_bits(float x) { return ::moe::f32_to_f16(x); }
// (the host build is compiled without FMA contraction for the baseline ISA these bodies use)
inline float mul_rn(float a, float b) { return a * b; }
inline float add_rn(float a, float b) { return a + b; }
#endif

// ---- tensor cores: D = A·B + C on a 16x16 bf16 A (row), 16x8 bf16 B (col), f32 C/D, one warp (sm_80+). Fragment
// layouts: kernels/simt/simt.h mma_m16n8k16_bf16 (the PTX ISA's, which the emulator implements). ----
#ifdef __CUDACC__
__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
               : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}
// f32 -> bf16 bits, round to nearest even (NaN kept quiet)
__device__ __forceinline__ uint32_t f32_to_bf16_bits(float x) { return uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(x))); }
#else
inline void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  ::simt::detail::mma_m16n8k16_bf16(d, a, b, c);
}
inline uint32_t f32_to_bf16_bits(float x) { return uint32_t(::moe::f32_to_bf16(x)); }
#endif

// ---- reductions. All lanes of the warp must participate (blockDim.x is a multiple of 32). ----
// Butterfly (xor) reduction: after log2(32) = 5 steps every lane holds the full result.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide sum returned to every thread. scratch: __shared__ float[32] of the caller. Two barriers: one so all
// warp partials are written, one so scratch can be reused by the next call.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.0f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}

// Weight element types for matvec: how one 16-byte vector unpacks into floats.
struct WF32 {
  using T = float;
  static constexpr int kPerVec = 4;  // 16 bytes = 4 f32
  __device__ __forceinline__ static float get(T v) { return v; }
  __device__ __forceinline__ static void unpack(const uint4& r, float* o) {
    o[0] = bits_to_f32(r.x); o[1] = bits_to_f32(r.y); o[2] = bits_to_f32(r.z); o[3] = bits_to_f32(r.w);
  }
};
struct WF16 {
  using T = uint16_t;
  static constexpr int kPerVec = 8;  // 16 bytes = 8 halves; element 2i is the low half of word i (little-endian)
  __device__ __forceinline__ static float get(T v) { return f16_bits_to_f32(v); }
  __device__ __forceinline__ static void unpack(const uint4& r, float* o) {
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
    for (int i = 0; i < 4; ++i) { o[2 * i] = f16_bits_to_f32(w[i] & 0xffffu); o[2 * i + 1] = f16_bits_to_f32(w[i] >> 16); }
  }
};
struct WBF16 {
  using T = uint16_t;
  static constexpr int kPerVec = 8;  // bf16 is the top half of an f32: widening is a shift or a mask
  __device__ __forceinline__ static float get(T v) { return bf16_bits_to_f32(v); }
  __device__ __forceinline__ static void unpack(const uint4& r, float* o) {
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
    for (int i = 0; i < 4; ++i) { o[2 * i] = bits_to_f32(w[i] << 16); o[2 * i + 1] = bits_to_f32(w[i] & 0xffff0000u); }
  }
};

}  // namespace MOE_KERNEL_NS
}  // namespace moe
