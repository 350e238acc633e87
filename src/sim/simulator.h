// Discrete-event simulator: drives the real Scheduler with the cost model in place of a model.
// Events are request arrivals and iteration ends; an iteration's swaps complete within it (blocking
// swaps before its forward, proactive ones overlapped with it: CostModel::iteration_time_s). When
// nothing can run, the clock jumps to the next arrival.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "sched/cost_model.h"
#include "sched/scheduler.h"
#include "sim/metrics.h"
#include "sim/trace.h"

namespace fs::sim {

struct SimConfig {
  sched::SchedulerConfig scheduler;
  sched::KvPoolConfig kv;                 // block_size_tokens must match the cost model's
  double slo_normalized_latency_s = 0.3;  // for request_goodput
  bool check_integrity = false;           // KvPools::check_integrity after every iteration (tests)
  bool tell_oracle = true;  // give srpt the true output length (other policies ignore it)
};

// Sizes the KV pools from byte budgets with the cost model's block size and bytes per token.
sched::KvPoolConfig kv_pools_for(const sched::CostModel& cost_model, double device_kv_bytes,
                                 double host_kv_bytes);

struct SimResult {
  std::vector<RequestRecord> records;  // index = job id = request index
  nlohmann::json summary;              // metrics (metrics.h)
  sched::SchedulerStats stats;
  int64_t num_generated_tokens = 0;
  int64_t num_prefill_tokens = 0;  // tokens run as prefill or recompute chunks
};

// Runs every request to completion. requests[i] arrives at arrivals_s[i] (sorted). A request that
// can never fit is an error (kOutOfRange from Scheduler::add).
Result<SimResult> simulate(const SimConfig& config, const sched::CostModel& cost_model,
                           const std::vector<TraceRequest>& requests,
                           const std::vector<double>& arrivals_s);

}  // namespace fs::sim
