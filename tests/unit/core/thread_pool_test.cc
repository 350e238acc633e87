#include "core/thread_pool.h"

#include <atomic>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

namespace fs {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEveryIndexExactlyOnce) {
  ThreadPool pool(4);
  for (int64_t n : {1, 7, 64, 1000, 4097}) {
    std::vector<std::atomic<int>> hits(n);
    for (int rep = 0; rep < 50; ++rep) {
      pool.parallel_for(n, 8, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
    }
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 50) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPoolTest, ParallelForDynamicCoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 64}) {
        std::vector<std::atomic<int>> hits(n);
        for (int rep = 0; rep < 20; ++rep) {
          pool.parallel_for_dynamic(n, grain, [&](int64_t b, int64_t e) {
            EXPECT_LE(e - b, grain);
            for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
          });
        }
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 20) << "n=" << n << " i=" << i;
      }
    }
  }
}

// More pool threads than cores: most run() calls find some worker descheduled, and the caller then
// runs that index itself. Every index still runs exactly once per call.
TEST(ThreadPoolTest, RunCoversEveryIndexWhenWorkersAreLate) {
  ThreadPool pool(8);
  std::vector<std::atomic<int>> hits(8);
  for (int rep = 0; rep < 2000; ++rep) {
    auto task = [&](int i, int n) {
      EXPECT_EQ(n, 8);
      hits[i].fetch_add(1);
    };
    pool.run(task);
  }
  for (int i = 0; i < 8; ++i) EXPECT_EQ(hits[i].load(), 2000) << i;
}

TEST(ThreadPoolTest, RunGivesEachThreadItsIndex) {
  ThreadPool pool(3);
  std::vector<int> seen(3, 0);
  auto task = [&](int i, int n) {
    EXPECT_EQ(n, 3);
    seen[i] += 1;
  };
  pool.run(task);
  EXPECT_EQ(seen, (std::vector<int>{1, 1, 1}));
}

TEST(ThreadPoolTest, SingleThreadRunsInline) {
  ThreadPool pool(1);
  int64_t sum = 0;
  pool.parallel_for(100, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum, 4950);
}

}  // namespace
}  // namespace fs
