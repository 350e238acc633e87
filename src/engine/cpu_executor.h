// The CPU executor: CausalLm's forward over a device pool that is host memory, and a second host
// pool for offloaded blocks. Swaps run on a copy thread of their own, one swap() call at a time in
// call order, so proactive moves (jobs outside the batch) overlap with the forward; forward() first
// waits for the calls that touch its batch's device blocks (the CPU counterpart of the CUDA copy
// stream and SwapEngine::before_forward; docs/ENGINE.md "Swaps on the CPU").
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/cpu/kv_cache.h"
#include "backend/executor.h"
#include "model/causal_lm.h"

namespace fs {

class CpuExecutor final : public Executor {
 public:
  struct Options {
    // Tests only: the copy thread sleeps this long before the copies of every swap() call, so a
    // test can see the forward wait for the moves it needs and overlap the others.
    std::chrono::microseconds test_copy_delay{0};
  };

  explicit CpuExecutor(CausalLm& lm) : CpuExecutor(lm, Options{}) {}
  CpuExecutor(CausalLm& lm, Options options) : lm_(lm), options_(options) {}
  ~CpuExecutor() override;  // finishes the swaps in flight, then stops the copy thread

  const ModelConfig& config() const override { return lm_.config(); }
  std::string device_name() const override { return "cpu"; }
  int64_t weight_bytes() const override { return lm_.loaded().weight_bytes; }
  NominalSpeed nominal_speed() const override { return {}; }
  int64_t kv_block_bytes(int64_t block_size) const override {
    return lm_.kv_shape(1, block_size).block_bytes();
  }
  int64_t max_device_blocks(int64_t, int64_t) const override { return 0; }
  Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) override;
  // Checks every id (kInvalidArgument, nothing queued, on a bad one), queues the moves for the
  // copy thread and returns; they start once every earlier call's moves are done.
  Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) override;
  // Waits (on the host) for the swap calls that read or write a device block of `seqs`' block
  // tables, then runs the forward while later calls' moves go on.
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override;
  // Greedy rows are picked here (sampler.h greedy_pick: the sampler's own arithmetic), so a
  // pipeline's last stage sends rank 0 picks instead of rows.
  bool supports_greedy_picks() const override { return true; }
  std::span<const GreedyPick> greedy_picks() const override { return picks_view_; }

  // Blocks until every queued swap is done (tests; reading the pools below needs it).
  void wait_for_swaps();
  // swap() calls queued or running (tests).
  int64_t num_swaps_in_flight();

  // The pools, for tests; wait_for_swaps() first.
  cpu::KvCache& device_cache() { return *device_; }
  cpu::KvCache& host_cache() { return *host_; }

 private:
  struct SwapCall {
    uint64_t seq = 0;
    std::vector<BlockCopy> offloads, uploads;
  };
  void copy_loop();                       // the copy thread
  void run_copies(const SwapCall& call);  // copy thread only
  void wait_until_done(uint64_t seq);

  CausalLm& lm_;
  Options options_;
  std::unique_ptr<cpu::KvCache> device_, host_;

  // Engine thread only (the one caller of swap() and forward()).
  uint64_t next_seq_ = 1;
  // [device blocks] the last swap() call that reads or writes each block
  std::vector<uint64_t> device_block_last_call_;
  std::thread copier_;              // started by the first swap() with moves
  std::vector<GreedyPick> picks_;   // [rows] of the last forward
  std::vector<int64_t> pick_rows_;  // rows of the last forward that take a greedy pick
  std::span<const GreedyPick> picks_view_;

  // Shared with the copy thread.
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<SwapCall> queue_;   // front: running or next; calls complete in seq order
  std::vector<SwapCall> spare_;  // finished calls, their vectors reused by swap()
  uint64_t done_seq_ = 0;        // every call with seq <= done_seq_ is complete
  bool stopping_ = false;

  // Copy thread only.
  std::vector<uint8_t> staging_;                      // [staged moves, block_bytes]
  std::vector<uint8_t> device_is_src_, host_is_src_;  // [pool blocks] source of the running call
};

}  // namespace fs
