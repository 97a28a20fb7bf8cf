// Causal attention with grouped KV heads on the CPU (the math: Backend::attention in backend/backend.h), over an
// f32, f16 or int8 KV cache. Two paths:
//   rows     per query: scores against every key, a softmax, the weighted sum of values; the only path that writes
//            the probabilities (training keeps them, one head at a time) and the one decode takes (a block of one
//            token would leave most of a vector's lanes idle). Without probabilities all query heads of a KV group
//            go together over splits of the keys (flash-decoding), so each cache row is read once per group.
//   blocked  flash-style (cpu/attention_tile.inc): a block of query rows of one KV head against tiles of keys with
//            an online softmax, so each K and V row is read once per block rather than once per query and head;
//            prefill, most of all at long context, where the row path streams the whole cache per query
// Results agree to float rounding (the blocked path sums in another order); threads split (query, head) rows or
// blocks, so the result does not depend on the thread count.
#pragma once
#include <cstdint>
#include "cpu/thread_pool.h"

namespace moe {

// One KV head's key (or value) rows as attention reads them: row j at p + j·ld elements of `type`, which is f32,
// f16 (IEEE half, widened on load) or int8 (x ≈ s·q, the row's scale at s[j·lds]).
struct KvRows {
  enum Type : uint8_t { F32, F16, I8 } type = F32;
  const void* p = nullptr;
  int64_t ld = 0;
  const float* s = nullptr;
  int64_t lds = 0;
  // the rows of KV head h (heads hd elements apart in a row, their scales one apart)
  KvRows head(int64_t h, int64_t hd) const { return moved(h * hd, h); }
  // the rows from row j0 on
  KvRows from(int64_t j0) const { return moved(j0 * ld, j0 * lds); }

 private:
  // p advanced by `elements` of its type, s by `scales`
  KvRows moved(int64_t elements, int64_t scales) const {
    KvRows r = *this;
    const int64_t bytes = elements * (type == F32 ? 4 : type == F16 ? 2 : 1);
    r.p = static_cast<const char*>(p) + bytes;
    if (s) r.s = s + scales;
    return r;
  }
};

// A layer's KV cache: k and v hold all Hkv heads of a row (KvRows::head picks one), the same type for both.
struct KvCacheView {
  KvRows k, v;
  int64_t Hkv = 0;
};

// out, q: token t (of positions pos0 .. pos0+T−1), head h at out + t·ldo + h·hd, q + t·ldq + h·hd.
// att: null, or [T·Hq, pos0+T] (rows ld_att apart) for the probabilities (f32 cache only; zero past the causal edge).
// scratch: the row path's per-thread rows (pool.size() rows, ld_scratch ≥ pos0+T floats apart).
void attention_causal(ThreadPool& pool, float* out, int64_t ldo, const float* q, int64_t ldq, int64_t T, int64_t Hq,
                      int64_t hd, const KvCacheView& kv, int64_t pos0, float scale, float* att, int64_t ld_att,
                      float* scratch, int64_t ld_scratch);

// y[0:n] = x[0:n] as IEEE half, rounded to nearest even (the f16 cache's append): F16C's vcvtps2ph on the avx2 and
// avx512 paths, format/dtype.h's f32_to_f16 on the portable one (the same bits).
void f32_to_f16_row(uint16_t* y, const float* x, int64_t n);

// Which path attention_causal takes: 0 = by shape (the default), 1 = rows, 2 = blocked (where att is null).
// Tests and benchmarks; MOE_ATTN=rows|blocked sets it at start. Returns the previous setting.
int attention_force_path(int path);

}  // namespace moe
