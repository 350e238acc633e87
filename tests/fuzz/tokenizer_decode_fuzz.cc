// Fuzzes Tokenizer::decode and IncrementalDecoder with arbitrary id sequences (2 bytes per id, any
// value, including out-of-range ones). Checks: output is valid UTF-8, every streamed piece is valid
// UTF-8, and for byte-level BPE the stream equals the full decode.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "fixture_tokenizers.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int which = data[0] & 1;
  const bool skip_special = (data[0] & 2) != 0;
  const fs::Tokenizer& tok = fs::fuzz::fixture_tokenizer(which);
  std::vector<int32_t> ids;
  for (size_t i = 1; i + 1 < size; i += 2) {
    ids.push_back(static_cast<int32_t>(data[i] | (data[i + 1] << 8)) - 512);
  }
  const std::string decoded = tok.decode(ids, skip_special);
  FS_CHECK(fs::utf8::is_valid(decoded), "decode produced invalid UTF-8");
  fs::IncrementalDecoder inc(tok, skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string part = inc.feed(id);
    FS_CHECK(fs::utf8::is_valid(part), "incremental piece is invalid UTF-8");
    streamed += part;
  }
  streamed += inc.finish();
  FS_CHECK(fs::utf8::is_valid(streamed), "stream is invalid UTF-8");
  if (which == 0) FS_CHECK(streamed == decoded, "incremental decode differs from decode");
  return 0;
}
