// Tokenizer::from_hf_json: the parts of HF tokenizer.json that byte-level and SentencePiece-style
// BPE tokenizers use (model.type BPE; normalizers Prepend/Replace/NFC; pre-tokenizers ByteLevel,
// Split, Digits, Metaspace, Sequence; post-processors TemplateProcessing, ByteLevel, Bert/Roberta;
// decoders ByteLevel, Metaspace, Replace/ByteFallback/Fuse/Strip). Anything else is kUnimplemented,
// naming it.
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace fs {
namespace {

using Json = nlohmann::json;

// The ByteLevel pre-tokenizer's regex (HF pre_tokenizers/byte_level.rs).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string str_or(const Json& j, const char* key, const std::string& fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}
// j[key], or null when j is not an object or has no such key (const operator[] asserts instead).
const Json& member(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}
// A token id field: a JSON integer in [0, 2^31). Anything else (a float, a string, a negative or
// huge number) throws Json::type_error, which from_hf_json turns into kDataLoss; get<int32_t>() on
// a float would convert it, undefined behaviour out of range (found by tokenizer_json_fuzz).
int32_t json_id(const Json& v) {
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= INT32_MAX
                                               : v.is_number_integer() && v.get<int64_t>() >= 0 &&
                                                     v.get<int64_t>() <= INT32_MAX;
  if (!in_range)
    throw Json::type_error::create(302, "a token id must be an integer in [0, 2^31)", &v);
  return static_cast<int32_t>(v.get<int64_t>());
}
bool bool_or(const Json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

bool uses_byte_level(const Json& j) {
  if (j.is_object()) {
    if (str_or(j, "type", "") == "ByteLevel") return true;
    for (const auto& [key, value] : j.items()) {
      if (value.is_structured() && uses_byte_level(value)) return true;
    }
  } else if (j.is_array()) {
    for (const auto& value : j) {
      if (uses_byte_level(value)) return true;
    }
  }
  return false;
}

class HfLoader {
 public:
  HfLoader(const Json& root, const std::string& source) : root_(root), source_(source) {}

  Result<std::unique_ptr<Tokenizer>> load() {
    spec_.source = source_;
    const Json& model = root_.at("model");
    if (str_or(model, "type", "BPE") != "BPE") {
      return unimplemented("{}: tokenizer model type '{}' is not supported (only BPE)", source_,
                           str_or(model, "type", ""));
    }
    byte_level_ = uses_byte_level(member(root_, "pre_tokenizer")) ||
                  uses_byte_level(member(root_, "decoder"));
    FS_RETURN_IF_ERROR(load_model(model));
    FS_RETURN_IF_ERROR(load_added_tokens());
    FS_RETURN_IF_ERROR(load_normalizer(member(root_, "normalizer")));
    FS_RETURN_IF_ERROR(load_pre_tokenizer(member(root_, "pre_tokenizer")));
    FS_RETURN_IF_ERROR(load_post_processor(member(root_, "post_processor")));
    spec_.decoder = byte_level_ ? DecoderKind::kByteLevel : DecoderKind::kConcat;
    FS_RETURN_IF_ERROR(load_decoder(member(root_, "decoder")));
    if (!spec_.prefix_ids.empty()) spec_.bos_id = spec_.prefix_ids.front();
    if (!spec_.suffix_ids.empty()) spec_.eos_id = spec_.suffix_ids.back();
    return Tokenizer::from_spec(std::move(spec_));
  }

 private:
  // Tokens the file declares: model.vocab's entries plus added_tokens.
  int64_t declared_tokens(size_t vocab_entries) const {
    auto it = root_.find("added_tokens");
    const size_t added = it != root_.end() && it->is_array() ? it->size() : 0;
    return static_cast<int64_t>(vocab_entries + added);
  }
  // Ids must be below the declared count plus a little slack for holes.
  int64_t max_token_id(size_t vocab_entries) const { return declared_tokens(vocab_entries) + 1024; }

  Status load_model(const Json& model) {
    if (!str_or(model, "continuing_subword_prefix", "").empty() ||
        !str_or(model, "end_of_word_suffix", "").empty()) {
      return unimplemented("{}: BPE continuing_subword_prefix/end_of_word_suffix", source_);
    }
    const Json& vocab = model.at("vocab");
    if (!vocab.is_object()) return data_loss("{}: model.vocab is not an object", source_);
    // Ids index arrays sized by the largest one, so they must stay near the number of tokens the
    // file declares (real vocabularies are dense): a 3 KB file with the id 15,555,592 made the
    // loader allocate gigabytes (found by tokenizer_json_fuzz).
    const int64_t id_limit = max_token_id(vocab.size());
    for (const auto& [text, id] : vocab.items()) {
      const int64_t i = json_id(id);
      if (i >= id_limit) {
        return data_loss("{}: id {} in model.vocab is out of range: {} tokens are declared, ids must be below {}",
                         source_, i, declared_tokens(vocab.size()), id_limit);
      }
      if (static_cast<size_t>(i) >= spec_.vocab.size()) spec_.vocab.resize(i + 1);
      spec_.vocab[i] = text;
    }
    std::vector<std::string> pieces(spec_.vocab.size());
    for (size_t i = 0; i < pieces.size(); ++i) {
      pieces[i] = byte_level_ ? utf8::byte_level_to_raw(spec_.vocab[i]) : spec_.vocab[i];
    }
    std::vector<std::pair<std::string, std::string>> merges;
    if (auto it = model.find("merges"); it != model.end() && it->is_array()) {
      merges.reserve(it->size());
      for (const Json& m : *it) {
        std::string left, right;
        if (m.is_string()) {
          const std::string s = m.get<std::string>();
          const size_t space = s.find(' ', 1);
          if (space == std::string::npos) return data_loss("{}: bad merge '{}'", source_, s);
          left = s.substr(0, space);
          right = s.substr(space + 1);
        } else if (m.is_array() && m.size() == 2) {
          left = m[0].get<std::string>();
          right = m[1].get<std::string>();
        } else {
          return data_loss("{}: bad merge {}", source_, m.dump());
        }
        if (byte_level_) {
          left = utf8::byte_level_to_raw(left);
          right = utf8::byte_level_to_raw(right);
        }
        merges.emplace_back(std::move(left), std::move(right));
      }
    }
    BpeOptions options;
    options.byte_level = byte_level_;
    options.byte_fallback = bool_or(model, "byte_fallback", false);
    options.fuse_unk = bool_or(model, "fuse_unk", false);
    options.ignore_merges = bool_or(model, "ignore_merges", false);
    const std::string unk = str_or(model, "unk_token", "");
    if (!unk.empty() && vocab.contains(unk)) options.unk_id = json_id(vocab[unk]);
    spec_.unk_id = options.unk_id;
    FS_ASSIGN_OR_RETURN(spec_.model, BpeModel::create(std::move(pieces), merges, options));
    return Status::ok();
  }

  Status load_added_tokens() {
    auto it = root_.find("added_tokens");
    if (it == root_.end() || !it->is_array()) return Status::ok();
    for (const Json& a : *it) {
      AddedToken t;
      t.content = a.at("content").get<std::string>();
      t.id = json_id(a.at("id"));
      if (t.id >= max_token_id(spec_.vocab.size())) {
        return data_loss("{}: added token id {} is out of range: {} tokens are declared, ids must be below {}",
                         source_, t.id, declared_tokens(spec_.vocab.size()),
                         max_token_id(spec_.vocab.size()));
      }
      t.special = bool_or(a, "special", false);
      t.lstrip = bool_or(a, "lstrip", false);
      t.rstrip = bool_or(a, "rstrip", false);
      t.single_word = bool_or(a, "single_word", false);
      if (t.content.empty()) continue;
      spec_.added_tokens.push_back(std::move(t));
    }
    return Status::ok();
  }

  Status load_normalizer(const Json& n) {
    if (n.is_null()) return Status::ok();
    const std::string type = str_or(n, "type", "");
    if (type == "Sequence") {
      for (const Json& child : n.at("normalizers")) FS_RETURN_IF_ERROR(load_normalizer(child));
    } else if (type == "Prepend") {
      spec_.normalizers.push_back({NormalizerStep::Kind::kPrepend, "", n.at("prepend")});
    } else if (type == "Replace") {
      const Json& pattern = n.at("pattern");
      if (!pattern.contains("String")) {
        return unimplemented("{}: Replace normalizer with a regex pattern", source_);
      }
      spec_.normalizers.push_back(
          {NormalizerStep::Kind::kReplace, member(pattern, "String"), n.at("content")});
    } else if (type == "NFC") {
      spec_.normalizers.push_back({NormalizerStep::Kind::kNfc, "", ""});
    } else {
      return unimplemented("{}: normalizer '{}' is not supported", source_, type);
    }
    return Status::ok();
  }

  Status add_split(const std::string& pattern, bool literal, bool remove_matches) {
    PreTokenizerStep step;
    FS_ASSIGN_OR_RETURN(std::unique_ptr<RegexSplitter> regex,
                        RegexSplitter::compile(pattern, literal));
    step.regex = std::move(regex);
    step.remove_matches = remove_matches;
    spec_.pre_tokenizers.push_back(std::move(step));
    return Status::ok();
  }

  Status load_pre_tokenizer(const Json& p) {
    if (p.is_null()) return Status::ok();
    const std::string type = str_or(p, "type", "");
    if (type == "Sequence") {
      for (const Json& child : p.at("pretokenizers")) FS_RETURN_IF_ERROR(load_pre_tokenizer(child));
    } else if (type == "ByteLevel") {
      if (bool_or(p, "add_prefix_space", false)) {
        PreTokenizerStep step;
        step.kind = PreTokenizerStep::Kind::kByteLevelPrefixSpace;
        spec_.pre_tokenizers.push_back(std::move(step));
      }
      if (bool_or(p, "use_regex", true)) FS_RETURN_IF_ERROR(add_split(kGpt2Pattern, false, false));
    } else if (type == "Digits") {
      FS_RETURN_IF_ERROR(
          add_split(bool_or(p, "individual_digits", false) ? "\\p{N}" : "\\p{N}+", false, false));
    } else if (type == "Split") {
      const std::string behavior = str_or(p, "behavior", "Isolated");
      if ((behavior != "Isolated" && behavior != "Removed") || bool_or(p, "invert", false)) {
        return unimplemented("{}: Split behavior '{}' (invert {}) is not supported", source_,
                             behavior, bool_or(p, "invert", false));
      }
      const Json& pattern = p.at("pattern");
      const bool literal = pattern.contains("String");
      FS_RETURN_IF_ERROR(add_split(literal ? member(pattern, "String") : pattern.at("Regex"),
                                   literal, behavior == "Removed"));
    } else if (type == "Metaspace") {
      if (str_or(p, "replacement", "\xE2\x96\x81") != "\xE2\x96\x81") {
        return unimplemented("{}: Metaspace replacement other than U+2581", source_);
      }
      PreTokenizerStep step;
      step.kind = PreTokenizerStep::Kind::kMetaspace;
      std::string scheme = str_or(p, "prepend_scheme", "");
      if (scheme.empty()) scheme = bool_or(p, "add_prefix_space", true) ? "always" : "never";
      step.prepend_always = scheme == "always";
      step.prepend_first = scheme == "first";
      spec_.pre_tokenizers.push_back(std::move(step));
      if (bool_or(p, "split", true)) {  // "▁" merged with the piece after it
        FS_RETURN_IF_ERROR(add_split("\xE2\x96\x81[^\xE2\x96\x81]*", false, false));
      }
    } else {
      return unimplemented("{}: pre-tokenizer '{}' is not supported", source_, type);
    }
    return Status::ok();
  }

  Result<int32_t> special_id(const Json& special_tokens, const std::string& name) {
    if (special_tokens.is_object() && special_tokens.contains(name)) {
      const Json& ids = special_tokens[name].at("ids");
      if (ids.is_array() && ids.size() == 1) return json_id(ids[0]);
    }
    for (const AddedToken& a : spec_.added_tokens) {
      if (a.content == name) return a.id;
    }
    const int32_t id = spec_.model->find(byte_level_ ? utf8::byte_level_to_raw(name) : name);
    if (id < 0)
      return data_loss("{}: post-processor token '{}' is not in the vocabulary", source_, name);
    return id;
  }

  Status load_post_processor(const Json& p) {
    if (p.is_null()) return Status::ok();
    const std::string type = str_or(p, "type", "");
    if (type == "Sequence") {
      for (const Json& child : p.at("processors")) FS_RETURN_IF_ERROR(load_post_processor(child));
    } else if (type == "ByteLevel") {
      // offsets only
    } else if (type == "TemplateProcessing") {
      bool seen_sequence = false;
      for (const Json& item : p.at("single")) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.contains("SpecialToken")) {
          FS_ASSIGN_OR_RETURN(int32_t id, special_id(member(p, "special_tokens"),
                                                     member(item, "SpecialToken").at("id")));
          (seen_sequence ? spec_.suffix_ids : spec_.prefix_ids).push_back(id);
        }
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      spec_.prefix_ids.push_back(json_id(p.at("cls").at(1)));
      spec_.suffix_ids.push_back(json_id(p.at("sep").at(1)));
    } else {
      return unimplemented("{}: post-processor '{}' is not supported", source_, type);
    }
    return Status::ok();
  }

  Status load_decoder(const Json& d) {
    if (d.is_null()) return Status::ok();
    const std::string type = str_or(d, "type", "");
    if (type == "Sequence") {
      for (const Json& child : d.at("decoders")) FS_RETURN_IF_ERROR(load_decoder(child));
    } else if (type == "ByteLevel") {
      spec_.decoder = DecoderKind::kByteLevel;
    } else if (type == "Metaspace") {
      spec_.decoder = DecoderKind::kSentencePiece;
      std::string scheme = str_or(d, "prepend_scheme", "");
      if (scheme.empty()) scheme = bool_or(d, "add_prefix_space", true) ? "always" : "never";
      spec_.decoder_strip_leading_spaces = scheme == "never" ? 0 : 1;
    } else if (type == "Replace" || type == "ByteFallback" || type == "Fuse") {
      spec_.decoder = DecoderKind::kSentencePiece;
    } else if (type == "Strip") {
      if (str_or(d, "content", " ") != " " || d.value("stop", 0) != 0) {
        return unimplemented("{}: Strip decoder other than leading spaces", source_);
      }
      spec_.decoder_strip_leading_spaces = d.value("start", 0);
    } else {
      return unimplemented("{}: decoder '{}' is not supported", source_, type);
    }
    return Status::ok();
  }

  const Json& root_;
  const std::string& source_;
  TokenizerSpec spec_;
  bool byte_level_ = false;
};

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_hf_json(std::string_view json_text,
                                                           const std::string& source) {
  Json root = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object() || !root.contains("model")) {
    return data_loss("{}: not a tokenizer.json (bad JSON or no \"model\")", source);
  }
  try {
    return HfLoader(root, source).load();
  } catch (const Json::exception& e) {  // a field of the wrong type or missing
    return data_loss("{}: malformed tokenizer.json: {}", source, e.what());
  }
}

}  // namespace fs
