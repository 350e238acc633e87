// Splits template source into tokens the way jinja2's lexer does under transformers' settings:
// trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, newlines normalized to "\n",
// whitespace control with "-" and "+", comments and {% raw %} blocks dropped or kept verbatim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace fs::jinja {

struct SourcePos {
  int line = 1;
  int column = 1;
};

struct Token {
  enum class Kind {
    kText,        // literal template text (whitespace control already applied)
    kVarBegin,    // {{
    kVarEnd,      // }}
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kName,
    kString,  // value holds the decoded string
    kInt,
    kFloat,
    kOperator,  // value holds the operator text: + - * / // % ** ~ == != < > <= >= = ( ) ...
    kEof,
  };
  Kind kind = Kind::kEof;
  std::string value;
  SourcePos pos;
};

// Tokenizes `source`. Errors (unterminated tag, comment or string, unexpected character) name
// the position as line:column.
Result<std::vector<Token>> tokenize(const std::string& source);

}  // namespace fs::jinja
