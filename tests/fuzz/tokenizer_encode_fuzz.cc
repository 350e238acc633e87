// Fuzzes Tokenizer::encode (byte-level SmolLM2 and SentencePiece llama vocabularies, from the GGUF
// fixtures) with arbitrary bytes. Checks: no crash or sanitizer report, every id in range,
// byte-level round trip decode(encode(x)) == x for valid UTF-8, incremental decode == full decode.
#include <cstdint>
#include <memory>
#include <string>

#include "core/check.h"
#include "fixture_tokenizers.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int which = data[0] & 1;
  fs::EncodeOptions options;
  options.add_special = (data[0] & 2) != 0;
  options.parse_special = (data[0] & 4) != 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const fs::Tokenizer& tok = fs::fuzz::fixture_tokenizer(which);
  const std::vector<int32_t> ids = tok.encode(text, options);
  for (int32_t id : ids) FS_CHECK(tok.is_valid_id(id), "id {} out of range", id);
  const std::string decoded = tok.decode(ids);
  FS_CHECK(fs::utf8::is_valid(decoded), "decode produced invalid UTF-8");
  if (which == 0 && fs::utf8::is_valid(text)) {
    // Lossless unless the vocabulary lacks a byte (SmolLM2 has no token for some control bytes,
    // which HF drops too).
    bool all_bytes = true;
    for (char c : text) all_bytes = all_bytes && tok.spec().model->find(std::string(1, c)) >= 0;
    FS_CHECK(!all_bytes || decoded == text, "byte-level round trip failed");
  }
  fs::IncrementalDecoder inc(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += inc.feed(id);
  streamed += inc.finish();
  FS_CHECK(streamed == decoded, "incremental decode differs from decode");
  return 0;
}
