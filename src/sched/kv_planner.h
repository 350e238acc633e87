// Capacity decisions: which jobs' KV leaves the device (offload to host, or drop for recompute) and
// which comes back, written into the IterationPlan and booked in KvPools. The policy decides the
// order; the planner carries out a KvPolicy on it (STYLE.md habit 4):
//  - proactive (paper section 4.3; official FastServe behaviour): keep kv_headroom_blocks free by
//    offloading the lowest-priority resident jobs that are not running; when nothing was offloaded,
//    upload host-resident jobs among the next jobs in priority order ahead of their turn. Both
//    overlap with the forward. When memory runs out anyway, evict like reactive.
//  - reactive: swap out only when a job of this batch needs room; swap in only when a job is
//  chosen.
//  - recompute: never swap; evicted jobs lose their KV and recompute it.
// With swapping, a victim is dropped for recompute when the host pool is full (the official code
// crashed there).
#pragma once

#include <cstdint>

#include "kv/kv_pools.h"
#include "sched/iteration_plan.h"
#include "sched/scheduler_config.h"

namespace fs::sched {

enum class Eviction { kOffloaded, kDropped };

class KvPlanner {
 public:
  KvPlanner(KvPolicy policy, kv::KvPools* pools) : policy_(policy), pools_(pools) {}

  KvPolicy policy() const { return policy_; }
  bool proactive() const { return policy_ == KvPolicy::kProactive; }

  // Frees the victim's device blocks: offloads them to host (unless recompute, or the host pool is
  // short) or else drops them. Appends the moves / drop to the plan; blocking moves must be
  // appended before any proactive one (the planner is called in that order by the Scheduler).
  Eviction evict(JobId victim, IterationPlan& plan);
  // Books the upload of a host-resident job; the caller checked the device pool has room.
  void upload(JobId job, IterationPlan& plan);

  int64_t num_offloaded_blocks() const { return num_offloaded_blocks_; }
  int64_t num_uploaded_blocks() const { return num_uploaded_blocks_; }
  int64_t num_drops() const { return num_drops_; }

 private:
  KvPolicy policy_;
  kv::KvPools* pools_;  // not owned
  int64_t num_offloaded_blocks_ = 0;
  int64_t num_uploaded_blocks_ = 0;
  int64_t num_drops_ = 0;
};

}  // namespace fs::sched
