#include "tokenizer/template/lexer.h"

#include <cstring>

#include "tokenizer/template/value.h"

namespace fs::jinja {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python str.rstrip() on template text.
size_t rstrip_end(const std::string& s, size_t begin, size_t end) {
  auto chars = utf8_chars(std::string_view(s).substr(begin, end - begin));
  size_t n = end;
  for (auto it = chars.rbegin(); it != chars.rend(); ++it) {
    if (!is_python_space(*it)) break;
    n -= it->size();
  }
  return n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  Result<std::vector<Token>> run() {
    while (pos_ < src_.size()) FS_RETURN_IF_ERROR(lex_data());
    push(Token::Kind::kEof, "", pos_);
    return std::move(tokens_);
  }

 private:
  SourcePos pos_of(size_t offset) {
    while (line_scan_ < offset) {
      if (src_[line_scan_] == '\n') {
        ++line_;
        line_start_ = line_scan_ + 1;
      }
      ++line_scan_;
    }
    return SourcePos{line_, static_cast<int>(offset - line_start_) + 1};
  }
  void push(Token::Kind kind, std::string value, size_t offset) {
    tokens_.push_back(Token{kind, std::move(value), pos_of(offset)});
  }
  Status error(size_t offset, const std::string& what) {
    SourcePos p = pos_of(offset);
    return invalid_argument("template syntax error at {}:{}: {}", p.line, p.column, what);
  }

  // Is "{% raw %}" (any whitespace control) at `at`? Sets `end` past it.
  bool match_word_tag(size_t at, const char* word, size_t* end, char* close_sign) {
    size_t i = at + 2;
    if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ++i;
    while (i < src_.size() && is_space(src_[i])) ++i;
    size_t n = std::strlen(word);
    if (src_.compare(i, n, word) != 0) return false;
    i += n;
    while (i < src_.size() && is_space(src_[i])) ++i;
    *close_sign = 0;
    if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) *close_sign = src_[i++];
    if (src_.compare(i, 2, "%}") != 0) return false;
    *end = i + 2;
    return true;
  }

  // After a block or comment end: "-" strips all following whitespace, "+" nothing, else
  // trim_blocks removes one newline.
  void after_tag_end(char sign) {
    if (sign == '-') {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
    } else if (sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  Status lex_data() {
    size_t start = pos_;
    size_t open = src_.find('{', pos_);
    while (open != std::string::npos && open + 1 < src_.size() && src_[open + 1] != '{' &&
           src_[open + 1] != '%' && src_[open + 1] != '#') {
      open = src_.find('{', open + 1);
    }
    if (open == std::string::npos || open + 1 >= src_.size()) {
      push(Token::Kind::kText, src_.substr(start), start);
      pos_ = src_.size();
      line_starting_ = false;
      return Status::ok();
    }
    char type = src_[open + 1];
    char sign = open + 2 < src_.size() ? src_[open + 2] : 0;
    if (sign != '-' && sign != '+') sign = 0;
    size_t text_end = open;
    if (sign == '-') {
      text_end = rstrip_end(src_, start, open);
    } else if (sign != '+' && type != '{' && open > start) {
      // lstrip_blocks: drop spaces and tabs between the line start and a block or comment tag.
      size_t nl = src_.rfind('\n', open - 1);
      size_t l_pos = (nl == std::string::npos || nl < start) ? start : nl + 1;
      if (l_pos > start || line_starting_) {
        bool only_blank = true;
        for (size_t i = l_pos; i < open; ++i) {
          if (src_[i] != ' ' && src_[i] != '\t') only_blank = false;
        }
        if (only_blank) text_end = l_pos;
      }
    }
    if (text_end > start) push(Token::Kind::kText, src_.substr(start, text_end - start), start);
    line_starting_ = false;

    size_t raw_end = 0;
    char close_sign = 0;
    if (type == '%' && match_word_tag(open, "raw", &raw_end, &close_sign)) {
      pos_ = raw_end;
      after_tag_end(close_sign);
      size_t search = pos_;
      while (true) {
        size_t end_open = src_.find("{%", search);
        if (end_open == std::string::npos) return error(open, "missing {% endraw %}");
        size_t endraw_end = 0;
        if (match_word_tag(end_open, "endraw", &endraw_end, &close_sign)) {
          size_t content_end = end_open;
          if (end_open + 2 < src_.size() && src_[end_open + 2] == '-') {
            content_end = rstrip_end(src_, pos_, end_open);
          }
          push(Token::Kind::kText, src_.substr(pos_, content_end - pos_), pos_);
          pos_ = endraw_end;
          after_tag_end(close_sign);
          return Status::ok();
        }
        search = end_open + 2;
      }
    }
    if (type == '#') {
      size_t close = src_.find("#}", open + 2);
      if (close == std::string::npos) return error(open, "unterminated comment");
      size_t content_begin = open + 2 + (sign ? 1 : 0);
      char end_sign = (close > content_begin && (src_[close - 1] == '-' || src_[close - 1] == '+'))
                          ? src_[close - 1]
                          : 0;
      pos_ = close + 2;
      after_tag_end(end_sign);
      line_starting_ = pos_ > 0 && src_[pos_ - 1] == '\n';
      return Status::ok();
    }
    bool is_block = type == '%';
    push(is_block ? Token::Kind::kBlockBegin : Token::Kind::kVarBegin, "", open);
    pos_ = open + 2 + (sign ? 1 : 0);
    return lex_tag(is_block, open);
  }

  Status lex_tag(bool is_block, size_t open) {
    int depth = 0;  // (), [] and {} nesting: "}}" inside braces is not the tag end
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) {
        return error(open, is_block ? "unterminated block tag '{%'" : "unterminated '{{'");
      }
      char c = src_[pos_];
      if (depth == 0) {
        const char* end = is_block ? "%}" : "}}";
        char sign = (c == '-' || c == '+') ? c : 0;
        if (src_.compare(pos_ + (sign ? 1 : 0), 2, end) == 0 && !(sign == '+' && !is_block)) {
          push(is_block ? Token::Kind::kBlockEnd : Token::Kind::kVarEnd, "", pos_);
          pos_ += 2 + (sign ? 1 : 0);
          if (is_block || sign == '-') {
            after_tag_end(is_block ? sign : '-');
          }
          line_starting_ = pos_ > 0 && src_[pos_ - 1] == '\n';
          return Status::ok();
        }
      }
      size_t start = pos_;
      if (is_name_start(c)) {
        while (pos_ < src_.size() && (is_name_start(src_[pos_]) || is_digit(src_[pos_]))) ++pos_;
        push(Token::Kind::kName, src_.substr(start, pos_ - start), start);
      } else if (is_digit(c)) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        FS_RETURN_IF_ERROR(lex_string());
      } else {
        static constexpr const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                               "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                               "]",  "{",  "}",  ",",  ".",  ":",  "|"};
        const char* op = nullptr;
        for (const char* candidate : kOps) {
          if (src_.compare(pos_, std::strlen(candidate), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op == nullptr) return error(pos_, fmt::format("unexpected character '{}'", c));
        if (op[0] == '(' || op[0] == '[' || op[0] == '{') ++depth;
        if ((op[0] == ')' || op[0] == ']' || op[0] == '}') && depth > 0) --depth;
        pos_ += std::strlen(op);
        push(Token::Kind::kOperator, op, start);
      }
    }
  }

  void lex_number() {
    size_t start = pos_;
    auto digits = [&] {
      while (pos_ < src_.size() && (is_digit(src_[pos_]) || src_[pos_] == '_')) ++pos_;
    };
    digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t save = pos_++;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      if (pos_ < src_.size() && is_digit(src_[pos_])) {
        is_float = true;
        digits();
      } else {
        pos_ = save;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    push(is_float ? Token::Kind::kFloat : Token::Kind::kInt, text, start);
  }

  // A Python string literal: the escapes of the "unicode-escape" codec jinja2 decodes with.
  Status lex_string() {
    size_t start = pos_;
    char quote = src_[pos_++];
    std::string out;
    while (true) {
      if (pos_ >= src_.size()) return error(start, "unterminated string");
      char c = src_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= src_.size()) return error(start, "unterminated string");
      char e = src_[pos_++];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case 'a':
          out += '\a';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case '\n':
          break;
        case 'x':
        case 'u':
        case 'U': {
          int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            int h = pos_ < src_.size() ? hex_value(src_[pos_]) : -1;
            if (h < 0) return error(pos_, "truncated \\x, \\u or \\U escape in string");
            cp = cp * 16 + static_cast<uint32_t>(h);
            ++pos_;
          }
          if (cp > 0x10ffff) return error(pos_, "escape out of the Unicode range");
          append_utf8(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7';
                 ++k) {
              cp = cp * 8 + static_cast<uint32_t>(src_[pos_++] - '0');
            }
            append_utf8(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    push(Token::Kind::kString, std::move(out), start);
    return Status::ok();
  }

  std::string src_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
  size_t line_scan_ = 0;
  size_t line_start_ = 0;
  int line_ = 1;
};

}  // namespace

Result<std::vector<Token>> tokenize(const std::string& source) {
  // jinja2 splits on any newline sequence, joins with "\n" and drops one trailing newline.
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src)).run();
}

}  // namespace fs::jinja
