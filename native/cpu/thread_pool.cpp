// Persistent thread pool: n-1 worker threads + the calling thread.
//
// Protocol (one job at a time; parallel_for is not reentrant):
//   caller: writes the job (fn, ctx, n, chunk), sets pending = n_workers, bumps `generation` (release),
//           wakes sleepers, runs chunk 0 itself, then waits until pending == 0.
//   worker: waits until `generation` changes (spin a little, then block in a futex via std::atomic::wait),
//           runs its chunk (index = worker id + 1) if any, decrements pending (the last one wakes the caller).
// Spinning first matters for decode: one token issues hundreds of short parallel_for calls, and a futex
// sleep/wake round trip (~5-20 us) per call would dominate. Blocking afterwards matters because the machine is
// shared: idle workers must not burn a core between tokens.
// Nothing here allocates after construction.
#include "cpu/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define MOE_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define MOE_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define MOE_CPU_RELAX() ((void)0)
#endif

namespace moe {

namespace {
// ~2000 pauses is ~10-100 us depending on the CPU's pause latency: longer than the gap between the matmuls of
// one token, much shorter than the gap between tokens of a slow consumer.
constexpr int kSpinIters = 2000;
}  // namespace

struct ThreadPool::Impl {
  int n_threads = 1;
  std::vector<std::thread> workers;

  // Job description, written by the caller before `generation` is bumped (release) and read by workers after
  // they observe the new generation (acquire).
  RangeFn fn = nullptr;
  void* ctx = nullptr;
  int64_t n = 0, chunk = 0;

  alignas(64) std::atomic<uint64_t> generation{0};
  alignas(64) std::atomic<int> pending{0};
  alignas(64) std::atomic<bool> stop{false};

  void run_chunk(int t) const {
    int64_t b = int64_t(t) * chunk, e = b + chunk;
    if (e > n) e = n;
    if (b < e) fn(ctx, b, e, t);
  }

  void worker_main(int t) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      for (int i = 0; g == seen && i < kSpinIters; ++i) {
        MOE_CPU_RELAX();
        g = generation.load(std::memory_order_acquire);
      }
      while (g == seen) {  // block until the caller publishes a new job (or shutdown)
        generation.wait(seen, std::memory_order_acquire);
        g = generation.load(std::memory_order_acquire);
      }
      seen = g;
      if (stop.load(std::memory_order_acquire)) return;
      run_chunk(t);
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) pending.notify_one();
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : impl_(new Impl) {
  if (n_threads <= 0) n_threads = int(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  impl_->n_threads = n_threads;
  impl_->workers.reserve(size_t(n_threads - 1));
  for (int t = 1; t < n_threads; ++t) impl_->workers.emplace_back([this, t] { impl_->worker_main(t); });
}

ThreadPool::~ThreadPool() {
  impl_->stop.store(true, std::memory_order_release);
  impl_->generation.fetch_add(1, std::memory_order_acq_rel);
  impl_->generation.notify_all();
  for (auto& w : impl_->workers) w.join();
  delete impl_;
}

int ThreadPool::size() const { return impl_->n_threads; }

void ThreadPool::parallel_for(int64_t n, int64_t grain, RangeFn fn, void* ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  Impl& p = *impl_;
  // Number of chunks: one per thread, but never smaller than `grain` items (floor, so ceil(n/nt) >= grain).
  int64_t max_chunks = n / grain;
  int64_t nt = max_chunks < p.n_threads ? max_chunks : p.n_threads;
  if (nt <= 1) {  // not worth waking anyone
    fn(ctx, 0, n, 0);
    return;
  }
  p.fn = fn;
  p.ctx = ctx;
  p.n = n;
  p.chunk = (n + nt - 1) / nt;
  int nw = int(p.workers.size());
  p.pending.store(nw, std::memory_order_relaxed);
  p.generation.fetch_add(1, std::memory_order_release);
  p.generation.notify_all();
  p.run_chunk(0);
  int left = p.pending.load(std::memory_order_acquire);
  for (int i = 0; left != 0 && i < kSpinIters; ++i) {
    MOE_CPU_RELAX();
    left = p.pending.load(std::memory_order_acquire);
  }
  while (left != 0) {
    p.pending.wait(left, std::memory_order_acquire);
    left = p.pending.load(std::memory_order_acquire);
  }
}

}  // namespace moe
