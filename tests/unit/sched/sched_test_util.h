// Factories and a fake executor for scheduler tests: make_cost_model(), make_jobs(),
// run_until_done().
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "sched/cost_model.h"
#include "sched/scheduler.h"

namespace fs::sched::testing {

// Prefill: 20 ms up to 128 tokens, then +0.1 ms per token; decode: 20 ms + 1 ms per job.
inline CostModel make_cost_model() {
  CostModelSpec s;
  s.name = "test";
  s.block_size_tokens = 16;
  s.kv_bytes_per_token = 1000;
  s.prefill = {{1, 0.020}, {128, 0.020}, {1128, 0.120}};
  s.decode = {{1, 0, 0.021}, {2, 0, 0.022}, {1, 1000, 0.021}, {8, 500, 0.028}};
  s.swap_bandwidth_bytes_per_s = 1e9;
  auto m = CostModel::from_spec(s);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  return *m;
}

struct JobShape {
  double arrival_s;
  int32_t prompt_tokens;
  int32_t output_tokens;
};

// Job i gets id i and the i-th shape; oracle lengths are set (only srpt reads them).
inline std::vector<JobSpec> make_jobs(const std::vector<JobShape>& shapes) {
  std::vector<JobSpec> jobs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    JobSpec s;
    s.id = static_cast<JobId>(i);
    s.arrival_s = shapes[i].arrival_s;
    s.num_prompt_tokens = shapes[i].prompt_tokens;
    s.max_new_tokens = shapes[i].output_tokens;
    s.oracle_output_tokens = shapes[i].output_tokens;
    jobs.push_back(s);
  }
  return jobs;
}

inline SchedulerConfig make_config(PolicyKind policy, KvPolicy kv = KvPolicy::kProactive) {
  SchedulerConfig c;
  c.policy = policy;
  c.kv_policy = kv;
  return c;
}

inline KvPoolConfig make_pools(int32_t device_blocks, int32_t host_blocks) {
  return KvPoolConfig{device_blocks, host_blocks, 16};
}

// Runs one iteration with the cost model as the fake executor; returns the plan.
inline IterationPlan step(Scheduler& s, const CostModel& cost, double& now_s) {
  IterationPlan plan = s.schedule(now_s);
  IterationResult r;
  r.start_s = now_s;
  r.end_s = now_s + (plan.empty() ? 0.0 : cost.iteration_time_s(plan));
  s.update(plan, r);
  s.pools().check_integrity();
  now_s = r.end_s;
  return plan;
}

// Adds jobs at their arrival times and steps until all finish (or max_iterations). on_plan sees
// every plan right after schedule() (before update) with the scheduler.
inline int64_t run_until_done(
    Scheduler& s, const CostModel& cost, const std::vector<JobSpec>& jobs,
    const std::function<void(const Scheduler&, const IterationPlan&, double)>& on_plan = {},
    int64_t max_iterations = 1000000) {
  double now = 0;
  size_t next = 0;
  int64_t it = 0;
  for (; it < max_iterations; ++it) {
    for (; next < jobs.size() && jobs[next].arrival_s <= now; ++next) {
      EXPECT_TRUE(s.add(jobs[next], now).is_ok());
    }
    if (next == jobs.size() && s.num_live_jobs() == 0) break;
    IterationPlan plan = s.schedule(now);
    if (on_plan) on_plan(s, plan, now);
    if (plan.empty()) {
      EXPECT_LT(next, jobs.size()) << "no progress";
      if (next >= jobs.size()) break;
      now = jobs[next].arrival_s;
      continue;
    }
    IterationResult r;
    r.start_s = now;
    r.end_s = now + cost.iteration_time_s(plan);
    s.update(plan, r);
    s.pools().check_integrity();
    now = r.end_s;
  }
  return it;
}

inline std::vector<JobId> batch_ids(const IterationPlan& plan) {
  std::vector<JobId> ids;
  for (const auto& b : plan.batch) ids.push_back(b.id);
  return ids;
}

}  // namespace fs::sched::testing
