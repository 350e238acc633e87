// Workload traces for the simulator: (prompt tokens, output tokens) pairs from the datasets in
// ../shared/datasets (README there), filtered as the paper does, and arrival times.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace fs::sim {

struct TraceRequest {
  int32_t num_prompt_tokens = 0;
  int32_t num_output_tokens = 0;
};

struct TraceFilter {
  int32_t max_prompt_tokens = 1024;  // paper: prompt <= 1024
  int32_t max_total_tokens = 2048;   // paper: prompt + output <= 2048
};

// name: "sharegpt" (sharegpt_vllm_opt_lengths.csv: OPT-tokenizer lengths, the paper's closest
// match), "alpaca" (alpaca.jsonl: lengths ceil(chars / 4), no length CSV exists for it),
// "azure_code", "azure_conv" (azure_{code,conv}_lengths.csv), "mooncake"
// (mooncake_conversation_lengths.csv), all in datasets_dir, or a path to a CSV with
// prompt_tokens,output_tokens columns (others ignored) or a JSONL with prompt/output texts (chars /
// 4). Requests with an empty prompt or output, or past the filter, are left out. kNotFound /
// kDataLoss name the file.
Result<std::vector<TraceRequest>> load_trace(const std::string& name,
                                             const std::string& datasets_dir,
                                             const TraceFilter& filter);

// Draws num_requests requests uniformly with replacement from the trace (as vLLM's benchmark
// samples), deterministic in seed.
std::vector<TraceRequest> sample_requests(const std::vector<TraceRequest>& trace,
                                          int64_t num_requests, uint64_t seed);

enum class ArrivalProcess { kPoisson, kGamma };
Result<ArrivalProcess> parse_arrival(const std::string& name);

// num_requests arrival times starting near 0 at rate_per_s (infinite: all at 0). Gamma
// inter-arrival times have mean 1/rate and coefficient of variation cv (cv = 1 is Poisson).
std::vector<double> make_arrivals(ArrivalProcess process, double rate_per_s, double cv,
                                  int64_t num_requests, uint64_t seed);

}  // namespace fs::sim
