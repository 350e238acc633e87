// Helper for fuzz targets whose parser takes a path (the GGUF and safetensors readers map the
// file): writes the input to an anonymous in-memory file (memfd) and names it by /proc/self/fd/N,
// so no disk I/O and no temporary files are left behind.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.h"

namespace fs::fuzz {

class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("fuzz-input", MFD_CLOEXEC);
    FS_CHECK(fd_ >= 0, "memfd_create failed");
    size_t written = 0;
    while (written < size) {
      const ssize_t n = ::write(fd_, data + written, size - written);
      FS_CHECK(n > 0, "write to memfd failed");
      written += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace fs::fuzz
