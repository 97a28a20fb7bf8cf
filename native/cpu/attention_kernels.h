// Internal to cpu/ (not part of attention.h): the blocked attention's per-ISA kernel table.
//   attention.cpp          attention.h's API: the row path, the blocked path's threading, the choice of a table
//   attention_tile.inc     the kernels, written once (included by every ISA file)
//   attention_avx512.cpp   16 lanes (also the AMX table's: AMX tiles are for the bf16 weight products)
//   attention_avx2.cpp     8 lanes
//   attention.cpp          the portable table (8 lanes as plain arrays)
#pragma once
#include <cstdint>
#include "cpu/attention.h"

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif
namespace moe::cpu_attention {

// One pass of the blocked kernel: nt tokens × ng query heads of one KV head's group (nt·ng ≤ the table's rows).
struct AttnBlock {
  const float* q; int64_t q_t, q_h;  // row (t, g) at q + t·q_t + g·q_h  (hd floats)
  float* o; int64_t o_t, o_h;        // its output, the same way
  int64_t nt, ng, hd;
  float scale;
  int64_t p0;                        // position of the first token: token t sees keys 0 .. p0 + t
  KvRows k, v;                       // the KV head's rows
  float* scratch;                    // scratch_floats(rows, keys, hd) of this thread
};

// Every entry takes one KV head's rows (KvRows: f32, f16 or int8) and widens them to f32 as it reads.
struct AttnKernels {
  const char* name;
  int rows;                          // query rows per block (RL)
  int64_t keys;                      // keys per tile (BK)
  void (*block)(const AttnBlock& b);
  void (*softmax)(float* x, int64_t n, float* max_sum);  // max_sum: null, or {max, Σ e^(x − max)} (float[2])
  // The row path, one query head:  out[j] = scale · q·K[j]  (j < n)            o += Σ_j w[j] · V[j]
  void (*dot_rows)(float* out, const float* q, const KvRows& K, int64_t n, int64_t hd, float scale);
  void (*axpy_rows)(float* o, const float* w, const KvRows& V, int64_t n, int64_t hd);
  // Decode with the gc ≤ 4 query heads of one KV head at once (q_g, o_g hd apart; hd % lanes == 0):
  //   sc[g·lds + j] = scale · q_g·K[j]               o_g += Σ_j sc[g·lds + j] · V[j]
  int lanes;
  void (*group_scores)(float* sc, int64_t lds, const float* q, const KvRows& K, int64_t n, int64_t hd, float scale, int gc);
  void (*group_values)(float* o, const float* sc, int64_t lds, const KvRows& V, int64_t n, int64_t hd, int gc);
  void (*to_f16)(uint16_t* y, const float* x, int64_t n);  // f32_to_f16_row (attention.h)
  // dst [nk, hd] = rows 0 .. nk−1 of r widened to f32 (int8: s_j·q)
  void (*widen)(float* dst, const KvRows& r, int64_t nk, int64_t hd);
};

// QT, OT [hd][rows], S [keys][rows], m, l, lim [rows], K and V tiles [keys][hd] (f16 and int8 caches, widened)
inline int64_t scratch_floats(const AttnKernels& k, int64_t hd) { return 2 * hd * k.rows + k.keys * k.rows + 3 * k.rows + 2 * k.keys * hd; }

extern const AttnKernels kAttnPortable;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
extern const AttnKernels kAttnAvx2, kAttnAvx512;
#endif

}  // namespace moe::cpu_attention
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
