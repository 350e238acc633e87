#include "sched/cost_model.h"

#include <gtest/gtest.h>

#include "sched_test_util.h"

namespace fs::sched {
namespace {

using testing::make_cost_model;

TEST(CostModelTest, InterpolatesPrefillPiecewiseLinearly) {
  const CostModel m = make_cost_model();
  EXPECT_NEAR(m.prefill_time_s(128), 0.020, 1e-12);
  EXPECT_NEAR(m.prefill_time_s(628), 0.070, 1e-12);
  EXPECT_NEAR(m.prefill_time_s(2128), 0.220, 1e-12);  // extrapolated from the last segment
  EXPECT_GT(m.prefill_time_s(1), 0.0);
}

TEST(CostModelTest, FitsDecodePlaneExactlyOnPlanarPoints) {
  CostModelSpec s;
  s.block_size_tokens = 16;
  s.kv_bytes_per_token = 100;
  s.prefill = {{100, 0.01}};
  s.swap_bandwidth_bytes_per_s = 1e9;
  for (double b : {1, 4, 16}) {
    for (double c : {100, 5000}) s.decode.push_back({b, c, 0.02 + 0.001 * b + 1e-6 * c});
  }
  auto m = CostModel::from_spec(s);
  ASSERT_TRUE(m.is_ok());
  EXPECT_NEAR(m->decode_c0(), 0.02, 1e-9);
  EXPECT_NEAR(m->decode_c1(), 0.001, 1e-9);
  EXPECT_NEAR(m->decode_c2(), 1e-6, 1e-12);
  EXPECT_NEAR(m->decode_time_s(8, 2000), 0.02 + 0.008 + 0.002, 1e-9);
}

TEST(CostModelTest, RoundTripsThroughJson) {
  const CostModel m = make_cost_model();
  auto back = CostModel::from_json_text(m.to_json_text());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_DOUBLE_EQ(back->prefill_time_s(500), m.prefill_time_s(500));
  EXPECT_DOUBLE_EQ(back->decode_time_s(4, 900), m.decode_time_s(4, 900));
  EXPECT_DOUBLE_EQ(back->block_bytes(), 16000);
}

TEST(CostModelTest, RejectsMissingOrBadFields) {
  EXPECT_FALSE(CostModel::from_json_text("[]").is_ok());
  EXPECT_FALSE(CostModel::from_json_text("{\"block_size_tokens\": 16}").is_ok());
  const std::string bad_bw = R"({"block_size_tokens":16,"kv_bytes_per_token":1,
      "prefill":[[1,0.1]],"decode":[[1,1,0.1]],"swap_bandwidth_bytes_per_s":0})";
  auto r = CostModel::from_json_text(bad_bw);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("swap_bandwidth"), std::string::npos);
  EXPECT_EQ(CostModel::load("/nonexistent/profile.json").status().code(), StatusCode::kNotFound);
}

// Found by cost_model_fuzz: a float block size went through get<int32_t>() (undefined behaviour),
// and absurd magnitudes made predictions infinite.
TEST(CostModelTest, RejectsNonIntegerBlockSizeAndOutOfRangeValues) {
  auto with = [](const std::string& block, const std::string& prefill) {
    return CostModel::from_json_text(R"({"block_size_tokens":)" + block +
                                     R"(,"kv_bytes_per_token":1,"prefill":)" + prefill +
                                     R"(,"decode":[[1,1,0.1]],"swap_bandwidth_bytes_per_s":1e9})");
  };
  EXPECT_TRUE(with("16", "[[1,0.1]]").is_ok());
  for (const char* block : {"16.5", "1e30", "-4", "0", "18446744073709551615", "\"16\""}) {
    auto r = with(block, "[[1,0.1]]");
    ASSERT_FALSE(r.is_ok()) << block;
    EXPECT_NE(r.status().message().find("block_size_tokens"), std::string::npos) << block;
  }
  EXPECT_FALSE(with("16", "[[1,1e300],[2,1.5e300]]").is_ok());
  EXPECT_FALSE(with("16", "[[1e300,0.1]]").is_ok());
  // Found by cost_model_fuzz: two points at one length made interpolation depend on sort order.
  auto dup = with("16", "[[17,0.1],[17,0.2],[64,0.3]]");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.status().message().find("two prefill points"), std::string::npos);
}

TEST(CostModelTest, LoadsTheCheckedInOpt13bProfile) {
  auto m = CostModel::load(FASTSERVE_SOURCE_DIR "/bench/profiles/opt13b_a100.json");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->spec().kv_bytes_per_token, 819200);
  EXPECT_GT(m->prefill_time_s(1024), m->prefill_time_s(128));
  EXPECT_GT(m->decode_time_s(16, 16000), m->decode_time_s(1, 100));
}

TEST(CostModelTest, BlockingSwapsAddToIterationAndProactiveOnesOverlap) {
  const CostModel m = make_cost_model();  // block = 16 kB, 1 GB/s -> 16 us per block
  IterationPlan plan;
  plan.batch.push_back({1, 100, 1, true, {}});
  const double forward = m.forward_time_s(plan);
  for (int i = 0; i < 10; ++i) plan.upload.push_back({2, i, i});
  plan.num_blocking_upload = 4;
  EXPECT_NEAR(m.iteration_time_s(plan), 4 * 16e-6 + forward, 1e-12);
  for (int i = 0; i < 5000; ++i) plan.offload.push_back({3, i, i});  // 80 ms > forward
  EXPECT_NEAR(m.iteration_time_s(plan), 4 * 16e-6 + 5006 * 16e-6, 1e-9);
}

}  // namespace
}  // namespace fs::sched
