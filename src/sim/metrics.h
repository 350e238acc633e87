// Per-request latencies and their summary, with the key names `vllm bench serve` writes in its
// result JSON (mean_e2el_ms, p99_ttft_ms, request_throughput, ...) plus the scheduler's own.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "sched/scheduler.h"

namespace fs::sim {

struct RequestRecord {
  double arrival_s = 0;
  double first_token_s = -1;
  double finish_s = -1;
  double last_token_s = -1;
  int32_t num_prompt_tokens = 0;
  int32_t num_output_tokens = 0;     // target
  int32_t num_generated_tokens = 0;  // so far
};

// Inter-token latencies: too many to keep (one per generated token), so a log-spaced histogram
// (0.5% bins from 10 us to 1e4 s) gives percentiles; the mean is exact.
class LatencyHistogram {
 public:
  LatencyHistogram();
  void add(double seconds);
  int64_t count() const { return count_; }
  double mean() const { return count_ ? sum_ / count_ : 0.0; }
  double stddev() const;
  double percentile(double p) const;  // p in [0, 100]

 private:
  std::vector<int64_t> bins_;
  int64_t count_ = 0;
  double sum_ = 0, sum_sq_ = 0;
};

struct SummaryInputs {
  const std::vector<RequestRecord>* records = nullptr;
  const LatencyHistogram* itl = nullptr;
  sched::SchedulerStats stats;
  double block_bytes = 0;
  double duration_s = 0;
  double busy_s = 0;                      // sum of iteration times
  int64_t num_batched_jobs = 0;           // sum over iterations of the batch size
  double slo_normalized_latency_s = 0.3;  // goodput: requests whose e2el/output <= this
};

nlohmann::json summarize(const SummaryInputs& in);

}  // namespace fs::sim
