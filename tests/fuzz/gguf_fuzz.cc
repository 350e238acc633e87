// Fuzzes the GGUF reader with arbitrary file contents, then what reads its metadata: the model
// hyperparameters (ModelConfig::from_gguf) and the tokenizer (Tokenizer::from_gguf, then a short
// encode/decode). Any input must give a Status, never a crash, an out-of-bounds read, a hang or a
// huge allocation. Checks: every tensor's data lies inside the file (its bytes are touched).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.h"
#include "fuzz_file.h"
#include "model/format/gguf_file.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fs::fuzz::MemFile file(data, size);
  auto gguf = fs::GgufFile::open(file.path());
  if (!gguf.is_ok()) return 0;
  const fs::GgufFile& g = **gguf;
  for (const fs::GgufTensorInfo& t : g.tensors()) {
    FS_CHECK(g.data_offset() + t.offset_bytes + t.nbytes <= g.file_bytes(),
             "tensor '{}' outside the file", t.name);
    if (t.nbytes == 0) continue;
    // Touch the first and last byte: outside the mapping this faults and the fuzzer reports it.
    volatile uint8_t first = t.data[0], last = t.data[t.nbytes - 1];
    (void)first;
    (void)last;
  }
  auto config = fs::ModelConfig::from_gguf(g);
  if (config.is_ok()) (void)config->to_string();
  auto tok = fs::Tokenizer::from_gguf(g);
  if (tok.is_ok()) {
    const std::vector<int32_t> ids = (*tok)->encode("Hello world, <s> 12345 \xc3\xa9!");
    for (int32_t id : ids) FS_CHECK((*tok)->is_valid_id(id), "id {} out of range", id);
    (void)(*tok)->decode(ids);
  }
  return 0;
}
