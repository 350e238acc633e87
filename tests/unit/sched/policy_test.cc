#include "sched/policy.h"

#include <cmath>

#include <gtest/gtest.h>

#include "sched_test_util.h"

namespace fs::sched {
namespace {

using testing::make_cost_model;

TEST(MlfqPolicyTest, QuantaGrowGeometricallyAndLastQueueIsUnbounded) {
  const CostModel cost = make_cost_model();
  MlfqConfig c;
  c.num_queues = 4;
  MlfqPolicy p(c, &cost, true);
  EXPECT_DOUBLE_EQ(p.quantum_s(0), 0.010);
  EXPECT_DOUBLE_EQ(p.quantum_s(1), 0.020);
  EXPECT_DOUBLE_EQ(p.quantum_s(2), 0.040);
  EXPECT_TRUE(std::isinf(p.quantum_s(3)));
}

// A deep level's starvation wait (50 x a quantum of minutes) is capped, so a long job under endless
// overload is promoted before a request timeout (the 10,000-request soak hit 600 s without it).
TEST(MlfqPolicyTest, StarvationWaitIsCappedAtDeepLevels) {
  const CostModel cost = make_cost_model();
  MlfqConfig c;  // q1 10 ms, ratio 2, multiple 50, threshold 3 s
  c.starvation_max_wait_s = 0;
  Job job;
  job.level = 12;  // quantum 40.96 s: 50 x = 2048 s
  job.idle_since_s = 100;
  EXPECT_DOUBLE_EQ(MlfqPolicy(c, &cost, true).starvation_deadline_s(job), 100 + 50 * 0.010 * 4096);
  c.starvation_max_wait_s = 120;
  EXPECT_DOUBLE_EQ(MlfqPolicy(c, &cost, true).starvation_deadline_s(job), 220);
  job.level = 1;  // 50 x 20 ms = 1 s: the 3 s threshold still rules
  EXPECT_DOUBLE_EQ(MlfqPolicy(c, &cost, true).starvation_deadline_s(job), 103);
  EXPECT_DOUBLE_EQ(MlfqConfig{}.starvation_max_wait_s, 120);  // the default
}

TEST(MlfqPolicyTest, SkipJoinPlacesJobInHighestQueueCoveringItsPrefill) {
  const CostModel cost = make_cost_model();
  MlfqPolicy p(MlfqConfig{}, &cost, true);
  struct Case {
    int32_t prompt_tokens;
    int32_t level;  // quanta 10, 20, 40, 80, 160 ms
  };
  const Case cases[] = {{1, 1}, {128, 1}, {328, 2}, {528, 3}, {628, 3}, {1128, 4}, {3000, 5}};
  for (const Case& c : cases) {
    EXPECT_EQ(p.join_level(c.prompt_tokens), c.level) << c.prompt_tokens << " tokens";
    EXPECT_GE(p.quantum_s(p.join_level(c.prompt_tokens)), cost.prefill_time_s(c.prompt_tokens));
    if (c.level > 0) {
      EXPECT_LT(p.quantum_s(c.level - 1), cost.prefill_time_s(c.prompt_tokens));
    }
  }
}

TEST(MlfqPolicyTest, SkipJoinIsCappedAtLastQueue) {
  const CostModel cost = make_cost_model();
  MlfqConfig c;
  c.num_queues = 3;
  MlfqPolicy p(c, &cost, true);
  EXPECT_EQ(p.join_level(1128), 2);
}

TEST(MlfqPolicyTest, PlainMlfqJoinsTopQueue) {
  const CostModel cost = make_cost_model();
  MlfqPolicy p(MlfqConfig{}, &cost, false);
  Job j;
  j.spec.num_prompt_tokens = 1128;
  p.on_arrival(j);
  EXPECT_EQ(j.level, 0);
}

TEST(MlfqPolicyTest, DemotesAfterQuantumExpiresAndResetsAttainedService) {
  const CostModel cost = make_cost_model();
  MlfqPolicy p(MlfqConfig{}, &cost, false);
  Job j;
  p.on_arrival(j);
  EXPECT_FALSE(p.on_served(j, 0.006));
  EXPECT_EQ(j.level, 0);
  EXPECT_TRUE(p.on_served(j, 0.006));  // 12 ms > 10 ms
  EXPECT_EQ(j.level, 1);
  EXPECT_EQ(j.attained_in_level_s, 0);
  EXPECT_EQ(j.num_demotions, 1);
}

TEST(MlfqPolicyTest, OrdersByLevelThenArrival) {
  const CostModel cost = make_cost_model();
  MlfqPolicy p(MlfqConfig{}, &cost, true);
  Job a, b, c;
  a.spec = {1, 0.0, 10, 10, 0, {}};
  a.level = 2;
  b.spec = {2, 1.0, 10, 10, 0, {}};
  b.level = 1;
  c.spec = {3, 2.0, 10, 10, 0, {}};
  c.level = 1;
  EXPECT_LT(p.key(b), p.key(c));
  EXPECT_LT(p.key(c), p.key(a));
}

TEST(MlfqPolicyTest, StarvationDeadlineIsThresholdOrMultipleOfQuantum) {
  const CostModel cost = make_cost_model();
  MlfqConfig c;
  c.starvation_threshold_s = 3;
  c.starvation_quantum_multiple = 10;
  MlfqPolicy p(c, &cost, true);
  Job j;
  j.idle_since_s = 100;
  j.level = 0;
  EXPECT_DOUBLE_EQ(p.starvation_deadline_s(j), 103);
  j.level = 10;  // quantum 10.24 s
  EXPECT_NEAR(p.starvation_deadline_s(j), 100 + 102.4, 1e-9);
}

TEST(SrptPolicyTest, OrdersByRemainingOracleTokens) {
  SrptPolicy p;
  Job a, b;
  a.spec = {1, 0.0, 10, 100, 0, 100};
  b.spec = {2, 5.0, 10, 50, 0, 50};
  EXPECT_LT(p.key(b), p.key(a));
  a.num_generated_tokens = 60;
  EXPECT_LT(p.key(a), p.key(b));
}

TEST(PolicyTest, FcfsAndVllmOrderByArrival) {
  FcfsPolicy f;
  VllmPolicy v;
  Job a, b;
  a.spec = {7, 1.0, 10, 1000, 0, {}};
  b.spec = {3, 2.0, 10, 1, 0, {}};
  EXPECT_LT(f.key(a), f.key(b));
  EXPECT_LT(v.key(a), v.key(b));
  EXPECT_TRUE(f.run_to_completion());
  EXPECT_FALSE(v.run_to_completion());
}

TEST(SchedulerConfigTest, ParsesNamesAndValidates) {
  EXPECT_EQ(*parse_policy("skip-join-mlfq"), PolicyKind::kSkipJoinMlfq);
  EXPECT_EQ(*parse_policy("vllm"), PolicyKind::kVllm);
  EXPECT_FALSE(parse_policy("lifo").is_ok());
  EXPECT_EQ(*parse_kv_policy("recompute"), KvPolicy::kRecompute);
  SchedulerConfig c;
  EXPECT_TRUE(c.validate().is_ok()) << c.validate().to_string();
  c.limits.max_seqs = 0;
  EXPECT_FALSE(c.validate().is_ok());
  c = SchedulerConfig{};
  c.mlfq.ratio = 0.5;
  EXPECT_FALSE(c.validate().is_ok());
}

}  // namespace
}  // namespace fs::sched
