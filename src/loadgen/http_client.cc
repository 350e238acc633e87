#include "loadgen/http_client.h"

#include <httplib.h>

#include "loadgen/sse_parser.h"

namespace fs::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxErrorBodyBytes = 2000;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

httplib::Headers make_headers(const EndpointConfig& e) {
  httplib::Headers h{{"Accept", "text/event-stream"}};
  if (!e.api_key.empty()) h.emplace("Authorization", "Bearer " + e.api_key);
  return h;
}

void configure(httplib::Client& client, const EndpointConfig& e) {
  const auto timeout = std::chrono::duration<double>(e.timeout_s);
  client.set_connection_timeout(std::chrono::seconds(30));
  client.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  client.set_write_timeout(std::chrono::seconds(60));
  client.set_tcp_nodelay(true);
}

}  // namespace

Result<BaseUrl> split_base_url(const std::string& base_url) {
  const size_t scheme_end = base_url.find("://");
  if (scheme_end == std::string::npos || (base_url.compare(0, scheme_end, "http") != 0 &&
                                          base_url.compare(0, scheme_end, "https") != 0)) {
    return invalid_argument("bad --base-url '{}' (http://host:port)", base_url);
  }
  BaseUrl out;
  const size_t path_start = base_url.find('/', scheme_end + 3);
  out.scheme_host_port = base_url.substr(0, path_start);
  if (path_start != std::string::npos) out.path_prefix = base_url.substr(path_start);
  while (!out.path_prefix.empty() && out.path_prefix.back() == '/') out.path_prefix.pop_back();
  if (out.scheme_host_port.size() <= scheme_end + 3) {
    return invalid_argument("bad --base-url '{}': no host", base_url);
  }
  return out;
}

nlohmann::json make_request_body(const EndpointConfig& e, const BenchRequest& r) {
  nlohmann::json body;
  body["model"] = e.model;
  if (e.chat) {
    body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", r.prompt}}});
  } else {
    body["prompt"] = r.prompt;
  }
  body["max_tokens"] = r.num_output_tokens;
  body["temperature"] = e.temperature;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  if (e.ignore_eos) body["ignore_eos"] = true;
  if (e.extra_body.is_object()) body.update(e.extra_body);
  return body;
}

RequestResult send_request(const EndpointConfig& e, const BenchRequest& r,
                           Clock::time_point bench_start) {
  RequestResult result;
  result.num_prompt_tokens = r.num_prompt_tokens;
  result.num_target_output_tokens = r.num_output_tokens;
  auto base = split_base_url(e.base_url);
  if (!base) {
    result.error = base.status().message();
    return result;
  }
  httplib::Client client(base->scheme_host_port);
  configure(client, e);

  httplib::Request req;
  req.method = "POST";
  req.path = base->path_prefix + e.path;
  req.headers = make_headers(e);
  req.body = make_request_body(e, r).dump();
  req.set_header("Content-Type", "application/json");

  int status = 0;
  std::string error_body;
  SseParser parser;
  std::vector<std::string> events;
  bool first_text = true, saw_any_event = false;
  Clock::time_point last_text_time;
  std::optional<int64_t> usage_prompt, usage_completion;
  const Clock::time_point start = Clock::now();
  auto handle_events = [&](Clock::time_point now) {
    for (const std::string& data : events) {
      saw_any_event = true;
      StreamChunk chunk = parse_stream_chunk(data);
      if (!chunk.error.empty() && result.error.empty()) result.error = chunk.error;
      if (chunk.num_prompt_tokens) usage_prompt = chunk.num_prompt_tokens;
      if (chunk.num_completion_tokens) usage_completion = chunk.num_completion_tokens;
      if (!chunk.token) continue;
      ++result.num_token_chunks;
      if (first_text) {
        result.ttft_s = seconds_between(start, now);
        first_text = false;
      } else {
        result.itl_s.push_back(seconds_between(last_text_time, now));
      }
      last_text_time = now;
    }
    events.clear();
  };
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    const Clock::time_point now = Clock::now();
    if (status != 200) {
      if (error_body.size() < kMaxErrorBodyBytes) error_body.append(data, n);
      return true;
    }
    parser.feed(std::string_view(data, n), &events);
    handle_events(now);
    return true;
  };
  result.send_s = seconds_between(bench_start, start);
  httplib::Result res = client.send(req);
  const Clock::time_point end = Clock::now();
  result.latency_s = seconds_between(start, end);
  if (!res) {
    result.error = "HTTP request failed: " + httplib::to_string(res.error());
    return result;
  }
  if (status != 200) {
    if (error_body.empty()) error_body = res->body;
    result.error = fmt::format("HTTP {}: {}", status, error_body.substr(0, kMaxErrorBodyBytes));
    return result;
  }
  parser.finish(&events);
  handle_events(end);
  if (!result.error.empty()) return result;
  if (!saw_any_event) {
    result.error = "empty response: no server-sent events";
    return result;
  }
  // A stream that ends without [DONE] is accepted (some servers leave it out).
  result.usage_reported = usage_completion.has_value();
  if (usage_prompt) result.num_prompt_tokens = static_cast<int32_t>(*usage_prompt);
  result.num_output_tokens =
      usage_completion ? static_cast<int32_t>(*usage_completion) : result.num_token_chunks;
  if (first_text) result.ttft_s = result.latency_s;  // no text at all (e.g. EOS at once)
  result.success = true;
  return result;
}

Result<std::string> fetch_first_model(const EndpointConfig& e) {
  FS_ASSIGN_OR_RETURN(BaseUrl base, split_base_url(e.base_url));
  httplib::Client client(base.scheme_host_port);
  configure(client, e);
  const std::string path = base.path_prefix + "/v1/models";
  httplib::Result res = client.Get(path, make_headers(e));
  if (!res) {
    return make_error(StatusCode::kUnavailable, "GET {}{}: {}", e.base_url, path,
                      httplib::to_string(res.error()));
  }
  const auto j = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (res->status != 200 || !j.is_object() || !j.contains("data") || !j["data"].is_array() ||
      j["data"].empty() || !j["data"][0].is_object() || !j["data"][0].contains("id") ||
      !j["data"][0]["id"].is_string()) {
    return make_error(StatusCode::kUnavailable, "GET {}{}: HTTP {}, no model listed: {}",
                      e.base_url, path, res->status, res->body.substr(0, 200));
  }
  return j["data"][0]["id"].get<std::string>();
}

}  // namespace fs::loadgen
