// Request parsing and validation for the OpenAI endpoints (no model needed).
#include "server/openai_protocol.h"

#include <gtest/gtest.h>

#include "server/openai_response.h"
#include "server/sse.h"

namespace fs::server {
namespace {

std::optional<ApiError> parse(const std::string& body, Endpoint endpoint, CompletionRequest* out) {
  return parse_completion_request(body, endpoint, out);
}

TEST(OpenAiProtocol, ParsesCompletionWithAllSamplingFields) {
  CompletionRequest r;
  auto err = parse(R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0.5,"top_p":0.9,
      "top_k":40,"min_p":0.1,"seed":7,"stop":["a","b"],"stream":true,"logprobs":3,
      "presence_penalty":0.5,"frequency_penalty":-0.5,"repetition_penalty":1.1,"ignore_eos":true,
      "stream_options":{"include_usage":true},"user":"u","unknown_field":{"x":1}})",
                   Endpoint::kCompletions, &r);
  ASSERT_FALSE(err) << err->message;
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(*r.prompt_text, "hi");
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(*r.sampling.seed, 7u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.sampling.num_top_logprobs, 3);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
}

TEST(OpenAiProtocol, AcceptsTokenIdPromptsAndSingleStringLists) {
  CompletionRequest r;
  ASSERT_FALSE(parse(R"({"prompt":[1,2,3]})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(r.prompt_text);
  ASSERT_FALSE(parse(R"({"prompt":[[4,5]]})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{4, 5}));
  ASSERT_FALSE(parse(R"({"prompt":["x"]})", Endpoint::kCompletions, &r));
  EXPECT_EQ(*r.prompt_text, "x");
}

TEST(OpenAiProtocol, DefaultsMatchOpenAi) {
  CompletionRequest r;
  ASSERT_FALSE(parse(R"({"prompt":"x","stop":null,"seed":null})", Endpoint::kCompletions, &r));
  EXPECT_FALSE(r.max_tokens);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_FALSE(r.sampling.seed);
}

TEST(OpenAiProtocol, ChatJoinsTextPartsAndReadsLogprobs) {
  CompletionRequest r;
  auto err = parse(R"({"messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
      "max_completion_tokens":9,"logprobs":true,"top_logprobs":2})",
                   Endpoint::kChatCompletions, &r);
  ASSERT_FALSE(err) << err->message;
  EXPECT_EQ(r.messages[1]["content"], "ab");
  EXPECT_EQ(*r.max_tokens, 9);
  EXPECT_EQ(r.logprobs, 2);
}

TEST(OpenAiProtocol, ReadsPriorityOnBothEndpoints) {
  CompletionRequest r;
  ASSERT_FALSE(parse(R"({"prompt":"x"})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.priority, 0);
  ASSERT_FALSE(parse(R"({"prompt":"x","priority":-1})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.priority, -1);
  ASSERT_FALSE(parse(R"({"prompt":"x","priority":null})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.priority, 0);
  ASSERT_FALSE(parse(R"({"messages":[{"role":"user","content":"x"}],"priority":2147483647})",
                     Endpoint::kChatCompletions, &r));
  EXPECT_EQ(r.priority, 2147483647);
  ASSERT_FALSE(parse(R"({"messages":[{"role":"user","content":"x"}],"priority":-2147483648})",
                     Endpoint::kChatCompletions, &r));
  EXPECT_EQ(r.priority, -2147483648LL);
}

// Chat templates see the messages' keys in the client's order, as jinja2 does (not sorted).
TEST(OpenAiProtocol, MessagesKeepTheClientsKeyOrder) {
  CompletionRequest r;
  ASSERT_FALSE(parse(R"({"messages":[{"role":"user","zeta":1,"content":"x","alpha":{"b":1,"a":2}},
      {"role":"assistant","content":[{"type":"text","text":"y"}],"name":"n"}]})",
                     Endpoint::kChatCompletions, &r));
  std::vector<std::string> keys, inner, keys1;
  for (auto it = r.messages[0].begin(); it != r.messages[0].end(); ++it) keys.push_back(it.key());
  for (auto it = r.messages[0]["alpha"].begin(); it != r.messages[0]["alpha"].end(); ++it)
    inner.push_back(it.key());
  for (auto it = r.messages[1].begin(); it != r.messages[1].end(); ++it) keys1.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"role", "zeta", "content", "alpha"}));
  EXPECT_EQ(inner, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(keys1, (std::vector<std::string>{"role", "content", "name"}));  // joined in place
  EXPECT_EQ(r.messages[0].dump(), R"({"role":"user","zeta":1,"content":"x","alpha":{"b":1,"a":2}})");
}

struct BadCase {
  const char* body;
  Endpoint endpoint;
  const char* param;
};

TEST(OpenAiProtocol, RejectsBadTypesAndRangesNamingTheField) {
  const BadCase cases[] = {
      {R"({"prompt":"x","max_tokens":"5"})", Endpoint::kCompletions, "max_tokens"},
      {R"({"prompt":"x","max_tokens":0})", Endpoint::kCompletions, "max_tokens"},
      {R"({"prompt":"x","max_tokens":1.5})", Endpoint::kCompletions, "max_tokens"},
      {R"({"prompt":"x","temperature":-1})", Endpoint::kCompletions, "temperature"},
      {R"({"prompt":"x","temperature":3})", Endpoint::kCompletions, "temperature"},
      {R"({"prompt":"x","top_p":0})", Endpoint::kCompletions, "top_p"},
      {R"({"prompt":"x","top_p":1.5})", Endpoint::kCompletions, "top_p"},
      {R"({"prompt":"x","min_p":2})", Endpoint::kCompletions, "min_p"},
      {R"({"prompt":"x","presence_penalty":5})", Endpoint::kCompletions, "presence_penalty"},
      {R"({"prompt":"x","logprobs":21})", Endpoint::kCompletions, "logprobs"},
      {R"({"prompt":"x","n":129})", Endpoint::kCompletions, "n"},
      {R"({"prompt":"x","echo":true})", Endpoint::kCompletions, "echo"},
      {R"({"prompt":"x","stop":5})", Endpoint::kCompletions, "stop"},
      {R"({"prompt":"x","stop":["a",1]})", Endpoint::kCompletions, "stop"},
      {R"({"prompt":"x","stream":"yes"})", Endpoint::kCompletions, "stream"},
      {R"({"prompt":"x","model":5})", Endpoint::kCompletions, "model"},
      {R"({"prompt":"x","stream_options":1})", Endpoint::kCompletions, "stream_options"},
      {R"({"prompt":["a","b"]})", Endpoint::kCompletions, "prompt"},
      {R"({"prompt":[1,-2]})", Endpoint::kCompletions, "prompt"},
      {R"({"prompt":{"a":1}})", Endpoint::kCompletions, "prompt"},
      {R"({"max_tokens":3})", Endpoint::kCompletions, "prompt"},
      {R"({"messages":[]})", Endpoint::kChatCompletions, "messages"},
      {R"({"messages":"hi"})", Endpoint::kChatCompletions, "messages"},
      {R"({"messages":[{"content":"x"}]})", Endpoint::kChatCompletions, "messages"},
      {R"({"messages":[{"role":"user","content":5}]})", Endpoint::kChatCompletions, "messages"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})",
       Endpoint::kChatCompletions, "top_logprobs"},
      {R"({"messages":[{"role":"user","content":"x"}],"logprobs":3})", Endpoint::kChatCompletions,
       "logprobs"},
      {R"({"prompt":"x","priority":"1"})", Endpoint::kCompletions, "priority"},
      {R"({"prompt":"x","priority":1.5})", Endpoint::kCompletions, "priority"},
      {R"({"prompt":"x","priority":true})", Endpoint::kCompletions, "priority"},
      {R"({"prompt":"x","priority":2147483648})", Endpoint::kCompletions, "priority"},
      {R"({"messages":[{"role":"user","content":"x"}],"priority":-2147483649})",
       Endpoint::kChatCompletions, "priority"},
  };
  for (const BadCase& c : cases) {
    CompletionRequest r;
    auto err = parse(c.body, c.endpoint, &r);
    ASSERT_TRUE(err) << c.body;
    EXPECT_EQ(err->http_status, 400) << c.body;
    EXPECT_EQ(err->param, c.param) << c.body << ": " << err->message;
    EXPECT_EQ(err->type, "invalid_request_error");
  }
}

TEST(OpenAiProtocol, RejectsMalformedJsonAndNonObjects) {
  CompletionRequest r;
  for (const char* body : {"", "{", "[1,2]", "\"x\"", "{\"prompt\":\"x\",}", "\xff\xfe"}) {
    auto err = parse(body, Endpoint::kCompletions, &r);
    ASSERT_TRUE(err) << body;
    EXPECT_EQ(err->http_status, 400);
  }
}

TEST(OpenAiProtocol, RejectsDeepNestingBeforeParsing) {
  CompletionRequest r;
  const std::string deep =
      "{\"prompt\":\"x\",\"extra\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto err = parse(deep, Endpoint::kCompletions, &r);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->http_status, 400);
  // Brackets inside strings do not count.
  EXPECT_FALSE(
      parse("{\"prompt\":\"" + std::string(1000, '[') + "\\\"\"}", Endpoint::kCompletions, &r));
}

TEST(OpenAiProtocol, ErrorJsonHasOpenAiShape) {
  nlohmann::json j =
      error_json(ApiError{404, "no", "invalid_request_error", "model", "model_not_found"});
  EXPECT_EQ(j["error"]["message"], "no");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  j = error_json(ApiError{400, "bad", "invalid_request_error", "", ""});
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_TRUE(j["error"]["code"].is_null());
}

TEST(OpenAiProtocol, MapsStatusCodesToHttp) {
  EXPECT_EQ(error_from_status(invalid_argument("x")).http_status, 400);
  EXPECT_EQ(error_from_status(Status(StatusCode::kOutOfRange, "x")).http_status, 400);
  EXPECT_EQ(error_from_status(Status(StatusCode::kResourceExhausted, "x")).http_status, 429);
  EXPECT_EQ(error_from_status(Status(StatusCode::kUnavailable, "x")).http_status, 503);
  EXPECT_EQ(error_from_status(Status(StatusCode::kInternal, "x")).http_status, 500);
}

TEST(OpenAiProtocol, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secre", "secret"));
  EXPECT_FALSE(constant_time_equal("", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", ""));
  EXPECT_TRUE(constant_time_equal("", ""));
}

TEST(OpenAiResponse, CompletionResponseAndChunksHaveOpenAiShape) {
  ResponseBuilder b(Endpoint::kCompletions, "cmpl-1", "m", /*logprobs=*/-1, nullptr);
  GenerationEvent e;
  e.token = 5;
  e.text = "he";
  nlohmann::json chunk = b.token_chunk(e);
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["choices"][0]["text"], "he");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  e.text = "llo";
  b.token_chunk(e);
  nlohmann::json full = b.full_response("length", 3, 2);
  EXPECT_EQ(full["id"], "cmpl-1");
  EXPECT_EQ(full["choices"][0]["text"], "hello");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(full["usage"]["total_tokens"], 5);
}

TEST(OpenAiResponse, ChatChunksAndLogprobs) {
  ResponseBuilder b(Endpoint::kChatCompletions, "chatcmpl-1", "m", /*logprobs=*/1, nullptr);
  EXPECT_EQ(b.role_chunk()["choices"][0]["delta"]["role"], "assistant");
  GenerationEvent e;
  e.token = 1;
  e.text = "a";
  e.logprob = -0.5f;
  e.top_logprobs = {{1, -0.5f}};
  nlohmann::json chunk = b.token_chunk(e);
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_EQ(chunk["choices"][0]["delta"]["content"], "a");
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["content"].size(), 1u);
  nlohmann::json full = b.full_response("stop", 1, 1);
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "a");
  EXPECT_EQ(full["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 1u);
  EXPECT_TRUE(b.usage_chunk(1, 1)["choices"].empty());
  EXPECT_EQ(b.finish_chunk("stop")["choices"][0]["delta"], nlohmann::json::object());
}

TEST(OpenAiResponse, InvalidUtf8IsReplacedNotThrown) {
  nlohmann::json j = {{"text", std::string("\xe2\x82")}};
  EXPECT_NO_THROW(dump_json(j));
  EXPECT_EQ(sse_event({{"a", 1}}), "data: {\"a\":1}\n\n");
}

}  // namespace
}  // namespace fs::server
