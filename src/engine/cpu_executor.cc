#include "engine/cpu_executor.h"

#include <cstring>

namespace fs {

Status CpuExecutor::allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) {
  if (device_) return make_error(StatusCode::kInternal, "KV pools are already allocated");
  device_ = std::make_unique<cpu::KvCache>(lm_.kv_shape(device_blocks, block_size));
  host_ = std::make_unique<cpu::KvCache>(lm_.kv_shape(host_blocks, block_size));
  return Status::ok();
}

// Gathers every source block first, then scatters to every destination: correct whatever order the
// scheduler booked the moves in (a host block freed by an upload may be an offload's destination in
// the same plan, and a device block freed by an offload an upload's destination).
Status CpuExecutor::swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) {
  const size_t n = offloads.size() + uploads.size();
  if (n == 0) return Status::ok();
  if (!device_) return make_error(StatusCode::kInternal, "KV pools are not allocated");
  const int64_t block_floats = device_->shape().block_floats();
  const size_t block_bytes = block_floats * sizeof(float);
  if (staging_.size() < n * block_floats) staging_.resize(n * block_floats);
  size_t i = 0;
  for (const BlockCopy& m : offloads) std::memcpy(staging_.data() + i++ * block_floats, device_->block(m.src), block_bytes);
  for (const BlockCopy& m : uploads) std::memcpy(staging_.data() + i++ * block_floats, host_->block(m.src), block_bytes);
  i = 0;
  for (const BlockCopy& m : offloads) std::memcpy(host_->block(m.dst), staging_.data() + i++ * block_floats, block_bytes);
  for (const BlockCopy& m : uploads) std::memcpy(device_->block(m.dst), staging_.data() + i++ * block_floats, block_bytes);
  return Status::ok();
}

Result<std::span<const float>> CpuExecutor::forward(std::span<const ForwardSeq> seqs) {
  if (!device_) return make_error(StatusCode::kInternal, "KV pools are not allocated");
  return lm_.forward(seqs, *device_);
}

}  // namespace fs
