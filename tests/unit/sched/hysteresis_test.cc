// Preemption hysteresis (MlfqConfig::preemption_hysteresis; docs/SCHEDULING.md "Preemption
// hysteresis"): a job that ran keeps its seat unless a job of a strictly higher level of its
// priority class takes it, and that job's KV is on the device or fits in free blocks without
// evicting anyone. Each scenario runs with the rule off as well, where plain least-attained-service
// order preempts.
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "sched/scheduler.h"
#include "sched_test_util.h"

namespace fs::sched {
namespace {

using testing::batch_ids;
using testing::make_config;
using testing::make_cost_model;
using testing::make_jobs;
using testing::make_pools;
using testing::step;

SchedulerConfig mlfq_config(bool hysteresis, int32_t max_seqs) {
  SchedulerConfig c = make_config(PolicyKind::kMlfq, KvPolicy::kReactive);
  c.limits.max_seqs = max_seqs;
  c.mlfq.preemption_hysteresis = hysteresis;
  return c;
}

// Two jobs, one seat, 50 ms top quantum (iterations take 20-21 ms): A runs until demoted to level
// 1, B (level 0) takes the seat and runs until it is demoted to level 1 too. Now both are at level
// 1 and A, older, is first in the order.
TEST(HysteresisTest, EqualLevelWaitingJobDoesNotTakeTheSeat) {
  const CostModel cost = make_cost_model();
  for (bool hysteresis : {false, true}) {
    SCOPED_TRACE(hysteresis ? "hysteresis" : "plain");
    SchedulerConfig c = mlfq_config(hysteresis, 1);
    c.mlfq.q1_s = 0.05;
    Scheduler s(c, make_pools(4000, 0), cost);
    double now = 0;
    for (const JobSpec& j : make_jobs({{0, 16, 60}, {0, 16, 60}}))
      ASSERT_TRUE(s.add(j, now).is_ok());
    IterationPlan last;
    bool b_displaced_a = false;
    for (int i = 0; i < 20 && !(s.job(1)->level == 1 && batch_ids(last) == std::vector<JobId>{1});
         ++i) {
      last = step(s, cost, now);
      // A higher level that fits still preempts, with the rule or without it.
      if (batch_ids(last) == std::vector<JobId>{1} && s.job(0)->num_generated_tokens > 0 &&
          s.job(1)->num_generated_tokens == 1) {
        b_displaced_a = true;
      }
    }
    ASSERT_TRUE(b_displaced_a);
    ASSERT_EQ(s.job(0)->level, 1);
    ASSERT_EQ(s.job(1)->level, 1);
    ASSERT_EQ(s.priority_order().front(), 0);  // A first: same level, earlier arrival
    const IterationPlan plan = s.schedule(now);
    if (hysteresis) {
      EXPECT_EQ(batch_ids(plan), std::vector<JobId>{1});  // B keeps its seat
      EXPECT_TRUE(plan.preempted.empty());
    } else {
      EXPECT_EQ(batch_ids(plan), std::vector<JobId>{0});  // LAS reshuffles the equal level
      EXPECT_EQ(plan.preempted, std::vector<JobId>{1});
    }
  }
}

// X (7 blocks) runs and is demoted to level 1; W (level 0, 7 blocks) arrives with 5 blocks free:
// it could run only by evicting X.
TEST(HysteresisTest, HigherLevelJobThatNeedsAnEvictionDoesNotTakeTheSeat) {
  const CostModel cost = make_cost_model();
  for (bool hysteresis : {false, true}) {
    for (int32_t w_priority : {0, -1}) {
      SCOPED_TRACE(::testing::Message()
                   << (hysteresis ? "hysteresis" : "plain") << " priority " << w_priority);
      Scheduler s(mlfq_config(hysteresis, 1), make_pools(12, 100), cost);
      double now = 0;
      std::vector<JobSpec> jobs = make_jobs({{0, 100, 50}, {0, 100, 5}});
      ASSERT_TRUE(s.add(jobs[0], now).is_ok());
      step(s, cost, now);
      ASSERT_EQ(s.job(0)->level, 1);
      jobs[1].arrival_s = now;
      jobs[1].priority = w_priority;
      ASSERT_TRUE(s.add(jobs[1], now).is_ok());
      ASSERT_EQ(s.job(1)->level, 0);
      ASSERT_LT(s.pools().num_free_device_blocks(), 7);
      const IterationPlan plan = s.schedule(now);
      if (hysteresis && w_priority == 0) {
        EXPECT_EQ(batch_ids(plan), std::vector<JobId>{0});
        EXPECT_TRUE(plan.offload.empty());
        EXPECT_TRUE(plan.drop_for_recompute.empty());
      } else {
        // Without the rule, or for a better client priority class (classes stay strict): X is
        // evicted for W.
        EXPECT_EQ(batch_ids(plan), std::vector<JobId>{1});
        EXPECT_EQ(plan.preempted, std::vector<JobId>{0});
        EXPECT_FALSE(plan.offload.empty());
      }
      s.pools().check_integrity();
    }
  }
}

TEST(HysteresisTest, HigherLevelJobThatFitsTakesTheSeat) {
  const CostModel cost = make_cost_model();
  Scheduler s(mlfq_config(true, 1), make_pools(100, 100), cost);
  double now = 0;
  std::vector<JobSpec> jobs = make_jobs({{0, 100, 50}, {0, 100, 5}});
  ASSERT_TRUE(s.add(jobs[0], now).is_ok());
  step(s, cost, now);
  ASSERT_EQ(s.job(0)->level, 1);
  jobs[1].arrival_s = now;
  ASSERT_TRUE(s.add(jobs[1], now).is_ok());
  const IterationPlan plan = s.schedule(now);
  EXPECT_EQ(batch_ids(plan), std::vector<JobId>{1});
  EXPECT_EQ(plan.preempted, std::vector<JobId>{0});
  EXPECT_TRUE(plan.offload.empty());
}

// Four jobs run at level 1 when four level-0 jobs arrive (plain MLFQ: all join Q1), each
// fitting in free memory. Past the first held seat taken in an iteration, more go only while the
// takers' tokens total at most max_seat_takeover_tokens (512): long prompts come in one per
// iteration, short ones (4 x 100 tokens) and a better client priority class all at once.
TEST(HysteresisTest, LongPromptsTakeHeldSeatsOneIterationAtATime) {
  const CostModel cost = make_cost_model();
  struct Case {
    int32_t prompt_tokens, priority, max_takeover_tokens;
    size_t num_new_in_batch;
  };
  for (const Case& k : {Case{300, 0, 512, 1}, Case{300, 0, -1, 4}, Case{100, 0, 512, 4},
                        Case{300, -1, 512, 4}}) {
    SCOPED_TRACE(::testing::Message() << "prompt " << k.prompt_tokens << " priority "
                                      << k.priority << " limit " << k.max_takeover_tokens);
    SchedulerConfig c = mlfq_config(true, 4);
    c.mlfq.max_seat_takeover_tokens = k.max_takeover_tokens;
    Scheduler s(c, make_pools(4000, 0), cost);
    double now = 0;
    std::vector<JobSpec> jobs = make_jobs({{0, 16, 200}, {0, 16, 200}, {0, 16, 200},
                                           {0, 16, 200}, {0, k.prompt_tokens, 5},
                                           {0, k.prompt_tokens, 5}, {0, k.prompt_tokens, 5},
                                           {0, k.prompt_tokens, 5}});
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.add(jobs[i], now).is_ok());
    for (int i = 0; i < 3; ++i) step(s, cost, now);
    for (JobId id = 0; id < 4; ++id) ASSERT_GE(s.job(id)->level, 1);
    for (int i = 4; i < 8; ++i) {
      jobs[i].arrival_s = now;
      jobs[i].priority = k.priority;
      ASSERT_TRUE(s.add(jobs[i], now).is_ok());
    }
    const IterationPlan plan = step(s, cost, now);
    const std::vector<JobId> ids = batch_ids(plan);
    ASSERT_EQ(ids.size(), 4u);
    EXPECT_EQ(static_cast<size_t>(std::count_if(ids.begin(), ids.end(),
                                                [](JobId id) { return id >= 4; })),
              k.num_new_in_batch);
    EXPECT_EQ(plan.preempted.size(), k.num_new_in_batch);
    if (k.num_new_in_batch == 1) {
      // The next iteration lets the next one in.
      const std::vector<JobId> next = batch_ids(step(s, cost, now));
      EXPECT_EQ(std::count_if(next.begin(), next.end(), [](JobId id) { return id >= 4; }), 2);
    }
  }
}

// Two queues: level 1 has no quantum, so with the rule the running job of two at level 1 would keep
// the seat to the end. Starvation promotion still lifts the waiting one to Q1, from where it takes
// the seat.
TEST(HysteresisTest, StarvationPromotionStillTakesTheSeat) {
  const CostModel cost = make_cost_model();
  for (bool starvation : {false, true}) {
    SCOPED_TRACE(starvation ? "starvation prevention" : "none");
    SchedulerConfig c = mlfq_config(true, 1);
    c.mlfq.num_queues = 2;
    c.mlfq.starvation_prevention = starvation;
    c.mlfq.starvation_threshold_s = 0.3;
    c.mlfq.starvation_quantum_multiple = 0;
    Scheduler s(c, make_pools(4000, 0), cost);
    const std::vector<JobSpec> jobs = make_jobs({{0, 16, 100}, {0, 16, 100}});
    std::map<JobId, double> last_run;
    double longest_wait_s = 0;
    testing::run_until_done(s, cost, jobs,
                            [&](const Scheduler& sch, const IterationPlan& plan, double t) {
                              const std::vector<JobId> ids = batch_ids(plan);
                              for (JobId id : {0, 1}) {
                                if (sch.job(id) == nullptr) continue;
                                if (std::count(ids.begin(), ids.end(), id) != 0) {
                                  last_run[id] = t;
                                } else if (last_run.count(id)) {
                                  longest_wait_s = std::max(longest_wait_s, t - last_run[id]);
                                }
                              }
                            });
    EXPECT_EQ(s.stats().num_finished, 2);
    if (starvation) {
      EXPECT_GT(s.stats().num_promotions, 0);
      EXPECT_LT(longest_wait_s, 0.3 + 0.05);  // threshold + one iteration
    } else {
      EXPECT_GT(longest_wait_s, 1.0);  // the seat holder ran its 100 tokens first
    }
  }
}

std::vector<JobSpec> random_jobs(uint64_t seed, int n, double rate_per_s, int32_t max_prompt) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate_per_s);
  std::lognormal_distribution<double> len(4.0, 1.0);
  std::vector<testing::JobShape> shapes;
  double t = 0;
  for (int i = 0; i < n; ++i) {
    t += gap(rng);
    shapes.push_back({t, std::clamp(static_cast<int32_t>(len(rng)), 1, max_prompt),
                      std::clamp(static_cast<int32_t>(len(rng)), 1, 400)});
  }
  return make_jobs(shapes);
}

// Seeded overload streams, ample device memory, a token budget that never binds: with the rule,
// every job that ran and is left out was displaced by a newcomer of a strictly higher level, and
// kept its KV on the device. Plain LAS breaks that (equal-level reshuffles), so the check has
// teeth.
TEST(HysteresisTest, SeededStreamsPreemptOnlyForAStrictlyHigherLevel) {
  const CostModel cost = make_cost_model();
  for (PolicyKind policy : {PolicyKind::kSkipJoinMlfq, PolicyKind::kMlfq}) {
    for (bool hysteresis : {false, true}) {
      int64_t violations = 0, preemptions = 0;
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        SCOPED_TRACE(::testing::Message() << policy_name(policy) << " seed " << seed
                                          << (hysteresis ? " hysteresis" : " plain"));
        SchedulerConfig c = make_config(policy, KvPolicy::kProactive);
        c.limits = {4, 2048};  // 4 prompts of at most 400 tokens: the token budget never binds
        c.mlfq.preemption_hysteresis = hysteresis;
        c.mlfq.starvation_threshold_s = 0.5;
        c.mlfq.starvation_quantum_multiple = 0;
        Scheduler s(c, make_pools(4000, 100), cost);
        const auto jobs = random_jobs(seed, 100, 40.0, 400);
        std::vector<JobId> previous;
        testing::run_until_done(
            s, cost, jobs, [&](const Scheduler& sch, const IterationPlan& plan, double) {
              const std::vector<JobId> ids = batch_ids(plan);
              for (JobId p : plan.preempted) {
                ++preemptions;
                const Job* pj = sch.job(p);
                ASSERT_NE(pj, nullptr);
                bool displaced = false;
                for (JobId n : ids) {
                  const Job* nj = sch.job(n);
                  if (std::count(previous.begin(), previous.end(), n) == 0 &&
                      nj->spec.priority == pj->spec.priority && nj->level < pj->level) {
                    displaced = true;
                  }
                }
                const bool kept_kv =
                    sch.pools().location(p) == kv::Location::kDevice &&
                    std::none_of(plan.offload.begin(), plan.offload.end(),
                                 [&](const kv::BlockMove& m) { return m.job == p; });
                if (!displaced || !kept_kv) ++violations;
                if (hysteresis) {
                  EXPECT_TRUE(displaced) << "job " << p << " (level " << pj->level << ") preempted";
                  EXPECT_TRUE(kept_kv) << "job " << p;
                }
              }
              previous = ids;
            });
        EXPECT_EQ(s.stats().num_finished, static_cast<int64_t>(jobs.size()));
        EXPECT_EQ(s.pools().num_free_device_blocks(), 4000);
      }
      EXPECT_GT(preemptions, 0) << policy_name(policy);
      if (!hysteresis) {
        EXPECT_GT(violations, 0) << policy_name(policy) << ": the check has no teeth";
      }
    }
  }
}

}  // namespace
}  // namespace fs::sched
