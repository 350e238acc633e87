// The executor interface the engine drives: one forward pass over a ragged batch, and the KV cache
// bytes (a device pool and a host pool) that the forward reads and the swaps move. kv/ and sched/
// decide which job owns which block; an executor only stores and copies blocks by id.
// Implementations: CpuExecutor (engine/cpu_executor.h), CudaExecutor (backend/cuda/cuda_executor.h).
// Not thread-safe: the engine thread is the only caller.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/status.h"
#include "model/forward_seq.h"
#include "model/model_config.h"

namespace fs {

// One block copy between the pools, by block id: offloads go device -> host, uploads host -> device.
struct BlockCopy {
  int32_t src = 0;
  int32_t dst = 0;
};

class Executor {
 public:
  virtual ~Executor() = default;

  virtual const ModelConfig& config() const = 0;
  // "cpu", "cuda:0 NVIDIA H200", ... for logs and /v1/models.
  virtual std::string device_name() const = 0;
  // Bytes of weights the forward reads per step (cost-model estimates, logs).
  virtual int64_t weight_bytes() const = 0;
  // Nominal speeds for the scheduler's built-in cost estimate when no measured profile is given:
  // weight-streaming bandwidth (bytes/s), dense matmul throughput (FLOP/s), swap bandwidth (bytes/s).
  struct NominalSpeed {
    double memory_bytes_per_s = 20e9;
    double flops = 50e9;
    double swap_bytes_per_s = 10e9;
  };
  virtual NominalSpeed nominal_speed() const = 0;
  // Bytes of one KV block of block_size tokens (all layers, K and V).
  virtual int64_t kv_block_bytes(int64_t block_size) const = 0;
  // How many device blocks fit in the memory left for KV (after weights and activations for a batch
  // of max_batched_tokens); 0 when the executor has no fixed limit (the CPU: the caller picks).
  virtual int64_t max_device_blocks(int64_t block_size, int64_t max_batched_tokens) const = 0;

  // Creates both pools; block ids of each pool are 0 .. n-1. Called once, before anything else below.
  virtual Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) = 0;

  // Starts block moves and may return before they are done (the CPU executor runs them on a copy
  // thread, the CUDA one on copy streams). Within one call every source is read before any
  // destination is written (a block freed by one move may be another's destination in the same
  // call); a call's moves are ordered after every earlier call's. On a bad block id it returns an
  // error and starts nothing.
  // The engine makes two calls per plan: first the moves this iteration's batch needs, then the
  // proactive ones (jobs outside the batch), so that the forward waits only for the first.
  virtual Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) = 0;

  // Runs the new tokens of every sequence, writes their K/V into the device pool and returns logits
  // [rows, vocab] f32 on the host: one row per sequence (its last new token) or one per new token
  // for sequences with all_logits, in batch order. The span stays valid until the next call.
  // Before it reads or writes a device block of the sequences' block tables, it waits for every
  // earlier swap() call that reads (offload) or writes (upload) that block; swaps of other blocks
  // go on during the forward. A job therefore never runs with blocks still in flight.
  virtual Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) = 0;

  // Greedy picks on the device (ForwardSeq::greedy). When supports_greedy_picks(), every forward
  // (and forward_wait) also fills greedy_picks(): one entry per logits row, valid for the rows of
  // sequences with `greedy` set, whose logits rows are then not returned (their content in the
  // logits span is unspecified): a large vocabulary's rows need not cross to the host. Valid until
  // the next forward / forward_wait, for the batch whose logits were returned last.
  virtual bool supports_greedy_picks() const { return false; }
  virtual std::span<const GreedyPick> greedy_picks() const { return {}; }

  // Pipelined forwards (pipeline parallelism: docs/DISTRIBUTED.md). Up to pipeline_depth()
  // forwards may be outstanding: forward_submit starts one (it returns once the executor can take
  // the next; the seqs' spans need not outlive the call) and forward_wait returns the logits of the
  // oldest outstanding one (FIFO), as forward() would have; the span stays valid until the next
  // forward_wait or forward call. The engine keeps the batches of outstanding forwards disjoint
  // and never moves their blocks (Scheduler::set_max_plans_in_flight); swap() calls between
  // submits follow the ordering rules above, and forward() must not be called while forwards are
  // outstanding. A forward that fails reports it from its forward_wait (so results stay in FIFO
  // order). The defaults, for executors that cannot pipeline (depth 1): forward_submit runs
  // forward() and keeps its result for forward_wait.
  virtual int pipeline_depth() const { return 1; }
  virtual void forward_submit(std::span<const ForwardSeq> seqs) { pending_ = forward(seqs); }
  virtual Result<std::span<const float>> forward_wait() {
    Result<std::span<const float>> r = std::move(pending_);
    pending_ = make_error(StatusCode::kInternal, "forward_wait without forward_submit");
    return r;
  }

 private:
  Result<std::span<const float>> pending_ =
      make_error(StatusCode::kInternal, "forward_wait without forward_submit");
};

}  // namespace fs
