// Text <-> token ids, exact against HF `tokenizers` for byte-level BPE (GPT-2, Llama 3, SmolLM2,
// Qwen2) and SentencePiece-style BPE (Llama 2, Mistral). Loaded from a GGUF file's tokenizer.ggml.*
// metadata, an HF tokenizer.json, or an HF model folder. Encoding follows HF's pipeline:
// added/special tokens are cut out whole first, each remaining segment is normalized and
// pre-tokenized (PCRE2 regex splits, Metaspace), each piece goes through the BPE merge loop, then
// BOS/EOS are added. Immutable after loading; encode/decode are thread-safe. See docs/TOKENIZER.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/regex_splitter.h"

namespace fs {

class GgufFile;

// A token matched as a whole in the input before pre-tokenization (HF AddedToken).
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;  // skipped by decode(skip_special_tokens) and by parse_special = false
  bool lstrip = false;   // also swallows whitespace on its left / right
  bool rstrip = false;
  bool single_word = false;  // matches only when no word character touches it on either side
};

// One pre-tokenizer step, applied to every piece in order.
struct PreTokenizerStep {
  enum class Kind { kSplit, kMetaspace, kByteLevelPrefixSpace };
  Kind kind = Kind::kSplit;
  std::shared_ptr<const RegexSplitter> regex;  // kSplit
  bool remove_matches = false;                 // kSplit: HF behavior Removed instead of Isolated
  // kMetaspace: replace ' ' by "▁"; prepend "▁" to a piece that does not start with it when
  // prepend_always, or when prepend_first and the piece starts the input (HF prepend_scheme).
  bool prepend_always = false;
  bool prepend_first = false;
};

// A normalizer step applied to each segment between added tokens (legacy Llama: Prepend + Replace;
// Qwen2: NFC).
struct NormalizerStep {
  enum class Kind { kPrepend, kReplace, kNfc };
  Kind kind = Kind::kReplace;
  std::string from;  // kReplace
  std::string to;    // kReplace: replacement; kPrepend: the prefix
};

enum class DecoderKind {
  kByteLevel,      // pieces are raw bytes; join, then invalid UTF-8 -> U+FFFD (from_utf8_lossy)
  kSentencePiece,  // "▁" -> ' ', <0xNN> runs -> bytes (invalid run -> U+FFFD per byte), then strip
  kConcat,         // pieces joined as they are
};

struct TokenizerSpec {
  std::string source;  // file the tokenizer came from, for messages
  std::unique_ptr<BpeModel> model;
  std::vector<std::string> vocab;  // [vocab_size] token text as in the file ("Ġthe", "▁the")
  std::vector<AddedToken> added_tokens;
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  std::vector<int32_t> prefix_ids;  // added by encode(add_special = true), e.g. BOS
  std::vector<int32_t> suffix_ids;  // e.g. EOS
  DecoderKind decoder = DecoderKind::kByteLevel;
  int decoder_strip_leading_spaces = 0;  // SentencePiece: the space of the dummy prefix
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
};

struct EncodeOptions {
  bool add_special = true;    // add BOS/EOS as the tokenizer's post-processor says
  bool parse_special = true;  // match special tokens in the text (false: HF split_special_tokens)
};

class Tokenizer {
 public:
  // Loads path: a .gguf file, a tokenizer.json, or a folder holding tokenizer.json. Errors name the
  // file: kNotFound, kDataLoss (malformed), kUnimplemented (a tokenizer kind we do not support).
  static Result<std::unique_ptr<Tokenizer>> load(const std::string& path);
  // From the text of an HF tokenizer.json; source names it in messages.
  static Result<std::unique_ptr<Tokenizer>> from_hf_json(std::string_view json_text,
                                                         const std::string& source);
  // From the tokenizer.ggml.* metadata of an open GGUF file.
  static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& gguf);
  static Result<std::unique_ptr<Tokenizer>> from_spec(TokenizerSpec spec);

  // Text -> ids. Invalid UTF-8 in text is first replaced by U+FFFD (HF only accepts valid strings).
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Ids -> text, as HF decode(ids, skip_special_tokens). Out-of-range ids are skipped.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // The token's bytes as decode contributes them before joining (SentencePiece: "▁" already a
  // space, <0xNN> as the raw byte; byte-level: the raw bytes). Used by the incremental decoder.
  std::string token_bytes(int32_t id) const;
  bool is_byte_token(int32_t id) const;  // a SentencePiece <0xNN> token
  bool is_special(int32_t id) const;
  bool is_valid_id(int32_t id) const { return id >= 0 && id < vocab_size(); }

  int32_t vocab_size() const { return static_cast<int32_t>(id_to_text_.size()); }
  // The token's text as in the vocabulary file ("Ġthe", "▁the", "<|im_end|>").
  const std::string& id_to_token(int32_t id) const { return id_to_text_[id]; }
  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  const TokenizerSpec& spec() const { return spec_; }
  int32_t bos_id() const { return spec_.bos_id; }
  int32_t eos_id() const { return spec_.eos_id; }

 private:
  Tokenizer() = default;
  // Encodes one segment between added tokens; first = it starts the input.
  void encode_segment(std::string_view segment, bool first, std::vector<int32_t>* out) const;
  // Finds the leftmost-longest added token in text at or after pos; false if none.
  bool find_added(std::string_view text, size_t pos, bool parse_special, size_t* begin, size_t* end,
                  const AddedToken** token) const;

  TokenizerSpec spec_;
  std::vector<std::string> id_to_text_;   // vocabulary text of each id
  std::vector<std::string> id_to_bytes_;  // token_bytes() of each id
  std::vector<uint8_t> id_flags_;         // kFlagSpecial | kFlagByte
  std::vector<std::vector<int>>
      added_by_first_byte_;  // [256] -> indices into added_tokens, longest first
  bool needs_copy_ = false;  // normalizers or text-changing pre-tokenizers present
};

}  // namespace fs
