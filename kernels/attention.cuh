// Causal attention over a KV cache, grouped-query (GQA), online softmax; the same kernel serves prefill (T query
// tokens at positions pos0 .. pos0+T-1) and decode (T = 1), over an f32 cache, an f16 one, or an int8 one (per-row
// scales).
//   q: token t, head h at q + t*q_stride_t + h*Dh        out: at out + t*o_stride_t + h*Dh
//   K, V: element (j, kh, d) at base + j*kv_stride_t + kh*kv_stride_h + d;  int8: value = s[j*s_stride_t + kh] * q8
//   head h reads kv head kh = h / (Hq / Hkv); query t sees keys j <= pos0 + t
//   out[t, h] = sum_j a_j V[j],   a = softmax_j(s),   s_j = scale * q[t, h]·K[j]
//   att (optional, for backward): row t*Hq + h of [T*Hq, ld_att] gets a_j for j < pos0+t+1 and 0 up to pos0+T
// One block (4 warps) per (query head, token). Warp w takes positions j = w, w+4, ...: its lanes split Dh (lane L
// owns dims L, L+32, ..., at most 8, so Dh <= 256), a warp_sum gives s_j to all lanes, and the warp keeps a running
// (max m, denominator l, accumulator acc[Dh]) updated flash-attention style:
//   m' = max(m, s);  l' = l*e^(m-m') + e^(s-m');  acc' = acc*e^(m-m') + e^(s-m') V[j]
// The 4 partial states are merged through shared memory: M = max m_w, out = sum_w e^(m_w-M) acc_w / sum_w e^(m_w-M) l_w.
// This per-(head, token) form serves decode, short prompts and training (it can keep the probabilities); prefill of
// 8 tokens or more takes the flash-style kernel below (a block of queries sharing K/V tiles). Decode past 512 keys
// splits each (head, token)'s keys over several blocks (blockIdx.z), which leave unnormalised partials for
// attention_merge_kernel: the same flash merge, across blocks instead of warps.
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kAttnWarps = 4;
constexpr int kAttnMaxDimsPerLane = 8;  // head_dim <= 32 * 8 = 256
constexpr int64_t kAttnSplitKeys = 512, kAttnMaxSplits = 64;  // split-K decode: one block per 512 keys, at most 64

// One cache element as f32: an f32 cache, an f16 one (widened), or int8 values with one scale per (position, kv head).
struct KvF32 {
  const float* base;
  __device__ __forceinline__ float at(int64_t off) const { return base[off]; }
  __device__ __forceinline__ float scale(int64_t) const { return 1.0f; }
};
struct KvF16 {
  const uint16_t* base;
  __device__ __forceinline__ float at(int64_t off) const { return f16_bits_to_f32(base[off]); }
  __device__ __forceinline__ float scale(int64_t) const { return 1.0f; }
};
struct KvI8 {
  const int8_t* base; const float* s;
  __device__ __forceinline__ float at(int64_t off) const { return float(base[off]); }
  __device__ __forceinline__ float scale(int64_t si) const { return s[si]; }
};

template <class KV>
__global__ void __launch_bounds__(kAttnWarps * 32)
attention_kernel(float* out, const float* q, KV kc, KV vc, AttnShape sh) {
  __shared__ float sm_m[kAttnWarps], sm_l[kAttnWarps];
  __shared__ float sm_acc[kAttnWarps][32 * kAttnMaxDimsPerLane];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int h = blockIdx.x, t = blockIdx.y;
  const int Dh = int(sh.head_dim), group = int(sh.n_heads / sh.n_kv_heads), kh = h / group;
  const int n = int(sh.pos0) + t + 1;
  // split-K (sh.splits > 1, decode over a long context): this block takes keys [j_begin, j_end) and leaves its
  // unnormalised partial (m, l, acc) for attention_merge_kernel; otherwise it takes them all and writes out
  const int j_begin = sh.splits > 1 ? int(blockIdx.z) * int(sh.split_keys) : 0;
  const int j_end = sh.splits > 1 ? (j_begin + int(sh.split_keys) < n ? j_begin + int(sh.split_keys) : n) : n;
  const float* qt = q + int64_t(t) * sh.q_stride_t + int64_t(h) * Dh;
  float qr[kAttnMaxDimsPerLane], acc[kAttnMaxDimsPerLane];
MOE_UNROLL
  for (int j = 0; j < kAttnMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    qr[j] = d < Dh ? qt[d] * sh.scale : 0.0f;
    acc[j] = 0.0f;
  }
  const int64_t kvh = int64_t(kh) * sh.kv_stride_h;
  // s_j = scale * q·K[j] (scale folded into qr), the same in both passes
  auto score = [&](int j) {
    const int64_t off = int64_t(j) * sh.kv_stride_t + kvh;
    float s = 0.0f;
MOE_UNROLL
    for (int i = 0; i < kAttnMaxDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < Dh) s += qr[i] * kc.at(off + d);
    }
    return warp_sum(s) * kc.scale(int64_t(j) * sh.s_stride_t + kh);
  };
  float m = -INFINITY, l = 0.0f;
  for (int j = j_begin + wid; j < j_end; j += kAttnWarps) {
    const float s = score(j);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // first step: e^(-inf) = 0
    const float pt = expf(s - m_new);
    l = l * corr + pt;
    const int64_t off = int64_t(j) * sh.kv_stride_t + kvh;
    const float pv = pt * vc.scale(int64_t(j) * sh.s_stride_t + kh);
MOE_UNROLL
    for (int i = 0; i < kAttnMaxDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < Dh) acc[i] = acc[i] * corr + pv * vc.at(off + d);
    }
    m = m_new;
  }
  if (lane == 0) { sm_m[wid] = m; sm_l[wid] = l; }
MOE_UNROLL
  for (int i = 0; i < kAttnMaxDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < Dh) sm_acc[wid][d] = acc[i];
  }
  __syncthreads();
  float M = -INFINITY;
  MOE_UNROLL for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, sm_m[w]);
  float L = 0.0f, c[kAttnWarps];
  MOE_UNROLL for (int w = 0; w < kAttnWarps; ++w) { c[w] = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M); L += c[w] * sm_l[w]; }
  if (sh.splits > 1) {  // partial [(t·Hq + h)·splits + split][Dh + 2]: acc (not yet divided), then m and l
    float* pp = sh.split_ws + ((int64_t(t) * sh.n_heads + h) * sh.splits + blockIdx.z) * (Dh + 2);
    for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
      float o = 0.0f;
      MOE_UNROLL for (int w = 0; w < kAttnWarps; ++w) o += c[w] * sm_acc[w][d];
      pp[d] = o;
    }
    if (threadIdx.x == 0) { pp[Dh] = M; pp[Dh + 1] = L; }
    return;  // (the whole block; no probabilities with splits)
  }
  const float invL = 1.0f / L;
  float* ot = out + int64_t(t) * sh.o_stride_t + int64_t(h) * Dh;
  for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
    float o = 0.0f;
    MOE_UNROLL for (int w = 0; w < kAttnWarps; ++w) o += c[w] * sm_acc[w][d];
    ot[d] = o * invL;
  }
  if (sh.att != nullptr) {
    float* a = sh.att + (int64_t(t) * sh.n_heads + h) * sh.ld_att;
    for (int j = wid; j < n; j += kAttnWarps) {
      const float p = expf(score(j) - M) * invL;
      if (lane == 0) a[j] = p;
    }
    for (int j = n + int(threadIdx.x); j < int(sh.pos0 + sh.T); j += int(blockDim.x)) a[j] = 0.0f;
  }
}

// Split-K merge, one block per (head, token): M = max_s m_s, out = Σ_s e^(m_s − M) acc_s / Σ_s e^(m_s − M) l_s (a split
// whose keys lie past the causal edge has m = −inf, l = 0 and drops out).
__global__ void __launch_bounds__(128) attention_merge_kernel(float* out, AttnShape sh) {
  const int h = blockIdx.x, t = blockIdx.y, Dh = int(sh.head_dim), S = int(sh.splits);
  const float* pp = sh.split_ws + (int64_t(t) * sh.n_heads + h) * S * (Dh + 2);
  float M = -INFINITY;
  for (int k = 0; k < S; ++k) M = fmaxf(M, pp[int64_t(k) * (Dh + 2) + Dh]);
  float L = 0.0f;
  for (int k = 0; k < S; ++k) {
    const float mk = pp[int64_t(k) * (Dh + 2) + Dh];
    if (mk != -INFINITY) L += expf(mk - M) * pp[int64_t(k) * (Dh + 2) + Dh + 1];
  }
  float* ot = out + int64_t(t) * sh.o_stride_t + int64_t(h) * Dh;
  for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
    float o = 0.0f;
    for (int k = 0; k < S; ++k) {
      const float mk = pp[int64_t(k) * (Dh + 2) + Dh];
      if (mk != -INFINITY) o += expf(mk - M) * pp[int64_t(k) * (Dh + 2) + d];
    }
    ot[d] = o / L;
  }
}

// ---- prefill, flash-style: a block of 16 query tokens of one head shares each K/V tile ----------------------------
// The kernel above reads every key once per (query, head); this one stages 16 keys of K and V (f32, an int8 cache
// widened on the way in) in shared memory once per 16 queries, so the cache is read T/16 times instead of T.
// 4 warps x 4 query rows each; lanes split head_dim as above; the online softmax per row is the same update. Rows
// past T and keys past a row's causal edge take no part in the sums. Used for inference prefill (no probabilities
// kept); T < 8 and training keep the kernel above.
constexpr int kFlashQ = 16, kFlashKeys = 16, kFlashRowsPerWarp = kFlashQ / kAttnWarps, kFlashMinT = 8;

template <class KV>
__global__ void __launch_bounds__(kAttnWarps * 32, 1)
attention_flash_kernel(float* out, const float* q, KV kc, KV vc, AttnShape sh) {
  __shared__ float ks[kFlashKeys][32 * kAttnMaxDimsPerLane], vs[kFlashKeys][32 * kAttnMaxDimsPerLane];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int h = blockIdx.x, t0 = blockIdx.y * kFlashQ;
  const int Dh = int(sh.head_dim), kh = h / int(sh.n_heads / sh.n_kv_heads), T = int(sh.T), pos0 = int(sh.pos0);
  float qr[kFlashRowsPerWarp][kAttnMaxDimsPerLane], acc[kFlashRowsPerWarp][kAttnMaxDimsPerLane], m[kFlashRowsPerWarp], l[kFlashRowsPerWarp];
  for (int r = 0; r < kFlashRowsPerWarp; ++r) {
    const int t = t0 + wid * kFlashRowsPerWarp + r;
    const float* qt = q + int64_t(t < T ? t : 0) * sh.q_stride_t + int64_t(h) * Dh;
MOE_UNROLL
    for (int i = 0; i < kAttnMaxDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      qr[r][i] = (t < T && d < Dh) ? qt[d] * sh.scale : 0.0f;
      acc[r][i] = 0.0f;
    }
    m[r] = -INFINITY; l[r] = 0.0f;
  }
  const int t_last = t0 + kFlashQ - 1 < T - 1 ? t0 + kFlashQ - 1 : T - 1;
  const int n_keys = pos0 + t_last + 1;  // the block's last row sees keys [0, n_keys)
  const int64_t kvh = int64_t(kh) * sh.kv_stride_h;
  for (int j0 = 0; j0 < n_keys; j0 += kFlashKeys) {
    for (int e = threadIdx.x; e < kFlashKeys * Dh; e += blockDim.x) {
      const int jj = e / Dh, d = e - jj * Dh, j = j0 + jj;
      const int64_t off = int64_t(j) * sh.kv_stride_t + kvh + d;
      ks[jj][d] = j < n_keys ? kc.at(off) * kc.scale(int64_t(j) * sh.s_stride_t + kh) : 0.0f;
      vs[jj][d] = j < n_keys ? vc.at(off) * vc.scale(int64_t(j) * sh.s_stride_t + kh) : 0.0f;
    }
    __syncthreads();
    for (int r = 0; r < kFlashRowsPerWarp; ++r) {
      const int t = t0 + wid * kFlashRowsPerWarp + r;
      const int n = pos0 + t + 1;  // this row's keys (a row past T sees none: it is skipped below)
      for (int jj = 0; jj < kFlashKeys; ++jj) {
        const int j = j0 + jj;
        if (t >= T || j >= n) break;  // uniform across the warp: t and j are
        float s = 0.0f;
MOE_UNROLL
        for (int i = 0; i < kAttnMaxDimsPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < Dh) s += qr[r][i] * ks[jj][d];
        }
        s = warp_sum(s);
        const float m_new = fmaxf(m[r], s), corr = expf(m[r] - m_new), pt = expf(s - m_new);
        l[r] = l[r] * corr + pt;
MOE_UNROLL
        for (int i = 0; i < kAttnMaxDimsPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < Dh) acc[r][i] = acc[r][i] * corr + pt * vs[jj][d];
        }
        m[r] = m_new;
      }
    }
    __syncthreads();  // the next tile overwrites ks, vs
  }
  for (int r = 0; r < kFlashRowsPerWarp; ++r) {
    const int t = t0 + wid * kFlashRowsPerWarp + r;
    if (t >= T) continue;
    float* ot = out + int64_t(t) * sh.o_stride_t + int64_t(h) * Dh;
    const float inv = 1.0f / l[r];
MOE_UNROLL
    for (int i = 0; i < kAttnMaxDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < Dh) ot[d] = acc[r][i] * inv;
    }
  }
}

// ---- backward, from the probabilities the forward kept (att rows t*Hq + h) -------------------------------------
//   dp_j = dout[t,h]·V[j];  ds_j = p_j (dp_j − Σ_j p_j dp_j);  dq[t,h] = scale Σ_j ds_j K[j]
//   dK[j,kh] += scale Σ_{t,h ∈ kh} ds[t,h,j] q[t,h];   dV[j,kh] += Σ_{t,h ∈ kh} p[t,h,j] dout[t,h]
// Two kernels, so every sum has one owner (no atomics: the same bits at every launch): one block per (head, token)
// writes ds into `ds` ([T*Hq, ld_att], scratch) and dq; then one block per (kv head, position) sums dK and dV over
// the (token, head) pairs that saw that position.
__global__ void __launch_bounds__(kAttnWarps * 32)
attention_ds_kernel(float* dq, float* ds, const float* dout, const float* kc, const float* vc, const float* att, AttnShape sh) {
  __shared__ float sm_sum[kAttnWarps];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int h = blockIdx.x, t = blockIdx.y;
  const int Dh = int(sh.head_dim), kh = h / int(sh.n_heads / sh.n_kv_heads), n = int(sh.pos0) + t + 1;
  const int64_t row = int64_t(t) * sh.n_heads + h;
  const float* p = att + row * sh.ld_att;
  float* dsr = ds + row * sh.ld_att;
  const float* go = dout + int64_t(t) * sh.o_stride_t + int64_t(h) * Dh;
  float part = 0.0f;
  for (int j = wid; j < n; j += kAttnWarps) {
    const float* vj = vc + int64_t(j) * sh.kv_stride_t + int64_t(kh) * sh.kv_stride_h;
    float dp = 0.0f;
    for (int d = lane; d < Dh; d += 32) dp += go[d] * vj[d];
    dp = warp_sum(dp);
    if (lane == 0) dsr[j] = dp;
    part += p[j] * dp;
  }
  if (lane == 0) sm_sum[wid] = part;
  __syncthreads();
  float sum = 0.0f;
  MOE_UNROLL for (int w = 0; w < kAttnWarps; ++w) sum += sm_sum[w];
  for (int j = threadIdx.x; j < n; j += blockDim.x) dsr[j] = p[j] * (dsr[j] - sum);
  for (int j = n + int(threadIdx.x); j < int(sh.pos0 + sh.T); j += int(blockDim.x)) dsr[j] = 0.0f;
  __syncthreads();
  float* g = dq + int64_t(t) * sh.q_stride_t + int64_t(h) * Dh;
  for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
    float a = 0.0f;
    for (int j = 0; j < n; ++j) a += dsr[j] * kc[int64_t(j) * sh.kv_stride_t + int64_t(kh) * sh.kv_stride_h + d];
    g[d] = sh.scale * a;
  }
}

__global__ void __launch_bounds__(kAttnWarps * 32)
attention_dkv_kernel(float* dK, float* dV, const float* ds, const float* att, const float* q, const float* dout, AttnShape sh) {
  const int kh = blockIdx.x, j = blockIdx.y;
  const int Dh = int(sh.head_dim), group = int(sh.n_heads / sh.n_kv_heads);
  const int t0 = j > sh.pos0 ? int(j - sh.pos0) : 0;  // the first query token that sees position j
  const int64_t off = int64_t(j) * sh.kv_stride_t + int64_t(kh) * sh.kv_stride_h;
  for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
    float gk = 0.0f, gv = 0.0f;
    for (int t = t0; t < int(sh.T); ++t)
      for (int h = kh * group; h < (kh + 1) * group; ++h) {
        const int64_t row = int64_t(t) * sh.n_heads + h;
        gk += ds[row * sh.ld_att + j] * q[int64_t(t) * sh.q_stride_t + int64_t(h) * Dh + d];
        gv += att[row * sh.ld_att + j] * dout[int64_t(t) * sh.o_stride_t + int64_t(h) * Dh + d];
      }
    dK[off + d] += sh.scale * gk;
    dV[off + d] += gv;
  }
}

inline void check_attention(const char* name, const AttnShape& sh) {
  MOE_KCHECK(name, sh.n_heads > 0 && sh.n_kv_heads > 0 && sh.n_heads % sh.n_kv_heads == 0,
             "n_heads (" + std::to_string(sh.n_heads) + ") must be a positive multiple of n_kv_heads (" + std::to_string(sh.n_kv_heads) + ")");
  MOE_KCHECK(name, sh.head_dim > 0 && sh.head_dim <= 32 * kAttnMaxDimsPerLane,
             "head_dim must be in 1..256 (got " + std::to_string(sh.head_dim) + ")");
  MOE_KCHECK(name, sh.T >= 0 && sh.T <= 65535 && sh.pos0 >= 0 && sh.pos0 + sh.T < (int64_t(1) << 31),
             "T must be in 0..65535 and pos0 >= 0 (got T " + std::to_string(sh.T) + ", pos0 " + std::to_string(sh.pos0) + ")");
  MOE_KCHECK(name, sh.n_heads < (int64_t(1) << 31), "n_heads out of range");
  MOE_KCHECK(name, sh.kv_stride_h >= sh.head_dim && sh.kv_stride_t >= sh.kv_stride_h * sh.n_kv_heads,
             "kv strides too small for [n_ctx, n_kv_heads, head_dim]");
  MOE_KCHECK(name, sh.q_stride_t >= sh.n_heads * sh.head_dim && sh.o_stride_t >= sh.n_heads * sh.head_dim,
             "q / out token strides must be >= n_heads*head_dim");
  MOE_KCHECK(name, sh.att == nullptr || sh.ld_att >= sh.pos0 + sh.T, "ld_att must be >= pos0 + T");
}

// The per-(head, token) kernel, its keys split over several blocks (then merged) when a short query run meets a long
// context and the caller gave scratch (split_ws): decode's Hq blocks alone would leave most of a GPU idle.
inline int64_t attention_splits(const AttnShape& sh) {
  if (sh.att != nullptr || sh.T > 4) return 1;
  return std::min<int64_t>(kAttnMaxSplits, (sh.pos0 + sh.T + kAttnSplitKeys - 1) / kAttnSplitKeys);
}

int64_t attention_split_floats(const AttnShape& sh) {
  const int64_t splits = attention_splits(sh);
  return splits > 1 ? sh.T * sh.n_heads * splits * (sh.head_dim + 2) : 0;
}

template <class KV>
void launch_rows_or_split(const char* name, float* out, const float* q, KV kc, KV vc, AttnShape sh, void* stream) {
  const int64_t n_max = sh.pos0 + sh.T;
  const int64_t splits = sh.split_ws == nullptr ? 1 : attention_splits(sh);
  if (splits > 1 && sh.split_ws_floats >= attention_split_floats(sh)) {
    sh.splits = splits;
    sh.split_keys = (n_max + splits - 1) / splits;
    MOE_LAUNCH(name, attention_kernel<KV>, dim3(unsigned(sh.n_heads), unsigned(sh.T), unsigned(splits)), dim3(kAttnWarps * 32), 0, stream,
               out, q, kc, vc, sh);
    MOE_LAUNCH("attention merge", attention_merge_kernel, dim3(unsigned(sh.n_heads), unsigned(sh.T)), dim3(128), 0, stream, out, sh);
    return;
  }
  sh.splits = 1;
  MOE_LAUNCH(name, attention_kernel<KV>, dim3(unsigned(sh.n_heads), unsigned(sh.T)), dim3(kAttnWarps * 32), 0, stream, out, q, kc, vc, sh);
}

void attention(float* out, const float* q, const float* k_cache, const float* v_cache, const AttnShape& sh, void* stream) {
  check_attention("attention", sh);
  MOE_KCHECK("attention", out && q && k_cache && v_cache, "null pointer");
  if (sh.T == 0) return;
  if (sh.T >= kFlashMinT && sh.att == nullptr)
    MOE_LAUNCH("attention_flash<f32>", attention_flash_kernel<KvF32>, dim3(unsigned(sh.n_heads), unsigned((sh.T + kFlashQ - 1) / kFlashQ)),
               dim3(kAttnWarps * 32), 0, stream, out, q, KvF32{k_cache}, KvF32{v_cache}, sh);
  else launch_rows_or_split("attention<f32>", out, q, KvF32{k_cache}, KvF32{v_cache}, sh, stream);
}

void attention_kv16(float* out, const float* q, const uint16_t* k16, const uint16_t* v16, const AttnShape& sh, void* stream) {
  check_attention("attention_kv16", sh);
  MOE_KCHECK("attention_kv16", sh.att == nullptr, "the f16 cache keeps no probabilities (training needs the f32 cache)");
  MOE_KCHECK("attention_kv16", out && q && k16 && v16, "null pointer");
  if (sh.T == 0) return;
  if (sh.T >= kFlashMinT)
    MOE_LAUNCH("attention_flash<f16>", attention_flash_kernel<KvF16>, dim3(unsigned(sh.n_heads), unsigned((sh.T + kFlashQ - 1) / kFlashQ)),
               dim3(kAttnWarps * 32), 0, stream, out, q, KvF16{k16}, KvF16{v16}, sh);
  else launch_rows_or_split("attention<f16>", out, q, KvF16{k16}, KvF16{v16}, sh, stream);
}

void attention_kv8(float* out, const float* q, const int8_t* k8, const float* k_scales, const int8_t* v8, const float* v_scales,
                   const AttnShape& sh, void* stream) {
  check_attention("attention_kv8", sh);
  MOE_KCHECK("attention_kv8", sh.att == nullptr, "the int8 cache keeps no probabilities (training needs the f32 cache)");
  MOE_KCHECK("attention_kv8", sh.s_stride_t >= sh.n_kv_heads, "s_stride_t must be >= n_kv_heads");
  MOE_KCHECK("attention_kv8", out && q && k8 && k_scales && v8 && v_scales, "null pointer");
  if (sh.T == 0) return;
  if (sh.T >= kFlashMinT)
    MOE_LAUNCH("attention_flash<int8>", attention_flash_kernel<KvI8>, dim3(unsigned(sh.n_heads), unsigned((sh.T + kFlashQ - 1) / kFlashQ)),
               dim3(kAttnWarps * 32), 0, stream, out, q, KvI8{k8, k_scales}, KvI8{v8, v_scales}, sh);
  else launch_rows_or_split("attention<int8>", out, q, KvI8{k8, k_scales}, KvI8{v8, v_scales}, sh, stream);
}

void attention_backward(float* dq, float* dK, float* dV, float* ds, const float* dout, const float* q, const float* k_cache,
                        const float* v_cache, const float* att, const AttnShape& sh, void* stream) {
  check_attention("attention_backward", sh);
  MOE_KCHECK("attention_backward", ds != nullptr && att != nullptr && sh.ld_att >= sh.pos0 + sh.T, "ds and att [T*n_heads, ld_att] are required");
  MOE_KCHECK("attention_backward", dq && dK && dV && dout && q && k_cache && v_cache, "null pointer");
  if (sh.T == 0) return;
  MOE_LAUNCH("attention_backward ds", attention_ds_kernel, dim3(unsigned(sh.n_heads), unsigned(sh.T)), dim3(kAttnWarps * 32), 0, stream,
             dq, ds, dout, k_cache, v_cache, att, sh);
  MOE_KCHECK("attention_backward", sh.pos0 + sh.T <= 65535, "pos0 + T must be <= 65535 (grid.y)");
  MOE_LAUNCH("attention_backward dkv", attention_dkv_kernel, dim3(unsigned(sh.n_kv_heads), unsigned(sh.pos0 + sh.T)), dim3(kAttnWarps * 32),
             0, stream, dK, dV, ds, att, q, dout, sh);
}

void attention_decode(float* out, const float* q, const float* k_cache, const float* v_cache, int64_t n_heads,
                      int64_t n_kv_heads, int64_t head_dim, int64_t n_ctx, int64_t kv_stride_t, int64_t kv_stride_h,
                      float scale, void* stream) {
  MOE_KCHECK("attention_decode", n_ctx >= 1 && n_ctx < (int64_t(1) << 31), "n_ctx must be >= 1 (got " + std::to_string(n_ctx) + ")");
  AttnShape sh;
  sh.T = 1; sh.pos0 = n_ctx - 1; sh.n_heads = n_heads; sh.n_kv_heads = n_kv_heads; sh.head_dim = head_dim;
  sh.q_stride_t = sh.o_stride_t = n_heads * head_dim; sh.kv_stride_t = kv_stride_t; sh.kv_stride_h = kv_stride_h; sh.scale = scale;
  check_attention("attention_decode", sh);
  attention(out, q, k_cache, v_cache, sh, stream);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
