// The event-driven transport against a real engine (the tiny fixture model, token-id prompts) and
// raw sockets: SSE framing and keep-alive, the header timeout, and stop() ending an open stream.
#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace fs::server {
namespace {

const std::string kTinyLlama =
    std::string(FASTSERVE_SOURCE_DIR) + "/tests/fixtures/models/tiny-llama";

class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { close(fd_); }
  bool connected() const { return connected_; }
  void send_all(const std::string& data) {
    ASSERT_EQ(send(fd_, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
  }
  // Reads until `until` appears in what was read since the last call, the peer closes or the
  // timeout passes. Returns what was read; `closed` tells whether the peer closed.
  std::string read_until(const std::string& until, std::chrono::milliseconds timeout,
                         bool* closed = nullptr) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (closed) *closed = false;
    while (until.empty() || out.find(until) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        if (closed) *closed = true;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::string post(const std::string& path, const std::string& body) {
  return "POST " + path +
         " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<ModelRuntime> rt = load_model_runtime(kTinyLlama);
    ASSERT_TRUE(rt.is_ok()) << rt.status().to_string();
    Result<std::unique_ptr<Engine>> engine = Engine::create(std::move(*rt), EngineConfig{});
    ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
    engine_ = std::move(*engine);
    engine_->start();
    ServerConfig config;
    config.port = 0;
    config.served_model_name = "tiny";
    config.header_timeout_s = 0.5;
    config.keep_alive_timeout_s = 0.5;
    server_ = std::make_unique<HttpServer>(*engine_, config);
    ASSERT_TRUE(server_->bind().is_ok());
    serving_ = std::thread([this] { server_->serve(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (serving_.joinable()) serving_.join();
    server_.reset();
    if (engine_) engine_->stop();
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<HttpServer> server_;
  std::thread serving_;
};

TEST_F(HttpServerTest, StreamsOneChunkPerTokenAndKeepsTheConnection) {
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  c.send_all(post("/v1/completions",
                  R"({"prompt": [1, 5, 9], "max_tokens": 5, "stream": true, "logprobs": 0,
                      "temperature": 0, "ignore_eos": true})"));
  const std::string stream = c.read_until("\r\n0\r\n\r\n", std::chrono::seconds(30));
  EXPECT_EQ(stream.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << stream;
  EXPECT_NE(stream.find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_NE(stream.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_EQ(count(stream, "data: {"), 6u) << stream;  // 5 tokens, then the finish chunk
  EXPECT_NE(stream.find(R"("finish_reason":"length")"), std::string::npos);
  EXPECT_NE(stream.find("data: [DONE]\n\n\r\n0\r\n\r\n"), std::string::npos) << stream;
  // The same connection serves the next request.
  c.send_all("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string health = c.read_until(R"({"status":"ok"})", std::chrono::seconds(10));
  EXPECT_EQ(health.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << health;
}

TEST_F(HttpServerTest, ClosesAConnectionWhoseHeadersDoNotArriveInTime) {
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  c.send_all("GET /health HTTP/1.1\r\nHost: x\r\n");  // never finished
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  c.read_until("", std::chrono::seconds(5), &closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));  // timeout 0.5 s
}

TEST_F(HttpServerTest, StopEndsAnOpenStreamWithAbortAndDone) {
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  c.send_all(post("/v1/completions",
                  R"({"prompt": [1, 5, 9], "max_tokens": 240, "stream": true, "logprobs": 0,
                      "temperature": 0, "ignore_eos": true})"));
  const std::string head = c.read_until("data: {", std::chrono::seconds(30));
  ASSERT_NE(head.find("200 OK"), std::string::npos) << head;
  std::thread stopper([this] { server_->stop(); });
  // The tiny model may have streamed all 240 tokens already (then it ends with "length").
  const std::string all = head + c.read_until("\r\n0\r\n\r\n", std::chrono::seconds(10));
  stopper.join();
  const bool aborted = all.find(R"("finish_reason":"abort")") != std::string::npos;
  const bool finished = all.find(R"("finish_reason":"length")") != std::string::npos;
  EXPECT_TRUE(aborted || finished) << all;
  EXPECT_NE(all.find("data: [DONE]\n\n\r\n0\r\n\r\n"), std::string::npos) << all;
  serving_.join();  // serve() returned
}

}  // namespace
}  // namespace fs::server
