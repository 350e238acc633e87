// Scenario tests: each policy and KV policy does what its definition says.
#include "sched/scheduler.h"

#include <algorithm>
#include <map>

#include <gtest/gtest.h>

#include "sched_test_util.h"

namespace fs::sched {
namespace {

using testing::batch_ids;
using testing::make_config;
using testing::make_cost_model;
using testing::make_jobs;
using testing::make_pools;
using testing::run_until_done;
using testing::step;

bool contains(const std::vector<JobId>& v, JobId id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

// Per job: the times at which it finished (last token).
std::map<JobId, double> finish_times(Scheduler& s, const CostModel& cost,
                                     const std::vector<JobSpec>& jobs) {
  std::map<JobId, int32_t> generated;
  std::map<JobId, double> finish;
  run_until_done(s, cost, jobs, [&](const Scheduler&, const IterationPlan& plan, double now) {
    const double end = now + cost.iteration_time_s(plan);
    for (const auto& b : plan.batch) {
      if (b.samples_token && ++generated[b.id] == jobs[b.id].max_new_tokens) finish[b.id] = end;
    }
  });
  return finish;
}

TEST(SchedulerTest, BatchRespectsMaxSeqsAndTokenBudget) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq);
  c.limits = {4, 100};
  Scheduler s(c, make_pools(100, 100), cost);
  for (const JobSpec& j : make_jobs({{0, 30, 5}, {0, 30, 5}, {0, 30, 5}, {0, 30, 5}, {0, 30, 5}})) {
    ASSERT_TRUE(s.add(j, 0).is_ok());
  }
  const IterationPlan plan = s.schedule(0);
  ASSERT_EQ(plan.batch.size(), 4u);
  EXPECT_EQ(plan.num_batch_tokens(), 100);
  EXPECT_EQ(plan.batch[3].num_new_tokens, 10);  // chunked prefill: what the budget leaves
  EXPECT_FALSE(plan.batch[3].samples_token);
  EXPECT_TRUE(plan.batch[0].samples_token);
}

TEST(SchedulerTest, ChunksLongPromptUnderTokenBudget) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kFcfs);
  c.limits = {4, 64};
  Scheduler s(c, make_pools(100, 0), cost);
  ASSERT_TRUE(s.add(make_jobs({{0, 150, 2}})[0], 0).is_ok());
  double now = 0;
  std::vector<int32_t> chunks;
  for (int i = 0; i < 4; ++i) {
    const IterationPlan plan = step(s, cost, now);
    ASSERT_EQ(plan.batch.size(), 1u);
    chunks.push_back(plan.batch[0].num_new_tokens);
  }
  EXPECT_EQ(chunks, (std::vector<int32_t>{64, 64, 22, 1}));
  EXPECT_EQ(s.job(0), nullptr);  // 2 tokens generated: finished
}

// A prefill chunk ahead of running decodes in the order leaves each of them a token of the budget:
// chunked prefill must not stall decodes (before, the chunk took the whole budget).
TEST(SchedulerTest, PrefillChunkLeavesBudgetForDecodesBehindIt) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq);
  c.limits = {4, 64};
  Scheduler s(c, make_pools(100, 100), cost);
  std::vector<JobSpec> jobs = make_jobs({{0, 10, 50}, {0, 10, 50}, {0, 300, 5}});
  jobs[2].priority = -1;  // the long prompt is first in the order
  ASSERT_TRUE(s.add(jobs[0], 0).is_ok());
  ASSERT_TRUE(s.add(jobs[1], 0).is_ok());
  double now = 0;
  step(s, cost, now);  // both prefilled: they decode from now on
  ASSERT_TRUE(s.add(jobs[2], now).is_ok());
  const IterationPlan plan = s.schedule(now);
  ASSERT_EQ(plan.batch.size(), 3u);
  EXPECT_EQ(plan.batch[0].id, 2);
  EXPECT_EQ(plan.batch[0].num_new_tokens, 62);  // 64 less a token for each of the two decodes
  EXPECT_EQ(plan.batch[1].num_new_tokens, 1);
  EXPECT_EQ(plan.batch[2].num_new_tokens, 1);
  EXPECT_EQ(plan.num_batch_tokens(), 64);
}

TEST(SchedulerTest, FcfsRunsToCompletionWithoutPreemption) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kFcfs);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(100, 100), cost);
  const auto jobs = make_jobs({{0, 10, 50}, {0.1, 10, 1}});
  const auto finish = finish_times(s, cost, jobs);
  EXPECT_LT(finish.at(0), finish.at(1));
  EXPECT_EQ(s.stats().num_preemptions, 0);
}

TEST(SchedulerTest, FcfsReservesWholeSequenceKvAtAdmission) {
  const CostModel cost = make_cost_model();
  Scheduler s(make_config(PolicyKind::kFcfs), make_pools(10, 0), cost);
  for (const JobSpec& j : make_jobs({{0, 16, 64}, {0, 16, 64}, {0, 1, 1}})) {
    ASSERT_TRUE(s.add(j, 0).is_ok());
  }
  const IterationPlan plan = s.schedule(0);
  EXPECT_EQ(batch_ids(plan), (std::vector<JobId>{0, 1}));  // job 2 waits behind: FCFS
  EXPECT_EQ(s.pools().num_blocks(0), 5);                   // (16 + 64) / 16
}

TEST(SchedulerTest, FcfsCanReserveAFixedMaximumLengthLikeOrca) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kFcfs);
  c.fcfs_reserve_tokens = 160;  // 10 blocks per job
  Scheduler s(c, make_pools(25, 0), cost);
  for (const JobSpec& j : make_jobs({{0, 16, 16}, {0, 16, 16}, {0, 16, 16}})) {
    ASSERT_TRUE(s.add(j, 0).is_ok());
  }
  const IterationPlan plan = s.schedule(0);
  EXPECT_EQ(batch_ids(plan), (std::vector<JobId>{0, 1}));
  EXPECT_EQ(s.pools().num_blocks(0), 10);
}

TEST(SchedulerTest, VllmStopsAtFirstJobThatDoesNotFit) {
  const CostModel cost = make_cost_model();
  Scheduler s(make_config(PolicyKind::kVllm, KvPolicy::kRecompute), make_pools(6, 0), cost);
  for (const JobSpec& j : make_jobs({{0, 48, 10}, {0, 64, 10}, {0, 8, 10}})) {
    ASSERT_TRUE(s.add(j, 0).is_ok());
  }
  const IterationPlan plan = s.schedule(0);
  EXPECT_EQ(batch_ids(plan), (std::vector<JobId>{0}));  // job 1 needs 4 of 3 free; job 2 waits
}

TEST(SchedulerTest, VllmPreemptsNewestJobWhenMemoryRunsOut) {
  for (KvPolicy kv : {KvPolicy::kRecompute, KvPolicy::kReactive}) {
    const CostModel cost = make_cost_model();
    Scheduler s(make_config(PolicyKind::kVllm, kv), make_pools(4, 8), cost);
    const auto jobs = make_jobs({{0, 16, 40}, {0, 16, 40}});
    std::vector<JobId> evicted;
    run_until_done(s, cost, jobs, [&](const Scheduler&, const IterationPlan& plan, double) {
      for (JobId id : plan.drop_for_recompute) evicted.push_back(id);
      for (const auto& m : plan.offload) evicted.push_back(m.job);
      EXPECT_FALSE(contains(plan.preempted, 0) && contains(evicted, 0));
    });
    ASSERT_FALSE(evicted.empty()) << kv_policy_name(kv);
    for (JobId id : evicted) EXPECT_EQ(id, 1) << "only the newest job is preempted";
    EXPECT_EQ(s.stats().num_finished, 2);
  }
}

TEST(SchedulerTest, SrptRunsShortestRemainingFirst) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSrpt);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(100, 100), cost);
  const auto jobs = make_jobs({{0, 10, 100}, {0.05, 10, 5}});
  const auto finish = finish_times(s, cost, jobs);
  EXPECT_LT(finish.at(1), finish.at(0));
  EXPECT_GE(s.stats().num_preemptions, 1);
}

TEST(SchedulerTest, SkipJoinPreemptsLongRunningJobForNewShortJob) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(100, 100), cost);
  const auto jobs = make_jobs({{0, 10, 200}, {1.0, 10, 3}});
  const auto finish = finish_times(s, cost, jobs);
  EXPECT_LT(finish.at(1), finish.at(0));
  EXPECT_LT(finish.at(1), 1.2);
  EXPECT_GE(s.stats().num_preemptions, 1);
}

TEST(SchedulerTest, SkipJoinDemotesLessThanPlainMlfqForLongPrompts) {
  const CostModel cost = make_cost_model();
  int64_t demotions[2];
  for (int plain = 0; plain < 2; ++plain) {
    Scheduler s(make_config(plain ? PolicyKind::kMlfq : PolicyKind::kSkipJoinMlfq),
                make_pools(200, 0), cost);
    run_until_done(s, cost, make_jobs({{0, 1128, 30}, {0, 900, 30}}));
    demotions[plain] = s.stats().num_demotions;
  }
  // Both prompts skip Q1..Q4 (prefill 97-120 ms > 80 ms): plain MLFQ demotes each of them 3+ more.
  EXPECT_GE(demotions[1] - demotions[0], 6) << demotions[0] << " vs " << demotions[1];
}

TEST(SchedulerTest, StarvedJobIsPromotedToTopQueue) {
  const CostModel cost = make_cost_model();
  double max_gap_s[2];
  for (int with_starvation = 0; with_starvation < 2; ++with_starvation) {
    SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq);
    c.limits.max_seqs = 1;
    c.mlfq.starvation_threshold_s = 0.5;
    c.mlfq.starvation_quantum_multiple = 0;
    c.mlfq.starvation_prevention = with_starvation == 1;
    Scheduler s(c, make_pools(400, 0), cost);
    std::vector<testing::JobShape> shapes = {{0, 10, 400}};
    for (int i = 0; i < 60; ++i) shapes.push_back({0.3 + 0.05 * i, 10, 3});
    double last_service = 0;
    max_gap_s[with_starvation] = 0;
    run_until_done(
        s, cost, make_jobs(shapes), [&](const Scheduler&, const IterationPlan& plan, double now) {
          if (contains(batch_ids(plan), 0)) {
            max_gap_s[with_starvation] = std::max(max_gap_s[with_starvation], now - last_service);
            last_service = now + cost.iteration_time_s(plan);
          }
        });
    if (with_starvation) {
      EXPECT_GT(s.stats().num_promotions, 0);
    }
  }
  EXPECT_GT(max_gap_s[0], 2.0);   // without: the long job waits out the whole stream
  EXPECT_LT(max_gap_s[1], 0.65);  // with: threshold + about one iteration
}

TEST(SchedulerTest, NeverRunJobKeepsSkipJoinLevelUntilItReallyStarves) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq);
  c.limits.max_seqs = 1;
  c.mlfq.starvation_check_interval_iterations = 1;
  Scheduler s(c, make_pools(200, 0), cost);
  const auto jobs = make_jobs({{0, 10, 500}, {0, 1128, 5}});
  ASSERT_TRUE(s.add(jobs[0], 0).is_ok());
  ASSERT_TRUE(s.add(jobs[1], 0).is_ok());
  EXPECT_EQ(s.job(1)->level, 4);
  double now = 0;
  for (;;) {
    IterationPlan plan = s.schedule(now);
    if (contains(batch_ids(plan), 1)) break;
    IterationResult r{now, now + cost.iteration_time_s(plan), {}, {}};
    s.update(plan, r);
    now = r.end_s;
    ASSERT_LT(now, 3.0);
  }
  EXPECT_EQ(s.job(1)->level, 4);
  EXPECT_EQ(s.stats().num_promotions, 0);
}

TEST(SchedulerTest, HostFullFallsBackToRecompute) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq, KvPolicy::kReactive);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(10, 1), cost);  // one job fits (9 blocks), two do not
  bool dropped = false;
  run_until_done(s, cost, make_jobs({{0, 30, 100}, {0.5, 30, 100}}),
                 [&](const Scheduler&, const IterationPlan& plan, double) {
                   dropped |= !plan.drop_for_recompute.empty();
                 });
  EXPECT_TRUE(dropped);
  EXPECT_GE(s.stats().num_drops, 1);
  EXPECT_GT(s.stats().num_recomputed_tokens, 0);
  EXPECT_EQ(s.stats().num_finished, 2);
}

// Several started jobs that rotate (MLFQ) in a device pool that holds about three of them.
std::vector<JobSpec> rotating_jobs() {
  return make_jobs({{0, 48, 120}, {0, 48, 120}, {0, 48, 120}, {0, 48, 120}, {0.2, 20, 30}});
}

TEST(SchedulerTest, ProactivePlannerKeepsHeadroomOutsideTheWindow) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq, KvPolicy::kProactive);
  c.limits.max_seqs = 1;
  c.kv_headroom_blocks = 4;
  c.kv_upload_lookahead_jobs = 1;
  Scheduler s(c, make_pools(16, 100), cost);
  int64_t proactive_uploads = 0, proactive_offloads = 0;
  run_until_done(
      s, cost, rotating_jobs(), [&](const Scheduler& sch, const IterationPlan& plan, double) {
        proactive_uploads += static_cast<int64_t>(plan.upload.size()) - plan.num_blocking_upload;
        proactive_offloads += static_cast<int64_t>(plan.offload.size()) - plan.num_blocking_offload;
        if (sch.pools().num_free_device_blocks() >= 4) return;
        // Short of headroom: then every resident job is in the batch or the one-job window.
        const auto order = sch.priority_order();
        std::vector<JobId> protected_ids = batch_ids(plan);
        for (JobId id : order) {
          if (!contains(protected_ids, id)) {
            protected_ids.push_back(id);
            break;
          }
        }
        for (JobId id : order) {
          if (sch.pools().has_job(id) && sch.pools().location(id) == kv::Location::kDevice) {
            EXPECT_TRUE(contains(protected_ids, id)) << "job " << id;
          }
        }
      });
  EXPECT_GT(proactive_offloads, 0);
  EXPECT_GT(proactive_uploads, 0);
}

TEST(SchedulerTest, ReactivePlannerSwapsOnlyOnDemand) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq, KvPolicy::kReactive);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(16, 100), cost);
  int64_t swapped = 0;
  run_until_done(s, cost, rotating_jobs(),
                 [&](const Scheduler&, const IterationPlan& plan, double) {
                   EXPECT_EQ(plan.num_blocking_upload, static_cast<int32_t>(plan.upload.size()));
                   EXPECT_EQ(plan.num_blocking_offload, static_cast<int32_t>(plan.offload.size()));
                   for (const auto& m : plan.upload) EXPECT_TRUE(contains(batch_ids(plan), m.job));
                   swapped += static_cast<int64_t>(plan.upload.size() + plan.offload.size());
                 });
  EXPECT_GT(swapped, 0);
}

TEST(SchedulerTest, RecomputePlannerNeverSwaps) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq, KvPolicy::kRecompute);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(16, 100), cost);
  run_until_done(s, cost, rotating_jobs(),
                 [&](const Scheduler&, const IterationPlan& plan, double) {
                   EXPECT_TRUE(plan.upload.empty());
                   EXPECT_TRUE(plan.offload.empty());
                 });
  EXPECT_GT(s.stats().num_drops, 0);
  EXPECT_EQ(s.stats().num_finished, 5);
}

// The swap budget (SchedulerConfig::swap_budget_fraction): with swaps as slow as a forward, a
// preemptive MLFQ would block on swaps most of the time; with the budget the blocking swap time
// stays a small fraction of the run and every job still finishes.
TEST(SchedulerTest, SwapBudgetBoundsBlockingSwapTime) {
  CostModelSpec spec = make_cost_model().spec();
  spec.swap_bandwidth_bytes_per_s = 1e6;  // one 16 KB block: 16 ms, about a decode step
  const CostModel cost = *CostModel::from_spec(spec);
  auto run = [&](double fraction, double* blocking_s, double* total_s) {
    SchedulerConfig c = make_config(PolicyKind::kMlfq, KvPolicy::kReactive);
    c.limits.max_seqs = 4;
    c.swap_budget_fraction = fraction;
    c.swap_credit_max_s = 0.05;
    // Plain LAS thrashes here; the hysteresis alone more than halves the blocking swaps.
    c.mlfq.preemption_hysteresis = false;
    Scheduler s(c, make_pools(12, 200), cost);
    std::vector<testing::JobShape> shapes;
    for (int i = 0; i < 16; ++i) shapes.push_back({0.05 * i, 40, 40 + 10 * (i % 3)});
    *blocking_s = *total_s = 0;
    run_until_done(s, cost, make_jobs(shapes), [&](const Scheduler&, const IterationPlan& plan, double) {
      *blocking_s += cost.swap_time_s(cost.block_bytes() * (plan.num_blocking_offload + plan.num_blocking_upload));
      *total_s += cost.iteration_time_s(plan);
    });
    EXPECT_EQ(s.stats().num_finished, 16);
  };
  double blocking_off, total_off, blocking_on, total_on;
  run(0, &blocking_off, &total_off);
  run(0.05, &blocking_on, &total_on);
  std::printf("blocking swaps: %.3f of %.3f s without the budget, %.3f of %.3f s with it\n", blocking_off,
              total_off, blocking_on, total_on);
  EXPECT_GT(blocking_off, 0.2 * total_off);  // the scenario does thrash without the budget
  EXPECT_LT(blocking_on, 0.5 * blocking_off);
  EXPECT_LT(total_on, total_off);
}

TEST(SchedulerTest, AbortReleasesBlocksAtNextSchedule) {
  const CostModel cost = make_cost_model();
  Scheduler s(make_config(PolicyKind::kSkipJoinMlfq), make_pools(20, 0), cost);
  ASSERT_TRUE(s.add(make_jobs({{0, 100, 50}})[0], 0).is_ok());
  double now = 0;
  step(s, cost, now);
  EXPECT_EQ(s.pools().num_free_device_blocks(), 13);
  s.abort(0, now);
  s.abort(42, now);  // unknown: ignored
  const IterationPlan plan = s.schedule(now);
  EXPECT_TRUE(plan.batch.empty());
  EXPECT_EQ(s.pools().num_free_device_blocks(), 20);
  EXPECT_EQ(s.stats().num_aborted, 1);
  s.pools().check_integrity();
}

TEST(SchedulerTest, UpdateFinishesJobsTheEngineStopped) {
  const CostModel cost = make_cost_model();
  Scheduler s(make_config(PolicyKind::kFcfs), make_pools(20, 0), cost);
  ASSERT_TRUE(s.add(make_jobs({{0, 10, 50}, {0, 10, 50}})[0], 0).is_ok());
  ASSERT_TRUE(s.add(make_jobs({{0, 10, 50}, {0, 10, 50}})[1], 0).is_ok());
  const IterationPlan plan = s.schedule(0);
  IterationResult r{0, 0.02, {{0, 5, false}, {1, 0, true}}, {0}};  // 0 hit EOS, 1 failed
  s.update(plan, r);
  EXPECT_EQ(s.num_live_jobs(), 0);
  EXPECT_EQ(s.pools().num_free_device_blocks(), 20);
}

TEST(SchedulerTest, StatsCountJobsByStateLevelAndPool) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq);
  c.limits.max_seqs = 1;
  Scheduler s(c, make_pools(50, 10), cost);
  for (const JobSpec& j : make_jobs({{0, 10, 5}, {0, 10, 5}, {0, 10, 5}})) {
    ASSERT_TRUE(s.add(j, 0).is_ok());
  }
  (void)s.schedule(0);
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.num_live_jobs, 3);
  EXPECT_EQ(st.num_jobs_by_state[static_cast<int>(JobState::kRunning)], 1);
  EXPECT_EQ(st.num_jobs_by_state[static_cast<int>(JobState::kWaiting)], 2);
  ASSERT_EQ(st.queue_lengths.size(), 2u);  // 10-token prompts: 20 ms prefill joins Q2 (level 1)
  EXPECT_EQ(st.queue_lengths[1], 3);
  EXPECT_EQ(st.device_blocks_used, 1);
  EXPECT_EQ(st.device_blocks_total, 50);
  EXPECT_EQ(st.host_blocks_total, 10);
}

TEST(SchedulerTest, RejectsJobsItCanNeverRunOrAlreadyHas) {
  const CostModel cost = make_cost_model();
  Scheduler s(make_config(PolicyKind::kSkipJoinMlfq), make_pools(4, 0), cost);
  EXPECT_EQ(s.add(make_jobs({{0, 60, 10}})[0], 0).code(), StatusCode::kOutOfRange);  // 5 blocks
  EXPECT_TRUE(s.add(make_jobs({{0, 10, 10}})[0], 0).is_ok());
  EXPECT_EQ(s.add(make_jobs({{0, 10, 10}})[0], 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.add(make_jobs({{0, 0, 10}, {0, 0, 10}})[1], 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.num_live_jobs(), 1);
}

}  // namespace
}  // namespace fs::sched
