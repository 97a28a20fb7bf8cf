// Causal attention with grouped KV heads on the CPU (the math: Backend::attention in backend/backend.h), over an
// f32 or an int8 KV cache. Two paths:
//   rows     per query: scores against every key, a softmax, the weighted sum of values; the only path that writes
//            the probabilities (training keeps them, one head at a time) and the one decode takes (a block of one
//            token would leave most of a vector's lanes idle). Without probabilities the query heads of a KV group
//            go four at a time, so each cache row (f32 or int8) is read once per group, not once per head.
//   blocked  flash-style (cpu/attention_tile.inc): a block of query rows of one KV head against tiles of keys with
//            an online softmax, so each K and V row is read once per block rather than once per query and head;
//            prefill, most of all at long context, where the row path streams the whole cache per query
// Results agree to float rounding (the blocked path sums in another order); threads split (query, head) rows or
// blocks, so the result does not depend on the thread count.
#pragma once
#include <cstdint>
#include "cpu/thread_pool.h"

namespace moe {

// A layer's KV cache as attention reads it: key j of KV head h at k + j·ld + h·hd (f32), or at k8 + j·ld + h·hd
// (int8, x ≈ s·q) with its scale at ks[j·Hkv + h]; v likewise.
struct KvCacheView {
  const float* k = nullptr; const float* v = nullptr;
  const int8_t* k8 = nullptr; const int8_t* v8 = nullptr;
  const float* ks = nullptr; const float* vs = nullptr;
  int64_t ld = 0, Hkv = 0;
};

// out, q: token t (of positions pos0 .. pos0+T−1), head h at out + t·ldo + h·hd, q + t·ldq + h·hd.
// att: null, or [T·Hq, pos0+T] (rows ld_att apart) for the probabilities (f32 cache only; zero past the causal edge).
// scratch: the row path's per-thread rows (pool.size() rows, ld_scratch ≥ pos0+T floats apart).
void attention_causal(ThreadPool& pool, float* out, int64_t ldo, const float* q, int64_t ldq, int64_t T, int64_t Hq,
                      int64_t hd, const KvCacheView& kv, int64_t pos0, float scale, float* att, int64_t ld_att,
                      float* scratch, int64_t ld_scratch);

// Which path attention_causal takes: 0 = by shape (the default), 1 = rows, 2 = blocked (where att is null).
// Tests and benchmarks; MOE_ATTN=rows|blocked sets it at start. Returns the previous setting.
int attention_force_path(int path);

}  // namespace moe
