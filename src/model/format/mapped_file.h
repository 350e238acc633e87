// Read-only memory mapping of a whole file, shared by the GGUF and safetensors readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace fs {

class MappedFile {
 public:
  // Maps `path` read-only (MAP_PRIVATE). An empty file gives an empty mapping (data() == nullptr).
  // Errors: kNotFound (missing), kInvalidArgument (a directory), kDataLoss (read/map failure); all
  // name the path.
  static Result<std::unique_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // madvise(MADV_WILLNEED) on [offset, offset + len) clipped to the file: starts asynchronous
  // readahead so the first forward pass does not fault pages in one by one. A hint only; never
  // fails.
  void advise_willneed(size_t offset, size_t len) const;
  // Reads [offset, offset + len) clipped to the file into memory now (one byte per page, in 64 MiB
  // steps, each advised ahead), calling progress(bytes read so far) after each step. For large
  // models: the weights are resident before the first request instead of faulting in during it.
  void read_in(size_t offset, size_t len, const std::function<void(size_t)>& progress) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace fs
