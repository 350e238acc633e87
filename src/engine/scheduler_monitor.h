// What the scheduler is doing, for people: a snapshot of the MLFQ queues, the running batch, the KV
// pools, swap traffic, rolling latency percentiles and short time series, published by the engine
// thread and read by the dashboard (GET /v1/scheduler/state, docs/SERVER.md).
//
// Cost: the engine thread builds a snapshot at most once per series_interval_s while nobody reads,
// and at most once per min_build_interval_s while a reader has asked within reader_active_s;
// between builds an iteration pays one atomic load and a clock read (due()). Readers take a
// shared_ptr to the latest immutable snapshot under a short mutex and never wait for an iteration.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sched/iteration_plan.h"
#include "sched/scheduler.h"

namespace fs {

struct EngineMetrics;

// One live job as the page shows it.
struct SchedulerJobView {
  int64_t job_id = 0;
  std::string request_id;
  const char* state = "";        // sched::job_state_name: waiting, running, preempted, ...
  const char* kv_location = "";  // device | host | dropped | none
  int32_t level = 0;             // MLFQ queue (0 = highest priority)
  int32_t priority = 0;          // the client's priority (lower runs first)
  int32_t num_kv_blocks = 0;
  int64_t num_prompt_tokens = 0;
  int64_t num_generated_tokens = 0;
  int64_t max_new_tokens = 0;
  double waiting_s = 0;  // since its last service (or arrival, or promotion); 0 while running
  double age_s = 0;      // since arrival
  int32_t num_preemptions = 0;
  int32_t num_demotions = 0;
};

struct SchedulerQueueView {
  int32_t level = 0;
  double quantum_s = -1;  // -1: unbounded (the last MLFQ level, or a non-MLFQ policy)
  int64_t num_jobs = 0;
  std::vector<SchedulerJobView> jobs;  // priority order, at most max_jobs_per_queue of num_jobs
};

// One entry of the last iteration's batch.
struct SchedulerBatchView {
  int64_t job_id = 0;
  std::string request_id;
  int64_t num_new_tokens = 0;
  bool prefill = false;  // a prompt chunk or a recompute rather than one decode token
  int32_t level = 0;
};

struct LatencySummary {  // over the last latency_window finished requests
  int64_t count = 0;
  double mean_s = 0, p50_s = 0, p90_s = 0, p99_s = 0;
};

struct SchedulerSeriesPoint {  // one per series_interval_s
  double t_s = 0;              // seconds since the monitor started
  int64_t num_running = 0, num_waiting = 0;
  double device_kv_usage = 0, host_kv_usage = 0;  // fractions [0, 1]
  double generation_tokens_per_s = 0, prompt_tokens_per_s = 0;
  double swap_bytes_per_s = 0;  // out + in
};

struct SchedulerSnapshot {
  double t_s = 0;  // seconds since the monitor started, when this was built
  std::string policy, kv_policy;
  int64_t num_iterations = 0;
  double last_iteration_s = 0;  // wall time of the latest iteration
  int64_t num_running = 0, num_waiting = 0, num_live_jobs = 0;
  std::vector<SchedulerQueueView>
      queues;  // levels 0 .. the deepest non-empty one (MLFQ: at least 4)
  std::vector<SchedulerBatchView> batch;  // the latest iteration's batch, in execution order
  int32_t kv_block_size_tokens = 0;
  int64_t kv_block_bytes = 0;
  int64_t device_kv_blocks_used = 0, device_kv_blocks_total = 0;
  int64_t host_kv_blocks_used = 0, host_kv_blocks_total = 0;
  int64_t kv_bytes_swapped_out_total = 0, kv_bytes_swapped_in_total = 0;
  int64_t num_drops_total = 0, num_preemptions_total = 0;
  int64_t num_demotions_total = 0, num_promotions_total = 0;
  int64_t num_finished_total = 0, num_aborted_total = 0;
  int64_t prompt_tokens_total = 0, generation_tokens_total = 0;
  LatencySummary ttft, tpot, jct;
  std::vector<SchedulerSeriesPoint> series;  // oldest first
};

class SchedulerMonitor {
 public:
  struct Options {
    double series_interval_s = 1.0;
    int32_t series_points = 120;
    int32_t latency_window = 1000;
    int32_t max_jobs_per_queue = 64;
    double min_build_interval_s = 0.05;
    double reader_active_s = 2.0;
  };
  // What publish() reads; all of it belongs to the engine thread.
  struct Inputs {
    const sched::Scheduler& scheduler;
    const EngineMetrics& metrics;
    const sched::IterationPlan* plan = nullptr;  // the latest iteration's; null when idle
    double iteration_s = 0;
    double sched_now_s = 0;  // now on the scheduler's clock (job arrival and idle times use it)
    int64_t kv_block_bytes = 0;
    std::string_view policy, kv_policy;
    std::function<std::string(sched::JobId)> request_id;  // may be empty
  };

  SchedulerMonitor() : SchedulerMonitor(Options{}) {}
  explicit SchedulerMonitor(const Options& options) : options_(options) {}

  // Reader side (any thread): the latest snapshot (null before the first publish()) and a note that
  // someone is watching, so the engine publishes more often for the next reader_active_s.
  std::shared_ptr<const SchedulerSnapshot> read(double now_s);

  // Engine thread. now_s: monotonic seconds (core/timer.h).
  void observe_finished(double ttft_s, double tpot_s, double jct_s);  // ttft/tpot < 0: none
  bool due(double now_s) const;
  void publish(double now_s, const Inputs& in);

 private:
  struct Ring {  // the last `capacity` values
    std::vector<double> values;
    size_t next = 0;
    void push(double v, size_t capacity);
  };
  static LatencySummary summarize(const Ring& ring);
  void add_series_point(double now_s, const Inputs& in);

  Options options_;
  std::atomic<double> last_read_s_{-1e300};
  double origin_s_ = -1;
  double last_build_s_ = -1e300;
  double last_iteration_s_ = 0;
  double last_point_s_ = -1e300;
  int64_t last_point_generation_tokens_ = 0, last_point_prompt_tokens_ = 0,
          last_point_swap_bytes_ = 0;
  Ring ttft_, tpot_, jct_;
  std::deque<SchedulerSeriesPoint> series_;

  mutable std::mutex mu_;  // guards latest_ only
  std::shared_ptr<const SchedulerSnapshot> latest_;
};

}  // namespace fs
