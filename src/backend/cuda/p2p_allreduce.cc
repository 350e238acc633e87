#include "backend/cuda/p2p_allreduce.h"

#include <cstring>

#include "backend/cuda/cuda_status.h"

namespace fs::cuda {

Result<std::unique_ptr<P2pAllReduce>> P2pAllReduce::create(int rank, int size, int64_t max_floats,
                                                           const AllGather& all_gather) {
  if (size < 2 || size > kMaxRanks) {
    return invalid_argument("p2p all-reduce: {} ranks (2..{})", size, kMaxRanks);
  }
  auto ar = std::unique_ptr<P2pAllReduce>(new P2pAllReduce());
  ar->rank_ = rank;
  ar->size_ = size;
  ar->max_floats_ = max_floats;
  const size_t data_bytes = sizeof(float) * 2 * max_floats;
  const size_t flag_bytes = sizeof(uint32_t) * kBlocks * kMaxRanks;
  FS_CUDA_OK(cudaMalloc(&ar->local_, data_bytes + flag_bytes));
  FS_CUDA_OK(cudaMemset(ar->local_, 0, data_bytes + flag_bytes));
  FS_CUDA_OK(cudaMalloc(&ar->counters_, sizeof(uint32_t) * kBlocks));
  FS_CUDA_OK(cudaMemset(ar->counters_, 0, sizeof(uint32_t) * kBlocks));
  FS_CUDA_OK(cudaDeviceSynchronize());  // zeroed before any peer can signal (after the gather)
  cudaIpcMemHandle_t handle;
  FS_CUDA_OK(cudaIpcGetMemHandle(&handle, ar->local_));
  std::vector<uint8_t> all(sizeof(handle) * size);
  FS_RETURN_IF_ERROR(all_gather(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&handle), sizeof(handle)),
      std::span<uint8_t>(all.data(), all.size())));
  for (int r = 0; r < size; ++r) {
    void* base = ar->local_;
    if (r != rank) {
      cudaIpcMemHandle_t h;
      std::memcpy(&h, all.data() + r * sizeof(h), sizeof(h));
      if (const cudaError_t e = cudaIpcOpenMemHandle(&base, h, cudaIpcMemLazyEnablePeerAccess);
          e != cudaSuccess) {
        cudaGetLastError();
        return make_error(StatusCode::kUnavailable,
                          "p2p all-reduce: cannot map rank {}'s memory here: {}", r,
                          cudaGetErrorString(e));
      }
      ar->mapped_.push_back(base);
    }
    ar->data_[r] = static_cast<float*>(base);
    ar->flags_[r] = reinterpret_cast<uint32_t*>(static_cast<char*>(base) + data_bytes);
  }
  return ar;
}

P2pAllReduce::~P2pAllReduce() {
  for (void* p : mapped_) cudaIpcCloseMemHandle(p);
  if (counters_) cudaFree(counters_);
  if (local_) cudaFree(local_);
}

Status P2pAllReduce::enqueue(float* x, int64_t n, cudaStream_t stream) {
  if (n > max_floats_) {
    return invalid_argument("p2p all-reduce of {} floats: the buffers hold {}", n, max_floats_);
  }
  if (n == 0) return Status::ok();
  launch_p2p_allreduce(x, n, max_floats_, data_, flags_, rank_, size_, counters_, stream);
  FS_CUDA_OK(cudaGetLastError());
  return Status::ok();
}

}  // namespace fs::cuda
