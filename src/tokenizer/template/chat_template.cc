#include "tokenizer/template/chat_template.h"

#include "tokenizer/template/ast.h"
#include "tokenizer/template/evaluator.h"
#include "tokenizer/template/lexer.h"
#include "tokenizer/template/parser.h"

namespace fs {

struct ChatTemplate::Tree {
  jinja::Body body;
};

Result<ChatTemplate> ChatTemplate::parse(std::string source) {
  FS_ASSIGN_OR_RETURN(std::vector<jinja::Token> tokens, jinja::tokenize(source));
  FS_ASSIGN_OR_RETURN(jinja::Body body, jinja::parse(tokens));
  ChatTemplate t;
  t.source_ = std::move(source);
  auto tree = std::make_shared<Tree>();
  tree->body = std::move(body);
  t.tree_ = std::move(tree);
  return t;
}

namespace {

template <typename Json>
Result<std::string> render_json(const jinja::Body& body, const jinja::RenderOptions& options,
                                const Json& context) {
  if (!context.is_object()) return invalid_argument("chat template context must be a JSON object");
  FS_ASSIGN_OR_RETURN(jinja::Value globals, jinja::Value::from_json(context));
  jinja::Evaluator evaluator(globals, options);
  return evaluator.render(body);
}

template <typename Json>
Json apply_context(const Json& messages, bool add_generation_prompt, const std::string& bos_token,
                   const std::string& eos_token) {
  Json context = Json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token;
  context["eos_token"] = eos_token;
  return context;
}

}  // namespace

Result<std::string> ChatTemplate::render(const nlohmann::json& context) const {
  return render_json(tree_->body, options_, context);
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return render_json(tree_->body, options_, context);
}

Result<std::string> ChatTemplate::apply(const nlohmann::json& messages, bool add_generation_prompt,
                                        const std::string& bos_token,
                                        const std::string& eos_token) const {
  return render(apply_context(messages, add_generation_prompt, bos_token, eos_token));
}

Result<std::string> ChatTemplate::apply(const nlohmann::ordered_json& messages,
                                        bool add_generation_prompt, const std::string& bos_token,
                                        const std::string& eos_token) const {
  return render(apply_context(messages, add_generation_prompt, bos_token, eos_token));
}

}  // namespace fs
