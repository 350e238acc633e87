// The two fixture tokenizers the tokenizer fuzz targets share, loaded once per process:
// 0 = SmolLM2 (byte-level BPE), 1 = llama (SentencePiece BPE), both from the GGUF fixtures.
#pragma once

#include <memory>
#include <string>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace fs::fuzz {

inline const Tokenizer& fixture_tokenizer(int which) {
  static std::unique_ptr<Tokenizer> loaded[2];
  if (loaded[which] == nullptr) {
    const char* name =
        which == 0 ? "/tokenizer/smollm2-vocab.gguf" : "/tokenizer/ggml-vocab-llama-spm.gguf";
    auto t = Tokenizer::load(std::string(FASTSERVE_FIXTURES_DIR) + name);
    FS_CHECK(t.is_ok(), "{}", t.status().to_string());
    loaded[which] = std::move(t).value();
  }
  return *loaded[which];
}

}  // namespace fs::fuzz
