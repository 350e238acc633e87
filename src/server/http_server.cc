#include "server/http_server.h"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include "core/log.h"
#include "server/api_handler.h"
#include "server/openai_response.h"

namespace fs::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

constexpr size_t kReadChunkBytes = 4096;
constexpr size_t kMaxBufferedBytes = 64u << 10;  // pipelined bytes kept while a response runs
constexpr size_t kMaxDiscardBytes = 64u << 20;   // body bytes drained after a 413 before closing
constexpr auto kLingerTimeout = std::chrono::seconds(5);
constexpr auto kStopGrace = std::chrono::seconds(2);

// A complete HTTP/1.1 response.
std::string serialize(const ApiResponse& r, bool keep_alive) {
  const auto status = http::int_to_status(static_cast<unsigned>(r.status));
  const beast::string_view reason = http::obsolete_reason(status);
  std::string out =
      fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
                  r.status, std::string_view(reason.data(), reason.size()), r.content_type,
                  r.body.size(), keep_alive ? "keep-alive" : "close");
  for (const auto& [name, value] : r.headers) out += fmt::format("{}: {}\r\n", name, value);
  out += "\r\n";
  out += r.body;
  return out;
}

constexpr std::string_view kStreamHeaders =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "Transfer-Encoding: chunked\r\nConnection: ";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

void append_chunk(std::string* out, std::string_view data) {
  if (data.empty()) return;  // an empty chunk would end the body
  *out += fmt::format("{:x}\r\n", data.size());
  *out += data;
  *out += "\r\n";
}

class Session;

// What every connection shares: the handler, the config, the registry used by stop(), counters.
struct ServerCore {
  ServerCore(Engine& engine, ServerConfig c) : config(std::move(c)), api(engine, config) {}

  ServerConfig config;
  ApiHandler api;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> num_connections{0};
  std::atomic<int64_t> num_generations{0};  // requests submitted to the engine, response not done
  std::atomic<int64_t> num_streams{0};      // of those, streaming
  std::atomic<int64_t> num_rejected_connections{0};
  std::mutex sessions_mu;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  // Last: destroyed first, with the handlers (and sessions) it still holds.
  net::io_context ioc;
};

// One connection: read a request (keep-alive idle wait, then headers within header_timeout_s,
// then the body within body_timeout_s), answer it (at once, or from engine events), repeat. While
// a generation runs, a read stays posted on the socket so a client that goes away is noticed
// (the RequestStream is then destroyed and the engine frees the job's KV). All members are used
// on the connection's strand only.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerCore& core)
      : stream_(std::move(socket)), core_(core), request_timer_(stream_.get_executor()) {
    ++core_.num_connections;
  }
  ~Session() {
    release_generation();
    --core_.num_connections;
    std::lock_guard<std::mutex> lock(core_.sessions_mu);
    core_.sessions.erase(this);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() {
    {
      std::lock_guard<std::mutex> lock(core_.sessions_mu);
      core_.sessions.emplace(this, weak_from_this());
    }
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }

  net::any_io_executor executor() { return stream_.get_executor(); }

  // The server is stopping (posted by HttpServer::stop).
  void on_server_stop() {
    if (closed_) return;
    keep_alive_ = false;
    if (gen_ && !gen_->done()) return end_early(Generation::EndReason::kShutdown);
    if (!write_in_flight_ && !response_queued_) close();  // idle or reading a request
  }

  // After the event loop has stopped: drops the engine stream (and its notifier).
  void release_generation() {
    if (!gen_) return;
    if (gen_->streaming()) --core_.num_streams;
    --core_.num_generations;
    gen_.reset();
  }

 private:
  const ServerConfig& config() const { return core_.config; }

  void read_request() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(config().max_header_bytes));
    parser_->body_limit(config().max_body_bytes);
    if (buffer_.size() > 0 || first_request_) return read_header();
    // Keep-alive: wait for the next request's first bytes.
    stream_.expires_after(to_ms(config().keep_alive_timeout_s));
    stream_.async_read_some(buffer_.prepare(kReadChunkBytes),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (ec) return self->close();
                              self->buffer_.commit(n);
                              self->read_header();
                            });
  }

  void read_header() {
    // The whole header must arrive within the timeout, however slowly it is dribbled (slowloris).
    stream_.expires_after(to_ms(config().header_timeout_s));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  // A read error while parsing: answer with a status when one fits, else close.
  void on_read_error(error_code ec) {
    if (ec == http::error::body_limit) {
      return respond(error_response(ApiError{413, "the request body is too large",
                                             "invalid_request_error", "", ""}),
                     /*close_after=*/true, /*linger=*/true);
    }
    if (ec == http::error::header_limit) {
      return respond(error_response(ApiError{431, "the request headers are too large",
                                             "invalid_request_error", "", ""}),
                     true, true);
    }
    if (ec == beast::error::timeout) {
      log_debug("http: closing a connection that sent no complete request in time");
      return close();
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        ec == net::error::bad_descriptor) {
      return close();
    }
    respond(error_response(ApiError{400, fmt::format("malformed HTTP request: {}", ec.message()),
                                    "invalid_request_error", "", ""}),
            true, true);
  }

  void on_header(error_code ec) {
    if (ec) return on_read_error(ec);
    const auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue") && !parser_->is_done()) {
      write_in_flight_ = true;
      stream_.expires_after(to_ms(config().write_timeout_s));
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                              [self = shared_from_this()](error_code ec, size_t) {
                                self->write_in_flight_ = false;
                                if (ec) return self->close();
                                self->read_body();
                              });
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return on_request();
    stream_.expires_after(to_ms(config().body_timeout_s));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) {
                       if (ec) return self->on_read_error(ec);
                       self->on_request();
                     });
  }

  void on_request() {
    stream_.expires_never();
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive() && !core_.stopping;
    const beast::string_view method = req.method_string(), target = req.target(),
                             auth = req[http::field::authorization];
    ApiRequest request{std::string_view(method.data(), method.size()),
                       std::string_view(target.data(), target.size()),
                       std::string_view(auth.data(), auth.size()), std::move(req.body())};
    ApiHandler::Outcome outcome = core_.api.handle(request);
    if (auto* response = std::get_if<ApiResponse>(&outcome)) {
      return respond(std::move(*response), /*close_after=*/false, /*linger=*/false);
    }
    start_generation(std::move(std::get<std::unique_ptr<Generation>>(outcome)));
  }

  void start_generation(std::unique_ptr<Generation> gen) {
    gen_ = std::move(gen);
    ++core_.num_generations;
    if (gen_->streaming()) {
      ++core_.num_streams;
      pending_ += kStreamHeaders;
      pending_ += keep_alive_ ? "keep-alive\r\n\r\n" : "close\r\n\r\n";
      append_chunk(&pending_, gen_->begin_stream());
    }
    if (config().request_timeout_s > 0) {
      request_timer_.expires_after(to_ms(config().request_timeout_s));
      request_timer_.async_wait([self = shared_from_this()](error_code ec) {
        if (!ec && self->gen_ && !self->gen_->done())
          self->end_early(Generation::EndReason::kTimeout);
      });
    }
    // Edge-triggered: called on the engine thread when an event enters an empty queue.
    gen_->stream().set_notifier([weak = weak_from_this(), ex = stream_.get_executor()] {
      net::post(ex, [weak] {
        if (auto self = weak.lock()) self->on_engine_events();
      });
    });
    watch_disconnect();
    flush();
  }

  void on_engine_events() {
    if (!gen_ || gen_->done() || closed_) return;
    std::string sse;
    ApiResponse response;
    while (std::optional<GenerationEvent> e = gen_->stream().next(std::chrono::milliseconds(0))) {
      gen_->on_event(*e, &sse, &response);
      if (gen_->done()) break;
    }
    finish_events(std::move(sse), std::move(response));
  }

  void end_early(Generation::EndReason reason) {
    std::string sse;
    ApiResponse response;
    gen_->end_early(reason, config().request_timeout_s, &sse, &response);
    finish_events(std::move(sse), std::move(response));
  }

  // Queues what a batch of events produced: stream bytes (one chunk), or the whole response.
  void finish_events(std::string sse, ApiResponse response) {
    if (!gen_->streaming()) {
      if (gen_->done()) respond(std::move(response), /*close_after=*/false, /*linger=*/false);
      return;
    }
    append_chunk(&pending_, sse);
    if (gen_->done()) {
      pending_ += kLastChunk;
      response_queued_ = true;
    }
    flush();
  }

  // While a generation runs: a read that completes only when the client closes (or sends more).
  void watch_disconnect() {
    if (watching_ || closed_ || buffer_.size() >= kMaxBufferedBytes) return;
    watching_ = true;
    stream_.socket().async_read_some(
        buffer_.prepare(kReadChunkBytes), [self = shared_from_this()](error_code ec, size_t n) {
          self->watching_ = false;
          if (!ec) self->buffer_.commit(n);
          if (self->resume_after_watch_) {  // the response ended; the read was cancelled
            self->resume_after_watch_ = false;
            if (ec && ec != net::error::operation_aborted) return self->close();
            return self->read_request();
          }
          if (self->closed_) return;
          if (ec && ec != net::error::operation_aborted) return self->client_gone();
          if (!ec && self->gen_) self->watch_disconnect();  // pipelined bytes: keep them
        });
  }

  void client_gone() {
    if (gen_ && !gen_->done()) {
      log_info("request {}: the client went away; aborting", gen_->stream().request_id());
    }
    close();  // destroying the RequestStream aborts the engine job
  }

  void respond(ApiResponse response, bool close_after, bool linger) {
    if (close_after) keep_alive_ = false;
    linger_ = linger;
    pending_ += serialize(response, keep_alive_);
    response_queued_ = true;
    flush();
  }

  void flush() {
    if (write_in_flight_ || pending_.empty() || closed_) return;
    writing_.swap(pending_);
    pending_.clear();
    write_ends_response_ = response_queued_;
    response_queued_ = false;
    write_in_flight_ = true;
    stream_.expires_after(to_ms(config().write_timeout_s));
    net::async_write(stream_, net::buffer(writing_),
                     [self = shared_from_this()](error_code ec, size_t) { self->on_written(ec); });
  }

  void on_written(error_code ec) {
    write_in_flight_ = false;
    writing_.clear();
    if (ec) return client_gone();  // broken pipe, reset, or a reader too slow (write timeout)
    if (write_ends_response_) return finish_response();
    flush();
  }

  void finish_response() {
    release_generation();
    request_timer_.cancel();
    first_request_ = false;
    if (!keep_alive_ || core_.stopping) return linger_ ? linger_close() : close();
    if (watching_) {
      resume_after_watch_ = true;
      stream_.socket().cancel();
      return;
    }
    read_request();
  }

  // Closes after draining what the client still sends (a rejected body), so that it reads our
  // response instead of a connection reset.
  void linger_close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTimeout);
    discard();
  }

  void discard() {
    if (discarded_bytes_ > kMaxDiscardBytes) return close();
    discard_buffer_.resize(64 << 10);
    stream_.async_read_some(net::buffer(discard_buffer_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (ec) return self->close();
                              self->discarded_bytes_ += n;
                              self->discard();
                            });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    release_generation();
    request_timer_.cancel();
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  ServerCore& core_;
  net::steady_timer request_timer_;  // --request-timeout-s
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::unique_ptr<Generation> gen_;
  std::string pending_;  // bytes to write next
  std::string writing_;  // bytes being written
  std::vector<char> discard_buffer_;
  size_t discarded_bytes_ = 0;
  bool first_request_ = true;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool linger_ = false;
  bool write_in_flight_ = false;
  bool response_queued_ = false;      // pending_ ends the current response
  bool write_ends_response_ = false;  // writing_ ends it
  bool watching_ = false;             // the disconnect watch is posted
  bool resume_after_watch_ = false;   // read the next request once the watch returns
};

// The answer to a connection beyond --max-connections, written without reading the request.
std::string overload_response() {
  ApiResponse r = error_response(
      ApiError{503, "too many open connections; try again later", "service_unavailable", "", ""});
  return serialize(r, false);
}

// Lets the process hold the connections it is configured for.
void raise_open_file_limit(int64_t wanted) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t want = static_cast<rlim_t>(wanted);
  if (lim.rlim_cur >= want) return;
  lim.rlim_cur = std::min(want, lim.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < want) {
    log_warn("http: open-file limit is {}, below --max-connections {} (+ spare)", lim.rlim_cur,
             wanted);
  }
}

}  // namespace

struct HttpServer::Impl : ServerCore {
  Impl(Engine& engine, ServerConfig config)
      : ServerCore(engine, std::move(config)), acceptor(net::make_strand(ioc)) {}

  tcp::acceptor acceptor;
  std::string overload_bytes = overload_response();
  std::vector<std::thread> threads;
  int port = 0;

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
      if (!acceptor.is_open()) return;
      if (ec) {
        log_warn("http: accept failed: {}", ec.message());
        // Out of descriptors: back off instead of spinning.
        auto timer = std::make_shared<net::steady_timer>(acceptor.get_executor());
        timer->expires_after(std::chrono::milliseconds(50));
        timer->async_wait([this, timer](error_code) { accept(); });
        return;
      }
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);  // a token's chunk leaves at once
      if (num_connections >= config.max_connections) {
        reject(std::move(socket));
      } else {
        std::make_shared<Session>(std::move(socket), *this)->start();
      }
      accept();
    });
  }

  void reject(tcp::socket socket) {
    ++num_rejected_connections;
    auto s = std::make_shared<tcp::socket>(std::move(socket));
    net::async_write(*s, net::buffer(overload_bytes), [s](error_code, size_t) {
      error_code ignored;
      s->shutdown(tcp::socket::shutdown_send, ignored);
      s->close(ignored);
    });
  }

  std::string transport_metrics() const {
    const std::string label = fmt::format("{{model_name=\"{}\"}}", config.served_model_name);
    std::string out;
    auto gauge = [&](const char* name, const char* help, int64_t value) {
      out += fmt::format("# HELP fastserve:{} {}\n# TYPE fastserve:{} gauge\nfastserve:{}{} {}\n",
                         name, help, name, name, label, value);
    };
    gauge("http_connections_open", "Open HTTP connections.", num_connections.load());
    gauge("http_streams_open", "Streaming responses in progress.", num_streams.load());
    out += fmt::format(
        "# HELP fastserve:http_connections_rejected_total Connections answered 503 "
        "(--max-connections).\n# TYPE fastserve:http_connections_rejected_total counter\n"
        "fastserve:http_connections_rejected_total{} {}\n",
        label, num_rejected_connections.load());
    return out;
  }

  std::vector<std::shared_ptr<Session>> live_sessions() {
    std::vector<std::shared_ptr<Session>> out;
    std::lock_guard<std::mutex> lock(sessions_mu);
    for (auto& [ptr, weak] : sessions) {
      if (auto s = weak.lock()) out.push_back(std::move(s));
    }
    return out;
  }
};

HttpServer::HttpServer(Engine& engine, ServerConfig config)
    : impl_(std::make_unique<Impl>(engine, std::move(config))) {
  impl_->api.set_extra_metrics([impl = impl_.get()] { return impl->transport_metrics(); });
}

HttpServer::~HttpServer() {
  stop();
  for (std::thread& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  // Nothing runs the loop any more: drop the engine streams before their handlers go.
  for (const auto& s : impl_->live_sessions()) s->release_generation();
}

Status HttpServer::bind() {
  Impl& im = *impl_;
  raise_open_file_limit(im.config.max_connections + 256);
  error_code ec;
  net::ip::address address = net::ip::make_address(im.config.host, ec);
  if (ec) {
    tcp::resolver resolver(im.ioc);
    auto results = resolver.resolve(im.config.host, "", ec);
    if (ec || results.empty()) {
      return make_error(StatusCode::kUnavailable, "cannot resolve --host {}: {}", im.config.host,
                        ec.message());
    }
    address = results.begin()->endpoint().address();
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(im.config.port));
  im.acceptor.open(endpoint.protocol(), ec);
  if (!ec) im.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(endpoint, ec);
  if (!ec) im.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(StatusCode::kUnavailable, "cannot bind {}:{}: {}", im.config.host,
                      im.config.port, ec.message());
  }
  im.port = im.acceptor.local_endpoint().port();
  return Status::ok();
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::serve() {
  Impl& im = *impl_;
  if (im.stopping) return;
  im.accept();
  for (int i = 1; i < im.config.num_http_threads; ++i) {
    im.threads.emplace_back([&im] { im.ioc.run(); });
  }
  im.ioc.run();
  for (std::thread& t : im.threads) t.join();
  im.threads.clear();
  for (const auto& s : im.live_sessions()) s->release_generation();
}

void HttpServer::stop() {
  Impl& im = *impl_;
  if (im.stopping.exchange(true)) return;
  im.api.set_stopping();
  net::post(im.acceptor.get_executor(), [&im] {
    error_code ignored;
    im.acceptor.close(ignored);
  });
  for (const auto& s : im.live_sessions()) {
    net::post(s->executor(), [s] { s->on_server_stop(); });
  }
  // Let open streams write their last chunk and [DONE], then stop the loop.
  const auto deadline = std::chrono::steady_clock::now() + kStopGrace;
  while (im.num_generations > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  im.ioc.stop();
}

}  // namespace fs::server
