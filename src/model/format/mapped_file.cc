#include "model/format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fs {

Result<std::unique_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return not_found("'{}': no such file", path);
    return data_loss("'{}': cannot open: {}", path, std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return data_loss("'{}': cannot stat: {}", path, std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return invalid_argument("'{}': is a directory, expected a file", path);
  }
  auto file = std::unique_ptr<MappedFile>(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return data_loss("'{}': mmap of {} bytes failed: {}", path, file->size_, std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::advise_willneed(size_t offset, size_t len) const {
  if (data_ == nullptr || offset >= size_) return;
  len = std::min(len, size_ - offset);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t begin = offset / page * page;  // madvise needs a page-aligned start
  ::madvise(const_cast<uint8_t*>(data_) + begin, len + (offset - begin), MADV_WILLNEED);
}

void MappedFile::read_in(size_t offset, size_t len,
                         const std::function<void(size_t)>& progress) const {
  if (data_ == nullptr || offset >= size_) return;
  len = std::min(len, size_ - offset);
  constexpr size_t kStep = size_t{64} << 20;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  advise_willneed(offset, std::min(len, kStep));
  uint8_t sum = 0;
  for (size_t done = 0; done < len;) {
    const size_t n = std::min(kStep, len - done);
    if (done + n < len) advise_willneed(offset + done + n, std::min(kStep, len - done - n));
    const volatile uint8_t* p = data_ + offset + done;
    for (size_t i = 0; i < n; i += page) sum = static_cast<uint8_t>(sum + p[i]);
    sum = static_cast<uint8_t>(sum + p[n - 1]);
    done += n;
    if (progress) progress(done);
  }
  static_cast<void>(sum);
}

}  // namespace fs
