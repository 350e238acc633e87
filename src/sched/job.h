// A request as the scheduler sees it: lengths, progress and MLFQ bookkeeping. Plain data; the
// Scheduler owns every Job and changes it only in add/abort/schedule/update.
#pragma once

#include <cstdint>
#include <optional>

#include "kv/kv_pools.h"

namespace fs::sched {

using JobId = kv::JobId;

// What the engine (or the simulator) tells the scheduler about a new request. Only the input length
// is known at arrival ("semi information-agnostic"); oracle_output_tokens is read by srpt only.
struct JobSpec {
  JobId id = kv::kNoJob;
  double arrival_s = 0;
  int32_t num_prompt_tokens = 0;
  int32_t max_new_tokens = 0;  // the job finishes after this many tokens at the latest
  // The client's priority (the request's `priority`, as in vLLM): lower runs first; 0 by default.
  // Every policy orders by it before its own key (docs/SCHEDULING.md "Client priorities").
  int32_t priority = 0;
  std::optional<int32_t> oracle_output_tokens;
};

enum class JobState {
  kWaiting,    // arrived, never ran, no KV
  kRunning,    // in the current batch
  kPreempted,  // KV on device, not in the current batch
  kOffloaded,  // KV in the host pool
  kDropped,    // KV discarded; prefill of prompt + generated tokens is recomputed when it runs
  kFinished,
};
const char* job_state_name(JobState state);

struct Job {
  JobSpec spec;
  JobState state = JobState::kWaiting;
  // Tokens of the sequence so far (prompt + generated) and how many of them have KV computed. The
  // next iteration runs num_tokens - num_computed_tokens of them (a prefill chunk, a recompute, or
  // one decode token), clipped to the token budget (STYLE.md habit 2).
  int64_t num_tokens = 0;
  int64_t num_computed_tokens = 0;
  int32_t num_generated_tokens = 0;
  // MLFQ state: queue level (0 = highest priority), service attained in this level.
  int32_t level = 0;
  int32_t entry_level = 0;  // the level it joined at (skip-join: set by its prompt's prefill time)
  double attained_in_level_s = 0;
  // Start of the current wait: arrival, end of last service or last promotion (starvation control).
  double idle_since_s = 0;
  double first_token_s = -1;
  bool in_batch = false;  // scheduled in the latest plan
  bool in_flight = false;  // in an outstanding plan's batch (pipelined scheduler only)
  bool started = false;   // scheduled at least once
  int32_t num_preemptions = 0;
  int32_t num_demotions = 0;
  int32_t num_promotions = 0;

  int32_t remaining_oracle_tokens() const {
    return spec.oracle_output_tokens.value_or(spec.max_new_tokens) - num_generated_tokens;
  }
};

}  // namespace fs::sched
