// The benchmark's summary: the result JSON of `vllm bench serve` (same key names; the simulator,
// src/sim/metrics.cc, writes the same ones) plus the paper's normalized latency and SLO attainment.
// Pure functions over RequestResults.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "loadgen/request_result.h"

namespace fs::loadgen {

// numpy.percentile's default (linear interpolation between ranks). p in [0, 100]; 0 when empty.
double percentile(std::vector<double> values, double p);
double mean(const std::vector<double>& values);
double stddev(const std::vector<double>& values);  // population (numpy's ddof = 0)

// vLLM --goodput: a request is good when it meets every SLO given (ms).
struct GoodputSlo {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool any() const { return ttft_ms || tpot_ms || e2el_ms; }
};
// "ttft:MS", "tpot:MS", "e2el:MS" items, each at most once.
Result<GoodputSlo> parse_goodput(const std::vector<std::string>& items);

// The paper's SLO: TTFT and normalized latency (e2el / output tokens), both ms.
struct LatencySlo {
  double ttft_ms = 0;
  double normalized_latency_ms = 0;
};
// "TTFT_MS:NORM_MS".
Result<LatencySlo> parse_latency_slo(const std::string& item);

struct SummaryOptions {
  GoodputSlo goodput;
  std::vector<LatencySlo> latency_slos;
  std::vector<double> percentiles = {50, 90, 95, 99};  // for percentiles_<metric>_ms
};

// Metrics over the successful requests (failed ones only count in "failed" and the per-request
// arrays). duration_s: first send to last completion.
nlohmann::json summarize(const std::vector<RequestResult>& results, double duration_s,
                         const SummaryOptions& options);

// vLLM's stdout table ("============ Serving Benchmark Result ============") for a summary.
std::string format_report(const nlohmann::json& summary);

}  // namespace fs::loadgen
