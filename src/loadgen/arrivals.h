// Request arrival times for the serving benchmark, as `vllm bench serve` draws them.
#pragma once

#include <cstdint>
#include <vector>

namespace fs::loadgen {

// num_requests send times in seconds from the start, the first at 0. Inter-arrival gaps are
// Gamma(shape = burstiness, scale = 1 / (rate_per_s * burstiness)): mean 1/rate, and burstiness 1
// is a Poisson process (vLLM benchmarks/serve.py get_request). An infinite rate sends all at 0.
// Deterministic in seed. rate_per_s > 0 and burstiness > 0 (FS_CHECK).
std::vector<double> make_arrival_times(double rate_per_s, double burstiness, int64_t num_requests,
                                       uint64_t seed);

}  // namespace fs::loadgen
