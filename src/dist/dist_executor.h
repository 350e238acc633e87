// Distributed execution over a Communicator: rank 0 runs the engine with a DistExecutor, every
// other rank runs a DistWorker. Each iteration the DistExecutor broadcasts the call it is given (KV
// allocation, swap moves, the forward's tokens, positions and block tables) and every rank carries
// it out on its shard (tp_shard.h): TP ranks all-reduce after the attention-out and MLP-down
// projections within their stage; PP stages hand hidden states to the next stage's rank of the same
// tp_rank; the last stage's tp_rank 0 sends the logits to rank 0. Each rank keeps the KV blocks of
// its kv heads and layers only, under the same block ids, so one swap plan (made by rank 0's
// scheduler) moves every rank's part of a job's KV (docs/DISTRIBUTED.md).
// With PP and micro_batches > 1 (pipelined), rank 0 keeps up to micro_batches forwards in flight
// (forward_submit / forward_wait): it computes stage 0 of batch k + 1 while later stages work on
// batch k. Commands then go to each rank point-to-point (non-blocking, one tag, so in order) instead
// of a broadcast that would wait for busy stages, and rank 0 posts the receive of each batch's
// logits when it submits the batch, so the last stage never waits for it.
// A failed collective (a peer died: the communicator's timeout) ends the process with a message
// (dist::fatal); mpirun then stops the other ranks.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "backend/executor.h"
#include "dist/communicator.h"
#include "dist/tp_shard.h"
#include "model/causal_lm.h"

namespace fs::dist {

class ShardRunner;

// What the last stage sends rank 0 for a batch (pp > 1), in floats: the greedy picks [rows] (two
// words each) when the batch has greedy rows and the executors pick on the device, then the logits
// [rows, vocab] unless every row was picked.
struct LogitsMessage {
  int64_t rows = 0;
  int64_t pick_floats = 0;
  int64_t logit_floats = 0;
  int64_t total() const { return pick_floats + logit_floats; }
};

class DistExecutor final : public Executor {
 public:
  DistExecutor(ModelConfig full_config, std::unique_ptr<ShardRunner> runner,
               int micro_batches);  // see make_dist
  ~DistExecutor() override;  // tells the workers to exit (if shutdown() was not called)

  const ModelConfig& config() const override { return full_config_; }
  std::string device_name() const override;
  // This rank's shard (each rank streams its own in parallel).
  int64_t weight_bytes() const override;
  // This rank's local executor's (every rank's shard is alike).
  NominalSpeed nominal_speed() const override;
  // Bytes of this rank's part of a block (its kv heads and layers).
  int64_t kv_block_bytes(int64_t block_size) const override;
  int64_t max_device_blocks(int64_t block_size, int64_t max_batched_tokens) const override;
  Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) override;
  Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) override;
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override;
  // As the ranks' executors (GPU ranks pick on the device; the last stage sends rank 0 the picks
  // and only the rows that were not picked).
  bool supports_greedy_picks() const override;
  std::span<const GreedyPick> greedy_picks() const override { return picks_; }
  // micro_batches when pipelined, else 1.
  int pipeline_depth() const override { return pipelined_ ? micro_batches_ : 1; }
  void forward_submit(std::span<const ForwardSeq> seqs) override;
  Result<std::span<const float>> forward_wait() override;

  // Waits for outstanding forwards, then sends the workers the shutdown command (once). Not
  // thread-safe with the calls above.
  void shutdown();

  // This rank's KV element type (CPU shards; before allocate_kv): kInvalidArgument for f16 on GPU
  // ranks, whose cache is bf16. Every rank sets its own (the workers: DistWorker::set_kv_dtype).
  Status set_kv_dtype(cpu::KvDtype dtype);

 private:
  // Sends [command, message_.size()] and then message_ (the payload) to every rank: a broadcast,
  // or when pipelined non-blocking sends (their buffers wait in sends_ until delivered).
  Status send_command(int64_t command);
  // Pipelined: forgets delivered command messages; all: waits for every one (within the timeout).
  void reap_sends(bool all);

  ModelConfig full_config_;
  std::unique_ptr<ShardRunner> runner_;
  int micro_batches_ = 1;
  bool pipelined_ = false;        // pp > 1 and micro_batches > 1
  std::vector<int64_t> message_;  // the command's payload, reused across iterations
  std::vector<float> logits_;     // the last stage's message (pp > 1): picks, then logits
  std::vector<GreedyPick> picks_store_;  // picks unpacked from it
  std::span<const GreedyPick> picks_;    // the last forward's (local, or picks_store_)
  bool shut_down_ = false;

  // Pipelined state.
  struct PendingSend {
    std::vector<int64_t> words;  // [command, payload size, payload...]
    std::vector<Communicator::RequestId> requests;
  };
  std::deque<PendingSend> sends_;
  struct PendingForward {
    Status status;                          // the local stage's error (then no logits come)
    std::vector<float> logits;              // the last stage's message, filled by the receive
    LogitsMessage message;                  // its layout
    Communicator::RequestId request = -1;   // the receive of the logits
  };
  std::deque<PendingForward> forwards_;     // oldest first
  std::vector<std::vector<float>> spare_logits_;  // buffers to reuse
};

// A rank other than 0: carries out rank 0's commands on its shard.
class DistWorker {
 public:
  DistWorker(std::unique_ptr<ShardRunner> runner, bool pipelined);  // see make_dist
  ~DistWorker();
  // Serves commands until rank 0 sends shutdown. A failed collective ends the process (fatal).
  Status run();
  // As DistExecutor::set_kv_dtype, before run().
  Status set_kv_dtype(cpu::KvDtype dtype);

 private:
  std::unique_ptr<ShardRunner> runner_;
  bool pipelined_ = false;  // commands come point-to-point instead of by broadcast
};

struct DistSetup {
  ParallelLayout layout;
  std::unique_ptr<DistExecutor> executor;  // rank 0
  std::unique_ptr<DistWorker> worker;      // every other rank
};

// How pipeline parallelism cuts the layers: kBalanced counts the LM head as the layers it costs
// on the last stage (lm_head_layers: at PP=2 the default model's 30 layers split 19 + 11), kEven
// gives every stage the same number of layers.
enum class StageSplit { kBalanced, kEven };

// Shards `model` for this rank of `world` (tp * pp must be world->size(), else kInvalidArgument
// naming both) and builds the rank's side. micro_batches: forwards in flight with PP (1: one batch
// at a time; 0: pp); every rank must pass the same. Collective over `world` (splits the TP groups).
Result<DistSetup> make_dist(const LoadedModel& model, std::shared_ptr<Communicator> world, int tp,
                            int pp, int micro_batches = 0,
                            StageSplit split = StageSplit::kBalanced);

// The same over GPU ranks (one GPU per rank: the launcher's local rank): each rank's shard runs on
// a CudaExecutor, the TP all-reduce and the stage handoff go over NCCL (dist/cuda_shard.h), the
// commands and logits over `world` (MPI). `model` null: random weights of `config` made on each
// GPU (--load-format dummy). kUnimplemented without NCCL in this build.
Result<DistSetup> make_dist_cuda(const LoadedModel* model, const ModelConfig& config,
                                 std::shared_ptr<Communicator> world, int tp, int pp,
                                 int micro_batches = 0,
                                 StageSplit split = StageSplit::kBalanced);

}  // namespace fs::dist
