// LoRA dropout's mask, one function for the CPU code and the kernels (kernels/elementwise.cuh): element i of pair
// `id` is kept when a splitmix64 hash of (seed, id, i) falls at or above p. Regenerated wherever it is needed (the
// forward, the checkpointed recompute, the backward) instead of stored.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MOE_HOST_DEVICE __host__ __device__
#else
#define MOE_HOST_DEVICE
#endif

namespace moe {

MOE_HOST_DEVICE inline bool lora_keep(uint64_t seed, uint32_t id, uint64_t i, float p) {
  uint64_t z = seed ^ (uint64_t(id) << 48) ^ i;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * (1.0 / 9007199254740992.0) >= double(p);
}

}  // namespace moe
