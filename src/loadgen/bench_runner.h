// Runs one benchmark: sends the requests at their arrival times (make_arrival_times), at most
// max_concurrency in flight, one thread per in-flight request, and collects their results.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "loadgen/dataset.h"
#include "loadgen/http_client.h"
#include "loadgen/request_result.h"

namespace fs::loadgen {

struct RunOptions {
  EndpointConfig endpoint;
  double request_rate = std::numeric_limits<double>::infinity();  // requests per second
  double burstiness = 1;                                          // gamma shape; 1 = Poisson
  int32_t max_concurrency = 0;                                    // 0: no limit
  uint64_t seed = 0;
  bool progress = false;  // a one-line progress bar on stderr
};

struct RunOutcome {
  std::vector<RequestResult> results;  // in the order of the requests
  double duration_s = 0;               // first send to last completion
  int32_t max_in_flight = 0;           // the most requests open at once
};

// Blocks until every request has finished (or failed). A request waiting for a concurrency slot
// is sent as soon as one frees up (vLLM: the semaphore is taken after the arrival time); its
// latencies are measured from its send.
RunOutcome run_benchmark(const RunOptions& options, const std::vector<BenchRequest>& requests);

}  // namespace fs::loadgen
