#include "tokenizer/template/parser.h"

#include "tokenizer/template/expr_parser.h"

namespace fs::jinja {
namespace {

// Statements: text, {{ output }}, and the {% %} tags, each parsed to its end tag.
class Parser : public ExprParser {
 public:
  using ExprParser::ExprParser;

  Result<Body> parse_template() {
    std::string end;
    FS_ASSIGN_OR_RETURN(Body body, parse_body({}, &end));
    return body;
  }

 private:
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
        return error_at(
            t, fmt::format("unexpected end of template, expected '{{% {} %}}'", end_tags.back()));
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
};

}  // namespace

Result<Body> parse(const std::vector<Token>& tokens) { return Parser(tokens).parse_template(); }

}  // namespace fs::jinja
