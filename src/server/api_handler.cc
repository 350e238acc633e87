#include "server/api_handler.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "server/dashboard_page.h"
#include "server/metrics_text.h"
#include "server/scheduler_state.h"
#include "server/sse.h"

namespace fs::server {

using nlohmann::json;

ApiResponse error_response(const ApiError& error) {
  ApiResponse r;
  r.status = error.http_status;
  r.body = dump_json(error_json(error));
  if (error.http_status == 429 || error.http_status == 503)
    r.headers.emplace_back("Retry-After", "1");
  return r;
}

namespace {

ApiResponse json_response(const json& j) {
  ApiResponse r;
  r.body = dump_json(j);
  return r;
}

ApiError not_allowed() {
  return ApiError{405, "method not allowed on this route", "invalid_request_error", "",
                  "method_not_allowed"};
}

ApiError shutting_down() {
  return ApiError{503, "the server is shutting down", "service_unavailable", "", ""};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Generation

Generation::Generation(std::unique_ptr<RequestStream> stream, ResponseBuilder builder,
                       bool streaming, bool chat, bool include_usage, int32_t num_choices)
    : stream_(std::move(stream)),
      streaming_(streaming),
      chat_(chat),
      include_usage_(include_usage),
      finish_reasons_(std::max(num_choices, 1)) {
  builders_.assign(finish_reasons_.size(), builder);
  for (size_t i = 0; i < builders_.size(); ++i) builders_[i].set_index(static_cast<int32_t>(i));
}

std::string Generation::with_usage(json chunk) const {
  if (include_usage_) chunk["usage"] = nullptr;
  return sse_event(chunk);
}

std::string Generation::begin_stream() {
  std::string out;
  if (chat_) {
    for (const ResponseBuilder& b : builders_) out += with_usage(b.role_chunk());
  }
  return out;
}

void Generation::on_event(const GenerationEvent& event, std::string* sse, ApiResponse* response) {
  if (done_) return;
  const size_t index = static_cast<size_t>(event.index);
  if (index >= builders_.size()) return;  // cannot happen: the engine tags choices 0 .. n-1
  ResponseBuilder& builder = builders_[index];
  switch (event.kind) {
    case GenerationEvent::Kind::kToken: {
      // One chunk per token, also when its text is empty (part of a character, a stop string's
      // possible start held back): clients time tokens by chunks, as vLLM streams them.
      json chunk = builder.token_chunk(event);
      if (streaming_) *sse += with_usage(std::move(chunk));
      return;
    }
    case GenerationEvent::Kind::kFinished: {
      finish_reasons_[index] = event.finish_reason;
      num_prompt_tokens_ = event.num_prompt_tokens;
      num_output_tokens_ += event.num_output_tokens;
      if (streaming_) *sse += with_usage(builder.finish_chunk(event.finish_reason));
      if (++num_finished_ < builders_.size()) return;
      done_ = true;
      if (!streaming_) {
        json full = builders_[0].full_response(finish_reasons_[0], num_prompt_tokens_, num_output_tokens_);
        for (size_t i = 1; i < builders_.size(); ++i) {
          full["choices"].push_back(builders_[i].full_response(finish_reasons_[i], 0, 0)["choices"][0]);
        }
        *response = json_response(full);
        return;
      }
      if (include_usage_)
        *sse += sse_event(builder.usage_chunk(num_prompt_tokens_, num_output_tokens_));
      *sse += kSseDone;
      return;
    }
    case GenerationEvent::Kind::kError:
      done_ = true;
      stream_->cancel();  // the other choices end too
      if (!streaming_) {
        *response = error_response(error_from_status(event.error));
        return;
      }
      *sse += sse_event(error_json(error_from_status(event.error)));
      *sse += kSseDone;
      return;
  }
}

void Generation::end_early(EndReason reason, double timeout_s, std::string* sse,
                           ApiResponse* response) {
  if (done_) return;
  done_ = true;
  stream_->cancel();  // the engine frees the job's KV at its next iteration
  ApiError error;
  switch (reason) {
    case EndReason::kShutdown:
      error = shutting_down();
      break;
    case EndReason::kTimeout:
      error = ApiError{
          504, fmt::format("the request took longer than {} s (--request-timeout-s)", timeout_s),
          "timeout", "", "request_timeout"};
      break;
  }
  if (!streaming_) {
    *response = error_response(error);
    return;
  }
  if (reason == EndReason::kShutdown) {
    for (size_t i = 0; i < builders_.size(); ++i) {
      if (finish_reasons_[i].empty()) *sse += with_usage(builders_[i].finish_chunk("abort"));
    }
  } else {
    *sse += sse_event(error_json(error));
  }
  *sse += kSseDone;
}

// ---------------------------------------------------------------------------------------------
// ApiHandler

ApiHandler::ApiHandler(Engine& engine, const ServerConfig& config)
    : engine_(engine), config_(config) {
  std::random_device rd;
  id_prefix_ = fmt::format("{:08x}", rd());
}

bool ApiHandler::authorized(std::string_view authorization) const {
  if (config_.api_key.empty()) return true;
  constexpr std::string_view kPrefix = "Bearer ";
  if (!authorization.starts_with(kPrefix)) return false;
  return constant_time_equal(std::string(authorization.substr(kPrefix.size())), config_.api_key);
}

bool ApiHandler::model_known(const std::string& name) const {
  if (name.empty() || name == config_.served_model_name) return true;
  return std::find(config_.model_aliases.begin(), config_.model_aliases.end(), name) !=
         config_.model_aliases.end();
}

int64_t ApiHandler::context_tokens() const {
  const int64_t ctx = engine_.model_config().max_position_embeddings;
  const int64_t kv = engine_.metrics().device_kv_blocks_total * engine_.config().kv_block_size;
  return kv > 0 ? std::min(ctx, kv) : ctx;
}

json ApiHandler::models_json() const {
  json model = {{"id", config_.served_model_name},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "fastserve"},
                {"root", engine_.runtime().model_path},
                {"max_model_len", engine_.model_config().max_position_embeddings}};
  return {{"object", "list"}, {"data", json::array({model})}};
}

ApiHandler::Outcome ApiHandler::handle(ApiRequest& request) {
  std::string_view path = request.target.substr(0, request.target.find('?'));
  const bool post = request.method == "POST", get = request.method == "GET";
  if (path.starts_with("/v1/") && !authorized(request.authorization)) {
    ApiResponse r = error_response(ApiError{401,
                                            "invalid or missing API key (Authorization: Bearer "
                                            "<key>)",
                                            "invalid_request_error", "", "invalid_api_key"});
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (!post) return error_response(not_allowed());
    return handle_generate(
        request, path == "/v1/completions" ? Endpoint::kCompletions : Endpoint::kChatCompletions);
  }
  if (path == "/tokenize" || path == "/detokenize") {
    if (!post) return error_response(not_allowed());
    return path == "/tokenize" ? handle_tokenize(request) : handle_detokenize(request);
  }
  if (path == "/v1/models" || path == "/health" || path == "/metrics") {
    if (!get) return error_response(not_allowed());
    if (path == "/v1/models") return json_response(models_json());
    if (path == "/health") {
      if (stopping_) return error_response(shutting_down());
      return json_response({{"status", "ok"}});
    }
    ApiResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = metrics_text(engine_.metrics(), config_.served_model_name);
    if (extra_metrics_) r.body += extra_metrics_();
    return r;
  }
  if (path == "/v1/scheduler/state" || path == "/" || path == "/dashboard") {  // the dashboard
    if (!get) return error_response(not_allowed());
    ApiResponse r;
    if (path == "/v1/scheduler/state") {
      r.body = dump_json(scheduler_state_json(engine_.scheduler_snapshot().get()));
    } else {
      r.content_type = "text/html; charset=utf-8";
      r.body = std::string(dashboard_page_html());
    }
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  }
  return error_response(ApiError{404, "no such route", "invalid_request_error", "", "not_found"});
}

ApiHandler::Outcome ApiHandler::handle_generate(const ApiRequest& request, Endpoint endpoint) {
  if (stopping_) return error_response(shutting_down());
  CompletionRequest parsed;
  if (auto err = parse_completion_request(request.body, endpoint, &parsed))
    return error_response(*err);
  if (!model_known(parsed.model)) {
    return error_response(ApiError{404, fmt::format("The model `{}` does not exist.", parsed.model),
                                   "invalid_request_error", "model", "model_not_found"});
  }
  const ModelRuntime& runtime = engine_.runtime();
  const bool chat = endpoint == Endpoint::kChatCompletions;
  const char* prompt_param = chat ? "messages" : "prompt";
  GenerationRequest g;
  if (chat) {
    if (!runtime.tokenizer)
      return error_response(
          ApiError{400, "this model has no tokenizer", "invalid_request_error", "messages", ""});
    Result<std::vector<int32_t>> ids =
        runtime.encode_chat(parsed.messages, /*add_generation_prompt=*/true);
    if (!ids.is_ok()) {
      ApiError e = error_from_status(ids.status());
      e.param = "messages";
      return error_response(e);
    }
    g.prompt_tokens = std::move(ids).value();
  } else if (parsed.prompt_text) {
    if (!runtime.tokenizer)
      return error_response(ApiError{400, "this model has no tokenizer; send token ids",
                                     "invalid_request_error", "prompt", ""});
    Result<std::vector<int32_t>> ids = runtime.encode_text(*parsed.prompt_text);
    if (!ids.is_ok()) return error_response(error_from_status(ids.status()));
    g.prompt_tokens = std::move(ids).value();
  } else {
    g.prompt_tokens = parsed.prompt_tokens;
  }
  const int64_t num_prompt = static_cast<int64_t>(g.prompt_tokens.size());
  if (config_.max_prompt_tokens > 0 && num_prompt > config_.max_prompt_tokens) {
    return error_response(
        ApiError{400,
                 fmt::format("the prompt has {} tokens; this server takes at most {} "
                             "(--max-prompt-tokens)",
                             num_prompt, config_.max_prompt_tokens),
                 "invalid_request_error", prompt_param, "context_length_exceeded"});
  }
  if (config_.max_output_tokens > 0 && parsed.max_tokens &&
      *parsed.max_tokens > config_.max_output_tokens) {
    return error_response(ApiError{
        400,
        fmt::format("max_tokens is {}; this server allows at most {} (--max-output-tokens)",
                    *parsed.max_tokens, config_.max_output_tokens),
        "invalid_request_error", "max_tokens", ""});
  }
  int64_t default_max_tokens = chat ? std::max<int64_t>(1, context_tokens() - num_prompt) : 16;
  if (config_.max_output_tokens > 0)
    default_max_tokens = std::min(default_max_tokens, config_.max_output_tokens);
  g.max_tokens = parsed.max_tokens.value_or(default_max_tokens);
  g.sampling = parsed.sampling;
  g.stop = parsed.stop;
  g.stop_token_ids = parsed.stop_token_ids;
  g.ignore_eos = parsed.ignore_eos;
  g.skip_special_tokens = parsed.skip_special_tokens;
  g.n = parsed.n;
  g.priority = parsed.priority;
  const std::string id =
      fmt::format("{}-{}{}", chat ? "chatcmpl" : "cmpl", id_prefix_, next_request_++);
  g.request_id = id;

  Result<std::unique_ptr<RequestStream>> submitted = engine_.submit(std::move(g));
  if (!submitted.is_ok()) {
    ApiError e = error_from_status(submitted.status());
    if (submitted.status().code() == StatusCode::kOutOfRange) e.param = prompt_param;
    return error_response(e);
  }
  ResponseBuilder builder(endpoint, id, config_.served_model_name, parsed.logprobs,
                          runtime.tokenizer.get());
  return std::make_unique<Generation>(std::move(submitted).value(), std::move(builder),
                                      parsed.stream, chat, parsed.include_usage, parsed.n);
}

ApiResponse ApiHandler::handle_tokenize(const ApiRequest& request) const {
  nlohmann::ordered_json body;
  if (auto err = parse_json_object(request.body, &body)) return error_response(*err);
  const ModelRuntime& runtime = engine_.runtime();
  if (!runtime.tokenizer)
    return error_response(
        ApiError{400, "this model has no tokenizer", "invalid_request_error", "", ""});
  auto model = body.find("model");
  if (model != body.end() && model->is_string() && !model_known(model->get<std::string>())) {
    return error_response(
        ApiError{404, fmt::format("The model `{}` does not exist.", model->get<std::string>()),
                 "invalid_request_error", "model", "model_not_found"});
  }
  Result<std::vector<int32_t>> ids = std::vector<int32_t>{};
  auto prompt = body.find("prompt");
  auto messages = body.find("messages");
  if (prompt != body.end() && prompt->is_string()) {
    bool add_special = true;
    auto it = body.find("add_special_tokens");
    if (it != body.end() && it->is_boolean()) add_special = it->get<bool>();
    ids = runtime.tokenizer->encode(prompt->get<std::string>(), EncodeOptions{add_special, true});
  } else if (messages != body.end() && messages->is_array()) {
    bool add_generation_prompt = true;
    auto it = body.find("add_generation_prompt");
    if (it != body.end() && it->is_boolean()) add_generation_prompt = it->get<bool>();
    ids = runtime.encode_chat(*messages, add_generation_prompt);
  } else {
    return error_response(ApiError{400, "give 'prompt' (a string) or 'messages' (a list)",
                                   "invalid_request_error", "prompt", ""});
  }
  if (!ids.is_ok()) return error_response(error_from_status(ids.status()));
  return json_response({{"tokens", ids.value()},
                        {"count", ids.value().size()},
                        {"max_model_len", engine_.model_config().max_position_embeddings}});
}

ApiResponse ApiHandler::handle_detokenize(const ApiRequest& request) const {
  nlohmann::ordered_json body;
  if (auto err = parse_json_object(request.body, &body)) return error_response(*err);
  const ModelRuntime& runtime = engine_.runtime();
  if (!runtime.tokenizer)
    return error_response(
        ApiError{400, "this model has no tokenizer", "invalid_request_error", "", ""});
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) {
    return error_response(ApiError{400, "'tokens' must be a list of token ids",
                                   "invalid_request_error", "tokens", ""});
  }
  std::vector<int32_t> ids;
  for (const nlohmann::ordered_json& t : *tokens) {
    if (!t.is_number_integer() ||
        !runtime.tokenizer->is_valid_id(static_cast<int32_t>(t.get<int64_t>())) ||
        t.get<int64_t>() != static_cast<int32_t>(t.get<int64_t>())) {
      return error_response(ApiError{400,
                                     fmt::format("token id {} is outside the vocabulary", t.dump()),
                                     "invalid_request_error", "tokens", ""});
    }
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return json_response({{"prompt", runtime.tokenizer->decode(ids)}});
}

}  // namespace fs::server
