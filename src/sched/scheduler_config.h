// Scheduler settings: policy, KV policy, batch limits, MLFQ parameters. Plain struct, validated
// once (STYLE.md habit 12). Defaults follow the official FastServe code (LLMServe/FastServe,
// fastserve/scheduler.py) except where docs/SCHEDULING.md says why not.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace fs::sched {

enum class PolicyKind { kSkipJoinMlfq, kMlfq, kFcfs, kVllm, kSrpt };
enum class KvPolicy { kProactive, kReactive, kRecompute };

const char* policy_name(PolicyKind kind);
const char* kv_policy_name(KvPolicy kind);
Result<PolicyKind> parse_policy(std::string_view name);   // "skip-join-mlfq", "mlfq", ...
Result<KvPolicy> parse_kv_policy(std::string_view name);  // "proactive", "reactive", "recompute"

struct BatchLimits {
  int32_t max_seqs = 16;      // jobs per iteration (official: 16)
  int32_t max_tokens = 2048;  // tokens per iteration; a decode counts 1, a prefill chunk its length
};

struct MlfqConfig {
  double q1_s = 0.010;      // quantum of the top queue (official: 10 ms)
  double ratio = 2.0;       // q_i = q1 * ratio^(i-1) (official: 2)
  int32_t num_queues = 32;  // K; the last queue has an unbounded quantum (official: as needed)
  double starvation_threshold_s = 3.0;  // idle longer than this -> promoted to Q1 (official: 3 s)
  // A job also gets this many times its level's quantum before it counts as starved (0: the fixed
  // threshold alone, as the official code).
  // Default 50: see docs/SCHEDULING.md (a fixed 3 s threshold checked every iteration turns into a
  // promotion storm under overload).
  double starvation_quantum_multiple = 50;
  // Upper bound of that per-level deadline, seconds (0: none): at deep levels 50 x the quantum is
  // minutes, so under endless overload a long job could wait past any request timeout. 120 s: see
  // docs/SCHEDULING.md "Starvation prevention" (p99 JCT -5% to -54% past vLLM's knee, mean +-15%).
  double starvation_max_wait_s = 120;
  // Official: checked every 1000 iterations; the check here is O(promoted jobs), so every
  // iteration.
  int32_t starvation_check_interval_iterations = 1;
  // At most this many promotions per check (bounds the swap-in storm when many jobs starve at
  // once).
  int32_t max_promotions_per_check = 1 << 30;
  bool starvation_prevention = true;
  // Preemption hysteresis (docs/SCHEDULING.md "Preemption hysteresis"): a job that ran in the
  // previous iteration keeps its seat unless a job of a strictly higher level (lower index) of its
  // priority class takes it, and that job's KV is on the device or fits in free device blocks
  // without evicting anyone. Equal levels never reshuffle a full batch; a better client priority
  // class still preempts as without it; starvation promotion is unchanged (a promoted job is in
  // Q1). Off: plain least-attained-service order every iteration (the official code). On by
  // default: mean JCT within 0.1% below saturation on every simulated workload, 13-44% lower at
  // 1.2x fcfs's saturation where memory binds (3 seeds; docs/SCHEDULING.md).
  bool preemption_hysteresis = true;
  // With the hysteresis: after the first held seat taken in an iteration, waiting jobs of the
  // same client priority class take more only while the tokens the takers run this iteration
  // (their chunks) total at most this (-1: no limit). Past saturation nearly every arrival joins a
  // higher level than the demoted running jobs, so when admission reopened a burst of new jobs
  // took every seat at once: an iteration of 2,048 prefill tokens and no decodes, 16 preemptions
  // whose KV then moved to the host. 512 (a quarter of the default token budget) spreads such
  // bursts over iterations: Azure code (16 seqs, 1.2x fcfs's saturation) 8.70 -> 8.97 req/s, mean
  // JCT 24.1 -> 18.9 s; mean JCT unchanged or lower below saturation on every simulated workload,
  // and no effect where prompts are short (Alpaca) (3 seeds; docs/SCHEDULING.md "Seat takeovers").
  int32_t max_seat_takeover_tokens = 512;
};

struct SchedulerConfig {
  PolicyKind policy = PolicyKind::kSkipJoinMlfq;
  KvPolicy kv_policy = KvPolicy::kProactive;
  BatchLimits limits;
  MlfqConfig mlfq;
  // Proactive planner: free device blocks kept in reserve (official: one per batch slot; -1 = that)
  // and how many jobs past the batch, in priority order, get their KV uploaded ahead (-1 =
  // max_seqs).
  int32_t kv_headroom_blocks = -1;
  int32_t kv_upload_lookahead_jobs = -1;
  // Jobs that never ran are not started while the host KV pool is fuller than this fraction
  // (official: 0.9), so the jobs holding KV never outgrow device + host memory. Ignored with
  // KvPolicy::kRecompute.
  double admit_max_host_usage = 0.9;
  // fcfs only: KV tokens reserved per admitted job at least (0: prompt + max_new_tokens). Orca
  // reserves the model's maximum length (e.g. 2048) when output lengths are unknown.
  int32_t fcfs_reserve_tokens = 0;
  // Swap budget (a guard against thrashing): the block moves a batch must wait for (blocking
  // offloads and uploads) may use at most this fraction of the time spent computing, kept as a
  // running credit of swap seconds capped at swap_credit_max_s; a job whose moves would overdraw it
  // waits (the first job of a batch always goes, so everyone progresses). Proactive moves are
  // limited to what the forward hides. 0 disables both limits.
  double swap_budget_fraction = 0.02;
  double swap_credit_max_s = 0.5;
  // Jobs examined per schedule() call before giving up on filling the batch (bounds the cost of an
  // iteration under overload, when thousands of jobs wait and none fits).
  int32_t max_scan_jobs = 512;

  int32_t headroom_blocks() const {
    return kv_headroom_blocks >= 0 ? kv_headroom_blocks : limits.max_seqs;
  }
  int32_t upload_lookahead_jobs() const {
    return kv_upload_lookahead_jobs >= 0 ? kv_upload_lookahead_jobs : limits.max_seqs;
  }
  Status validate() const;
  std::string to_string() const;
};

}  // namespace fs::sched
