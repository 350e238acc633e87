#include "dist/cuda_shard.h"

#ifdef FASTSERVE_WITH_NCCL

#include <cstdlib>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_executor.h"
#include "core/log.h"
#include "dist/nccl_communicator.h"

namespace fs::dist {

Status select_rank_gpu(int world_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    return make_error(StatusCode::kUnavailable,
                      "rank {}: no CUDA device is visible (check nvidia-smi and "
                      "CUDA_VISIBLE_DEVICES)",
                      world_rank);
  }
  int local = world_rank;
  if (const char* v = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK"); v != nullptr && *v != '\0') {
    local = std::atoi(v);
  }
  const int device = local % count;
  if (const cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    return make_error(StatusCode::kUnavailable, "rank {}: cannot use GPU {}: {}", world_rank,
                      device, cudaGetErrorString(e));
  }
  return Status::ok();
}

Result<CudaShard> make_cuda_shard(const LoadedModel* shard, const ModelConfig& config,
                                  const ParallelLayout& layout, Communicator& tp_group,
                                  Communicator& pp_group) {
  const double timeout_s = timeout_from_env_s();
  CudaShard out;
  NcclCommunicator* tp_nccl = nullptr;
  NcclCommunicator* pp_nccl = nullptr;
  // Every rank creates its TP communicator first, then its PP one: no cycle of waits.
  if (layout.tp > 1) {
    FS_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> c,
                        NcclCommunicator::create(tp_group, timeout_s));
    tp_nccl = c.get();
    out.comms.push_back(std::move(c));
  }
  if (layout.pp > 1) {
    FS_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> c,
                        NcclCommunicator::create(pp_group, timeout_s));
    pp_nccl = c.get();
    out.comms.push_back(std::move(c));
  }

  std::unique_ptr<cuda::CudaModel> model;
  if (shard != nullptr) {
    FS_ASSIGN_OR_RETURN(model, cuda::CudaModel::upload(*shard));
  } else {
    FS_ASSIGN_OR_RETURN(model, cuda::CudaModel::dummy(config));
  }
  const cudaStream_t stream = model->stream();
  cuda::CudaModel::DistHooks hooks;
  hooks.residual_owner = layout.tp_rank() == 0;
  if (tp_nccl != nullptr) {
    hooks.all_reduce = [tp_nccl, stream](float* x, int64_t n) {
      return tp_nccl->enqueue_all_reduce_sum(x, n, stream);
    };
  }
  if (pp_nccl != nullptr && !layout.first_stage()) {
    const int src = layout.stage() - 1;  // pp_group is ranked by stage
    hooks.recv_hidden = [pp_nccl, stream, src](float* x, int64_t n) {
      return pp_nccl->enqueue_recv(x, n, src, stream);
    };
  }
  if (pp_nccl != nullptr && !layout.last_stage()) {
    const int dst = layout.stage() + 1;
    hooks.send_hidden = [pp_nccl, stream, dst](const float* x, int64_t n) {
      return pp_nccl->enqueue_send(x, n, dst, stream);
    };
  }
  // A forward's wait: fails (and aborts NCCL) when a peer stops taking part.
  NcclCommunicator* waiter = tp_nccl != nullptr ? tp_nccl : pp_nccl;
  if (waiter != nullptr) {
    hooks.wait = [waiter, stream, timeout_s]() {
      return waiter->wait_stream(stream, "forward", timeout_s);
    };
  }
  model->set_dist_hooks(std::move(hooks));
  FS_ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaExecutor> executor,
                      cuda::CudaExecutor::create(std::move(model)));
  out.executor = std::move(executor);
  return out;
}

}  // namespace fs::dist

#endif  // FASTSERVE_WITH_NCCL
