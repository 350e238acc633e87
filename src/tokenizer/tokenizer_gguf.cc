// Tokenizer::from_gguf: builds the same tokenizer HF transformers builds from a GGUF file
// (integrations/gguf/gguf_tokenizer_mapping.py), so ids match HF: "gpt2" -> byte-level BPE with the
// file's merges and the split regex of tokenizer.ggml.pre; "llama" -> SentencePiece-style BPE with
// Metaspace(prepend_scheme first), byte fallback, and merges recovered from the scores
// (generate_merges). CONTROL tokens are special added tokens, USER_DEFINED ones plain added tokens.
#include <algorithm>
#include <map>

#include "core/log.h"
#include "model/format/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace fs {
namespace {

constexpr const char* kGpt2Split =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr int kTokenTypeControl = 3;
constexpr int kTokenTypeUserDefined = 4;

// Regex splits for a tokenizer.ggml.pre name, in order (llama.cpp llama-vocab.cpp).
std::vector<const char*> pre_splits(const std::string& pre) {
  static const std::map<std::string, std::vector<const char*>> table = {
      {"default", {kGpt2Split}},
      {"gpt2", {kGpt2Split}},
      {"gpt-2", {kGpt2Split}},
      {"llama3", {kLlama3Split}},
      {"llama-v3", {kLlama3Split}},
      {"llama-bpe", {kLlama3Split}},
      {"falcon3", {kLlama3Split}},
      {"smaug-bpe", {kLlama3Split}},
      {"dbrx", {kLlama3Split}},
      {"qwen2", {kQwen2Split}},
      {"deepseek-r1-qwen", {kQwen2Split}},
      {"smollm", {"\\p{N}", kGpt2Split}},
      {"starcoder", {"\\p{N}", kGpt2Split}},
      {"refact", {"\\p{N}", kGpt2Split}},
  };
  auto it = table.find(pre);
  if (it != table.end()) return it->second;
  log_warn("tokenizer.ggml.pre '{}' unknown: using the GPT-2 split", pre);
  return {kGpt2Split};
}

bool uses_llama3_merges(const std::string& pre) {
  return pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" ||
         pre == "smaug-bpe" || pre == "dbrx";
}

bool in_byte_alphabet(const std::string& text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = utf8::sequence_length(text, pos);
    if (len == 0 || utf8::code_point_to_byte(utf8::decode_code_point(text, pos, len)) < 0) {
      return false;
    }
    pos += len;
  }
  return true;
}

// transformers tokenization_utils_base.generate_merges(vocab, vocab_scores): every split of every
// token into two vocabulary tokens, best score first (ties: longer left, longer right, file order).
std::vector<std::pair<std::string, std::string>> generate_merges(
    const std::vector<std::string>& tokens, const std::vector<double>& scores) {
  std::unordered_map<std::string_view, int32_t> vocab;  // last id wins, as a Python dict
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int32_t>(i);
  struct Candidate {
    std::string_view left, right;
    double score;
    int32_t left_chars, right_chars;
  };
  std::vector<Candidate> all;
  std::vector<std::pair<std::pair<int32_t, int32_t>, Candidate>> local;
  std::unordered_map<std::string_view, bool> seen;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string_view t = tokens[i];
    if (!seen.emplace(t, true).second) continue;  // dict keys are unique
    const double score = vocab[t] < static_cast<int32_t>(scores.size()) ? scores[vocab[t]] : 0.0;
    local.clear();
    std::vector<size_t> bounds;  // code point boundaries
    for (size_t pos = 0; pos < t.size();) {
      size_t len = utf8::sequence_length(t, pos);
      if (len == 0) len = 1;
      pos += len;
      bounds.push_back(pos);
    }
    const auto num_chars = static_cast<int32_t>(bounds.size());
    for (int32_t k = 0; k + 1 < num_chars; ++k) {
      const std::string_view l = t.substr(0, bounds[k]);
      const std::string_view r = t.substr(bounds[k]);
      auto li = vocab.find(l);
      auto ri = vocab.find(r);
      if (li == vocab.end() || ri == vocab.end()) continue;
      local.push_back({{li->second, ri->second}, Candidate{l, r, score, k + 1, num_chars - k - 1}});
    }
    std::stable_sort(local.begin(), local.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [key, c] : local) all.push_back(c);
  }
  std::stable_sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
    return a.right_chars > b.right_chars;
  });
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(all.size());
  for (const Candidate& c : all) merges.emplace_back(std::string(c.left), std::string(c.right));
  return merges;
}

int32_t optional_id(const GgufFile& g, const char* key) {
  const GgufValue* v = g.find(key);
  if (v == nullptr) return -1;
  return static_cast<int32_t>(v->as_int().value_or(-1));
}

bool optional_bool(const GgufFile& g, const char* key, bool fallback) {
  const GgufValue* v = g.find(key);
  return v == nullptr ? fallback : v->as_bool().value_or(fallback);
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& gguf) {
  const std::string& source = gguf.path();
  FS_ASSIGN_OR_RETURN(std::string model_type, gguf.get_string("tokenizer.ggml.model"));
  const bool byte_level = model_type == "gpt2";
  if (!byte_level && model_type != "llama") {
    return unimplemented("{}: tokenizer.ggml.model '{}' is not supported (gpt2, llama)", source,
                         model_type);
  }
  TokenizerSpec spec;
  spec.source = source;
  FS_ASSIGN_OR_RETURN(spec.vocab, gguf.get_string_array("tokenizer.ggml.tokens"));
  const size_t n = spec.vocab.size();
  std::vector<int64_t> types;
  if (gguf.find("tokenizer.ggml.token_type") != nullptr) {
    FS_ASSIGN_OR_RETURN(types, gguf.get_int_array("tokenizer.ggml.token_type"));
  }
  std::vector<double> scores;
  if (gguf.find("tokenizer.ggml.scores") != nullptr) {
    FS_ASSIGN_OR_RETURN(scores, gguf.get_float_array("tokenizer.ggml.scores"));
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (gguf.find("tokenizer.ggml.merges") != nullptr) {
    FS_ASSIGN_OR_RETURN(std::vector<std::string> lines,
                        gguf.get_string_array("tokenizer.ggml.merges"));
    merges.reserve(lines.size());
    for (const std::string& line : lines) {
      const size_t space = line.find(' ', 1);
      if (space == std::string::npos) return data_loss("{}: bad merge '{}'", source, line);
      merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    }
  } else if (byte_level) {
    return data_loss("{}: gpt2 tokenizer without tokenizer.ggml.merges", source);
  } else {
    merges = generate_merges(spec.vocab, scores);
  }
  std::vector<std::string> pieces = spec.vocab;
  if (byte_level) {
    for (auto& p : pieces) p = utf8::byte_level_to_raw(p);
    for (auto& [l, r] : merges) {
      l = utf8::byte_level_to_raw(l);
      r = utf8::byte_level_to_raw(r);
    }
  }
  spec.bos_id = optional_id(gguf, "tokenizer.ggml.bos_token_id");
  spec.eos_id = optional_id(gguf, "tokenizer.ggml.eos_token_id");
  spec.unk_id = optional_id(gguf, "tokenizer.ggml.unknown_token_id");
  spec.pad_id = optional_id(gguf, "tokenizer.ggml.padding_token_id");
  for (int32_t* id : {&spec.bos_id, &spec.eos_id, &spec.unk_id, &spec.pad_id}) {
    if (*id >= static_cast<int32_t>(n))
      return data_loss("{}: special token id {} >= vocab size {}", source, *id, n);
  }
  BpeOptions options;
  options.byte_level = byte_level;
  options.byte_fallback = !byte_level;
  options.fuse_unk = !byte_level;
  std::string pre = "default";
  if (const GgufValue* v = gguf.find("tokenizer.ggml.pre"); v != nullptr && v->as_string()) {
    pre = *v->as_string();
  }
  // Llama 3's own tokenizer.json has ignore_merges (a word in the vocabulary is one token), and
  // llama.cpp applies it; transformers' GGUF conversion drops it. We follow the model's tokenizer:
  // checked against llama.cpp's ggml-vocab-llama-bpe.gguf.inp/.out test strings.
  options.ignore_merges = byte_level && uses_llama3_merges(pre);
  FS_ASSIGN_OR_RETURN(spec.model, BpeModel::create(std::move(pieces), merges, options));

  std::vector<bool> added(n, false);
  for (size_t i = 0; i < n && i < types.size(); ++i) {
    const std::string& text = spec.vocab[i];
    if (text.empty()) continue;
    // A CONTROL token outside the byte alphabet in a byte-level vocabulary is a llama.cpp mislabel
    // that transformers skips; so do we.
    if (types[i] == kTokenTypeControl && !(byte_level && !in_byte_alphabet(text))) {
      spec.added_tokens.push_back({text, static_cast<int32_t>(i), true, false, false});
      added[i] = true;
    } else if (types[i] == kTokenTypeUserDefined) {
      spec.added_tokens.push_back({text, static_cast<int32_t>(i), false, false, false});
      added[i] = true;
    }
  }
  // transformers makes bos/eos/unk/pad special tokens too.
  for (int32_t id : {spec.bos_id, spec.eos_id, spec.unk_id, spec.pad_id}) {
    if (id >= 0 && !added[id] && !spec.vocab[id].empty()) {
      spec.added_tokens.push_back({spec.vocab[id], id, true, false, false});
      added[id] = true;
    }
  }
  if (byte_level) {
    for (const char* pattern : pre_splits(pre)) {
      PreTokenizerStep step;
      FS_ASSIGN_OR_RETURN(std::unique_ptr<RegexSplitter> regex,
                          RegexSplitter::compile(pattern, false));
      step.regex = std::move(regex);
      spec.pre_tokenizers.push_back(std::move(step));
    }
    spec.decoder = DecoderKind::kByteLevel;
  } else {
    const bool add_space_prefix = optional_bool(gguf, "tokenizer.ggml.add_space_prefix", true);
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::Kind::kMetaspace;
    step.prepend_first = add_space_prefix;
    spec.pre_tokenizers.push_back(std::move(step));
    spec.decoder = DecoderKind::kSentencePiece;
    spec.decoder_strip_leading_spaces = add_space_prefix ? 1 : 0;
  }
  if (optional_bool(gguf, "tokenizer.ggml.add_bos_token", !byte_level) && spec.bos_id >= 0) {
    spec.prefix_ids.push_back(spec.bos_id);
  }
  if (optional_bool(gguf, "tokenizer.ggml.add_eos_token", false) && spec.eos_id >= 0) {
    spec.suffix_ids.push_back(spec.eos_id);
  }
  return from_spec(std::move(spec));
}

}  // namespace fs
