// A pre-tokenizer split step: a PCRE2 regex (UTF + UCP, JIT-compiled) that cuts text into pieces
// the way HF `tokenizers` Split(behavior = Isolated) does: every match is a piece and so is every
// gap between matches. `\s` / `\S` in patterns are rewritten to the Unicode White_Space set, which
// is what Oniguruma (HF's regex engine) matches and PCRE2's UCP `\s` does not quite (it lacks
// U+0085).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fs {

class RegexSplitter {
 public:
  // Compiles pattern (literal = true: matched as a plain string). Error: kInvalidArgument with the
  // PCRE2 message and offset.
  static Result<std::unique_ptr<RegexSplitter>> compile(const std::string& pattern, bool literal);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends the pieces of text (valid UTF-8) to out: matches and the gaps between them, in order,
  // none empty. With remove_matches, matches are dropped (HF behavior Removed). Thread-safe.
  void split(std::string_view text, bool remove_matches, std::vector<std::string_view>* out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  RegexSplitter() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

// The pattern with \s and \S replaced by explicit White_Space classes (exposed for tests).
std::string rewrite_whitespace_classes(std::string_view pattern);

}  // namespace fs
