// The BPE model shared by byte-level BPE (GPT-2, Llama 3, SmolLM2, Qwen2) and SentencePiece-style
// BPE (Llama 2, Mistral): a vocabulary, merges by rank, and the merge loop of HF `tokenizers`
// (models/bpe/word.rs: a min-heap of (rank, position), so equal ranks merge left to right), with a
// cache of encoded words. Immutable after create() apart from the cache: encode_word is
// thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/status.h"

namespace fs {

struct BpeOptions {
  // true: pieces are raw bytes and a word starts as one symbol per byte (GPT-2 byte-level).
  // false: a word starts as one symbol per UTF-8 character; characters not in the vocabulary become
  // <0xNN> tokens (byte_fallback) or the unknown token.
  bool byte_level = true;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a word that is itself in the vocabulary is emitted whole (Llama 3)
  int32_t unk_id = -1;
};

class BpeModel {
 public:
  // pieces[id] is the token's text: raw bytes for byte-level vocabularies (already mapped back from
  // the GPT-2 byte-to-unicode alphabet), the plain text (with "▁") otherwise. merges are (left,
  // right) pieces in rank order; a merge whose parts or result are not in the vocabulary is
  // skipped.
  static Result<std::unique_ptr<BpeModel>> create(
      std::vector<std::string> pieces,
      const std::vector<std::pair<std::string, std::string>>& merges, const BpeOptions& options);

  // Appends the ids of one pre-tokenized word (valid UTF-8 unless byte_level).
  void encode_word(std::string_view word, std::vector<int32_t>* out) const;

  int32_t find(std::string_view piece) const;  // -1 when absent
  const std::string& piece(int32_t id) const { return pieces_[id]; }
  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  const BpeOptions& options() const { return options_; }
  size_t num_merges() const { return num_merges_; }

 private:
  struct MergeEntry {
    uint64_t key = ~0ull;  // (left << 32) | right; ~0 = empty slot
    int32_t rank = 0;
    int32_t new_id = 0;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  const MergeEntry* find_merge(int32_t left, int32_t right) const;
  void insert_merge(int32_t left, int32_t right, int32_t rank, int32_t new_id);
  void merge_word(std::string_view word, std::vector<int32_t>* out) const;

  BpeOptions options_;
  std::vector<std::string> pieces_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> piece_to_id_;
  std::vector<MergeEntry> merge_table_;  // open addressing, power-of-two size
  size_t num_merges_ = 0;
  int32_t byte_ids_[256];           // byte-level: id of each single-byte piece (-1 if absent)
  int32_t byte_fallback_ids_[256];  // id of "<0xNN>" (-1 if absent)

  static constexpr size_t kMaxCachedWordBytes = 64;
  static constexpr size_t kMaxCacheEntries = 1 << 16;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace fs
