// Renders a parsed template over a context of variables. One Evaluator per render call: it holds
// the scopes and counters of that render only, so concurrent renders of one tree do not interact.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "tokenizer/template/ast.h"
#include "tokenizer/template/builtins.h"

namespace fs::jinja {

class Evaluator {
 public:
  // `globals` must be a dict: the template's variables (messages, bos_token, ...).
  Evaluator(const Value& globals, const RenderOptions& options);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Renders `body`; errors name the template position ("template error at 3:14: ...").
  Result<std::string> render(const Body& body);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Frame = std::unordered_map<std::string, Value>;

  Status exec_body(const Body& body, std::string& out);
  Status exec(const Stmt& s, std::string& out);
  Status exec_for(const Stmt& s, std::string& out);
  Status exec_set(const Stmt& s);
  Status append(std::string& out, const std::string& text, SourcePos pos);

  Result<Value> eval(const Expr& e);
  Result<Value> eval_call(const Expr& e);
  Result<Value> eval_binary(const Expr& e);
  Result<Value> eval_compare(const Expr& e);
  Result<Value> eval_slice(const Expr& e);
  Result<Value> eval_filter_chain(const Expr& e, const Value* block_input);
  Result<CallArgs> eval_args(const Expr& e, size_t first);
  Result<Value> call_global(const std::string& name, const CallArgs& args, SourcePos pos);
  Result<Value> call_macro(const Stmt& macro, const CallArgs& args, const Stmt* caller,
                           SourcePos pos);
  Result<Value> arithmetic(const std::string& op, const Value& a, const Value& b);
  Status bind_targets(const std::vector<std::string>& targets, const Value& v, Frame& frame,
                      SourcePos pos);

  const Value* lookup(const std::string& name) const;
  Status error(SourcePos pos, const std::string& message) const;
  Status at(SourcePos pos, const Status& s) const;  // adds the position to a bare error

  RenderOptions options_;
  std::vector<Frame> frames_;  // frames_[0]: template-level variables
  size_t scope_floor_ = 1;     // frames below this (except 0) are invisible inside a macro
  int call_depth_ = 0;
  int64_t num_iterations_ = 0;
  size_t output_bytes_ = 0;
  Flow flow_ = Flow::kNormal;
  std::vector<const Stmt*> callers_;  // {% call %} bodies of the macros being called
  std::vector<Value> namespaces_;     // created by this render; emptied by the destructor
};

}  // namespace fs::jinja
