#include "tokenizer/bpe_model.h"

#include <algorithm>

#include <fmt/format.h>

#include "tokenizer/utf8.h"

namespace fs {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

size_t hash_key(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdull;
  key ^= key >> 33;
  return static_cast<size_t>(key);
}

// One symbol of the word being merged (HF word.rs Symbol).
struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  int32_t len;  // bytes; 0 = merged away
};

// A queued merge: min rank first, then min position (HF word.rs Merge ordering).
struct QueuedMerge {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  bool operator<(const QueuedMerge& o) const {  // "less" for a max-heap: reversed
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

Result<std::unique_ptr<BpeModel>> BpeModel::create(
    std::vector<std::string> pieces, const std::vector<std::pair<std::string, std::string>>& merges,
    const BpeOptions& options) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  m->options_ = options;
  m->pieces_ = std::move(pieces);
  m->piece_to_id_.reserve(m->pieces_.size() * 2);
  for (size_t id = 0; id < m->pieces_.size(); ++id) {
    m->piece_to_id_.emplace(m->pieces_[id],
                            static_cast<int32_t>(id));  // first id wins on duplicates
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    m->byte_ids_[b] = m->find(std::string_view(&c, 1));
    m->byte_fallback_ids_[b] = m->find(fmt::format("<0x{:02X}>", b));
  }
  size_t capacity = 16;
  while (capacity < merges.size() * 2) capacity <<= 1;
  m->merge_table_.assign(capacity, MergeEntry{});
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const int32_t left = m->find(merges[rank].first);
    const int32_t right = m->find(merges[rank].second);
    joined.assign(merges[rank].first).append(merges[rank].second);
    const int32_t merged = m->find(joined);
    if (left < 0 || right < 0 || merged < 0) continue;
    if (m->find_merge(left, right) != nullptr) continue;  // HF keeps the first (lowest) rank
    m->insert_merge(left, right, static_cast<int32_t>(rank), merged);
  }
  return m;
}

int32_t BpeModel::find(std::string_view piece) const {
  auto it = piece_to_id_.find(piece);
  return it == piece_to_id_.end() ? -1 : it->second;
}

const BpeModel::MergeEntry* BpeModel::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  const size_t mask = merge_table_.size() - 1;
  for (size_t i = hash_key(key) & mask;; i = (i + 1) & mask) {
    const MergeEntry& e = merge_table_[i];
    if (e.key == key) return &e;
    if (e.key == ~0ull) return nullptr;
  }
}

void BpeModel::insert_merge(int32_t left, int32_t right, int32_t rank, int32_t new_id) {
  const uint64_t key = pair_key(left, right);
  const size_t mask = merge_table_.size() - 1;
  size_t i = hash_key(key) & mask;
  while (merge_table_[i].key != ~0ull) i = (i + 1) & mask;
  merge_table_[i] = MergeEntry{key, rank, new_id};
  ++num_merges_;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    const int32_t id = find(word);
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out->size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out->begin() + start, out->end()));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>* out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id, size_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, n - 1, n + 1, static_cast<int32_t>(len)});
  };
  if (options_.byte_level) {
    for (char c : word) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        add(id, 1);
      } else if (options_.unk_id >= 0) {
        add(options_.unk_id, 1);
      }
    }
  } else {
    // HF models/bpe/model.rs merge_word: pending unknowns are flushed only before a known character
    // (so byte-fallback tokens may precede an earlier unknown; we keep that order for exactness).
    int32_t unk_len = 0;
    for (size_t pos = 0; pos < word.size();) {
      size_t len = utf8::sequence_length(word, pos);
      if (len == 0) len = 1;
      const std::string_view ch = word.substr(pos, len);
      pos += len;
      const int32_t id = find(ch);
      if (id >= 0) {
        if (unk_len > 0) add(options_.unk_id, unk_len);
        unk_len = 0;
        add(id, len);
        continue;
      }
      if (options_.byte_fallback) {
        bool all = true;
        for (char c : ch) all = all && byte_fallback_ids_[static_cast<uint8_t>(c)] >= 0;
        if (all) {
          for (char c : ch) add(byte_fallback_ids_[static_cast<uint8_t>(c)], 1);
          continue;
        }
      }
      if (options_.unk_id >= 0) {
        if (unk_len > 0 && !options_.fuse_unk) {
          add(options_.unk_id, unk_len);
          unk_len = 0;
        }
        unk_len += static_cast<int32_t>(len);
      }
    }
    if (unk_len > 0) add(options_.unk_id, unk_len);
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::vector<QueuedMerge> queue;
  queue.reserve(symbols.size());
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeEntry* m = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push_back(QueuedMerge{m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  std::make_heap(queue.begin(), queue.end());
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end());
    const QueuedMerge top = queue.back();
    queue.pop_back();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    const MergeEntry* m = find_merge(cur.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeEntry* pm = find_merge(symbols[cur.prev].id, cur.id)) {
        queue.push_back(QueuedMerge{pm->rank, cur.prev, pm->new_id});
        std::push_heap(queue.begin(), queue.end());
      }
    }
    if (cur.next >= 0) {
      if (const MergeEntry* nm = find_merge(cur.id, symbols[cur.next].id)) {
        queue.push_back(QueuedMerge{nm->rank, top.pos, nm->new_id});
        std::push_heap(queue.begin(), queue.end());
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out->push_back(symbols[i].id);
}

}  // namespace fs
