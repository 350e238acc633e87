// Distributed execution over a Communicator: rank 0 runs the engine with a DistExecutor, every
// other rank runs a DistWorker. Each iteration the DistExecutor broadcasts the call it is given (KV
// allocation, swap moves, the forward's tokens, positions and block tables) and every rank carries
// it out on its shard (tp_shard.h): TP ranks all-reduce after the attention-out and MLP-down
// projections within their stage; PP stages hand hidden states to the next stage's rank of the same
// tp_rank; the last stage's tp_rank 0 sends the logits to rank 0. Each rank keeps the KV blocks of
// its kv heads and layers only, under the same block ids, so one swap plan (made by rank 0's
// scheduler) moves every rank's part of a job's KV. One batch at a time (docs/DISTRIBUTED.md).
// A failed collective (a peer died: the communicator's timeout) ends the process with a message
// (dist::fatal); mpirun then stops the other ranks.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/executor.h"
#include "dist/communicator.h"
#include "dist/tp_shard.h"
#include "model/causal_lm.h"

namespace fs::dist {

class ShardRunner;

class DistExecutor final : public Executor {
 public:
  DistExecutor(ModelConfig full_config, std::unique_ptr<ShardRunner> runner);  // see make_dist
  ~DistExecutor() override;  // tells the workers to exit (if shutdown() was not called)

  const ModelConfig& config() const override { return full_config_; }
  std::string device_name() const override;
  // This rank's shard (each rank streams its own in parallel).
  int64_t weight_bytes() const override;
  NominalSpeed nominal_speed() const override { return {}; }
  // Bytes of this rank's part of a block (its kv heads and layers).
  int64_t kv_block_bytes(int64_t block_size) const override;
  int64_t max_device_blocks(int64_t, int64_t) const override { return 0; }
  Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) override;
  Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) override;
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override;

  // Sends the workers the shutdown command (once). Not thread-safe with the calls above.
  void shutdown();

 private:
  // Broadcasts [command, message_.size()] and then message_ (the payload) to every rank.
  Status send_command(int64_t command);

  ModelConfig full_config_;
  std::unique_ptr<ShardRunner> runner_;
  std::vector<int64_t> message_;  // the command's payload, reused across iterations
  std::vector<float> logits_;     // [rows, vocab] from the last stage (pp > 1)
  bool shut_down_ = false;
};

// A rank other than 0: carries out rank 0's commands on its shard.
class DistWorker {
 public:
  explicit DistWorker(std::unique_ptr<ShardRunner> runner);  // see make_dist
  ~DistWorker();
  // Serves commands until rank 0 sends shutdown. A failed collective ends the process (fatal).
  Status run();

 private:
  std::unique_ptr<ShardRunner> runner_;
};

struct DistSetup {
  ParallelLayout layout;
  std::unique_ptr<DistExecutor> executor;  // rank 0
  std::unique_ptr<DistWorker> worker;      // every other rank
};

// Shards `model` for this rank of `world` (tp * pp must be world->size(), else kInvalidArgument
// naming both) and builds the rank's side. Collective over `world` (splits the TP groups).
Result<DistSetup> make_dist(const LoadedModel& model, std::shared_ptr<Communicator> world, int tp,
                            int pp);

}  // namespace fs::dist
