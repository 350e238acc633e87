#include "sched/kv_planner.h"

#include "core/check.h"

namespace fs::sched {

Eviction KvPlanner::evict(JobId victim, IterationPlan& plan) {
  FS_CHECK(pools_->has_job(victim) && pools_->location(victim) == kv::Location::kDevice,
           "job {} has no device KV to evict", victim);
  if (policy_ != KvPolicy::kRecompute &&
      pools_->num_free_host_blocks() >= pools_->num_blocks(victim)) {
    auto moves = pools_->offload(victim);
    FS_CHECK(moves.is_ok(), "{}", moves.status().to_string());
    num_offloaded_blocks_ += static_cast<int64_t>(moves->size());
    plan.offload.insert(plan.offload.end(), moves->begin(), moves->end());
    return Eviction::kOffloaded;
  }
  pools_->free(victim);
  plan.drop_for_recompute.push_back(victim);
  ++num_drops_;
  return Eviction::kDropped;
}

void KvPlanner::upload(JobId job, IterationPlan& plan) {
  auto moves = pools_->upload(job);
  FS_CHECK(moves.is_ok(), "{}", moves.status().to_string());
  num_uploaded_blocks_ += static_cast<int64_t>(moves->size());
  plan.upload.insert(plan.upload.end(), moves->begin(), moves->end());
}

}  // namespace fs::sched
