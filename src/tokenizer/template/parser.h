// Parses tokens into a syntax tree, following jinja2's grammar and operator precedence:
// `if`-expressions < or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary -
// < filters, tests and postfix access.
#pragma once

#include <vector>

#include "core/status.h"
#include "tokenizer/template/ast.h"
#include "tokenizer/template/lexer.h"

namespace fs::jinja {

// Nesting deeper than this (expressions or blocks) is rejected, so hostile input cannot overflow
// the stack of the parser or the evaluator.
inline constexpr int kMaxParseDepth = 128;

// Errors name the position as line:column and what was expected.
Result<Body> parse(const std::vector<Token>& tokens);

}  // namespace fs::jinja
