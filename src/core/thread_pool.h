// The one thread pool (STYLE.md habit 15): persistent workers for data-parallel kernels.
// run() wakes every worker, runs fn on all threads (the caller is thread 0) and returns when all are done.
// Workers spin briefly before sleeping, so back-to-back kernels in a forward pass do not pay a futex
// wake-up each. run() allocates nothing. One caller at a time (the executor thread); not reentrant.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace fs {

// A non-owning reference to a callable void(int thread_index, int num_threads).
class TaskRef {
 public:
  template <typename F>
  TaskRef(F& f)  // NOLINT: implicit by design
      : obj_(&f), call_([](void* o, int i, int n) { (*static_cast<F*>(o))(i, n); }) {}
  void operator()(int i, int n) const { call_(obj_, i, n); }

 private:
  void* obj_;
  void (*call_)(void*, int, int);
};

class ThreadPool {
 public:
  // num_threads counts the caller; 1 means everything runs inline.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  void run(TaskRef fn);

  // Splits [0, n) into contiguous chunks, one per thread, each a multiple of `grain` (except the last).
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    const int64_t num_grains = (n + grain - 1) / grain;
    if (num_threads_ == 1 || num_grains == 1) {
      f(int64_t{0}, n);
      return;
    }
    auto task = [&](int i, int t) {
      const int64_t g0 = num_grains * i / t, g1 = num_grains * (i + 1) / t;
      const int64_t b = g0 * grain, e = std::min(n, g1 * grain);
      if (b < e) f(b, e);
    };
    run(task);
  }

 private:
  void worker_loop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> in_use_{false};  // set during run(): catches concurrent callers
  std::mutex sleep_mu_;  // guards the sleep path only; generation_ is bumped under it
  std::condition_variable sleep_cv_;
  TaskRef* task_ = nullptr;
};

// Process-wide pool; size from FASTSERVE_THREADS, else the number of online CPUs. Created on first use.
ThreadPool& default_pool();
// Must be called before the first default_pool() to take effect (CLI --threads).
void set_default_pool_threads(int num_threads);

}  // namespace fs
