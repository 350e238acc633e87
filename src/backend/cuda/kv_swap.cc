#include "backend/cuda/kv_swap.h"

#include <algorithm>

#include "core/check.h"

namespace fs::cuda {
namespace {

Status cuda_error(cudaError_t err, const char* what) {
  return make_error(StatusCode::kInternal, "cuda: {} failed: {}", what, cudaGetErrorString(err));
}

#define FS_CUDA_RETURN_IF_ERROR(expr)                                        \
  do {                                                                       \
    const cudaError_t fs_cuda_err_ = (expr);                                 \
    if (fs_cuda_err_ != cudaSuccess) return cuda_error(fs_cuda_err_, #expr); \
  } while (0)

constexpr size_t kMaxCopiesPerBatch = 4096;

}  // namespace

// One phase of a call: copies between two bases, no order among them (they touch disjoint bytes).
struct SwapEngine::Phase {
  const uint8_t* src_base = nullptr;
  uint8_t* dst_base = nullptr;
  bool src_on_device = false;
  bool dst_on_device = false;
  std::vector<BlockPair>* pairs = nullptr;  // sorted in place by run_phase
};

// ---- KvArena ----

int64_t KvArena::block_bytes_for(const ModelConfig& config, int64_t block_size) {
  return config.num_layers * 2 * block_size * config.num_kv_heads * config.head_dim * 2;
}

Result<std::unique_ptr<KvArena>> KvArena::create(int64_t block_bytes, int64_t num_device_blocks,
                                                 int64_t num_host_blocks) {
  if (block_bytes <= 0 || block_bytes % 16 != 0 || num_device_blocks < 0 || num_host_blocks < 0) {
    return invalid_argument(
        "KV arena: block of {} bytes (needs a positive multiple of 16), {} device "
        "and {} host blocks",
        block_bytes, num_device_blocks, num_host_blocks);
  }
  std::unique_ptr<KvArena> arena(new KvArena());
  arena->block_bytes_ = block_bytes;
  arena->num_device_blocks_ = num_device_blocks;
  arena->num_host_blocks_ = num_host_blocks;
  FS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&arena->device_));
  const int64_t device_bytes = block_bytes * num_device_blocks;
  const int64_t host_bytes = block_bytes * num_host_blocks;
  if (device_bytes > 0) {
    void* p = nullptr;
    if (const cudaError_t err = cudaMalloc(&p, device_bytes); err != cudaSuccess) {
      cudaGetLastError();
      return make_error(
          StatusCode::kResourceExhausted,
          "KV arena: cannot allocate the device pool ({} blocks, {:.2f} GiB) on cuda:{}: {}",
          num_device_blocks, device_bytes / 1073741824.0, arena->device_, cudaGetErrorString(err));
    }
    arena->device_base_ = static_cast<uint8_t*>(p);
  }
  if (host_bytes > 0) {
    void* p = nullptr;
    if (const cudaError_t err =
            cudaHostAlloc(&p, host_bytes, cudaHostAllocMapped | cudaHostAllocPortable);
        err != cudaSuccess) {
      cudaGetLastError();
      return make_error(
          StatusCode::kResourceExhausted,
          "KV arena: cannot allocate the pinned host pool ({} blocks, {:.2f} GiB): {}",
          num_host_blocks, host_bytes / 1073741824.0, cudaGetErrorString(err));
    }
    arena->host_base_ = static_cast<uint8_t*>(p);
    // The gather/scatter kernel uses host pointers in device code: that needs unified addressing
    // (every 64-bit Linux CUDA setup has it).
    void* mapped = nullptr;
    FS_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&mapped, p, 0));
    if (mapped != p) {
      return make_error(StatusCode::kUnimplemented,
                        "KV arena: pinned host memory is not mapped at the "
                        "same address on the device (no unified addressing)");
    }
  }
  return arena;
}

KvArena::~KvArena() {
  if (device_base_ != nullptr) cudaFree(device_base_);
  if (host_base_ != nullptr) cudaFreeHost(host_base_);
}

// ---- SwapEngine ----

const char* swap_method_name(SwapMethod method) {
  switch (method) {
    case SwapMethod::kBatchedMemcpy:
      return "batched-memcpy";
    case SwapMethod::kMemcpyPerRun:
      return "memcpy-per-run";
    case SwapMethod::kKernel:
      return "kernel";
  }
  return "?";
}

Result<std::unique_ptr<SwapEngine>> SwapEngine::create(KvArena& arena, const SwapOptions& options) {
  if (options.kernel_ctas <= 0 || options.initial_staging_blocks < 0 ||
      options.test_copy_delay_ns < 0) {
    return invalid_argument(
        "swap engine: kernel_ctas {} must be positive, staging blocks {} and "
        "test delay {} ns not negative",
        options.kernel_ctas, options.initial_staging_blocks, options.test_copy_delay_ns);
  }
  std::unique_ptr<SwapEngine> engine(new SwapEngine(arena, options));
  FS_RETURN_IF_ERROR(engine->init());
  return engine;
}

Status SwapEngine::init() {
  FS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&offload_stream_, cudaStreamNonBlocking));
  FS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&upload_stream_, cudaStreamNonBlocking));
  FS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
  for (CallEvents& slot : ring_) {
    FS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&slot.offload_done, cudaEventDisableTiming));
    FS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&slot.upload_done, cudaEventDisableTiming));
  }
  last_offload_seq_.assign(arena_.num_device_blocks(), 0);
  last_upload_seq_.assign(arena_.num_device_blocks(), 0);
  device_mark_.assign(arena_.num_device_blocks(), 0);
  host_mark_.assign(arena_.num_host_blocks(), 0);
  if (options_.initial_staging_blocks > 0) {
    FS_RETURN_IF_ERROR(ensure_staging(options_.initial_staging_blocks, upload_stream_));
  }
  return Status::ok();
}

SwapEngine::~SwapEngine() {
  if (offload_stream_ != nullptr) cudaStreamSynchronize(offload_stream_);
  if (upload_stream_ != nullptr) cudaStreamSynchronize(upload_stream_);
  if (staging_ != nullptr) cudaFree(staging_);
  for (CallEvents& slot : ring_) {
    if (slot.offload_done != nullptr) cudaEventDestroy(slot.offload_done);
    if (slot.upload_done != nullptr) cudaEventDestroy(slot.upload_done);
  }
  if (compute_ready_ != nullptr) cudaEventDestroy(compute_ready_);
  if (offload_stream_ != nullptr) cudaStreamDestroy(offload_stream_);
  if (upload_stream_ != nullptr) cudaStreamDestroy(upload_stream_);
}

Status SwapEngine::ensure_staging(int64_t num_blocks, cudaStream_t stream) {
  if (num_blocks <= staging_blocks_) return Status::ok();
  const int64_t grown = std::max(num_blocks, staging_blocks_ * 2);
  if (staging_ != nullptr) FS_CUDA_RETURN_IF_ERROR(cudaFreeAsync(staging_, stream));
  staging_ = nullptr;
  staging_blocks_ = 0;
  void* p = nullptr;
  if (const cudaError_t err = cudaMallocAsync(&p, grown * arena_.block_bytes(), stream);
      err != cudaSuccess) {
    cudaGetLastError();
    return make_error(
        StatusCode::kResourceExhausted,
        "swap engine: cannot allocate a staging area of {} KV blocks ({:.2f} GiB): {}", grown,
        grown * arena_.block_bytes() / 1073741824.0, cudaGetErrorString(err));
  }
  staging_ = static_cast<uint8_t*>(p);
  staging_blocks_ = grown;
  return Status::ok();
}

Status SwapEngine::retire_slot(CallEvents& slot) {
  if (slot.seq == 0) return Status::ok();
  // Kept kEventRing calls back: long complete in practice, so this host wait returns at once.
  FS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot.offload_done));
  FS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot.upload_done));
  retired_seq_ = std::max(retired_seq_, slot.seq);
  slot.seq = 0;
  return Status::ok();
}

Status SwapEngine::run_phase(const Phase& phase, cudaStream_t stream) {
  std::vector<BlockPair>& pairs = *phase.pairs;
  if (pairs.empty()) return Status::ok();
  const int64_t bb = arena_.block_bytes();
  if (options_.method == SwapMethod::kKernel) {
    for (size_t i = 0; i < pairs.size(); i += kMaxPairsPerLaunch) {
      const int n = static_cast<int>(std::min<size_t>(kMaxPairsPerLaunch, pairs.size() - i));
      FS_CUDA_RETURN_IF_ERROR(launch_copy_blocks(
          phase.src_base, phase.dst_base, bb, pairs.data() + i, n, options_.kernel_ctas, stream));
    }
    return Status::ok();
  }
  // Runs of blocks adjacent in both pools become one copy.
  std::sort(pairs.begin(), pairs.end(),
            [](const BlockPair& a, const BlockPair& b) { return a.src < b.src; });
  dsts_.clear();
  srcs_.clear();
  sizes_.clear();
  for (size_t i = 0; i < pairs.size();) {
    size_t j = i + 1;
    while (j < pairs.size() && pairs[j].src == pairs[j - 1].src + 1 &&
           pairs[j].dst == pairs[j - 1].dst + 1)
      ++j;
    dsts_.push_back(phase.dst_base + pairs[i].dst * bb);
    srcs_.push_back(phase.src_base + pairs[i].src * bb);
    sizes_.push_back(static_cast<size_t>((j - i) * bb));
    i = j;
  }
  if (options_.method == SwapMethod::kMemcpyPerRun) {
    for (size_t i = 0; i < dsts_.size(); ++i) {
      FS_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(dsts_[i], srcs_[i], sizes_[i], cudaMemcpyDefault, stream));
    }
    return Status::ok();
  }
  cudaMemcpyAttributes attr{};
  attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  attr.srcLocHint.type = phase.src_on_device ? cudaMemLocationTypeDevice : cudaMemLocationTypeHost;
  attr.srcLocHint.id = phase.src_on_device ? arena_.device() : 0;
  attr.dstLocHint.type = phase.dst_on_device ? cudaMemLocationTypeDevice : cudaMemLocationTypeHost;
  attr.dstLocHint.id = phase.dst_on_device ? arena_.device() : 0;
  attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
  size_t attr_index = 0;
  for (size_t i = 0; i < dsts_.size(); i += kMaxCopiesPerBatch) {
    const size_t n = std::min(kMaxCopiesPerBatch, dsts_.size() - i);
    FS_CUDA_RETURN_IF_ERROR(cudaMemcpyBatchAsync(
        dsts_.data() + i, srcs_.data() + i, sizes_.data() + i, n, &attr, &attr_index, 1, stream));
  }
  return Status::ok();
}

Status SwapEngine::enqueue(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads,
                           cudaStream_t compute_stream) {
  const int64_t nd = arena_.num_device_blocks(), nh = arena_.num_host_blocks();
  // Marks: device bit 1 = offload source, bit 2 = upload destination; host bit 1 = upload source,
  // bit 2 = offload destination. Cleared again before returning.
  const auto clear_marks = [&] {
    for (const BlockCopy& m : offloads) {
      if (m.src >= 0 && m.src < nd) device_mark_[m.src] = 0;
      if (m.dst >= 0 && m.dst < nh) host_mark_[m.dst] = 0;
    }
    for (const BlockCopy& m : uploads) {
      if (m.src >= 0 && m.src < nh) host_mark_[m.src] = 0;
      if (m.dst >= 0 && m.dst < nd) device_mark_[m.dst] = 0;
    }
  };
  Status bad;
  for (const BlockCopy& m : offloads) {
    if (m.src < 0 || m.src >= nd || m.dst < 0 || m.dst >= nh) {
      bad = invalid_argument("offload {} -> {} is outside the pools ({} device, {} host blocks)",
                             m.src, m.dst, nd, nh);
      break;
    }
    if (host_mark_[m.dst] & 2) {
      bad = invalid_argument("host block {} is the destination of two offloads", m.dst);
      break;
    }
    device_mark_[m.src] |= 1;
    host_mark_[m.dst] |= 2;
  }
  for (const BlockCopy& m : uploads) {
    if (!bad.is_ok()) break;
    if (m.src < 0 || m.src >= nh || m.dst < 0 || m.dst >= nd) {
      bad = invalid_argument("upload {} -> {} is outside the pools ({} host, {} device blocks)",
                             m.src, m.dst, nh, nd);
      break;
    }
    if (device_mark_[m.dst] & 2) {
      bad = invalid_argument("device block {} is the destination of two uploads", m.dst);
      break;
    }
    host_mark_[m.src] |= 1;
    device_mark_[m.dst] |= 2;
  }
  // Reuse within the call: an upload into a device block an offload reads, an offload into a host
  // block an upload reads.
  std::vector<BlockPair>& direct_offloads = scratch_pairs_[0];
  std::vector<BlockPair>& direct_uploads = scratch_pairs_[1];
  std::vector<BlockPair>& reused_offloads = scratch_pairs_[2];
  std::vector<BlockPair>& reused_uploads = scratch_pairs_[3];
  for (auto* v : {&direct_offloads, &direct_uploads, &reused_offloads, &reused_uploads}) v->clear();
  if (bad.is_ok()) {
    for (const BlockCopy& m : offloads) {
      ((host_mark_[m.dst] & 1) ? reused_offloads : direct_offloads).push_back({m.src, m.dst});
    }
    for (const BlockCopy& m : uploads) {
      ((device_mark_[m.dst] & 1) ? reused_uploads : direct_uploads).push_back({m.src, m.dst});
    }
  }
  clear_marks();
  FS_RETURN_IF_ERROR(bad);
  if (offloads.empty() && uploads.empty()) return Status::ok();

  const int64_t seq = seq_ + 1;
  CallEvents& slot = ring_[seq % kEventRing];
  FS_RETURN_IF_ERROR(retire_slot(slot));
  const CallEvents& prev = ring_[seq_ % kEventRing];
  FS_CUDA_RETURN_IF_ERROR(cudaEventRecord(compute_ready_, compute_stream));
  for (cudaStream_t s : {offload_stream_, upload_stream_}) {
    FS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(s, compute_ready_, 0));
    if (prev.seq != 0) {
      FS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(s, prev.offload_done, 0));
      FS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(s, prev.upload_done, 0));
    }
    if (options_.test_copy_delay_ns > 0)
      FS_CUDA_RETURN_IF_ERROR(launch_spin(options_.test_copy_delay_ns, s));
  }
  seq_ = seq;
  slot.seq = seq;

  uint8_t* const dev = arena_.device_base();
  uint8_t* const host = arena_.host_base();
  const auto phase = [](const uint8_t* src, bool src_dev, uint8_t* dst, bool dst_dev,
                        std::vector<BlockPair>& p) {
    return Phase{src, dst, src_dev, dst_dev, &p};
  };
  if (reused_offloads.empty() && reused_uploads.empty()) {
    // Independent directions: both PCIe directions at once.
    FS_RETURN_IF_ERROR(run_phase(phase(dev, true, host, false, direct_offloads), offload_stream_));
    FS_RETURN_IF_ERROR(run_phase(phase(host, false, dev, true, direct_uploads), upload_stream_));
    FS_CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.offload_done, offload_stream_));
    FS_CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.upload_done, upload_stream_));
  } else {
    // One stream, four phases; the smaller reused side goes through the staging area:
    //  A (stage offloads): direct offloads D2H; reused offloads D2D to staging (every device source
    //    now read); all uploads H2D (every host source now read); staging D2H to the reused hosts.
    //  B (stage uploads): direct uploads H2D; reused uploads H2D to staging (every host source
    //    read); all offloads D2H (every device source read); staging D2D to the reused devices.
    cudaStream_t s = upload_stream_;
    const bool stage_offloads = reused_offloads.size() <= reused_uploads.size();
    std::vector<BlockPair>& staged = stage_offloads ? reused_offloads : reused_uploads;
    FS_RETURN_IF_ERROR(ensure_staging(static_cast<int64_t>(staged.size()), s));
    stats_.num_staged_blocks += static_cast<int64_t>(staged.size());
    // staged[k] = {src, dst} becomes src -> staging k, then staging k -> dst.
    std::vector<BlockPair>& into = scratch_pairs_[4];
    std::vector<BlockPair>& out_of = scratch_pairs_[5];
    into.resize(staged.size());
    out_of.resize(staged.size());
    for (size_t k = 0; k < staged.size(); ++k) {
      into[k] = {staged[k].src, static_cast<int32_t>(k)};
      out_of[k] = {static_cast<int32_t>(k), staged[k].dst};
    }
    if (stage_offloads) {
      FS_RETURN_IF_ERROR(run_phase(phase(dev, true, host, false, direct_offloads), s));
      FS_RETURN_IF_ERROR(run_phase(phase(dev, true, staging_, true, into), s));
      direct_uploads.insert(direct_uploads.end(), reused_uploads.begin(), reused_uploads.end());
      FS_RETURN_IF_ERROR(run_phase(phase(host, false, dev, true, direct_uploads), s));
      FS_RETURN_IF_ERROR(run_phase(phase(staging_, true, host, false, out_of), s));
    } else {
      FS_RETURN_IF_ERROR(run_phase(phase(host, false, dev, true, direct_uploads), s));
      FS_RETURN_IF_ERROR(run_phase(phase(host, false, staging_, true, into), s));
      direct_offloads.insert(direct_offloads.end(), reused_offloads.begin(), reused_offloads.end());
      FS_RETURN_IF_ERROR(run_phase(phase(dev, true, host, false, direct_offloads), s));
      FS_RETURN_IF_ERROR(run_phase(phase(staging_, true, dev, true, out_of), s));
    }
    FS_CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.offload_done, s));
    FS_CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.upload_done, s));
  }
  for (const BlockCopy& m : offloads) last_offload_seq_[m.src] = seq;
  for (const BlockCopy& m : uploads) last_upload_seq_[m.dst] = seq;
  ++stats_.num_enqueues;
  stats_.num_offloaded_blocks += static_cast<int64_t>(offloads.size());
  stats_.num_uploaded_blocks += static_cast<int64_t>(uploads.size());
  return Status::ok();
}

Status SwapEngine::before_forward(cudaStream_t compute_stream,
                                  std::span<const int32_t> device_blocks) {
  int64_t offload_seq = 0, upload_seq = 0;
  for (const int32_t b : device_blocks) {
    if (b < 0 || b >= arena_.num_device_blocks()) {
      return invalid_argument("device block {} is outside the pool ({} blocks)", b,
                              arena_.num_device_blocks());
    }
    offload_seq = std::max(offload_seq, last_offload_seq_[b]);
    upload_seq = std::max(upload_seq, last_upload_seq_[b]);
  }
  // Events of one stream complete in order, so the latest call touching these blocks covers the
  // earlier ones.
  if (offload_seq > retired_seq_) {
    const CallEvents& slot = ring_[offload_seq % kEventRing];
    FS_CHECK(slot.seq == offload_seq, "swap event ring: slot holds call {}, wanted {}", slot.seq,
             offload_seq);
    FS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(compute_stream, slot.offload_done, 0));
    ++stats_.num_forward_waits;
  }
  if (upload_seq > retired_seq_) {
    const CallEvents& slot = ring_[upload_seq % kEventRing];
    FS_CHECK(slot.seq == upload_seq, "swap event ring: slot holds call {}, wanted {}", slot.seq,
             upload_seq);
    FS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(compute_stream, slot.upload_done, 0));
    ++stats_.num_forward_waits;
  }
  return Status::ok();
}

Status SwapEngine::synchronize() {
  FS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(offload_stream_));
  FS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(upload_stream_));
  return Status::ok();
}

}  // namespace fs::cuda
