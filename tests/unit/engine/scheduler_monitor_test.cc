// SchedulerMonitor: what a snapshot holds, and when the engine thread builds one (no model needed:
// a real Scheduler over synthetic jobs).
#include "engine/scheduler_monitor.h"

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "sched/cost_model.h"

namespace fs {
namespace {

sched::CostModel make_cost_model() {
  sched::CostModelSpec s;
  s.name = "test";
  s.block_size_tokens = 16;
  s.kv_bytes_per_token = 1000;
  s.prefill = {{1, 0.020}, {128, 0.020}, {1128, 0.120}};
  s.decode = {{1, 0, 0.021}, {2, 0, 0.022}, {1, 1000, 0.021}, {8, 500, 0.028}};
  s.swap_bandwidth_bytes_per_s = 1e9;
  return *sched::CostModel::from_spec(s);
}

struct Fixture {
  sched::CostModel cost = make_cost_model();
  sched::Scheduler scheduler;
  EngineMetrics metrics;
  explicit Fixture(int32_t max_seqs)
      : scheduler(
            [&] {
              sched::SchedulerConfig c;
              c.limits.max_seqs = max_seqs;
              return c;
            }(),
            sched::KvPoolConfig{100, 100, 16}, cost) {}
  void add(sched::JobId id, int32_t prompt, int32_t output, double now) {
    sched::JobSpec spec;
    spec.id = id;
    spec.arrival_s = now;
    spec.num_prompt_tokens = prompt;
    spec.max_new_tokens = output;
    ASSERT_TRUE(scheduler.add(spec, now).is_ok());
  }
  SchedulerMonitor::Inputs inputs(const sched::IterationPlan* plan, double sched_now) {
    return {scheduler,
            metrics,
            plan,
            0.02,
            sched_now,
            4096,
            "skip-join-mlfq",
            "proactive",
            [](sched::JobId id) { return "req-" + std::to_string(id); }};
  }
};

TEST(SchedulerMonitor, SnapshotShowsQueuesBatchAndKvLocation) {
  Fixture f(/*max_seqs=*/2);
  f.add(1, 20, 8, 0);
  f.add(2, 20, 8, 0);
  f.add(3, 20, 8, 0);
  const sched::IterationPlan plan = f.scheduler.schedule(0);
  ASSERT_EQ(plan.batch.size(), 2u);
  f.scheduler.update(plan, sched::IterationResult{0, 0.02, {}, {}});

  SchedulerMonitor monitor;
  EXPECT_EQ(monitor.read(100.0), nullptr);
  monitor.publish(100.0, f.inputs(&plan, 0.5));
  auto snap = monitor.read(100.0);
  ASSERT_NE(snap, nullptr);
  EXPECT_EQ(snap->policy, "skip-join-mlfq");
  EXPECT_EQ(snap->num_live_jobs, 3);
  EXPECT_EQ(snap->num_iterations, 1);
  ASSERT_GE(snap->queues.size(), 1u);
  int64_t listed = 0, on_device = 0, without_kv = 0;
  for (const SchedulerQueueView& q : snap->queues) {
    EXPECT_EQ(static_cast<int64_t>(q.jobs.size()), q.num_jobs);
    for (const SchedulerJobView& j : q.jobs) {
      ++listed;
      EXPECT_EQ(j.request_id, "req-" + std::to_string(j.job_id));
      EXPECT_EQ(j.level, q.level);
      EXPECT_EQ(j.num_prompt_tokens, 20);
      EXPECT_DOUBLE_EQ(j.age_s, 0.5);
      if (std::string(j.kv_location) == "device") ++on_device;
      if (std::string(j.kv_location) == "none") {
        ++without_kv;
        EXPECT_STREQ(j.state, "waiting");
        EXPECT_GT(j.waiting_s, 0);
      }
    }
  }
  EXPECT_EQ(listed, 3);
  EXPECT_EQ(on_device, 2);
  EXPECT_EQ(without_kv, 1);
  ASSERT_EQ(snap->batch.size(), 2u);
  EXPECT_TRUE(snap->batch[0].prefill);
  EXPECT_EQ(snap->batch[0].num_new_tokens, 20);
  EXPECT_EQ(snap->device_kv_blocks_total, 100);
  EXPECT_EQ(snap->device_kv_blocks_used, 4);  // two jobs of 20 + 8 tokens, 16-token blocks
  EXPECT_EQ(snap->kv_block_bytes, 4096);
  EXPECT_DOUBLE_EQ(snap->last_iteration_s, 0.02);
  EXPECT_EQ(snap->series.size(), 1u);
  // MLFQ levels have growing quanta.
  if (snap->queues.size() >= 2) {
    EXPECT_DOUBLE_EQ(snap->queues[1].quantum_s, 2 * snap->queues[0].quantum_s);
  }
}

TEST(SchedulerMonitor, BuildsOncePerIntervalUnlessRead) {
  Fixture f(4);
  SchedulerMonitor monitor;
  EXPECT_TRUE(monitor.due(10.0));
  monitor.publish(10.0, f.inputs(nullptr, 0));
  // Nobody reads: not due again before the series interval (1 s).
  EXPECT_FALSE(monitor.due(10.06));
  EXPECT_FALSE(monitor.due(10.9));
  EXPECT_TRUE(monitor.due(11.0));
  // A reader asks: due every 50 ms for the next 2 s.
  auto first = monitor.read(10.1);
  EXPECT_FALSE(monitor.due(10.04));
  EXPECT_TRUE(monitor.due(10.06));
  monitor.publish(10.06, f.inputs(nullptr, 0));
  EXPECT_NE(monitor.read(10.1), first);  // a new snapshot object; the old one stays valid
  EXPECT_FALSE(monitor.due(10.1));
  EXPECT_TRUE(monitor.due(10.2));
  // Reads stopped at 10.1: from 12.1 on only the once-a-second series point.
  monitor.publish(11.5, f.inputs(nullptr, 0));
  EXPECT_FALSE(monitor.due(12.2));
}

TEST(SchedulerMonitor, SeriesRatesAndRollingPercentiles) {
  Fixture f(4);
  SchedulerMonitor::Options o;
  o.series_points = 3;
  o.latency_window = 100;
  SchedulerMonitor monitor(o);
  for (int i = 1; i <= 200; ++i) monitor.observe_finished(i * 0.001, -1, i * 0.01);
  f.metrics.device_kv_blocks_total = 10;
  for (int s = 0; s < 5; ++s) {
    f.metrics.generation_tokens_total = 50 * s;
    f.metrics.device_kv_blocks_used = s;
    monitor.publish(100.0 + s, f.inputs(nullptr, 0));
  }
  auto snap = monitor.read(105);
  ASSERT_EQ(snap->series.size(), 3u);  // capped, oldest dropped
  EXPECT_DOUBLE_EQ(snap->series.back().t_s, 4.0);
  EXPECT_DOUBLE_EQ(snap->series.back().generation_tokens_per_s, 50.0);
  EXPECT_DOUBLE_EQ(snap->series.back().device_kv_usage, 0.4);
  // The last 100 of 200 observations: TTFT 0.101 .. 0.200.
  EXPECT_EQ(snap->ttft.count, 100);
  EXPECT_NEAR(snap->ttft.p50_s, 0.150, 1e-9);
  EXPECT_NEAR(snap->ttft.p99_s, 0.199, 1e-9);
  EXPECT_NEAR(snap->jct.mean_s, 1.505, 1e-9);
  EXPECT_EQ(snap->tpot.count, 0);
}

}  // namespace
}  // namespace fs
