// Chat templates: renders a model's Jinja chat template (GGUF `tokenizer.chat_template` or
// tokenizer_config.json) the way transformers' apply_chat_template does with Python jinja2
// (trim_blocks, lstrip_blocks, raise_exception, strftime_now, tojson with ensure_ascii=False).
// The supported subset and the known differences are listed in docs/CHAT_TEMPLATES.md.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "tokenizer/template/builtins.h"

namespace fs {

namespace jinja {
struct Stmt;
}  // namespace jinja

class ChatTemplate {
 public:
  // Parses `source`. Fails with kInvalidArgument naming line:column for syntax errors and
  // unsupported statements. Never throws.
  static Result<ChatTemplate> parse(std::string source);

  // Renders with `context` (an object) as the template variables: messages, add_generation_prompt,
  // bos_token, eos_token, tools and any extra keyword arguments. Errors (raise_exception, unknown
  // filter, undefined access, exceeded limits) name the template position. Thread-safe: any number
  // of threads may render one ChatTemplate at once. Object keys are visited in the order the JSON
  // type stores them, which is what tojson and `for k in dict` see: sorted for nlohmann::json, as
  // parsed (jinja2's order for a request's dicts) for nlohmann::ordered_json.
  Result<std::string> render(const nlohmann::json& context) const;
  Result<std::string> render(const nlohmann::ordered_json& context) const;

  // render() with {messages, add_generation_prompt, bos_token, eos_token}.
  Result<std::string> apply(const nlohmann::json& messages, bool add_generation_prompt,
                            const std::string& bos_token, const std::string& eos_token) const;
  Result<std::string> apply(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                            const std::string& bos_token, const std::string& eos_token) const;

  const std::string& source() const { return source_; }
  // Limits and clock for later renders (defaults in builtins.h). Not thread-safe against
  // concurrent render.
  void set_options(const jinja::RenderOptions& options) { options_ = options; }

 private:
  struct Tree;
  std::string source_;
  std::shared_ptr<const Tree> tree_;  // immutable after parse; shared by copies
  jinja::RenderOptions options_;
};

}  // namespace fs
