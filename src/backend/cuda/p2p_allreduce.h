// A one-shot all-reduce of f32 over CUDA peer memory, for the tensor-parallel ranks of one host
// (NVLink or PCIe peer access): the latency of a decode step's small all-reduces (a 16 KB residual
// stream at batch 1) is what TP's batch-1 speed-up depends on, and NCCL's is several microseconds
// more per call. Each rank stores its values straight into a slot of every peer's exchange area,
// and waits until every peer's values have landed in its own, element by element: an empty slot
// holds -0.0f, which no sent value is (-0.0 is sent as +0.0), so there are no flags to raise or
// fence (the Lamport-clock trick of TensorRT-LLM's low-latency all-reduce). Every rank sums in rank
// order: bit-identical results. Three areas rotate between consecutive calls; each call empties the
// one of the call before (no peer can write it then). The phase lives on the device, so a CUDA
// graph replays it. Larger tensors go to NCCL (dist/cuda_shard.h picks). exchange() hands the
// buffers to the model, whose decode GEMVs send their outputs into the peers' slots themselves
// (kernels.h launch_gemv's `send`) before it launches the all-reduce kernel with `sent`: one call
// in the same sequence of calls as enqueue()'s.
// Not thread-safe: one stream per instance (the model's).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include <cuda_runtime.h>

#include "backend/cuda/kernels.h"
#include "core/status.h"

namespace fs::cuda {

class P2pAllReduce {
 public:
  static constexpr int kMaxRanks = kP2pMaxRanks;
  static constexpr int kMaxBlocks = 1024;
  // all_gather(mine, all): every rank's `mine` bytes into `all` [size][mine.size()] in rank order
  // (the bootstrap: MPI). Collective over the `size` ranks. kUnavailable when a peer's memory
  // cannot be mapped here (another host, no peer access): the caller then uses NCCL, and must agree
  // with every rank on it.
  using AllGather = std::function<Status(std::span<const uint8_t> mine, std::span<uint8_t> all)>;
  // blocks: the grid of every call (1..kMaxBlocks): a few for the latency of small tensors, more
  // for the bandwidth of large ones.
  static Result<std::unique_ptr<P2pAllReduce>> create(int rank, int size, int64_t max_floats,
                                                      int blocks, const AllGather& all_gather);
  ~P2pAllReduce();
  P2pAllReduce(const P2pAllReduce&) = delete;
  P2pAllReduce& operator=(const P2pAllReduce&) = delete;

  int64_t max_floats() const { return max_floats_; }
  int blocks() const { return blocks_; }
  P2pExchange exchange() const { return exchange_; }
  // x [n] = the sum of every rank's x, enqueued on `stream` (every rank calls it with the same n,
  // in the same order). n <= max_floats(). Launch errors only.
  Status enqueue(float* x, int64_t n, cudaStream_t stream);

 private:
  P2pAllReduce() = default;

  int blocks_ = 16;
  int64_t max_floats_ = 0;
  void* local_ = nullptr;      // this rank's exchange area [3][size][max_floats]
  std::vector<void*> mapped_;  // peers' areas opened here (freed by the destructor)
  P2pExchange exchange_;       // every rank's area, this rank's state (kernels.h)
};

}  // namespace fs::cuda
