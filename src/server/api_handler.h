// The OpenAI API over one Engine, independent of the HTTP transport: a parsed request in, either a
// complete response or a Generation (a submitted request whose events the transport feeds back to
// get response bytes). Handlers parse and validate into a GenerationRequest and submit it; they
// never touch the model (STYLE.md habit 13). Not thread-safe per Generation; handle() is
// thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "engine/engine.h"
#include "server/openai_protocol.h"
#include "server/openai_response.h"
#include "server/server_config.h"

namespace fs::server {

struct ApiRequest {
  std::string_view method;         // "GET", "POST", ...
  std::string_view target;         // path, maybe with a query
  std::string_view authorization;  // the Authorization header; empty when absent
  std::string body;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type/Length
};

// An OpenAI error as a response (Retry-After on 429 and 503).
ApiResponse error_response(const ApiError& error);

// One submitted generation request. The transport registers a notifier on stream(), reads events
// with stream().next(0ms) and passes each to on_event().
class Generation {
 public:
  // num_choices: the request's `n`; the builder is copied for each choice.
  Generation(std::unique_ptr<RequestStream> stream, ResponseBuilder builder, bool streaming,
             bool chat, bool include_usage, int32_t num_choices = 1);

  bool streaming() const { return streaming_; }
  bool done() const { return done_; }
  RequestStream& stream() { return *stream_; }

  // Streaming: the SSE bytes to send right after the 200 headers (the chat role chunk; may be
  // empty).
  std::string begin_stream();
  // Feeds one engine event. Streaming: appends its SSE bytes to *sse (maybe nothing). Not
  // streaming: when the request has ended, stores the full response in *response. done() is true
  // after the final event.
  void on_event(const GenerationEvent& event, std::string* sse, ApiResponse* response);

  enum class EndReason { kShutdown, kTimeout };
  // Ends the request early and cancels the engine job: a stream gets a last chunk (finish_reason
  // "abort" on shutdown, an error event on timeout) and [DONE]; otherwise a 503/504 response.
  void end_early(EndReason reason, double timeout_s, std::string* sse, ApiResponse* response);

 private:
  std::string with_usage(nlohmann::json chunk) const;
  std::unique_ptr<RequestStream> stream_;
  bool streaming_, chat_, include_usage_;
  std::vector<std::string> finish_reasons_;  // per choice; empty until it finished
  std::vector<ResponseBuilder> builders_;     // per choice
  size_t num_finished_ = 0;
  int64_t num_prompt_tokens_ = 0, num_output_tokens_ = 0;  // usage: the prompt once, outputs summed
  bool done_ = false;
};

class ApiHandler {
 public:
  // The engine must outlive the handler and be started.
  ApiHandler(Engine& engine, const ServerConfig& config);

  using Outcome = std::variant<ApiResponse, std::unique_ptr<Generation>>;
  // Routes one request: auth on /v1/*, 404/405, parsing, limits, submission. Thread-safe.
  Outcome handle(ApiRequest& request);

  // From now on /health and new generation requests get 503. Thread-safe.
  void set_stopping() { stopping_ = true; }
  bool stopping() const { return stopping_; }
  // Extra Prometheus lines appended to /metrics (the transport's gauges).
  void set_extra_metrics(std::function<std::string()> extra) { extra_metrics_ = std::move(extra); }

 private:
  bool authorized(std::string_view authorization) const;
  bool model_known(const std::string& name) const;
  int64_t context_tokens() const;
  nlohmann::json models_json() const;
  Outcome handle_generate(const ApiRequest& request, Endpoint endpoint);
  ApiResponse handle_tokenize(const ApiRequest& request) const;
  ApiResponse handle_detokenize(const ApiRequest& request) const;

  Engine& engine_;
  const ServerConfig& config_;
  std::string id_prefix_;
  std::atomic<uint64_t> next_request_{0};
  std::atomic<bool> stopping_{false};
  std::function<std::string()> extra_metrics_;
};

}  // namespace fs::server
