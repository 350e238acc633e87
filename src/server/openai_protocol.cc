#include "server/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace fs::server {

using nlohmann::json;

json error_json(const ApiError& error) {
  json e = {{"message", error.message},
            {"type", error.type},
            {"param", error.param.empty() ? json(nullptr) : json(error.param)},
            {"code", error.code.empty() ? json(nullptr) : json(error.code)}};
  return json{{"error", e}};
}

ApiError error_from_status(const Status& status) {
  ApiError e;
  e.message = status.message();
  switch (status.code()) {
    case StatusCode::kOk:
    case StatusCode::kInvalidArgument:
      e.http_status = 400;
      break;
    case StatusCode::kOutOfRange:
      e.http_status = 400;
      e.code = "context_length_exceeded";
      break;
    case StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "not_found_error";
      break;
    case StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      break;
    case StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable";
      break;
    case StatusCode::kDataLoss:
    case StatusCode::kUnimplemented:
    case StatusCode::kInternal:
      e.http_status = 500;
      e.type = "internal_error";
      break;
  }
  return e;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = b.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char ca = a.empty() ? 0 : static_cast<unsigned char>(a[i % a.size()]);
    diff |= static_cast<unsigned char>(ca ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

namespace {

// Request bodies keep their key order (parse_json_object).
using ojson = nlohmann::ordered_json;

// Reads typed fields from the body, remembering the first error.
class FieldReader {
 public:
  explicit FieldReader(const ojson& body) : body_(body) {}
  std::optional<ApiError> error;

  const ojson* find(const char* key) const {
    auto it = body_.find(key);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  void fail(const std::string& param, const std::string& message) {
    if (!error) error = ApiError{400, message, "invalid_request_error", param, ""};
  }
  // A number in [lo, hi] (inclusive).
  template <typename T>
  void number(const char* key, T* out, double lo, double hi) {
    const ojson* v = find(key);
    if (!v) return;
    if (!v->is_number()) return fail(key, std::string("'") + key + "' must be a number");
    const double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi) {
      return fail(key, std::string("'") + key + "' must be in [" + fmt_num(lo) + ", " +
                           fmt_num(hi) + "], got " + v->dump());
    }
    *out = static_cast<T>(d);
  }
  void integer(const char* key, std::optional<int64_t>* out, int64_t lo, int64_t hi) {
    const ojson* v = find(key);
    if (!v) return;
    if (!v->is_number_integer() && !(v->is_number_float() && is_whole(v->get<double>()))) {
      return fail(key, std::string("'") + key + "' must be an integer");
    }
    const double d = v->get<double>();
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      return fail(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], got " + v->dump());
    }
    *out = v->is_number_integer() ? v->get<int64_t>() : static_cast<int64_t>(d);
  }
  void boolean(const ojson& obj, const char* key, bool* out) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return;
    if (!it->is_boolean()) return fail(key, std::string("'") + key + "' must be a boolean");
    *out = it->get<bool>();
  }
  void boolean(const char* key, bool* out) { boolean(body_, key, out); }

 private:
  static bool is_whole(double d) { return std::isfinite(d) && std::floor(d) == d; }
  static std::string fmt_num(double d) {
    if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
    return std::to_string(d);
  }
  const ojson& body_;
};

bool parse_token_list(const ojson& v, std::vector<int32_t>* out) {
  for (const ojson& t : v) {
    if (!t.is_number_integer()) return false;
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) return false;
    out->push_back(static_cast<int32_t>(id));
  }
  return true;
}

void parse_prompt(FieldReader& r, CompletionRequest* out) {
  const ojson* p = r.find("prompt");
  if (!p) return r.fail("prompt", "'prompt' is required");
  if (p->is_string()) {
    out->prompt_text = p->get<std::string>();
    return;
  }
  if (!p->is_array()) return r.fail("prompt", "'prompt' must be a string or a list of token ids");
  if (p->size() == 1 && (*p)[0].is_string()) {
    out->prompt_text = (*p)[0].get<std::string>();
    return;
  }
  if (p->size() == 1 && (*p)[0].is_array()) {
    if (!parse_token_list((*p)[0], &out->prompt_tokens)) {
      return r.fail("prompt", "'prompt' token ids must be non-negative integers");
    }
    return;
  }
  if (!p->empty() && ((*p)[0].is_string() || (*p)[0].is_array())) {
    return r.fail("prompt", "batched prompts are not supported; send one prompt per request");
  }
  if (!parse_token_list(*p, &out->prompt_tokens)) {
    return r.fail("prompt", "'prompt' must be a string or a list of non-negative token ids");
  }
}

void parse_messages(FieldReader& r, CompletionRequest* out) {
  const ojson* m = r.find("messages");
  if (!m) return r.fail("messages", "'messages' is required");
  if (!m->is_array() || m->empty())
    return r.fail("messages", "'messages' must be a non-empty list");
  out->messages = ojson::array();
  for (const ojson& msg : *m) {
    if (!msg.is_object()) return r.fail("messages", "each message must be an object");
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) {
      return r.fail("messages", "each message needs a string 'role'");
    }
    ojson copy = msg;
    auto content = msg.find("content");
    if (content == msg.end() || content->is_null()) {
      copy["content"] = "";
    } else if (content->is_array()) {
      // Content parts: only text parts are supported; joined in order.
      std::string text;
      for (const ojson& part : *content) {
        auto type = part.is_object() ? part.find("type") : part.end();
        auto ptext = part.is_object() ? part.find("text") : part.end();
        if (!part.is_object() || type == part.end() || *type != "text" || ptext == part.end() ||
            !ptext->is_string()) {
          return r.fail("messages", "only text content parts are supported");
        }
        text += ptext->get<std::string>();
      }
      copy["content"] = text;
    } else if (!content->is_string()) {
      return r.fail("messages", "message 'content' must be a string or a list of text parts");
    }
    out->messages.push_back(std::move(copy));
  }
}

void parse_stop(FieldReader& r, CompletionRequest* out) {
  const ojson* s = r.find("stop");
  if (!s) return;
  if (s->is_string()) {
    if (!s->get<std::string>().empty()) out->stop.push_back(s->get<std::string>());
    return;
  }
  if (!s->is_array()) return r.fail("stop", "'stop' must be a string or a list of strings");
  for (const ojson& v : *s) {
    if (!v.is_string()) return r.fail("stop", "'stop' must be a string or a list of strings");
    if (!v.get<std::string>().empty()) out->stop.push_back(v.get<std::string>());
  }
  const ojson* ids = r.find("stop_token_ids");
  if (ids && (!ids->is_array() || !parse_token_list(*ids, &out->stop_token_ids))) {
    r.fail("stop_token_ids", "'stop_token_ids' must be a list of token ids");
  }
}

// The deepest [ / { nesting outside strings; stops counting past `limit`.
int json_nesting_depth(const std::string& text, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) return max_depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

std::optional<ApiError> parse_json_object(const std::string& body, ojson* out) {
  if (json_nesting_depth(body, kMaxJsonDepth) > kMaxJsonDepth) {
    return ApiError{
        400, "the request body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels",
        "invalid_request_error", "", ""};
  }
  *out = ojson::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded())
    return ApiError{400, "the request body is not valid JSON", "invalid_request_error", "", ""};
  if (!out->is_object())
    return ApiError{400, "the request body must be a JSON object", "invalid_request_error", "", ""};
  return std::nullopt;
}

std::optional<ApiError> parse_completion_request(const std::string& body, Endpoint endpoint,
                                                 CompletionRequest* out) {
  ojson j;
  if (auto err = parse_json_object(body, &j)) return err;
  *out = CompletionRequest{};
  out->endpoint = endpoint;
  const bool chat = endpoint == Endpoint::kChatCompletions;
  FieldReader r(j);

  if (const ojson* m = r.find("model")) {
    if (!m->is_string())
      r.fail("model", "'model' must be a string");
    else
      out->model = m->get<std::string>();
  }
  if (chat)
    parse_messages(r, out);
  else
    parse_prompt(r, out);

  std::optional<int64_t> max_tokens, n, seed, top_k, logprobs, top_logprobs, best_of, priority;
  r.integer("max_tokens", &max_tokens, 1, std::numeric_limits<int32_t>::max());
  if (chat) r.integer("max_completion_tokens", &max_tokens, 1, std::numeric_limits<int32_t>::max());
  out->max_tokens = max_tokens;
  r.integer("n", &n, 1, 128);
  if (n) out->n = static_cast<int32_t>(*n);
  r.integer("best_of", &best_of, 1, 128);
  if (best_of && *best_of != 1) r.fail("best_of", "only best_of = 1 is supported");
  r.integer("seed", &seed, std::numeric_limits<int64_t>::min(),
            std::numeric_limits<int64_t>::max());
  if (seed) out->sampling.seed = static_cast<uint64_t>(*seed);
  r.integer("priority", &priority, std::numeric_limits<int32_t>::min(),
            std::numeric_limits<int32_t>::max());
  if (priority) out->priority = static_cast<int32_t>(*priority);

  SamplingParams& s = out->sampling;
  r.number("temperature", &s.temperature, 0.0, 2.0);
  r.number("top_p", &s.top_p, 1e-9, 1.0);
  r.integer("top_k", &top_k, -1, std::numeric_limits<int32_t>::max());
  if (top_k) s.top_k = *top_k < 0 ? 0 : static_cast<int32_t>(*top_k);
  r.number("min_p", &s.min_p, 0.0, 1.0);
  r.number("presence_penalty", &s.presence_penalty, -2.0, 2.0);
  r.number("frequency_penalty", &s.frequency_penalty, -2.0, 2.0);
  r.number("repetition_penalty", &s.repetition_penalty, 1e-6, 100.0);
  parse_stop(r, out);

  r.boolean("stream", &out->stream);
  r.boolean("ignore_eos", &out->ignore_eos);
  r.boolean("skip_special_tokens", &out->skip_special_tokens);
  if (const ojson* so = r.find("stream_options")) {
    if (!so->is_object())
      r.fail("stream_options", "'stream_options' must be an object");
    else
      r.boolean(*so, "include_usage", &out->include_usage);
  }
  if (chat) {
    bool want = false;
    r.boolean("logprobs", &want);
    r.integer("top_logprobs", &top_logprobs, 0, 20);
    if (top_logprobs && !want) r.fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (want) out->logprobs = static_cast<int32_t>(top_logprobs.value_or(0));
  } else {
    r.integer("logprobs", &logprobs, 0, 20);
    if (logprobs) out->logprobs = static_cast<int32_t>(*logprobs);
    bool echo = false;
    r.boolean("echo", &echo);
    if (echo) r.fail("echo", "'echo' is not supported");
  }
  if (out->logprobs > 0) s.num_top_logprobs = out->logprobs;
  if (const ojson* u = r.find("user"); u && !u->is_string())
    r.fail("user", "'user' must be a string");
  if (r.error) return r.error;
  return std::nullopt;
}

}  // namespace fs::server
