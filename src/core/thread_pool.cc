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
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
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
  task_ = &fn;
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  {
    // Bumped under the mutex so a worker between its last check and cv.wait cannot miss it.
    std::lock_guard<std::mutex> lock(sleep_mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  sleep_cv_.notify_all();
  fn(0, num_threads_);
  while (pending_.load(std::memory_order_acquire) != 0) FS_CPU_RELAX();
  task_ = nullptr;
  in_use_.store(false, std::memory_order_release);
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;  // the value at construction: a worker that starts late must not skip the first run()
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
    (*task_)(index, num_threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
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
