#include "sched/policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/check.h"

namespace fs::sched {

const char* job_state_name(JobState state) {
  switch (state) {
    case JobState::kWaiting:
      return "waiting";
    case JobState::kRunning:
      return "running";
    case JobState::kPreempted:
      return "preempted";
    case JobState::kOffloaded:
      return "offloaded";
    case JobState::kDropped:
      return "dropped";
    case JobState::kFinished:
      return "finished";
  }
  return "?";
}

MlfqPolicy::MlfqPolicy(const MlfqConfig& config, const CostModel* cost_model, bool skip_join)
    : config_(config), cost_model_(cost_model), skip_join_(skip_join) {
  FS_CHECK(!skip_join || cost_model != nullptr, "skip-join needs a cost model");
}

PriorityKey MlfqPolicy::key(const Job& job) const {
  return {job.spec.priority, job.level, job.spec.arrival_s, job.spec.id};
}

double MlfqPolicy::quantum_s(int32_t level) const {
  if (level >= config_.num_queues - 1) return std::numeric_limits<double>::infinity();
  return config_.q1_s * std::pow(config_.ratio, level);
}

int32_t MlfqPolicy::join_level(int32_t num_prompt_tokens) const {
  if (!skip_join_) return 0;
  const double first_iteration_s = cost_model_->prefill_time_s(num_prompt_tokens);
  int32_t level = 0;
  while (quantum_s(level) < first_iteration_s) ++level;  // terminates: last quantum is infinite
  return level;
}

double MlfqPolicy::starvation_deadline_s(const Job& job) const {
  const int32_t level = std::min(job.level, std::max(0, config_.num_queues - 2));
  double by_level_s = config_.starvation_quantum_multiple * quantum_s(level);
  if (config_.starvation_max_wait_s > 0) by_level_s = std::min(by_level_s, config_.starvation_max_wait_s);
  return job.idle_since_s + std::max(config_.starvation_threshold_s, by_level_s);
}

void MlfqPolicy::on_arrival(Job& job) const {
  job.level = job.entry_level = join_level(job.spec.num_prompt_tokens);
  job.attained_in_level_s = 0;
}

bool MlfqPolicy::on_served(Job& job, double duration_s) const {
  job.attained_in_level_s += duration_s;
  if (job.attained_in_level_s <= quantum_s(job.level)) return false;
  ++job.level;
  job.attained_in_level_s = 0;
  ++job.num_demotions;
  return true;
}

std::unique_ptr<Policy> make_policy(const SchedulerConfig& config, const CostModel* cost_model) {
  switch (config.policy) {
    case PolicyKind::kSkipJoinMlfq:
      return std::make_unique<MlfqPolicy>(config.mlfq, cost_model, /*skip_join=*/true);
    case PolicyKind::kMlfq:
      return std::make_unique<MlfqPolicy>(config.mlfq, cost_model, /*skip_join=*/false);
    case PolicyKind::kFcfs:
      return std::make_unique<FcfsPolicy>();
    case PolicyKind::kVllm:
      return std::make_unique<VllmPolicy>();
    case PolicyKind::kSrpt:
      return std::make_unique<SrptPolicy>();
  }
  FS_CHECK(false, "unknown policy");
  return nullptr;
}

}  // namespace fs::sched
