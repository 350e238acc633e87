// send_request against a local cpp-httplib server that streams crafted SSE (a stand-in for a
// third-party OpenAI-compatible server, not for ours: the e2e test runs against `fastserve serve`).
#include "loadgen/http_client.h"

#include <httplib.h>

#include <thread>

#include <gtest/gtest.h>

namespace fs::loadgen {
namespace {

class FakeOpenAiServer {
 public:
  explicit FakeOpenAiServer(std::vector<std::string> events, int status = 200)
      : events_(std::move(events)) {
    server_.Post("/v1/completions",
                 [this, status](const httplib::Request& req, httplib::Response& res) {
                   last_body_ = nlohmann::json::parse(req.body);
                   last_auth_ = req.get_header_value("Authorization");
                   if (status != 200) {
                     res.status = status;
                     res.set_content(R"({"error":{"message":"bad request"}})", "application/json");
                     return;
                   }
                   res.set_chunked_content_provider(
                       "text/event-stream", [this](size_t, httplib::DataSink& sink) {
                         for (const std::string& e : events_) {
                           std::this_thread::sleep_for(std::chrono::milliseconds(20));
                           const std::string framed = "data: " + e + "\n\n";
                           sink.write(framed.data(), framed.size());
                         }
                         sink.done();
                         return true;
                       });
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeOpenAiServer() {
    server_.stop();
    thread_.join();
  }
  EndpointConfig endpoint() const {
    EndpointConfig e;
    e.base_url = "http://127.0.0.1:" + std::to_string(port_);
    e.model = "m";
    return e;
  }
  nlohmann::json last_body_;
  std::string last_auth_;

 private:
  std::vector<std::string> events_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

BenchRequest request() { return BenchRequest{"Hello there", 3, 5}; }

TEST(HttpClient, TimesChunksAndTakesTokenCountsFromUsage) {
  FakeOpenAiServer server(
      {R"({"choices":[{"index":0,"text":"","finish_reason":null}],"usage":null})",
       R"({"choices":[{"index":0,"text":"a","finish_reason":null}],"usage":null})",
       R"({"choices":[{"index":0,"text":"b","finish_reason":null}],"usage":null})",
       R"({"choices":[{"index":0,"text":"c","finish_reason":"length"}],"usage":null})",
       R"({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":5,"total_tokens":9}})",
       "[DONE]"});
  EndpointConfig e = server.endpoint();
  e.api_key = "sk-test";
  e.ignore_eos = true;
  const RequestResult r = send_request(e, request(), std::chrono::steady_clock::now());
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_TRUE(r.usage_reported);
  EXPECT_EQ(r.num_token_chunks, 4);  // the first token's text is empty: still a token
  EXPECT_EQ(r.num_output_tokens, 5);  // usage wins over the chunk count
  EXPECT_EQ(r.num_prompt_tokens, 4);
  ASSERT_EQ(r.itl_s.size(), 3u);
  EXPECT_GE(r.ttft_s, 0.015);  // the first event, 20 ms in
  for (double gap : r.itl_s) EXPECT_GT(gap, 0.01);
  EXPECT_GT(r.latency_s, r.ttft_s);
  // The body the server got.
  EXPECT_EQ(server.last_body_["max_tokens"], 5);
  EXPECT_EQ(server.last_body_["prompt"], "Hello there");
  EXPECT_EQ(server.last_body_["stream"], true);
  EXPECT_EQ(server.last_body_["stream_options"]["include_usage"], true);
  EXPECT_EQ(server.last_body_["ignore_eos"], true);
  EXPECT_EQ(server.last_auth_, "Bearer sk-test");
}

TEST(HttpClient, CountsChunksWithoutUsageAndWithoutDone) {
  FakeOpenAiServer server({R"({"choices":[{"text":"x"}]})", R"({"choices":[{"text":"y"}]})"});
  const RequestResult r =
      send_request(server.endpoint(), request(), std::chrono::steady_clock::now());
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_FALSE(r.usage_reported);
  EXPECT_EQ(r.num_output_tokens, 2);
  EXPECT_EQ(r.num_prompt_tokens, 3);  // the client's count
}

TEST(HttpClient, ReportsHttpErrorsErrorEventsAndUnreachableServers) {
  {
    FakeOpenAiServer server({}, 400);
    const RequestResult r =
        send_request(server.endpoint(), request(), std::chrono::steady_clock::now());
    EXPECT_FALSE(r.success);
    EXPECT_NE(r.error.find("HTTP 400"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("bad request"), std::string::npos) << r.error;
  }
  {
    FakeOpenAiServer server(
        {R"({"choices":[{"text":"x"}]})", R"({"error":{"message":"oom"}})", "[DONE]"});
    const RequestResult r =
        send_request(server.endpoint(), request(), std::chrono::steady_clock::now());
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.error, "oom");
  }
  EndpointConfig e;
  e.base_url = "http://127.0.0.1:1";
  const RequestResult r = send_request(e, request(), std::chrono::steady_clock::now());
  EXPECT_FALSE(r.success);
  EXPECT_FALSE(r.error.empty());
}

TEST(HttpClient, BaseUrlWithPathPrefix) {
  auto b = split_base_url("http://h:8000/api/");
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->scheme_host_port, "http://h:8000");
  EXPECT_EQ(b->path_prefix, "/api");
  EXPECT_FALSE(split_base_url("h:8000").is_ok());
  EXPECT_FALSE(split_base_url("ftp://h").is_ok());
}

}  // namespace
}  // namespace fs::loadgen
