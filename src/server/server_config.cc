#include "server/server_config.h"

namespace fs::server {

Status ServerConfig::validate() const {
  if (port < 0 || port > 65535)
    return invalid_argument("--port must be in [0, 65535], got {}", port);
  if (host.empty()) return invalid_argument("--host is empty");
  if (num_http_threads < 1 || num_http_threads > 64)
    return invalid_argument("--http-threads must be in [1, 64], got {}", num_http_threads);
  if (max_body_bytes == 0) return invalid_argument("--max-body-bytes must be positive");
  if (max_header_bytes < 1024) return invalid_argument("--max-header-bytes must be at least 1024");
  if (max_prompt_tokens < 0) return invalid_argument("--max-prompt-tokens must be >= 0");
  if (max_output_tokens < 0) return invalid_argument("--max-output-tokens must be >= 0");
  if (max_connections < 1) return invalid_argument("--max-connections must be positive");
  for (double t : {header_timeout_s, body_timeout_s, keep_alive_timeout_s, write_timeout_s}) {
    if (!(t > 0)) return invalid_argument("timeouts must be positive, got {}", t);
  }
  if (!(request_timeout_s >= 0)) return invalid_argument("--request-timeout-s must be >= 0");
  return Status::ok();
}

}  // namespace fs::server
