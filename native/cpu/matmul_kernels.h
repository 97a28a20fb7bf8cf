// Internal to cpu/ (not part of matmul.h): the dense matmul's kernel table and what its per-ISA files share.
//   matmul.cpp          public API of matmul.h, the oracle matmul_ref, the run-time choice of a table (cpuid, OS
//                       permission for AMX, MOE_SIMD) and the threading over weight rows
//   matmul_portable.cpp kPortable: plain C++ (the only path off x86-64 or without GCC/Clang)
//   matmul_avx2.cpp     kAvx2: AVX2 + FMA + F16C
//   matmul_avx512.cpp   kAvx512: AVX-512F (its vector primitives are AVX2's)
//   matmul_amx.cpp      kAmx: AMX tiles for bf16-weight prefill, AVX-512 for everything else
// Every SIMD function carries its own target attribute (MOE_AVX2 / MOE_AVX512 / MOE_AMX) rather than a per-file
// -m flag: the compiler may then not use those instructions anywhere else (static initialisers, inlined library
// code), so a CPU without the ISA never executes them unless the dispatcher picked that table.
#pragma once
#include <cstdint>
#include "format/dtype.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))  // (AMX intrinsics are 64-bit only)
#include <immintrin.h>
#define MOE_HAVE_X86_DISPATCH 1
#else
#define MOE_HAVE_X86_DISPATCH 0
#endif

// Hidden: these are the library's insides, never moe_engine.node's exports. It also matters for speed: under -fPIC
// a default-visibility function may be interposed, so the compiler would neither inline a call to dot_avx2 in its
// own file nor use what it knows of the callee's registers there; hidden ones bind locally and compile exactly as
// they did when all kernels were file-static in one matmul.cpp.
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif
namespace moe::cpu_matmul {

constexpr int NR = 4;      // weight rows per block (portable kernels; matmul() splits N on NR-row boundaries)

struct Kernels {
  const char* name;
  void (*matvec_rows)(float* y, const float* x, const void* W, DType dt, int64_t n0, int64_t n1, int64_t K, bool acc);
  void (*matmul_rows)(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                      int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float* y, float a, const float* x, int64_t n);
  void (*row_convert)(float* out, const void* W, DType dt, int64_t n, int64_t K, int64_t k0, int64_t len);
  // Optional (AMX): pack x once per call on the calling thread (nullptr: not applicable to this dtype/shape),
  // then every thread runs matmul_rows_packed on its rows of W against the shared packed x.
  const void* (*prepack)(const float* x, int64_t ldx, DType dt, int64_t M, int64_t K) = nullptr;
  void (*matmul_rows_packed)(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                             int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc, const void* packed) = nullptr;
  // Attention: scores of one query against n keys, and the weighted sum of n value rows.
  void (*dot_rows)(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale) = nullptr;
  void (*axpy_rows)(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d) = nullptr;
  // Optional: dW[n, 0:R] (+)= Σ_m dy[m, n] · u[m, 0:R] for n in [n0, n1) (a weight gradient whose input side is
  // narrow: LoRA's dB, R = rank), or false when R is not a width it has (then the caller transposes).
  bool (*outer_rows)(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                     int64_t n0, int64_t n1, int64_t R, bool acc) = nullptr;
};

// One table per SIMD level, each defined in its matmul_<isa>.cpp.
extern const Kernels kPortable;

#if MOE_HAVE_X86_DISPATCH
extern const Kernels kAvx2, kAvx512, kAmx;

// cpuid says AMX-BF16 + AVX512-BF16 and (Linux) the OS granted this process the tile data state (matmul_amx.cpp).
bool amx_usable();

// ---- shared by the AVX2, AVX-512 and AMX files ----
#define MOE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MOE_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

// Weight loads widened to 8 f32 lanes, and one element (tails), per stored dtype.
MOE_AVX2 inline __m256 load8_f32(const float* p) { return _mm256_loadu_ps(p); }
MOE_AVX2 inline __m256 load8_bf16(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
MOE_AVX2 inline __m256 load8_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
template <DType DT> struct WLoad;
template <> struct WLoad<DType::F32> { using T = float;
  MOE_AVX2 static __m256 load(const float* p) { return load8_f32(p); }
  static float one(const float* p) { return *p; } };
template <> struct WLoad<DType::F16> { using T = uint16_t;
  MOE_AVX2 static __m256 load(const uint16_t* p) { return load8_f16(p); }
  static float one(const uint16_t* p) { return f16_to_f32(*p); } };
template <> struct WLoad<DType::BF16> { using T = uint16_t;
  MOE_AVX2 static __m256 load(const uint16_t* p) { return load8_bf16(p); }
  static float one(const uint16_t* p) { return bf16_to_f32(*p); } };

// Decode (M = 1) reads each weight row once. Four rows at a time share each load of x, but make four interleaved
// streams of one row's length; an expert's rows are short (K = 512..1024 bf16: 1-2 KiB), and a hardware prefetcher
// that trains per stream (and stops at 4 KiB pages) never ramps up on them. One row at a time is one linear stream:
// on Zen 4, 2 threads, 256 MiB of bf16 (bench_matmul), rows of 1 / 2 / 4 KiB went 16 / 19 / 24 GB/s -> 30 / 33 / 30.
// With K past 4096 x (16+ KiB of f32) no longer stays in L1 beside the stream and four rows per load of x win again
// (K = 8192: 21 GB/s one row, 29 four). The row kernels use the four-row sums' order, so both give the same bits.
constexpr int64_t kMatvecOneRowMaxK = 4096;

// Horizontal sums (the AVX-512 kernels fold 16 lanes to 8 and reuse these).
MOE_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// [sum(a), sum(b), sum(c), sum(d)] for four 8-lane accumulators.
MOE_AVX2 inline __m128 hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 ab = _mm256_hadd_ps(a, b);        // a01 a23 b01 b23 | a45 a67 b45 b67
  __m256 cd = _mm256_hadd_ps(c, d);
  __m256 abcd = _mm256_hadd_ps(ab, cd);    // a0123 b0123 c0123 d0123 | a4567 b4567 c4567 d4567
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// Defined in matmul_avx2.cpp; the AVX-512 and AMX tables reuse the vector primitives, and dot_rows_avx512 its tail.
MOE_AVX2 float dot_avx2(const float* a, const float* b, int64_t n);
MOE_AVX2 void axpy_avx2(float* y, float a, const float* x, int64_t n);
MOE_AVX2 void row_convert_avx2(float* out, const void* W, DType dt, int64_t n, int64_t K, int64_t k0, int64_t len);
MOE_AVX2 void dot_rows_avx2(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale);

// Defined in matmul_avx512.cpp; the AMX table uses them for decode, attention and what AMX tiles do not cover.
MOE_AVX512 void matvec_rows_avx512(float* y, const float* x, const void* W, DType dt, int64_t n0, int64_t n1, int64_t K, bool acc);
MOE_AVX512 void matmul_rows_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType dt,
                                   int64_t M, int64_t n0, int64_t n1, int64_t K, bool acc);
MOE_AVX512 bool outer_rows_avx512(float* dW, int64_t ldw, const float* dy, int64_t lddy, const float* u, int64_t ldu, int64_t M,
                                  int64_t n0, int64_t n1, int64_t R, bool acc);
MOE_AVX512 void dot_rows_avx512(float* out, const float* q, const float* K, int64_t ldk, int64_t n, int64_t d, float scale);
MOE_AVX512 void axpy_rows_avx512(float* o, const float* w, const float* V, int64_t ldv, int64_t n, int64_t d);
#endif  // MOE_HAVE_X86_DISPATCH

}  // namespace moe::cpu_matmul
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
