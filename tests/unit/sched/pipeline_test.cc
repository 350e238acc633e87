// The pipelined scheduler (Scheduler::set_max_plans_in_flight): several plans outstanding at once,
// as pipeline parallelism keeps them (docs/SCHEDULING.md "Several plans in flight"). Seeded random
// job streams with aborts, for every policy and KV policy: no job is in two outstanding batches, no
// block of an in-flight job is moved, dropped or freed, the pools are never over-committed, every
// job finishes with exactly its tokens.
#include <algorithm>
#include <deque>
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

const PolicyKind kPolicies[] = {PolicyKind::kSkipJoinMlfq, PolicyKind::kMlfq, PolicyKind::kFcfs,
                                PolicyKind::kVllm, PolicyKind::kSrpt};
const KvPolicy kKvPolicies[] = {KvPolicy::kProactive, KvPolicy::kReactive, KvPolicy::kRecompute};

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
  return make_jobs(shapes);
}

bool contains(const std::vector<JobId>& ids, JobId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

struct Outstanding {
  IterationPlan plan;
  double start_s = 0;
};

// What one pipelined run saw.
struct PipelineRun {
  int32_t max_outstanding = 0;
  int64_t num_aborted = 0;
  std::map<JobId, int64_t> sampled;
};

// Drives `s` like a pipelined engine: fills up to `depth` outstanding plans, then updates the
// oldest, checking every new plan against the outstanding ones. Aborts a random job now and then
// (abort_every_n plans; 0: never), often one that is in flight.
PipelineRun run_pipelined(Scheduler& s, const CostModel& cost, const std::vector<JobSpec>& jobs,
                          int32_t depth, uint64_t seed, int abort_every_n) {
  std::mt19937_64 rng(seed * 7919);
  PipelineRun out;
  std::deque<Outstanding> outstanding;
  std::set<JobId> aborted;
  double now = 0;
  size_t next = 0;
  int64_t num_plans = 0;
  for (int64_t it = 0; it < 200000; ++it) {
    for (; next < jobs.size() && jobs[next].arrival_s <= now; ++next) {
      EXPECT_TRUE(s.add(jobs[next], now).is_ok());
    }
    if (next == jobs.size() && s.num_live_jobs() == 0 && outstanding.empty()) break;
    bool progressed = false;
    while (static_cast<int32_t>(outstanding.size()) < depth) {
      // The jobs and blocks of the outstanding plans, as they were when scheduled.
      std::map<JobId, std::vector<kv::BlockId>> in_flight;
      for (const Outstanding& o : outstanding) {
        for (const ScheduledJob& b : o.plan.batch) {
          EXPECT_EQ(in_flight.count(b.id), 0u) << "job " << b.id << " in two outstanding batches";
          in_flight[b.id] = b.block_table;
        }
      }
      const int64_t live_before = s.num_live_jobs();
      IterationPlan plan = s.schedule(now);
      ++num_plans;
      s.pools().check_integrity();
      EXPECT_LE(static_cast<int32_t>(plan.batch.size()), s.config().limits.max_seqs);
      EXPECT_LE(plan.num_batch_tokens(), s.config().limits.max_tokens);
      std::set<kv::BlockId> busy_blocks;
      for (const auto& [id, blocks] : in_flight) {
        // Still alive (aborts wait), still on the device, blocks untouched.
        EXPECT_NE(s.job(id), nullptr) << "in-flight job " << id << " was freed";
        EXPECT_TRUE(s.pools().has_job(id));
        EXPECT_EQ(s.pools().location(id), kv::Location::kDevice) << id;
        EXPECT_EQ(s.pools().table(id).blocks, blocks) << "blocks of in-flight job " << id;
        EXPECT_TRUE(s.job(id)->in_flight);
        busy_blocks.insert(blocks.begin(), blocks.end());
      }
      for (const ScheduledJob& b : plan.batch) {
        EXPECT_EQ(in_flight.count(b.id), 0u) << "job " << b.id << " scheduled while in flight";
        EXPECT_EQ(s.pools().location(b.id), kv::Location::kDevice);
        const Job* j = s.job(b.id);
        EXPECT_EQ(b.num_computed_tokens, j->num_computed_tokens);
        EXPECT_EQ(b.samples_token, b.num_computed_tokens + b.num_new_tokens == j->num_tokens);
      }
      for (const kv::BlockMove& m : plan.offload) {
        EXPECT_EQ(in_flight.count(m.job), 0u) << "offload of in-flight job " << m.job;
        EXPECT_EQ(busy_blocks.count(m.src), 0u);
      }
      for (const kv::BlockMove& m : plan.upload) {
        EXPECT_EQ(in_flight.count(m.job), 0u) << "upload of in-flight job " << m.job;
        EXPECT_EQ(busy_blocks.count(m.dst), 0u) << "upload into a block in use";
      }
      for (const kv::BlockMove& m : plan.newly_allocated) {
        EXPECT_EQ(busy_blocks.count(m.dst), 0u) << "allocation of a block in use";
      }
      for (JobId id : plan.drop_for_recompute) {
        EXPECT_EQ(in_flight.count(id), 0u) << "drop of in-flight job " << id;
      }
      if (::testing::Test::HasFailure()) return out;
      if (plan.batch.empty()) {  // not outstanding: updated at once
        s.update(plan, IterationResult{now, now, {}, {}});
        progressed = progressed || !plan.empty() || s.num_live_jobs() < live_before;  // aborts
        break;
      }
      progressed = true;
      outstanding.push_back({std::move(plan), now});
      out.max_outstanding = std::max(out.max_outstanding, static_cast<int32_t>(outstanding.size()));
      EXPECT_EQ(s.num_plans_in_flight(), static_cast<int32_t>(outstanding.size()));
      if (abort_every_n > 0 && num_plans % abort_every_n == 0) {
        // Abort a job of an outstanding batch (or any live one): it must stay until its update.
        const std::vector<JobId> ids = batch_ids(outstanding.front().plan);
        const JobId victim = ids[rng() % ids.size()];
        if (!aborted.count(victim)) {
          s.abort(victim, now);
          aborted.insert(victim);
        }
      }
    }
    if (outstanding.empty()) {
      EXPECT_TRUE(progressed || next < jobs.size()) << "no progress";
      if (next >= jobs.size()) break;
      now = std::max(now, jobs[next].arrival_s);
      continue;
    }
    Outstanding o = std::move(outstanding.front());
    outstanding.pop_front();
    // A stage's share of the batch's time: the pipeline delivers a batch every 1/depth of it.
    now += cost.iteration_time_s(o.plan) / depth;
    IterationResult r;
    r.start_s = o.start_s;
    r.end_s = now;
    for (const ScheduledJob& b : o.plan.batch) {
      if (b.samples_token && !aborted.count(b.id)) ++out.sampled[b.id];
    }
    s.update(o.plan, r);
    s.pools().check_integrity();
    if (::testing::Test::HasFailure()) return out;
  }
  out.num_aborted = static_cast<int64_t>(aborted.size());
  return out;
}

TEST(SchedulerPipelineTest, OutstandingPlansStayDisjointAndTheirBlocksStayPut) {
  const CostModel cost = make_cost_model();
  for (int32_t depth : {2, 3}) {
    for (PolicyKind policy : kPolicies) {
      for (KvPolicy kv : kKvPolicies) {
        for (uint64_t variant = 0; variant < 6; ++variant) {
          const uint64_t seed = variant % 3 + 1;
          const bool hysteresis = variant >= 3;  // MLFQ policies with and without it
          if (hysteresis && policy != PolicyKind::kSkipJoinMlfq && policy != PolicyKind::kMlfq) {
            continue;
          }
          SCOPED_TRACE(::testing::Message() << "depth " << depth << " " << policy_name(policy)
                                            << " " << kv_policy_name(kv) << " seed " << seed
                                            << (hysteresis ? " hysteresis" : ""));
          SchedulerConfig c = make_config(policy, kv);
          c.mlfq.preemption_hysteresis = hysteresis;
          c.limits = {6, 256};
          c.mlfq.starvation_threshold_s = 0.5;
          c.mlfq.starvation_quantum_multiple = 0;
          // Tight device pool (about 4 long jobs), small host pool: evictions, drops, uploads.
          Scheduler s(c, make_pools(80, 60), cost);
          s.set_max_plans_in_flight(depth);
          const auto jobs = random_jobs(seed, 80, 20.0);
          const PipelineRun run = run_pipelined(s, cost, jobs, depth, seed, /*abort_every_n=*/0);
          ASSERT_FALSE(HasFailure());
          EXPECT_EQ(run.max_outstanding, depth) << "the pipeline never filled";
          // Conservation: every job finished with exactly its tokens; the pools are empty again.
          EXPECT_EQ(s.num_live_jobs(), 0);
          EXPECT_EQ(s.num_plans_in_flight(), 0);
          EXPECT_EQ(s.stats().num_finished, static_cast<int64_t>(jobs.size()));
          for (const JobSpec& j : jobs) EXPECT_EQ(run.sampled.at(j.id), j.max_new_tokens) << j.id;
          EXPECT_EQ(s.pools().num_free_device_blocks(), 80);
          EXPECT_EQ(s.pools().num_free_host_blocks(), 60);
        }
      }
    }
  }
}

TEST(SchedulerPipelineTest, AbortsOfInFlightJobsWaitForTheirUpdate) {
  const CostModel cost = make_cost_model();
  for (KvPolicy kv : kKvPolicies) {
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      SCOPED_TRACE(::testing::Message() << kv_policy_name(kv) << " seed " << seed);
      SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq, kv);
      c.limits = {6, 256};
      Scheduler s(c, make_pools(80, 60), cost);
      s.set_max_plans_in_flight(2);
      const auto jobs = random_jobs(seed, 60, 20.0);
      const PipelineRun run = run_pipelined(s, cost, jobs, 2, seed, /*abort_every_n=*/7);
      ASSERT_FALSE(HasFailure());
      EXPECT_GT(run.num_aborted, 0);
      EXPECT_EQ(s.num_live_jobs(), 0);
      EXPECT_EQ(s.stats().num_finished + s.stats().num_aborted, static_cast<int64_t>(jobs.size()));
      EXPECT_EQ(s.pools().num_free_device_blocks(), 80);
      EXPECT_EQ(s.pools().num_free_host_blocks(), 60);
    }
  }
}

TEST(SchedulerPipelineTest, SpreadsRunnableJobsOverThePlanSlots) {
  const CostModel cost = make_cost_model();
  SchedulerConfig c = make_config(PolicyKind::kSkipJoinMlfq);
  c.limits = {16, 4096};
  Scheduler s(c, make_pools(400, 0), cost);
  s.set_max_plans_in_flight(2);
  for (const JobSpec& j : make_jobs({{0, 10, 50}, {0, 10, 50}, {0, 10, 50}, {0, 10, 50},
                                     {0, 10, 50}})) {
    ASSERT_TRUE(s.add(j, 0).is_ok());
  }
  const IterationPlan a = s.schedule(0);
  const IterationPlan b = s.schedule(0);
  EXPECT_EQ(a.batch.size(), 3u);  // ceil(5 / 2)
  EXPECT_EQ(b.batch.size(), 2u);  // the rest
  for (JobId id : batch_ids(b)) EXPECT_FALSE(contains(batch_ids(a), id));
  EXPECT_EQ(s.stats().num_jobs_by_state[static_cast<int>(JobState::kRunning)], 5);
  // The oldest plan first; then its jobs can run again while b is in flight.
  s.update(a, IterationResult{0, 0.02, {}, {}});
  const IterationPlan c2 = s.schedule(0.02);
  EXPECT_EQ(batch_ids(c2), batch_ids(a));
  EXPECT_EQ(s.stats().num_preemptions, 0);
}

TEST(SchedulerPipelineTest, UpdateOutOfOrderIsABug) {
  const CostModel cost = make_cost_model();
  Scheduler s(make_config(PolicyKind::kSkipJoinMlfq), make_pools(100, 0), cost);
  s.set_max_plans_in_flight(2);
  for (const JobSpec& j : make_jobs({{0, 10, 5}, {0, 10, 5}})) ASSERT_TRUE(s.add(j, 0).is_ok());
  const IterationPlan a = s.schedule(0);
  const IterationPlan b = s.schedule(0);
  ASSERT_FALSE(a.batch.empty());
  ASSERT_FALSE(b.batch.empty());
  EXPECT_DEATH(s.update(b, IterationResult{0, 0.02, {}, {}}), "out of order");
  EXPECT_DEATH((void)s.schedule(0), "plans outstanding");
}

}  // namespace
}  // namespace fs::sched
