// What the benchmark measured for one request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fs::loadgen {

struct RequestResult {
  bool success = false;
  std::string error;          // why it failed: HTTP status and body, transport error, error event
  double send_s = 0;          // when it was sent, seconds since the benchmark started
  double ttft_s = 0;          // send -> first chunk with text
  double latency_s = 0;       // send -> end of the stream (end-to-end latency)
  std::vector<double> itl_s;  // gaps between consecutive chunks with text
  int32_t num_target_output_tokens = 0;  // the max_tokens sent
  int32_t num_prompt_tokens = 0;  // usage.prompt_tokens when reported, else the client's count
  int32_t num_output_tokens = 0;  // usage.completion_tokens when reported, else token chunks
  bool usage_reported = false;
  int32_t num_token_chunks = 0;
};

}  // namespace fs::loadgen
