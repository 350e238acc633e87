#include "server/http_server.h"

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "core/log.h"
#include "server/metrics_text.h"
#include "server/openai_protocol.h"
#include "server/openai_response.h"
#include "server/sse.h"

namespace fs::server {

using nlohmann::json;

Status ServerConfig::validate() const {
  if (port < 0 || port > 65535)
    return invalid_argument("--port must be in [0, 65535], got {}", port);
  if (host.empty()) return invalid_argument("--host is empty");
  if (max_body_bytes == 0) return invalid_argument("--max-body-bytes must be positive");
  if (num_http_threads < 1) return invalid_argument("--http-threads must be at least 1");
  return Status::ok();
}

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  if (e.http_status == 429 || e.http_status == 503) res.set_header("Retry-After", "1");
  res.set_content(dump_json(error_json(e)), "application/json");
}

void send_json(httplib::Response& res, const json& j) {
  res.set_content(dump_json(j), "application/json");
}

const char* default_error_message(int status) {
  switch (status) {
    case 404:
      return "no such route";
    case 405:
      return "method not allowed on this route";
    case 413:
      return "the request body is too large";
    case 414:
      return "the request URI is too long";
    case 431:
      return "the request headers are too large";
    default:
      return status >= 500 ? "internal server error" : "bad request";
  }
}

struct StreamState {
  StreamState(std::unique_ptr<RequestStream> s, ResponseBuilder b, std::atomic<int>* open)
      : stream(std::move(s)), builder(std::move(b)), num_open(open) {
    ++*num_open;
  }
  ~StreamState() { --*num_open; }
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  std::unique_ptr<RequestStream> stream;
  ResponseBuilder builder;
  bool chat = false;
  bool include_usage = false;
  bool started = false;
  bool done = false;
  std::atomic<int>* num_open;  // the server's count of open streams
};

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  ServerConfig config;
  httplib::Server svr;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> next_request{0};
  std::atomic<int> num_open_streams{0};
  std::string id_prefix;
  int port = 0;

  Impl(Engine& e, ServerConfig c) : engine(e), config(std::move(c)) {
    std::random_device rd;
    id_prefix = fmt::format("{:08x}", rd());
  }

  void install_routes();
  bool authorized(const httplib::Request& req) const;
  bool model_known(const std::string& name) const;
  void handle_generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  json models_json() const;
  int64_t context_tokens() const;
};

bool HttpServer::Impl::authorized(const httplib::Request& req) const {
  if (config.api_key.empty()) return true;
  const std::string header = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (header.size() < prefix.size() || header.compare(0, prefix.size(), prefix) != 0) return false;
  return constant_time_equal(header.substr(prefix.size()), config.api_key);
}

bool HttpServer::Impl::model_known(const std::string& name) const {
  if (name.empty() || name == config.served_model_name) return true;
  for (const std::string& alias : config.model_aliases) {
    if (name == alias) return true;
  }
  return false;
}

int64_t HttpServer::Impl::context_tokens() const {
  const int64_t ctx = engine.runtime().lm->config().max_position_embeddings;
  const int64_t kv = engine.metrics().device_kv_blocks_total * engine.config().kv_block_size;
  return kv > 0 ? std::min(ctx, kv) : ctx;
}

json HttpServer::Impl::models_json() const {
  json model = {{"id", config.served_model_name},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "fastserve"},
                {"root", engine.runtime().model_path},
                {"max_model_len", engine.runtime().lm->config().max_position_embeddings}};
  return {{"object", "list"}, {"data", json::array({model})}};
}

void HttpServer::Impl::handle_generate(const httplib::Request& req, httplib::Response& res,
                                       Endpoint endpoint) {
  CompletionRequest parsed;
  if (auto err = parse_completion_request(req.body, endpoint, &parsed))
    return send_error(res, *err);
  if (!model_known(parsed.model)) {
    return send_error(res,
                      ApiError{404, fmt::format("The model `{}` does not exist.", parsed.model),
                               "invalid_request_error", "model", "model_not_found"});
  }
  const ModelRuntime& runtime = engine.runtime();
  const bool chat = endpoint == Endpoint::kChatCompletions;
  GenerationRequest g;
  if (chat) {
    if (!runtime.tokenizer)
      return send_error(res, ApiError{400, "this model has no tokenizer", "invalid_request_error",
                                      "messages", ""});
    Result<std::vector<int32_t>> ids =
        runtime.encode_chat(parsed.messages, /*add_generation_prompt=*/true);
    if (!ids.is_ok()) {
      ApiError e = error_from_status(ids.status());
      e.param = "messages";
      return send_error(res, e);
    }
    g.prompt_tokens = std::move(ids).value();
  } else if (parsed.prompt_text) {
    if (!runtime.tokenizer)
      return send_error(res, ApiError{400, "this model has no tokenizer; send token ids",
                                      "invalid_request_error", "prompt", ""});
    Result<std::vector<int32_t>> ids = runtime.encode_text(*parsed.prompt_text);
    if (!ids.is_ok()) return send_error(res, error_from_status(ids.status()));
    g.prompt_tokens = std::move(ids).value();
  } else {
    g.prompt_tokens = parsed.prompt_tokens;
  }
  const int64_t num_prompt = static_cast<int64_t>(g.prompt_tokens.size());
  g.max_tokens =
      parsed.max_tokens.value_or(chat ? std::max<int64_t>(1, context_tokens() - num_prompt) : 16);
  g.sampling = parsed.sampling;
  g.stop = parsed.stop;
  g.stop_token_ids = parsed.stop_token_ids;
  g.ignore_eos = parsed.ignore_eos;
  g.skip_special_tokens = parsed.skip_special_tokens;
  const std::string id =
      fmt::format("{}-{}{}", chat ? "chatcmpl" : "cmpl", id_prefix, next_request++);
  g.request_id = id;

  Result<std::unique_ptr<RequestStream>> submitted = engine.submit(std::move(g));
  if (!submitted.is_ok()) {
    ApiError e = error_from_status(submitted.status());
    if (submitted.status().code() == StatusCode::kOutOfRange)
      e.param = chat ? "messages" : "prompt";
    return send_error(res, e);
  }
  const std::string model_name = config.served_model_name;
  ResponseBuilder builder(endpoint, id, model_name, parsed.logprobs, runtime.tokenizer.get());

  if (!parsed.stream) {
    std::unique_ptr<RequestStream> stream = std::move(submitted).value();
    for (;;) {
      std::optional<GenerationEvent> ev = stream->next(kPollInterval);
      if (!ev) {
        if (stopping)
          return send_error(
              res, ApiError{503, "the server is shutting down", "service_unavailable", "", ""});
        continue;
      }
      switch (ev->kind) {
        case GenerationEvent::Kind::kToken:
          builder.token_chunk(*ev);
          break;
        case GenerationEvent::Kind::kFinished:
          return send_json(res, builder.full_response(ev->finish_reason, ev->num_prompt_tokens,
                                                      ev->num_output_tokens));
        case GenerationEvent::Kind::kError:
          return send_error(res, error_from_status(ev->error));
      }
    }
  }

  auto state = std::make_shared<StreamState>(std::move(submitted).value(), std::move(builder),
                                             &num_open_streams);
  state->chat = chat;
  state->include_usage = parsed.include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [state, this](size_t,
                                                                      httplib::DataSink& sink) {
    StreamState& st = *state;
    if (st.done) {
      sink.done();
      return true;
    }
    auto with_usage = [&](json chunk) {
      if (st.include_usage) chunk["usage"] = nullptr;
      return sse_event(chunk);
    };
    std::string out;
    if (!st.started) {
      st.started = true;
      if (st.chat) out += with_usage(st.builder.role_chunk());
    }
    std::optional<GenerationEvent> ev;
    if (!stopping) ev = st.stream->next(kPollInterval);
    if (stopping) {
      // Shutting down: end the stream cleanly; destroying the reader aborts the job.
      out += with_usage(st.builder.finish_chunk("abort"));
      out += kSseDone;
      st.done = true;
    } else if (ev) {
      switch (ev->kind) {
        case GenerationEvent::Kind::kToken: {
          json chunk = st.builder.token_chunk(*ev);
          if (!ev->text.empty() || !chunk["choices"][0]["logprobs"].is_null())
            out += with_usage(std::move(chunk));
          break;
        }
        case GenerationEvent::Kind::kFinished:
          out += with_usage(st.builder.finish_chunk(ev->finish_reason));
          if (st.include_usage)
            out += sse_event(st.builder.usage_chunk(ev->num_prompt_tokens, ev->num_output_tokens));
          out += kSseDone;
          st.done = true;
          break;
        case GenerationEvent::Kind::kError:
          out += sse_event(error_json(error_from_status(ev->error)));
          out += kSseDone;
          st.done = true;
          break;
      }
    }
    if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // client gone
    if (st.done) {
      st.stream.reset();
      sink.done();
    }
    return true;
  });
}

void HttpServer::Impl::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  json body;
  if (auto err = parse_json_object(req.body, &body)) return send_error(res, *err);
  const ModelRuntime& runtime = engine.runtime();
  if (!runtime.tokenizer)
    return send_error(
        res, ApiError{400, "this model has no tokenizer", "invalid_request_error", "", ""});
  auto model = body.find("model");
  if (model != body.end() && model->is_string() && !model_known(model->get<std::string>())) {
    return send_error(
        res, ApiError{404, fmt::format("The model `{}` does not exist.", model->get<std::string>()),
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
    return send_error(res, ApiError{400, "give 'prompt' (a string) or 'messages' (a list)",
                                    "invalid_request_error", "prompt", ""});
  }
  if (!ids.is_ok()) return send_error(res, error_from_status(ids.status()));
  send_json(res, {{"tokens", ids.value()},
                  {"count", ids.value().size()},
                  {"max_model_len", runtime.lm->config().max_position_embeddings}});
}

void HttpServer::Impl::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  json body;
  if (auto err = parse_json_object(req.body, &body)) return send_error(res, *err);
  const ModelRuntime& runtime = engine.runtime();
  if (!runtime.tokenizer)
    return send_error(
        res, ApiError{400, "this model has no tokenizer", "invalid_request_error", "", ""});
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) {
    return send_error(res, ApiError{400, "'tokens' must be a list of token ids",
                                    "invalid_request_error", "tokens", ""});
  }
  std::vector<int32_t> ids;
  for (const json& t : *tokens) {
    if (!t.is_number_integer() ||
        !runtime.tokenizer->is_valid_id(static_cast<int32_t>(t.get<int64_t>())) ||
        t.get<int64_t>() != static_cast<int32_t>(t.get<int64_t>())) {
      return send_error(
          res, ApiError{400, fmt::format("token id {} is outside the vocabulary", t.dump()),
                        "invalid_request_error", "tokens", ""});
    }
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  send_json(res, {{"prompt", runtime.tokenizer->decode(ids)}});
}

void HttpServer::Impl::install_routes() {
  svr.new_task_queue = [n = config.num_http_threads] {
    return new httplib::ThreadPool(static_cast<size_t>(n));
  };
  svr.set_payload_max_length(config.max_body_bytes);
  svr.set_keep_alive_timeout(2);
  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/v1/", 0) == 0 && !authorized(req)) {
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, ApiError{401, "invalid or missing API key (Authorization: Bearer <key>)",
                               "invalid_request_error", "", "invalid_api_key"});
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty() || res.status < 400)
          return httplib::Server::HandlerResponse::Unhandled;
        ApiError e{res.status, default_error_message(res.status), "invalid_request_error", "", ""};
        if (res.status == 404) e.code = "not_found";
        if (res.status >= 500) e.type = "internal_error";
        res.set_content(dump_json(error_json(e)), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log_error("http: handler failed: {}", what);
        send_error(res, ApiError{500, "internal error: " + what, "internal_error", "", ""});
      });

  svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(req, res, Endpoint::kCompletions);
  });
  svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(req, res, Endpoint::kChatCompletions);
  });
  svr.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    handle_tokenize(req, res);
  });
  svr.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    handle_detokenize(req, res);
  });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, models_json());
  });
  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping)
      return send_error(
          res, ApiError{503, "the server is shutting down", "service_unavailable", "", ""});
    send_json(res, {{"status", "ok"}});
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(engine.metrics(), config.served_model_name),
                    "text/plain; version=0.0.4");
  });

  // Known routes with the wrong method: 405 (httplib would answer 404).
  auto not_allowed = [](const httplib::Request&, httplib::Response& res) {
    send_error(res, ApiError{405, "method not allowed on this route", "invalid_request_error", "",
                             "method_not_allowed"});
  };
  for (const char* path : {"/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"}) {
    svr.Get(path, not_allowed);
    svr.Put(path, not_allowed);
    svr.Patch(path, not_allowed);
    svr.Delete(path, not_allowed);
  }
  for (const char* path : {"/v1/models", "/health", "/metrics"}) {
    svr.Post(path, not_allowed);
    svr.Put(path, not_allowed);
    svr.Patch(path, not_allowed);
    svr.Delete(path, not_allowed);
  }
}

HttpServer::HttpServer(Engine& engine, ServerConfig config)
    : impl_(std::make_unique<Impl>(engine, std::move(config))) {
  impl_->install_routes();
}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::bind() {
  if (impl_->config.port == 0) {
    impl_->port = impl_->svr.bind_to_any_port(impl_->config.host);
    if (impl_->port <= 0)
      return make_error(StatusCode::kUnavailable, "cannot bind {}", impl_->config.host);
  } else {
    if (!impl_->svr.bind_to_port(impl_->config.host, impl_->config.port)) {
      return make_error(StatusCode::kUnavailable, "cannot bind {}:{}", impl_->config.host,
                        impl_->config.port);
    }
    impl_->port = impl_->config.port;
  }
  return Status::ok();
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::serve() { impl_->svr.listen_after_bind(); }

void HttpServer::stop() {
  impl_->stopping = true;
  // Let open streams write their last chunk and [DONE] (each ends at its next poll), then close.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (impl_->num_open_streams > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  impl_->svr.stop();
}

}  // namespace fs::server
