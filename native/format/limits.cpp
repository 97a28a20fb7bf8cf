#include "format/limits.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include "format/config.h"
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <unistd.h>
#endif

namespace moe {

namespace {

// Saturating arithmetic: a bound that overflows is simply "too much".
uint64_t mul(uint64_t a, uint64_t b) { return (a != 0 && b > UINT64_MAX / a) ? UINT64_MAX : a * b; }
uint64_t add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

std::string human(uint64_t b) {
  char s[48];
  if (b >= (uint64_t(1) << 30)) std::snprintf(s, sizeof s, "%.1f GiB", double(b) / double(uint64_t(1) << 30));
  else std::snprintf(s, sizeof s, "%.1f MiB", double(b) / double(uint64_t(1) << 20));
  return s;
}

}  // namespace

uint64_t session_bytes(const ModelSpec& S, int64_t ctx, KvType kv, int threads, int64_t max_t) {
  const uint64_t C = uint64_t(std::max<int64_t>(ctx, 0)), T = uint64_t(std::max<int64_t>(std::min(max_t, ctx), 1));
  const uint64_t hd = uint64_t(S.head_dim), kd = mul(uint64_t(S.num_kv_heads), hd), qd = mul(uint64_t(S.num_heads), hd);
  const uint64_t slots = uint64_t(std::max(S.num_kv_slots, 0));
  // KV cache: K and V per slot, [ctx, kd] of 4 (f32), 2 (f16) or 1 byte (int8: + [ctx, kv heads] f32 scales)
  const uint64_t row = kv == KvType::Int8 ? add(kd, mul(uint64_t(S.num_kv_heads), 4)) : mul(kd, kv == KvType::F16 ? 2 : 4);
  uint64_t b = mul(mul(mul(slots, 2), C), row);
  // scratch (model.cpp init_scratch), in floats: x, h, mlp_out, gather, gout [T, D]; q, att [T, qd]; k, v [T, kd];
  // gate, up [T, inter]; router [T, E]; rope tables; and the ids the session keeps (ctx int32) + last logits [V]
  int64_t inter = S.intermediate, E = 1, K = 1;
  for (auto& l : S.layers) { inter = std::max({inter, l.expert_inter, l.shared_inter}); E = std::max<int64_t>(E, l.num_experts); K = std::max<int64_t>(K, l.top_k); }
  uint64_t f = mul(T, mul(5, uint64_t(S.hidden)));
  f = add(f, mul(T, mul(2, qd)));
  f = add(f, mul(T, mul(2, kd)));
  f = add(f, mul(T, mul(2, uint64_t(inter))));
  f = add(f, mul(T, add(uint64_t(E), mul(4, uint64_t(K)))));
  f = add(f, mul(T, hd));
  f = add(f, mul(uint64_t(std::max(threads, 1)), C));
  f = add(f, add(C, uint64_t(S.vocab)));
  return add(b, mul(f, 4));
}

uint64_t physical_memory_bytes() {
#ifdef _WIN32
  MEMORYSTATUSEX m; m.dwLength = sizeof m;
  return GlobalMemoryStatusEx(&m) ? uint64_t(m.ullTotalPhys) : 0;
#else
  const long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
  return (pages > 0 && ps > 0) ? uint64_t(pages) * uint64_t(ps) : 0;
#endif
}

uint64_t session_memory_limit_bytes() {
  if (const char* e = std::getenv("MOE_SESSION_MEMORY_LIMIT"); e && *e) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(e, &end, 10);
    if (end && *end == '\0' && v > 0) return uint64_t(v);
  }
#if defined(__linux__)
  // MemAvailable: what can be allocated and touched without swapping (the cache and scratch are zero-filled at once)
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kb = 0;
    bool found = false;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) { found = true; break; }
    std::fclose(f);
    if (found && kb > 0) return uint64_t(kb) * 1024;
  }
#endif
  return physical_memory_bytes();
}

void check_session_memory(const ModelSpec& S, int64_t ctx, KvType kv, int threads, int64_t max_t, uint64_t limit) {
  if (limit == 0) limit = session_memory_limit_bytes();
  if (limit == 0) return;  // unknown: nothing to compare with
  const uint64_t need = session_bytes(S, ctx, kv, threads, max_t);
  if (need > limit)
    throw std::runtime_error("a context of " + std::to_string(ctx) + " tokens needs " + std::to_string(need) + " bytes (" + human(need) +
                             ") of " + kv_type_name(kv) + " KV cache and scratch for " + std::to_string(S.num_kv_slots) +
                             " KV layers x " + std::to_string(int64_t(S.num_kv_heads) * S.head_dim) + " KV dims, more than the " +
                             std::to_string(limit) + " bytes (" + human(limit) + ") of memory available; use a smaller context length");
}

void check_threads(double t, const std::string& what) {
  if (!(t >= 0) || t > kMaxThreads || t != std::floor(t)) {
    char v[32];
    std::snprintf(v, sizeof v, "%.15g", t);
    throw std::invalid_argument(what + " must be an integer in [0, " + std::to_string(kMaxThreads) + "] (0 = one per core), got " + v);
  }
}

}  // namespace moe
