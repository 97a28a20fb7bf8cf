// Fused dequantise-and-dot kernels for Q8_0 / Q4_0 / Q4_K weights (interface and math in qmatmul.h).
//
// Work split: like matmul(), N (weight rows) is split over the pool; within a chunk each weight row is read once
// and dotted with every row of x (prefill reuses the row from L1; expert-grouped MoE already batches the tokens
// of one expert into one call). In q8 mode x is quantised once per call on the calling thread into a
// thread-local buffer that only grows (no allocation in the token loop once it has reached its size).
// The AVX2 kernels are in qmatmul_avx2.cpp, the AVX-512 VNNI ones (and the prefill GEMM) in qmatmul_avx512.cpp
// (cpu/qmatmul_kernels.h).
#include "cpu/qmatmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include "cpu/matmul.h"
#include "cpu/qmatmul_kernels.h"
#include "quant/quant.h"

namespace moe {

namespace {

using cpu_qmatmul::BlockQ8X;
using cpu_qmatmul::QKernels;
#if MOE_QX86
using cpu_qmatmul::kQAvx2;
using cpu_qmatmul::kQAvx512Vnni;
#endif

void quantize_act_row(const float* x, BlockQ8X* out, int64_t K) {
  for (int64_t b = 0; b < K / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int i = 0; i < 32; ++i) { int v = int(std::lrintf(xb[i] * id)); out[b].q[i] = int8_t(v); s += v; }
    out[b].d = d; out[b].s = s;
  }
}

// ---- portable, f32 activations: widen a block, dot with x ----
float dot_f32_portable(DType t, const uint8_t* w, const float* x, int64_t K) {
  float acc = 0;
  if (t == DType::Q8_0) {
    for (int64_t b = 0; b < K / 32; ++b) {
      const BlockQ8_0& B = reinterpret_cast<const BlockQ8_0*>(w)[b];
      float s = 0; const float* xb = x + b * 32;
      for (int i = 0; i < 32; ++i) s += float(B.qs[i]) * xb[i];
      acc += f16_to_f32(B.d) * s;
    }
  } else if (t == DType::Q4_0) {
    for (int64_t b = 0; b < K / 32; ++b) {
      const BlockQ4_0& B = reinterpret_cast<const BlockQ4_0*>(w)[b];
      float s = 0; const float* xb = x + b * 32;
      for (int i = 0; i < 16; ++i) s += float((B.qs[i] & 15) - 8) * xb[i] + float((B.qs[i] >> 4) - 8) * xb[i + 16];
      acc += f16_to_f32(B.d) * s;
    }
  } else {
    for (int64_t b = 0; b < K / 256; ++b) {
      const BlockQ4_K& B = reinterpret_cast<const BlockQ4_K*>(w)[b];
      const float d = f16_to_f32(B.d), dmin = f16_to_f32(B.dmin);
      const float* xb = x + b * 256;
      for (int g = 0; g < 4; ++g) {
        uint8_t sc0, m0, sc1, m1;
        q4k_scale_min(2 * g, B.scales, sc0, m0); q4k_scale_min(2 * g + 1, B.scales, sc1, m1);
        float s0 = 0, s1 = 0, x0 = 0, x1 = 0;
        const uint8_t* q = B.qs + 32 * g; const float* xa = xb + 64 * g; const float* xc = xa + 32;
        for (int l = 0; l < 32; ++l) { s0 += float(q[l] & 15) * xa[l]; x0 += xa[l]; s1 += float(q[l] >> 4) * xc[l]; x1 += xc[l]; }
        acc += d * float(sc0) * s0 - dmin * float(m0) * x0 + d * float(sc1) * s1 - dmin * float(m1) * x1;
      }
    }
  }
  return acc;
}

// ---- portable, q8 activations: integer dot per block ----
float dot_q8_portable(DType t, const uint8_t* w, const BlockQ8X* xq, int64_t K) {
  float acc = 0;
  if (t == DType::Q8_0) {
    for (int64_t b = 0; b < K / 32; ++b) {
      const BlockQ8_0& B = reinterpret_cast<const BlockQ8_0*>(w)[b];
      int32_t s = 0;
      for (int i = 0; i < 32; ++i) s += int32_t(B.qs[i]) * xq[b].q[i];
      acc += f16_to_f32(B.d) * xq[b].d * float(s);
    }
  } else if (t == DType::Q4_0) {
    for (int64_t b = 0; b < K / 32; ++b) {
      const BlockQ4_0& B = reinterpret_cast<const BlockQ4_0*>(w)[b];
      int32_t s = 0;
      for (int i = 0; i < 16; ++i) s += int32_t(B.qs[i] & 15) * xq[b].q[i] + int32_t(B.qs[i] >> 4) * xq[b].q[i + 16];
      acc += f16_to_f32(B.d) * xq[b].d * float(s - 8 * xq[b].s);
    }
  } else {
    for (int64_t b = 0; b < K / 256; ++b) {
      const BlockQ4_K& B = reinterpret_cast<const BlockQ4_K*>(w)[b];
      const float d = f16_to_f32(B.d), dmin = f16_to_f32(B.dmin);
      const BlockQ8X* xb = xq + b * 8;
      for (int g = 0; g < 4; ++g) {
        uint8_t sc0, m0, sc1, m1;
        q4k_scale_min(2 * g, B.scales, sc0, m0); q4k_scale_min(2 * g + 1, B.scales, sc1, m1);
        int32_t s0 = 0, s1 = 0;
        const uint8_t* q = B.qs + 32 * g;
        for (int l = 0; l < 32; ++l) { s0 += int32_t(q[l] & 15) * xb[2 * g].q[l]; s1 += int32_t(q[l] >> 4) * xb[2 * g + 1].q[l]; }
        acc += xb[2 * g].d * (d * float(sc0) * float(s0) - dmin * float(m0) * float(xb[2 * g].s)) +
               xb[2 * g + 1].d * (d * float(sc1) * float(s1) - dmin * float(m1) * float(xb[2 * g + 1].s));
      }
    }
  }
  return acc;
}

void dot_q8_rows_portable(DType t, const uint8_t* w, const BlockQ8X* xq, const float*, int64_t stride, int R, int64_t K, float* out) {
  for (int r = 0; r < R; ++r) out[r] = dot_q8_portable(t, w, xq + r * stride, K);
}

const QKernels kQPortable{"portable", dot_q8_rows_portable, dot_f32_portable, 4, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr, false};

// The tables this CPU can run, best first (portable last).
int available(const QKernels** out) {
  int n = 0;
#if MOE_QX86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool vnni = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
  if (vnni) out[n++] = &kQAvx512Vnni;
  if (avx2) out[n++] = &kQAvx2;
#endif
  out[n++] = &kQPortable;
  return n;
}

const QKernels* by_name(const char* name) {
  const QKernels* all[3];
  const int n = available(all);
  for (int i = 0; i < n; ++i)
    if (std::strncmp(all[i]->name, name, std::strlen(name)) == 0) return all[i];
  return nullptr;
}

// The best table, unless MOE_SIMD names another this CPU has by a prefix of its name (avx512 → avx512vnni,
// avx2, portable), as for the dense kernels; a name only the dense kernels have (amx) keeps the best.
const QKernels* best_qkernels() {
  const QKernels* all[3];
  available(all);
  if (const char* env = std::getenv("MOE_SIMD"); env && *env)
    if (const QKernels* k = by_name(env)) return k;
  return all[0];
}

std::atomic<const QKernels*> g_qk{nullptr};
const QKernels& QK() {
  const QKernels* k = g_qk.load(std::memory_order_acquire);
  if (!k) { k = best_qkernels(); g_qk.store(k, std::memory_order_release); }
  return *k;
}

// Activation mode: 0 = f32, 1 = int8, 2 = auto (int8 for Q4_0 / Q4_K weights, f32 for Q8_0 weights).
int mode_from_env() {
  const char* env = std::getenv("MOE_QUANT_ACT");
  if (env && std::strcmp(env, "f32") == 0) return 0;
  if (env && std::strcmp(env, "q8") == 0) return 1;
  return 2;
}
std::atomic<int> g_q8{-1};
int act_mode() {
  int v = g_q8.load(std::memory_order_relaxed);
  if (v < 0) { v = mode_from_env(); g_q8.store(v); }
  return v;
}
// Auto: int8 for Q4_0 / Q4_K; for Q8_0 only with a vectorised quantisation of x (the VNNI and AVX2 tables): with
// the scalar one, its cost ate the gain of the integer dot (native/README.md "Quantization"). AVX2, Zen 4, 1 thread,
// 1 x 1024 x 1024 Q8_0 with its SIMD quantisation: f32 0.058 ms, int8 0.040 (`run_bench_matmul.sh 0.3 1 1024 1024 q8_0 1`).
bool use_q8_for(DType t, const QKernels& kr) { const int m = act_mode(); return m == 2 ? t != DType::Q8_0 || kr.quantize : m == 1; }
// Prefill on int8 activations (tables with a gemm: VNNI) unless the mode is f32: measured faster than the
// dequantised f32 tiles for every block type (native/README.md "Quantization").
bool use_q8_prefill() { return act_mode() != 0; }
thread_local std::vector<uint8_t> t_xu;

// x rows → int8 blocks (and, with xu, the unsigned bytes q + 128 the GEMM reads): the table's SIMD loop, else
// the portable one.
void quantize_x(const QKernels& kr, const float* x, int64_t ldx, int64_t M, int64_t K, BlockQ8X* xq, uint8_t* xu) {
  if (kr.quantize) return kr.quantize(x, ldx, M, K, xq, xu);
  const int64_t nbx = K / 32;
  for (int64_t m = 0; m < M; ++m) {
    BlockQ8X* row = xq + m * nbx;
    quantize_act_row(x + m * ldx, row, K);
    if (!xu) continue;
    for (int64_t b = 0; b < nbx; ++b)
      for (int i = 0; i < 32; ++i) xu[m * K + b * 32 + i] = uint8_t(row[b].q[i] ^ 0x80);
  }
}

thread_local std::vector<BlockQ8X> t_xq;
// Prefill with many rows of x: dequantise kTileRows weight rows once into an f32 tile (per thread, grows only)
// and hand it to the dense f32 kernels (matmul_st), which reuse it for all M rows. Exact weights and f32
// activations, so as accurate as qmatmul_ref up to summation order; measured faster than the per-row dots
// from M >= 8 (native/README.md).
constexpr int64_t kTileMinM = 8, kTileRows = 8;
thread_local std::vector<float> t_tile;

// Which path a product with M rows of x takes: the table's int8 GEMM, the f32 tiles, or (neither) the row dots.
bool takes_gemm(const QKernels& kr, DType t, int64_t M) { return kr.gemm && use_q8_prefill() && M >= kr.gemm_min_rows(t); }
bool takes_rows(const QKernels& kr, DType t, int64_t M) { return !takes_gemm(kr, t, M) && M < kTileMinM; }
// A product with the weight in the table's load-time layout (qpack) takes the packed GEMM, for every M, on int8
// activations; under f32 activations (MOE_QUANT_ACT=f32) or another table it reads the weight as stored.
bool takes_packed(const QKernels& kr, DType t, const void* packed) {
  return packed && kr.gemm_packed && use_q8_prefill() && kr.pack_bytes(t, 1, qblock_size(t)) > 0;
}

void check_args(DType t, int64_t K) {
  if (!is_quant(t)) throw std::invalid_argument(std::string("qmatmul: ") + dtype_name(t) + " is not a block-quantized type");
  if (K % qblock_size(t) != 0)
    throw std::invalid_argument(std::string("qmatmul: row length ") + std::to_string(K) + " is not a multiple of the " +
                                dtype_name(t) + " block of " + std::to_string(qblock_size(t)));
}

// x's block scales as two float runs per row, [d_0 .. d_{nb-1}, d_0·s_0 .. d_{nb-1}·s_{nb-1}]: Q4_K's row dots
// read 8 of each per 256-block as vectors (for the sub-block factors and the mins term) once per call, where
// gathering them from the blocks cost two gathers per weight row and block.
thread_local std::vector<float> t_xds;
void x_scales(const BlockQ8X* xq, int64_t M, int64_t nbx, float* out) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < nbx; ++b) {
      const BlockQ8X& X = xq[m * nbx + b];
      out[m * 2 * nbx + b] = X.d;
      out[m * 2 * nbx + nbx + b] = X.d * float(X.s);
    }
}

// Rows [n0, n1) of one product on the row dots (takes_rows): each weight row dotted with every row of x, up to max_rows
// rows of x per pass. xq: x quantised (int8 mode), or null (f32 activations).
void row_dots(const QKernels& kr, const MatmulJob& j, const BlockQ8X* xq, const float* xds, int64_t n0, int64_t n1) {
  const size_t rb = dtype_row_bytes(j.t, j.K);
  const uint8_t* Wb = static_cast<const uint8_t*>(j.W);
  const int64_t nbx = j.K / 32;  // activation blocks per row
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* wr = Wb + size_t(n) * rb;
    if (xq) {
      for (int64_t m = 0; m < j.M; m += kr.max_rows) {
        const int R = int(std::min<int64_t>(kr.max_rows, j.M - m));
        float s[8];
        kr.dot_q8_rows(j.t, wr, xq + m * nbx, xds ? xds + m * 2 * nbx : nullptr, nbx, R, j.K, s);
        for (int r = 0; r < R; ++r) { float& o = j.y[(m + r) * j.ldy + n]; o = j.accumulate ? o + s[r] : s[r]; }
      }
    } else {
      for (int64_t m = 0; m < j.M; ++m) {
        const float s = kr.dot_f32(j.t, wr, j.x + m * j.ldx, j.K);
        float& o = j.y[m * j.ldy + n];
        o = j.accumulate ? o + s : s;
      }
    }
  }
}

}  // namespace

int qmatmul_act_mode(int mode) { int prev = act_mode(); g_q8.store(mode); return prev; }
int qmatmul_paths(const char** names, int max_names) {
  const QKernels* all[3];
  const int n = available(all);
  for (int i = 0; i < n && i < max_names; ++i) names[i] = all[i]->name;
  return std::min(n, max_names);
}
bool qmatmul_use_path(const char* name) {
  const QKernels* k = name && *name ? by_name(name) : best_qkernels();
  if (!k) return false;
  g_qk.store(k, std::memory_order_release);
  return true;
}
const char* qmatmul_path() { return QK().name; }

size_t qpack_bytes(DType t, int64_t N, int64_t K) {
  const QKernels& kr = QK();
  if (!kr.pack_bytes || !is_quant(t) || K % qblock_size(t) != 0) return 0;
  return kr.pack_bytes(t, N, K);
}

void qpack_row_blocks(DType t, const void* P, int64_t K, int64_t n, int64_t k0, int64_t w, void* out) {
  using namespace cpu_qmatmul;
  const int64_t qb = qblock_size(t);
  if (k0 % qb != 0 || w % qb != 0 || k0 < 0 || k0 + w > K)
    throw std::invalid_argument("qpack_row_blocks: columns [" + std::to_string(k0) + ", " + std::to_string(k0 + w) +
                                ") are not whole " + dtype_name(t) + " blocks of a row of " + std::to_string(K));
  const uint8_t* tile = static_cast<const uint8_t*>(P) + size_t(n / kPackRows) * pack_tile_bytes(t, K);
  const int j = int(n % kPackRows);
  uint8_t* o = static_cast<uint8_t*>(out);
  for (int64_t b = k0 / qb; b < (k0 + w) / qb; ++b) {
    if (t == DType::Q8_0) {  // u[g][j][4] (w + 128), then d[j]
      const uint8_t* p = tile + size_t(b) * kPackQ8_0;
      std::memcpy(o + offsetof(BlockQ8_0, d), p + 512 + 2 * j, 2);
      for (int g = 0; g < 8; ++g)
        for (int i = 0; i < 4; ++i) o[offsetof(BlockQ8_0, qs) + 4 * g + i] = uint8_t(p[64 * g + 4 * j + i] ^ 0x80);
      o += sizeof(BlockQ8_0);
    } else if (t == DType::Q4_0) {  // raw[g][j][4], g < 4, then d[j]
      const uint8_t* p = tile + size_t(b) * kPackQ4_0;
      std::memcpy(o + offsetof(BlockQ4_0, d), p + 256 + 2 * j, 2);
      for (int g = 0; g < 4; ++g) std::memcpy(o + offsetof(BlockQ4_0, qs) + 4 * g, p + 64 * g + 4 * j, 4);
      o += sizeof(BlockQ4_0);
    } else {  // raw[p][g][j][4], then d[j], dmin[j] and the scale dwords a[j], b[j], c[j]
      const uint8_t* p = tile + size_t(b) * kPackQ4_K;
      std::memcpy(o + offsetof(BlockQ4_K, d), p + 2048 + 2 * j, 2);
      std::memcpy(o + offsetof(BlockQ4_K, dmin), p + 2080 + 2 * j, 2);
      for (int q = 0; q < 3; ++q) std::memcpy(o + offsetof(BlockQ4_K, scales) + 4 * q, p + 2112 + 64 * q + 4 * j, 4);
      for (int pr = 0; pr < 4; ++pr)
        for (int g = 0; g < 8; ++g) std::memcpy(o + offsetof(BlockQ4_K, qs) + 32 * pr + 4 * g, p + 512 * pr + 64 * g + 4 * j, 4);
      o += sizeof(BlockQ4_K);
    }
  }
}

void qpack(ThreadPool* pool, DType t, const void* W, int64_t N, int64_t K, void* out) {
  const QKernels& kr = QK();
  if (qpack_bytes(t, N, K) == 0) throw std::invalid_argument(std::string("qpack: the ") + kr.name + " kernels take no packed " + dtype_name(t));
  const int64_t nt = (N + kr.gemm_rows - 1) / kr.gemm_rows;
  auto tiles = [&](int64_t a, int64_t b, int) {
    kr.pack(t, static_cast<const uint8_t*>(W), dtype_row_bytes(t, K), N, K, static_cast<uint8_t*>(out), a, b);
  };
  if (!pool || pool->size() <= 1 || nt < 2) tiles(0, nt, 0);
  else pool->run(nt, 1, [&](int64_t a, int64_t b, int th) { tiles(a, b, th); });
}

void qmatmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType t, int64_t M, int64_t N,
                 int64_t K, bool accumulate) {
  check_args(t, K);
  const size_t rb = dtype_row_bytes(t, K);
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    dequantize_row(t, static_cast<const uint8_t*>(W) + size_t(n) * rb, row.data(), K);
    for (int64_t m = 0; m < M; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(x[m * ldx + k]) * row[size_t(k)];
      y[m * ldy + n] = accumulate ? float(y[m * ldy + n] + s) : float(s);
    }
  }
}

void qmatmul(ThreadPool* pool, float* y, int64_t ldy, const float* x, int64_t ldx, const void* W, DType t, int64_t M,
             int64_t N, int64_t K, bool accumulate, const void* packed) {
  check_args(t, K);
  if (M <= 0 || N <= 0) return;
  const QKernels& kr = QK();
  const size_t rb = dtype_row_bytes(t, K);
  const uint8_t* Wb = static_cast<const uint8_t*>(W);
  if (takes_packed(kr, t, packed)) {
    std::vector<BlockQ8X>& xqv = t_xq;
    if (xqv.size() < size_t(M * (K / 32))) xqv.resize(size_t(M * (K / 32)));
    quantize_x(kr, x, ldx, M, K, xqv.data(), nullptr);
    const int64_t nt = (N + kr.gemm_rows - 1) / kr.gemm_rows;
    const uint8_t* P = static_cast<const uint8_t*>(packed);
    auto tiles = [&](int64_t a, int64_t b, int) { kr.gemm_packed(t, P, N, K, xqv.data(), M, y, ldy, accumulate, a, b); };
    if (!pool || pool->size() <= 1 || nt < 2 || N * M * K < 2 * 65536) tiles(0, nt, 0);
    else pool->run(nt, 1, [&](int64_t a, int64_t b, int th) { tiles(a, b, th); });
    return;
  }
  if (takes_gemm(kr, t, M)) {
    // int8 activations, quantised once on this thread: blocks (scale, sum) and, for Q8_0's signed weights on a table
    // whose GEMM takes x unsigned (VNNI), the bytes q + 128 (the nibble types and AVX2 read the signed q of the blocks)
    const int64_t nbx = K / 32;
    std::vector<BlockQ8X>& xqv = t_xq;  // thread_local: looked up once, not in the loops (a call under -fPIC)
    std::vector<uint8_t>& xuv = t_xu;
    if (xqv.size() < size_t(M * nbx)) xqv.resize(size_t(M * nbx));
    const bool want_xu = t == DType::Q8_0 && kr.gemm_reads_xu;
    if (want_xu && xuv.size() < size_t(M * K)) xuv.resize(size_t(M * K));
    BlockQ8X* xq = xqv.data();
    uint8_t* xu = want_xu ? xuv.data() : nullptr;
    quantize_x(kr, x, ldx, M, K, xq, xu);
    const int64_t nt = (N + kr.gemm_rows - 1) / kr.gemm_rows;
    auto tiles = [&](int64_t a, int64_t b, int) { kr.gemm(t, Wb, rb, N, K, xu, xq, M, y, ldy, accumulate, a, b); };
    if (!pool || pool->size() <= 1 || nt < 2) tiles(0, nt, 0);
    else pool->run(nt, 1, [&](int64_t a, int64_t b, int th) { tiles(a, b, th); });
    return;
  }
  if (M >= kTileMinM) {
    auto tiles = [&](int64_t b0, int64_t b1, int) {
      if (t_tile.size() < size_t(kTileRows * K)) t_tile.resize(size_t(kTileRows * K));
      for (int64_t n = b0 * kTileRows; n < std::min(N, b1 * kTileRows); n += kTileRows) {
        const int64_t nr = std::min(kTileRows, N - n);
        for (int64_t r = 0; r < nr; ++r) dequantize_row(t, Wb + size_t(n + r) * rb, t_tile.data() + r * K, K);
        matmul_st(y + n, ldy, x, ldx, t_tile.data(), DType::F32, M, nr, K, accumulate);
      }
    };
    const int64_t nb = (N + kTileRows - 1) / kTileRows;
    if (!pool || pool->size() <= 1 || nb < 2) tiles(0, nb, 0);
    else pool->run(nb, 1, [&](int64_t a, int64_t b, int th) { tiles(a, b, th); });
    return;
  }
  const bool q8 = use_q8_for(t, kr);
  const BlockQ8X* xq = nullptr;
  if (q8) {
    std::vector<BlockQ8X>& xqv = t_xq;
    if (xqv.size() < size_t(M * (K / 32))) xqv.resize(size_t(M * (K / 32)));
    quantize_x(kr, x, ldx, M, K, xqv.data(), nullptr);
    xq = xqv.data();
  }
  const float* xds = nullptr;
  if (q8 && t == DType::Q4_K) {
    std::vector<float>& v = t_xds;
    if (v.size() < size_t(2 * M * (K / 32))) v.resize(size_t(2 * M * (K / 32)));
    x_scales(xq, M, K / 32, v.data());
    xds = v.data();
  }
  const MatmulJob job{y, ldy, x, ldx, W, t, M, N, K, accumulate};
  // ~64K weights per chunk dwarfs the cost of waking a worker (as in matmul()).
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, M * K));
  if (!pool || pool->size() <= 1 || N * M * K < 2 * 65536) row_dots(kr, job, xq, xds, 0, N);
  else pool->run(N, grain, [&](int64_t a, int64_t b, int) { row_dots(kr, job, xq, xds, a, b); });
}

void qmatmul_batch(ThreadPool* pool, const MatmulJob* jobs, int n) {
  const QKernels& kr = QK();
  // Two parallel jobs per batch of kMaxBatch products: the 16-row tiles of every product on the GEMM, then the
  // weight rows of every product on the row dots; a product's x is quantised once (once for consecutive products
  // of the same x), on this thread, into one buffer for all. Products on the f32 tiles (tables without a GEMM,
  // M >= 8) run one by one.
  constexpr int kMaxBatch = 256;
  // a product of the batch: its x as the kernels read it, and the end of its units (tiles or rows) laid end to end
  struct Part { const MatmulJob* j; const BlockQ8X* xq; const uint8_t* xu; const float* xds; int64_t end; };
  Part gem[kMaxBatch], row[kMaxBatch];
  for (int i0 = 0; i0 < n; i0 += kMaxBatch) {
    const int i1 = std::min(n, i0 + kMaxBatch);
    int ng = 0, nr = 0;
    int64_t blocks = 0, ubytes = 0, scales = 0;
    for (int i = i0; i < i1; ++i) {
      const MatmulJob& j = jobs[i];
      check_args(j.t, j.K);
      if (j.M <= 0 || j.N <= 0) continue;
      if (takes_packed(kr, j.t, j.packed) || takes_gemm(kr, j.t, j.M)) {
        blocks += j.M * (j.K / 32);
        if (j.t == DType::Q8_0 && kr.gemm_reads_xu && !takes_packed(kr, j.t, j.packed)) ubytes += j.M * j.K;  // as want_xu below
        gem[ng++].j = &j;
      } else if (takes_rows(kr, j.t, j.M)) {
        if (use_q8_for(j.t, kr)) blocks += j.M * (j.K / 32);
        if (use_q8_for(j.t, kr) && j.t == DType::Q4_K) scales += 2 * j.M * (j.K / 32);
        row[nr++].j = &j;
      } else {
        qmatmul(pool, j.y, j.ldy, j.x, j.ldx, j.W, j.t, j.M, j.N, j.K, j.accumulate);
      }
    }
    std::vector<BlockQ8X>& xqv = t_xq;  // thread_local: looked up once
    std::vector<uint8_t>& xuv = t_xu;
    if (xqv.size() < size_t(blocks)) xqv.resize(size_t(blocks));
    if (xuv.size() < size_t(ubytes)) xuv.resize(size_t(ubytes));
    std::vector<float>& xdsv = t_xds;
    if (xdsv.size() < size_t(scales)) xdsv.resize(size_t(scales));
    int64_t at = 0, uat = 0, sat = 0, tiles = 0, rows = 0, work = 0, work_max = 1;
    // the same x as the product before (q, k, v of one h; an expert's gate and up) is quantised once
    auto same_x = [](const MatmulJob& a, const MatmulJob& b) {
      return a.x == b.x && a.ldx == b.ldx && a.M == b.M && a.K == b.K;
    };
    for (int i = 0; i < ng; ++i) {
      const MatmulJob& j = *gem[i].j;
      const bool want_xu = j.t == DType::Q8_0 && kr.gemm_reads_xu && !takes_packed(kr, j.t, j.packed);
      if (i > 0 && same_x(j, *gem[i - 1].j) && (!want_xu || gem[i - 1].xu)) {
        gem[i].xq = gem[i - 1].xq;
        gem[i].xu = gem[i - 1].xu;
      } else {
        uint8_t* xu = want_xu ? xuv.data() + uat : nullptr;
        quantize_x(kr, j.x, j.ldx, j.M, j.K, xqv.data() + at, xu);
        gem[i].xq = xqv.data() + at;
        gem[i].xu = xu;
        at += j.M * (j.K / 32);
        if (xu) uat += j.M * j.K;
      }
      tiles += (j.N + kr.gemm_rows - 1) / kr.gemm_rows;
      gem[i].end = tiles;
    }
    for (int i = 0; i < nr; ++i) {
      const MatmulJob& j = *row[i].j;
      row[i].xq = nullptr;
      row[i].xu = nullptr;
      row[i].xds = nullptr;
      const bool shared = i > 0 && row[i - 1].xq && same_x(j, *row[i - 1].j);
      if (use_q8_for(j.t, kr) && shared) {
        row[i].xq = row[i - 1].xq;
        row[i].xds = row[i - 1].xds;
      } else if (use_q8_for(j.t, kr)) {
        quantize_x(kr, j.x, j.ldx, j.M, j.K, xqv.data() + at, nullptr);
        row[i].xq = xqv.data() + at;
        at += j.M * (j.K / 32);
      }
      if (row[i].xq && j.t == DType::Q4_K && !row[i].xds) {
        x_scales(row[i].xq, j.M, j.K / 32, xdsv.data() + sat);
        row[i].xds = xdsv.data() + sat;
        sat += 2 * j.M * (j.K / 32);
      }
      rows += j.N;
      row[i].end = rows;
      work += j.N * j.M * j.K;
      work_max = std::max(work_max, j.M * j.K);
    }
    if (ng) {
      auto run_tiles = [&](int64_t a, int64_t b, int) {
        for_each_piece(ng, [&](int i) { return gem[i].end; }, a, b, [&](int i, int64_t t0, int64_t t1) {
          const Part& p = gem[i];
          const MatmulJob& j = *p.j;
          if (takes_packed(kr, j.t, j.packed))
            kr.gemm_packed(j.t, static_cast<const uint8_t*>(j.packed), j.N, j.K, p.xq, j.M, j.y, j.ldy, j.accumulate, t0, t1);
          else
            kr.gemm(j.t, static_cast<const uint8_t*>(j.W), dtype_row_bytes(j.t, j.K), j.N, j.K, p.xu, p.xq, j.M, j.y, j.ldy,
                    j.accumulate, t0, t1);
        });
      };
      if (!pool || pool->size() <= 1 || tiles < 2) run_tiles(0, tiles, 0);
      else pool->run(tiles, 1, [&](int64_t a, int64_t b, int t) { run_tiles(a, b, t); });
    }
    if (nr) {
      auto run_rows = [&](int64_t a, int64_t b, int) {
        for_each_piece(nr, [&](int i) { return row[i].end; }, a, b,
                       [&](int i, int64_t r0, int64_t r1) { row_dots(kr, *row[i].j, row[i].xq, row[i].xds, r0, r1); });
      };
      if (!pool || pool->size() <= 1 || work < 2 * 65536) run_rows(0, rows, 0);
      else pool->run(rows, std::max<int64_t>(1, 65536 / work_max), [&](int64_t a, int64_t b, int t) { run_rows(a, b, t); });
    }
  }
}

}  // namespace moe
