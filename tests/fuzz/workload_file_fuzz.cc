// Fuzzes the workload-file readers (core/workload_file: the {"prompt","output"} JSONL and the
// prompt_tokens,output_tokens CSV that `fastserve bench` and `fastserve sim` read) with arbitrary
// file contents; byte 0 picks the format. Checks: no crash or sanitizer report; an accepted file
// has at least one row; a rejected one has a message naming the file.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.h"
#include "core/workload_file.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  fs::fuzz::MemFile file(data + 1, size - 1);
  const bool csv = (data[0] & 1) != 0;
  const fs::Status status = csv ? fs::read_length_rows(file.path(), "trace").status()
                                : fs::read_text_rows(file.path(), "dataset").status();
  if (!status.is_ok()) {
    FS_CHECK(status.message().find(file.path()) != std::string::npos, "error without the path: {}",
             status.message());
    return 0;
  }
  if (csv) {
    FS_CHECK(!fs::read_length_rows(file.path(), "trace")->empty(), "accepted an empty trace");
  } else {
    FS_CHECK(!fs::read_text_rows(file.path(), "dataset")->empty(), "accepted an empty dataset");
  }
  return 0;
}
