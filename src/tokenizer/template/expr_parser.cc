#include "tokenizer/template/expr_parser.h"

#include <charconv>
#include <cstdlib>

namespace fs::jinja {

// expr ("," expr)* -> a tuple when there is a comma.
Result<ExprPtr> ExprParser::parse_tuple(bool no_cond) {
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

Result<ExprPtr> ExprParser::parse_expression() {
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

Result<ExprPtr> ExprParser::binary(ExprPtr left, const std::string& op, ExprPtr right,
                                   SourcePos pos) {
  auto e = make(Expr::Kind::kBinary, pos);
  e->name = op;
  e->args.push_back(std::move(left));
  e->args.push_back(std::move(right));
  return finish_node(std::move(e));
}

Result<ExprPtr> ExprParser::parse_or() {
  FS_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
  while (is_name("or")) {
    SourcePos pos = cur().pos;
    advance();
    FS_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
    FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "or", std::move(right), pos));
  }
  return left;
}
Result<ExprPtr> ExprParser::parse_and() {
  FS_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
  while (is_name("and")) {
    SourcePos pos = cur().pos;
    advance();
    FS_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
    FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "and", std::move(right), pos));
  }
  return left;
}
Result<ExprPtr> ExprParser::parse_not() {
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
Result<ExprPtr> ExprParser::parse_compare() {
  SourcePos pos = cur().pos;
  FS_ASSIGN_OR_RETURN(ExprPtr first, parse_math1());
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (cur().kind == TK::kOperator &&
        (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == ">" ||
         cur().value == "<=" || cur().value == ">=")) {
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
Result<ExprPtr> ExprParser::parse_math1() {
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
Result<ExprPtr> ExprParser::parse_concat() {
  FS_ASSIGN_OR_RETURN(ExprPtr left, parse_math2());
  while (is_op("~")) {
    SourcePos pos = cur().pos;
    advance();
    FS_ASSIGN_OR_RETURN(ExprPtr right, parse_math2());
    FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "~", std::move(right), pos));
  }
  return left;
}
Result<ExprPtr> ExprParser::parse_math2() {
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
Result<ExprPtr> ExprParser::parse_pow() {
  FS_ASSIGN_OR_RETURN(ExprPtr left, parse_unary(true));
  while (is_op("**")) {
    SourcePos pos = cur().pos;
    advance();
    FS_ASSIGN_OR_RETURN(ExprPtr right, parse_unary(true));
    FS_ASSIGN_OR_RETURN(left, binary(std::move(left), "**", std::move(right), pos));
  }
  return left;
}
Result<ExprPtr> ExprParser::parse_unary(bool with_filter) {
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

Result<ExprPtr> ExprParser::parse_primary() {
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

Result<ExprPtr> ExprParser::parse_postfix(ExprPtr node) {
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

Result<ExprPtr> ExprParser::parse_subscript(ExprPtr node) {
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

Status ExprParser::parse_args(Expr* e) {
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

Result<ExprPtr> ExprParser::parse_call(ExprPtr callee) {
  auto e = make(Expr::Kind::kCall, cur().pos);
  e->args.push_back(std::move(callee));
  FS_RETURN_IF_ERROR(parse_args(e.get()));
  return finish_node(std::move(e));
}

Result<ExprPtr> ExprParser::parse_filter(ExprPtr node) {
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

Result<ExprPtr> ExprParser::parse_test(ExprPtr node) {
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

}  // namespace fs::jinja
