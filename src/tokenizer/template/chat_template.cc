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

Result<std::string> ChatTemplate::render(const nlohmann::json& context) const {
  if (!context.is_object()) return invalid_argument("chat template context must be a JSON object");
  FS_ASSIGN_OR_RETURN(jinja::Value globals, jinja::Value::from_json(context));
  jinja::Evaluator evaluator(globals, options_);
  return evaluator.render(tree_->body);
}

Result<std::string> ChatTemplate::apply(const nlohmann::json& messages, bool add_generation_prompt,
                                        const std::string& bos_token,
                                        const std::string& eos_token) const {
  nlohmann::json context = nlohmann::json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token;
  context["eos_token"] = eos_token;
  return render(context);
}

}  // namespace fs
