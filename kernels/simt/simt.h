// SIMT emulation on the host: runs CUDA kernel bodies (kernels/*.cuh) on the CPU so tests can execute them on a
// machine without a GPU. It needs correctness, not speed.
//
// Model:
//   - a launch runs grid.x*grid.y*grid.z blocks; blocks are independent, so they are split over `workers` OS
//     threads (default 1: deterministic and kind to a shared machine);
//   - inside a block every CUDA thread is a cooperative fiber (ucontext) on the worker's OS thread. A fiber runs
//     until it reaches a barrier (__syncthreads, __syncwarp, a warp shuffle) or returns; a barrier releases when
//     every *live* thread of its scope (block, or warp of 32 consecutive threads) has arrived;
//   - warp shuffles are lockstep: lane L writes its value to a per-warp slot, the warp meets at a barrier, then
//     reads the slot of its source lane. Slots are double-buffered by shuffle parity so one barrier per shuffle
//     suffices (a lane can write buffer p again only after every lane has passed the barrier that follows its
//     read of buffer p);
//   - `__shared__` is `static thread_local`: all fibers of a block share one OS thread, hence one copy; blocks on
//     other workers get their own. Dynamic shared memory (extern __shared__) is SIMT_DYNAMIC_SHARED(T, name);
//   - atomics are std::atomic_ref, so they are correct across workers too;
//   - a barrier that can never release (divergent __syncthreads) is reported as an exception, not a hang.
// Switching fibers is most of the emulator's time (a barrier or shuffle is one switch per thread). glibc's
// swapcontext saves and restores the signal mask with a system call each time (~80% of a whole-model emu run in
// perf); on x86-64 the switch is instead 16 instructions below (callee-saved registers, MXCSR and the x87 control
// word: what the SysV ABI says survives a call), and ucontext is kept only where that is not available. Fiber
// stacks are kept per OS thread across launches (a launch used to map and unmap 128 KiB per thread).
#pragma once
#include <ucontext.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

// ---- CUDA vector types and builtin index types ----
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
constexpr int warpSize = 32;

#if defined(__x86_64__) && !defined(SIMT_USE_UCONTEXT)
#define SIMT_FAST_SWITCH 1
// moe_simt_switch(&save, to): pushes the callee-saved registers and the FP control words on the current stack,
// stores the stack pointer in *save, loads `to` and pops the same from there. Weak: every file including this
// header emits it, the linker keeps one.
extern "C" void moe_simt_switch(void** save_sp, void* to_sp);
asm(R"(
  .text
  .weak moe_simt_switch
  .type moe_simt_switch,@function
moe_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size moe_simt_switch, .-moe_simt_switch
)");
#endif

namespace simt {

constexpr int kWarp = 32;
constexpr size_t kFiberStack = 128 * 1024;  // bytes per fiber; kernels keep small frames

namespace detail {

enum class Wait : uint8_t { None, Block, Warp, Failed };  // Failed: stopped by fail(), never resumed

struct Fiber {
#ifdef SIMT_FAST_SWITCH
  void* sp = nullptr;   // saved stack pointer while switched out
#else
  ucontext_t ctx;
#endif
  uint3 tid;
  int lane = 0, warp = 0;
  unsigned parity = 0;  // which shuffle slot buffer the next shuffle uses
  unsigned mparity = 0; // the same for the next mma
  Wait wait = Wait::None;
  bool done = false;
};

struct Block {
  uint3 bid{0, 0, 0};
  dim3 bdim, gdim;
  std::vector<Fiber> fibers;
  int alive = 0, block_arrived = 0;
  std::vector<int> warp_alive, warp_arrived;
  std::vector<uint64_t> slots;      // [nwarps][2][32] shuffle exchange
  std::vector<uint32_t> mslots;     // [nwarps][2][32][10] mma.sync fragments (4 A words, 2 B words, 4 C floats)
  std::vector<unsigned char> dyn;   // dynamic shared memory
#ifdef SIMT_FAST_SWITCH
  void* sched_sp = nullptr;
#else
  ucontext_t sched;
#endif
  const std::function<void()>* body = nullptr;
  std::string error;
};

inline thread_local Block* g_block = nullptr;
inline thread_local Fiber* g_fiber = nullptr;

inline Block& cur_block() { return *g_block; }
inline Fiber& cur_fiber() { return *g_fiber; }

#ifdef SIMT_FAST_SWITCH
inline void yield() { moe_simt_switch(&g_fiber->sp, g_block->sched_sp); }
#else
inline void yield() { swapcontext(&g_fiber->ctx, &g_block->sched); }
#endif

inline void release_block(Block& b) {
  if (b.block_arrived == 0 || b.block_arrived < b.alive) return;
  b.block_arrived = 0;
  for (auto& f : b.fibers) if (f.wait == Wait::Block) f.wait = Wait::None;
}
inline void release_warp(Block& b, int w) {
  if (b.warp_arrived[w] == 0 || b.warp_arrived[w] < b.warp_alive[w]) return;
  b.warp_arrived[w] = 0;
  size_t lo = size_t(w) * kWarp, hi = std::min(b.fibers.size(), lo + kWarp);
  for (size_t i = lo; i < hi; ++i) if (b.fibers[i].wait == Wait::Warp) b.fibers[i].wait = Wait::None;
}

// A kernel misuse found inside a fiber (which cannot throw: nothing unwinds across a fiber switch): the block stops
// and the launch throws `msg` from the host.
inline void fail(const std::string& msg) {
  Block& b = *g_block; Fiber& f = *g_fiber;
  if (b.error.empty()) b.error = msg;
  f.wait = Wait::Failed;
  yield();
}

inline void block_barrier() {
  Block& b = *g_block; Fiber& f = *g_fiber;
  ++b.block_arrived;
  f.wait = Wait::Block;
  release_block(b);
  if (f.wait != Wait::None) yield();
}
inline void warp_barrier() {
  Block& b = *g_block; Fiber& f = *g_fiber;
  ++b.warp_arrived[f.warp];
  f.wait = Wait::Warp;
  release_warp(b, f.warp);
  if (f.wait != Wait::None) yield();
}

// Lockstep shuffle: every live lane of the warp must call it (as in CUDA with a full mask).
template <class T, class SrcLane>
inline T shuffle(T v, SrcLane src_of) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "simt: shuffle of a type wider than 8 bytes");
  Block& b = *g_block; Fiber& f = *g_fiber;
  uint64_t* slot = &b.slots[(size_t(f.warp) * 2 + f.parity) * kWarp];
  f.parity ^= 1u;
  uint64_t bits = 0; std::memcpy(&bits, &v, sizeof(T)); slot[f.lane] = bits;
  warp_barrier();
  int src = src_of(f.lane);
  // Reading outside the warp's live lanes returns the caller's own value (CUDA leaves it undefined).
  size_t live = std::min<size_t>(kWarp, b.fibers.size() - size_t(f.warp) * kWarp);
  if (src < 0 || size_t(src) >= live) return v;
  T r; std::memcpy(&r, &slot[src], sizeof(T));
  return r;
}

// Votes: every live lane publishes its predicate (one lockstep exchange, as a shuffle), then reads all of them.
inline unsigned ballot(bool pred) {
  Block& b = *g_block; Fiber& f = *g_fiber;
  uint64_t* slot = &b.slots[(size_t(f.warp) * 2 + f.parity) * kWarp];
  f.parity ^= 1u;
  slot[f.lane] = pred ? 1 : 0;
  warp_barrier();
  const size_t live = std::min<size_t>(kWarp, b.fibers.size() - size_t(f.warp) * kWarp);
  unsigned m = 0;
  for (size_t l = 0; l < live; ++l) if (slot[l]) m |= 1u << l;
  return m;
}
inline unsigned live_mask() {
  const Block& b = *g_block; const Fiber& f = *g_fiber;
  const size_t live = std::min<size_t>(kWarp, b.fibers.size() - size_t(f.warp) * kWarp);
  return live == 32 ? 0xffffffffu : (1u << live) - 1u;
}

inline float bf16_lo(uint32_t w) { uint32_t u = w << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline float bf16_hi(uint32_t w) { uint32_t u = w & 0xffff0000u; float f; std::memcpy(&f, &u, 4); return f; }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: D[16x8] = A[16x16] · B[16x8] + C, one warp, with the PTX ISA's
// fragment layouts (g = lane / 4, t = lane % 4; the lower-indexed bf16 of a pair in the low half of its word):
//   A  a0 = (A[g][2t], A[g][2t+1])  a1 = (A[g+8][2t], ..)  a2 = (A[g][2t+8], ..)  a3 = (A[g+8][2t+8], ..)
//   B  b0 = (B[2t][g], B[2t+1][g])  b1 = (B[2t+8][g], B[2t+9][g])
//   C, D  c0, c1 = C[g][2t], C[g][2t+1]   c2, c3 = C[g+8][2t], C[g+8][2t+1]
// Every lane publishes its fragments, the warp meets, and each lane computes its four outputs in f32 (products of
// bf16 values are exact in f32; sums in k order). All 32 lanes must be live, as on the device.
inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t bb[2], const float c[4]) {
  Block& b = *g_block; Fiber& f = *g_fiber;
  if (b.fibers.size() < size_t(f.warp + 1) * kWarp || b.warp_alive[f.warp] != kWarp) fail("simt: mma.sync needs the warp's 32 lanes");
  uint32_t* base = &b.mslots[(size_t(f.warp) * 2 + f.mparity) * kWarp * 10];
  f.mparity ^= 1u;
  uint32_t* mine = base + size_t(f.lane) * 10;
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  mine[4] = bb[0]; mine[5] = bb[1];
  std::memcpy(mine + 6, c, 16);
  warp_barrier();
  auto A = [&](int r, int k) {  // element (r, k) of the 16x16 A
    const uint32_t* l = base + size_t((r & 7) * 4 + ((k & 7) >> 1)) * 10;
    const uint32_t w = l[(r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
    return (k & 1) ? bf16_hi(w) : bf16_lo(w);
  };
  auto B = [&](int k, int n) {  // element (k, n) of the 16x8 B
    const uint32_t* l = base + size_t(n * 4 + ((k & 7) >> 1)) * 10;
    const uint32_t w = l[4 + (k >= 8 ? 1 : 0)];
    return (k & 1) ? bf16_hi(w) : bf16_lo(w);
  };
  const int g = f.lane >> 2, t = f.lane & 3;
  for (int i = 0; i < 4; ++i) {
    const int r = g + (i >= 2 ? 8 : 0), n = 2 * t + (i & 1);
    float s = 0.0f;
    for (int k = 0; k < 16; ++k) s += A(r, k) * B(k, n);
    d[i] = c[i] + s;
  }
  warp_barrier();  // every lane has read the fragments before any lane's next mma may overwrite this buffer's slots
}

inline void fiber_entry() {
  Block& b = *g_block; Fiber& f = *g_fiber;
  (*b.body)();
  f.done = true;
  --b.alive; --b.warp_alive[f.warp];
  release_warp(b, f.warp);
  release_block(b);
#ifdef SIMT_FAST_SWITCH
  yield();  // never resumed: the scheduler skips done fibers
  std::abort();
#endif
  // (ucontext) returning resumes uc_link == &b.sched
}

// Fiber stacks of this OS thread, grown to the largest block seen and reused by every later block and launch.
inline std::vector<std::unique_ptr<char[]>>& thread_stacks() {
  static thread_local std::vector<std::unique_ptr<char[]>> stacks;
  return stacks;
}

// Runs one block to completion on the calling OS thread.
inline void run_block(Block& b) {
  std::vector<std::unique_ptr<char[]>>& stacks = thread_stacks();
  size_t n = size_t(b.bdim.x) * b.bdim.y * b.bdim.z, nw = (n + kWarp - 1) / kWarp;
  b.fibers.assign(n, Fiber{});
  b.alive = int(n); b.block_arrived = 0;
  b.warp_alive.assign(nw, 0); b.warp_arrived.assign(nw, 0);
  b.slots.assign(nw * 2 * kWarp, 0);
  b.mslots.assign(nw * 2 * kWarp * 10, 0);
  while (stacks.size() < n) stacks.emplace_back(new char[kFiberStack]);
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    // Linear thread id = x + y*bx + z*bx*by; warps are consecutive groups of 32 linear ids (as on the device).
    f.tid = {unsigned(i % b.bdim.x), unsigned(i / b.bdim.x % b.bdim.y), unsigned(i / (size_t(b.bdim.x) * b.bdim.y))};
    f.lane = int(i % kWarp); f.warp = int(i / kWarp);
    ++b.warp_alive[f.warp];
#ifdef SIMT_FAST_SWITCH
    // The frame moe_simt_switch pops, from the 16-aligned top down: a null return address for fiber_entry (it
    // never returns), fiber_entry as the address `ret` jumps to (leaving rsp ≡ 8 mod 16, as after a call), six
    // zeroed callee-saved registers, then this thread's MXCSR and x87 control word.
    auto* top = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(stacks[i].get()) + kFiberStack) & ~uintptr_t(15));
    top[-1] = 0;
    top[-2] = reinterpret_cast<uint64_t>(&fiber_entry);
    for (int r = 3; r <= 8; ++r) top[-r] = 0;
    uint32_t mxcsr; uint16_t fpcw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpcw));
    top[-9] = uint64_t(mxcsr) | (uint64_t(fpcw) << 32);
    f.sp = &top[-9];
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stacks[i].get();
    f.ctx.uc_stack.ss_size = kFiberStack;
    f.ctx.uc_link = &b.sched;
    makecontext(&f.ctx, fiber_entry, 0);
#endif
  }
  g_block = &b;
  while (b.alive > 0 && b.error.empty()) {
    bool ran = false;
    for (auto& f : b.fibers) {
      if (f.done || f.wait != Wait::None) continue;
      ran = true;
      g_fiber = &f;
#ifdef SIMT_FAST_SWITCH
      moe_simt_switch(&b.sched_sp, f.sp);
#else
      swapcontext(&b.sched, &f.ctx);
#endif
    }
    if (!ran && b.error.empty()) {  // every live thread waits at a barrier that cannot release: divergent barrier
      b.error = "simt: deadlock in block (" + std::to_string(b.bid.x) + "," + std::to_string(b.bid.y) + "," +
                std::to_string(b.bid.z) + "): a barrier or shuffle was not reached by every live thread";
      break;
    }
  }
  g_block = nullptr; g_fiber = nullptr;
}

inline int& workers_setting() { static int w = 1; return w; }

}  // namespace detail

// Number of OS threads that run blocks in parallel (default 1).
inline void set_workers(int n) { detail::workers_setting() = std::max(1, n); }

// The <<<grid, block, shared_bytes>>> equivalent: simt::launch(grid, block, shared_bytes, kernel, args...).
template <class... P, class... A>
void launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "simt::launch: wrong number of kernel arguments");
  size_t nthreads = size_t(block.x) * block.y * block.z;
  if (nthreads == 0 || nthreads > 1024) throw std::runtime_error("simt::launch: block must have 1..1024 threads");
  size_t nblocks = size_t(grid.x) * grid.y * grid.z;
  if (nblocks == 0) return;
  std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(args)...);
  const std::function<void()> body = [&] { std::apply(kernel, params); };
  int nworkers = int(std::min<size_t>(size_t(detail::workers_setting()), nblocks));
  std::vector<std::string> errors(static_cast<size_t>(nworkers));
  auto work = [&](int wi) {
    detail::Block b;
    b.bdim = block; b.gdim = dim3(grid.x, grid.y, grid.z); b.body = &body;
    b.dyn.assign(shared_bytes + 16, 0);
    for (size_t i = size_t(wi); i < nblocks; i += size_t(nworkers)) {
      b.bid = {unsigned(i % grid.x), unsigned(i / grid.x % grid.y), unsigned(i / (size_t(grid.x) * grid.y))};
      detail::run_block(b);
      if (!b.error.empty()) { errors[size_t(wi)] = b.error; return; }
    }
  };
  if (nworkers == 1) work(0);
  else {
    std::vector<std::thread> ts;
    for (int w = 0; w < nworkers; ++w) ts.emplace_back(work, w);
    for (auto& t : ts) t.join();
  }
  for (auto& e : errors) if (!e.empty()) throw std::runtime_error(e);
}

inline void* dynamic_shared() {
  auto p = reinterpret_cast<uintptr_t>(detail::g_block->dyn.data());
  return reinterpret_cast<void*>((p + 15) & ~uintptr_t(15));
}

}  // namespace simt

// ---- CUDA builtins as seen by kernel bodies ----
#define threadIdx (::simt::detail::cur_fiber().tid)
#define blockIdx (::simt::detail::cur_block().bid)
#define blockDim (::simt::detail::cur_block().bdim)
#define gridDim (::simt::detail::cur_block().gdim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define SIMT_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::simt::dynamic_shared())

inline void __syncthreads() { ::simt::detail::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::simt::detail::warp_barrier(); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  return ::simt::detail::shuffle(v, [&](int lane) { return ((lane ^ lane_mask) & (width - 1)) | (lane & ~(width - 1)); });
}
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  return ::simt::detail::shuffle(v, [&](int lane) {
    int in_seg = (lane & (width - 1)) + int(delta);  // beyond the segment: keep own value (CUDA semantics)
    return in_seg >= width ? lane : lane + int(delta);
  });
}
template <class T> inline T __shfl_sync(unsigned, T v, int src_lane, int width = 32) {
  return ::simt::detail::shuffle(v, [&](int lane) { return (lane & ~(width - 1)) + (src_lane & (width - 1)); });
}
inline unsigned __ballot_sync(unsigned, bool pred) { return ::simt::detail::ballot(pred); }
inline bool __any_sync(unsigned, bool pred) { return ::simt::detail::ballot(pred) != 0; }
inline bool __all_sync(unsigned, bool pred) { return ::simt::detail::ballot(pred) == ::simt::detail::live_mask(); }
template <class T> inline T atomicAdd(T* addr, T v) { return std::atomic_ref<T>(*addr).fetch_add(v); }
template <class T> inline T atomicMax(T* addr, T v) {
  std::atomic_ref<T> a(*addr); T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <class T> inline T __ldg(const T* p) { return *p; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
