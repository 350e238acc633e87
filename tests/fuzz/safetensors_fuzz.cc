// Fuzzes the safetensors reader with arbitrary file contents (u64 header length, JSON header,
// data). Any input must give a Status, never a crash, an exception, an out-of-bounds read or a huge
// allocation. Checks: every tensor's bytes lie inside the file and match its shape and dtype.
#include <cstddef>
#include <cstdint>

#include "core/check.h"
#include "fuzz_file.h"
#include "model/format/safetensors_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fs::fuzz::MemFile file(data, size);
  auto st = fs::SafetensorsFile::open(file.path());
  if (!st.is_ok()) return 0;
  for (const fs::SafetensorsTensor& t : (*st)->tensors()) {
    FS_CHECK(t.nbytes <= size, "tensor '{}' larger than the file", t.name);
    if (t.nbytes == 0) continue;
    // Touch the first and last byte: outside the mapping this faults and the fuzzer reports it.
    FS_CHECK(t.data != nullptr, "tensor '{}' has no data", t.name);
    volatile uint8_t first = t.data[0], last = t.data[t.nbytes - 1];
    (void)first;
    (void)last;
    const int64_t elem = fs::safetensors_dtype_bytes(t.dtype_name);
    if (elem != 0) {
      uint64_t n = 1;
      for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
      FS_CHECK(n * static_cast<uint64_t>(elem) == t.nbytes, "tensor '{}' size mismatch", t.name);
    }
    (void)(*st)->find_tensor(t.name);
  }
  return 0;
}
