// attention.h's API: the row path, the blocked path's threading, the table of the SIMD path in use, and the portable
// table of the blocked kernels (plain arrays of 8 floats, which the compiler maps onto whatever vectors it has).
#include "cpu/attention.h"
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>
#include "cpu/attention_kernels.h"
#include "format/dtype.h"
#include "cpu/matmul.h"

namespace moe {
namespace cpu_attention {
namespace {

#define ATTN_TARGET

struct Vec {
  struct V { float x[8]; };
  static constexpr const char* name = "portable";
  static constexpr int L = 8, KB = 4, DC = 4, GV = 2;
  static V zero() { return V{}; }
  static V load(const float* p) { V r; std::memcpy(r.x, p, sizeof r.x); return r; }
  static void store(float* p, V v) { std::memcpy(p, v.x, sizeof v.x); }
  static V set1(float a) { V r; for (float& e : r.x) e = a; return r; }
  static V load_f16(const uint16_t* p) { V r; for (int i = 0; i < L; ++i) r.x[i] = f16_to_f32(p[i]); return r; }
  static void store_f16(uint16_t* p, V v) { for (int i = 0; i < L; ++i) p[i] = f32_to_f16(v.x[i]); }
  static V load_i8(const int8_t* p) { V r; for (int i = 0; i < L; ++i) r.x[i] = float(p[i]); return r; }
  static V fma(V a, V b, V c) { for (int i = 0; i < L; ++i) c.x[i] += a.x[i] * b.x[i]; return c; }  // (std::fma is a libm call without FMA)
  static V mul(V a, V b) { for (int i = 0; i < L; ++i) a.x[i] *= b.x[i]; return a; }
  static V add(V a, V b) { for (int i = 0; i < L; ++i) a.x[i] += b.x[i]; return a; }
  static V max(V a, V b) { for (int i = 0; i < L; ++i) a.x[i] = std::max(a.x[i], b.x[i]); return a; }
  static V select_le(V a, V b, V x, V fill) { for (int i = 0; i < L; ++i) if (a.x[i] > b.x[i]) x.x[i] = fill.x[i]; return x; }
  static V exp(V a) { for (float& e : a.x) e = std::exp(e); return a; }
  static float hmax(V v) { float m = v.x[0]; for (float e : v.x) m = std::max(m, e); return m; }
  static float hsum(V v) { float s = 0; for (float e : v.x) s += e; return s; }
  static void hsum4(V a, V b, V c, V d, float* out) { out[0] = hsum(a); out[1] = hsum(b); out[2] = hsum(c); out[3] = hsum(d); }
  static V hsum_lanes(const V* a) { V r; for (int i = 0; i < L; ++i) r.x[i] = hsum(a[i]); return r; }
};

#include "cpu/attention_tile.inc"

}  // namespace
const AttnKernels kAttnPortable = kTable;
}  // namespace cpu_attention

namespace {
using cpu_attention::AttnBlock;
using cpu_attention::AttnKernels;

// The blocked kernels of the SIMD path the dense matmul uses (simd_name(): MOE_SIMD and simd_use_path apply).
const AttnKernels& kernels() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const char* n = simd_name();
  if (std::strstr(n, "avx512")) return cpu_attention::kAttnAvx512;
  if (std::strncmp(n, "avx2", 4) == 0) return cpu_attention::kAttnAvx2;
#endif
  return cpu_attention::kAttnPortable;
}

int path_from_env() {
  const char* e = std::getenv("MOE_ATTN");
  if (e && std::strcmp(e, "rows") == 0) return 1;
  if (e && std::strcmp(e, "blocked") == 0) return 2;
  return 0;
}
std::atomic<int> g_path{path_from_env()};

// A per-thread buffer that grows to the largest size asked for and is then reused (no allocation once warm).
// which = 1: a second one (the caller's, for the splits' partials, while its pool task uses buffer 0).
float* thread_scratch(int64_t n, int which = 0) {
  thread_local std::vector<float> buf[2];
  if (int64_t(buf[which].size()) < n) buf[which].resize(size_t(n));
  return buf[which].data();
}

// Decode (and short blocks), probabilities not kept: flash-decoding. A task is (token, KV head, split of the keys):
// every query head of the group against the split's keys, in tiles of kDecodeTile keys with the heads in chunks of 4
// inside a tile (group_scores / group_values), so each K and V row comes from DRAM once per token and group. (Tasks
// of (token, KV head, chunk of 4 heads) read the cache once per chunk: at 16k context on the bench model, 8 heads per
// KV head, that was twice the layer's cache per token.) Splits give the threads work when T·Hkv is small (decode:
// 2..8 KV heads): each leaves its heads' outputs normalised over its own keys with {max, Σ e^(s − max)}, and
//   M = max_s m_s;  out = Σ_s w_s o_s,  w_s = l_s e^(m_s − M) / Σ_s' l_s' e^(m_s' − M)
// merges them (FlashDecoding; the rescaling of the online softmax, once per split). The scores of an f16 or int8
// cache go through an f32 copy of 16 KiB of keys at a time (in L1): group_scores reads each key row once per head,
// and widening it once per head put vcvtph2ps beside every FMA (Q4_0 bench model on the f16 cache, Zen 4, 2 threads,
// pairs of A/B runs: decode at depth 8192 50.7 / 51.2 -> 51.2 / 56.7 tok/s, at 16384 21.9 -> 25.2; int8 unchanged).
// The split count follows the shape alone (ceil(keys / kSplitKeys)), so results do not depend on the thread count.
constexpr int64_t kDecodeTile = 256;      // f32 K tile at hd 128: 128 KiB, in L2 while the chunks of heads read it
constexpr int64_t kSplitKeys = 2048;      // 16k context: 8 splits per KV head (16+ tasks); the merge is G·S·hd FMAs

void grouped_rows(ThreadPool& pool, const AttnKernels& kr, float* out, int64_t ldo, const float* q, int64_t ldq, int64_t T,
                  int64_t Hq, int64_t hd, const KvCacheView& kv, int64_t pos0, float scale) {
  const int64_t G = Hq / kv.Hkv, n_all = pos0 + T, rows = T * kv.Hkv;
  const int64_t S = (n_all + kSplitKeys - 1) / kSplitKeys;
  // splits' partials: outputs [T, Hkv, S, G, hd] and {max, sum} [T, Hkv, S, G, 2]
  float* part_o = S > 1 ? thread_scratch(rows * S * G * (hd + 2), 1) : nullptr;
  float* part_ml = part_o ? part_o + rows * S * G * hd : nullptr;
  pool.run(rows * S, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = i / (kv.Hkv * S), kh = i / S % kv.Hkv, sp = i % S, n = pos0 + t + 1;
      const int64_t len = (n + S - 1) / S, j0 = sp * len, m = std::min(n, j0 + len) - j0;
      float* o = part_o ? part_o + i * G * hd : out + t * ldo + kh * G * hd;
      float* ml = part_ml ? part_ml + i * G * 2 : nullptr;
      if (m <= 0) {  // (a split past this token's last key: weight 0 in the merge)
        for (int64_t g = 0; g < G; ++g) { ml[2 * g] = -INFINITY; ml[2 * g + 1] = 0; }
        std::fill(o, o + G * hd, 0.0f);
        continue;
      }
      const bool wide = kv.k.type != KvRows::F32;
      const int64_t sub = std::max<int64_t>(16, 4096 / hd / 16 * 16);  // keys per widened piece (16 KiB of f32)
      float* sc = thread_scratch(G * m + (wide ? sub * hd : 0));
      float* piece = sc + G * m;
      const float* qh = q + t * ldq + kh * G * hd;
      const KvRows K = kv.k.head(kh, hd).from(j0), Vh = kv.v.head(kh, hd).from(j0);
      for (int64_t jt = 0; jt < m; jt += kDecodeTile) {
        const int64_t nk = std::min(kDecodeTile, m - jt);
        for (int64_t j = 0; j < nk; j += sub) {
          const int64_t np = wide ? std::min(sub, nk - j) : nk;
          KvRows Kt = K.from(jt + j);
          if (wide) { kr.widen(piece, Kt, np, hd); Kt = KvRows{KvRows::F32, piece, hd}; }
          for (int64_t g0 = 0; g0 < G; g0 += 4)
            kr.group_scores(sc + g0 * m + jt + j, m, qh + g0 * hd, Kt, np, hd, scale, int(std::min<int64_t>(4, G - g0)));
          if (!wide) break;
        }
      }
      for (int64_t g = 0; g < G; ++g) kr.softmax(sc + g * m, m, ml ? ml + 2 * g : nullptr);
      std::fill(o, o + G * hd, 0.0f);
      for (int64_t jt = 0; jt < m; jt += kDecodeTile) {
        const int64_t nk = std::min(kDecodeTile, m - jt);
        const KvRows Vt = Vh.from(jt);
        for (int64_t g0 = 0; g0 < G; g0 += 4)
          kr.group_values(o + g0 * hd, sc + g0 * m + jt, m, Vt, nk, hd, int(std::min<int64_t>(4, G - g0)));
      }
    }
  });
  if (S == 1) return;
  pool.run(T * Hq, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t th = b; th < e; ++th) {
      const int64_t t = th / Hq, h = th % Hq, kh = h / G, g = h % G, base = (t * kv.Hkv + kh) * S;
      float M = -INFINITY;
      for (int64_t sp = 0; sp < S; ++sp) M = std::max(M, part_ml[((base + sp) * G + g) * 2]);
      float den = 0, w[64];
      float* dst = out + t * ldo + h * hd;
      std::fill(dst, dst + hd, 0.0f);
      for (int64_t s0 = 0; s0 < S; s0 += 64) {  // (64 at a time keeps w on the stack)
        const int64_t ns = std::min<int64_t>(64, S - s0);
        for (int64_t k = 0; k < ns; ++k) {
          const float* mlk = part_ml + ((base + s0 + k) * G + g) * 2;
          w[k] = mlk[1] > 0 ? mlk[1] * std::exp(mlk[0] - M) : 0.0f;
          den += w[k];
        }
        for (int64_t k = 0; k < ns; ++k) {
          const float* ok = part_o + ((base + s0 + k) * G + g) * hd;
          for (int64_t d = 0; d < hd; ++d) dst[d] += w[k] * ok[d];
        }
      }
      const float inv = 1.0f / den;
      for (int64_t d = 0; d < hd; ++d) dst[d] *= inv;
    }
  });
}

void rows_path(ThreadPool& pool, const AttnKernels& kr, float* out, int64_t ldo, const float* q, int64_t ldq, int64_t T,
               int64_t Hq, int64_t hd, const KvCacheView& kv, int64_t pos0, float scale, float* att, int64_t ld_att,
               float* scratch, int64_t ld_scratch) {
  if (!att && hd % kr.lanes == 0 && Hq / kv.Hkv > 1) {
    grouped_rows(pool, kr, out, ldo, q, ldq, T, Hq, hd, kv, pos0, scale);
    return;
  }
  const int64_t group = Hq / kv.Hkv, n_all = pos0 + T;
  pool.run(T * Hq, 1, [&](int64_t b, int64_t e, int tid) {
    float* sc = scratch + tid * ld_scratch;
    for (int64_t th = b; th < e; ++th) {
      const int64_t t = th / Hq, h = th % Hq, kh = h / group, n = pos0 + t + 1;
      const float* qv = q + t * ldq + h * hd;
      float* o = out + t * ldo + h * hd;
      const KvRows K = kv.k.head(kh, hd), Vh = kv.v.head(kh, hd);
      if (K.type == KvRows::F32) {  // (the matmul library's row kernels, which training's backward shares)
        vec_dot_rows_f32(sc, qv, static_cast<const float*>(K.p), K.ld, n, hd, scale);  // sc[j] = scale · q·K[j]
      } else {
        kr.dot_rows(sc, qv, K, n, hd, scale);  // sc[j] = scale · q·K[j], K widened (int8: s_j · K8[j])
      }
      kr.softmax(sc, n, nullptr);
      if (att) { float* a = att + (t * Hq + h) * ld_att; std::copy(sc, sc + n, a); std::fill(a + n, a + n_all, 0.0f); }
      std::fill(o, o + hd, 0.0f);
      if (Vh.type == KvRows::F32) vec_axpy_rows_f32(o, sc, static_cast<const float*>(Vh.p), Vh.ld, n, hd);  // o = Σ_j sc[j] V[j]
      else kr.axpy_rows(o, sc, Vh, n, hd);
    }
  });
}

// Blocks of nt tokens × ng heads of one KV head's group; tasks ordered so any contiguous run of them mixes early
// blocks (few keys under the causal mask) with late ones (the pool hands out contiguous chunks).
void blocked_path(ThreadPool& pool, const AttnKernels& kr, float* out, int64_t ldo, const float* q, int64_t ldq,
                  int64_t T, int64_t Hq, int64_t hd, const KvCacheView& kv, int64_t pos0, float scale) {
  const int64_t G = Hq / kv.Hkv, ng = std::min<int64_t>(G, kr.rows), nhc = (G + ng - 1) / ng;
  const int64_t nt = std::max<int64_t>(1, kr.rows / ng), nb = (T + nt - 1) / nt, per_block = kv.Hkv * nhc;
  const int64_t need = cpu_attention::scratch_floats(kr, hd);
  pool.run(nb * per_block, 1, [&](int64_t b, int64_t e, int) {
    float* scratch = thread_scratch(need);
    for (int64_t i = b; i < e; ++i) {
      const int64_t zi = i / per_block, rest = i % per_block;
      const int64_t bi = zi % 2 == 0 ? zi / 2 : nb - 1 - zi / 2;  // 0, nb−1, 1, nb−2, …
      const int64_t kh = rest / nhc, c = rest % nhc, t0 = bi * nt, h0 = kh * G + c * ng;
      AttnBlock a{};
      a.q = q + t0 * ldq + h0 * hd; a.q_t = ldq; a.q_h = hd;
      a.o = out + t0 * ldo + h0 * hd; a.o_t = ldo; a.o_h = hd;
      a.nt = std::min(nt, T - t0); a.ng = std::min(ng, G - c * ng);  // (a short last head chunk only when nt = 1)
      a.hd = hd; a.scale = scale; a.p0 = pos0 + t0;
      a.k = kv.k.head(kh, hd); a.v = kv.v.head(kh, hd);
      a.scratch = scratch;
      kr.block(a);
    }
  });
}

}  // namespace

int attention_force_path(int path) { return g_path.exchange(path); }

void f32_to_f16_row(uint16_t* y, const float* x, int64_t n) { kernels().to_f16(y, x, n); }

void attention_causal(ThreadPool& pool, float* out, int64_t ldo, const float* q, int64_t ldq, int64_t T, int64_t Hq,
                      int64_t hd, const KvCacheView& kv, int64_t pos0, float scale, float* att, int64_t ld_att,
                      float* scratch, int64_t ld_scratch) {
  if (kv.Hkv <= 0 || Hq % kv.Hkv != 0 || !kv.k.p || !kv.v.p || kv.k.type != kv.v.type ||
      (kv.k.type == KvRows::I8 && (!kv.k.s || !kv.v.s)) || (att && kv.k.type != KvRows::F32))
    throw std::invalid_argument("attention_causal: bad cache view");
  if (T <= 0) return;
  const AttnKernels& kr = kernels();
  const int path = g_path.load(std::memory_order_relaxed);
  // By shape: blocked where a block fills at least half of its rows (prefill; decode's one token × a group of
  // heads usually does not, and the row path reads each key once per head from cache just as well).
  const int64_t rows = std::min<int64_t>(T * (Hq / kv.Hkv), kr.rows);
  const bool blocked = !att && (path == 2 || (path == 0 && 2 * rows >= kr.rows));
  if (blocked) blocked_path(pool, kr, out, ldo, q, ldq, T, Hq, hd, kv, pos0, scale);
  else rows_path(pool, kr, out, ldo, q, ldq, T, Hq, hd, kv, pos0, scale, att, ld_att, scratch, ld_scratch);
}

}  // namespace moe
