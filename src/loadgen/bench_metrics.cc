#include "loadgen/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

namespace fs::loadgen {
namespace {

Result<double> parse_ms(const std::string& text, const std::string& item) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0) || !std::isfinite(v)) {
    return invalid_argument("bad SLO '{}': the value must be a positive number of ms", item);
  }
  return v;
}

// mean_/median_/std_/p<P>_<name>_ms and percentiles_<name>_ms from values in seconds.
void put_ms(nlohmann::json& j, const std::string& name, const std::vector<double>& values_s,
            const std::vector<double>& percentiles) {
  j[fmt::format("mean_{}_ms", name)] = mean(values_s) * 1e3;
  j[fmt::format("median_{}_ms", name)] = percentile(values_s, 50) * 1e3;
  j[fmt::format("std_{}_ms", name)] = stddev(values_s) * 1e3;
  nlohmann::json pairs = nlohmann::json::array();
  for (double p : percentiles) {
    const double v = percentile(values_s, p) * 1e3;
    j[fmt::format("p{}_{}_ms", p, name)] = v;  // 99 -> "p99", 99.9 -> "p99.9"
    pairs.push_back({p, v});
  }
  j[fmt::format("percentiles_{}_ms", name)] = pairs;
}

}  // namespace

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

double mean(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

double stddev(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  const double m = mean(values);
  double sum = 0;
  for (double v : values) sum += (v - m) * (v - m);
  return std::sqrt(sum / static_cast<double>(values.size()));
}

Result<GoodputSlo> parse_goodput(const std::vector<std::string>& items) {
  GoodputSlo slo;
  for (const std::string& item : items) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) {
      return invalid_argument("bad --goodput item '{}' (ttft:MS, tpot:MS or e2el:MS)", item);
    }
    const std::string key = item.substr(0, colon);
    std::optional<double>* target = key == "ttft"   ? &slo.ttft_ms
                                    : key == "tpot" ? &slo.tpot_ms
                                    : key == "e2el" ? &slo.e2el_ms
                                                    : nullptr;
    if (target == nullptr) {
      return invalid_argument("bad --goodput metric '{}' (ttft, tpot or e2el)", key);
    }
    if (target->has_value()) return invalid_argument("--goodput {} given twice", key);
    FS_ASSIGN_OR_RETURN(double ms, parse_ms(item.substr(colon + 1), item));
    *target = ms;
  }
  return slo;
}

Result<LatencySlo> parse_latency_slo(const std::string& item) {
  const size_t colon = item.find(':');
  if (colon == std::string::npos) {
    return invalid_argument("bad --slo '{}' (TTFT_MS:NORMALIZED_LATENCY_MS)", item);
  }
  LatencySlo slo;
  FS_ASSIGN_OR_RETURN(slo.ttft_ms, parse_ms(item.substr(0, colon), item));
  FS_ASSIGN_OR_RETURN(slo.normalized_latency_ms, parse_ms(item.substr(colon + 1), item));
  return slo;
}

nlohmann::json summarize(const std::vector<RequestResult>& results, double duration_s,
                         const SummaryOptions& options) {
  std::vector<double> ttfts, tpots, itls, e2els, normalized;
  int64_t completed = 0, num_input_tokens = 0, num_output_tokens = 0, num_good = 0;
  std::vector<int64_t> num_attained(options.latency_slos.size(), 0);
  nlohmann::json input_lens = nlohmann::json::array(), output_lens = nlohmann::json::array();
  nlohmann::json target_output_lens = nlohmann::json::array();
  nlohmann::json ttfts_s = nlohmann::json::array(), itls_s = nlohmann::json::array();
  nlohmann::json e2els_s = nlohmann::json::array(), errors = nlohmann::json::array();
  nlohmann::json send_times = nlohmann::json::array();
  for (const RequestResult& r : results) {
    input_lens.push_back(r.num_prompt_tokens);
    output_lens.push_back(r.success ? r.num_output_tokens : 0);
    target_output_lens.push_back(r.num_target_output_tokens);
    ttfts_s.push_back(r.success ? r.ttft_s : 0.0);
    itls_s.push_back(r.itl_s);
    e2els_s.push_back(r.success ? r.latency_s : 0.0);
    send_times.push_back(r.send_s);
    errors.push_back(r.error);
    if (!r.success) continue;
    ++completed;
    num_input_tokens += r.num_prompt_tokens;
    num_output_tokens += r.num_output_tokens;
    // vLLM calculate_metrics: TPOT excludes the first token; a one-token request has TPOT 0 for
    // goodput and no entry in the TPOT statistics.
    double tpot_s = 0;
    if (r.num_output_tokens > 1) {
      tpot_s = (r.latency_s - r.ttft_s) / (r.num_output_tokens - 1);
      tpots.push_back(tpot_s);
    }
    ttfts.push_back(r.ttft_s);
    e2els.push_back(r.latency_s);
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    const double norm_s = r.latency_s / std::max(1, r.num_output_tokens);
    normalized.push_back(norm_s);
    const GoodputSlo& g = options.goodput;
    if ((!g.ttft_ms || r.ttft_s * 1e3 <= *g.ttft_ms) &&
        (!g.tpot_ms || tpot_s * 1e3 <= *g.tpot_ms) &&
        (!g.e2el_ms || r.latency_s * 1e3 <= *g.e2el_ms)) {
      ++num_good;
    }
    for (size_t i = 0; i < options.latency_slos.size(); ++i) {
      const LatencySlo& s = options.latency_slos[i];
      if (r.ttft_s * 1e3 <= s.ttft_ms && norm_s * 1e3 <= s.normalized_latency_ms) ++num_attained[i];
    }
  }
  const double d = std::max(duration_s, 1e-9);
  nlohmann::json j;
  j["duration"] = duration_s;
  j["num_prompts"] = static_cast<int64_t>(results.size());
  j["completed"] = completed;
  j["failed"] = static_cast<int64_t>(results.size()) - completed;
  j["total_input_tokens"] = num_input_tokens;
  j["total_output_tokens"] = num_output_tokens;
  j["request_throughput"] = completed / d;
  j["request_goodput"] =
      options.goodput.any() ? nlohmann::json(num_good / d) : nlohmann::json(nullptr);
  j["output_throughput"] = num_output_tokens / d;
  j["total_token_throughput"] = (num_input_tokens + num_output_tokens) / d;
  put_ms(j, "ttft", ttfts, options.percentiles);
  put_ms(j, "tpot", tpots, options.percentiles);
  put_ms(j, "itl", itls, options.percentiles);
  put_ms(j, "e2el", e2els, options.percentiles);
  // The paper's metric: end-to-end latency per output token. The simulator writes the _s keys.
  j["mean_normalized_latency_ms"] = mean(normalized) * 1e3;
  j["median_normalized_latency_ms"] = percentile(normalized, 50) * 1e3;
  j["p95_normalized_latency_ms"] = percentile(normalized, 95) * 1e3;
  j["p99_normalized_latency_ms"] = percentile(normalized, 99) * 1e3;
  j["mean_normalized_latency_s"] = mean(normalized);
  j["median_normalized_latency_s"] = percentile(normalized, 50);
  j["p99_normalized_latency_s"] = percentile(normalized, 99);
  nlohmann::json attainment = nlohmann::json::array();
  for (size_t i = 0; i < options.latency_slos.size(); ++i) {
    attainment.push_back(
        {{"ttft_ms", options.latency_slos[i].ttft_ms},
         {"normalized_latency_ms", options.latency_slos[i].normalized_latency_ms},
         {"attainment", results.empty() ? 0.0 : double(num_attained[i]) / results.size()}});
  }
  j["slo_attainment"] = attainment;
  j["input_lens"] = input_lens;
  j["output_lens"] = output_lens;
  j["target_output_lens"] = target_output_lens;  // max_tokens sent (ours)
  j["ttfts"] = ttfts_s;
  j["itls"] = itls_s;
  j["e2els"] = e2els_s;
  j["send_times"] = send_times;  // seconds from the start (ours)
  j["errors"] = errors;
  return j;
}

std::string format_report(const nlohmann::json& s) {
  std::string out;
  auto line = [&](const std::string& label, const nlohmann::json& v) {
    if (v.is_number_integer()) {
      out += fmt::format("{:<40}{:<10}\n", label, v.get<int64_t>());
    } else if (v.is_number()) {
      out += fmt::format("{:<40}{:<10.2f}\n", label, v.get<double>());
    }
  };
  auto header = [&](const std::string& title, char fill) {  // centred in 50 columns, as vLLM
    const size_t pad = title.size() < 50 ? 50 - title.size() : 0;
    out += std::string(pad / 2, fill) + title + std::string(pad - pad / 2, fill) + "\n";
  };
  header(" Serving Benchmark Result ", '=');
  line("Successful requests:", s["completed"]);
  line("Failed requests:", s["failed"]);
  line("Benchmark duration (s):", s["duration"]);
  line("Total input tokens:", s["total_input_tokens"]);
  line("Total generated tokens:", s["total_output_tokens"]);
  line("Request throughput (req/s):", s["request_throughput"]);
  line("Request goodput (req/s):", s["request_goodput"]);
  line("Output token throughput (tok/s):", s["output_throughput"]);
  line("Total Token throughput (tok/s):", s["total_token_throughput"]);
  const struct {
    const char* key;
    const char* title;
    const char* label;
  } sections[] = {{"ttft", "Time to First Token", "TTFT"},
                  {"tpot", "Time per Output Token (excl. 1st token)", "TPOT"},
                  {"itl", "Inter-token Latency", "ITL"},
                  {"e2el", "End-to-end Latency", "E2EL"},
                  {"normalized_latency", "Normalized Latency (E2EL / token)", "NormLat"}};
  for (const auto& sec : sections) {
    header(sec.title, '-');
    const std::string k = sec.key;
    line(fmt::format("Mean {} (ms):", sec.label), s[fmt::format("mean_{}_ms", k)]);
    line(fmt::format("Median {} (ms):", sec.label), s[fmt::format("median_{}_ms", k)]);
    if (s.contains(fmt::format("std_{}_ms", k))) {
      line(fmt::format("Std {} (ms):", sec.label), s[fmt::format("std_{}_ms", k)]);
    }
    const std::string list_key = fmt::format("percentiles_{}_ms", k);
    if (s.contains(list_key)) {  // [[p, value], ...]
      for (const auto& pv : s[list_key]) {
        if (pv[0].get<double>() == 50) continue;  // the median, above
        line(fmt::format("P{:g} {} (ms):", pv[0].get<double>(), sec.label), pv[1]);
      }
    } else {
      for (const char* p : {"p95", "p99"}) {
        const std::string key = fmt::format("{}_{}_ms", p, k);
        if (s.contains(key)) line(fmt::format("P{} {} (ms):", p + 1, sec.label), s[key]);
      }
    }
  }
  if (!s["slo_attainment"].empty()) {
    header("SLO Attainment (TTFT, NormLat)", '-');
    for (const auto& a : s["slo_attainment"]) {
      line(fmt::format("TTFT<={:g}ms, NormLat<={:g}ms (%):", a["ttft_ms"].get<double>(),
                       a["normalized_latency_ms"].get<double>()),
           a["attainment"].get<double>() * 100);
    }
  }
  out += std::string(50, '=') + "\n";
  return out;
}

}  // namespace fs::loadgen
