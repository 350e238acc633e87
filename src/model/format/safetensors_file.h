// One .safetensors file: u64 little-endian header length, a JSON header
//   {"name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"k": "v"}}
// and the raw tensor bytes, offsets relative to the end of the header. Mapped read-only; every
// field is checked on open (a bad file gives a kDataLoss Status naming the path, never an exception
// or a crash). Tensors of dtypes we do not compute with (I64, F64, F8, ...) are listed with dtype
// == nullopt; using one is the caller's kUnimplemented error. Immutable after open(): thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "model/format/mapped_file.h"

namespace fs {

struct SafetensorsTensor {
  std::string name;
  std::string dtype_name;      // as in the file: "F32", "BF16", "I64", ...
  std::optional<DType> dtype;  // F32 / F16 / BF16; nullopt for other dtypes
  std::vector<int64_t> shape;  // PyTorch order, as stored
  const uint8_t* data;  // into the mapping; valid while the file lives. Not necessarily aligned.
  uint64_t nbytes;
};

class SafetensorsFile {
 public:
  static Result<std::shared_ptr<const SafetensorsFile>> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint64_t file_bytes() const { return file_->size(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }  // sorted by name
  const SafetensorsTensor* find_tensor(std::string_view name) const;          // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  void advise_willneed() const { file_->advise_willneed(0, file_->size()); }
  void read_in(const std::function<void(size_t)>& progress) const {
    file_->read_in(0, file_->size(), progress);
  }

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Element size in bytes of a safetensors dtype name, or 0 when unknown.
int64_t safetensors_dtype_bytes(std::string_view dtype_name);

}  // namespace fs
