// Randomized property tests (seeded): for every policy and KV policy, over random job streams,
// every plan keeps the invariants the engine relies on.
#include <algorithm>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "sched/scheduler.h"
#include "sched_test_util.h"

namespace fs::sched {
namespace {

using testing::make_config;
using testing::make_cost_model;
using testing::make_pools;
using testing::run_until_done;

std::vector<JobSpec> random_jobs(uint64_t seed, int n, double rate_per_s) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate_per_s);
  std::lognormal_distribution<double> len(4.0, 1.0);
  std::vector<testing::JobShape> shapes;
  double t = 0;
  for (int i = 0; i < n; ++i) {
    t += gap(rng);
    shapes.push_back({t, std::clamp(static_cast<int32_t>(len(rng)), 1, 600),
                      std::clamp(static_cast<int32_t>(len(rng)), 1, 400)});
  }
  return testing::make_jobs(shapes);
}

const PolicyKind kPolicies[] = {PolicyKind::kSkipJoinMlfq, PolicyKind::kMlfq, PolicyKind::kFcfs,
                                PolicyKind::kVllm, PolicyKind::kSrpt};
const KvPolicy kKvPolicies[] = {KvPolicy::kProactive, KvPolicy::kReactive, KvPolicy::kRecompute};

// MLFQ policies run with and without the preemption hysteresis.
bool has_hysteresis(PolicyKind policy) {
  return policy == PolicyKind::kSkipJoinMlfq || policy == PolicyKind::kMlfq;
}

TEST(SchedulerPropertyTest, PlansNeverOvercommitAndBatchJobsHaveKvOnDevice) {
  const CostModel cost = make_cost_model();
  for (PolicyKind policy : kPolicies) {
    for (KvPolicy kv : kKvPolicies) {
      for (uint64_t run = 0; run < 6; ++run) {
        const uint64_t seed = run % 3 + 1;
        const bool hysteresis = run >= 3;
        if (hysteresis && !has_hysteresis(policy)) continue;
        SCOPED_TRACE(::testing::Message() << policy_name(policy) << " " << kv_policy_name(kv)
                                          << " seed " << seed << (hysteresis ? " hysteresis" : ""));
        SchedulerConfig c = make_config(policy, kv);
        c.mlfq.preemption_hysteresis = hysteresis;
        c.limits = {6, 256};
        c.mlfq.starvation_threshold_s = 0.5;
        c.mlfq.starvation_quantum_multiple = 0;
        // Tight device pool (about 4 long jobs), small host pool: evictions, drops, uploads.
        Scheduler s(c, make_pools(80, 60), cost);
        const auto jobs = random_jobs(seed, 80, 20.0);
        std::map<JobId, int64_t> sampled;
        run_until_done(s, cost, jobs, [&](const Scheduler& sch, const IterationPlan& plan, double) {
          ASSERT_LE(static_cast<int32_t>(plan.batch.size()), c.limits.max_seqs);
          ASSERT_LE(plan.num_batch_tokens(), c.limits.max_tokens);
          sch.pools().check_integrity();
          for (const ScheduledJob& b : plan.batch) {
            ASSERT_GE(b.num_new_tokens, 1);
            const auto& pools = sch.pools();
            ASSERT_TRUE(pools.has_job(b.id));
            ASSERT_EQ(pools.location(b.id), kv::Location::kDevice);
            ASSERT_GE(pools.num_blocks(b.id),
                      pools.blocks_for_tokens(b.num_computed_tokens + b.num_new_tokens));
            ASSERT_EQ(b.block_table, pools.table(b.id).blocks);
            ASSERT_EQ(
                std::count(plan.drop_for_recompute.begin(), plan.drop_for_recompute.end(), b.id),
                0);
            const Job* j = sch.job(b.id);
            ASSERT_EQ(b.num_computed_tokens, j->num_computed_tokens);
            ASSERT_EQ(b.samples_token, b.num_computed_tokens + b.num_new_tokens == j->num_tokens);
            if (b.samples_token) ++sampled[b.id];
          }
          for (int32_t i = 0; i < plan.num_blocking_upload; ++i) {
            const JobId id = plan.upload[i].job;
            ASSERT_TRUE(std::any_of(plan.batch.begin(), plan.batch.end(),
                                    [&](const ScheduledJob& b) { return b.id == id; }));
          }
        });
        // Conservation: every job finished with exactly its tokens.
        EXPECT_EQ(s.num_live_jobs(), 0);
        EXPECT_EQ(s.stats().num_finished, static_cast<int64_t>(jobs.size()));
        for (const JobSpec& j : jobs) EXPECT_EQ(sampled[j.id], j.max_new_tokens) << j.id;
        EXPECT_EQ(s.pools().num_free_device_blocks(), 80);
        EXPECT_EQ(s.pools().num_free_host_blocks(), 60);
        if (policy == PolicyKind::kFcfs) {
          EXPECT_EQ(s.stats().num_preemptions, 0);
        }
      }
    }
  }
}

TEST(SchedulerPropertyTest, BatchIsPriorityOrderPrefixWhenMemoryIsAmple) {
  const CostModel cost = make_cost_model();
  for (PolicyKind policy : kPolicies) {
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      SCOPED_TRACE(::testing::Message() << policy_name(policy) << " seed " << seed);
      SchedulerConfig c = make_config(policy);
      c.mlfq.preemption_hysteresis = false;  // the plain order (the hysteresis keeps incumbents)
      c.limits = {4, 512};
      Scheduler s(c, make_pools(4000, 0), cost);
      run_until_done(s, cost, random_jobs(seed, 60, 30.0),
                     [&](const Scheduler& sch, const IterationPlan& plan, double) {
                       const auto order = sch.priority_order();
                       for (size_t i = 0; i < plan.batch.size(); ++i) {
                         ASSERT_EQ(plan.batch[i].id, order[i]) << "position " << i;
                       }
                       const size_t want = std::min<size_t>(c.limits.max_seqs, order.size());
                       if (plan.batch.size() < want) {
                         ASSERT_EQ(plan.num_batch_tokens(), c.limits.max_tokens);
                       }
                     });
    }
  }
}

TEST(SchedulerPropertyTest, NoJobStaysIdlePastTheStarvationThreshold) {
  const CostModel cost = make_cost_model();
  for (PolicyKind policy : {PolicyKind::kSkipJoinMlfq, PolicyKind::kMlfq}) {
    for (uint64_t run = 0; run < 8; ++run) {
      const uint64_t seed = run % 4 + 1;
      const bool hysteresis = run >= 4;
      SCOPED_TRACE(::testing::Message()
                   << policy_name(policy) << " seed " << seed << (hysteresis ? " hysteresis" : ""));
      SchedulerConfig c = make_config(policy);
      c.mlfq.preemption_hysteresis = hysteresis;
      c.limits = {2, 512};
      c.mlfq.starvation_threshold_s = 0.4;
      c.mlfq.starvation_quantum_multiple = 0;
      Scheduler s(c, make_pools(4000, 0), cost);
      int64_t checked = 0;
      run_until_done(s, cost, random_jobs(seed, 120, 25.0),
                     [&](const Scheduler& sch, const IterationPlan&, double now) {
                       for (JobId id : sch.priority_order()) {
                         const Job* j = sch.job(id);
                         if (j->in_batch) continue;
                         ASSERT_LE(now - j->idle_since_s, 0.4 + 1e-9) << "job " << id;
                         ++checked;
                       }
                     });
      EXPECT_GT(checked, 0);
      EXPECT_GT(s.stats().num_promotions, 0);
    }
  }
}

}  // namespace
}  // namespace fs::sched
