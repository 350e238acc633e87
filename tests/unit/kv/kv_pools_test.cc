#include "kv/kv_pools.h"

#include <random>
#include <set>

#include <gtest/gtest.h>

namespace fs::kv {
namespace {

TEST(KvPoolsTest, BlocksForTokensRoundsUp) {
  KvPools pools(8, 8, 16);
  EXPECT_EQ(pools.blocks_for_tokens(0), 0);
  EXPECT_EQ(pools.blocks_for_tokens(1), 1);
  EXPECT_EQ(pools.blocks_for_tokens(16), 1);
  EXPECT_EQ(pools.blocks_for_tokens(17), 2);
}

TEST(KvPoolsTest, AllocateAppendsToTableAndFreeReturnsBlocks) {
  KvPools pools(8, 4, 16);
  auto a = pools.allocate(1, 3);
  ASSERT_TRUE(a.is_ok());
  auto b = pools.allocate(1, 2);
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(pools.num_blocks(1), 5);
  EXPECT_EQ(pools.num_free_device_blocks(), 3);
  EXPECT_EQ(pools.table(1).blocks[3], (*b)[0]);
  pools.check_integrity();
  pools.free(1);
  EXPECT_EQ(pools.num_free_device_blocks(), 8);
  EXPECT_FALSE(pools.has_job(1));
  pools.check_integrity();
}

TEST(KvPoolsTest, RefusesOverCommitWithoutChangingState) {
  KvPools pools(4, 4, 16);
  ASSERT_TRUE(pools.allocate(1, 3).is_ok());
  EXPECT_FALSE(pools.can_allocate(2));
  auto r = pools.allocate(2, 2);
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(pools.has_job(2));
  EXPECT_EQ(pools.num_free_device_blocks(), 1);
  pools.check_integrity();
}

TEST(KvPoolsTest, OffloadMovesEveryBlockToHostAndUploadBringsThemBack) {
  KvPools pools(4, 4, 16);
  auto blocks = *pools.allocate(7, 3);
  auto out = pools.offload(7);
  ASSERT_TRUE(out.is_ok());
  ASSERT_EQ(out->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*out)[i].job, 7);
    EXPECT_EQ((*out)[i].src, blocks[i]);
    EXPECT_EQ((*out)[i].dst, pools.table(7).blocks[i]);
  }
  EXPECT_EQ(pools.location(7), Location::kHost);
  EXPECT_EQ(pools.num_free_device_blocks(), 4);
  EXPECT_EQ(pools.num_free_host_blocks(), 1);
  pools.check_integrity();
  auto in = pools.upload(7);
  ASSERT_TRUE(in.is_ok());
  EXPECT_EQ(pools.location(7), Location::kDevice);
  EXPECT_EQ(pools.num_free_host_blocks(), 4);
  pools.check_integrity();
}

TEST(KvPoolsTest, OffloadFailsWhenHostIsFullAndKeepsState) {
  KvPools pools(8, 2, 16);
  ASSERT_TRUE(pools.allocate(1, 3).is_ok());
  auto r = pools.offload(1);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(pools.location(1), Location::kDevice);
  EXPECT_EQ(pools.num_free_host_blocks(), 2);
  pools.check_integrity();
}

TEST(KvPoolsTest, RandomOperationsKeepIntegrity) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    KvPools pools(64, 32, 16);
    std::set<JobId> jobs;
    for (int step = 0; step < 2000; ++step) {
      const JobId job = static_cast<JobId>(rng() % 12);
      switch (rng() % 4) {
        case 0: {
          const int32_t n = static_cast<int32_t>(rng() % 6);
          const bool fits = pools.can_allocate(n);
          if (pools.has_job(job) && pools.location(job) == Location::kHost) break;
          EXPECT_EQ(pools.allocate(job, n).is_ok(), fits);
          break;
        }
        case 1:
          pools.free(job);
          break;
        case 2:
          if (pools.has_job(job) && pools.location(job) == Location::kDevice) {
            (void)pools.offload(job);
          }
          break;
        case 3:
          if (pools.has_job(job) && pools.location(job) == Location::kHost) {
            (void)pools.upload(job);
          }
          break;
      }
      pools.check_integrity();
      ASSERT_GE(pools.num_free_device_blocks(), 0);
      ASSERT_LE(pools.num_free_device_blocks(), pools.num_device_blocks());
    }
  }
}

}  // namespace
}  // namespace fs::kv
