#include "backend/cuda/p2p_allreduce.h"

#include <cstring>

#include "backend/cuda/cuda_status.h"

namespace fs::cuda {

Result<std::unique_ptr<P2pAllReduce>> P2pAllReduce::create(int rank, int size, int64_t max_floats,
                                                           int blocks,
                                                           const AllGather& all_gather) {
  if (size < 2 || size > kMaxRanks) {
    return invalid_argument("p2p all-reduce: {} ranks (2..{})", size, kMaxRanks);
  }
  if (max_floats <= 0 || max_floats % 4 != 0) {
    return invalid_argument("p2p all-reduce: {} floats per slot (a positive multiple of 4)",
                            max_floats);
  }
  if (blocks < 1 || blocks > kMaxBlocks) {
    return invalid_argument("p2p all-reduce: a grid of {} blocks (1..{})", blocks, kMaxBlocks);
  }
  auto ar = std::unique_ptr<P2pAllReduce>(new P2pAllReduce());
  ar->blocks_ = blocks;
  ar->max_floats_ = max_floats;
  P2pExchange& ex = ar->exchange_;
  ex.rank = rank;
  ex.size = size;
  ex.max_floats = max_floats;
  const int64_t area_floats = 3 * static_cast<int64_t>(size) * max_floats;
  FS_CUDA_OK(cudaMalloc(&ar->local_, sizeof(float) * area_floats));
  launch_fill_f32(static_cast<float*>(ar->local_), area_floats, -0.0f, nullptr);
  FS_CUDA_OK(cudaGetLastError());
  FS_CUDA_OK(cudaMalloc(&ex.state, sizeof(uint32_t) * 4));
  FS_CUDA_OK(cudaMemset(ex.state, 0, sizeof(uint32_t) * 4));
  FS_CUDA_OK(cudaDeviceSynchronize());  // emptied before any peer can send (after the gather)
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
    ex.recv[r] = static_cast<float*>(base);
  }
  return ar;
}

P2pAllReduce::~P2pAllReduce() {
  for (void* p : mapped_) cudaIpcCloseMemHandle(p);
  if (exchange_.state) cudaFree(exchange_.state);
  if (local_) cudaFree(local_);
}

Status P2pAllReduce::enqueue(float* x, int64_t n, cudaStream_t stream) {
  if (n > max_floats_) {
    return invalid_argument("p2p all-reduce of {} floats: the buffers hold {}", n, max_floats_);
  }
  if (n == 0) return Status::ok();
  launch_p2p_allreduce(x, n, exchange_, blocks_, stream);
  FS_CUDA_OK(cudaGetLastError());
  return Status::ok();
}

}  // namespace fs::cuda
