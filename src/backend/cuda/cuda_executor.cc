#include "backend/cuda/cuda_executor.h"

#include <algorithm>

#include "backend/cuda/cuda_status.h"
#include "backend/cuda/device_info.h"

namespace fs::cuda {

Result<std::unique_ptr<CudaExecutor>> CudaExecutor::create(std::unique_ptr<CudaModel> model,
                                                           const SwapOptions& swap_options) {
  std::unique_ptr<CudaExecutor> e(new CudaExecutor(std::move(model), swap_options));
  int device = 0;
  FS_CUDA_OK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  FS_CUDA_OK(cudaGetDeviceProperties(&prop, device));
  e->device_name_ = fmt::format("cuda:{} {}", device, prop.name);
  return e;
}

CudaExecutor::~CudaExecutor() {
  swap_.reset();  // waits for moves in flight before the arena goes
  arena_.reset();
}

Executor::NominalSpeed CudaExecutor::nominal_speed() const {
  // H100/H200-class numbers measured here (docs/BENCHMARKS.md): HBM ~3-4 TB/s, bf16 GEMM ~600
  // TFLOP/s sustained, pinned PCIe copies ~50 GB/s.
  return NominalSpeed{.memory_bytes_per_s = 3.0e12, .flops = 600e12, .swap_bytes_per_s = 50e9};
}

int64_t CudaExecutor::kv_block_bytes(int64_t block_size) const {
  return KvArena::block_bytes_for(config(), block_size);
}

int64_t CudaExecutor::max_device_blocks(int64_t block_size, int64_t max_batched_tokens) const {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return 0;
  const int64_t reserve = model_->workspace_bytes(max_batched_tokens) + (int64_t{1} << 30);
  const int64_t usable = static_cast<int64_t>(free_bytes) - reserve;
  return usable > 0 ? usable / kv_block_bytes(block_size) : 0;
}

Status CudaExecutor::allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) {
  if (arena_) return make_error(StatusCode::kInternal, "KV pools are already allocated");
  if (block_size <= 0) return invalid_argument("KV block size {} must be positive", block_size);
  FS_ASSIGN_OR_RETURN(arena_,
                      KvArena::create(kv_block_bytes(block_size), device_blocks, host_blocks));
  FS_ASSIGN_OR_RETURN(swap_, SwapEngine::create(*arena_, swap_options_));
  block_size_ = block_size;
  return Status::ok();
}

Status CudaExecutor::swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) {
  if (offloads.empty() && uploads.empty()) return Status::ok();
  if (!arena_) return make_error(StatusCode::kInternal, "KV pools are not allocated");
  return swap_->enqueue(offloads, uploads, model_->stream());
}

KvPoolView CudaExecutor::pool() const {
  return KvPoolView{.data = reinterpret_cast<bf16*>(arena_->device_base()),
                    .num_blocks = arena_->num_device_blocks(),
                    .layout = model_->kv_layout(block_size_)};
}

Status CudaExecutor::prepare(std::span<const ForwardSeq> seqs) {
  if (!arena_) return make_error(StatusCode::kInternal, "KV pools are not allocated");
  touched_.clear();
  for (const ForwardSeq& s : seqs) {
    const int64_t needed =
        (s.num_past + static_cast<int64_t>(s.tokens.size()) + block_size_ - 1) / block_size_;
    const int64_t n = std::min<int64_t>(needed, static_cast<int64_t>(s.block_table.size()));
    for (int64_t b = 0; b < n; ++b) {
      const int32_t id = s.block_table[b];
      if (id >= 0 && id < arena_->num_device_blocks()) touched_.push_back(id);
    }
  }
  return swap_->before_forward(model_->stream(), touched_);
}

Result<std::span<const float>> CudaExecutor::forward(std::span<const ForwardSeq> seqs) {
  FS_RETURN_IF_ERROR(prepare(seqs));
  return model_->forward(seqs, pool());
}

Result<std::span<const int32_t>> CudaExecutor::forward_greedy(std::span<const ForwardSeq> seqs) {
  FS_RETURN_IF_ERROR(prepare(seqs));
  return model_->forward_greedy(seqs, pool());
}

}  // namespace fs::cuda
