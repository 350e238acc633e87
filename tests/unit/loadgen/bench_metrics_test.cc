#include "loadgen/bench_metrics.h"

#include <gtest/gtest.h>

namespace fs::loadgen {
namespace {

TEST(Percentile, MatchesNumpyLinearInterpolation) {
  // numpy.percentile([1, 2, 3, 4], p) = 1.75 (25), 2.5 (50), 3.97 (99); [5] -> 5; [] -> 0 here.
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 25), 1.75);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 50), 2.5);
  EXPECT_NEAR(percentile({4, 1, 3, 2}, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 100), 4);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0), 1);
  EXPECT_DOUBLE_EQ(percentile({5}, 90), 5);
  EXPECT_DOUBLE_EQ(percentile({}, 90), 0);
  // numpy.percentile(range(1, 11), 90) = 9.1
  EXPECT_NEAR(percentile({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90), 9.1, 1e-12);
}

TEST(Percentile, MeanAndPopulationStddev) {
  EXPECT_DOUBLE_EQ(mean({1, 2, 3, 4}), 2.5);
  EXPECT_DOUBLE_EQ(stddev({2, 4, 4, 4, 5, 5, 7, 9}), 2.0);  // numpy.std, ddof = 0
  EXPECT_DOUBLE_EQ(stddev({}), 0.0);
}

RequestResult ok(double ttft_s, double latency_s, int32_t in, int32_t out,
                 std::vector<double> itl) {
  RequestResult r;
  r.success = true;
  r.ttft_s = ttft_s;
  r.latency_s = latency_s;
  r.num_prompt_tokens = in;
  r.num_output_tokens = out;
  r.itl_s = std::move(itl);
  return r;
}

TEST(Summary, VllmKeysAndValues) {
  std::vector<RequestResult> rs = {ok(0.1, 1.1, 10, 11, {0.1, 0.1}), ok(0.3, 0.3, 20, 1, {})};
  RequestResult failed;
  failed.error = "HTTP 500: boom";
  failed.num_prompt_tokens = 7;
  rs.push_back(failed);
  SummaryOptions opts;
  opts.goodput.ttft_ms = 200;
  opts.latency_slos = {{200, 150}, {500, 400}};
  const nlohmann::json j = summarize(rs, 2.0, opts);
  for (const char* key : {"duration",
                          "completed",
                          "failed",
                          "num_prompts",
                          "total_input_tokens",
                          "total_output_tokens",
                          "request_throughput",
                          "request_goodput",
                          "output_throughput",
                          "total_token_throughput",
                          "mean_ttft_ms",
                          "median_ttft_ms",
                          "std_ttft_ms",
                          "p90_ttft_ms",
                          "p99_ttft_ms",
                          "percentiles_ttft_ms",
                          "mean_tpot_ms",
                          "p99_tpot_ms",
                          "mean_itl_ms",
                          "p99_itl_ms",
                          "mean_e2el_ms",
                          "median_e2el_ms",
                          "p99_e2el_ms",
                          "mean_normalized_latency_ms",
                          "p95_normalized_latency_ms",
                          "mean_normalized_latency_s",
                          "slo_attainment",
                          "input_lens",
                          "output_lens",
                          "ttfts",
                          "itls",
                          "e2els",
                          "errors",
                          "send_times"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["num_prompts"], 3);
  EXPECT_EQ(j["total_input_tokens"], 30);  // failed requests excluded, as vLLM
  EXPECT_EQ(j["total_output_tokens"], 12);
  EXPECT_DOUBLE_EQ(j["request_throughput"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["output_throughput"].get<double>(), 6.0);
  EXPECT_DOUBLE_EQ(j["total_token_throughput"].get<double>(), 21.0);
  EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), 0.5);  // only the first meets TTFT 200 ms
  EXPECT_NEAR(j["mean_ttft_ms"].get<double>(), 200, 1e-9);
  EXPECT_NEAR(j["mean_tpot_ms"].get<double>(), 100, 1e-9);  // (1.1 - 0.1) / 10; 1-token excluded
  EXPECT_NEAR(j["mean_itl_ms"].get<double>(), 100, 1e-9);
  EXPECT_NEAR(j["mean_e2el_ms"].get<double>(), 700, 1e-9);
  // Normalized latency: 1.1 / 11 = 100 ms, 0.3 / 1 = 300 ms.
  EXPECT_NEAR(j["mean_normalized_latency_ms"].get<double>(), 200, 1e-9);
  EXPECT_NEAR(j["p95_normalized_latency_ms"].get<double>(), 290, 1e-9);
  EXPECT_NEAR(j["mean_normalized_latency_s"].get<double>(), 0.2, 1e-12);
  ASSERT_EQ(j["slo_attainment"].size(), 2u);
  EXPECT_NEAR(j["slo_attainment"][0]["attainment"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_NEAR(j["slo_attainment"][1]["attainment"].get<double>(), 2.0 / 3, 1e-12);
  EXPECT_EQ(j["percentiles_ttft_ms"][3][0].get<double>(), 99.0);
  EXPECT_EQ(j["output_lens"], nlohmann::json({11, 1, 0}));
  EXPECT_EQ(j["errors"][2], "HTTP 500: boom");
  EXPECT_EQ(j["itls"][0].size(), 2u);
  // No --goodput: null, as vLLM writes.
  EXPECT_TRUE(summarize(rs, 2.0, SummaryOptions{})["request_goodput"].is_null());
  const std::string report = format_report(j);
  EXPECT_NE(report.find("Serving Benchmark Result"), std::string::npos);
  EXPECT_NE(report.find("Mean TTFT (ms):"), std::string::npos);
  EXPECT_NE(report.find("P99 TTFT (ms):"), std::string::npos);
  EXPECT_NE(report.find("P95 NormLat (ms):"), std::string::npos);
  EXPECT_EQ(report.find("P50 TTFT"), std::string::npos);
}

TEST(Summary, EmptyRunHasZerosNotNaN) {
  const nlohmann::json j = summarize({}, 0.0, SummaryOptions{});
  EXPECT_EQ(j["completed"], 0);
  EXPECT_EQ(j["mean_ttft_ms"].get<double>(), 0.0);
  EXPECT_EQ(j["request_throughput"].get<double>(), 0.0);
}

TEST(SloParsing, GoodputAndLatencySlo) {
  auto g = parse_goodput({"ttft:500", "tpot:50.5"});
  ASSERT_TRUE(g.is_ok());
  EXPECT_EQ(*g->ttft_ms, 500);
  EXPECT_EQ(*g->tpot_ms, 50.5);
  EXPECT_FALSE(g->e2el_ms.has_value());
  EXPECT_FALSE(parse_goodput({"ttft"}).is_ok());
  EXPECT_FALSE(parse_goodput({"foo:1"}).is_ok());
  EXPECT_FALSE(parse_goodput({"ttft:-1"}).is_ok());
  EXPECT_FALSE(parse_goodput({"ttft:1", "ttft:2"}).is_ok());
  auto s = parse_latency_slo("1000:250");
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->ttft_ms, 1000);
  EXPECT_EQ(s->normalized_latency_ms, 250);
  EXPECT_FALSE(parse_latency_slo("1000").is_ok());
  EXPECT_FALSE(parse_latency_slo("a:b").is_ok());
}

}  // namespace
}  // namespace fs::loadgen
