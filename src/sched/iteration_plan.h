// The contract between the scheduler and whoever executes an iteration (the engine with a real
// model, or the simulator with the cost model). Plain data (STYLE.md habit 3).
//
// How the engine carries out a plan, in this order:
//  1. Free nothing itself: the KV bookkeeping already reflects the plan. Blocks listed as the src
//     of a move may be reused as the dst of another move of the same plan, in either list (a host
//     block freed by an upload can receive an offload booked after it), or by newly_allocated. So
//     read every source before writing any destination: gather all sources, then scatter (the
//     engine stages through a buffer; see Engine::Impl::carry_out_swaps).
//  2. The first num_blocking_offload / num_blocking_upload moves of each list must complete before
//     the forward pass (they free room for, or bring back, jobs of this batch). The rest are
//     proactive (for future iterations) and overlap with the forward on a copy stream; the engine
//     waits for them before carrying out the next plan.
//  3. Jobs in drop_for_recompute lost their KV; nothing to copy.
//  4. Run one forward over `batch`: a ragged batch where entry i processes num_new_tokens tokens
//     of job i, positions [num_computed_tokens, num_computed_tokens + num_new_tokens), reading and
//     writing KV through block_table (device block ids, token t lives in block_table[t /
//     block_size] at slot t % block_size). An entry with samples_token = true produces one new
//     token.
//  5. Report an IterationResult to Scheduler::update.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_pools.h"
#include "sched/job.h"

namespace fs::sched {

struct ScheduledJob {
  JobId id = kv::kNoJob;
  int64_t num_computed_tokens = 0;       // tokens whose KV already exists (start position)
  int32_t num_new_tokens = 0;            // prefill chunk, recompute chunk, or 1 decode token
  bool samples_token = false;            // true when this chunk reaches the end of the sequence
  std::vector<kv::BlockId> block_table;  // [blocks_for(num_computed + num_new)] device ids
};

struct IterationPlan {
  std::vector<ScheduledJob> batch;             // in execution (priority) order
  std::vector<kv::BlockMove> offload;          // device -> host
  std::vector<kv::BlockMove> upload;           // host -> device
  int32_t num_blocking_offload = 0;            // prefix of `offload` the forward waits for
  int32_t num_blocking_upload = 0;             // prefix of `upload` the forward waits for
  std::vector<JobId> drop_for_recompute;       // KV discarded this iteration
  std::vector<JobId> preempted;                // ran last iteration, alive, not in this batch
  std::vector<kv::BlockMove> newly_allocated;  // {job, -1, device block}: fresh blocks this plan

  bool empty() const { return batch.empty() && offload.empty() && upload.empty(); }
  int64_t num_batch_tokens() const {
    int64_t n = 0;
    for (const auto& s : batch) n += s.num_new_tokens;
    return n;
  }
};

struct JobOutput {
  JobId id = kv::kNoJob;
  int32_t token = -1;  // sampled token id; the scheduler only counts them
  bool error = false;  // this job failed (the job is finished, the others go on)
};

struct IterationResult {
  double start_s = 0;
  double end_s = 0;
  std::vector<JobOutput> outputs;  // one per batch entry with samples_token (optional for the sim)
  std::vector<JobId> finished;     // stopped early (EOS, stop string) besides max_new_tokens
};

}  // namespace fs::sched
