#include "dist/cuda_shard.h"

#ifdef FASTSERVE_WITH_NCCL

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_executor.h"
#include "backend/cuda/cuda_model.h"
#include "backend/cuda/p2p_allreduce.h"
#include "core/env.h"
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

namespace {

// A TP all-reduce over peer memory of up to max_kb KB on a grid of `blocks`, where every rank of
// the group can map every other's (one host). Collective over tp_group; null where it cannot be
// made (every rank then agrees on NCCL) or max_kb is 0.
std::unique_ptr<cuda::P2pAllReduce> make_p2p_allreduce(Communicator& tp_group, int64_t max_kb,
                                                       int blocks) {
  if (max_kb <= 0) return nullptr;
  const auto all_gather = [&tp_group](std::span<const uint8_t> mine, std::span<uint8_t> all) {
    std::vector<uint8_t> buf(mine.size());
    for (int r = 0; r < tp_group.size(); ++r) {
      if (r == tp_group.rank()) buf.assign(mine.begin(), mine.end());
      FS_RETURN_IF_ERROR(tp_group.broadcast(buf, r));
      std::copy(buf.begin(), buf.end(), all.begin() + r * mine.size());
    }
    return Status::ok();
  };
  Result<std::unique_ptr<cuda::P2pAllReduce>> p2p = cuda::P2pAllReduce::create(
      tp_group.rank(), tp_group.size(), max_kb * 256, blocks, all_gather);
  // Every rank must make the same choice.
  float ok = p2p.is_ok() ? 1.0f : 0.0f;
  if (!tp_group.all_reduce_sum(std::span<float>(&ok, 1)).is_ok() ||
      ok != static_cast<float>(tp_group.size())) {
    log_info("tensor-parallel all-reduce: NCCL ({})",
             p2p.is_ok() ? "a peer cannot map this rank's memory" : p2p.status().message());
    return nullptr;
  }
  return std::move(*p2p);
}

// The TP all-reduce: peer memory on a 16-block grid for small tensors (latency; up to
// FASTSERVE_P2P_ALLREDUCE_MAX_KB, default 64 KB), on a grid of one block per multiprocessor for
// mid-size ones (bandwidth; up to FASTSERVE_P2P_ALLREDUCE_LARGE_MAX_KB, default 4 MB, 0: off;
// FASTSERVE_P2P_ALLREDUCE_LARGE_BLOCKS sets the grid), NCCL above, and NCCL only with
// FASTSERVE_TP_ALLREDUCE=nccl. On 2x H200 (bench/cuda/nccl_allreduce_bench.cc, 64 in a CUDA graph,
// 2026-11-29 23:04 UTC, us): 16 KB 2.5 (16 blocks) / 2.6 (132) / NCCL 6.7; 64 KB 2.7 / 2.8 / 7.1;
// 256 KB 4.6 / 3.5 / 8.4; 1 MB 15.0 / 6.6 / 12.9; 4 MB 62.1 / 16.8 / 32.6. hooks->exchange gets
// the small one's buffers, for the decode GEMVs that send their outputs to the peers as they make
// them (CudaModel::DistHooks; FASTSERVE_TP_FUSED_ALLREDUCE=0: they do not; the all-reduce kernel
// sends).
std::function<Status(float*, int64_t)> make_tp_all_reduce(Communicator& tp_group,
                                                          NcclCommunicator* nccl,
                                                          cudaStream_t stream,
                                                          cuda::CudaModel::DistHooks* hooks) {
  const char* mode = std::getenv("FASTSERVE_TP_ALLREDUCE");
  std::shared_ptr<cuda::P2pAllReduce> small, large;
  if (mode == nullptr || std::string(mode) != "nccl") {
    small = make_p2p_allreduce(
        tp_group, int_from_env_or("FASTSERVE_P2P_ALLREDUCE_MAX_KB", 0, 1 << 20, 64), 16);
    const int64_t large_kb = int_from_env_or("FASTSERVE_P2P_ALLREDUCE_LARGE_MAX_KB", 0, 1 << 20, 4096);
    if (small && large_kb * 256 > small->max_floats()) {
      int device = 0, sms = 132;
      cudaGetDevice(&device);
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
      large = make_p2p_allreduce(
          tp_group, large_kb,
          static_cast<int>(int_from_env_or("FASTSERVE_P2P_ALLREDUCE_LARGE_BLOCKS", 1,
                                   cuda::P2pAllReduce::kMaxBlocks, sms)));
    }
  }
  const bool gemv_send =
      small && int_from_env_or("FASTSERVE_TP_FUSED_ALLREDUCE", 0, 1, 1) == 1;
  if (gemv_send) {
    hooks->exchange = small->exchange();
    hooks->exchange_blocks = small->blocks();
  }
  log_info("tensor-parallel all-reduce: peer memory up to {} KB ({} blocks{}){}, NCCL above",
           small ? small->max_floats() / 256 : 0, small ? small->blocks() : 0,
           gemv_send ? "; decode GEMVs send their outputs" : "",
           large ? fmt::format(", up to {} KB ({} blocks)", large->max_floats() / 256,
                               large->blocks())
                 : std::string());
  return [nccl, small, large, stream](float* x, int64_t n) {
    if (small && n <= small->max_floats()) return small->enqueue(x, n, stream);
    if (large && n <= large->max_floats()) return large->enqueue(x, n, stream);
    return nccl->enqueue_all_reduce_sum(x, n, stream);
  };
}

}  // namespace

Result<CudaShard> make_cuda_shard(const LoadedModel* shard, const ModelConfig& whole,
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
    const cuda::DummyPlace place{
        .tp = layout.tp,
        .tp_rank = layout.tp_rank(),
        .first_layer = layout.layer_begin(layout.stage(), whole.num_layers),
        .total_layers = whole.num_layers};
    FS_ASSIGN_OR_RETURN(model, cuda::CudaModel::dummy(shard_config(whole, layout), 1, place));
  }
  if (layout.tp > 1) {
    // One GEMV limit for every TP rank (the smallest measured): each calibrates its own shard, and
    // near the crossover they can disagree; the slowest rank would set the all-reduce's pace.
    std::vector<float> votes(cuda::kMaxGemvTokens + 1, 0.0f);
    votes[model->gemv_max_tokens()] = 1.0f;
    FS_RETURN_IF_ERROR(tp_group.all_reduce_sum(votes));
    const auto first = std::find_if(votes.begin(), votes.end(), [](float v) { return v > 0; });
    model->set_gemv_max_tokens(first - votes.begin());
  }
  const cudaStream_t stream = model->stream();
  cuda::CudaModel::DistHooks hooks;
  hooks.residual_owner = layout.tp_rank() == 0;
  if (tp_nccl != nullptr) {
    hooks.all_reduce = make_tp_all_reduce(tp_group, tp_nccl, stream, &hooks);
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
  // The last stage's TP ranks split the LM head by vocabulary (unless FASTSERVE_TP_LM_HEAD=whole):
  // each reads 1/tp of it in a decode step, and only picks or needed logits rows are gathered.
  const char* head = std::getenv("FASTSERVE_TP_LM_HEAD");
  if (layout.tp > 1 && layout.last_stage() && !(head != nullptr && std::string(head) == "whole")) {
    FS_RETURN_IF_ERROR(model->shard_lm_head(layout.tp, layout.tp_rank()));
    log_info("tensor-parallel LM head: {} of {} vocabulary rows on this rank", model->lm_head_rows(),
             whole.vocab_size);
  }
  FS_ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaExecutor> executor,
                      cuda::CudaExecutor::create(std::move(model)));
  out.executor = std::move(executor);
  return out;
}

}  // namespace fs::dist

#endif  // FASTSERVE_WITH_NCCL
