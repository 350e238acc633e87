#include "core/thread_pool.h"

#include "core/check.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>

#if defined(__x86_64__)
#include <immintrin.h>
#define FS_CPU_RELAX() _mm_pause()
#else
#define FS_CPU_RELAX() \
  do {                 \
  } while (0)
#endif

namespace fs {
namespace {
constexpr int kSpinIterations = 20000;  // ~50-100 us of spinning before a worker sleeps
}

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    generation_.fetch_add(1);
  }
  sleep_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run(TaskRef fn) {
  // One caller at a time: two threads sharing a pool would mix up their tasks.
  FS_CHECK(!in_use_.exchange(true, std::memory_order_acquire),
           "ThreadPool::run called concurrently from two threads");
  if (num_threads_ == 1) {
    fn(0, 1);
    in_use_.store(false, std::memory_order_release);
    return;
  }
  task_.store(&fn, std::memory_order_relaxed);
  num_done_.store(0, std::memory_order_relaxed);
  // Opens the indices 1..n-1 for claiming; publishes task_ and num_done_ to whoever claims one.
  next_index_.store(1, std::memory_order_release);
  {
    // Bumped under the mutex so a worker between its last check and cv.wait cannot miss it.
    std::lock_guard<std::mutex> lock(sleep_mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  sleep_cv_.notify_all();
  fn(0, num_threads_);
  // Indices no worker has claimed yet run here, so a descheduled worker costs nothing.
  int num_run_here = 1;
  for (int i; (i = next_index_.fetch_add(1, std::memory_order_acq_rel)) < num_threads_;) {
    fn(i, num_threads_);
    ++num_run_here;
  }
  // All indices are claimed now; wait for those the workers took.
  while (num_done_.load(std::memory_order_acquire) != num_threads_ - num_run_here) FS_CPU_RELAX();
  in_use_.store(false, std::memory_order_release);
}

void ThreadPool::worker_loop() {
  // The value at construction: a worker that starts late must not skip the first run().
  uint64_t seen = 0;
  for (;;) {
    uint64_t g;
    int spins = 0;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < kSpinIterations) {
        FS_CPU_RELAX();
      } else {
        std::unique_lock<std::mutex> lock(sleep_mu_);
        sleep_cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
    }
    seen = g;
    if (stop_.load()) return;
    // A worker that wakes after the caller claimed every index gets i >= n and goes back to
    // waiting; the counter is reset by the next run() before it opens.
    for (int i; (i = next_index_.fetch_add(1, std::memory_order_acq_rel)) < num_threads_;) {
      (*task_.load(std::memory_order_relaxed))(i, num_threads_);
      num_done_.fetch_add(1, std::memory_order_release);
    }
  }
}

namespace {
int g_requested_threads = 0;
}

void set_default_pool_threads(int num_threads) { g_requested_threads = num_threads; }

ThreadPool& default_pool() {
  static std::unique_ptr<ThreadPool> pool = [] {
    int n = g_requested_threads;
    if (n <= 0) {
      if (const char* env = std::getenv("FASTSERVE_THREADS")) n = std::atoi(env);
    }
    if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return std::make_unique<ThreadPool>(n);
  }();
  return *pool;
}

}  // namespace fs
