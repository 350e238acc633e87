// Fuzzes an HTTP request body through what the server does with it before the engine: JSON parse
// and validation (parse_completion_request, first byte picks the endpoint), the OpenAI error JSON
// for a rejected body, and for an accepted chat body the model's chat template (SmolLM2's) and the
// tokenizer. Checks: an accepted request carries sampling parameters the engine accepts; every
// error is a 4xx with a message; every JSON we produce serialises.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "core/check.h"
#include "server/openai_protocol.h"
#include "server/openai_response.h"
#include "tokenizer/template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

const fs::ChatTemplate& chat_template() {
  static const fs::ChatTemplate t = [] {
    std::ifstream in(std::string(FASTSERVE_FIXTURES_DIR) + "/chat_templates/smollm2.jinja");
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = fs::ChatTemplate::parse(ss.str());
    FS_CHECK(parsed.is_ok(), "{}", parsed.status().to_string());
    return std::move(parsed).value();
  }();
  return t;
}

const fs::Tokenizer& tokenizer() {
  static const std::unique_ptr<fs::Tokenizer> t = [] {
    auto loaded =
        fs::Tokenizer::load(std::string(FASTSERVE_FIXTURES_DIR) + "/tokenizer/smollm2-vocab.gguf");
    FS_CHECK(loaded.is_ok(), "{}", loaded.status().to_string());
    return std::move(loaded).value();
  }();
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto endpoint =
      (data[0] & 1) ? fs::server::Endpoint::kChatCompletions : fs::server::Endpoint::kCompletions;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  fs::server::CompletionRequest request;
  std::optional<fs::server::ApiError> error =
      fs::server::parse_completion_request(body, endpoint, &request);
  if (error) {
    FS_CHECK(error->http_status >= 400 && error->http_status < 500, "status {}",
             error->http_status);
    FS_CHECK(!error->message.empty(), "empty error message");
    (void)fs::server::dump_json(fs::server::error_json(*error));
    return 0;
  }
  const fs::Status valid = request.sampling.validate();
  FS_CHECK(valid.is_ok(), "accepted request has bad sampling: {}", valid.to_string());
  FS_CHECK(!request.max_tokens || *request.max_tokens >= 1, "max_tokens {}", *request.max_tokens);
  if (endpoint == fs::server::Endpoint::kChatCompletions) {
    FS_CHECK(request.messages.is_array() && !request.messages.empty(), "no messages");
    fs::Result<std::string> text =
        chat_template().apply(request.messages, true, "<|endoftext|>", "<|im_end|>");
    if (text.is_ok() && text->size() < 4096) {
      for (int32_t id : tokenizer().encode(*text))
        FS_CHECK(tokenizer().is_valid_id(id), "id {}", id);
    } else if (!text.is_ok()) {
      (void)fs::server::dump_json(
          fs::server::error_json(fs::server::error_from_status(text.status())));
    }
  } else if (request.prompt_text && request.prompt_text->size() < 4096) {
    for (int32_t id : tokenizer().encode(*request.prompt_text)) {
      FS_CHECK(tokenizer().is_valid_id(id), "id {}", id);
    }
  }
  return 0;
}
