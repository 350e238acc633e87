// Ordering policies: which job goes first. A policy only orders jobs and moves them between MLFQ
// levels; what fits in memory is the KvPlanner's business and how much runs per iteration is the
// BatchLimits' (STYLE.md habit 4).
#pragma once

#include <compare>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "sched/cost_model.h"
#include "sched/job.h"
#include "sched/scheduler_config.h"

namespace fs::sched {

// Lower sorts first (= higher priority): the client's priority class, then the policy's own key
// (major), ties broken by arrival, then id.
struct PriorityKey {
  int64_t priority = 0;  // JobSpec::priority; fcfs puts started jobs before every class
  int64_t major = 0;
  double arrival_s = 0;
  JobId id = 0;
  auto operator<=>(const PriorityKey&) const = default;
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual PolicyKind kind() const = 0;
  virtual PriorityKey key(const Job& job) const = 0;
  // Sets the job's initial level.
  virtual void on_arrival(Job& job) const = 0;
  // The job ran in an iteration of duration_s; grows its attained service and demotes it past its
  // quantum. Returns true if it was demoted.
  virtual bool on_served(Job& job, double duration_s) const = 0;
  // Run-to-completion policies never evict a running job for another and reserve the job's whole
  // KV (prompt + max_new_tokens) when it is admitted (Orca).
  virtual bool run_to_completion() const { return false; }
  // Stop filling the batch at the first job that does not fit (FCFS head-of-line, as vLLM and
  // Orca); otherwise skip it and try the next one.
  virtual bool stops_at_unfit_job() const { return false; }
  virtual bool uses_starvation_prevention() const { return false; }
  // When the idle job counts as starved (only read if uses_starvation_prevention()).
  virtual double starvation_deadline_s(const Job& job) const {
    return job.idle_since_s + std::numeric_limits<double>::infinity();
  }
};

// Skip-join MLFQ (paper section 4.1) and plain MLFQ (skip_join = false: every job joins Q1).
class MlfqPolicy final : public Policy {
 public:
  MlfqPolicy(const MlfqConfig& config, const CostModel* cost_model, bool skip_join);
  PolicyKind kind() const override {
    return skip_join_ ? PolicyKind::kSkipJoinMlfq : PolicyKind::kMlfq;
  }
  PriorityKey key(const Job& job) const override;
  void on_arrival(Job& job) const override;
  bool on_served(Job& job, double duration_s) const override;
  bool uses_starvation_prevention() const override { return config_.starvation_prevention; }
  // idle_since + max(starvation_threshold_s, starvation_quantum_multiple * quantum of its level),
  // the last level counting as the one above it (DESIGN.md: "a multiple of its queue's quantum").
  double starvation_deadline_s(const Job& job) const override;

  // Quantum of level i (0-based): q1 * ratio^i; the last level's is infinite.
  double quantum_s(int32_t level) const;
  // The level a job with this prompt joins: the highest whose quantum covers the predicted prefill
  // time at batch size 1 (0 for plain MLFQ).
  int32_t join_level(int32_t num_prompt_tokens) const;

 private:
  MlfqConfig config_;
  const CostModel* cost_model_;  // not owned; outlives the policy
  bool skip_join_;
};

// Orca: iteration-level batching, FCFS, run to completion. Client priorities order the jobs that
// have not started; a started job keeps its place ahead of them (it is never preempted), which with
// equal priorities is plain arrival order: jobs start only in order.
class FcfsPolicy final : public Policy {
 public:
  static constexpr int64_t kStartedClass = std::numeric_limits<int64_t>::min();
  PolicyKind kind() const override { return PolicyKind::kFcfs; }
  PriorityKey key(const Job& job) const override {
    return {job.started ? kStartedClass : job.spec.priority, 0, job.spec.arrival_s, job.spec.id};
  }
  void on_arrival(Job& job) const override { job.level = 0; }
  bool on_served(Job&, double) const override { return false; }
  bool run_to_completion() const override { return true; }
  bool stops_at_unfit_job() const override { return true; }
};

// vLLM: FCFS, KV allocated on demand; when memory runs out the newest jobs are preempted (swap or
// recompute, per KvPolicy).
class VllmPolicy final : public Policy {
 public:
  PolicyKind kind() const override { return PolicyKind::kVllm; }
  PriorityKey key(const Job& job) const override {
    return {job.spec.priority, 0, job.spec.arrival_s, job.spec.id};
  }
  void on_arrival(Job& job) const override { job.level = 0; }
  bool on_served(Job&, double) const override { return false; }
  bool stops_at_unfit_job() const override { return true; }
};

// Preemptive shortest-remaining-processing-time, told the true output length (an oracle; the
// lower bound skip-join MLFQ approximates).
class SrptPolicy final : public Policy {
 public:
  PolicyKind kind() const override { return PolicyKind::kSrpt; }
  PriorityKey key(const Job& job) const override {
    return {job.spec.priority, job.remaining_oracle_tokens(), job.spec.arrival_s, job.spec.id};
  }
  void on_arrival(Job& job) const override { job.level = 0; }
  bool on_served(Job&, double) const override { return false; }
};

std::unique_ptr<Policy> make_policy(const SchedulerConfig& config, const CostModel* cost_model);

}  // namespace fs::sched
