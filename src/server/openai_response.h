// OpenAI response JSON: full responses, stream chunks and usage, for /v1/completions and
// /v1/chat/completions, built from the engine's GenerationEvents.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "server/openai_protocol.h"
#include "tokenizer/tokenizer.h"

namespace fs::server {

// Serialises without throwing: invalid UTF-8 (a token cut mid-character) becomes U+FFFD.
std::string dump_json(const nlohmann::json& j);

class ResponseBuilder {
 public:
  // tokenizer may be null (token texts are then empty). logprobs: -1 none, else top-n.
  ResponseBuilder(Endpoint endpoint, std::string id, std::string model, int32_t logprobs,
                  const Tokenizer* tokenizer);

  // The choice index this builder writes (OpenAI `n`: one builder per choice).
  void set_index(int32_t index) { index_ = index; }
  int32_t index() const { return index_; }

  // Accumulates one token event (for the full response) and returns its stream chunk.
  nlohmann::json token_chunk(const GenerationEvent& event);
  // The chat stream's first chunk (delta.role = "assistant").
  nlohmann::json role_chunk() const;
  // The chunk that carries finish_reason.
  nlohmann::json finish_chunk(const std::string& finish_reason) const;
  // The stream's last chunk with include_usage: choices [] and usage.
  nlohmann::json usage_chunk(int64_t prompt_tokens, int64_t completion_tokens) const;
  // The non-stream response from the tokens accumulated so far.
  nlohmann::json full_response(const std::string& finish_reason, int64_t prompt_tokens,
                               int64_t completion_tokens) const;

 private:
  nlohmann::json envelope(bool chunk) const;
  nlohmann::json logprobs_json(const std::vector<const GenerationEvent*>& events,
                               size_t text_offset) const;
  std::string token_text(int32_t id) const;

  Endpoint endpoint_;
  std::string id_, model_;
  int64_t created_;
  int32_t logprobs_;
  const Tokenizer* tokenizer_;
  int32_t index_ = 0;
  std::string text_;
  std::vector<GenerationEvent> events_;  // token events with logprobs (only when logprobs >= 0)
};

nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

}  // namespace fs::server
