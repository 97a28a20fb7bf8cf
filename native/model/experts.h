// Token-to-expert grouping for the MoE blocks: the (token, slot) pairs of a routing decision sorted by expert, so
// each expert's weights are streamed once per batch for all of its tokens (one matmul with M = |S_e|).
#pragma once
#include <cstdint>

namespace moe {

struct ExpertGroups {
  const int32_t* offsets;   // [E + 1]: expert e's pairs are [offsets[e], offsets[e+1])
  const int32_t* slot_tok;  // [T·k]: the token of each pair
  const float* slot_w;      // [T·k]: its routing weight
  int64_t count(int e) const { return offsets[e + 1] - offsets[e]; }
};

// Counting sort of idx [T, k] by expert, stable in token order (so the per-expert rows, and every sum over them, come
// in a fixed order). counts [E], offsets [E + 1], slot_tok, slot_w [T·k] are the caller's scratch; slot_pair [T·k]
// (optional) receives each sorted pair's index t·k + j into idx/w (the backward scatters the weights' gradient there).
inline ExpertGroups group_by_expert(const int32_t* idx, const float* w, int64_t T, int k, int E, int32_t* counts,
                                    int32_t* offsets, int32_t* slot_tok, float* slot_w, int32_t* slot_pair = nullptr) {
  for (int e = 0; e < E; ++e) counts[e] = 0;
  for (int64_t i = 0; i < T * k; ++i) counts[idx[i]]++;
  offsets[0] = 0;
  for (int e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
  for (int e = 0; e < E; ++e) counts[e] = 0;
  for (int64_t i = 0; i < T * k; ++i) {
    const int e = idx[i];
    const int32_t pos = offsets[e] + counts[e]++;
    slot_tok[pos] = int32_t(i / k); slot_w[pos] = w[i];
    if (slot_pair) slot_pair[pos] = int32_t(i);
  }
  return {offsets, slot_tok, slot_w};
}

}  // namespace moe
