// The scheduler: policy (order) + KV planner (capacity) + batch limits, over KV bookkeeping. Pure
// logic: time is passed in; no threads, no memory, no kernels (DESIGN.md, STYLE.md habit 2). One
// thread (the engine's, or the simulator's) calls it; not thread-safe.
//
// Each iteration:  plan = schedule(now);  <carry out plan>;  update(plan, result).
// Pipelined (set_max_plans_in_flight(d), d > 1): up to d plans are outstanding at once (scheduled,
// not yet updated); see set_max_plans_in_flight.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kv/kv_pools.h"
#include "sched/cost_model.h"
#include "sched/iteration_plan.h"
#include "sched/job.h"
#include "sched/kv_planner.h"
#include "sched/policy.h"
#include "sched/scheduler_config.h"

namespace fs::sched {

struct KvPoolConfig {
  int32_t num_device_blocks = 0;
  int32_t num_host_blocks = 0;
  int32_t block_size_tokens = 16;
};

struct SchedulerStats {
  int64_t num_iterations = 0;
  int64_t num_live_jobs = 0;
  int64_t num_jobs_by_state[6] = {};   // indexed by JobState
  std::vector<int64_t> queue_lengths;  // live jobs per MLFQ level (one entry for non-MLFQ policies)
  int32_t device_blocks_used = 0, device_blocks_total = 0;
  int32_t host_blocks_used = 0, host_blocks_total = 0;
  int64_t num_finished = 0, num_aborted = 0;
  int64_t num_preemptions = 0;  // a job that ran in iteration i-1 and not in i, unfinished
  int64_t num_demotions = 0, num_promotions = 0;
  int64_t num_offloaded_blocks = 0, num_uploaded_blocks = 0, num_drops = 0;
  int64_t num_recomputed_tokens = 0;  // tokens whose KV was computed again after a drop
};

class Scheduler {
 public:
  // cost_model: predicts first-iteration times for skip-join. config must validate().
  Scheduler(const SchedulerConfig& config, const KvPoolConfig& kv_config,
            const CostModel& cost_model);

  // Queues a new job. kInvalidArgument for a duplicate id or empty prompt/output; kOutOfRange when
  // prompt + max_new_tokens can never fit in the device pool. The scheduler is unchanged on error.
  Status add(const JobSpec& spec, double now_s);
  // The client went away: the job and its blocks are released at the next schedule(). Unknown ids
  // are ignored.
  void abort(JobId id, double now_s);
  // The next iteration's decision; books every move and allocation in the KV pools, so the pools
  // never hold more than they have. An empty plan means nothing can run (no jobs).
  IterationPlan schedule(double now_s);
  // Applies the outcome of the plan returned by the latest schedule() (pipelined: of the oldest
  // outstanding plan; see set_max_plans_in_flight): progress, sampled tokens,
  // attained service, demotions; finishes jobs that reached max_new_tokens, failed, or are listed
  // in result.finished (their blocks are freed here).
  void update(const IterationPlan& plan, const IterationResult& result);
  SchedulerStats stats() const;

  // Pipeline parallelism (docs/SCHEDULING.md "Several plans in flight"): with n > 1, schedule() may
  // be called while up to n - 1 earlier plans are outstanding (their forward is still running in
  // later pipeline stages). A job in an outstanding plan's batch is "in flight": it is not put in
  // another batch, not evicted (offloaded or dropped), not a proactive victim, and an abort of it
  // takes effect at the first schedule() after its plan's update(). update() then takes the plans
  // with a non-empty batch in the order schedule() returned them (FIFO; CHECK-fails otherwise);
  // plans with an empty batch are never outstanding and may be updated at any time. Each batch
  // takes at most ceil(runnable jobs / free plan slots) sequences, so that the jobs spread over
  // the plans. n = 1 (the default) is the plain loop above, unchanged. Call before the first
  // schedule(), or when no plan is outstanding.
  void set_max_plans_in_flight(int32_t n);
  int32_t max_plans_in_flight() const { return max_plans_in_flight_; }
  int32_t num_plans_in_flight() const { return static_cast<int32_t>(in_flight_plans_.size()); }

  // For tests and the simulator.
  const Job* job(JobId id) const;
  int64_t num_live_jobs() const { return static_cast<int64_t>(jobs_.size()); }
  const kv::KvPools& pools() const { return pools_; }
  const Policy& policy() const { return *policy_; }
  const SchedulerConfig& config() const { return config_; }
  // Live job ids in priority order (highest first).
  std::vector<JobId> priority_order() const;

 private:
  bool swap_budget_on() const;
  bool pipelined() const { return max_plans_in_flight_ > 1; }
  // The batch size limit of the plan being built: limits.max_seqs, and when pipelined its share of
  // the runnable jobs (set_max_plans_in_flight).
  int32_t max_seqs_this_plan(const std::set<PriorityKey>& candidates) const;
  // Walks the jobs in priority order and books into the batch each one that fits. hold_seats: the
  // previous batch's jobs hold their seats (hysteresis; hold_incumbent_seats).
  void fill_batch(IterationPlan& plan, bool enforce_swap_budget, bool& skipped_for_budget,
                  bool hold_seats = true);
  struct Entry {
    Job job;
    PriorityKey key;
    double starve_at_s = 0;  // key in idle_order_
  };
  Entry& entry(JobId id);
  void index(Entry& e);    // computes the key and inserts into the ordered sets
  void unindex(Entry& e);  // removes from the ordered sets
  bool resident(JobId id) const;
  void sync_state(Job& job) const;
  void finish_job(JobId id, bool aborted);
  void promote_starved(double now_s);
  // Admission of jobs that never ran: not while the host pool is fuller than admit_max_host_usage
  // (official FastServe: 90%), and never by dropping another job's KV; a job started beyond what
  // device + host hold only pushes others into recompute (drop cascades under overload).
  bool may_start_new_job() const;
  bool victims_fit_on_host(const std::vector<JobId>& victims) const;
  void select_batch(IterationPlan& plan);
  // Books the job into the batch: uploads it when its KV is on the host, allocates its blocks up to
  // target_blocks, marks it started and in the batch. Its victims were evicted already.
  void add_to_batch(const PriorityKey& key, Job& job, int32_t chunk, int32_t target_blocks,
                    bool on_host, IterationPlan& plan);
  // After a budget-limited fill_batch: empty seats go to host-resident started jobs whose KV fits
  // in the free device blocks above the headroom (blocking uploads, not charged to the budget).
  void fill_free_seats(IterationPlan& plan);
  // Preemption hysteresis (MlfqConfig::preemption_hysteresis): the jobs of the previous batch
  // (pipelined: of the plans updated since) that hold their seats in the plan being built, lowest
  // priority last. Empty when the hysteresis is off or not an MLFQ policy.
  bool hysteresis_on() const;
  void hold_incumbent_seats();
  // True (and the job's hold released) if `id` holds a seat: it was reached in the walk.
  bool release_hold(JobId id);
  bool holds_seat(JobId id) const;
  // Whether a job with this key, not holding a seat, may take the seat of the lowest-priority
  // holder: a strictly higher level of the same priority class, KV on the device or fitting in
  // need_blocks free device blocks (no eviction). A better priority class releases every holder of
  // worse classes instead (client priorities stay strict) and returns true.
  bool may_take_held_seat(const PriorityKey& key, int32_t need_blocks);
  // Lowest-priority device-resident jobs below `key`, not in the batch and holding no seat, whose
  // blocks cover deficit_blocks; empty if all of them together do not.
  std::vector<JobId> collect_victims(const PriorityKey& key, int32_t deficit_blocks) const;
  void evict(JobId victim, IterationPlan& plan);
  void plan_ahead(IterationPlan& plan);

  SchedulerConfig config_;
  CostModel cost_model_;
  kv::KvPools pools_;
  std::unique_ptr<Policy> policy_;
  KvPlanner planner_;
  std::unordered_map<JobId, Entry> jobs_;
  std::set<PriorityKey> order_;                    // all live jobs
  std::set<PriorityKey> resident_;                 // live jobs with KV on the device
  std::set<PriorityKey> started_;                  // live jobs that ran at least once
  std::set<std::pair<double, JobId>> idle_order_;  // (starve_at_s, id), starvation control
  std::vector<JobId> last_batch_;
  std::vector<JobId> pending_aborts_;
  std::vector<JobId> evicted_in_plan_;  // victims of the plan being built
  std::vector<PriorityKey> held_;       // seats held in the plan being built (hysteresis), sorted
  SchedulerStats counters_;
  double swap_credit_s_ = 0;  // swap budget left, seconds (SchedulerConfig::swap_budget_fraction)
  // Pipelining: the batches (job ids) of the outstanding plans, oldest first; their jobs have
  // Job::in_flight set. served_: jobs whose plans were updated since the last schedule() (what
  // last_batch_ is for preemption counting when plans overlap).
  int32_t max_plans_in_flight_ = 1;
  std::deque<std::vector<JobId>> in_flight_plans_;
  int64_t num_in_flight_jobs_ = 0;
  std::vector<JobId> served_;
};

}  // namespace fs::sched
