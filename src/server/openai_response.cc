#include "server/openai_response.h"

#include <ctime>

namespace fs::server {

using nlohmann::json;

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

ResponseBuilder::ResponseBuilder(Endpoint endpoint, std::string id, std::string model,
                                 int32_t logprobs, const Tokenizer* tokenizer)
    : endpoint_(endpoint),
      id_(std::move(id)),
      model_(std::move(model)),
      created_(static_cast<int64_t>(std::time(nullptr))),
      logprobs_(logprobs),
      tokenizer_(tokenizer) {}

std::string ResponseBuilder::token_text(int32_t id) const {
  return tokenizer_ ? tokenizer_->decode({id}, /*skip_special_tokens=*/false) : std::string();
}

json ResponseBuilder::envelope(bool chunk) const {
  const bool chat = endpoint_ == Endpoint::kChatCompletions;
  const char* object =
      chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", id_}, {"object", object}, {"created", created_}, {"model", model_}};
}

// Completions: {tokens, token_logprobs, top_logprobs: [{text: lp}], text_offset}.
// Chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
json ResponseBuilder::logprobs_json(const std::vector<const GenerationEvent*>& events,
                                    size_t text_offset) const {
  auto bytes_of = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  if (endpoint_ == Endpoint::kChatCompletions) {
    json content = json::array();
    for (const GenerationEvent* e : events) {
      const std::string text = token_text(e->token);
      json top = json::array();
      for (const TokenLogprob& t : e->top_logprobs) {
        const std::string tt = token_text(t.token);
        top.push_back({{"token", tt}, {"logprob", t.logprob}, {"bytes", bytes_of(tt)}});
      }
      content.push_back({{"token", text},
                         {"logprob", e->logprob},
                         {"bytes", bytes_of(text)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = text_offset;
  for (const GenerationEvent* e : events) {
    const std::string text = token_text(e->token);
    tokens.push_back(text);
    token_logprobs.push_back(e->logprob);
    json alternatives = json::object();
    for (const TokenLogprob& t : e->top_logprobs) alternatives[token_text(t.token)] = t.logprob;
    top.push_back(logprobs_ > 0 ? alternatives : json(nullptr));
    offsets.push_back(offset);
    offset += e->text.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json ResponseBuilder::token_chunk(const GenerationEvent& event) {
  const size_t offset = text_.size();
  text_ += event.text;
  if (logprobs_ >= 0) events_.push_back(event);
  json choice = {{"index", index_},
                 {"logprobs", logprobs_ >= 0 ? logprobs_json({&event}, offset) : json(nullptr)},
                 {"finish_reason", nullptr}};
  if (endpoint_ == Endpoint::kChatCompletions)
    choice["delta"] = {{"content", event.text}};
  else
    choice["text"] = event.text;
  json j = envelope(true);
  j["choices"] = json::array({choice});
  return j;
}

json ResponseBuilder::role_chunk() const {
  json j = envelope(true);
  j["choices"] = json::array({{{"index", index_},
                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}});
  return j;
}

json ResponseBuilder::finish_chunk(const std::string& finish_reason) const {
  json choice = {{"index", index_}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  if (endpoint_ == Endpoint::kChatCompletions)
    choice["delta"] = json::object();
  else
    choice["text"] = "";
  json j = envelope(true);
  j["choices"] = json::array({choice});
  return j;
}

json ResponseBuilder::usage_chunk(int64_t prompt_tokens, int64_t completion_tokens) const {
  json j = envelope(true);
  j["choices"] = json::array();
  j["usage"] = usage_json(prompt_tokens, completion_tokens);
  return j;
}

json ResponseBuilder::full_response(const std::string& finish_reason, int64_t prompt_tokens,
                                    int64_t completion_tokens) const {
  json logprobs = nullptr;
  if (logprobs_ >= 0) {
    std::vector<const GenerationEvent*> events;
    for (const GenerationEvent& e : events_) events.push_back(&e);
    logprobs = logprobs_json(events, 0);
  }
  json choice = {{"index", index_}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
  if (endpoint_ == Endpoint::kChatCompletions) {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  } else {
    choice["text"] = text_;
  }
  json j = envelope(false);
  j["choices"] = json::array({choice});
  j["usage"] = usage_json(prompt_tokens, completion_tokens);
  return j;
}

}  // namespace fs::server
