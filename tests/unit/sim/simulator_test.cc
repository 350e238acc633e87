#include "sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "sim/trace.h"

namespace fs::sim {
namespace {

sched::CostModel opt13b() {
  auto m = sched::CostModel::load(FASTSERVE_SOURCE_DIR "/bench/profiles/opt13b_a100.json");
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  return *m;
}

std::vector<TraceRequest> synthetic_trace(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> len(5.0, 1.0);
  std::vector<TraceRequest> t;
  for (int i = 0; i < n; ++i) {
    t.push_back({std::clamp(static_cast<int32_t>(len(rng)), 1, 1024),
                 std::clamp(static_cast<int32_t>(len(rng)), 1, 1000)});
  }
  return t;
}

SimConfig small_config(sched::PolicyKind policy, sched::KvPolicy kv, const sched::CostModel& cost) {
  SimConfig c;
  c.scheduler.policy = policy;
  c.scheduler.kv_policy = kv;
  c.kv = kv_pools_for(cost, 2.5e9, 4e9);  // ~190 device blocks: memory pressure
  c.check_integrity = true;
  return c;
}

TEST(SimulatorTest, ConservesJobsAndTokensForEveryPolicy) {
  const auto cost = opt13b();
  const auto requests = synthetic_trace(300, 7);
  const auto arrivals = make_arrivals(ArrivalProcess::kPoisson, 4.0, 1.0, 300, 7);
  const int64_t want_tokens =
      std::accumulate(requests.begin(), requests.end(), int64_t{0},
                      [](int64_t a, const TraceRequest& r) { return a + r.num_output_tokens; });
  for (auto policy :
       {sched::PolicyKind::kSkipJoinMlfq, sched::PolicyKind::kMlfq, sched::PolicyKind::kFcfs,
        sched::PolicyKind::kVllm, sched::PolicyKind::kSrpt}) {
    for (auto kv :
         {sched::KvPolicy::kProactive, sched::KvPolicy::kReactive, sched::KvPolicy::kRecompute}) {
      SCOPED_TRACE(::testing::Message()
                   << sched::policy_name(policy) << " " << sched::kv_policy_name(kv));
      auto r = simulate(small_config(policy, kv, cost), cost, requests, arrivals);
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      EXPECT_EQ(r->summary["completed"], 300);
      EXPECT_EQ(r->summary["total_output_tokens"], want_tokens);
      EXPECT_EQ(r->num_generated_tokens, want_tokens);
      EXPECT_EQ(r->stats.num_finished, 300);
      EXPECT_EQ(r->stats.num_live_jobs, 0);
      for (size_t i = 0; i < requests.size(); ++i) {
        const RequestRecord& rec = r->records[i];
        ASSERT_EQ(rec.num_generated_tokens, requests[i].num_output_tokens);
        ASSERT_GE(rec.first_token_s, rec.arrival_s);
        ASSERT_GE(rec.finish_s, rec.first_token_s);
      }
      // Every prompt token is computed at least once; recompute adds more.
      int64_t prompt_tokens = 0;
      for (const auto& q : requests) prompt_tokens += q.num_prompt_tokens;
      EXPECT_GE(r->num_prefill_tokens, prompt_tokens);
    }
  }
}

TEST(SimulatorTest, SummaryUsesVllmBenchKeyNames) {
  const auto cost = opt13b();
  const auto requests = synthetic_trace(50, 1);
  auto r =
      simulate(small_config(sched::PolicyKind::kSkipJoinMlfq, sched::KvPolicy::kProactive, cost),
               cost, requests, make_arrivals(ArrivalProcess::kPoisson, 2, 1, 50, 1));
  ASSERT_TRUE(r.is_ok());
  for (const char* key : {"completed",
                          "duration",
                          "total_input_tokens",
                          "total_output_tokens",
                          "request_throughput",
                          "output_throughput",
                          "total_token_throughput",
                          "mean_ttft_ms",
                          "median_ttft_ms",
                          "p99_ttft_ms",
                          "mean_tpot_ms",
                          "median_tpot_ms",
                          "p99_tpot_ms",
                          "mean_itl_ms",
                          "median_itl_ms",
                          "p99_itl_ms",
                          "mean_e2el_ms",
                          "median_e2el_ms",
                          "p99_e2el_ms",
                          "std_e2el_ms",
                          "mean_normalized_latency_s",
                          "num_preemptions",
                          "num_demotions",
                          "num_promotions",
                          "swapped_bytes",
                          "request_goodput"}) {
    EXPECT_TRUE(r->summary.contains(key)) << key;
  }
  EXPECT_LE(r->summary["median_ttft_ms"].get<double>(), r->summary["p99_ttft_ms"].get<double>());
}

TEST(SimulatorTest, IsDeterministicInSeed) {
  const auto cost = opt13b();
  const auto requests = synthetic_trace(100, 3);
  const auto arrivals = make_arrivals(ArrivalProcess::kGamma, 3, 2, 100, 3);
  const auto c = small_config(sched::PolicyKind::kSkipJoinMlfq, sched::KvPolicy::kProactive, cost);
  auto a = simulate(c, cost, requests, arrivals);
  auto b = simulate(c, cost, requests, arrivals);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(a->summary.dump(), b->summary.dump());
}

TEST(ArrivalsTest, PoissonAndGammaHaveRequestedRateAndCv) {
  for (double cv : {1.0, 2.0, 4.0}) {
    const auto process = cv == 1.0 ? ArrivalProcess::kPoisson : ArrivalProcess::kGamma;
    const auto t = make_arrivals(process, 5.0, cv, 200000, 11);
    std::vector<double> gaps;
    for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
    const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
    double var = 0;
    for (double g : gaps) var += (g - mean) * (g - mean);
    const double got_cv = std::sqrt(var / gaps.size()) / mean;
    EXPECT_NEAR(mean, 0.2, 0.2 * 0.03) << cv;
    EXPECT_NEAR(got_cv, cv, cv * 0.06) << cv;
  }
  const auto burst = make_arrivals(ArrivalProcess::kPoisson, INFINITY, 1, 5, 1);
  for (double x : burst) EXPECT_EQ(x, 0.0);
}

TEST(TraceTest, LoadsCsvAndAppliesThePaperFilter) {
  const std::string path = ::testing::TempDir() + "/trace_test.csv";
  {
    std::ofstream f(path);
    f << "arrival_time_s,prompt_tokens,output_tokens\n0,10,20\n0,1025,5\n0,1000,1049\n0,1000,1048\n"
         "0,0,5\n0,7,0\n";
  }
  auto t = load_trace(path, "", TraceFilter{});
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].num_prompt_tokens, 10);
  EXPECT_EQ((*t)[1].num_output_tokens, 1048);
  std::remove(path.c_str());
}

TEST(TraceTest, ShortNamesFindTheLengthTracesInTheDatasetsDir) {
  // The Azure 2023 and Mooncake CSVs carry extra columns (timestamp, arrival_time_s, hash_ids) next
  // to prompt_tokens,output_tokens; a fake datasets folder stands in for ../shared/datasets.
  const std::string dir = ::testing::TempDir() + "/trace_short_names";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir + "/azure_code_lengths.csv")
        << "timestamp,arrival_time_s,prompt_tokens,output_tokens\n"
           "2023-11-16 18:17:03.9799600,0.000000,480,10\n2023-11-16 18:17:04.1,0.1,4808,3\n";
    std::ofstream(dir + "/azure_conv_lengths.csv")
        << "timestamp,arrival_time_s,prompt_tokens,output_tokens\n2023-11-16 18:15:46,0,374,44\n";
    std::ofstream(dir + "/mooncake_conversation_lengths.csv")
        << "arrival_time_s,prompt_tokens,output_tokens,hash_ids\n0.000,6758,500,0 1 2 3\n"
           "1.5,900,283,14 15\n";
  }
  auto code = load_trace("azure_code", dir, TraceFilter{});
  ASSERT_TRUE(code.is_ok()) << code.status().to_string();
  ASSERT_EQ(code->size(), 1u);  // the 4808-token prompt is past the paper's filter
  EXPECT_EQ((*code)[0].num_prompt_tokens, 480);
  EXPECT_EQ((*code)[0].num_output_tokens, 10);
  auto conv = load_trace("azure_conv", dir, TraceFilter{});
  ASSERT_TRUE(conv.is_ok()) << conv.status().to_string();
  EXPECT_EQ((*conv)[0].num_output_tokens, 44);
  auto mooncake = load_trace("mooncake", dir, TraceFilter{});
  ASSERT_TRUE(mooncake.is_ok()) << mooncake.status().to_string();
  ASSERT_EQ(mooncake->size(), 1u);
  EXPECT_EQ((*mooncake)[0].num_prompt_tokens, 900);
  EXPECT_EQ((*mooncake)[0].num_output_tokens, 283);
  std::filesystem::remove_all(dir);
}

TEST(TraceTest, LoadsJsonlTextsAsCharsOverFour) {
  const std::string path = ::testing::TempDir() + "/trace_test.jsonl";
  {
    std::ofstream f(path);
    f << R"({"prompt": "abcdefghi", "output": "abcd"})"
      << "\n"
      << R"({"prompt": "x", "output": ""})"
      << "\n";
  }
  auto t = load_trace(path, "", TraceFilter{});
  ASSERT_TRUE(t.is_ok());
  ASSERT_EQ(t->size(), 1u);  // the empty output is left out
  EXPECT_EQ((*t)[0].num_prompt_tokens, 3);
  EXPECT_EQ((*t)[0].num_output_tokens, 1);
  std::remove(path.c_str());
}

TEST(TraceTest, ReportsMissingFilesAndBadHeaders) {
  EXPECT_EQ(load_trace("/nonexistent.csv", "", TraceFilter{}).status().code(),
            StatusCode::kNotFound);
  const std::string path = ::testing::TempDir() + "/bad.csv";
  {
    std::ofstream f(path);
    f << "a,b\n1,2\n";
  }
  EXPECT_EQ(load_trace(path, "", TraceFilter{}).status().code(), StatusCode::kDataLoss);
  std::remove(path.c_str());
}

TEST(TraceTest, SamplingIsDeterministicAndDrawsFromTheTrace) {
  const auto trace = synthetic_trace(10, 5);
  const auto a = sample_requests(trace, 1000, 9);
  const auto b = sample_requests(trace, 1000, 9);
  ASSERT_EQ(a.size(), 1000u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].num_prompt_tokens, b[i].num_prompt_tokens);
    EXPECT_TRUE(std::any_of(trace.begin(), trace.end(), [&](const TraceRequest& r) {
      return r.num_prompt_tokens == a[i].num_prompt_tokens &&
             r.num_output_tokens == a[i].num_output_tokens;
    }));
  }
}

TEST(LatencyHistogramTest, PercentilesWithinBinResolution) {
  LatencyHistogram h;
  for (int i = 1; i <= 1000; ++i) h.add(i * 1e-3);
  EXPECT_NEAR(h.mean(), 0.5005, 1e-9);
  EXPECT_NEAR(h.percentile(50), 0.5, 0.5 * 0.01);
  EXPECT_NEAR(h.percentile(99), 0.99, 0.99 * 0.01);
}

}  // namespace
}  // namespace fs::sim
