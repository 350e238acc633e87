// The OpenAI-compatible HTTP server: an event-driven HTTP/1.1 transport (Boost.Asio + Beast's
// request parser) around ApiHandler. A few I/O threads (--http-threads, default 1) run one
// io_context; every connection is a small state machine with async reads and writes, so open
// streams cost memory, not threads (issue 6: >= 1000 concurrent streams on 2 cores). Engine events
// reach a connection through RequestStream::set_notifier, which posts to the connection's strand.
// Limits and timeouts: ServerConfig (docs/SERVER.md).
#pragma once

#include <memory>

#include "core/status.h"
#include "engine/engine.h"
#include "server/server_config.h"

namespace fs::server {

class HttpServer {
 public:
  // The engine must outlive the server and be started.
  HttpServer(Engine& engine, ServerConfig config);
  ~HttpServer();

  // Binds host:port and listens. Errors: kUnavailable naming the address.
  Status bind();
  int port() const;  // the bound port (after bind())
  // Runs the event loop on this thread (and num_http_threads - 1 more) until stop(). Blocks.
  void serve();
  // Stops accepting; open streams get a last chunk (finish_reason "abort") and [DONE], waiting
  // non-streaming requests a 503; waits up to 2 s for those to be written, then serve() returns.
  // Thread-safe, idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fs::server
