// The CPU executor: CausalLm's forward over a device pool that is host memory, and a second host
// pool for offloaded blocks. Swaps are memcpy on the calling thread, gather-then-scatter.
#pragma once

#include <memory>
#include <vector>

#include "backend/cpu/kv_cache.h"
#include "backend/executor.h"
#include "model/causal_lm.h"

namespace fs {

class CpuExecutor final : public Executor {
 public:
  explicit CpuExecutor(CausalLm& lm) : lm_(lm) {}

  const ModelConfig& config() const override { return lm_.config(); }
  std::string device_name() const override { return "cpu"; }
  int64_t weight_bytes() const override { return lm_.loaded().weight_bytes; }
  NominalSpeed nominal_speed() const override { return {}; }
  int64_t kv_block_bytes(int64_t block_size) const override { return lm_.kv_shape(1, block_size).block_bytes(); }
  int64_t max_device_blocks(int64_t, int64_t) const override { return 0; }
  Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) override;
  Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) override;
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override;

  // The pools, for tests.
  cpu::KvCache& device_cache() { return *device_; }
  cpu::KvCache& host_cache() { return *host_; }

 private:
  CausalLm& lm_;
  std::unique_ptr<cpu::KvCache> device_, host_;
  std::vector<float> staging_;  // [moves, block_floats]
};

}  // namespace fs
