#include "engine/sampler.h"

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace fs {
namespace {

std::vector<float> logits_of(std::vector<float> probs) {
  std::vector<float> l;
  for (float p : probs) l.push_back(std::log(p));
  return l;
}

TEST(SamplerTest, GreedyPicksArgmaxAndReportsLogprobs) {
  SamplingParams params;
  params.temperature = 0;
  params.num_top_logprobs = 2;
  Sampler sampler(params);
  std::vector<float> logits = logits_of({0.1f, 0.6f, 0.3f});
  const Result<SampledToken> r = sampler.sample(logits, {}, {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SampledToken& t = *r;
  EXPECT_EQ(t.token, 1);
  EXPECT_NEAR(t.logprob, std::log(0.6f), 1e-5);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].token, 1);
  EXPECT_EQ(t.top[1].token, 2);
  EXPECT_NEAR(t.top[1].logprob, std::log(0.3f), 1e-5);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDiffers) {
  auto draw = [](uint64_t seed) {
    SamplingParams params;
    params.seed = seed;
    Sampler sampler(params);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> logits(50, 0.0f);
      out.push_back(sampler.sample(logits, {}, {})->token);
    }
    return out;
  };
  EXPECT_EQ(draw(5), draw(5));
  EXPECT_NE(draw(5), draw(6));
}

TEST(SamplerTest, FrequenciesFollowTheDistribution) {
  SamplingParams params;
  params.seed = 1;
  Sampler sampler(params);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = logits_of({0.5f, 0.25f, 0.25f});
    ++counts[sampler.sample(logits, {}, {})->token];
  }
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.25, 0.02);
}

TEST(SamplerTest, TopKTopPMinPTruncate) {
  for (int mode = 0; mode < 3; ++mode) {
    SamplingParams params;
    params.seed = 3;
    if (mode == 0) params.top_k = 2;
    if (mode == 1) params.top_p = 0.7f;   // 0.5 + 0.3 reaches 0.7: keeps two tokens
    if (mode == 2) params.min_p = 0.5f;   // keeps p >= 0.25: tokens 0 and 1
    Sampler sampler(params);
    for (int i = 0; i < 2000; ++i) {
      std::vector<float> logits = logits_of({0.5f, 0.3f, 0.1f, 0.1f});
      const int32_t t = sampler.sample(logits, {}, {})->token;
      EXPECT_TRUE(t == 0 || t == 1) << "mode " << mode << " token " << t;
    }
  }
}

TEST(SamplerTest, PenaltiesFollowVllmRules) {
  SamplingParams params;
  params.temperature = 0;
  params.repetition_penalty = 2.0f;
  Sampler sampler(params);
  // Token 0 (logit 2, in the prompt) is divided to 1; token 1 (logit 1.5) wins.
  std::vector<float> logits = {2.0f, 1.5f, -1.0f};
  EXPECT_EQ(sampler.sample(logits, std::vector<int32_t>{0}, {})->token, 1);

  SamplingParams p2;
  p2.temperature = 0;
  p2.frequency_penalty = 0.4f;
  p2.presence_penalty = 0.3f;
  Sampler s2(p2);
  // Token 0 appeared twice in the output: 2.0 - 0.8 - 0.3 = 0.9 < 1.0.
  std::vector<float> l2 = {2.0f, 1.0f};
  EXPECT_EQ(s2.sample(l2, {}, std::vector<int32_t>{0, 0})->token, 1);
}

TEST(SamplerTest, ValidateNamesTheField) {
  SamplingParams params;
  params.top_p = 0;
  EXPECT_NE(params.validate().message().find("top_p"), std::string::npos);
  params = {};
  params.temperature = -1;
  EXPECT_NE(params.validate().message().find("temperature"), std::string::npos);
  EXPECT_TRUE(SamplingParams{}.validate().is_ok());
}

// A fault in the model's output (NaN, +inf, nothing finite) fails the one request with kInternal,
// greedy or not, with or without penalties and logprobs; -inf alone is a masked token and is fine.
TEST(SamplerTest, NanOrInfiniteLogitsAreAnInternalError) {
  constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> bad = {
      {0.5f, kNan, 0.1f}, {kNan, kNan, kNan}, {0.5f, kInf, 0.1f}, {-kInf, -kInf, -kInf}};
  for (int mode = 0; mode < 4; ++mode) {
    SamplingParams params;
    params.seed = 1;
    if (mode == 0) params.temperature = 0;
    if (mode == 1) params.top_p = 0.5f;
    if (mode == 2) params.repetition_penalty = 1.2f;
    if (mode == 3) params.num_top_logprobs = 2;
    Sampler sampler(params);
    for (const auto& row : bad) {
      std::vector<float> logits = row;
      Result<SampledToken> r = sampler.sample(logits, std::vector<int32_t>{0}, {});
      ASSERT_FALSE(r.is_ok()) << "mode " << mode;
      EXPECT_EQ(r.status().code(), StatusCode::kInternal);
      EXPECT_NE(r.status().message().find("logits"), std::string::npos) << r.status().message();
    }
    std::vector<float> masked = {-kInf, 0.0f, -kInf};
    Result<SampledToken> ok = sampler.sample(masked, {}, {});
    ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
    EXPECT_EQ(ok->token, 1);
    EXPECT_TRUE(std::isfinite(ok->logprob));
  }
}

// logits / temperature used to overflow to +inf for a tiny temperature (every probability NaN).
TEST(SamplerTest, TinyTemperatureIsGreedy) {
  SamplingParams params;
  params.seed = 7;
  params.temperature = 1e-30f;
  Sampler sampler(params);
  for (int i = 0; i < 100; ++i) {
    std::vector<float> logits = {3.0e4f, -2.0f, 3.1e4f, 0.0f};
    Result<SampledToken> r = sampler.sample(logits, {}, {});
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->token, 2);
  }
}

// greedy_pick (the executors' device-side greedy choice on the CPU) is the sampler's greedy draw:
// the same token and log-probability bit for bit, and -1 where the sampler fails the row.
TEST(SamplerTest, GreedyPickIsTheGreedyDraw) {
  SamplingParams params;
  params.temperature = 0;
  Sampler sampler(params);
  EXPECT_TRUE(sampler.greedy_only());
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 3.0f);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> row(1000);
    for (float& x : row) x = n(rng);
    if (trial % 5 == 0) row[trial] = row[trial + 1] = 50.0f;  // a tie: the lower id
    std::vector<float> scratch = row;
    const Result<SampledToken> drawn = sampler.sample(scratch, {}, {});
    ASSERT_TRUE(drawn.is_ok());
    const GreedyPick pick = greedy_pick(row);
    EXPECT_EQ(pick.token, drawn->token);
    EXPECT_EQ(pick.logprob, drawn->logprob);
    const Result<SampledToken> from = Sampler::from_pick(pick);
    ASSERT_TRUE(from.is_ok());
    EXPECT_EQ(from->token, drawn->token);
  }
  constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  for (const std::vector<float>& bad : std::vector<std::vector<float>>{
           {0.5f, kNan, 0.1f}, {0.5f, kInf}, {-kInf, -kInf}, {}}) {
    EXPECT_EQ(greedy_pick(bad).token, -1);
    const Result<SampledToken> r = Sampler::from_pick(greedy_pick(bad));
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  }
  // Anything but plain greedy needs the row.
  for (int mode = 0; mode < 5; ++mode) {
    SamplingParams p = params;
    if (mode == 0) p.temperature = 0.5f;
    if (mode == 1) p.repetition_penalty = 1.1f;
    if (mode == 2) p.presence_penalty = 0.5f;
    if (mode == 3) p.frequency_penalty = 0.5f;
    if (mode == 4) p.num_top_logprobs = 1;
    EXPECT_FALSE(Sampler(p).greedy_only()) << "mode " << mode;
  }
}

}  // namespace
}  // namespace fs
