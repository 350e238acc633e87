#include "sim/trace.h"

#include <cmath>
#include <limits>
#include <random>

#include "core/workload_file.h"

namespace fs::sim {
namespace {

int32_t approx_tokens(const std::string& text) {
  return static_cast<int32_t>((text.size() + 3) / 4);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Prompt and output lengths of every row of a length CSV or (approximated from the texts) a JSONL.
Result<std::vector<TraceRequest>> read_rows(const std::string& path) {
  std::vector<TraceRequest> out;
  if (ends_with(path, ".jsonl")) {
    FS_ASSIGN_OR_RETURN(std::vector<TextRow> rows, read_text_rows(path, "trace"));
    for (const TextRow& r : rows) out.push_back({approx_tokens(r.prompt), approx_tokens(r.output)});
  } else {
    FS_ASSIGN_OR_RETURN(std::vector<LengthRow> rows, read_length_rows(path, "trace"));
    for (const LengthRow& r : rows) out.push_back({r.prompt_tokens, r.output_tokens});
  }
  return out;
}

}  // namespace

Result<std::vector<TraceRequest>> load_trace(const std::string& name,
                                             const std::string& datasets_dir,
                                             const TraceFilter& filter) {
  std::string path = name;
  if (name == "sharegpt") path = datasets_dir + "/sharegpt_vllm_opt_lengths.csv";
  if (name == "alpaca") path = datasets_dir + "/alpaca.jsonl";
  if (name == "azure_code") path = datasets_dir + "/azure_code_lengths.csv";
  if (name == "azure_conv") path = datasets_dir + "/azure_conv_lengths.csv";
  if (name == "mooncake") path = datasets_dir + "/mooncake_conversation_lengths.csv";
  FS_ASSIGN_OR_RETURN(std::vector<TraceRequest> all, read_rows(path));
  std::vector<TraceRequest> kept;
  for (const TraceRequest& r : all) {
    if (r.num_prompt_tokens < 1 || r.num_output_tokens < 1) continue;
    if (r.num_prompt_tokens > filter.max_prompt_tokens) continue;
    if (r.num_prompt_tokens + r.num_output_tokens > filter.max_total_tokens) continue;
    kept.push_back(r);
  }
  if (kept.empty()) return data_loss("trace {}: no request passes the length filter", path);
  return kept;
}

std::vector<TraceRequest> sample_requests(const std::vector<TraceRequest>& trace,
                                          int64_t num_requests, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, trace.size() - 1);
  std::vector<TraceRequest> out;
  out.reserve(num_requests);
  for (int64_t i = 0; i < num_requests; ++i) out.push_back(trace[pick(rng)]);
  return out;
}

Result<ArrivalProcess> parse_arrival(const std::string& name) {
  if (name == "poisson") return ArrivalProcess::kPoisson;
  if (name == "gamma") return ArrivalProcess::kGamma;
  return invalid_argument("unknown arrival process '{}' (poisson|gamma)", name);
}

std::vector<double> make_arrivals(ArrivalProcess process, double rate_per_s, double cv,
                                  int64_t num_requests, uint64_t seed) {
  std::vector<double> t(num_requests, 0.0);
  if (!std::isfinite(rate_per_s)) return t;
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  double shape = 1.0;
  switch (process) {
    case ArrivalProcess::kPoisson:
      shape = 1.0;
      break;
    case ArrivalProcess::kGamma:
      shape = 1.0 / (cv * cv);
      break;
  }
  std::gamma_distribution<double> gap(shape, 1.0 / (rate_per_s * shape));
  double now = 0;
  for (int64_t i = 0; i < num_requests; ++i) {
    if (i > 0) now += gap(rng);
    t[i] = now;
  }
  return t;
}

}  // namespace fs::sim
