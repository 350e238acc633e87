#include "dist/cuda_shard.h"

#ifdef FASTSERVE_WITH_NCCL

#include <algorithm>
#include <cstdlib>
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

// The TP all-reduce over peer memory where every rank of the group can map every other's (one
// host), unless FASTSERVE_TP_ALLREDUCE=nccl. Collective over tp_group; null: NCCL for all sizes.
std::unique_ptr<cuda::P2pAllReduce> make_p2p_allreduce(Communicator& tp_group) {
  const char* mode = std::getenv("FASTSERVE_TP_ALLREDUCE");
  if (mode != nullptr && std::string(mode) == "nccl") return nullptr;
  // 256 KB (batch <= 16 at hidden 4096) unless FASTSERVE_P2P_ALLREDUCE_MAX_KB says otherwise. On
  // 2x H200 (bench/cuda/nccl_allreduce_bench.cc, 64 in a CUDA graph, 2026-11-29) it took 2.5 us at
  // 16 KB and 4.6 at 256 KB against NCCL's 6.7 and 8.2; at 1 MB 14.9 against 13.6.
  Result<std::optional<int64_t>> kb = int_from_env("FASTSERVE_P2P_ALLREDUCE_MAX_KB", 4, 1 << 20);
  if (!kb.is_ok()) {
    log_warn("{}; using 256 KB", kb.status().message());
    kb = std::optional<int64_t>();
  }
  const int64_t max_floats = kb->value_or(256) * 256;
  const auto all_gather = [&tp_group](std::span<const uint8_t> mine, std::span<uint8_t> all) {
    std::vector<uint8_t> buf(mine.size());
    for (int r = 0; r < tp_group.size(); ++r) {
      if (r == tp_group.rank()) buf.assign(mine.begin(), mine.end());
      FS_RETURN_IF_ERROR(tp_group.broadcast(buf, r));
      std::copy(buf.begin(), buf.end(), all.begin() + r * mine.size());
    }
    return Status::ok();
  };
  Result<std::unique_ptr<cuda::P2pAllReduce>> p2p =
      cuda::P2pAllReduce::create(tp_group.rank(), tp_group.size(), max_floats, all_gather);
  // Every rank must make the same choice.
  float ok = p2p.is_ok() ? 1.0f : 0.0f;
  if (!tp_group.all_reduce_sum(std::span<float>(&ok, 1)).is_ok() ||
      ok != static_cast<float>(tp_group.size())) {
    log_info("tensor-parallel all-reduce: NCCL ({})",
             p2p.is_ok() ? "a peer cannot map this rank's memory" : p2p.status().message());
    return nullptr;
  }
  log_info("tensor-parallel all-reduce: peer memory up to {} KB, NCCL above", max_floats * 4 / 1024);
  return std::move(*p2p);
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
    std::shared_ptr<cuda::P2pAllReduce> p2p = make_p2p_allreduce(tp_group);
    hooks.all_reduce = [tp_nccl, p2p, stream](float* x, int64_t n) {
      if (p2p && n <= p2p->max_floats()) return p2p->enqueue(x, n, stream);
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
