// The one thread pool (STYLE.md habit 15): persistent workers for data-parallel kernels.
// run(fn) calls fn(i, n) once for every thread index i in [0, n) and returns when all are done: the
// caller runs index 0, workers claim the other indices from a shared counter, and the caller runs
// any index no worker has claimed by the time it is done with its own. So a worker that is asleep
// or preempted (a shared machine) does not hold up the caller unless it has already started.
// Workers spin briefly before sleeping, so back-to-back kernels in a forward pass do not pay a
// futex wake-up each. run() allocates nothing. One caller at a time (the executor thread); not
// reentrant.
#pragma once

#include <algorithm>
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

  // Splits [0, n) into contiguous chunks, one per thread index, each a multiple of `grain` (except
  // the last).
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

  // Hands out grains of [0, n) (each `grain` long, the last shorter) from a shared counter, so a
  // thread that is preempted or finishes early takes fewer and the others take over its share.
  // f(begin, end) is called once per grain, on any thread; which thread runs a grain varies, so f
  // must not depend on it.
  template <typename F>
  void parallel_for_dynamic(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    if (num_threads_ == 1 || n <= grain) {
      for (int64_t b = 0; b < n; b += grain) f(b, std::min(n, b + grain));
      return;
    }
    std::atomic<int64_t> next{0};
    auto task = [&](int, int) {
      for (;;) {
        const int64_t b = next.fetch_add(grain, std::memory_order_relaxed);
        if (b >= n) break;
        f(b, std::min(n, b + grain));
      }
    };
    run(task);
  }

 private:
  void worker_loop();

  int num_threads_;
  std::vector<std::thread> workers_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> next_index_{0};  // next thread index of the current run() to claim
  alignas(64) std::atomic<int> num_done_{0};    // indices finished by workers in the current run()
  std::atomic<bool> stop_{false};
  std::atomic<bool> in_use_{false};  // set during run(): catches concurrent callers
  std::mutex sleep_mu_;              // guards the sleep path only; generation_ is bumped under it
  std::condition_variable sleep_cv_;
  // The current run()'s task; read by a worker only after it claimed a valid index.
  std::atomic<TaskRef*> task_{nullptr};
};

// Process-wide pool; size from FASTSERVE_THREADS, else the number of online CPUs. Created on first
// use.
ThreadPool& default_pool();
// Must be called before the first default_pool() to take effect (CLI --threads).
void set_default_pool_threads(int num_threads);

}  // namespace fs
