// Fuzzes the HF tokenizer.json loader (Tokenizer::from_hf_json: model, vocab, merges, added tokens,
// normalizers, pre-tokenizers, post-processor, decoder) with arbitrary text, then encodes and
// decodes a short string with what loaded. Any input must give a Status, never a crash, an
// exception, a hang or a huge allocation. Checks: ids in range, decode gives valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/check.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tok = fs::Tokenizer::from_hf_json(text, "fuzz-input");
  if (!tok.is_ok()) return 0;
  for (const char* s : {"Hello world, <s> 12345 \xc3\xa9!", "  a\tb\n\nc \xf0\x9f\x8c\x8d"}) {
    const std::vector<int32_t> ids = (*tok)->encode(s);
    for (int32_t id : ids) FS_CHECK((*tok)->is_valid_id(id), "id {} out of range", id);
    FS_CHECK(fs::utf8::is_valid((*tok)->decode(ids)), "decode produced invalid UTF-8");
  }
  return 0;
}
