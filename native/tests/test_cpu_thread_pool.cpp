// ThreadPool: every index covered exactly once, chunk sizes respect `grain`, thread indices are in range,
// and the pool survives many back-to-back jobs (the decode loop pattern) and creation/destruction.
#include <atomic>
#include <thread>
#include <vector>

#include "cpu/thread_pool.h"
#include "tests/test.h"

using moe::ThreadPool;
#define MOE_TEST_RELAX() std::this_thread::yield()

TEST(cpu_thread_pool_covers_each_index_once) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1000, 12345}) {
      for (int64_t grain : {1, 4, 100}) {
        std::vector<std::atomic<int>> hits(size_t(n > 0 ? n : 1));
        for (auto& h : hits) h.store(0);
        std::atomic<int> bad{0}, chunks{0};
        std::atomic<int> busy[8];
        for (auto& x : busy) x.store(0);
        pool.run(n, grain, [&](int64_t b, int64_t e, int t) {
          if (t < 0 || t >= threads || b >= e || b < 0 || e > n) { bad++; return; }
          if (busy[t].exchange(1) != 0) bad++;  // two chunks running at once with the same thread index
          // every chunk but the last (which takes the remainder) has at least `grain` items, unless n < grain
          if (e - b < grain && e != n && n >= grain) bad++;
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
          chunks++;
          busy[t].store(0);
        });
        CHECK(bad.load() == 0);
        CHECK(chunks.load() <= 4 * threads);
        int wrong = 0;
        for (int64_t i = 0; i < n; ++i) wrong += hits[size_t(i)].load() != 1;
        CHECK(wrong == 0);
      }
    }
  }
}

TEST(cpu_thread_pool_repeated_use) {
  // 20000 tiny jobs in a row: exercises the spin path and generation counter; the sum must be exact.
  ThreadPool pool(3);
  std::vector<int64_t> partial(3, 0);
  int64_t total = 0;
  for (int it = 0; it < 20000; ++it) {
    for (auto& p : partial) p = 0;
    const int64_t n = 1 + it % 97;
    pool.run(n, 1, [&](int64_t b, int64_t e, int t) {
      int64_t s = 0;
      for (int64_t i = b; i < e; ++i) s += i;
      partial[size_t(t)] += s;  // one chunk per thread: no race
    });
    int64_t s = partial[0] + partial[1] + partial[2];
    if (s != n * (n - 1) / 2) { CHECK(s == n * (n - 1) / 2); break; }
    total += s;
  }
  CHECK(total > 0);
}

TEST(cpu_thread_pool_blocks_then_wakes) {
  // Workers fall asleep (futex) after spinning; a job after a pause must still get done, and a sleeping worker
  // must wake up and help: with chunks that wait for each other, the job only finishes if both threads run.
  ThreadPool pool(2);
  for (int it = 0; it < 3; ++it) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::atomic<int> seen_mask{0}, arrived{0};
    pool.run(2, 1, [&](int64_t, int64_t, int t) {
      seen_mask |= 1 << t;
      arrived++;
      // spin (bounded) until the other chunk has started too: the two chunks must run concurrently
      for (int i = 0; i < 200000000 && arrived.load() < 2; ++i) MOE_TEST_RELAX();
    });
    CHECK(seen_mask.load() == 3);
  }
}

TEST(cpu_thread_pool_create_destroy) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(1 + i % 4);
    std::atomic<int64_t> s{0};
    pool.run(100, 1, [&](int64_t b, int64_t e, int) { for (int64_t k = b; k < e; ++k) s += k; });
    CHECK(s.load() == 4950);
  }
  ThreadPool dflt(0);  // hardware_concurrency
  CHECK(dflt.size() >= 1);
}

TEST(cpu_thread_pool_raw_parallel_for) {
  ThreadPool pool(2);
  int64_t sum[2] = {0, 0};
  pool.parallel_for(1000, 10, [](void* ctx, int64_t b, int64_t e, int t) {
    auto* s = static_cast<int64_t*>(ctx);
    for (int64_t i = b; i < e; ++i) s[t] += i;
  }, sum);
  CHECK(sum[0] + sum[1] == 499500);
}

TEST(cpu_thread_pool_oversubscribed_stress) {
  // More threads than cores: workers are often descheduled and wake up after their job is finished, which is
  // exactly when a stale claim could run a chunk of the wrong job. Every index must be hit exactly once.
  ThreadPool pool(5);
  std::vector<std::atomic<int>> hits(256);
  int wrong = 0;
  for (int it = 0; it < 20000 && wrong == 0; ++it) {
    const int64_t n = 1 + (it * 37) % 256, grain = 1 + it % 5;
    for (int64_t i = 0; i < n; ++i) hits[size_t(i)].store(0, std::memory_order_relaxed);
    pool.run(n, grain, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < n; ++i) wrong += hits[size_t(i)].load(std::memory_order_relaxed) != 1;
  }
  CHECK(wrong == 0);
}
