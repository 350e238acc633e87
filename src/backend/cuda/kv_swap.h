// The KV cache bytes on a GPU and the engine that moves them between device and pinned host memory.
//
// KvArena: a device pool (cudaMalloc) and a pinned, mapped host pool (cudaHostAlloc) of equal
// block size. Block b of either pool = [num_layers][2 (K, V)][block_size][num_kv_heads][head_dim]
// bf16, contiguous: one block holds a token range of every layer, so a swap moves one span per
// block (the layout cpu::KvCache uses too; the CUDA forward pass reads and writes it through block
// tables).
//
// SwapEngine: carries out one iteration's block moves on its own copy streams, batched (one
// cudaMemcpyBatchAsync per phase, or one gather/scatter kernel), ordered after the compute stream's
// last write and waited for ON THE GPU only by the forward passes that touch the moved blocks.
// The official FastServe code recorded its completion event before enqueueing the copies, so
// nothing really waited for them; here every event is recorded after the work it stands for, and
// tests/unit/backend_cuda/kv_swap_test.cc checks the ordering with a deliberately slowed copy.
//
// Both classes use the CUDA device current when they are created; call them from threads with that
// device current. Not thread-safe: the engine thread is the only caller.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <cuda_runtime.h>

#include "backend/cuda/kv_swap_kernels.h"
#include "backend/executor.h"
#include "core/status.h"
#include "model/model_config.h"

namespace fs::cuda {

class KvArena {
 public:
  // Bytes of one block of block_size tokens for this model: layers * 2 * block_size * kv_heads *
  // head_dim * 2 (bf16). 2 MiB for Llama-3-8B with 16-token blocks.
  static int64_t block_bytes_for(const ModelConfig& config, int64_t block_size);

  // Allocates both pools (block_bytes a positive multiple of 16). kResourceExhausted naming the
  // pool and size when an allocation fails; the device pool is not cleared.
  static Result<std::unique_ptr<KvArena>> create(int64_t block_bytes, int64_t num_device_blocks,
                                                 int64_t num_host_blocks);
  ~KvArena();
  KvArena(const KvArena&) = delete;
  KvArena& operator=(const KvArena&) = delete;

  int64_t block_bytes() const { return block_bytes_; }
  int64_t num_device_blocks() const { return num_device_blocks_; }
  int64_t num_host_blocks() const { return num_host_blocks_; }
  int device() const { return device_; }
  // [num_device_blocks][block_bytes] in device memory.
  uint8_t* device_base() const { return device_base_; }
  // [num_host_blocks][block_bytes], pinned and mapped: a host pointer usable in kernels too (UVA).
  uint8_t* host_base() const { return host_base_; }
  uint8_t* device_block(int32_t id) const { return device_base_ + id * block_bytes_; }
  uint8_t* host_block(int32_t id) const { return host_base_ + id * block_bytes_; }

 private:
  KvArena() = default;

  int64_t block_bytes_ = 0;
  int64_t num_device_blocks_ = 0;
  int64_t num_host_blocks_ = 0;
  int device_ = 0;
  uint8_t* device_base_ = nullptr;
  uint8_t* host_base_ = nullptr;
};

// How the copies of one phase are issued (bench/cuda/swap_bench.cc compares them). On an H200, 1 GiB
// of scattered 2 MiB blocks: batched 99% of the pinned cudaMemcpy bandwidth each way and 100% both
// ways at once, per-block memcpy 92%, kernel 93-95% one way but 64-78% both ways; 64 KiB blocks:
// batched 79-85%, kernel 92-94%, per-block 30% (docs/BENCHMARKS.md).
enum class SwapMethod {
  kBatchedMemcpy,  // one cudaMemcpyBatchAsync per phase (copy engines, no SMs); the default
  kMemcpyPerRun,   // one cudaMemcpyAsync per run of adjacent blocks (the naive way, for comparison)
  kKernel,  // gather/scatter kernel over mapped pinned memory (occupies up to kernel_ctas SMs)
};
const char* swap_method_name(SwapMethod method);

struct SwapOptions {
  SwapMethod method = SwapMethod::kBatchedMemcpy;
  int kernel_ctas = 64;                // grid cap of the kKernel method
  int64_t initial_staging_blocks = 0;  // device staging area (grows on demand, see enqueue)
  // Test-only: before the copies of every enqueue, a kernel spinning this long on each copy stream,
  // so tests can show that forwards wait for the moves they need (and only for those).
  int64_t test_copy_delay_ns = 0;
};

struct SwapStats {
  int64_t num_enqueues = 0;
  int64_t num_offloaded_blocks = 0;
  int64_t num_uploaded_blocks = 0;
  int64_t num_staged_blocks = 0;  // moves that went through the staging area (freed-block reuse)
  int64_t num_forward_waits = 0;  // cudaStreamWaitEvent calls made by before_forward
};

class SwapEngine {
 public:
  // Creates the copy streams and events on the arena's device. The arena must outlive the engine.
  static Result<std::unique_ptr<SwapEngine>> create(KvArena& arena,
                                                    const SwapOptions& options = {});
  ~SwapEngine();  // waits for the moves in flight
  SwapEngine(const SwapEngine&) = delete;
  SwapEngine& operator=(const SwapEngine&) = delete;

  // Starts one iteration's moves and returns without waiting: offloads copy device block src to
  // host block dst, uploads host block src to device block dst. The copies start on the GPU after
  // everything enqueued on compute_stream so far (an event, not a host sync), and after earlier
  // enqueues. Every source is read before any destination is written, so a block freed by one move
  // may be the destination of another move of the same call, in either list (when both kinds of
  // reuse occur, the smaller side is staged through a device buffer, grown with cudaMallocAsync).
  // Without reuse, offloads and uploads run on two streams at once (both PCIe directions).
  // Moves of one call finish together per direction; put the moves the next forward needs in their
  // own call first to let later proactive ones overlap with it. kInvalidArgument for an id out of
  // range or a destination named twice (nothing enqueued); kInternal for a CUDA error.
  Status enqueue(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads,
                 cudaStream_t compute_stream);

  // Makes compute_stream wait, on the GPU, for the pending moves that touch any of device_blocks
  // (uploads into them, offloads reading them: a block whose offload is in flight may be reused by
  // this forward). Moves touching other blocks stay overlapped with the forward. No host sync.
  Status before_forward(cudaStream_t compute_stream, std::span<const int32_t> device_blocks);

  // Host wait for every move enqueued so far (tests, benchmarks, shutdown).
  Status synchronize();

  const SwapStats& stats() const { return stats_; }
  const SwapOptions& options() const { return options_; }

 private:
  struct Phase;
  static constexpr int kEventRing = 64;
  struct CallEvents {
    int64_t seq = 0;
    cudaEvent_t offload_done = nullptr;  // after every offload's reads and writes of the call
    cudaEvent_t upload_done = nullptr;   // after every upload's writes of the call
  };

  SwapEngine(KvArena& arena, const SwapOptions& options) : arena_(arena), options_(options) {}
  Status init();
  Status run_phase(const Phase& phase, cudaStream_t stream);
  Status ensure_staging(int64_t num_blocks, cudaStream_t stream);
  Status retire_slot(CallEvents& slot);

  KvArena& arena_;
  SwapOptions options_;
  SwapStats stats_;
  cudaStream_t offload_stream_ = nullptr;
  cudaStream_t upload_stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr;
  std::array<CallEvents, kEventRing> ring_;
  int64_t seq_ = 0;          // calls enqueued so far; call k uses ring_[k % kEventRing]
  int64_t retired_seq_ = 0;  // calls known (host-checked) complete
  // Per device block, the last call whose offload read it / whose upload wrote it (0: none).
  std::vector<int64_t> last_offload_seq_;
  std::vector<int64_t> last_upload_seq_;
  uint8_t* staging_ = nullptr;  // [staging_blocks_][block_bytes] device
  int64_t staging_blocks_ = 0;
  // Scratch reused across calls (no allocation in steady state).
  std::vector<uint8_t> device_mark_, host_mark_;
  std::vector<void*> dsts_;
  std::vector<const void*> srcs_;
  std::vector<size_t> sizes_;
  std::vector<BlockPair> scratch_pairs_[6];
};

}  // namespace fs::cuda
