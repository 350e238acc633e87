#include "loadgen/arrivals.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace fs::loadgen {
namespace {

struct GapStats {
  double mean = 0, cv = 0;
};

GapStats gap_stats(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  double sum = 0, sum_sq = 0;
  for (double g : gaps) sum += g;
  const double m = sum / gaps.size();
  for (double g : gaps) sum_sq += (g - m) * (g - m);
  return {m, std::sqrt(sum_sq / gaps.size()) / m};
}

TEST(Arrivals, PoissonHasMeanGapOneOverRateAndCvOne) {
  const auto t = make_arrival_times(4.0, 1.0, 50000, 7);
  ASSERT_EQ(t.size(), 50000u);
  EXPECT_EQ(t[0], 0.0);
  const GapStats s = gap_stats(t);
  EXPECT_NEAR(s.mean, 0.25, 0.25 * 0.02);
  EXPECT_NEAR(s.cv, 1.0, 0.03);
}

TEST(Arrivals, GammaBurstinessSetsCvToOneOverSqrtShape) {
  // vLLM: shape = burstiness, scale = 1 / (rate * burstiness): mean 1/rate, cv 1/sqrt(burstiness).
  const GapStats bursty = gap_stats(make_arrival_times(2.0, 0.25, 50000, 1));
  EXPECT_NEAR(bursty.mean, 0.5, 0.5 * 0.04);
  EXPECT_NEAR(bursty.cv, 2.0, 0.1);
  const GapStats smooth = gap_stats(make_arrival_times(2.0, 4.0, 50000, 1));
  EXPECT_NEAR(smooth.mean, 0.5, 0.5 * 0.02);
  EXPECT_NEAR(smooth.cv, 0.5, 0.02);
}

TEST(Arrivals, InfiniteRateSendsAllAtOnce) {
  const auto t = make_arrival_times(std::numeric_limits<double>::infinity(), 1.0, 10, 3);
  ASSERT_EQ(t.size(), 10u);
  for (double x : t) EXPECT_EQ(x, 0.0);
}

TEST(Arrivals, DeterministicInSeedAndIncreasing) {
  const auto a = make_arrival_times(3.0, 1.0, 100, 42);
  EXPECT_EQ(a, make_arrival_times(3.0, 1.0, 100, 42));
  EXPECT_NE(a, make_arrival_times(3.0, 1.0, 100, 43));
  for (size_t i = 1; i < a.size(); ++i) EXPECT_GE(a[i], a[i - 1]);
}

}  // namespace
}  // namespace fs::loadgen
