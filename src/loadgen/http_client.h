// One streaming request to an OpenAI-compatible server (/v1/completions or /v1/chat/completions),
// timed chunk by chunk. cpp-httplib, a connection per request.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "loadgen/dataset.h"
#include "loadgen/request_result.h"

namespace fs::loadgen {

struct EndpointConfig {
  std::string base_url = "http://127.0.0.1:8000";  // scheme://host[:port][/path prefix]
  std::string path = "/v1/completions";            // appended to base_url
  bool chat = false;                               // chat body (messages) instead of prompt
  std::string model;
  std::string api_key;  // non-empty: "Authorization: Bearer <key>"
  bool ignore_eos = false;
  double temperature = 0;       // greedy, as vLLM's benchmark sends
  nlohmann::json extra_body;    // merged into every request body (object or null)
  double timeout_s = 6 * 3600;  // per read
};

struct BaseUrl {
  std::string scheme_host_port;  // "http://host:port", what httplib::Client takes
  std::string path_prefix;       // "" or "/prefix" (no trailing slash)
};
// Splits base_url; kInvalidArgument unless it starts with http:// or https://.
Result<BaseUrl> split_base_url(const std::string& base_url);

// The JSON body: model, prompt (or messages), max_tokens = request.num_output_tokens, stream with
// stream_options.include_usage, temperature, ignore_eos when set, then extra_body.
nlohmann::json make_request_body(const EndpointConfig& endpoint, const BenchRequest& request);

// Sends request and reads its stream to the end. Never fails as a call: errors are in the result.
// Times are measured from the send; send_s is relative to bench_start. Thread-safe (own client).
RequestResult send_request(const EndpointConfig& endpoint, const BenchRequest& request,
                           std::chrono::steady_clock::time_point bench_start);

// GET {base}/v1/models: the first model's id. Errors name the URL.
Result<std::string> fetch_first_model(const EndpointConfig& endpoint);

}  // namespace fs::loadgen
