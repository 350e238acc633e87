// Expression parsing over a token stream, shared by the statement parser (parser.cc). Follows
// jinja2's grammar and precedence; every node records its subtree height so that deep or long
// chains are rejected at parse time instead of overflowing the stack later.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "core/status.h"
#include "tokenizer/template/ast.h"
#include "tokenizer/template/lexer.h"
#include "tokenizer/template/parser.h"

namespace fs::jinja {

class ExprParser {
 public:
  explicit ExprParser(const std::vector<Token>& tokens) : toks_(tokens) {}

 protected:
  using TK = Token::Kind;

  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  void advance() {
    if (i_ + 1 < toks_.size()) ++i_;
  }
  bool is_op(const char* op) const { return cur().kind == TK::kOperator && cur().value == op; }
  bool is_name(const char* n) const { return cur().kind == TK::kName && cur().value == n; }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TK::kText:
        return "text";
      case TK::kVarBegin:
        return "'{{'";
      case TK::kVarEnd:
        return "'}}'";
      case TK::kBlockBegin:
        return "'{%'";
      case TK::kBlockEnd:
        return "'%}'";
      case TK::kName:
        return fmt::format("name '{}'", t.value);
      case TK::kString:
        return "string literal";
      case TK::kInt:
      case TK::kFloat:
        return fmt::format("number {}", t.value);
      case TK::kOperator:
        return fmt::format("'{}'", t.value);
      case TK::kEof:
        return "end of template";
    }
    return "token";
  }
  Status error_at(const Token& t, const std::string& what) const {
    return invalid_argument("template syntax error at {}:{}: {}", t.pos.line, t.pos.column, what);
  }
  Status unexpected(const std::string& expected) const {
    return error_at(cur(), fmt::format("expected {}, got {}", expected, describe(cur())));
  }
  Status expect_op(const char* op) {
    if (!is_op(op)) return unexpected(fmt::format("'{}'", op));
    advance();
    return Status::ok();
  }
  Status expect_block_end() {
    if (cur().kind != TK::kBlockEnd) return unexpected("end of statement '%}'");
    advance();
    return Status::ok();
  }
  Result<std::string> expect_name() {
    if (cur().kind != TK::kName) return unexpected("a name");
    std::string n = cur().value;
    advance();
    return n;
  }

  struct DepthGuard {
    explicit DepthGuard(int& d) : depth(d) { ++depth; }
    ~DepthGuard() { --depth; }
    int& depth;
  };
  Status check_depth() const {
    if (depth_ > kMaxParseDepth) return error_at(cur(), "template nested too deeply");
    return Status::ok();
  }

  // Records the subtree height; left-leaning chains (a + b + c ..., x | f | g ...) are built by
  // loops, not recursion, so their height is checked here to keep evaluation and destruction
  // from recursing without bound.
  Result<ExprPtr> finish_node(ExprPtr e) const {
    int depth = 0;
    for (const auto& a : e->args) {
      if (a) depth = std::max(depth, a->depth);
    }
    for (const auto& [_, v] : e->kwargs) depth = std::max(depth, v->depth);
    for (const auto& [k, v] : e->dict_items) depth = std::max({depth, k->depth, v->depth});
    e->depth = depth + 1;
    if (e->depth > kMaxParseDepth) {
      return invalid_argument("template syntax error at {}:{}: expression nested too deeply",
                              e->pos.line, e->pos.column);
    }
    return e;
  }

  static ExprPtr make(Expr::Kind kind, SourcePos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  Result<ExprPtr> parse_tuple(bool no_cond = false);
  Result<ExprPtr> parse_expression();
  Result<ExprPtr> binary(ExprPtr left, const std::string& op, ExprPtr right, SourcePos pos);
  Result<ExprPtr> parse_or();
  Result<ExprPtr> parse_and();
  Result<ExprPtr> parse_not();
  Result<ExprPtr> parse_compare();
  Result<ExprPtr> parse_math1();
  Result<ExprPtr> parse_concat();
  Result<ExprPtr> parse_math2();
  Result<ExprPtr> parse_pow();
  Result<ExprPtr> parse_unary(bool with_filter);
  Result<ExprPtr> parse_primary();
  Result<ExprPtr> parse_postfix(ExprPtr node);
  Result<ExprPtr> parse_subscript(ExprPtr node);
  Status parse_args(Expr* e);
  Result<ExprPtr> parse_call(ExprPtr callee);
  Result<ExprPtr> parse_filter(ExprPtr node);
  Result<ExprPtr> parse_test(ExprPtr node);

  const std::vector<Token>& toks_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace fs::jinja
