#include "tokenizer/incremental_decoder.h"

#include "tokenizer/utf8.h"

namespace fs {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer),
      skip_special_(skip_special_tokens),
      sentencepiece_(tokenizer.spec().decoder == DecoderKind::kSentencePiece),
      strip_left_(sentencepiece_ ? tokenizer.spec().decoder_strip_leading_spaces : 0) {}

std::string IncrementalDecoder::emit(std::string_view bytes) {
  size_t pos = 0;
  while (strip_left_ > 0 && pos < bytes.size() && bytes[pos] == ' ') {
    ++pos;
    --strip_left_;
  }
  if (pos < bytes.size()) strip_left_ = 0;
  std::string out;
  utf8::append_lossy(bytes.substr(pos), &out);
  text_.append(out);
  return out;
}

std::string IncrementalDecoder::feed(int32_t id) {
  if (!tokenizer_.is_valid_id(id) || (skip_special_ && tokenizer_.is_special(id))) return {};
  const std::string bytes = tokenizer_.token_bytes(id);
  if (!sentencepiece_) {
    pending_.append(bytes);
    const size_t cut = utf8::complete_prefix_length(pending_);
    std::string out = emit(std::string_view(pending_).substr(0, cut));
    pending_.erase(0, cut);
    return out;
  }
  std::string out;
  if (tokenizer_.is_byte_token(id)) {
    // A <0xNN> run: HF's ByteFallback decoder turns an invalid run into one U+FFFD per byte.
    if (run_invalid_) {
      out = emit(utf8::kReplacementChar);
      return out;
    }
    pending_.append(bytes);
    const size_t cut = utf8::complete_prefix_length(pending_);
    if (cut == pending_.size() && utf8::is_valid(pending_)) {  // whole characters: stream them
      out = emit(pending_);
      pending_.clear();
    } else if (!utf8::is_valid(pending_.substr(0, cut))) {  // can never become valid
      std::string replacement;
      for (size_t i = 0; i < pending_.size(); ++i) replacement.append(utf8::kReplacementChar);
      out = emit(replacement);
      pending_.clear();
      run_invalid_ = true;
    }
    return out;
  }
  out = flush_run();
  run_invalid_ = false;
  out.append(emit(bytes));
  return out;
}

std::string IncrementalDecoder::flush_run() {
  if (pending_.empty()) return {};
  std::string out;
  if (sentencepiece_) {  // a run cut short: every byte becomes U+FFFD
    std::string replacement;
    for (size_t i = 0; i < pending_.size(); ++i) replacement.append(utf8::kReplacementChar);
    out = emit(replacement);
  } else {
    out = emit(pending_);
  }
  pending_.clear();
  return out;
}

std::string IncrementalDecoder::finish() {
  std::string out = flush_run();
  run_invalid_ = false;
  return out;
}

}  // namespace fs
