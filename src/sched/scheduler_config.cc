#include "sched/scheduler_config.h"

#include <fmt/format.h>

namespace fs::sched {

const char* policy_name(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kSkipJoinMlfq:
      return "skip-join-mlfq";
    case PolicyKind::kMlfq:
      return "mlfq";
    case PolicyKind::kFcfs:
      return "fcfs";
    case PolicyKind::kVllm:
      return "vllm";
    case PolicyKind::kSrpt:
      return "srpt";
  }
  return "?";
}

const char* kv_policy_name(KvPolicy kind) {
  switch (kind) {
    case KvPolicy::kProactive:
      return "proactive";
    case KvPolicy::kReactive:
      return "reactive";
    case KvPolicy::kRecompute:
      return "recompute";
  }
  return "?";
}

Result<PolicyKind> parse_policy(std::string_view name) {
  for (PolicyKind k : {PolicyKind::kSkipJoinMlfq, PolicyKind::kMlfq, PolicyKind::kFcfs,
                       PolicyKind::kVllm, PolicyKind::kSrpt}) {
    if (name == policy_name(k)) return k;
  }
  return invalid_argument("unknown policy '{}' (skip-join-mlfq|mlfq|fcfs|vllm|srpt)", name);
}

Result<KvPolicy> parse_kv_policy(std::string_view name) {
  for (KvPolicy k : {KvPolicy::kProactive, KvPolicy::kReactive, KvPolicy::kRecompute}) {
    if (name == kv_policy_name(k)) return k;
  }
  return invalid_argument("unknown KV policy '{}' (proactive|reactive|recompute)", name);
}

Status SchedulerConfig::validate() const {
  if (limits.max_seqs < 1)
    return invalid_argument("max_seqs must be >= 1, got {}", limits.max_seqs);
  if (limits.max_tokens < limits.max_seqs) {
    return invalid_argument("max_tokens ({}) must be >= max_seqs ({})", limits.max_tokens,
                            limits.max_seqs);
  }
  if (!(mlfq.q1_s > 0)) return invalid_argument("mlfq q1 must be > 0, got {}", mlfq.q1_s);
  if (!(mlfq.ratio >= 1)) return invalid_argument("mlfq ratio must be >= 1, got {}", mlfq.ratio);
  if (mlfq.num_queues < 1 || mlfq.num_queues > 64) {
    return invalid_argument("mlfq num_queues must be in [1, 64], got {}", mlfq.num_queues);
  }
  if (!(mlfq.starvation_threshold_s > 0)) {
    return invalid_argument("starvation threshold must be > 0, got {}",
                            mlfq.starvation_threshold_s);
  }
  if (mlfq.starvation_quantum_multiple < 0)
    return invalid_argument("starvation multiple must be >= 0");
  if (mlfq.starvation_check_interval_iterations < 1) {
    return invalid_argument("starvation check interval must be >= 1");
  }
  if (mlfq.max_seat_takeover_tokens < -1) {
    return invalid_argument("max seat takeover tokens must be >= -1 (-1: no limit), got {}",
                            mlfq.max_seat_takeover_tokens);
  }
  if (!(swap_budget_fraction >= 0)) return invalid_argument("swap budget fraction must be >= 0");
  if (!(swap_credit_max_s >= 0)) return invalid_argument("swap credit max must be >= 0");
  if (max_scan_jobs < limits.max_seqs) return invalid_argument("max_scan_jobs must be >= max_seqs");
  return Status::ok();
}

std::string SchedulerConfig::to_string() const {
  return fmt::format(
      "policy={} kv_policy={} max_seqs={} max_tokens={} q1_s={} ratio={} num_queues={} "
      "starvation_threshold_s={} starvation_quantum_multiple={} starvation={} headroom_blocks={} "
      "lookahead_jobs={} admit_max_host_usage={} swap_budget_fraction={} "
      "preemption_hysteresis={} max_seat_takeover_tokens={}",
      policy_name(policy), kv_policy_name(kv_policy), limits.max_seqs, limits.max_tokens, mlfq.q1_s,
      mlfq.ratio, mlfq.num_queues, mlfq.starvation_threshold_s, mlfq.starvation_quantum_multiple,
      mlfq.starvation_prevention, headroom_blocks(), upload_lookahead_jobs(), admit_max_host_usage,
      swap_budget_fraction, mlfq.preemption_hysteresis, mlfq.max_seat_takeover_tokens);
}

}  // namespace fs::sched
