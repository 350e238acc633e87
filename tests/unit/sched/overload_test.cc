// Past saturation the batch stays full: seats the swap budget would leave empty go to host-resident
// jobs that fit in free device memory, and the proactive window skips new jobs that may not start
// (docs/SCHEDULING.md "Filling the batch under overload").
#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "sched/scheduler.h"
#include "sched_test_util.h"

namespace fs::sched {
namespace {

using testing::make_config;
using testing::make_cost_model;
using testing::make_jobs;
using testing::make_pools;
using testing::step;

// One 16 KB block takes 16 ms to move: a few uploads overdraw a 50 ms swap credit.
CostModel slow_link_cost_model() {
  CostModelSpec spec = make_cost_model().spec();
  spec.swap_bandwidth_bytes_per_s = 1e6;
  return *CostModel::from_spec(spec);
}

int32_t num_on_host(const Scheduler& s, const std::vector<JobId>& ids) {
  return static_cast<int32_t>(std::count_if(ids.begin(), ids.end(), [&](JobId id) {
    return s.pools().has_job(id) && s.pools().location(id) == kv::Location::kHost;
  }));
}

// Four jobs decode; a high-priority job with a 560-token prompt (35 of the 40 device blocks)
// pushes three of them to the host, runs its prefill and finishes. Returns the four ids.
std::vector<JobId> push_three_jobs_to_host(Scheduler& s, const CostModel& cost, double& now) {
  std::vector<JobSpec> jobs =
      make_jobs({{0, 64, 100}, {0, 64, 100}, {0, 64, 100}, {0, 64, 100}, {0, 560, 1}});
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(s.add(jobs[i], now).is_ok());
  step(s, cost, now);  // prefill: 4 blocks each
  step(s, cost, now);  // first decode: 5 blocks each
  jobs[4].priority = -1;
  jobs[4].arrival_s = now;
  EXPECT_TRUE(s.add(jobs[4], now).is_ok());
  const IterationPlan hog = step(s, cost, now);
  EXPECT_EQ(hog.batch.front().id, 4);
  EXPECT_EQ(s.job(4), nullptr);  // one token: finished
  const std::vector<JobId> ids = {0, 1, 2, 3};
  EXPECT_EQ(num_on_host(s, ids), 3);
  return ids;
}

TEST(OverloadTest, FillsSeatsTheSwapBudgetLeavesEmptyWithHostJobsThatFitInFreeMemory) {
  const CostModel cost = slow_link_cost_model();
  for (KvPolicy kv : {KvPolicy::kReactive, KvPolicy::kProactive}) {
    SchedulerConfig c = make_config(PolicyKind::kMlfq, kv);
    c.limits.max_seqs = 4;
    c.swap_credit_max_s = 0.05;  // the hog's three offloads (240 ms) overdraw it
    c.kv_headroom_blocks = 2;
    Scheduler s(c, make_pools(40, 100), cost);
    double now = 0;
    const std::vector<JobId> ids = push_three_jobs_to_host(s, cost, now);
    ASSERT_GE(s.pools().num_free_device_blocks(), 3 * 6 + c.headroom_blocks());
    // The budget is overdrawn: before, only the first host job (exempt as the batch's first) came
    // back and two seats stayed empty with 35 blocks free.
    const IterationPlan plan = s.schedule(now);
    EXPECT_EQ(plan.batch.size(), 4u) << kv_policy_name(kv);
    EXPECT_EQ(plan.num_blocking_upload, 3 * 5);
    EXPECT_TRUE(plan.offload.empty());  // nobody was evicted for them
    EXPECT_TRUE(plan.drop_for_recompute.empty());
    EXPECT_EQ(num_on_host(s, ids), 0);
    s.pools().check_integrity();
  }
}

TEST(OverloadTest, DoesNotEvictOrBreakTheHeadroomToFillSeats) {
  const CostModel cost = slow_link_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kMlfq, KvPolicy::kReactive);
  c.limits.max_seqs = 4;
  c.swap_credit_max_s = 0.05;
  c.kv_headroom_blocks = 25;  // 35 free: the exempt upload leaves 30, one more fits above 25
  Scheduler s(c, make_pools(40, 100), cost);
  double now = 0;
  const std::vector<JobId> ids = push_three_jobs_to_host(s, cost, now);
  const IterationPlan plan = s.schedule(now);
  EXPECT_TRUE(plan.offload.empty());
  EXPECT_GE(s.pools().num_free_device_blocks(), 0);
  // The resident job, the budget-exempt first host job, and one more that fits above the headroom.
  EXPECT_EQ(num_on_host(s, ids), 1);
  EXPECT_EQ(plan.batch.size(), 3u);
  s.pools().check_integrity();
}

TEST(OverloadTest, ProactiveWindowSkipsNewJobsThatMayNotStart) {
  // The host pool is full (15 of 15 blocks: the three pushed jobs), and still over the admission
  // threshold (20% here) after the batch's uploads, so new jobs may not start; two seats. Before,
  // the two new jobs, first in priority order, made up the whole upload window and the host job
  // left out of the batch was never uploaded ahead of its turn. (A fast link: the forward hides an
  // upload.)
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kMlfq, KvPolicy::kProactive);
  c.limits.max_seqs = 2;
  c.kv_headroom_blocks = 2;
  c.admit_max_host_usage = 0.2;
  Scheduler s(c, make_pools(40, 15), cost);
  double now = 0;
  std::vector<JobSpec> jobs = make_jobs({{0, 64, 100},
                                         {0, 64, 100},
                                         {0, 64, 100},
                                         {0, 64, 100},
                                         {0, 560, 1},
                                         {0, 16, 5},
                                         {0, 16, 5}});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.add(jobs[i], now).is_ok());
  // Two seats: jobs 0 and 1 prefill, then 2 and 3 (MLFQ demotes the first two after a quantum).
  while (s.pools().num_free_device_blocks() > 40 - 4 * 5) step(s, cost, now);
  jobs[4].priority = -1;
  jobs[4].arrival_s = now;
  ASSERT_TRUE(s.add(jobs[4], now).is_ok());
  step(s, cost, now);
  ASSERT_EQ(s.job(4), nullptr);
  const std::vector<JobId> ids = {0, 1, 2, 3};
  ASSERT_EQ(num_on_host(s, ids), 3);
  for (int i = 5; i < 7; ++i) {
    jobs[i].priority = -1;  // ahead of every started job
    jobs[i].arrival_s = now;
    ASSERT_TRUE(s.add(jobs[i], now).is_ok());
  }
  const IterationPlan plan = s.schedule(now);
  for (const ScheduledJob& b : plan.batch) EXPECT_LT(b.id, 4);  // new jobs may not start
  EXPECT_EQ(plan.batch.size(), 2u);
  // The host jobs left the host: for the batch, or ahead of their turn.
  EXPECT_EQ(num_on_host(s, ids), 0);
  EXPECT_GT(plan.upload.size(), static_cast<size_t>(plan.num_blocking_upload));
  s.pools().check_integrity();
}

// Seeded overload streams (skip-join MLFQ, a tight swap budget): no seat stays empty while a
// host-resident job would fit above the headroom, every job finishes, the pools stay consistent.
TEST(OverloadTest, SeededOverloadKeepsBatchesFullAndConservesJobs) {
  const CostModel cost = slow_link_cost_model();
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> prompt(16, 200), output(1, 60);
    std::exponential_distribution<double> gap(40.0);  // far past what 4 seats serve
    std::vector<testing::JobShape> shapes;
    double t = 0;
    for (int i = 0; i < 120; ++i) {
      shapes.push_back({t, prompt(rng), output(rng)});
      t += gap(rng);
    }
    SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq, KvPolicy::kProactive);
    c.limits.max_seqs = 4;
    c.swap_credit_max_s = 0.05;
    Scheduler s(c, make_pools(48, 60), cost);
    int64_t seats = 0, used = 0;
    testing::run_until_done(
        s, cost, make_jobs(shapes), [&](const Scheduler& sc, const IterationPlan& plan, double) {
          // A seat left empty while a host job would fit above the headroom: the rule under test.
          int32_t tokens = 0;
          for (const ScheduledJob& b : plan.batch) tokens += b.num_new_tokens;
          if (static_cast<int32_t>(plan.batch.size()) < c.limits.max_seqs &&
              tokens < c.limits.max_tokens) {
            for (JobId id : sc.priority_order()) {
              const Job* j = sc.job(id);
              if (j->state != JobState::kOffloaded) continue;
              const bool offloaded_now =
                  std::any_of(plan.offload.begin(), plan.offload.end(),
                              [&](const kv::BlockMove& m) { return m.job == id; });
              if (offloaded_now) continue;  // a victim of this plan does not come back in it
              const int32_t need = sc.pools().blocks_for_tokens(j->num_tokens);
              EXPECT_LT(sc.pools().num_free_device_blocks() - need, c.headroom_blocks())
                  << "seed " << seed << ": seat empty, job " << id << " fits";
            }
          }
          seats += c.limits.max_seqs;
          used += static_cast<int64_t>(plan.batch.size());
        });
    EXPECT_EQ(s.stats().num_finished, 120) << "seed " << seed;
    EXPECT_EQ(s.pools().num_free_device_blocks(), 48);
    EXPECT_GT(used, 0);
    EXPECT_LE(used, seats);
  }
}

}  // namespace
}  // namespace fs::sched
