// Communicator over NCCL for GPU ranks: the spans passed to every call are device memory (the
// executor's activations), the operations run on the communicator's CUDA stream, and each call
// returns once its stream work is done. Rank bootstrap (the ncclUniqueId) goes over an MPI
// communicator. Built when CMake finds nccl.h and libnccl next to the CUDA toolkit
// (FASTSERVE_WITH_NCCL). GPU ranks use it for the TP all-reduce and the PP stage handoff (cuda_shard.h).
// Timeouts: a call polls its stream (cudaStreamQuery) and ncclCommGetAsyncError; after the
// communicator's timeout it aborts the NCCL communicator (ncclCommAbort) and returns kUnavailable.
// NCCL has no tags: send/recv ignore `tag` (the executor keeps one message in flight per pair).
// Every multi-GPU run keeps NCCL_NVLS_ENABLE=0 (NVLink multicast can take a shared host's GPUs
// out of service); create() sets it when unset.
#pragma once

#ifdef FASTSERVE_WITH_NCCL

#include <memory>

#include <cuda_runtime.h>
#include <nccl.h>

#include "dist/communicator.h"

namespace fs::dist {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap` (its ranks become this communicator's ranks, same order): rank 0
  // makes the unique id and broadcasts it. Uses the current CUDA device. kUnavailable on a CUDA or
  // NCCL failure, with the library's message.
  static Result<std::unique_ptr<NcclCommunicator>> create(Communicator& bootstrap,
                                                          double timeout_s);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  cudaStream_t stream() const { return stream_; }

  Status all_reduce_sum(std::span<float> data) override;
  Status all_gather(std::span<const float> send, std::span<float> recv) override;
  Status broadcast(std::span<uint8_t> bytes, int root) override;
  Status broadcast_untimed(std::span<uint8_t> bytes, int root) override;
  Status send(std::span<const uint8_t> bytes, int dst, int tag) override;
  Status recv(std::span<uint8_t> bytes, int src, int tag) override;
  Status barrier() override;
  Result<std::unique_ptr<Communicator>> split(int color, int key) override;

  // Enqueue-only variants for the GPU forward (dist/cuda_shard.h): the operation goes on `stream`
  // (the model's, so it orders with the kernels around it and can be captured into a CUDA graph)
  // and the call returns at once. Errors are launch errors only; wait_stream() sees the rest.
  Status enqueue_all_reduce_sum(float* data, int64_t count, cudaStream_t stream);
  Status enqueue_send(const float* data, int64_t count, int dst, cudaStream_t stream);
  Status enqueue_recv(float* data, int64_t count, int src, cudaStream_t stream);
  // Waits for `stream` like finish(): polls it and this communicator's asynchronous error, and after
  // `timeout_s` (<= 0: no limit) aborts the communicator and returns kUnavailable naming `what`.
  Status wait_stream(cudaStream_t stream, const char* what, double timeout_s);
  double timeout_s() const { return timeout_s_; }

 private:
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream, double timeout_s);
  // Checks the launch result, then waits for the stream (<= 0 timeout: no limit).
  Status finish(ncclResult_t launched, const char* what, double timeout_s);

  ncclComm_t comm_;
  cudaStream_t stream_;
  int rank_ = 0, size_ = 1;
  double timeout_s_;
  float* barrier_word_ = nullptr;  // one device float all-reduced by barrier()
};

}  // namespace fs::dist

#endif  // FASTSERVE_WITH_NCCL
