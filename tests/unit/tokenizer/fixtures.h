// Shared by the tokenizer tests: the committed fixtures of tests/fixtures/tokenizer/ (built by
// scripts/make_tokenizer_fixtures.py) and gzip reading.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace fs::testing {

inline std::string fixture_path(const std::string& name) {
  return std::string(FASTSERVE_FIXTURES_DIR) + "/tokenizer/" + name;
}

// The whole (decompressed) content of a .gz file; empty on error.
inline std::string read_gz(const std::string& path) {
  std::string out;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, n);
  gzclose(f);
  return out;
}

// One corpus string with HF's ids for SmolLM2 (a) and llama-spm (b), and HF's decode of them.
struct CorpusEntry {
  std::string text;
  std::vector<int32_t> ids_a, ids_b;
  std::string decoded_a, decoded_b;
};

// The corpus; FASTSERVE_TOKENIZER_CORPUS_LIMIT=N keeps every k-th entry so that about N remain (for
// sanitizer builds).
inline const std::vector<CorpusEntry>& corpus() {
  static const std::vector<CorpusEntry> entries = [] {
    std::vector<CorpusEntry> all;
    const std::string text = read_gz(fixture_path("corpus.jsonl.gz"));
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      auto j = nlohmann::json::parse(text.substr(pos, end - pos), nullptr, false);
      pos = end + 1;
      if (!j.is_object()) continue;
      CorpusEntry e;
      e.text = j["t"].get<std::string>();
      e.ids_a = j["a"].get<std::vector<int32_t>>();
      e.ids_b = j["b"].get<std::vector<int32_t>>();
      e.decoded_a = j.contains("ad") ? j["ad"].get<std::string>() : e.text;
      e.decoded_b = j.contains("bd") ? j["bd"].get<std::string>() : e.text;
      all.push_back(std::move(e));
    }
    if (const char* limit = std::getenv("FASTSERVE_TOKENIZER_CORPUS_LIMIT")) {
      const size_t n = std::strtoul(limit, nullptr, 10);
      if (n > 0 && n < all.size()) {
        const size_t step = all.size() / n;
        std::vector<CorpusEntry> some;
        for (size_t i = 0; i < all.size(); i += step) some.push_back(all[i]);
        all.swap(some);
      }
    }
    return all;
  }();
  return entries;
}

inline std::unique_ptr<Tokenizer> load_json_gz(const std::string& name) {
  const std::string path = fixture_path(name);
  auto tok = Tokenizer::from_hf_json(read_gz(path), path);
  EXPECT_TRUE(tok.is_ok()) << tok.status().to_string();
  return tok.is_ok() ? std::move(tok).value() : nullptr;
}

inline std::unique_ptr<Tokenizer> load_file(const std::string& path) {
  auto tok = Tokenizer::load(path);
  EXPECT_TRUE(tok.is_ok()) << tok.status().to_string();
  return tok.is_ok() ? std::move(tok).value() : nullptr;
}

}  // namespace fs::testing
