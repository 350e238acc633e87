#include "tokenizer/template/parser.h"

#include <charconv>
#include <cstdlib>

namespace fs::jinja {
namespace {

using TK = Token::Kind;

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : toks_(tokens) {}

  Result<Body> parse_template() {
    std::string end;
    FS_ASSIGN_OR_RETURN(Body body, parse_body({}, &end));
    return body;
  }

 private:
  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  void advance() {
    if (i_ + 1 < toks_.size()) ++i_;
  }
  bool is_op(const char* op) const { return cur().kind == TK::kOperator && cur().value == op; }
  bool is_name(const char* n) const { return cur().kind == TK::kName && cur().value == n; }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TK::kText: return "text";
      case TK::kVarBegin: return "'{{'";
      case TK::kVarEnd: return "'}}'";
      case TK::kBlockBegin: return "'{%'";
      case TK::kBlockEnd: return "'%}'";
      case TK::kName: return fmt::format("name '{}'", t.value);
      case TK::kString: return "string literal";
      case TK::kInt:
      case TK::kFloat: return fmt::format("number {}", t.value);
      case TK::kOperator: return fmt::format("'{}'", t.value);
      case TK::kEof: return "end of template";
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

  // ---- statements ----

  // Parses until one of `end_tags` opens a block ({% end_tag ...); leaves the stream after the
  // tag name and stores it in *end. With no end tags, parses to the end of the template.
  Result<Body> parse_body(const std::vector<std::string>& end_tags, std::string* end) {
    DepthGuard guard(depth_);
    FS_RETURN_IF_ERROR(check_depth());
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TK::kEof) {
        if (end_tags.empty()) return body;
        return error_at(t, fmt::format("unexpected end of template, expected '{{% {} %}}'",
                                       end_tags.back()));
      }
      if (t.kind == TK::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->pos = t.pos;
        s->text = t.value;
        body.push_back(std::move(s));
        advance();
      } else if (t.kind == TK::kVarBegin) {
        advance();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->pos = t.pos;
        FS_ASSIGN_OR_RETURN(s->expr, parse_tuple());
        if (cur().kind != TK::kVarEnd) return unexpected("end of print statement '}}'");
        advance();
        body.push_back(std::move(s));
      } else if (t.kind == TK::kBlockBegin) {
        advance();
        if (cur().kind != TK::kName) return unexpected("statement name");
        for (const auto& tag : end_tags) {
          if (cur().value == tag) {
            *end = tag;
            advance();
            return body;
          }
        }
        FS_ASSIGN_OR_RETURN(StmtPtr s, parse_statement());
        body.push_back(std::move(s));
      } else {
        return unexpected("text or tag");
      }
    }
  }

  Result<StmtPtr> parse_statement() {
    const Token& t = cur();
    auto s = std::make_unique<Stmt>();
    s->pos = t.pos;
    std::string kw = t.value;
    advance();
    std::string end;
    if (kw == "if") {
      s->kind = Stmt::Kind::kIf;
      while (true) {
        FS_ASSIGN_OR_RETURN(ExprPtr cond, parse_tuple());
        FS_RETURN_IF_ERROR(expect_block_end());
        FS_ASSIGN_OR_RETURN(Body body, parse_body({"elif", "else", "endif"}, &end));
        s->branches.emplace_back(std::move(cond), std::move(body));
        if (end == "elif") continue;
        if (end == "else") {
          FS_RETURN_IF_ERROR(expect_block_end());
          FS_ASSIGN_OR_RETURN(s->else_body, parse_body({"endif"}, &end));
        }
        break;
      }
    } else if (kw == "for") {
      s->kind = Stmt::Kind::kFor;
      FS_ASSIGN_OR_RETURN(s->targets, parse_targets());
      if (!is_name("in")) return unexpected("'in'");
      advance();
      FS_ASSIGN_OR_RETURN(s->expr, parse_tuple(/*no_cond=*/true));
      if (is_name("if")) {
        advance();
        FS_ASSIGN_OR_RETURN(s->cond, parse_expression());
      }
      if (is_name("recursive")) return error_at(cur(), "recursive for loops are not supported");
      FS_RETURN_IF_ERROR(expect_block_end());
      FS_ASSIGN_OR_RETURN(s->body, parse_body({"else", "endfor"}, &end));
      if (end == "else") {
        FS_RETURN_IF_ERROR(expect_block_end());
        FS_ASSIGN_OR_RETURN(s->else_body, parse_body({"endfor"}, &end));
      }
    } else if (kw == "set") {
      s->kind = Stmt::Kind::kSet;
      if (cur().kind == TK::kName && peek().kind == TK::kOperator && peek().value == ".") {
        s->targets.push_back(cur().value);
        advance();
        advance();
        FS_ASSIGN_OR_RETURN(s->ns_attr, expect_name());
      } else {
        FS_ASSIGN_OR_RETURN(s->targets, parse_targets());
      }
      if (is_op("=")) {
        advance();
        FS_ASSIGN_OR_RETURN(s->expr, parse_tuple());
      } else {
        if (s->targets.size() != 1 || !s->ns_attr.empty()) return unexpected("'='");
        if (is_op("|")) return error_at(cur(), "filtered block set is not supported");
        FS_RETURN_IF_ERROR(expect_block_end());
        FS_ASSIGN_OR_RETURN(s->body, parse_body({"endset"}, &end));
        return finish(std::move(s));
      }
      return finish_inline(std::move(s));
    } else if (kw == "macro") {
      s->kind = Stmt::Kind::kMacro;
      FS_ASSIGN_OR_RETURN(s->text, expect_name());
      FS_RETURN_IF_ERROR(expect_op("("));
      while (!is_op(")")) {
        if (!s->params.empty()) FS_RETURN_IF_ERROR(expect_op(","));
        if (is_op(")")) break;
        FS_ASSIGN_OR_RETURN(std::string pname, expect_name());
        ExprPtr def;
        if (is_op("=")) {
          advance();
          FS_ASSIGN_OR_RETURN(def, parse_expression());
        }
        s->params.emplace_back(std::move(pname), std::move(def));
      }
      advance();
      FS_RETURN_IF_ERROR(expect_block_end());
      FS_ASSIGN_OR_RETURN(s->body, parse_body({"endmacro"}, &end));
    } else if (kw == "call") {
      s->kind = Stmt::Kind::kCallBlock;
      if (is_op("(")) return error_at(cur(), "call blocks with arguments are not supported");
      FS_ASSIGN_OR_RETURN(s->expr, parse_expression());
      if (s->expr->kind != Expr::Kind::kCall) return error_at(t, "expected a macro call");
      FS_RETURN_IF_ERROR(expect_block_end());
      FS_ASSIGN_OR_RETURN(s->body, parse_body({"endcall"}, &end));
    } else if (kw == "filter") {
      s->kind = Stmt::Kind::kFilterBlock;
      auto placeholder = make(Expr::Kind::kLiteral, t.pos);
      FS_ASSIGN_OR_RETURN(s->expr, parse_filter(std::move(placeholder)));
      FS_RETURN_IF_ERROR(expect_block_end());
      FS_ASSIGN_OR_RETURN(s->body, parse_body({"endfilter"}, &end));
    } else if (kw == "break" || kw == "continue") {
      s->kind = kw == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      return finish_inline(std::move(s));
    } else if (kw == "generation") {
      s->kind = Stmt::Kind::kGeneration;
      FS_RETURN_IF_ERROR(expect_block_end());
      FS_ASSIGN_OR_RETURN(s->body, parse_body({"endgeneration"}, &end));
    } else {
      return error_at(t, fmt::format("unknown statement '{}'", kw));
    }
    return finish(std::move(s));
  }

  Result<StmtPtr> finish(StmtPtr s) {  // after an end tag name: optional repeated name, then %}
    if (cur().kind == TK::kName && s->kind == Stmt::Kind::kMacro && cur().value == s->text) {
      advance();
    }
    FS_RETURN_IF_ERROR(expect_block_end());
    return s;
  }
  Result<StmtPtr> finish_inline(StmtPtr s) {
    FS_RETURN_IF_ERROR(expect_block_end());
    return s;
  }

  Result<std::vector<std::string>> parse_targets() {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) advance();
    while (true) {
      FS_ASSIGN_OR_RETURN(std::string n, expect_name());
      names.push_back(std::move(n));
      if (!is_op(",")) break;
      advance();
      if (cur().kind != TK::kName) break;
    }
    if (paren) FS_RETURN_IF_ERROR(expect_op(")"));
    return names;
  }

  // ---- expressions ----

  // expr ("," expr)* -> a tuple when there is a comma.
  Result<ExprPtr> parse_tuple(bool no_cond = false) {
    SourcePos pos = cur().pos;
    FS_ASSIGN_OR_RETURN(ExprPtr first, no_cond ? parse_or() : parse_expression());
    if (!is_op(",")) return first;
    auto tuple = make(Expr::Kind::kTuple, pos);
    tuple->args.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (cur().kind == TK::kBlockEnd || cur().kind == TK::kVarEnd || is_op(")")) break;
      FS_ASSIGN_OR_RETURN(ExprPtr e, no_cond ? parse_or() : parse_expression());
      tuple->args.push_back(std::move(e));
    }
    return finish_node(std::move(tuple));
  }

  Result<ExprPtr> parse_expression() {
    DepthGuard guard(depth_);
    FS_RETURN_IF_ERROR(check_depth());
    SourcePos pos = cur().pos;
    FS_ASSIGN_OR_RETURN(ExprPtr value, parse_or());
    while (is_name("if")) {
      advance();
      auto cond = make(Expr::Kind::kCond, pos);
      FS_ASSIGN_OR_RETURN(ExprPtr test, parse_or());
      ExprPtr otherwise;
      if (is_name("else")) {
        advance();
        FS_ASSIGN_OR_RETURN(otherwise, parse_expression());
      }
      cond->args.push_back(std::move(test));
      cond->args.push_back(std::move(value));
      cond->args.push_back(std::move(otherwise));
      FS_ASSIGN_OR_RETURN(value, finish_node(std::move(cond)));
    }
    return value;
  }

  Result<ExprPtr> binary(ExprPtr left, const std::string& op, ExprPtr right, SourcePos pos) {
    auto e = make(Expr::Kind::kBinary, pos);
    e->name = op;
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return finish_node(std::move(e));
  }

  Result<ExprPtr> parse_or() {
    FS_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
    while (is_name("or")) {
      SourcePos pos = cur().pos;
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
      FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "or", std::move(right), pos));
    }
    return left;
  }
  Result<ExprPtr> parse_and() {
    FS_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
    while (is_name("and")) {
      SourcePos pos = cur().pos;
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
      FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "and", std::move(right), pos));
    }
    return left;
  }
  Result<ExprPtr> parse_not() {
    if (is_name("not")) {
      DepthGuard guard(depth_);
      FS_RETURN_IF_ERROR(check_depth());
      auto e = make(Expr::Kind::kUnary, cur().pos);
      e->name = "not";
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr operand, parse_not());
      e->args.push_back(std::move(operand));
      return finish_node(std::move(e));
    }
    return parse_compare();
  }
  Result<ExprPtr> parse_compare() {
    SourcePos pos = cur().pos;
    FS_ASSIGN_OR_RETURN(ExprPtr first, parse_math1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == TK::kOperator &&
          (cur().value == "==" || cur().value == "!=" || cur().value == "<" ||
           cur().value == ">" || cur().value == "<=" || cur().value == ">=")) {
        op = cur().value;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == TK::kName && peek().value == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::kCompare, pos);
        cmp->args.push_back(std::move(first));
      }
      FS_ASSIGN_OR_RETURN(ExprPtr rhs, parse_math1());
      cmp->ops.push_back(op);
      cmp->args.push_back(std::move(rhs));
    }
    if (cmp) return finish_node(std::move(cmp));
    return first;
  }
  Result<ExprPtr> parse_math1() {
    FS_ASSIGN_OR_RETURN(ExprPtr left, parse_concat());
    while (is_op("+") || is_op("-")) {
      std::string op = cur().value;
      SourcePos pos = cur().pos;
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr right, parse_concat());
      FS_ASSIGN_OR_RETURN(left, binary(std::move(left), op, std::move(right), pos));
    }
    return left;
  }
  Result<ExprPtr> parse_concat() {
    FS_ASSIGN_OR_RETURN(ExprPtr left, parse_math2());
    while (is_op("~")) {
      SourcePos pos = cur().pos;
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr right, parse_math2());
      FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "~", std::move(right), pos));
    }
    return left;
  }
  Result<ExprPtr> parse_math2() {
    FS_ASSIGN_OR_RETURN(ExprPtr left, parse_pow());
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().value;
      SourcePos pos = cur().pos;
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr right, parse_pow());
      FS_ASSIGN_OR_RETURN(left, binary(std::move(left), op, std::move(right), pos));
    }
    return left;
  }
  Result<ExprPtr> parse_pow() {
    FS_ASSIGN_OR_RETURN(ExprPtr left, parse_unary(true));
    while (is_op("**")) {
      SourcePos pos = cur().pos;
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr right, parse_unary(true));
      FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "**", std::move(right), pos));
    }
    return left;
  }
  Result<ExprPtr> parse_unary(bool with_filter) {
    DepthGuard guard(depth_);
    FS_RETURN_IF_ERROR(check_depth());
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      node = make(Expr::Kind::kUnary, cur().pos);
      node->name = cur().value;
      advance();
      FS_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary(false));
      node->args.push_back(std::move(operand));
      FS_ASSIGN_OR_RETURN(node, finish_node(std::move(node)));
    } else {
      FS_ASSIGN_OR_RETURN(node, parse_primary());
    }
    FS_ASSIGN_OR_RETURN(node, parse_postfix(std::move(node)));
    if (!with_filter) return node;
    while (true) {
      if (is_op("|")) {
        FS_ASSIGN_OR_RETURN(node, parse_filter(std::move(node)));
      } else if (is_name("is")) {
        FS_ASSIGN_OR_RETURN(node, parse_test(std::move(node)));
      } else if (is_op("(")) {
        FS_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  Result<ExprPtr> parse_primary() {
    const Token& t = cur();
    SourcePos pos = t.pos;
    switch (t.kind) {
      case TK::kName: {
        const std::string& n = t.value;
        auto e = make(Expr::Kind::kLiteral, pos);
        if (n == "true" || n == "True") {
          e->literal = Value::boolean(true);
        } else if (n == "false" || n == "False") {
          e->literal = Value::boolean(false);
        } else if (n == "none" || n == "None") {
          e->literal = Value::none();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = n;
        }
        advance();
        return e;
      }
      case TK::kString: {
        std::string s;
        while (cur().kind == TK::kString) {  // adjacent literals concatenate
          s += cur().value;
          advance();
        }
        auto e = make(Expr::Kind::kLiteral, pos);
        e->literal = Value::string(std::move(s));
        return e;
      }
      case TK::kInt: {
        int64_t v = 0;
        auto r = std::from_chars(t.value.data(), t.value.data() + t.value.size(), v);
        if (r.ec != std::errc()) return error_at(t, "integer literal too large");
        auto e = make(Expr::Kind::kLiteral, pos);
        e->literal = Value::integer(v);
        advance();
        return e;
      }
      case TK::kFloat: {
        auto e = make(Expr::Kind::kLiteral, pos);
        e->literal = Value::floating(std::strtod(t.value.c_str(), nullptr));
        advance();
        return e;
      }
      case TK::kOperator:
        if (t.value == "(") {
          advance();
          if (is_op(")")) {
            advance();
            return make(Expr::Kind::kTuple, pos);
          }
          FS_ASSIGN_OR_RETURN(ExprPtr inner, parse_tuple());
          FS_RETURN_IF_ERROR(expect_op(")"));
          return inner;
        }
        if (t.value == "[") {
          advance();
          auto e = make(Expr::Kind::kList, pos);
          while (!is_op("]")) {
            if (!e->args.empty()) FS_RETURN_IF_ERROR(expect_op(","));
            if (is_op("]")) break;
            FS_ASSIGN_OR_RETURN(ExprPtr item, parse_expression());
            e->args.push_back(std::move(item));
          }
          advance();
          return finish_node(std::move(e));
        }
        if (t.value == "{") {
          advance();
          auto e = make(Expr::Kind::kDict, pos);
          while (!is_op("}")) {
            if (!e->dict_items.empty()) FS_RETURN_IF_ERROR(expect_op(","));
            if (is_op("}")) break;
            FS_ASSIGN_OR_RETURN(ExprPtr key, parse_expression());
            FS_RETURN_IF_ERROR(expect_op(":"));
            FS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
            e->dict_items.emplace_back(std::move(key), std::move(value));
          }
          advance();
          return finish_node(std::move(e));
        }
        break;
      case TK::kText:
      case TK::kVarBegin:
      case TK::kVarEnd:
      case TK::kBlockBegin:
      case TK::kBlockEnd:
      case TK::kEof:
        break;
    }
    return unexpected("an expression");
  }

  Result<ExprPtr> parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        SourcePos pos = cur().pos;
        advance();
        if (cur().kind == TK::kInt) {
          auto e = make(Expr::Kind::kItem, pos);
          auto idx = make(Expr::Kind::kLiteral, cur().pos);
          idx->literal = Value::integer(std::atoll(cur().value.c_str()));
          advance();
          e->args.push_back(std::move(node));
          e->args.push_back(std::move(idx));
          FS_ASSIGN_OR_RETURN(node, finish_node(std::move(e)));
          continue;
        }
        FS_ASSIGN_OR_RETURN(std::string attr, expect_name());
        auto e = make(Expr::Kind::kAttr, pos);
        e->name = std::move(attr);
        e->args.push_back(std::move(node));
        FS_ASSIGN_OR_RETURN(node, finish_node(std::move(e)));
      } else if (is_op("[")) {
        FS_ASSIGN_OR_RETURN(node, parse_subscript(std::move(node)));
      } else if (is_op("(")) {
        FS_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  Result<ExprPtr> parse_subscript(ExprPtr node) {
    SourcePos pos = cur().pos;
    advance();  // [
    ExprPtr parts[3];
    int num_colons = 0;
    while (!is_op("]")) {
      if (is_op(":")) {
        if (++num_colons > 2) return unexpected("']'");
        advance();
        continue;
      }
      if (parts[num_colons]) return unexpected("':' or ']'");
      FS_ASSIGN_OR_RETURN(parts[num_colons], parse_expression());
    }
    advance();
    if (num_colons == 0) {
      if (!parts[0]) return error_at(cur(), "empty subscript");
      auto e = make(Expr::Kind::kItem, pos);
      e->args.push_back(std::move(node));
      e->args.push_back(std::move(parts[0]));
      return finish_node(std::move(e));
    }
    auto e = make(Expr::Kind::kSlice, pos);
    e->args.push_back(std::move(node));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return finish_node(std::move(e));
  }

  Status parse_args(Expr* e) {
    FS_RETURN_IF_ERROR(expect_op("("));
    bool first = true;
    while (!is_op(")")) {
      if (!first) FS_RETURN_IF_ERROR(expect_op(","));
      first = false;
      if (is_op(")")) break;
      if (cur().kind == TK::kName && peek().kind == TK::kOperator && peek().value == "=") {
        std::string key = cur().value;
        advance();
        advance();
        FS_ASSIGN_OR_RETURN(ExprPtr v, parse_expression());
        e->kwargs.emplace_back(std::move(key), std::move(v));
      } else {
        if (!e->kwargs.empty()) return error_at(cur(), "positional argument after keyword argument");
        FS_ASSIGN_OR_RETURN(ExprPtr v, parse_expression());
        e->args.push_back(std::move(v));
      }
    }
    advance();
    return Status::ok();
  }

  Result<ExprPtr> parse_call(ExprPtr callee) {
    auto e = make(Expr::Kind::kCall, cur().pos);
    e->args.push_back(std::move(callee));
    FS_RETURN_IF_ERROR(parse_args(e.get()));
    return finish_node(std::move(e));
  }

  Result<ExprPtr> parse_filter(ExprPtr node) {
    while (is_op("|") || node->kind == Expr::Kind::kLiteral) {
      if (is_op("|")) advance();
      SourcePos pos = cur().pos;
      FS_ASSIGN_OR_RETURN(std::string name, expect_name());
      while (is_op(".")) {
        advance();
        FS_ASSIGN_OR_RETURN(std::string part, expect_name());
        name += "." + part;
      }
      auto e = make(Expr::Kind::kFilter, pos);
      e->name = std::move(name);
      e->args.push_back(std::move(node));
      if (is_op("(")) FS_RETURN_IF_ERROR(parse_args(e.get()));
      FS_ASSIGN_OR_RETURN(node, finish_node(std::move(e)));
    }
    return node;
  }

  Result<ExprPtr> parse_test(ExprPtr node) {
    SourcePos pos = cur().pos;
    advance();  // is
    auto e = make(Expr::Kind::kTest, pos);
    if (is_name("not")) {
      e->negate = true;
      advance();
    }
    FS_ASSIGN_OR_RETURN(e->name, expect_name());
    e->args.push_back(std::move(node));
    if (is_op("(")) {
      FS_RETURN_IF_ERROR(parse_args(e.get()));
    } else if ((cur().kind == TK::kName || cur().kind == TK::kString || cur().kind == TK::kInt ||
                cur().kind == TK::kFloat || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and") && !is_name("is")) {
      FS_ASSIGN_OR_RETURN(ExprPtr arg, parse_primary());
      FS_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
      e->args.push_back(std::move(arg));
    }
    return finish_node(std::move(e));
  }

  const std::vector<Token>& toks_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<Body> parse(const std::vector<Token>& tokens) { return Parser(tokens).parse_template(); }

}  // namespace fs::jinja
