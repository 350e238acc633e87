#include "loadgen/bench_runner.h"

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "loadgen/arrivals.h"

namespace fs::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

// "[#####.....]  5/8 requests, 1 failed" on one stderr line, redrawn with '\r'.
class ProgressBar {
 public:
  ProgressBar(bool enabled, size_t total) : enabled_(enabled), total_(total) { draw(); }
  void on_done(bool failed) {
    if (!enabled_) return;
    ++done_;
    if (failed) ++failed_;
    draw();
  }
  void finish() {
    if (enabled_) std::fputc('\n', stderr);
  }

 private:
  void draw() {
    if (!enabled_) return;
    constexpr size_t kWidth = 40;
    const size_t filled = total_ ? done_ * kWidth / total_ : kWidth;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu requests", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), done_, total_);
    if (failed_) std::fprintf(stderr, ", %zu failed", failed_);
    std::fflush(stderr);
  }
  bool enabled_;
  size_t total_, done_ = 0, failed_ = 0;
};

}  // namespace

RunOutcome run_benchmark(const RunOptions& options, const std::vector<BenchRequest>& requests) {
  RunOutcome outcome;
  outcome.results.resize(requests.size());
  const std::vector<double> arrivals_s =
      make_arrival_times(options.request_rate, options.burstiness,
                         static_cast<int64_t>(requests.size()), options.seed);
  std::mutex mu;
  std::condition_variable slot_freed;
  int32_t in_flight = 0;
  Clock::time_point last_done;
  ProgressBar progress(options.progress, requests.size());
  std::vector<std::thread> threads;
  threads.reserve(requests.size());

  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < requests.size(); ++i) {
    std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(arrivals_s[i])));
    {
      std::unique_lock lock(mu);
      slot_freed.wait(lock, [&] {
        return options.max_concurrency <= 0 || in_flight < options.max_concurrency;
      });
      ++in_flight;
      outcome.max_in_flight = std::max(outcome.max_in_flight, in_flight);
    }
    threads.emplace_back([&, i] {
      RequestResult r = send_request(options.endpoint, requests[i], start);
      std::lock_guard lock(mu);
      progress.on_done(!r.success);
      outcome.results[i] = std::move(r);
      last_done = Clock::now();
      --in_flight;
      slot_freed.notify_one();
    });
  }
  for (std::thread& t : threads) t.join();
  progress.finish();
  outcome.duration_s = std::chrono::duration<double>(last_done - start).count();
  return outcome;
}

}  // namespace fs::loadgen
