// The CUDA executor: CudaModel's forward over the device pool of a KvArena, with the SwapEngine
// moving blocks between that pool and its pinned host pool on copy streams. The forward waits for
// the moves of the blocks it touches on the GPU (before_forward), never on the host.
// Not thread-safe: the engine thread is the only caller; it must keep the executor's device
// current.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/cuda/cuda_model.h"
#include "backend/cuda/kv_swap.h"
#include "backend/executor.h"

namespace fs::cuda {

class CudaExecutor final : public Executor {
 public:
  // Takes the model (uploaded or dummy) on the current device.
  static Result<std::unique_ptr<CudaExecutor>> create(std::unique_ptr<CudaModel> model,
                                                      const SwapOptions& swap_options = {});
  ~CudaExecutor() override;

  const ModelConfig& config() const override { return model_->config(); }
  std::string device_name() const override { return device_name_; }
  int64_t weight_bytes() const override { return model_->weight_bytes(); }
  NominalSpeed nominal_speed() const override;
  int64_t kv_block_bytes(int64_t block_size) const override;
  // Free device memory after weights, minus the activations of max_batched_tokens and a 1 GiB
  // margin (cuBLAS, CUDA context growth), in blocks.
  int64_t max_device_blocks(int64_t block_size, int64_t max_batched_tokens) const override;
  Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) override;
  Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) override;
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override;
  bool supports_greedy_picks() const override { return true; }
  std::span<const GreedyPick> greedy_picks() const override { return model_->greedy_picks(); }
  // The same forward with greedy sampling on the GPU: one token id per logits row.
  Result<std::span<const int32_t>> forward_greedy(std::span<const ForwardSeq> seqs);

  CudaModel& model() { return *model_; }
  KvArena* arena() { return arena_.get(); }
  SwapEngine* swap_engine() { return swap_.get(); }

 private:
  CudaExecutor(std::unique_ptr<CudaModel> model, const SwapOptions& options)
      : model_(std::move(model)), swap_options_(options) {}
  // Makes the compute stream wait for pending moves of the batch's blocks.
  Status prepare(std::span<const ForwardSeq> seqs);
  KvPoolView pool() const;

  std::unique_ptr<CudaModel> model_;
  SwapOptions swap_options_;
  std::string device_name_;
  std::unique_ptr<KvArena> arena_;
  std::unique_ptr<SwapEngine> swap_;
  int64_t block_size_ = 0;
  std::vector<int32_t> touched_;  // device blocks of the current batch (scratch)
};

}  // namespace fs::cuda
