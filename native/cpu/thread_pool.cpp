// Persistent thread pool: n-1 worker threads + the calling thread, chunks claimed dynamically.
//
// A job [0, n) is cut into n_chunks contiguous chunks (each >= grain items; up to kChunksPerThread per thread).
// Every participant (the caller and each worker) claims chunks from one atomic word until none are left, so a
// worker that the OS has not scheduled yet (the machine is shared, or a core is slower) does not hold up the
// others: whoever is running takes its chunks. The caller returns once all chunks are *done*; it never waits
// for a sleeping worker to check in.
//
// The claim word packs everything a late worker needs to tell jobs apart:
//     state = generation (32 bits) | n_chunks (16 bits) | next_chunk (16 bits)
// A worker that saw generation g claims chunk i with a CAS that only succeeds while the word still says g and
// i < n_chunks. A successful claim means job g is not finished (chunk i is not done), so the job fields (fn, ctx,
// n, chunk) cannot be overwritten until this worker reports chunk i done: reading them after the claim is safe.
// A worker waking up late sees a newer generation and simply joins that job (or finds nothing left).
//
// Waiting: spin a little (decode issues hundreds of short parallel_for calls per token; a futex sleep/wake round
// trip per call would dominate), then block in a futex via std::atomic::wait (idle workers must not burn a shared
// core between tokens). Nothing here allocates after construction.
#include "cpu/thread_pool.h"
#include "format/limits.h"

#include <atomic>
#include <stdexcept>
#include <string>
#include <system_error>
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
// Two chunks per thread: a thread the OS delays leaves at most half its share to the others, and the claims stay
// few. Decode's matmuls are short (an expert's 512 rows of Q4_0 are ~15 us on one core) and each chunk costs two
// atomic operations on lines the threads share plus a restart of the weight stream; measured on the 2-thread
// decode of test/bench (Zen 5 EPYC): 16 chunks per thread 115 tok/s, 4: 154-165, 2: 172-194, 1: 196-202; with a
// competing busy process 4: 109, 2: 107, 1: 102.
constexpr int64_t kChunksPerThread = 2;
constexpr int64_t kMaxChunks = 0xffff;

inline uint32_t gen_of(uint64_t s) { return uint32_t(s >> 32); }
inline uint32_t nchunks_of(uint64_t s) { return uint32_t(s >> 16) & 0xffffu; }
inline uint32_t next_of(uint64_t s) { return uint32_t(s) & 0xffffu; }
}  // namespace

struct ThreadPool::Impl {
  int n_threads = 1;
  std::vector<std::thread> workers;

  // Job description: written by the caller before the release store of `state`, read after a successful claim.
  RangeFn fn = nullptr;
  void* ctx = nullptr;
  int64_t n = 0, chunk = 0;

  alignas(64) std::atomic<uint64_t> state{0};
  alignas(64) std::atomic<uint32_t> done{0};
  alignas(64) std::atomic<bool> stop{false};

  // Claims and runs chunks of generation g until none are left (or a newer job was published).
  void work(uint32_t g, int t) {
    uint64_t s = state.load(std::memory_order_acquire);
    for (;;) {
      if (gen_of(s) != g || next_of(s) >= nchunks_of(s)) return;
      if (!state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const uint32_t i = next_of(s), nch = nchunks_of(s);
      int64_t b = int64_t(i) * chunk, e = b + chunk;
      if (e > n) e = n;
      fn(ctx, b, e, t);
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == nch) done.notify_one();
      s = state.load(std::memory_order_acquire);
    }
  }

  // Wakes every worker with the stop flag set and joins them.
  void shutdown() {
    stop.store(true, std::memory_order_release);
    uint64_t s = state.load();
    state.store(uint64_t(gen_of(s) + 1) << 32, std::memory_order_release);  // a new generation, no chunks
    state.notify_all();
    for (auto& w : workers) w.join();
  }

  void worker_main(int t) {
    uint32_t seen = 0;
    for (;;) {
      uint64_t s = state.load(std::memory_order_acquire);
      for (int i = 0; gen_of(s) == seen && i < kSpinIters; ++i) {
        MOE_CPU_RELAX();
        s = state.load(std::memory_order_acquire);
      }
      while (gen_of(s) == seen) {  // block until the caller publishes a new job (or shuts down)
        state.wait(s, std::memory_order_acquire);
        s = state.load(std::memory_order_acquire);
      }
      seen = gen_of(s);
      if (stop.load(std::memory_order_acquire)) return;
      work(seen, t);
    }
  }
};

ThreadPool::ThreadPool(int n_threads) {
  // Checked where a thread count enters the engine: 99999999 threads must be "threads must be in ..." and not
  // EAGAIN from the 30000th pthread_create.
  if (n_threads > kMaxThreads)
    throw std::invalid_argument("threads must be an integer in [0, " + std::to_string(kMaxThreads) + "] (0 = one per core), got " +
                                std::to_string(n_threads));
  if (n_threads <= 0) n_threads = int(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  if (n_threads > kMaxThreads) n_threads = kMaxThreads;
  impl_ = new Impl;
  impl_->n_threads = n_threads;
  impl_->workers.reserve(size_t(n_threads - 1));
  try {
    for (int t = 1; t < n_threads; ++t) impl_->workers.emplace_back([this, t] { impl_->worker_main(t); });
  } catch (const std::system_error& e) {
    // the system refused a thread (ulimit -u, memory): join the ones started, then say what was asked
    const size_t started = impl_->workers.size();
    impl_->shutdown();
    delete impl_;
    impl_ = nullptr;
    throw std::runtime_error("cannot start " + std::to_string(n_threads) + " threads (the system refused thread " +
                             std::to_string(started + 1) + ": " + e.what() + "); use fewer threads");
  }
}

ThreadPool::~ThreadPool() {
  impl_->shutdown();
  delete impl_;
}

int ThreadPool::size() const { return impl_->n_threads; }

void ThreadPool::parallel_for(int64_t n, int64_t grain, RangeFn fn, void* ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  Impl& p = *impl_;
  // Chunks of at least `grain` items (floor, so ceil(n / n_chunks) >= grain), two per thread for balance.
  int64_t nch = n / grain;
  const int64_t cap = p.n_threads > 1 ? p.n_threads * kChunksPerThread : 1;
  if (nch > cap) nch = cap;
  if (nch > kMaxChunks) nch = kMaxChunks;
  if (nch <= 1) {  // not worth waking anyone
    fn(ctx, 0, n, 0);
    return;
  }
  p.fn = fn;
  p.ctx = ctx;
  p.n = n;
  p.chunk = (n + nch - 1) / nch;
  nch = (n + p.chunk - 1) / p.chunk;  // rounding up the chunk size may leave fewer non-empty chunks
  p.done.store(0, std::memory_order_relaxed);
  const uint32_t g = gen_of(p.state.load(std::memory_order_relaxed)) + 1;
  p.state.store(uint64_t(g) << 32 | uint64_t(nch) << 16, std::memory_order_release);
  p.state.notify_all();
  p.work(g, 0);
  uint32_t d = p.done.load(std::memory_order_acquire);
  for (int i = 0; d != uint32_t(nch) && i < kSpinIters; ++i) {
    MOE_CPU_RELAX();
    d = p.done.load(std::memory_order_acquire);
  }
  while (d != uint32_t(nch)) {
    p.done.wait(d, std::memory_order_acquire);
    d = p.done.load(std::memory_order_acquire);
  }
}

}  // namespace moe
