// OpenAI request parsing and validation: a JSON body in, a typed CompletionRequest or an ApiError
// out (status, message, and the offending field). No model access here: tokenization happens in the
// handler, so these functions are testable without a model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "engine/sampler.h"

namespace fs::server {

// An error as OpenAI's servers return it: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
};

nlohmann::json error_json(const ApiError& error);
// Engine/Status errors: invalid argument and out of range -> 400, not found -> 404, resource
// exhausted
// -> 429, unavailable -> 503, the rest -> 500.
ApiError error_from_status(const Status& status);

enum class Endpoint { kCompletions, kChatCompletions };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                       // empty when not given
  std::optional<std::string> prompt_text;  // completions: a string prompt
  std::vector<int32_t> prompt_tokens;      // completions: a token-id prompt
  // chat: [{"role", "content": string}] (parts joined), object keys in the client's order (the
  // chat template sees them as jinja2 would: `message.items()`, `tojson`).
  nlohmann::ordered_json messages;
  std::optional<int64_t> max_tokens;  // unset: 16 for completions, the rest of the context for chat
  int32_t n = 1;                       // choices
  SamplingParams sampling;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  int32_t logprobs = -1;  // -1: none; else top-n alternatives per token (0: the chosen only)
  int32_t priority = 0;   // vLLM's `priority`: lower is scheduled first; any int32
};

// Parses a body into a JSON object, keeping the keys in the body's order (Python's json.loads
// does; chat templates iterate them). Errors (400): not JSON, not an object, nested deeper than
// kMaxJsonDepth (deep values would overflow the stack of the recursive copies and template code).
inline constexpr int kMaxJsonDepth = 64;
std::optional<ApiError> parse_json_object(const std::string& body, nlohmann::ordered_json* out);

// Parses and validates a request body for `endpoint`. Unknown fields are ignored; null counts as
// absent. Returns the error (400 with `param` naming the field) on malformed JSON, wrong types,
// out-of-range values and unsupported options (n > 1, echo, best_of > 1).
std::optional<ApiError> parse_completion_request(const std::string& body, Endpoint endpoint,
                                                 CompletionRequest* out);

// Constant-time comparison (for API keys): the time depends only on the lengths.
bool constant_time_equal(const std::string& a, const std::string& b);

}  // namespace fs::server
