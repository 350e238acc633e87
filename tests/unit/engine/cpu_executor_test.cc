// CpuExecutor's copy thread: swaps run asynchronously, in call order, gather-then-scatter within a
// call; forward() waits for the calls that touch its blocks and overlaps the others. A test-only
// delay before every call's copies (Options::test_copy_delay) makes the ordering visible.
#include "engine/cpu_executor.h"

#include <chrono>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine_test_util.h"

#include "core/timer.h"
#include "engine/sampler.h"

namespace fs {
namespace {

using testing::kTinyLlama;

constexpr int64_t kBlockSize = 4;

std::unique_ptr<CausalLm> load_lm() {
  Result<std::unique_ptr<CausalLm>> lm = CausalLm::load(kTinyLlama);
  EXPECT_TRUE(lm.is_ok()) << lm.status().to_string();
  return std::move(*lm);
}

std::vector<float> block_bytes(cpu::KvCache& cache, int32_t b) {
  const float* p = cache.block(b);
  return std::vector<float>(p, p + cache.shape().block_floats());
}

void fill_random(cpu::KvCache& cache, int32_t b, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  float* p = cache.block(b);
  for (int64_t i = 0; i < cache.shape().block_floats(); ++i) p[i] = u(rng);
}

const std::vector<int32_t> kPrompt = {1, 17, 42, 99, 5, 61, 200, 33};  // 2 blocks of 4
const std::vector<int32_t> kNext = {77};

// Prefills kPrompt into `table`'s first two blocks.
void prefill(CpuExecutor& ex, std::span<const int32_t> table) {
  ForwardSeq seq{kPrompt, 0, table.first(2), false};
  ASSERT_TRUE(ex.forward(std::span(&seq, 1)).is_ok());
}

std::vector<float> decode(CpuExecutor& ex, std::span<const int32_t> table) {
  ForwardSeq seq{kNext, static_cast<int64_t>(kPrompt.size()), table, false};
  Result<std::span<const float>> logits = ex.forward(std::span(&seq, 1));
  EXPECT_TRUE(logits.is_ok()) << logits.status().to_string();
  return logits.is_ok() ? std::vector<float>(logits->begin(), logits->end()) : std::vector<float>();
}

double elapsed_s(double start) { return monotonic_s() - start; }

// A job offloaded and uploaded again (to other device blocks, through a slowed copy) decodes
// exactly as if it had never moved: its forward waited for the upload.
TEST(CpuExecutorTest, ForwardWaitsForTheUploadOfItsBlocks) {
  std::unique_ptr<CausalLm> lm = load_lm();
  std::vector<float> expected;
  {
    CpuExecutor ex(*lm);
    ASSERT_TRUE(ex.allocate_kv(kBlockSize, 8, 8).is_ok());
    const std::vector<int32_t> table = {0, 1, 2};
    prefill(ex, table);
    expected = decode(ex, table);
  }
  constexpr auto kDelay = std::chrono::milliseconds(200);
  CpuExecutor ex(*lm, CpuExecutor::Options{.test_copy_delay = kDelay});
  ASSERT_TRUE(ex.allocate_kv(kBlockSize, 8, 8).is_ok());
  prefill(ex, std::vector<int32_t>{0, 1});
  const std::vector<BlockCopy> offloads = {{0, 5}, {1, 6}};
  ASSERT_TRUE(ex.swap(offloads, {}).is_ok());
  ex.wait_for_swaps();
  for (int32_t b : {0, 1, 3, 4})
    std::memset(ex.device_cache().block(b), 0, ex.device_cache().shape().block_bytes());

  const std::vector<BlockCopy> uploads = {{5, 3}, {6, 4}};
  const double start = monotonic_s();
  ASSERT_TRUE(ex.swap({}, uploads).is_ok());
  EXPECT_EQ(ex.num_swaps_in_flight(), 1);  // swap() returned before the copies
  const std::vector<float> got = decode(ex, std::vector<int32_t>{3, 4, 2});
  EXPECT_GE(elapsed_s(start), 0.9 * std::chrono::duration<double>(kDelay).count());
  EXPECT_EQ(ex.num_swaps_in_flight(), 0);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(got, expected);  // the same kernels over the same bytes: bit-identical
}

// A forward over blocks no queued call touches starts at once, while a slowed proactive offload of
// another job is still running; the offload's bytes arrive intact afterwards.
TEST(CpuExecutorTest, ForwardOverlapsProactiveCopiesOfOtherBlocks) {
  std::unique_ptr<CausalLm> lm = load_lm();
  constexpr auto kDelay = std::chrono::milliseconds(1000);
  CpuExecutor ex(*lm, CpuExecutor::Options{.test_copy_delay = kDelay});
  ASSERT_TRUE(ex.allocate_kv(kBlockSize, 8, 8).is_ok());
  prefill(ex, std::vector<int32_t>{0, 1});  // job A, runs next
  prefill(ex, std::vector<int32_t>{4, 5});  // job B, offloaded proactively
  const std::vector<float> b4 = block_bytes(ex.device_cache(), 4),
                           b5 = block_bytes(ex.device_cache(), 5);

  const std::vector<BlockCopy> offloads = {{4, 0}, {5, 1}};
  const double start = monotonic_s();
  ASSERT_TRUE(ex.swap(offloads, {}).is_ok());
  const std::vector<float> logits = decode(ex, std::vector<int32_t>{0, 1, 2});
  EXPECT_FALSE(logits.empty());
  // The forward is over and the offload is not: they overlapped.
  EXPECT_EQ(ex.num_swaps_in_flight(), 1);
  EXPECT_LT(elapsed_s(start), std::chrono::duration<double>(kDelay).count());
  ex.wait_for_swaps();
  EXPECT_EQ(block_bytes(ex.host_cache(), 0), b4);
  EXPECT_EQ(block_bytes(ex.host_cache(), 1), b5);
}

// Calls run in order (the second reads what the first wrote), and within one call every source is
// read before a destination is written: a swap cycle (device 2 -> host 4, host 4 -> device 2) and a
// device block freed by an offload reused by an upload of the same call.
TEST(CpuExecutorTest, CallsRunInOrderAndReadEverySourceBeforeWriting) {
  std::unique_ptr<CausalLm> lm = load_lm();
  CpuExecutor ex(*lm, CpuExecutor::Options{.test_copy_delay = std::chrono::milliseconds(20)});
  ASSERT_TRUE(ex.allocate_kv(kBlockSize, 8, 8).is_ok());
  for (int32_t b = 0; b < 8; ++b) {
    fill_random(ex.device_cache(), b, 100 + b);
    fill_random(ex.host_cache(), b, 200 + b);
  }
  std::vector<std::vector<float>> dev, host;
  for (int32_t b = 0; b < 8; ++b) {
    dev.push_back(block_bytes(ex.device_cache(), b));
    host.push_back(block_bytes(ex.host_cache(), b));
  }
  const std::vector<BlockCopy> off1 = {{0, 0}, {1, 1}};
  ASSERT_TRUE(ex.swap(off1, {}).is_ok());
  const std::vector<BlockCopy> up2 = {{0, 6}, {1, 7}};  // reads what call 1 writes
  ASSERT_TRUE(ex.swap({}, up2).is_ok());
  const std::vector<BlockCopy> off3 = {{2, 4}, {3, 5}};
  const std::vector<BlockCopy> up3 = {{4, 2}, {2, 3}};  // cycle on 2 <-> 4; device 3 freed by off3
  ASSERT_TRUE(ex.swap(off3, up3).is_ok());
  EXPECT_GE(ex.num_swaps_in_flight(), 2);
  ex.wait_for_swaps();
  EXPECT_EQ(ex.num_swaps_in_flight(), 0);
  EXPECT_EQ(block_bytes(ex.host_cache(), 0), dev[0]);
  EXPECT_EQ(block_bytes(ex.host_cache(), 1), dev[1]);
  EXPECT_EQ(block_bytes(ex.device_cache(), 6), dev[0]);
  EXPECT_EQ(block_bytes(ex.device_cache(), 7), dev[1]);
  EXPECT_EQ(block_bytes(ex.host_cache(), 4), dev[2]);
  EXPECT_EQ(block_bytes(ex.host_cache(), 5), dev[3]);
  EXPECT_EQ(block_bytes(ex.device_cache(), 2), host[4]);
  EXPECT_EQ(block_bytes(ex.device_cache(), 3), host[2]);
  EXPECT_EQ(block_bytes(ex.device_cache(), 4), dev[4]);  // untouched
}

TEST(CpuExecutorTest, BadBlockIdsAreRejectedWithNothingQueued) {
  std::unique_ptr<CausalLm> lm = load_lm();
  CpuExecutor ex(*lm);
  ASSERT_TRUE(ex.allocate_kv(kBlockSize, 8, 4).is_ok());
  const std::vector<BlockCopy> good = {{0, 0}};
  const std::vector<BlockCopy> bad_host = {{1, 4}};
  const std::vector<BlockCopy> bad_device = {{0, 8}};
  const std::vector<BlockCopy> negative = {{-1, 0}};
  EXPECT_EQ(ex.swap(bad_host, good).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ex.swap(good, bad_device).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ex.swap(negative, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ex.num_swaps_in_flight(), 0);
  EXPECT_TRUE(ex.swap(good, {}).is_ok());
  ex.wait_for_swaps();
}

// Greedy sequences get a pick per logits row, equal bit for bit to what the sampler would draw
// from the returned row; other rows (all_logits, not greedy) get none, and the rows stay returned.
TEST(CpuExecutorTest, GreedyPicksMatchTheSamplerOnTheRows) {
  std::unique_ptr<CausalLm> lm = load_lm();
  CpuExecutor ex(*lm);
  ASSERT_TRUE(ex.allocate_kv(kBlockSize, 8, 1).is_ok());
  EXPECT_TRUE(ex.supports_greedy_picks());
  const std::vector<int32_t> t0 = {0, 1}, t1 = {2, 3}, t2 = {4, 5};
  std::vector<ForwardSeq> seqs = {{kPrompt, 0, t0, false, true},
                                  {kPrompt, 0, t1, /*all_logits=*/true, true},
                                  {kPrompt, 0, t2, false, false}};
  Result<std::span<const float>> logits = ex.forward(seqs);
  ASSERT_TRUE(logits.is_ok()) << logits.status().to_string();
  const int64_t vocab = lm->config().vocab_size;
  const size_t rows = 1 + kPrompt.size() + 1;
  ASSERT_EQ(logits->size(), rows * vocab);
  const std::span<const GreedyPick> picks = ex.greedy_picks();
  ASSERT_EQ(picks.size(), rows);
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy);
  ASSERT_TRUE(sampler.greedy_only());
  std::vector<float> row(logits->begin(), logits->begin() + vocab);
  const Result<SampledToken> expected = sampler.sample(row, {}, {});
  ASSERT_TRUE(expected.is_ok());
  EXPECT_EQ(picks[0].token, expected->token);
  EXPECT_EQ(picks[0].logprob, expected->logprob);  // the same arithmetic, bit for bit
  for (size_t r = 1; r < rows; ++r) EXPECT_EQ(picks[r].token, -1) << "row " << r;

  // No greedy sequence: no picks.
  seqs[0].greedy = false;
  ASSERT_TRUE(ex.forward(std::span(seqs).first(1)).is_ok());
  EXPECT_TRUE(ex.greedy_picks().empty());
}

}  // namespace
}  // namespace fs
