// Syntax tree of a parsed template. Nodes are immutable after parsing, so one tree can be rendered
// from many threads at once.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/template/lexer.h"
#include "tokenizer/template/value.h"

namespace fs::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // args: items
    kTuple,    // args: items
    kDict,     // kwargs-like pairs in dict_items
    kAttr,     // args[0].name
    kItem,     // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]:args[3]] (null children = omitted)
    kCall,     // args[0](args[1:], kwargs)
    kFilter,   // args[0] | name(args[1:], kwargs)
    kTest,     // args[0] is name(args[1:]); negated when `negate`
    kUnary,    // name ("-", "+", "not") args[0]
    kBinary,   // args[0] name args[1]; name in + - * / // % ** ~ and or in "not in"
    kCompare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    kCond,     // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind;
  SourcePos pos;
  std::string name;
  Value literal;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::pair<ExprPtr, ExprPtr>> dict_items;
  std::vector<std::string> ops;
  bool negate = false;
  int depth = 1;  // height of this subtree; bounded by kMaxParseDepth
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // branches (cond, body); else_body
    kFor,          // targets in expr [if cond] body else_body
    kSet,          // targets (or ns_attr) = expr, or block set: body
    kMacro,        // name(params) body
    kCallBlock,    // {% call macro(args) %}body{% endcall %}: expr is the call
    kFilterBlock,  // {% filter name %}body{% endfilter %}: expr is a kFilter on a placeholder
    kBreak,
    kContinue,
    kGeneration,  // transformers' {% generation %}: renders its body unchanged
  };
  Kind kind;
  SourcePos pos;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  std::string ns_attr;  // set ns.attr = ...: targets[0] is the namespace name
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters and defaults
};

}  // namespace fs::jinja
