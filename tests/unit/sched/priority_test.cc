// Client priorities (JobSpec::priority, the request's `priority`): a lower value runs first under
// every policy; fcfs never preempts a started job for it; equal priorities change nothing
// (docs/SCHEDULING.md "Client priorities").
#include <algorithm>
#include <map>
#include <vector>

#include <gtest/gtest.h>

#include "sched/policy.h"
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

const PolicyKind kAllPolicies[] = {PolicyKind::kSkipJoinMlfq, PolicyKind::kMlfq, PolicyKind::kFcfs,
                                   PolicyKind::kVllm, PolicyKind::kSrpt};
const PolicyKind kPreemptivePolicies[] = {PolicyKind::kSkipJoinMlfq, PolicyKind::kMlfq,
                                          PolicyKind::kVllm, PolicyKind::kSrpt};

SchedulerConfig one_seq_config(PolicyKind policy) {
  SchedulerConfig c = make_config(policy);
  c.limits.max_seqs = 1;
  return c;
}

// Two waiting jobs of the same shape, job 0 arrived first: the one with the lower priority value
// gets the single batch slot.
std::vector<JobId> first_batch(PolicyKind policy, int32_t priority0, int32_t priority1) {
  const CostModel cost = make_cost_model();
  Scheduler s(one_seq_config(policy), make_pools(100, 100), cost);
  std::vector<JobSpec> jobs = make_jobs({{0, 10, 20}, {0.5, 10, 20}});
  jobs[0].priority = priority0;
  jobs[1].priority = priority1;
  for (const JobSpec& j : jobs) EXPECT_TRUE(s.add(j, 1.0).is_ok());
  return batch_ids(s.schedule(1.0));
}

TEST(PriorityTest, LowerValueIsPickedFirstUnderEveryPolicy) {
  for (PolicyKind p : kAllPolicies) {
    EXPECT_EQ(first_batch(p, 0, -1), (std::vector<JobId>{1})) << policy_name(p);
    EXPECT_EQ(first_batch(p, 3, 2), (std::vector<JobId>{1})) << policy_name(p);
    EXPECT_EQ(first_batch(p, -5, 0), (std::vector<JobId>{0})) << policy_name(p);
  }
}

TEST(PriorityTest, EqualPrioritiesKeepArrivalOrder) {
  for (PolicyKind p : kAllPolicies) {
    EXPECT_EQ(first_batch(p, 0, 0), (std::vector<JobId>{0})) << policy_name(p);
    EXPECT_EQ(first_batch(p, 7, 7), (std::vector<JobId>{0})) << policy_name(p);
  }
}

// The priority class comes before the policy's own key: a job the policy alone would put last
// (a long prompt for skip-join, a long output for srpt, a later arrival) goes first.
TEST(PolicyPriorityTest, PriorityOutranksThePolicyKey) {
  const CostModel cost = make_cost_model();
  MlfqPolicy mlfq(MlfqConfig{}, &cost, /*skip_join=*/true);
  SrptPolicy srpt;
  VllmPolicy vllm;
  FcfsPolicy fcfs;
  Job a, b;
  a.spec = {1, 0.0, 10, 10, 0, 10};
  b.spec = {2, 5.0, 3000, 1000, -1, 1000};
  mlfq.on_arrival(a);
  mlfq.on_arrival(b);
  ASSERT_LT(a.level, b.level);
  EXPECT_LT(mlfq.key(b), mlfq.key(a));
  EXPECT_LT(srpt.key(b), srpt.key(a));
  EXPECT_LT(vllm.key(b), vllm.key(a));
  EXPECT_LT(fcfs.key(b), fcfs.key(a));
  a.started = true;  // fcfs: a started job stays ahead of every waiting one
  EXPECT_LT(fcfs.key(a), fcfs.key(b));
  b.spec.priority = 0;
  EXPECT_LT(mlfq.key(a), mlfq.key(b));
  EXPECT_LT(srpt.key(a), srpt.key(b));
  EXPECT_LT(vllm.key(a), vllm.key(b));
}

// A running job (priority 0) loses its batch slot to a later job with priority -1 that the policy
// alone would run after it (longer prompt and output), and resumes once that one is done.
TEST(PriorityTest, LowerValuePreemptsARunningJobUnderPreemptivePolicies) {
  for (PolicyKind p : kPreemptivePolicies) {
    const CostModel cost = make_cost_model();
    Scheduler s(one_seq_config(p), make_pools(200, 200), cost);
    std::vector<JobSpec> jobs = make_jobs({{0, 10, 30}, {0, 600, 40}});
    jobs[1].priority = -1;
    ASSERT_TRUE(s.add(jobs[0], 0).is_ok());
    double now = 0;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(batch_ids(step(s, cost, now)), (std::vector<JobId>{0}));
    ASSERT_TRUE(s.add(jobs[1], now).is_ok());
    const IterationPlan plan = step(s, cost, now);
    EXPECT_EQ(batch_ids(plan), (std::vector<JobId>{1})) << policy_name(p);
    EXPECT_EQ(plan.preempted, (std::vector<JobId>{0})) << policy_name(p);
    int guard = 0;
    while (s.job(1) != nullptr && ++guard < 1000) {
      EXPECT_EQ(batch_ids(step(s, cost, now)), (std::vector<JobId>{1})) << policy_name(p);
    }
    ASSERT_NE(s.job(0), nullptr);
    EXPECT_EQ(batch_ids(step(s, cost, now)), (std::vector<JobId>{0})) << policy_name(p);
  }
}

// Without priorities the same arrival does not preempt under vllm (FCFS order) or srpt (longer).
TEST(PriorityTest, SameScenarioWithEqualPrioritiesKeepsTheRunningJob) {
  for (PolicyKind p : {PolicyKind::kVllm, PolicyKind::kSrpt}) {
    const CostModel cost = make_cost_model();
    Scheduler s(one_seq_config(p), make_pools(200, 200), cost);
    const std::vector<JobSpec> jobs = make_jobs({{0, 10, 30}, {0, 600, 40}});
    ASSERT_TRUE(s.add(jobs[0], 0).is_ok());
    double now = 0;
    for (int i = 0; i < 3; ++i) step(s, cost, now);
    ASSERT_TRUE(s.add(jobs[1], now).is_ok());
    EXPECT_EQ(batch_ids(step(s, cost, now)), (std::vector<JobId>{0})) << policy_name(p);
  }
}

// fcfs runs to completion: the running job keeps its slot; priority orders the waiting ones.
TEST(PriorityTest, FcfsOrdersWaitingJobsButNeverPreempts) {
  const CostModel cost = make_cost_model();
  Scheduler s(one_seq_config(PolicyKind::kFcfs), make_pools(200, 200), cost);
  std::vector<JobSpec> jobs = make_jobs({{0, 10, 20}, {0, 10, 5}, {0, 10, 5}});
  jobs[2].priority = -1;
  ASSERT_TRUE(s.add(jobs[0], 0).is_ok());
  double now = 0;
  step(s, cost, now);
  ASSERT_TRUE(s.add(jobs[1], now).is_ok());
  ASSERT_TRUE(s.add(jobs[2], now).is_ok());
  std::vector<JobId> order;  // jobs in the order they first run
  for (int guard = 0; s.num_live_jobs() > 0 && guard < 1000; ++guard) {
    for (JobId id : batch_ids(step(s, cost, now))) {
      if (order.empty() || order.back() != id) order.push_back(id);
    }
  }
  EXPECT_EQ(order, (std::vector<JobId>{0, 2, 1}));
  EXPECT_EQ(s.stats().num_preemptions, 0);
}

// Under memory pressure a lower value takes KV from a resident job of a higher value that the
// policy would otherwise keep (it sits in a higher MLFQ queue).
TEST(PriorityTest, LowerValueEvictsHigherValueForMemoryUnderMlfq) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq, KvPolicy::kReactive);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(40, 100), cost);
  std::vector<JobSpec> jobs = make_jobs({{0, 16 * 30, 40}, {0, 16 * 30, 40}});
  jobs[0].priority = 1;
  ASSERT_TRUE(s.add(jobs[0], 0).is_ok());
  double now = 0;
  step(s, cost, now);  // job 0 prefilled: 31 of 40 blocks
  ASSERT_TRUE(s.add(jobs[1], now).is_ok());
  const IterationPlan plan = step(s, cost, now);
  EXPECT_EQ(batch_ids(plan), (std::vector<JobId>{1}));
  ASSERT_FALSE(plan.offload.empty());
  for (const auto& m : plan.offload) EXPECT_EQ(m.job, 0);
  EXPECT_EQ(s.job(0)->state, JobState::kOffloaded);
}

}  // namespace
}  // namespace fs::sched
