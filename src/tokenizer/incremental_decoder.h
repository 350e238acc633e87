// Streaming detokenization: feed token ids one at a time, get the text they complete. Never returns
// a partial UTF-8 sequence: bytes of a character split over several tokens (byte-level BPE pieces,
// SentencePiece <0xNN> tokens) are held until the character is complete. Applies the SentencePiece
// rule that the first output character, when a space (the dummy prefix), is dropped. The
// concatenation of all feed() results and finish() equals Tokenizer::decode(all ids) - exactly for
// byte-level tokenizers; for SentencePiece whenever every <0xNN> run is valid UTF-8 (an invalid run
// that starts with a complete character streams that character, where decode() makes the whole run
// U+FFFD). Not thread-safe: one decoder per stream. The tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace fs {

class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  // Adds one id; returns the text it completes (often empty mid-character). Invalid ids are
  // ignored.
  std::string feed(int32_t id);
  // End of stream: returns what is still held, incomplete sequences as U+FFFD.
  std::string finish();
  // The text returned so far, in total.
  const std::string& text() const { return text_; }

 private:
  std::string emit(std::string_view bytes);  // applies the leading-space strip, appends to text_
  std::string flush_run();                   // returns what pending_ holds, as decode() would

  const Tokenizer& tokenizer_;
  bool skip_special_;
  bool sentencepiece_;
  int strip_left_;            // leading spaces still to drop (SentencePiece dummy prefix)
  std::string pending_;       // bytes not yet returned: an incomplete sequence or <0xNN> run
  bool run_invalid_ = false;  // SentencePiece: the current <0xNN> run is already invalid
  std::string text_;
};

}  // namespace fs
