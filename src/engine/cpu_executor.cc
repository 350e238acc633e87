#include "engine/cpu_executor.h"

#include <algorithm>
#include <cstring>

#include "core/thread_pool.h"
#include "engine/sampler.h"

namespace fs {

CpuExecutor::~CpuExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;  // the copy thread finishes what is queued first
  }
  work_cv_.notify_all();
  if (copier_.joinable()) copier_.join();
}

Status CpuExecutor::allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) {
  if (device_) return make_error(StatusCode::kInternal, "KV pools are already allocated");
  device_ = std::make_unique<cpu::KvCache>(lm_.kv_shape(device_blocks, block_size));
  host_ = std::make_unique<cpu::KvCache>(lm_.kv_shape(host_blocks, block_size));
  device_block_last_call_.assign(device_blocks, 0);
  device_is_src_.assign(device_blocks, 0);
  host_is_src_.assign(host_blocks, 0);
  return Status::ok();
}

Status CpuExecutor::swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) {
  if (offloads.empty() && uploads.empty()) return Status::ok();
  if (!device_) return make_error(StatusCode::kInternal, "KV pools are not allocated");
  const int64_t num_device = device_->shape().num_blocks, num_host = host_->shape().num_blocks;
  auto bad = [](int32_t id, int64_t n) { return id < 0 || id >= n; };
  for (const BlockCopy& m : offloads) {
    if (bad(m.src, num_device) || bad(m.dst, num_host)) {
      return invalid_argument("offload {} -> {} is outside the pools ({} device, {} host blocks)",
                              m.src, m.dst, num_device, num_host);
    }
  }
  for (const BlockCopy& m : uploads) {
    if (bad(m.src, num_host) || bad(m.dst, num_device)) {
      return invalid_argument("upload {} -> {} is outside the pools ({} host, {} device blocks)",
                              m.src, m.dst, num_host, num_device);
    }
  }
  if (!copier_.joinable()) copier_ = std::thread([this] { copy_loop(); });
  SwapCall call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!spare_.empty()) {
      call = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  call.seq = next_seq_++;
  call.offloads.assign(offloads.begin(), offloads.end());
  call.uploads.assign(uploads.begin(), uploads.end());
  // The forward must not write a block an offload still reads, nor read one an upload still writes.
  for (const BlockCopy& m : offloads) device_block_last_call_[m.src] = call.seq;
  for (const BlockCopy& m : uploads) device_block_last_call_[m.dst] = call.seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(call));
  }
  work_cv_.notify_one();
  return Status::ok();
}

Result<std::span<const float>> CpuExecutor::forward(std::span<const ForwardSeq> seqs) {
  if (!device_) return make_error(StatusCode::kInternal, "KV pools are not allocated");
  uint64_t last_call = 0;
  const int64_t num_device = device_->shape().num_blocks;
  for (const ForwardSeq& s : seqs) {
    for (const int32_t b : s.block_table) {
      if (b >= 0 && b < num_device) last_call = std::max(last_call, device_block_last_call_[b]);
    }
  }
  if (last_call > 0) wait_until_done(last_call);
  FS_ASSIGN_OR_RETURN(std::span<const float> logits, lm_.forward(seqs, *device_));
  picks_view_ = {};
  bool any_greedy = false;
  int64_t rows = 0;
  for (const ForwardSeq& s : seqs) {
    any_greedy = any_greedy || (s.greedy && !s.all_logits);
    rows += s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
  }
  const int64_t vocab = lm_.config().vocab_size;
  // (A pipeline stage before the last returns no logits.)
  if (!any_greedy || static_cast<int64_t>(logits.size()) != rows * vocab) return logits;
  // The picks run over the pool: a 16-sequence step scans 16 x 49152 logits, ~6% of the calling
  // thread's time in the step when it did them alone (the other threads waiting).
  picks_.clear();
  pick_rows_.clear();
  int64_t row = 0;
  for (const ForwardSeq& s : seqs) {
    const int64_t n = s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
    for (int64_t r = 0; r < n; ++r, ++row) {
      if (s.greedy && !s.all_logits) pick_rows_.push_back(row);
      picks_.push_back(GreedyPick{});
    }
  }
  default_pool().parallel_for(
      static_cast<int64_t>(pick_rows_.size()), 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          picks_[pick_rows_[i]] = greedy_pick(logits.subspan(pick_rows_[i] * vocab, vocab));
        }
      });
  picks_view_ = picks_;
  return logits;
}

void CpuExecutor::wait_until_done(uint64_t seq) {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return done_seq_ >= seq; });
}

void CpuExecutor::wait_for_swaps() { wait_until_done(next_seq_ - 1); }

int64_t CpuExecutor::num_swaps_in_flight() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

void CpuExecutor::copy_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;             // stopping, and nothing left
    const SwapCall& call = queue_.front();  // deque: stays put while swap() appends
    lock.unlock();
    run_copies(call);
    lock.lock();
    done_seq_ = call.seq;
    spare_.push_back(std::move(queue_.front()));
    queue_.pop_front();
    done_cv_.notify_all();
  }
}

// Every source is read before any destination is written, whatever order the scheduler booked the
// moves in: a host block freed by an upload may be an offload's destination in the same call, and a
// device block freed by an offload an upload's destination. Moves whose destination is a source of
// this call go through staging (gather all of them, then the direct moves, then scatter); the
// others, usually all, are one memcpy each. Earlier calls are complete (one call at a time).
void CpuExecutor::run_copies(const SwapCall& call) {
  if (options_.test_copy_delay.count() > 0) std::this_thread::sleep_for(options_.test_copy_delay);
  const size_t block_bytes = static_cast<size_t>(device_->shape().block_bytes());
  for (const BlockCopy& m : call.offloads) device_is_src_[m.src] = 1;
  for (const BlockCopy& m : call.uploads) host_is_src_[m.src] = 1;
  auto staged_offload = [&](const BlockCopy& m) { return host_is_src_[m.dst] != 0; };
  auto staged_upload = [&](const BlockCopy& m) { return device_is_src_[m.dst] != 0; };
  const size_t num_staged =
      std::count_if(call.offloads.begin(), call.offloads.end(), staged_offload) +
      std::count_if(call.uploads.begin(), call.uploads.end(), staged_upload);
  if (staging_.size() < num_staged * block_bytes) staging_.resize(num_staged * block_bytes);
  size_t i = 0;
  for (const BlockCopy& m : call.offloads) {
    if (staged_offload(m))
      std::memcpy(staging_.data() + i++ * block_bytes, device_->block_data(m.src), block_bytes);
  }
  for (const BlockCopy& m : call.uploads) {
    if (staged_upload(m))
      std::memcpy(staging_.data() + i++ * block_bytes, host_->block_data(m.src), block_bytes);
  }
  for (const BlockCopy& m : call.offloads) {
    if (!staged_offload(m))
      std::memcpy(host_->block_data(m.dst), device_->block_data(m.src), block_bytes);
  }
  for (const BlockCopy& m : call.uploads) {
    if (!staged_upload(m))
      std::memcpy(device_->block_data(m.dst), host_->block_data(m.src), block_bytes);
  }
  i = 0;
  for (const BlockCopy& m : call.offloads) {
    if (staged_offload(m))
      std::memcpy(host_->block_data(m.dst), staging_.data() + i++ * block_bytes, block_bytes);
  }
  for (const BlockCopy& m : call.uploads) {
    if (staged_upload(m))
      std::memcpy(device_->block_data(m.dst), staging_.data() + i++ * block_bytes, block_bytes);
  }
  for (const BlockCopy& m : call.offloads) device_is_src_[m.src] = 0;
  for (const BlockCopy& m : call.uploads) host_is_src_[m.src] = 0;
}

}  // namespace fs
