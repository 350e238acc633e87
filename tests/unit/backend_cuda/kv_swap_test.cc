// The KV swap engine on a GPU: round trips of scattered blocks, freed-block reuse inside one call,
// and the ordering a forward relies on, checked with a deliberately slowed copy stream (the
// official FastServe code recorded its completion event before the copies, so nothing waited for
// them).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda/device_info.h"
#include "backend/cuda/kv_swap.h"

namespace fs::cuda {
namespace {

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr
#define ASSERT_OK(expr)                      \
  do {                                       \
    const ::fs::Status s_ = (expr);          \
    ASSERT_TRUE(s_.is_ok()) << s_.message(); \
  } while (0)

// 12352 = 772 x 16 B: not a multiple of the kernel's 16 KiB chunk, so tails are exercised.
constexpr int64_t kBlockBytes = 12352;
constexpr int kDeviceBlocks = 64;
constexpr int kHostBlocks = 64;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class KvSwapTest : public ::testing::TestWithParam<SwapMethod> {
 protected:
  void SetUp() override {
    if (list_devices().empty()) GTEST_SKIP() << "no CUDA device";
    Result<std::unique_ptr<KvArena>> arena =
        KvArena::create(kBlockBytes, kDeviceBlocks, kHostBlocks);
    ASSERT_TRUE(arena.is_ok()) << arena.status().message();
    arena_ = std::move(*arena);
    ASSERT_CUDA(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    // Device pool = pattern seed 1, host pool = pattern seed 2.
    device_init_ = random_bytes(kBlockBytes * kDeviceBlocks, 1);
    ASSERT_CUDA(cudaMemcpy(arena_->device_base(), device_init_.data(), device_init_.size(),
                           cudaMemcpyHostToDevice));
    host_init_ = random_bytes(kBlockBytes * kHostBlocks, 2);
    std::memcpy(arena_->host_base(), host_init_.data(), host_init_.size());
  }
  void TearDown() override {
    engine_.reset();
    if (compute_ != nullptr) cudaStreamDestroy(compute_);
  }
  void make_engine(int64_t delay_ns = 0) {
    SwapOptions options;
    options.method = GetParam();
    options.kernel_ctas = 8;
    options.test_copy_delay_ns = delay_ns;
    Result<std::unique_ptr<SwapEngine>> engine = SwapEngine::create(*arena_, options);
    ASSERT_TRUE(engine.is_ok()) << engine.status().message();
    engine_ = std::move(*engine);
  }
  std::vector<uint8_t> device_block(int32_t id) {
    std::vector<uint8_t> out(kBlockBytes);
    EXPECT_EQ(cudaMemcpy(out.data(), arena_->device_block(id), kBlockBytes, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }
  std::vector<uint8_t> host_block(int32_t id) const {
    return {arena_->host_block(id), arena_->host_block(id) + kBlockBytes};
  }
  std::vector<uint8_t> initial_device(int32_t id) const {
    return {device_init_.begin() + id * kBlockBytes, device_init_.begin() + (id + 1) * kBlockBytes};
  }
  std::vector<uint8_t> initial_host(int32_t id) const {
    return {host_init_.begin() + id * kBlockBytes, host_init_.begin() + (id + 1) * kBlockBytes};
  }

  std::unique_ptr<KvArena> arena_;
  std::unique_ptr<SwapEngine> engine_;
  cudaStream_t compute_ = nullptr;
  std::vector<uint8_t> device_init_, host_init_;
};

TEST_P(KvSwapTest, RoundTripsScatteredBlocks) {
  make_engine();
  std::mt19937 rng(7);
  std::vector<int32_t> dev(kDeviceBlocks), host(kHostBlocks);
  std::iota(dev.begin(), dev.end(), 0);
  std::iota(host.begin(), host.end(), 0);
  std::shuffle(dev.begin(), dev.end(), rng);
  std::shuffle(host.begin(), host.end(), rng);
  // Offload 24 scattered device blocks (plus a run of 4 adjacent ones, which memcpy coalesces).
  std::vector<BlockCopy> offloads;
  for (int i = 0; i < 24; ++i) offloads.push_back({dev[i], host[i]});
  std::vector<int32_t> used_dev(dev.begin(), dev.begin() + 24),
      used_host(host.begin(), host.begin() + 24);
  for (int i = 0; i < 4; ++i) {
    // Adjacent ids not used above, if any.
    const int32_t d = 60 + i, h = 60 + i;
    if (std::find(used_dev.begin(), used_dev.end(), d) == used_dev.end() &&
        std::find(used_host.begin(), used_host.end(), h) == used_host.end()) {
      offloads.push_back({d, h});
    }
  }
  ASSERT_OK(engine_->enqueue(offloads, {}, compute_));
  ASSERT_OK(engine_->synchronize());
  for (const BlockCopy& m : offloads) EXPECT_EQ(host_block(m.dst), initial_device(m.src)) << m.src;

  // Scribble over the device pool, then upload everything back into other device blocks.
  ASSERT_CUDA(cudaMemset(arena_->device_base(), 0xAB, kBlockBytes * kDeviceBlocks));
  std::vector<BlockCopy> uploads;
  for (size_t i = 0; i < offloads.size(); ++i) {
    uploads.push_back({offloads[i].dst, static_cast<int32_t>(kDeviceBlocks - 1 - offloads[i].src)});
  }
  ASSERT_OK(engine_->enqueue({}, uploads, compute_));
  ASSERT_OK(engine_->synchronize());
  for (size_t i = 0; i < offloads.size(); ++i) {
    EXPECT_EQ(device_block(uploads[i].dst), initial_device(offloads[i].src)) << uploads[i].dst;
  }
  EXPECT_EQ(engine_->stats().num_offloaded_blocks, static_cast<int64_t>(offloads.size()));
  EXPECT_EQ(engine_->stats().num_uploaded_blocks, static_cast<int64_t>(uploads.size()));
  EXPECT_EQ(engine_->stats().num_staged_blocks, 0);
}

TEST_P(KvSwapTest, OffloadsAndUploadsRunTogether) {
  make_engine();
  std::vector<BlockCopy> offloads = {{3, 10}, {7, 11}, {20, 30}};
  std::vector<BlockCopy> uploads = {{40, 50}, {41, 0}, {5, 63}};
  ASSERT_OK(engine_->enqueue(offloads, uploads, compute_));
  ASSERT_OK(engine_->synchronize());
  for (const BlockCopy& m : offloads) EXPECT_EQ(host_block(m.dst), initial_device(m.src));
  for (const BlockCopy& m : uploads) EXPECT_EQ(device_block(m.dst), initial_host(m.src));
  EXPECT_EQ(device_block(1), initial_device(1));  // untouched
}

// Job A leaves the device and job B takes its freed blocks in the same call (device-side reuse),
// job C comes back and job D takes its freed host blocks (host-side reuse), and a cycle swaps two
// blocks' contents through each other. Every destination must get its source's old bytes.
TEST_P(KvSwapTest, ReusesBlocksFreedInTheSameCall) {
  make_engine();
  struct Case {
    std::vector<BlockCopy> offloads, uploads;
  };
  const std::vector<Case> cases = {
      // device-side reuse only: B's uploads land in A's device blocks
      {{{1, 20}, {2, 21}, {3, 22}}, {{40, 1}, {41, 2}, {42, 3}}},
      // host-side reuse only: D's offloads land in C's host blocks
      {{{10, 40}, {11, 41}}, {{40, 30}, {41, 31}}},
      // both, with a cycle: device 5 <-> host 5, device 6 -> host 7, host 6 -> device 6 ...
      {{{5, 5}, {6, 7}, {8, 9}}, {{5, 5}, {6, 6}, {9, 8}, {7, 12}}},
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    // Fresh contents each case.
    ASSERT_CUDA(cudaMemcpy(arena_->device_base(), device_init_.data(), device_init_.size(),
                           cudaMemcpyHostToDevice));
    std::memcpy(arena_->host_base(), host_init_.data(), host_init_.size());
    const Case& k = cases[c];
    ASSERT_OK(engine_->enqueue(k.offloads, k.uploads, compute_));
    ASSERT_OK(engine_->synchronize());
    for (const BlockCopy& m : k.offloads)
      EXPECT_EQ(host_block(m.dst), initial_device(m.src)) << "case " << c;
    for (const BlockCopy& m : k.uploads)
      EXPECT_EQ(device_block(m.dst), initial_host(m.src)) << "case " << c;
  }
  EXPECT_GT(engine_->stats().num_staged_blocks, 0);
}

TEST_P(KvSwapTest, RejectsBadMovesAndEnqueuesNothing) {
  make_engine();
  const std::vector<BlockCopy> out_of_range = {{kDeviceBlocks, 0}};
  EXPECT_EQ(engine_->enqueue(out_of_range, {}, compute_).code(), StatusCode::kInvalidArgument);
  const std::vector<BlockCopy> twice = {{1, 4}, {2, 4}};
  EXPECT_EQ(engine_->enqueue(twice, {}, compute_).code(), StatusCode::kInvalidArgument);
  ASSERT_OK(engine_->synchronize());
  EXPECT_EQ(host_block(4), initial_host(4));
  EXPECT_EQ(engine_->stats().num_enqueues, 0);
  // The marks were cleared: a valid call afterwards works.
  const std::vector<BlockCopy> ok = {{1, 4}};
  ASSERT_OK(engine_->enqueue(ok, {}, compute_));
  ASSERT_OK(engine_->synchronize());
  EXPECT_EQ(host_block(4), initial_device(1));
}

constexpr int64_t kDelayNs = 50'000'000;  // 50 ms spin before each call's copies

// A job's upload takes >= 50 ms; the forward reads its block right after before_forward on the
// compute stream and must see the uploaded bytes, not the old ones.
TEST_P(KvSwapTest, ForwardNeverRunsBeforeItsUpload) {
  make_engine(kDelayNs);
  uint8_t* readback = nullptr;
  ASSERT_CUDA(
      cudaHostAlloc(reinterpret_cast<void**>(&readback), kBlockBytes, cudaHostAllocDefault));
  const std::vector<BlockCopy> uploads = {{9, 17}};
  ASSERT_OK(engine_->enqueue({}, uploads, compute_));
  const std::vector<int32_t> batch_blocks = {2, 17};
  ASSERT_OK(engine_->before_forward(compute_, batch_blocks));
  ASSERT_CUDA(cudaMemcpyAsync(readback, arena_->device_block(17), kBlockBytes,
                              cudaMemcpyDeviceToHost, compute_));
  ASSERT_CUDA(cudaStreamSynchronize(compute_));
  EXPECT_EQ(std::vector<uint8_t>(readback, readback + kBlockBytes), initial_host(9));
  ASSERT_OK(engine_->synchronize());
  cudaFreeHost(readback);
}

// The control that shows the delay bites: without before_forward the same read sees the old bytes.
TEST_P(KvSwapTest, WithoutBeforeForwardTheReadRacesTheSlowedUpload) {
  make_engine(kDelayNs);
  uint8_t* readback = nullptr;
  ASSERT_CUDA(
      cudaHostAlloc(reinterpret_cast<void**>(&readback), kBlockBytes, cudaHostAllocDefault));
  const std::vector<BlockCopy> uploads = {{9, 17}};
  ASSERT_OK(engine_->enqueue({}, uploads, compute_));
  ASSERT_CUDA(cudaMemcpyAsync(readback, arena_->device_block(17), kBlockBytes,
                              cudaMemcpyDeviceToHost, compute_));
  ASSERT_CUDA(cudaStreamSynchronize(compute_));
  EXPECT_EQ(std::vector<uint8_t>(readback, readback + kBlockBytes), initial_device(17));
  ASSERT_OK(engine_->synchronize());
  EXPECT_EQ(device_block(17), initial_host(9));
  cudaFreeHost(readback);
}

// A block whose offload is still in flight is reused by the forward (the scheduler freed it): the
// forward's write must wait until the offload has read it.
TEST_P(KvSwapTest, ForwardWaitsForTheOffloadOfABlockItReuses) {
  make_engine(kDelayNs);
  const std::vector<BlockCopy> offloads = {{12, 33}};
  ASSERT_OK(engine_->enqueue(offloads, {}, compute_));
  const std::vector<int32_t> batch_blocks = {12};
  ASSERT_OK(engine_->before_forward(compute_, batch_blocks));
  ASSERT_CUDA(cudaMemsetAsync(arena_->device_block(12), 0xFF, kBlockBytes, compute_));
  ASSERT_CUDA(cudaStreamSynchronize(compute_));
  ASSERT_OK(engine_->synchronize());
  EXPECT_EQ(host_block(33), initial_device(12));
  EXPECT_EQ(device_block(12), std::vector<uint8_t>(kBlockBytes, 0xFF));
}

// Proactive offloads of jobs outside the batch stay overlapped: a forward over other blocks does
// not wait for them.
TEST_P(KvSwapTest, UnrelatedMovesDoNotDelayTheForward) {
  make_engine(kDelayNs);
  const std::vector<BlockCopy> offloads = {{40, 1}, {41, 2}};
  ASSERT_OK(engine_->enqueue(offloads, {}, compute_));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> batch_blocks = {3, 4, 5};
  ASSERT_OK(engine_->before_forward(compute_, batch_blocks));
  ASSERT_CUDA(cudaMemsetAsync(arena_->device_block(3), 0, kBlockBytes, compute_));
  ASSERT_CUDA(cudaStreamSynchronize(compute_));
  const double waited_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(waited_ms, 25.0);
  EXPECT_EQ(engine_->stats().num_forward_waits, 0);
  ASSERT_OK(engine_->synchronize());
  EXPECT_EQ(host_block(1), initial_device(40));
}

INSTANTIATE_TEST_SUITE_P(Methods, KvSwapTest,
                         ::testing::Values(SwapMethod::kBatchedMemcpy, SwapMethod::kMemcpyPerRun,
                                           SwapMethod::kKernel),
                         [](const ::testing::TestParamInfo<SwapMethod>& info) {
                           std::string name = swap_method_name(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(KvArena, BlockBytesOfLlama3_8B) {
  ModelConfig c;
  c.num_layers = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  EXPECT_EQ(KvArena::block_bytes_for(c, 16), 2 << 20);
}

}  // namespace
}  // namespace fs::cuda
