// A GPU rank's side of tensor and pipeline parallelism: its shard of the model on its own GPU (a
// CudaExecutor) with CudaModel::DistHooks over NCCL: the TP all-reduce of the residual stream on a
// communicator over the ranks of its stage, and the hidden-state handoff between stages on one over
// the ranks with its tp_rank. The communication is enqueued on the model's stream between the
// kernels (decode graphs capture it too); MPI stays for rank 0's commands, the logits it collects
// and the bootstrap of the NCCL communicators (docs/DISTRIBUTED.md).
// Built with the CUDA backend when NCCL is found (FASTSERVE_WITH_NCCL).
#pragma once

#ifdef FASTSERVE_WITH_NCCL

#include <memory>
#include <vector>

#include "backend/executor.h"
#include "dist/communicator.h"
#include "dist/tp_shard.h"
#include "model/model_weights.h"

namespace fs::dist {

// Makes this process use GPU (local rank mod visible GPUs), the local rank from the launcher
// (OMPI_COMM_WORLD_LOCAL_RANK, else world_rank). Call before any other CUDA work.
// kUnavailable when no GPU is visible.
Status select_rank_gpu(int world_rank);

struct CudaShard {
  std::vector<std::unique_ptr<Communicator>> comms;  // the NCCL communicators the hooks use
  std::unique_ptr<Executor> executor;                // must go before comms (it calls them)
};

// Collective over tp_group and pp_group (the ranks of this rank's stage, ranked by tp_rank; the
// ranks with its tp_rank, ranked by stage). `shard` is this rank's shard (shard_model) to upload,
// or null for random weights of this rank's part of `whole` (the unsharded model's config) made on
// the GPU, each element as the one-GPU dummy model has it.
Result<CudaShard> make_cuda_shard(const LoadedModel* shard, const ModelConfig& whole,
                                  const ParallelLayout& layout, Communicator& tp_group,
                                  Communicator& pp_group);

}  // namespace fs::dist

#endif  // FASTSERVE_WITH_NCCL
