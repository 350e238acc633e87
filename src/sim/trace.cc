#include "sim/trace.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

namespace fs::sim {
namespace {

int32_t approx_tokens(const std::string& text) {
  return static_cast<int32_t>((text.size() + 3) / 4);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status read_csv(const std::string& path, std::vector<TraceRequest>& out) {
  std::ifstream in(path);
  if (!in) return not_found("trace {} not found", path);
  std::string line;
  if (!std::getline(in, line)) return data_loss("trace {}: empty", path);
  // Find the prompt_tokens / output_tokens columns in the header.
  int prompt_col = -1, output_col = -1, col = 0;
  std::stringstream header(line);
  for (std::string name; std::getline(header, name, ','); ++col) {
    while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
    if (name == "prompt_tokens") prompt_col = col;
    if (name == "output_tokens") output_col = col;
  }
  if (prompt_col < 0 || output_col < 0) {
    return data_loss("trace {}: header lacks prompt_tokens,output_tokens", path);
  }
  int64_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string field;
    TraceRequest r;
    int c = 0;
    for (; std::getline(ss, field, ','); ++c) {
      if (c == prompt_col) r.num_prompt_tokens = std::atoi(field.c_str());
      if (c == output_col) r.num_output_tokens = std::atoi(field.c_str());
    }
    if (c <= std::max(prompt_col, output_col)) return data_loss("{}:{}: short row", path, line_no);
    out.push_back(r);
  }
  return Status::ok();
}

Status read_jsonl(const std::string& path, std::vector<TraceRequest>& out) {
  std::ifstream in(path);
  if (!in) return not_found("trace {} not found", path);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("prompt") || !j["prompt"].is_string()) {
      return data_loss("{}:{}: not a {{\"prompt\", \"output\"}} object", path, line_no);
    }
    TraceRequest r;
    r.num_prompt_tokens = approx_tokens(j["prompt"].get<std::string>());
    if (j.contains("output") && j["output"].is_string()) {
      r.num_output_tokens = approx_tokens(j["output"].get<std::string>());
    }
    out.push_back(r);
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<TraceRequest>> load_trace(const std::string& name,
                                             const std::string& datasets_dir,
                                             const TraceFilter& filter) {
  std::string path = name;
  if (name == "sharegpt") path = datasets_dir + "/sharegpt_vllm_opt_lengths.csv";
  if (name == "alpaca") path = datasets_dir + "/alpaca.jsonl";
  std::vector<TraceRequest> all;
  if (ends_with(path, ".jsonl")) {
    FS_RETURN_IF_ERROR(read_jsonl(path, all));
  } else {
    FS_RETURN_IF_ERROR(read_csv(path, all));
  }
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
