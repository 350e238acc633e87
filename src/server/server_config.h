// Settings of the HTTP server (`fastserve serve` flags, docs/SERVER.md): address, auth, I/O threads
// and the limits that protect the process from large, slow or too many clients (issue 11).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace fs::server {

struct ServerConfig {
  std::string host = "127.0.0.1";          // 0.0.0.0 (every interface) only when asked
  int port = 8000;                         // 0: any free port
  std::string api_key;                     // empty: no auth; else Bearer on /v1/* (never logged)
  std::string served_model_name;           // the id /v1/models reports
  std::vector<std::string> model_aliases;  // other names accepted in "model"
  int num_http_threads = 1;                // I/O threads running the event loop

  // Limits.
  size_t max_body_bytes = 8u << 20;     // larger bodies: 413
  size_t max_header_bytes = 16u << 10;  // request line + headers; larger: 431
  int64_t max_prompt_tokens = 0;        // 0: the context; longer prompts: 400
  int64_t max_output_tokens = 0;        // 0: the context; larger max_tokens: 400
  int64_t max_connections = 8192;       // open connections; beyond: 503 + Retry-After, closed
  double header_timeout_s = 10;         // a request's headers must arrive within this
  double body_timeout_s = 60;           // ... and its body within this after the headers
  double keep_alive_timeout_s = 5;      // idle connections between requests are closed after this
  double write_timeout_s = 60;          // a write the client does not read within this: closed
  double request_timeout_s = 600;       // a generation running longer is ended (0: no limit)

  Status validate() const;
};

}  // namespace fs::server
