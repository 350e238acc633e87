#include "sim/metrics.h"

#include <algorithm>
#include <cmath>

namespace fs::sim {
namespace {

constexpr double kMinS = 1e-5;
constexpr double kBinRatio = 1.005;
const double kLogRatio = std::log(kBinRatio);
constexpr int kNumBins = 4700;  // 1e-5 * 1.005^4700 ~ 1.6e5 s

// numpy-style linear interpolation between ranks; sorts v.
double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / v.size();
}

double stddev(const std::vector<double>& v) {
  if (v.empty()) return 0.0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / v.size());
}

void put_ms(nlohmann::json& j, const char* name, std::vector<double> v_s) {
  j[fmt::format("mean_{}_ms", name)] = mean(v_s) * 1e3;
  j[fmt::format("std_{}_ms", name)] = stddev(v_s) * 1e3;
  j[fmt::format("median_{}_ms", name)] = percentile(v_s, 50) * 1e3;
  j[fmt::format("p90_{}_ms", name)] = percentile(v_s, 90) * 1e3;
  j[fmt::format("p99_{}_ms", name)] = percentile(v_s, 99) * 1e3;
}

}  // namespace

LatencyHistogram::LatencyHistogram() : bins_(kNumBins, 0) {}

void LatencyHistogram::add(double seconds) {
  int bin = seconds <= kMinS ? 0 : static_cast<int>(std::log(seconds / kMinS) / kLogRatio) + 1;
  bins_[std::min(bin, kNumBins - 1)]++;
  ++count_;
  sum_ += seconds;
  sum_sq_ += seconds * seconds;
}

double LatencyHistogram::stddev() const {
  if (count_ == 0) return 0.0;
  const double m = mean();
  return std::sqrt(std::max(0.0, sum_sq_ / count_ - m * m));
}

double LatencyHistogram::percentile(double p) const {
  if (count_ == 0) return 0.0;
  const double target = p / 100.0 * count_;
  int64_t seen = 0;
  for (int b = 0; b < kNumBins; ++b) {
    seen += bins_[b];
    if (seen >= target && bins_[b] > 0) {
      // Geometric middle of the bin.
      return b == 0 ? kMinS : kMinS * std::pow(kBinRatio, b - 0.5);
    }
  }
  return kMinS * std::pow(kBinRatio, kNumBins);
}

nlohmann::json summarize(const SummaryInputs& in) {
  const auto& recs = *in.records;
  std::vector<double> e2el, ttft, tpot, norm;
  int64_t completed = 0, in_tokens = 0, out_tokens = 0, good = 0;
  for (const RequestRecord& r : recs) {
    if (r.finish_s < 0) continue;
    ++completed;
    in_tokens += r.num_prompt_tokens;
    out_tokens += r.num_generated_tokens;
    e2el.push_back(r.finish_s - r.arrival_s);
    ttft.push_back(r.first_token_s - r.arrival_s);
    if (r.num_generated_tokens > 1) {
      tpot.push_back((r.finish_s - r.first_token_s) / (r.num_generated_tokens - 1));
    }
    const double n = (r.finish_s - r.arrival_s) / std::max(1, r.num_generated_tokens);
    norm.push_back(n);
    if (n <= in.slo_normalized_latency_s) ++good;
  }
  nlohmann::json j;
  const double d = std::max(in.duration_s, 1e-12);
  j["duration"] = in.duration_s;
  j["completed"] = completed;
  j["num_prompts"] = static_cast<int64_t>(recs.size());
  j["total_input_tokens"] = in_tokens;
  j["total_output_tokens"] = out_tokens;
  j["request_throughput"] = completed / d;
  j["output_throughput"] = out_tokens / d;
  j["total_token_throughput"] = (in_tokens + out_tokens) / d;
  j["request_goodput"] = good / d;
  put_ms(j, "ttft", ttft);
  put_ms(j, "tpot", tpot);
  put_ms(j, "e2el", e2el);
  j["mean_itl_ms"] = in.itl->mean() * 1e3;
  j["std_itl_ms"] = in.itl->stddev() * 1e3;
  j["median_itl_ms"] = in.itl->percentile(50) * 1e3;
  j["p90_itl_ms"] = in.itl->percentile(90) * 1e3;
  j["p99_itl_ms"] = in.itl->percentile(99) * 1e3;
  // Ours. Normalized latency = e2el / output tokens (the paper's metric, s/token).
  j["mean_normalized_latency_s"] = mean(norm);
  j["median_normalized_latency_s"] = percentile(norm, 50);
  j["p99_normalized_latency_s"] = percentile(norm, 99);
  const auto& s = in.stats;
  j["num_iterations"] = s.num_iterations;
  j["num_preemptions"] = s.num_preemptions;
  j["num_demotions"] = s.num_demotions;
  j["num_promotions"] = s.num_promotions;
  j["num_drops"] = s.num_drops;
  j["num_recomputed_tokens"] = s.num_recomputed_tokens;
  j["offloaded_bytes"] = s.num_offloaded_blocks * in.block_bytes;
  j["uploaded_bytes"] = s.num_uploaded_blocks * in.block_bytes;
  j["swapped_bytes"] = (s.num_offloaded_blocks + s.num_uploaded_blocks) * in.block_bytes;
  j["busy_fraction"] = in.busy_s / d;
  j["mean_batch_size"] = s.num_iterations ? double(in.num_batched_jobs) / s.num_iterations : 0.0;
  return j;
}

}  // namespace fs::sim
