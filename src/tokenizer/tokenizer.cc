#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <deque>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace fs {
namespace {

constexpr uint8_t kFlagSpecial = 1;
constexpr uint8_t kFlagByte = 2;
constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

// "<0xNN>" -> NN (HF ByteFallback decoder), -1 otherwise.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int value = 0;
  for (char c : t.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  if (from.empty()) return std::string(s);
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(s.substr(pos, hit - pos)).append(to);
  }
  out.append(s.substr(pos));
  return out;
}

// HF's single_word rule: no word character (\w) right before or right after the match.
bool stands_alone(std::string_view text, size_t begin, size_t end) {
  uint32_t cp;
  size_t at;
  if (utf8::code_point_before(text, begin, &cp, &at) && utf8::is_word_char(cp)) return false;
  return !(utf8::code_point_at(text, end, &cp, &at) && utf8::is_word_char(cp));
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_spec(TokenizerSpec spec) {
  if (spec.model == nullptr) return invalid_argument("{}: tokenizer has no model", spec.source);
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  int32_t size = spec.model->vocab_size();
  for (const AddedToken& a : spec.added_tokens) {
    if (a.id < 0 || a.content.empty()) {
      return data_loss("{}: bad added token '{}' (id {})", spec.source, a.content, a.id);
    }
    size = std::max(size, a.id + 1);
  }
  t->id_to_text_.resize(size);
  t->id_to_bytes_.resize(size);
  t->id_flags_.assign(size, 0);
  const bool spm = spec.decoder == DecoderKind::kSentencePiece;
  for (int32_t id = 0; id < size; ++id) {
    const bool in_model = id < spec.model->vocab_size();
    t->id_to_text_[id] = id < static_cast<int32_t>(spec.vocab.size()) ? spec.vocab[id]
                         : in_model                                   ? spec.model->piece(id)
                                                                      : std::string();
    t->id_to_bytes_[id] = in_model ? spec.model->piece(id) : std::string();
  }
  for (const AddedToken& a : spec.added_tokens) {
    t->id_to_text_[a.id] = a.content;
    t->id_to_bytes_[a.id] = a.content;
    if (a.special) t->id_flags_[a.id] |= kFlagSpecial;
  }
  if (spm) {
    for (int32_t id = 0; id < size; ++id) {
      const int byte = parse_byte_token(t->id_to_bytes_[id]);
      if (byte >= 0) {
        t->id_to_bytes_[id] = std::string(1, static_cast<char>(byte));
        t->id_flags_[id] |= kFlagByte;
      } else {
        t->id_to_bytes_[id] = replace_all(t->id_to_bytes_[id], kMetaspace, " ");
      }
    }
  }
  t->added_by_first_byte_.assign(256, {});
  for (size_t i = 0; i < spec.added_tokens.size(); ++i) {
    const auto first = static_cast<uint8_t>(spec.added_tokens[i].content[0]);
    t->added_by_first_byte_[first].push_back(static_cast<int>(i));
  }
  for (auto& list : t->added_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&spec](int a, int b) {
      return spec.added_tokens[a].content.size() > spec.added_tokens[b].content.size();
    });
  }
  t->needs_copy_ = !spec.normalizers.empty();
  for (const PreTokenizerStep& step : spec.pre_tokenizers) {
    if (step.kind != PreTokenizerStep::Kind::kSplit) t->needs_copy_ = true;
  }
  t->spec_ = std::move(spec);
  return t;
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& a : spec_.added_tokens) {
    if (a.content == token) return a.id;
  }
  if (spec_.decoder ==
      DecoderKind::kByteLevel) {  // vocabulary text is in the byte-to-unicode alphabet
    std::string raw;
    for (size_t pos = 0; pos < token.size();) {
      size_t len = utf8::sequence_length(token, pos);
      if (len == 0) return -1;
      const int b = utf8::code_point_to_byte(utf8::decode_code_point(token, pos, len));
      if (b < 0) return spec_.model->find(token);
      raw.push_back(static_cast<char>(b));
      pos += len;
    }
    return spec_.model->find(raw);
  }
  return spec_.model->find(token);
}

bool Tokenizer::is_special(int32_t id) const {
  return is_valid_id(id) && (id_flags_[id] & kFlagSpecial) != 0;
}
bool Tokenizer::is_byte_token(int32_t id) const {
  return is_valid_id(id) && (id_flags_[id] & kFlagByte) != 0;
}
std::string Tokenizer::token_bytes(int32_t id) const {
  return is_valid_id(id) ? id_to_bytes_[id] : std::string();
}

bool Tokenizer::find_added(std::string_view text, size_t pos, bool parse_special, size_t* begin,
                           size_t* end, const AddedToken** token) const {
  if (spec_.added_tokens.empty()) return false;
  for (size_t p = pos; p < text.size(); ++p) {
    const auto& candidates = added_by_first_byte_[static_cast<uint8_t>(text[p])];
    for (int index : candidates) {
      const AddedToken& a = spec_.added_tokens[index];
      if (a.special && !parse_special) continue;
      if (text.compare(p, a.content.size(), a.content) != 0) continue;
      *begin = p;
      *end = p + a.content.size();
      *token = &a;
      return true;
    }
  }
  return false;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::string sanitized;
  if (!utf8::is_valid(text)) {
    utf8::append_lossy(text, &sanitized);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (options.add_special) ids.insert(ids.end(), spec_.prefix_ids.begin(), spec_.prefix_ids.end());
  size_t pos = 0;     // start of the text not yet encoded
  size_t search = 0;  // where to look for the next added token (past a rejected single_word match)
  while (pos < text.size()) {
    size_t begin = text.size(), end = text.size();
    const AddedToken* token = nullptr;
    find_added(text, search, options.parse_special, &begin, &end, &token);
    if (token != nullptr && token->single_word && !stands_alone(text, begin, end)) {
      search = end;  // as HF: that match is plain text; look again after it
      continue;
    }
    size_t seg_end = begin;
    if (token != nullptr && token->lstrip) {
      uint32_t cp;
      size_t start;
      while (seg_end > pos && utf8::code_point_before(text, seg_end, &cp, &start) && utf8::is_whitespace(cp)) {
        seg_end = std::max(start, pos);
      }
    }
    if (seg_end > pos) encode_segment(text.substr(pos, seg_end - pos), pos == 0, &ids);
    if (token == nullptr) break;
    ids.push_back(token->id);
    pos = end;
    if (token->rstrip) {
      uint32_t cp;
      size_t len;
      while (utf8::code_point_at(text, pos, &cp, &len) && utf8::is_whitespace(cp)) pos += len;
    }
    search = pos;
  }
  if (options.add_special) ids.insert(ids.end(), spec_.suffix_ids.begin(), spec_.suffix_ids.end());
  return ids;
}

void Tokenizer::encode_segment(std::string_view segment, bool first,
                               std::vector<int32_t>* out) const {
  std::vector<std::string_view> pieces{segment};
  std::vector<std::string_view> next;
  if (!needs_copy_) {  // fast path: only regex splits, pieces view the input
    for (const PreTokenizerStep& step : spec_.pre_tokenizers) {
      next.clear();
      for (std::string_view p : pieces) step.regex->split(p, step.remove_matches, &next);
      pieces.swap(next);
    }
    for (std::string_view p : pieces) spec_.model->encode_word(p, out);
    return;
  }
  std::deque<std::string> storage;  // owns the text of changed pieces (stable addresses)
  if (!spec_.normalizers.empty()) {
    std::string s(segment);
    for (const NormalizerStep& n : spec_.normalizers) {
      switch (n.kind) {
        case NormalizerStep::Kind::kPrepend:
          if (!s.empty()) s.insert(0, n.to);
          break;
        case NormalizerStep::Kind::kReplace:
          s = replace_all(s, n.from, n.to);
          break;
        case NormalizerStep::Kind::kNfc:
          s = utf8::nfc(s);
          break;
      }
    }
    pieces[0] = storage.emplace_back(std::move(s));
  }
  for (const PreTokenizerStep& step : spec_.pre_tokenizers) {
    next.clear();
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string_view p = pieces[i];
      switch (step.kind) {
        case PreTokenizerStep::Kind::kSplit:
          step.regex->split(p, step.remove_matches, &next);
          break;
        case PreTokenizerStep::Kind::kMetaspace: {
          std::string s = replace_all(p, " ", kMetaspace);
          const bool prepend = step.prepend_always || (step.prepend_first && first && i == 0);
          if (prepend && s.compare(0, kMetaspace.size(), kMetaspace) != 0) s.insert(0, kMetaspace);
          next.push_back(storage.emplace_back(std::move(s)));
          break;
        }
        case PreTokenizerStep::Kind::kByteLevelPrefixSpace:
          if (!p.empty() && p[0] != ' ') {
            next.push_back(storage.emplace_back(std::string(" ").append(p)));
          } else {
            next.push_back(p);
          }
          break;
      }
    }
    pieces.swap(next);
  }
  for (std::string_view p : pieces) spec_.model->encode_word(p, out);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string joined;
  std::string out;
  switch (spec_.decoder) {
    case DecoderKind::kByteLevel:
    case DecoderKind::kConcat:
      for (int32_t id : ids) {
        if (!is_valid_id(id) || (skip_special_tokens && is_special(id))) continue;
        joined.append(id_to_bytes_[id]);
      }
      utf8::append_lossy(joined, &out);
      return out;
    case DecoderKind::kSentencePiece: {
      size_t run_bytes = 0;  // trailing <0xNN> run in joined, not yet checked
      auto flush_run = [&] {
        const std::string_view run = std::string_view(joined).substr(joined.size() - run_bytes);
        if (!utf8::is_valid(run)) {
          joined.resize(joined.size() - run_bytes);
          for (size_t i = 0; i < run_bytes; ++i) joined.append(utf8::kReplacementChar);
        }
        run_bytes = 0;
      };
      for (int32_t id : ids) {
        if (!is_valid_id(id) || (skip_special_tokens && is_special(id))) continue;
        if (is_byte_token(id)) {
          ++run_bytes;
        } else {
          flush_run();
        }
        joined.append(id_to_bytes_[id]);
      }
      flush_run();
      size_t cut = 0;
      while (cut < joined.size() && cut < static_cast<size_t>(spec_.decoder_strip_leading_spaces) &&
             joined[cut] == ' ') {
        ++cut;
      }
      utf8::append_lossy(std::string_view(joined).substr(cut), &out);
      return out;
    }
  }
  FS_CHECK(false, "bad decoder kind");
  return out;
}

}  // namespace fs
