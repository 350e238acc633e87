// The OpenAI-compatible HTTP server: routes, auth, body limits and streaming over one Engine.
// Handlers parse and validate into a GenerationRequest, submit it and read the RequestStream; HTTP
// threads never touch the model (STYLE.md habit 13). Built on cpp-httplib (a thread pool of
// connection workers; one worker per open stream).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"

namespace fs::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;                         // 0: any free port
  std::string api_key;                     // empty: no auth; else Bearer on /v1/*
  std::string served_model_name;           // the id /v1/models reports
  std::vector<std::string> model_aliases;  // other names accepted in "model"
  size_t max_body_bytes = 8u << 20;        // larger bodies get 413
  int num_http_threads = 64;               // connection workers (open streams at once)

  Status validate() const;
};

class HttpServer {
 public:
  // The engine must outlive the server and be started.
  HttpServer(Engine& engine, ServerConfig config);
  ~HttpServer();

  // Binds host:port. Errors: kUnavailable naming the address.
  Status bind();
  int port() const;  // the bound port (after bind())
  // Serves until stop(). Blocks.
  void serve();
  // Stops accepting and ends open streams; serve() returns. Thread-safe, idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fs::server
