// NF4 quantization with double-quantized absmax (definitions in nf4.h).
//
// Rounding to the nearest code, as bitsandbytes' torch backend does it (backends/default/ops.py at the commit named
// in test/fixtures/goldens/nf4_blocks.json): code = torch.bucketize(s, mid) with mid_j = (c_j + c_{j+1}) / 2 in f32,
// i.e. the number of midpoints m with !(s <= m): a value exactly on a midpoint keeps the lower code, NaN gets the
// top code (15 / 255) as torch's bucketize gives it. Its CUDA kernel's decision tree compares `x > mid` against the
// same f32 midpoints (the same codes; the goldens' script checks the tree). The scale: full blocks multiply by the
// f32 reciprocal 1 / max(absmax, 1e-38) and store the unclamped absmax; a short last block (n % 64 values) divides
// by max(absmax, 1e-38) and stores that clamped value. So an all-zero block gets codes 7 (0x77, exact zeros).
//
// Where bitsandbytes' other kernels differ from its torch backend (we follow the torch backend):
//   - the CUDA 4-bit kernel computes 0 * (1/0) = NaN for an all-zero block, which its tree sends to code 0, and is
//     built with fast math (an approximate reciprocal: a nibble may differ within ~2 ulp of a midpoint);
//   - the CPU library's 8-bit quantize_blockwise (the absmax bytes when the library is loaded) uses a lookup table
//     that can pick the neighbouring entry within ~1/32768 of a midpoint.
//
// The mean of the absmaxes (offset = absmax.mean()): its last bit decides absmax2 and, rarely, absmax_q, so we
// reproduce torch's CPU f32 sum, then divide by n in f32 (torch's mean is sum(...).div_(n)). torch's sum kernel
// (aten/src/ATen/native/cpu/SumKernel.cpp) reads the vector as items of 8 floats (scalars when n < 8) and deals
// item i to accumulator i % 4; each accumulator is a 4-level cascade: level 0 sums 2^p rows of 4 items
// (p = max(4, ceil(log2(rows)) / 4)), then is added into level 1 and cleared; level j is added into level j + 1 (and
// cleared) whenever the row count is a multiple of 2^(p j). At the end the levels, then the 4 accumulators, are
// added; the leftover floats (n % 8) are summed first and the 8 lanes added to them (torch_sum_f32 below).
// Matched bit for bit against torch 2.13 (2 threads) on tensors of up to 40625 blocks (2.6M weights); torch may
// split longer sums over its threads (the result then depends on their number), and bitsandbytes on CUDA sums with
// a CUDA reduction: there the offset may differ in the last ulp.
//
// No fused multiply-add may touch the f32 formulas (s = x * inv, the scale DYN*absmax2 + offset): the scalar code is
// compiled for baseline x86-64 (no FMA instructions exist there); in the AVX2/AVX-512 quantizers a clamp sits between
// x * inv and s - c, which breaks any contraction pattern; nf4_block_scales is kept out of line (never inlined into
// FMA-enabled kernels).
#include "quant/nf4.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MOE_NF4X86 1
#else
#define MOE_NF4X86 0
#endif

namespace moe {

namespace {

constexpr float kNF4[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};

// torch.linspace(start, end, steps) in f32 as torch computes it on the CPU (each value one fused multiply-add:
// start + step*i for the first half, end - step*(steps-1-i) for the second; checked against torch 2.13).
void linspace_f32(float start, float end, int steps, float* out) {
  const float step = (end - start) / float(steps - 1);
  const int half = steps / 2;
  for (int i = 0; i < steps; ++i)
    out[i] = i < half ? std::fma(step, float(i), start) : std::fma(-step, float(steps - 1 - i), end);
}

// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponent i = 0..6, the midpoints of
// linspace(0.1, 1, 2^i + 1) times 10^(i-6), with both signs; then 0 and 1; sorted. 2 * 127 + 2 = 256 values.
struct DynamicMap {
  float v[256];
  DynamicMap() {
    int n = 0;
    float b[65];
    for (int i = 0; i < 7; ++i) {
      const int items = (1 << i) + 1;
      linspace_f32(0.1f, 1.0f, items, b);
      const float scale = float(std::pow(10.0, double(i - 6)));  // the Python scalar, rounded to f32 by torch
      for (int j = 0; j + 1 < items; ++j) {
        const float mean = (b[j] + b[j + 1]) / 2.0f;
        v[n++] = scale * mean;
        v[n++] = -scale * mean;
      }
    }
    v[n++] = 0.0f;
    v[n++] = 1.0f;
    std::sort(v, v + n);
  }
};
const DynamicMap& dyn() { static const DynamicMap m; return m; }
const float* dyn_code() { return dyn().v; }

// f32 midpoints of adjacent codes, (c_j + c_{j+1}) / 2, padded with +inf to a power of two (16 / 256 entries).
struct Mids {
  float nf4[16], dyn[256];
  Mids() {
    for (int j = 0; j < 15; ++j) nf4[j] = (kNF4[j] + kNF4[j + 1]) / 2.0f;
    nf4[15] = INFINITY;
    for (int j = 0; j < 255; ++j) dyn[j] = (dyn_code()[j] + dyn_code()[j + 1]) / 2.0f;
    dyn[255] = INFINITY;
  }
};
const Mids& mids() { static const Mids m; return m; }

// torch.bucketize(s, mids[0 .. count-1]) (right=False): the number of midpoints m with !(s <= m) (binary search; the
// predicate is monotone, and true for every m when s is NaN, so NaN -> count).
inline uint8_t bucket(const float* mid, int count, float s) {
  int lo = 0, hi = count;
  while (lo < hi) {
    const int m = (lo + hi) / 2;
    if (!(s <= mid[m])) lo = m + 1; else hi = m;
  }
  return uint8_t(lo);
}

constexpr float kMinAbsmax = 1e-38f;  // absmax.clamp(min=1e-38) in f32 (a subnormal: the same value torch rounds to)

// One stream of `items` items of L lanes (L = 8: vectors; L = 1: scalars), summed as torch's row_sum /
// multi_row_sum do with 4 accumulators (ilp) and 4 cascade levels; returns the L lane sums in out[L].
template <int L>
void torch_row_sum(const float* x, int64_t items, float* out) {
  constexpr int kIlp = 4, kLevels = 4;
  const int64_t size = items / kIlp;  // rows of kIlp items
  int64_t lg = 0;
  while ((int64_t(1) << lg) < size) ++lg;  // ceil(log2(size)), 0 for size <= 1
  const int64_t power = std::max<int64_t>(4, lg / kLevels), step = int64_t(1) << power, mask = step - 1;
  float acc[kLevels][kIlp][L] = {};
  auto add_row = [&](int64_t i) {
    for (int k = 0; k < kIlp; ++k)
      for (int l = 0; l < L; ++l) acc[0][k][l] += x[(i * kIlp + k) * L + l];
  };
  int64_t i = 0;
  while (i + step <= size) {
    for (int64_t j = 0; j < step; ++j, ++i) add_row(i);
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < kIlp; ++k)
        for (int l = 0; l < L; ++l) { acc[j][k][l] += acc[j - 1][k][l]; acc[j - 1][k][l] = 0; }
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < size; ++i) add_row(i);
  for (int j = 1; j < kLevels; ++j)
    for (int k = 0; k < kIlp; ++k)
      for (int l = 0; l < L; ++l) acc[0][k][l] += acc[j][k][l];
  for (int64_t r = size * kIlp; r < items; ++r)  // items left over by the rows of kIlp
    for (int l = 0; l < L; ++l) acc[0][0][l] += x[r * L + l];
  for (int k = 1; k < kIlp; ++k)
    for (int l = 0; l < L; ++l) acc[0][0][l] += acc[0][k][l];
  for (int l = 0; l < L; ++l) out[l] = acc[0][0][l];
}

// torch.sum of a contiguous f32 vector on the CPU, single-threaded (see the top of this file).
float torch_sum_f32(const float* x, int64_t n) {
  constexpr int V = 8;
  if (n < V) { float s; torch_row_sum<1>(x, n, &s); return s; }
  const int64_t nv = n / V;
  float lanes[V];
  torch_row_sum<V>(x, nv, lanes);
  float s = 0;
  for (int64_t k = nv * V; k < n; ++k) s += x[k];
  for (int l = 0; l < V; ++l) s += lanes[l];
  return s;
}

inline float clamp1(float v) { return std::min(std::max(v, -1.0f), 1.0f); }  // NaN stays NaN (as torch.clamp)

// One block of c <= 64 values (starting at an even element, as every block does): absmax, codes, c/2 rounded up
// bytes. An odd c (only the last block of an odd n) pads one value s = 0 (code 7) into the last low nibble.
// A full block: s = x * (1 / max(absmax, 1e-38)), the absmax stored as is; a short one (c < 64, the tensor's last):
// s = x / max(absmax, 1e-38), that clamped absmax stored (bitsandbytes' torch backend, step for step).
void quantize_block(const float* v, int c, uint8_t* bytes, float* absmax) {
  float amax = 0;
  for (int i = 0; i < c; ++i) amax = std::max(amax, std::fabs(v[i]));
  const float* mid = mids().nf4;
  uint8_t q[NF4_BLOCK + 1];
  if (c == NF4_BLOCK) {
    const float inv = 1.0f / std::max(amax, kMinAbsmax);
    for (int i = 0; i < c; ++i) q[i] = bucket(mid, 15, clamp1(v[i] * inv));
  } else {
    amax = std::max(amax, kMinAbsmax);
    for (int i = 0; i < c; ++i) q[i] = bucket(mid, 15, clamp1(v[i] / amax));
  }
  q[c] = 7;
  for (int i = 0; i < (c + 1) / 2; ++i) bytes[i] = uint8_t(q[2 * i] << 4 | q[2 * i + 1]);
  *absmax = amax;
}

// ---- SIMD quantization of a whole block (64 values), bit-identical to quantize_block ----
// Per lane: code = the number of midpoints m with !(s <= m), by a 4-step binary search over the 16-entry midpoint
// table (idx += step where !(s <= mid[idx + step - 1]); the +inf pad is never read), the scalar rule exactly (same
// f32 s = clamp(x * inv, -1, 1)). Non-finite values never get here: NF4Quantizer refuses them (bitsandbytes would
// quietly turn a whole block into NaN codes), so no path has to agree with another on NaN.
using Block64Fn = void (*)(const float* v, uint8_t* bytes, float* absmax);
void quantize_block64_scalar(const float* v, uint8_t* bytes, float* absmax) { quantize_block(v, NF4_BLOCK, bytes, absmax); }

inline void pack_codes(const uint8_t* q, uint8_t* bytes) {
  for (int i = 0; i < NF4_BLOCK / 2; ++i) bytes[i] = uint8_t(q[2 * i] << 4 | q[2 * i + 1]);
}

#if MOE_NF4X86
// GCC 12 flags its own _mm512_undefined_*() (inside several AVX-512 intrinsics) as (maybe-)uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) void quantize_block64_avx512(const float* v, uint8_t* bytes, float* absmax) {
  __m512 m = _mm512_setzero_ps();
  for (int i = 0; i < 4; ++i) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(v + 16 * i)));
  const float amax = _mm512_reduce_max_ps(m);
  const __m512 inv = _mm512_set1_ps(1.0f / std::max(amax, kMinAbsmax)), one = _mm512_set1_ps(1.0f), mone = _mm512_set1_ps(-1.0f);
  const __m512 table = _mm512_loadu_ps(mids().nf4);
  alignas(16) uint8_t q[NF4_BLOCK];
  for (int i = 0; i < 4; ++i) {
    const __m512 s = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(v + 16 * i), inv), mone), one);
    __m512i idx = _mm512_setzero_si512();
    for (int step = 8; step >= 1; step >>= 1) {
      const __m512i cand = _mm512_add_epi32(idx, _mm512_set1_epi32(step));
      const __m512 mid = _mm512_permutexvar_ps(_mm512_sub_epi32(cand, _mm512_set1_epi32(1)), table);
      idx = _mm512_mask_mov_epi32(idx, _mm512_cmp_ps_mask(s, mid, _CMP_NLE_UQ), cand);
    }
    _mm_store_si128(reinterpret_cast<__m128i*>(q + 16 * i), _mm512_cvtepi32_epi8(idx));
  }
  pack_codes(q, bytes);
  *absmax = amax;
}

// AVX2: the 16-entry table as two 8-float halves, blended on bit 3 of the index.
__attribute__((target("avx2,fma"))) inline __m256 nf4_lookup8(__m256i idx, __m256 tlo, __m256 thi) {
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, idx), _mm256_permutevar8x32_ps(thi, idx),
                          _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}
__attribute__((target("avx2,fma"))) void quantize_block64_avx2(const float* v, uint8_t* bytes, float* absmax) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < 8; ++i) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(v + 8 * i), absmask));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  const float amax = _mm_cvtss_f32(h);
  const __m256 inv = _mm256_set1_ps(1.0f / std::max(amax, kMinAbsmax)), one = _mm256_set1_ps(1.0f), mone = _mm256_set1_ps(-1.0f);
  const __m256 tlo = _mm256_loadu_ps(mids().nf4), thi = _mm256_loadu_ps(mids().nf4 + 8);
  const __m256i i1 = _mm256_set1_epi32(1);
  alignas(32) int32_t q32[NF4_BLOCK];
  for (int i = 0; i < 8; ++i) {
    const __m256 s = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(v + 8 * i), inv), mone), one);
    __m256i idx = _mm256_setzero_si256();
    for (int step = 8; step >= 1; step >>= 1) {
      const __m256i cand = _mm256_add_epi32(idx, _mm256_set1_epi32(step));
      const __m256 gt = _mm256_cmp_ps(s, nf4_lookup8(_mm256_sub_epi32(cand, i1), tlo, thi), _CMP_NLE_UQ);
      idx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(idx), _mm256_castsi256_ps(cand), gt));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(q32 + 8 * i), idx);
  }
  uint8_t q[NF4_BLOCK];
  for (int i = 0; i < NF4_BLOCK; ++i) q[i] = uint8_t(q32[i]);
  pack_codes(q, bytes);
  *absmax = amax;
}
#endif

// The same choice as the dense kernels (simd_name(): amx/avx512 -> AVX-512, avx2 -> AVX2, else scalar).
Block64Fn block64_fn() {
#if MOE_NF4X86
  const char* s = simd_name();
  if (std::strncmp(s, "amx", 3) == 0 || std::strncmp(s, "avx512", 6) == 0) return quantize_block64_avx512;
  if (std::strncmp(s, "avx2", 4) == 0) return quantize_block64_avx2;
#endif
  return quantize_block64_scalar;
}

inline void widen(const void* src, DType dt, int64_t i0, int64_t count, float* out) {
  switch (dt) {
    case DType::F32: std::memcpy(out, static_cast<const float*>(src) + i0, size_t(count) * 4); break;
    case DType::F16: { const uint16_t* s = static_cast<const uint16_t*>(src) + i0; for (int64_t i = 0; i < count; ++i) out[i] = f16_to_f32(s[i]); break; }
    case DType::BF16: { const uint16_t* s = static_cast<const uint16_t*>(src) + i0; for (int64_t i = 0; i < count; ++i) out[i] = bf16_to_f32(s[i]); break; }
    default: throw std::invalid_argument(std::string("nf4: source dtype ") + dtype_name(dt) + " is not f32, f16 or bf16");
  }
}

// true when every value is finite (|v| <= FLT_MAX is false for inf and NaN); branch-free so it vectorises.
inline bool all_finite(const float* v, int64_t n) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= std::fabs(v[i]) <= 3.40282347e+38f;
  return ok;
}
[[noreturn]] void non_finite(int64_t e0) {
  throw std::invalid_argument("nf4: non-finite weight (inf or NaN) in the block of elements from " + std::to_string(e0));
}

}  // namespace

const float* nf4_code() { return kNF4; }
const float* nf4_dynamic_code() { return dyn().v; }

size_t nf4_bytes(int64_t n) {
  if (n < 0) throw std::invalid_argument("nf4_bytes: negative count");
  const int64_t nb = (n + NF4_BLOCK - 1) / NF4_BLOCK, ng = (nb + NF4_ABSMAX_GROUP - 1) / NF4_ABSMAX_GROUP;
  return size_t((n + 1) / 2) + size_t(nb) + 4 * size_t(ng) + 4;
}

NF4Quantizer::NF4Quantizer(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("nf4: negative shape");
  t_.rows = rows; t_.cols = cols; t_.n = rows * cols;
  t_.packed.assign(size_t((t_.n + 1) / 2), 0);
  absmax_.assign(size_t(t_.nblocks()), 0.0f);
}

void NF4Quantizer::add_rows(const void* src, DType dt, int64_t nrows, ThreadPool* pool) {
  if (done_) throw std::logic_error("nf4: add_rows after finish");
  if (nrows < 0 || next_row_ + nrows > t_.rows)
    throw std::invalid_argument("nf4: rows " + std::to_string(next_row_) + "+" + std::to_string(nrows) + " exceed the " +
                                std::to_string(t_.rows) + " rows of the tensor");
  if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16)
    throw std::invalid_argument(std::string("nf4: source dtype ") + dtype_name(dt) + " is not f32, f16 or bf16");
  const int64_t e0 = next_row_ * t_.cols, cnt = nrows * t_.cols;  // this chunk: elements [e0, e0 + cnt)
  next_row_ += nrows;
  int64_t i = 0;  // position within the chunk
  // 1. Complete a block begun in an earlier chunk.
  if (carry_n_ > 0) {
    const int64_t take = std::min<int64_t>(NF4_BLOCK - carry_n_, cnt);
    widen(src, dt, 0, take, carry_ + carry_n_);
    if (!all_finite(carry_ + carry_n_, take)) non_finite(e0 - carry_n_);
    carry_n_ += take; i = take;
    const int64_t b = (e0 + i - 1) / NF4_BLOCK, bstart = b * NF4_BLOCK;
    const int c = int(std::min<int64_t>(NF4_BLOCK, t_.n - bstart));
    if (carry_n_ == c) { quantize_block(carry_, c, &t_.packed[size_t(bstart / 2)], &absmax_[size_t(b)]); carry_n_ = 0; }
  }
  // 2. Whole blocks inside the chunk (blocks are independent: parallel). Invariant: with no carry, e0 + i is at a
  //    block start (a chunk that ends inside a block leaves that block's values in the carry).
  if (carry_n_ == 0 && i < cnt) {
    const Block64Fn qb64 = block64_fn();
    const int64_t first_b = (e0 + i) / NF4_BLOCK, nfull = (e0 + cnt) / NF4_BLOCK - first_b;
    std::atomic<int64_t> bad{-1};  // a block with a non-finite value (any one: the error names it)
    auto run = [&](int64_t b0, int64_t b1, int) {
      float v[NF4_BLOCK];
      for (int64_t b = first_b + b0; b < first_b + b1; ++b) {
        widen(src, dt, b * NF4_BLOCK - e0, NF4_BLOCK, v);
        if (!all_finite(v, NF4_BLOCK)) { bad = b; return; }
        qb64(v, &t_.packed[size_t(b * NF4_BLOCK / 2)], &absmax_[size_t(b)]);
      }
    };
    if (pool && pool->size() > 1 && nfull >= 64) pool->run(nfull, 16, [&](int64_t a, int64_t b, int th) { run(a, b, th); });
    else run(0, nfull, 0);
    if (bad >= 0) non_finite(bad * NF4_BLOCK);
    i += nfull * NF4_BLOCK;
    // 3. The tail starts a block that a later chunk (or the end of the tensor, below) completes.
    if (i < cnt) {
      widen(src, dt, i, cnt - i, carry_);
      if (!all_finite(carry_, cnt - i)) non_finite(e0 + i);
      carry_n_ = cnt - i;
    }
  }
  // The tensor's last block is partial: it ends here.
  if (next_row_ == t_.rows && carry_n_ > 0) {
    const int64_t b = t_.nblocks() - 1, bstart = b * NF4_BLOCK;
    quantize_block(carry_, int(t_.n - bstart), &t_.packed[size_t(bstart / 2)], &absmax_[size_t(b)]);
    carry_n_ = 0;
  }
}

NF4Tensor NF4Quantizer::finish() {
  if (done_) throw std::logic_error("nf4: finish called twice");
  if (next_row_ != t_.rows)
    throw std::invalid_argument("nf4: finish after " + std::to_string(next_row_) + " of " + std::to_string(t_.rows) + " rows");
  done_ = true;
  const int64_t nb = t_.nblocks(), ng = t_.ngroups();
  t_.offset = nb > 0 ? torch_sum_f32(absmax_.data(), nb) / float(nb) : 0.0f;
  t_.absmax_q.assign(size_t(nb), 0);
  t_.absmax2.assign(size_t(ng), 0.0f);
  // quantize_blockwise(absmax - offset, blocksize=256) with the dynamic map: the same torch-backend steps as the 4-bit
  // blocks (full groups: reciprocal, unclamped scale stored; a short last group: division by the clamped scale, stored).
  const float* mid = mids().dyn;
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t b0 = g * NF4_ABSMAX_GROUP, b1 = std::min(nb, b0 + NF4_ABSMAX_GROUP);
    float a[NF4_ABSMAX_GROUP], amax = 0;
    for (int64_t b = b0; b < b1; ++b) { a[b - b0] = absmax_[size_t(b)] - t_.offset; amax = std::max(amax, std::fabs(a[b - b0])); }
    if (b1 - b0 == NF4_ABSMAX_GROUP) {
      const float inv = 1.0f / std::max(amax, kMinAbsmax);  // a group of equal absmaxes: s = 0 -> index 127 (value 0)
      for (int64_t b = b0; b < b1; ++b) t_.absmax_q[size_t(b)] = bucket(mid, 255, clamp1(a[b - b0] * inv));
    } else {
      amax = std::max(amax, kMinAbsmax);
      for (int64_t b = b0; b < b1; ++b) t_.absmax_q[size_t(b)] = bucket(mid, 255, clamp1(a[b - b0] / amax));
    }
    t_.absmax2[size_t(g)] = amax;
  }
  absmax_.clear(); absmax_.shrink_to_fit();
  return std::move(t_);
}

NF4Tensor nf4_quantize(const float* x, int64_t rows, int64_t cols, ThreadPool* pool) {
  NF4Quantizer q(rows, cols);
  q.add_rows(x, DType::F32, rows, pool);
  return q.finish();
}
NF4Tensor nf4_quantize(const float* x, int64_t n, ThreadPool* pool) { return nf4_quantize(x, 1, n, pool); }

#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
void nf4_block_scales(const NF4Tensor& t, int64_t b0, int64_t b1, float* out) {
  const float* code = dyn().v;
  for (int64_t b = b0; b < b1; ++b) {
    const float p = code[t.absmax_q[size_t(b)]] * t.absmax2[size_t(b / NF4_ABSMAX_GROUP)];
    out[b - b0] = p + t.offset;
  }
}

void nf4_dequantize_range(const NF4Tensor& t, int64_t e0, int64_t e1, float* y) {
  if (e0 < 0 || e1 > t.n || e0 > e1) throw std::invalid_argument("nf4_dequantize_range: range outside the tensor");
  for (int64_t e = e0; e < e1;) {
    const int64_t b = e / NF4_BLOCK, end = std::min(e1, (b + 1) * NF4_BLOCK);
    float scale;
    nf4_block_scales(t, b, b + 1, &scale);
    for (; e < end; ++e) {
      const uint8_t byte = t.packed[size_t(e >> 1)];
      y[e - e0] = kNF4[(e & 1) ? byte & 15 : byte >> 4] * scale;
    }
  }
}

void nf4_dequantize(const NF4Tensor& t, float* y) { nf4_dequantize_range(t, 0, t.n, y); }

}  // namespace moe
