// A fixed pool of worker threads for data-parallel loops. One pool per loaded model; the calling thread
// takes part in the work. parallel_for never allocates (safe in the token loop).
#pragma once
#include <cstdint>

namespace moe {

class ThreadPool {
 public:
  // n_threads <= 0: std::thread::hardware_concurrency(). Over kMaxThreads (1024, format/limits.h) throws
  // std::invalid_argument; a thread the system refuses throws std::runtime_error (no thread is left running).
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  int size() const;

  // Calls fn(ctx, begin, end, thread_index) over [0, n) split into contiguous chunks of at least `grain`
  // items (up to two per thread, claimed dynamically so a thread the OS delays does not hold the others up);
  // returns when all chunks are done. thread_index (0 = the caller) names the executing thread: calls running
  // at the same time have distinct indices, so it can index per-thread scratch; one thread may run several
  // chunks. Not reentrant (do not nest parallel_for).
  using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end, int thread_index);
  void parallel_for(int64_t n, int64_t grain, RangeFn fn, void* ctx);

  // Convenience wrapper for lambdas: pool.run(n, grain, [&](int64_t b, int64_t e, int t){...}).
  template <class F>
  void run(int64_t n, int64_t grain, F&& f) {
    parallel_for(n, grain, [](void* c, int64_t b, int64_t e, int t) { (*static_cast<F*>(c))(b, e, t); }, &f);
  }

 private:
  struct Impl;
  Impl* impl_;
};

// Ranges laid end to end (item i owns units [end(i-1), end(i)), end(-1) = 0), as batched jobs cut one parallel_for
// over several products: fn(i, first, last) for each piece of [a, b), in item-local units.
template <class End, class F>
void for_each_piece(int n, End end, int64_t a, int64_t b, F&& fn) {
  int i = 0;
  while (i < n && end(i) <= a) ++i;
  for (; i < n && a < b; ++i) {
    const int64_t first = i ? end(i - 1) : 0, last = b < end(i) ? b : end(i);
    fn(i, a - first, last - first);
    a = last;
  }
}

}  // namespace moe
